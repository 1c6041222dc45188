"""The risk engine wired into the trader service, end to end: a real paper exchange and a real
trader (free ports, fresh data dirs), orders over RPC, faults through the exchange's control RPC,
the STOP file, the CLI's ``risk`` commands, the live-trading guard and persistence across restarts.

The module's trader runs configs/trader.yaml's own ``risk:`` section (the shipped defaults); each
test uses its own strategies and instruments. Tests that leave the account halted resume it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.exchange_fixtures import ExchangeProcess, anchor_price, run, start_exchange
from tests.integration.test_trader_orders import (
    Events,
    TraderProcess,
    coid,
    error_code,
    of_order,
    poll,
    start_trader,
    trader_session,
    wait_connected,
)
from tests.support import ROOT, Processes
from trader.messaging.rpc import AsyncRpcClient, RpcRemoteError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trader(exchange: ExchangeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraderProcess]:
    procs = Processes()
    try:
        process = start_trader(procs, tmp_path_factory.mktemp("risk-trader"), exchange.port)
        yield process
        assert process.child.popen.poll() is None, "the trader service died"
        assert "Traceback" not in process.log_text(), process.log_text()[-4000:]
    finally:
        procs.stop_all()


def cli(trader: TraderProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``python cli.py <args>`` pointed at the module's trader."""
    env = {**os.environ, **trader.env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "cli.py", *args]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


LOW: dict[str, float] = {}


def resting_buy(strategy: str, symbol: str, oid: str, quantity: float = 1) -> dict[str, Any]:
    """A BUY LMT at half the instrument's price (its quote when :func:`quote_low` saw one): it rests."""
    return {
        "strategy": strategy,
        "client_order_id": oid,
        "symbol": symbol,
        "action": "BUY",
        "quantity": quantity,
        "order_type": "LMT",
        "limit_price": LOW.get(symbol) or round(anchor_price(symbol) * 0.5, 2),
    }


async def quote_low(rpc: AsyncRpcClient, symbol: str) -> float:
    """Half the instrument's current price (a snapshot), remembered for :func:`resting_buy`."""
    tick = await rpc.call("snapshot", symbol=symbol)
    mid = (tick["bid"] + tick["ask"]) / 2 if tick["bid"] > 0 and tick["ask"] > 0 else tick["last"]
    LOW[symbol] = round(mid * 0.5, 2)
    return LOW[symbol]


async def refusal(rpc: AsyncRpcClient, **params: Any) -> str:
    with pytest.raises(RpcRemoteError) as caught:
        await rpc.call("place_order", **params)
    assert caught.value.code == "refused", caught.value.message
    return str(caught.value.message)


# -- tests --------------------------------------------------------------------------------------------


def test_runaway_when_one_strategy_sends_orders_in_a_loop_then_throttled_by_its_rate_rule(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, _events):
            await wait_connected(rpc)
            await quote_low(rpc, "PYPL")
            await rpc.call("risk_set", key="max_orders_per_second", value=5, scope="strategy:runaway")
            placed, refused = [], []
            started = time.monotonic()
            for _ in range(40):  # as fast as the RPC answers
                try:
                    await rpc.call("place_order", **resting_buy("runaway", "PYPL", coid("run")))
                    placed.append(1)
                except RpcRemoteError as exc:
                    assert exc.code == "refused"
                    refused.append(exc.message)
            elapsed = time.monotonic() - started
            assert refused, f"40 orders in {elapsed:.2f}s, none refused"
            assert all("max_orders_per_second (strategy:runaway)" in m for m in refused), refused[0]
            assert "> limit 5" in refused[0] and "orders in 1 s" in refused[0]
            assert len(placed) <= 5 * (int(elapsed) + 2)
            # throttled, not halted: the strategy trades again once its window has room
            await asyncio.sleep(1.1)
            await rpc.call("place_order", **resting_buy("runaway", "PYPL", coid("run")))
            shown = await rpc.call("risk_show")
            assert shown["trading"]["strategies"].get("runaway", {"state": "active"})["state"] == "active"
            assert shown["checks"]["refused"]["max_orders_per_second"] >= len(refused)
            await rpc.call("cancel_all", strategy="runaway")

    run(body())


def test_refused_order_when_several_rules_fail_then_each_is_named_with_its_numbers(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            await rpc.call("risk_set", key="max_order_quantity", value="10", scope="strategy:multi")
            await rpc.call("risk_set", key="max_position_quantity", value=50, scope="strategy:multi")
            oid = coid("multi")
            order = resting_buy("multi", "WFC", oid, quantity=6000)  # 6000 x ~45 = 270,000 notional
            message = await refusal(rpc, **order)
            assert "max_order_notional: WFC order 6,000 x " in message and "> limit 250,000" in message
            assert "max_order_quantity (strategy:multi): WFC order 6,000 > limit 10" in message
            assert "max_position_quantity (strategy:multi): WFC would be 6,000 > limit 50" in message
            rejected = await events.wait_for("order.multi", of_order(oid, "Rejected"))
            assert rejected["reason"] == message
            code = await error_code(rpc.call("risk_set", key="max_order_value", value=1))
            assert code == "bad_params"
            code = await error_code(rpc.call("risk_set", key="max_open_orders", value="-3"))
            assert code == "bad_params"

    run(body())


def test_price_shock_when_a_strategy_passes_its_daily_loss_then_cancelled_flattened_halted_and_others_trade(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with (
            trader_session(trader) as (rpc, events),
            AsyncRpcClient(exchange.control, timeout=5.0) as control,
        ):
            await wait_connected(rpc)
            await rpc.call("subscribe", owner="risk-test", symbols=["NFLX", "F"])
            await quote_low(rpc, "NFLX")
            entry = coid("lose")
            buy: dict[str, Any] = {
                "strategy": "loser",
                "client_order_id": entry,
                "symbol": "NFLX",
                "action": "BUY",
            }
            await rpc.call("place_order", **buy, quantity=200)
            await events.wait_for("order.loser", of_order(entry, "Filled"))
            resting = coid("lose-rest")
            await rpc.call("place_order", **resting_buy("loser", "NFLX", resting), wait_s=5)
            shown = await poll(  # the breaker has the strategy's day baseline
                rpc, "risk_show", lambda s: "strategy:loser" in s["day"], what="loser's day P&L tracked"
            )
            day_pnl = shown["day"]["strategy:loser"]["pnl"]  # ~ minus the spread and commission
            limit = round(max(0.0, -day_pnl) + 1000.0)  # a 30% fall of 200 shares loses well over 1,000
            await rpc.call("risk_set", key="max_daily_loss", value=limit, scope="strategy:loser")
            await asyncio.sleep(1.5)  # a P&L update or two: not tripped before the shock
            assert not [e for e in events.seen("risk") if e["type"] == "risk.halt"]

            await control.call("shock", symbol="NFLX", percent=-30.0)

            halt = await events.wait_for(
                "risk", lambda b: b["type"] == "risk.halt" and b["scope"] == "strategy:loser", within=10
            )
            assert halt["rule"] == "max_daily_loss" and halt["alert"] is True
            assert "circuit breaker strategy:loser: max_daily_loss: day loss" in halt["reason"]
            assert halt["until_ns"] is not None  # ends at the next trading day's start
            await events.wait_for(
                "risk", lambda b: b["type"] == "risk.cancel" and b["scope"] == "strategy:loser"
            )
            await events.wait_for(
                "risk", lambda b: b["type"] == "risk.flatten" and b["scope"] == "strategy:loser"
            )
            await events.wait_for("order.loser", of_order(resting, "Cancelled"))
            liquidation = await events.wait_for("risk", lambda b: b["type"] == "risk.liquidation")
            assert (liquidation["strategy"], liquidation["action"], liquidation["quantity"]) == (
                "loser",
                "SELL",
                200.0,
            )
            await events.wait_for("order.loser", of_order(liquidation["client_order_id"], "Filled"))
            await poll(rpc, "get_positions", lambda rows: rows == [], strategy="loser", what="loser flat")

            message = await refusal(rpc, **resting_buy("loser", "NFLX", coid("lose-again")))
            assert "trading_state (strategy:loser): strategy:loser is HALTED (circuit breaker" in message
            status = await rpc.call("status")
            assert status["trading"]["state"] == "active"
            assert status["trading"]["strategies"]["loser"]["state"] == "halted"

            keep = coid("keep")
            await rpc.call(
                "place_order", strategy="keeper", client_order_id=keep, symbol="F", action="BUY", quantity=10
            )
            await events.wait_for("order.keeper", of_order(keep, "Filled"))
            await rpc.call("risk_resume", scope="strategy:loser", reason="reviewed")
            await rpc.call("unsubscribe", owner="risk-test")

    run(body())


def test_stop_file_when_created_then_everything_halted_within_a_second_and_only_resume_resumes(
    trader: TraderProcess,
) -> None:
    stop_file = trader.data_dir / "STOP"

    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            await quote_low(rpc, "BAC")
            oids = [coid("stop-a"), coid("stop-b")]
            for strategy, oid in zip(("stopper", "stopper2"), oids, strict=True):
                await rpc.call("place_order", **resting_buy(strategy, "BAC", oid), wait_s=5)

            created = time.monotonic()
            stop_file.touch()
            halt = await events.wait_for(
                "risk", lambda b: b["type"] == "risk.halt" and b["rule"] == "kill_switch", within=5
            )
            halted_after = time.monotonic() - created
            for strategy, oid in zip(("stopper", "stopper2"), oids, strict=True):
                await events.wait_for(f"order.{strategy}", of_order(oid, "Cancelled"), within=5)
            cancelled_after = time.monotonic() - created
            print(f"\nkill switch: halted after {halted_after:.3f}s, cancelled after {cancelled_after:.3f}s")
            assert halt["scope"] == "account" and halt["alert"] is True
            assert halted_after < 1.0

            message = await refusal(rpc, **resting_buy("stopper", "BAC", coid("stop-c")))
            assert "trading_state: account is HALTED (kill switch: STOP file present)" in message
            assert await error_code(rpc.call("risk_resume")) == "conflict"  # the file is still there

            stop_file.unlink()
            await asyncio.sleep(1.0)  # several polls: removing the file resumes nothing
            assert (await rpc.call("status"))["trading"]["state"] == "halted"
            await refusal(rpc, **resting_buy("stopper", "BAC", coid("stop-d")))

            resumed = await asyncio.to_thread(cli, trader, "risk", "resume", "--reason", "STOP reviewed")
            assert resumed.returncode == 0, resumed.stderr
            assert "account: ACTIVE" in resumed.stdout and "STOP reviewed" in resumed.stdout
            await events.wait_for("risk", lambda b: b["type"] == "risk.resume" and b["scope"] == "account")
            oid = coid("stop-e")
            await rpc.call("place_order", **resting_buy("stopper", "BAC", oid), wait_s=5)
            await rpc.call("cancel_order", client_order_id=oid)

    try:
        run(body())
    finally:
        stop_file.unlink(missing_ok=True)


def test_cli_risk_when_trader_has_the_rpc_then_show_set_halt_reduce_resume_work(
    trader: TraderProcess,
) -> None:
    shown = cli(trader, "risk", "show")
    assert shown.returncode == 0, shown.stderr
    for text in ("trading state", "limits in force", "max_order_notional", "250,000", "use now"):
        assert text in shown.stdout, shown.stdout

    changed = cli(trader, "risk", "set", "max_open_orders", "150")
    assert changed.returncode == 0, changed.stderr
    assert "account max_open_orders: 200 -> 150" in changed.stdout
    cli(trader, "risk", "set", "max_order_quantity", "10", "--scope", "strategy:multi")  # whatever ran before
    strategy = cli(trader, "risk", "set", "max_order_quantity", "none", "--scope", "strategy:multi")
    assert "strategy:multi max_order_quantity: 10 -> -" in strategy.stdout, strategy.stdout + strategy.stderr
    as_json = cli(trader, "--json", "risk", "show")
    doc = json.loads(as_json.stdout)
    assert doc["result"]["limits"]["account"]["max_open_orders"] == 150
    assert doc["result"]["overrides"]["account"]["max_open_orders"] == 150

    bad = cli(trader, "risk", "set", "max_order_value", "1000")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error: max_order_value: unknown limit")

    halted = cli(trader, "risk", "halt", "--reason", "lunch")
    assert halted.returncode == 0 and "account: HALTED  lunch" in halted.stdout, halted.stdout
    reducing = cli(trader, "risk", "reduce")
    assert reducing.returncode == 0 and "account: REDUCING" in reducing.stdout
    status = cli(trader, "status")
    assert "reducing" in status.stdout
    resumed = cli(trader, "risk", "resume")
    assert resumed.returncode == 0 and "account: ACTIVE" in resumed.stdout
    again = cli(trader, "risk", "resume")
    assert again.returncode == 1 and "account is active: cannot resume" in again.stderr, again.stderr
    assert cli(trader, "risk", "set", "max_open_orders", "200").returncode == 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"BOURSE_IB_PORT": "7496"},
            "live trading refused: TWS live port 7496, but risk.trading_mode is 'paper'",
        ),
        (
            {"BOURSE_IB_ACCOUNT": "U7654321"},
            "live trading refused: account U7654321 is not a paper account (paper accounts start with D)",
        ),
    ],
)
def test_guard_when_live_port_or_account_in_paper_mode_then_the_trader_refuses_to_start(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    procs = Processes()
    try:
        child = procs.python(
            "services/trader_service.py",
            env={"BOURSE_DATA_DIR": str(tmp_path), "BOURSE_LOGGING_CONSOLE": "false", **env},
        )
        out = child.read_rest(timeout=30)
        assert child.popen.returncode == 2, out
        assert f"error: {expected}" in out
        assert "trader service ready" not in out
    finally:
        procs.stop_all()


def test_guard_when_ib_reports_a_live_account_then_account_halted_and_the_trader_stops(
    tmp_path: Path,
) -> None:
    procs = Processes()
    try:
        live = start_exchange(procs, tmp_path / "exchange", env={"BOURSE_ACCOUNT_ID": "U7654321"})
        trader = start_trader(procs, tmp_path / "trader", live.port)
        out = trader.child.read_rest(timeout=30)
        assert trader.child.popen.returncode == 2, out
        assert "error: live trading refused: account U7654321 is not a paper account" in out
        state = (tmp_path / "trader" / "risk" / "state.json").read_text(encoding="utf-8")
        assert '"halted"' in state and "live trading refused" in state
    finally:
        procs.stop_all()


def test_risk_set_when_trader_restarts_then_limits_and_states_kept(
    exchange: ExchangeProcess, tmp_path: Path
) -> None:
    procs = Processes()

    async def change(first: TraderProcess) -> None:
        async with AsyncRpcClient(first.rpc, timeout=5.0) as rpc:
            event = await rpc.call("risk_set", key="max_order_quantity", value=7, scope="strategy:persist")
            assert (event["previous"], event["effective"]) == (None, 7.0)
            await rpc.call("risk_set", key="max_orders_per_minute", value=123)
            await rpc.call("risk_halt", scope="strategy:persist", reason="until reviewed")

    async def check(second: TraderProcess) -> None:
        async with AsyncRpcClient(second.rpc, timeout=5.0) as rpc:
            shown = await rpc.call("risk_show")
            assert shown["limits"]["strategy:persist"]["max_order_quantity"] == 7.0
            assert shown["limits"]["account"]["max_orders_per_minute"] == 123
            assert shown["trading"]["strategies"]["persist"]["state"] == "halted"
            assert shown["trading"]["strategies"]["persist"]["reason"] == "until reviewed"

    try:
        first = start_trader(procs, tmp_path, exchange.port)
        run(change(first))
        assert first.child.stop() == 0
        second = start_trader(procs, tmp_path, exchange.port)
        run(check(second))
    finally:
        procs.stop_all()


def test_events_when_risk_changes_then_published_on_the_risk_topic(trader: TraderProcess) -> None:
    async def body() -> None:
        async with AsyncRpcClient(trader.rpc, timeout=5.0) as rpc, Events(trader.events) as events:
            await rpc.call("risk_reduce", scope="strategy:evented", reason="winding down")
            reduce = await events.wait_for("risk", lambda b: b["type"] == "risk.reduce")
            assert (reduce["scope"], reduce["reason"]) == ("strategy:evented", "winding down")
            await rpc.call("risk_set", key="max_open_orders", value=3, scope="strategy:evented")
            limit = await events.wait_for("risk", lambda b: b["type"] == "risk.limit")
            assert (limit["scope"], limit["key"], limit["value"]) == (
                "strategy:evented",
                "max_open_orders",
                3,
            )
            await rpc.call("risk_resume", scope="strategy:evented")
            await events.wait_for("risk", lambda b: b["type"] == "risk.resume")

    run(body())
