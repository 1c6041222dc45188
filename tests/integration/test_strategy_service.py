"""Strategy services trading on the paper exchange: exchange + trader + two shards, real processes.

The strategies are small deterministic ones written into the test's directory (a target on the
first bar, one that always raises), on 5-second bars of the fast paper market. Waits poll an RPC
(the trader's or a shard's) until a condition holds, with deadlines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.exchange_fixtures import ExchangeProcess, run, start_exchange
from tests.integration.test_trader_orders import TraderProcess, poll, start_trader, wait_connected
from tests.support import ROOT, Child, Processes, free_port
from trader.messaging.rpc import AsyncRpcClient

pytestmark = pytest.mark.integration

TEST_STRATEGIES = '''
from trader.strategy.base import Strategy
from trader.strategy.params import Param


class FirstBar(Strategy):
    """Wants `quantity` from its first bar on."""

    quantity = Param(5, "target position")

    def on_prices(self, prices):
        self.target(prices.attrs["symbol"], self.quantity)


class Raises(Strategy):
    def on_prices(self, prices):
        raise RuntimeError("boom from a test strategy")
'''

CONFIG = """
shards: {{count: 2, host: 127.0.0.1, base_port: {base_port}}}
slow_hook_s: 2
logging: {{level: INFO, console: false}}
strategies:
  first_a:
    class: {file}:FirstBar
    instruments: [AAPL]
    bar_size: 5 secs
    warmup_bars: 3
    params: {{quantity: 5}}
    shard: 0
  boom:
    class: {file}:Raises
    instruments: [MSFT]
    bar_size: 5 secs
    shard: 0
  first_b:
    class: {file}:FirstBar
    instruments: [NVDA]
    bar_size: 5 secs
    params: {{quantity: 3}}
    shard: 1
"""


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the two shards' RPC)."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise AssertionError("no two consecutive free ports")


@dataclass
class System:
    exchange: ExchangeProcess
    trader: TraderProcess
    procs: Processes
    config: Path
    base_port: int
    data_dir: Path
    shards: dict[int, Child]

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.trader.env,
            "BOURSE_STRATEGIES_CONFIG": str(self.config),
            "BOURSE_SHARDS_BASE_PORT": str(self.base_port),
            "BOURSE_DATA_DIR": str(self.data_dir),
        }

    def start_shard(self, shard: int) -> Child:
        child = self.procs.python("services/strategy_service.py", "--shard", str(shard), env=self.env)
        child.wait_for_line(rf"strategy service ready: shard {shard} \(", timeout=90)
        self.shards[shard] = child
        return child

    def shard_rpc(self, shard: int) -> AsyncRpcClient:
        return AsyncRpcClient(f"tcp://127.0.0.1:{self.base_port + shard}", timeout=10.0)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "cli.py", *args],
            cwd=ROOT,
            env={**os.environ, **self.env, "COLUMNS": "160"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log_text(self, shard: int) -> str:
        path = self.data_dir / "logs" / f"strategies-{shard}.service.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    procs = Processes()
    try:
        root = tmp_path_factory.mktemp("strategies")
        exchange = start_exchange(procs, root / "exchange")
        trader = start_trader(procs, root / "trader", exchange.port)
        file = root / "test_strategies.py"
        file.write_text(TEST_STRATEGIES, encoding="utf-8")
        base_port = free_port_pair()
        config = root / "strategies.yaml"
        config.write_text(CONFIG.format(base_port=base_port, file=file), encoding="utf-8")
        sys_ = System(exchange, trader, procs, config, base_port, root / "strategies-data", {})

        async def connected() -> None:
            async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc:
                await wait_connected(rpc)

        run(connected())
        sys_.start_shard(0)
        sys_.start_shard(1)
        yield sys_
        for shard in (0, 1):
            text = sys_.log_text(shard)
            expected = text.count('raise RuntimeError("boom from a test strategy")')
            assert text.count("Traceback") == expected, text[-4000:]
    finally:
        procs.stop_all()


def position_of(strategy: str, symbol: str) -> Callable[[Any], bool]:
    return lambda rows: any(r["strategy"] == strategy and r["symbol"] == symbol for r in rows)


def holds(strategy: str, symbol: str, want: float) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: quantity(rows, strategy, symbol) == want


def quantity(rows: list[dict[str, Any]], strategy: str, symbol: str) -> float:
    return sum(float(r["quantity"]) for r in rows if r["strategy"] == strategy and r["symbol"] == symbol)


# -- tests --------------------------------------------------------------------------------------------


def test_strategies_when_bars_arrive_then_orders_reach_the_exchange_and_fills_come_back_attributed(
    system: System,
) -> None:
    async def body() -> None:
        async with AsyncRpcClient(system.trader.rpc, timeout=10.0) as rpc:
            for name, symbol, want in (("first_a", "AAPL", 5.0), ("first_b", "NVDA", 3.0)):
                rows = await poll(
                    rpc,
                    "get_positions",
                    holds(name, symbol, want),
                    within=60,
                    what=f"{name} long {want} {symbol}",
                    strategy=name,
                )
                assert quantity(rows, name, symbol) == want
                fills = await rpc.call("get_fills", strategy=name)
                assert fills and all(f["strategy"] == name for f in fills)
                assert sum(f["quantity"] for f in fills) == want  # one target, never doubled
        async with system.shard_rpc(1) as shard:
            status = await poll(shard, "status", lambda s: s["position"].get("NVDA") == 3.0, name="first_b")
            assert status["state"] == "RUNNING"

    run(body(), timeout=120)


def test_strategy_when_it_raises_then_error_and_the_others_keep_trading(system: System) -> None:
    async def body() -> None:
        async with system.shard_rpc(0) as shard:
            boom = await poll(shard, "status", lambda s: s["state"] == "ERROR", within=60, name="boom")
            assert "boom from a test strategy" in boom["last_error"]
            assert any(e["kind"] == "error" for e in boom["events"])
            first = await poll(
                shard,
                "status",
                lambda s: s["hooks"].get("on_prices", {}).get("calls", 0) >= 2,
                within=60,
                name="first_a",
            )
            assert first["state"] == "RUNNING"
            assert first["position"].get("AAPL") == 5.0

    run(body(), timeout=120)


def test_cli_when_disable_and_enable_then_state_changes_at_runtime(system: System) -> None:
    listed = system.cli("strategy", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["result"]
    assert {r["name"] for r in rows} == {"first_a", "boom", "first_b"}
    assert {r["name"]: r["shard"] for r in rows} == {"first_a": 0, "boom": 0, "first_b": 1}

    disabled = system.cli("strategy", "disable", "first_b", "--json")
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["result"]["state"] == "DISABLED"
    status = system.cli("strategy", "status", "first_b", "--json")
    assert json.loads(status.stdout)["result"]["state"] == "DISABLED"

    enabled = system.cli("strategy", "enable", "first_b")
    assert enabled.returncode == 0, enabled.stderr
    assert "RUNNING" in enabled.stdout

    unknown = system.cli("strategy", "status", "nope")
    assert unknown.returncode == 1 and "no strategy 'nope'" in unknown.stderr

    down = subprocess.run(
        [sys.executable, "cli.py", "strategy", "list"],
        cwd=ROOT,
        env={**os.environ, **system.env, "BOURSE_SHARDS_BASE_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 2
    assert "the strategy service (shard 0) is not answering at" in down.stderr
    assert "start it with ./start.sh" in down.stderr


def test_shard_when_killed_and_restarted_then_resumes_its_position_without_sending_orders_again(
    system: System,
) -> None:
    async def orders_and_calls() -> tuple[int, int]:
        async with AsyncRpcClient(system.trader.rpc, timeout=10.0) as rpc:
            await poll(
                rpc,
                "get_positions",
                lambda r: quantity(r, "first_a", "AAPL") == 5.0,
                within=60,
                strategy="first_a",
            )
            orders = await rpc.call("get_orders", strategy="first_a")
        return len(orders), 0

    before, _ = run(orders_and_calls(), timeout=90)
    system.shards[0].kill()  # SIGKILL: no on_stop, nothing flushed
    system.shards[0].popen.wait(10)
    system.start_shard(0)

    async def body() -> None:
        async with system.shard_rpc(0) as shard:
            status = await shard.call("status", name="first_a")
            assert status["position"].get("AAPL") == 5.0  # restored before the first bar
            await poll(
                shard,
                "status",
                lambda s: s["hooks"].get("on_prices", {}).get("calls", 0) >= 3,
                within=60,
                name="first_a",
            )
        async with AsyncRpcClient(system.trader.rpc, timeout=10.0) as rpc:
            orders = await rpc.call("get_orders", strategy="first_a")
            assert len(orders) == before, orders
            rows = await rpc.call("get_positions", strategy="first_a")
            assert quantity(rows, "first_a", "AAPL") == 5.0

    run(body(), timeout=120)


def test_shard_when_sigterm_then_stops_cleanly_leaving_orders(system: System) -> None:
    child = system.shards[1]
    start = time.monotonic()
    assert child.stop(timeout=20) == 0
    assert time.monotonic() - start < 20
    assert "strategy service stopped" in system.log_text(1)
    system.start_shard(1)

    async def body() -> None:
        async with system.shard_rpc(1) as shard:
            status = await shard.call("status", name="first_b")
            assert status["position"].get("NVDA") == 3.0

    run(body(), timeout=60)
