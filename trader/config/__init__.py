"""Typed, immutable configuration loaded from YAML, with environment overrides.

* :mod:`trader.config.schema` turns plain data into frozen dataclasses, naming file and key on error.
* :mod:`trader.config.trader` is the trader service's configuration (configs/trader.yaml).
* :mod:`trader.config.paths` resolves the data directory every service keeps its state under.
* :mod:`trader.config.files` knows which schema each file in configs/ has (``cli.py config check``).
"""

from trader.config.schema import ConfigError

__all__ = ["ConfigError"]
