"""Example strategies: one file each, named in configs/strategies.yaml as ``strategies/<file>.py:<Class>``."""
