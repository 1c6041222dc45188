"""The one data directory that holds all state: store, logs, tokens, the kill-switch file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DATA_DIR_ENV = "BOURSE_DATA_DIR"
CONFIG_ENV = "BOURSE_CONFIG"
DEFAULT_DATA_DIR = Path("data")


def resolve_data_dir(
    cli_value: str | Path | None, environ: Mapping[str, str], config_value: str | Path | None = None
) -> Path:
    """``--data-dir``, else ``$BOURSE_DATA_DIR``, else the config's ``data_dir``, else ``./data``.

    The result is absolute, so child processes that change directory agree on it.
    """
    for candidate in (cli_value, environ.get(DATA_DIR_ENV) or None, config_value):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return DEFAULT_DATA_DIR.resolve()


def resolve_config_path(cli_value: str | Path | None, environ: Mapping[str, str], default: Path) -> Path:
    """``--config``, else ``$BOURSE_CONFIG``, else ``default``."""
    for candidate in (cli_value, environ.get(CONFIG_ENV) or None):
        if candidate:
            return Path(candidate).expanduser()
    return default


def ensure_data_dir(data_dir: Path) -> Path:
    """Create the data directory and its ``logs/`` folder; return the data directory."""
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    return data_dir


def logs_dir(data_dir: Path) -> Path:
    return data_dir / "logs"


def kill_switch_file(data_dir: Path) -> Path:
    """Creating this file halts all trading (see the risk issue)."""
    return data_dir / "STOP"
