"""Command implementations behind ``cli.py``: one module per command group, one renderer."""
