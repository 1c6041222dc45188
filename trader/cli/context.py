"""The CLI's global options and the state every command reads (``CliContext``).

Global options may be given before the command or after it alike (``cli.py --json status`` and
``cli.py status --json``): :func:`hoist_globals` moves ``--json``, ``--debug`` and
``--data-dir DIR`` to the front before click parses the line. ``--config`` (the trader config) is
global too but stays where it is, since some groups (``exchange``, ``pycron``) have a ``--config``
of their own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from trader.config.paths import CONFIG_ENV, DATA_DIR_ENV, resolve_config_path, resolve_data_dir
from trader.config.schema import load
from trader.config.trader import TraderConfig

FLAGS = ("--json", "--debug")
VALUED = ("--data-dir",)
DEFAULT_TRADER_CONFIG = Path("configs/trader.yaml")


def hoist_globals(args: Sequence[str]) -> list[str]:
    """``args`` with the global options moved in front of the command (after ``--``: left alone)."""
    front: list[str] = []
    rest: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            rest.extend(items[i:])
            break
        if arg in FLAGS:
            front.append(arg)
        elif arg in VALUED and i + 1 < len(items):
            front.extend(items[i : i + 2])
            i += 1
        elif any(arg.startswith(f"{name}=") for name in VALUED):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*front, *rest]


@dataclass
class CliContext:
    """What the root command parsed; commands get it with :func:`cli_context`."""

    as_json: bool = False
    debug: bool = False
    data_dir: str | None = None
    config: str | None = None
    _trader_config: TraderConfig | None = field(default=None, repr=False)

    def apply_environment(self) -> None:
        """Make ``--data-dir`` / ``--config`` visible to every resolver (and child process)."""
        if self.data_dir:
            os.environ[DATA_DIR_ENV] = str(Path(self.data_dir).expanduser().resolve())
        if self.config:
            os.environ[CONFIG_ENV] = self.config

    def trader_config_path(self) -> Path:
        return resolve_config_path(self.config, os.environ, DEFAULT_TRADER_CONFIG)

    def trader_config(self) -> TraderConfig:
        """The trader config (``--config`` > ``$BOURSE_CONFIG`` > configs/trader.yaml), env overrides
        applied; raises ``ConfigError``."""
        if self._trader_config is None:
            self._trader_config = load(TraderConfig, self.trader_config_path(), os.environ)
        return self._trader_config

    def resolved_data_dir(self) -> Path:
        config_dir: str | None = None
        try:
            config_dir = self.trader_config().data_dir
        except Exception:  # a broken config must not hide the data dir
            config_dir = None
        return resolve_data_dir(self.data_dir, os.environ, config_dir)


def cli_context() -> CliContext:
    """The current invocation's :class:`CliContext` (a fresh default outside a click context)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return CliContext()
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):
        root.obj = CliContext()
    return root.obj
