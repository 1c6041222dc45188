"""Which schema each file in configs/ has, and a check of them all (``cli.py config check``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycron.config import PycronConfig
from trader.config.exchange import ExchangeConfig
from trader.config.schema import ConfigError, load
from trader.config.trader import TraderConfig
from trader.strategy.config import StrategiesConfig

SCHEMAS: Mapping[str, type[Any]] = {
    "trader.yaml": TraderConfig,
    "exchange.yaml": ExchangeConfig,
    "pycron.yaml": PycronConfig,
    "pycron_docker.yaml": PycronConfig,
    "strategies.yaml": StrategiesConfig,
}
"""File name in configs/ -> the dataclass it loads into. Each new config file registers here."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    path: Path
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_file(path: Path, environ: Mapping[str, str]) -> CheckResult:
    schema = SCHEMAS.get(path.name)
    if schema is None:
        known = ", ".join(sorted(SCHEMAS))
        return CheckResult(path, f"{path}: no schema knows this file (known: {known})")
    try:
        load(schema, path, environ)
    except ConfigError as exc:
        return CheckResult(path, str(exc))
    return CheckResult(path, None)


def check_all(configs_dir: Path, environ: Mapping[str, str]) -> list[CheckResult]:
    """Validate every ``*.yaml``/``*.yml`` file of ``configs_dir``."""
    if not configs_dir.is_dir():
        return [CheckResult(configs_dir, f"{configs_dir}: not a directory")]
    files = sorted([*configs_dir.glob("*.yaml"), *configs_dir.glob("*.yml")])
    return [check_file(path, environ) for path in files]
