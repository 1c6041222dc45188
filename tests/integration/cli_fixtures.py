"""A running paper exchange + trader service for the CLI tests, and a runner of ``cli.py``.

``cli_system`` (module scope) starts both on free ports in a temporary data dir; ``system.cli(...)``
runs ``python cli.py <args>`` in a subprocess with the environment that points the CLI at them
(``BOURSE_ZMQ_*``, ``BOURSE_DATA_DIR``, ``BOURSE_EXCHANGE_CONTROL_RPC``) and a fixed terminal width,
and returns the completed process (``returncode``, ``stdout``, ``stderr``; ``json()`` for --json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.exchange_fixtures import ExchangeProcess, start_exchange
from tests.integration.test_trader_orders import TraderProcess, start_trader
from tests.support import ROOT, Processes


@dataclass(frozen=True)
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The decoded ``--json`` document (fails with the output when it is not JSON)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(
                f"not JSON from cli.py {self.args}: {self.stdout!r} {self.stderr!r}"
            ) from None


@dataclass
class CliSystem:
    exchange: ExchangeProcess
    trader: TraderProcess
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None, stdin: str = ""
    ) -> CliResult:
        """``python cli.py <args>`` against this system."""
        proc = subprocess.run(
            [sys.executable, "cli.py", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            check=False,
        )
        return CliResult(list(args), proc.returncode, proc.stdout, proc.stderr)


def cli_environment(exchange: ExchangeProcess, trader: TraderProcess, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        **trader.env,
        "BOURSE_DATA_DIR": str(data_dir),
        "BOURSE_EXCHANGE_CONTROL_RPC": exchange.control,
        "BOURSE_IB_PORT": str(exchange.port),
        "COLUMNS": "160",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def cli_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliSystem]:
    """One exchange + trader per test module (IB client 0 of the exchange)."""
    procs = Processes()
    try:
        data_dir = tmp_path_factory.mktemp("cli")
        exchange = start_exchange(procs, data_dir / "exchange")
        trader = start_trader(procs, data_dir, exchange.port)
        yield CliSystem(exchange, trader, data_dir, cli_environment(exchange, trader, data_dir))
    finally:
        procs.stop_all()
