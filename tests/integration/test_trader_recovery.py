"""The trader service through failures: the exchange going down and coming back, the trader killed
mid-trading and restarted. Each test runs its own exchange and trader processes (fresh data dirs,
free ports); the exchange is checked independently with a plain ib_async client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB

from tests.integration.exchange_fixtures import ExchangeProcess, con_id, run, start_exchange
from tests.integration.test_trader_orders import (
    coid,
    error_code,
    of_order,
    poll,
    start_trader,
    trader_session,
    wait_connected,
)
from tests.support import Processes
from trader.messaging.rpc import AsyncRpcClient, RpcClientError

pytestmark = pytest.mark.integration


async def master_view(exchange: ExchangeProcess) -> tuple[list[Any], list[Any]]:
    """Every execution and every completed order at the exchange, seen by IB client 0 (the
    master client; the trader must be stopped first)."""
    for _ in range(50):
        ib = IB()
        try:
            await ib.connectAsync(exchange.host, exchange.port, clientId=0, timeout=5)
        except (ConnectionError, TimeoutError):  # client 0 still held by the trader that just left
            ib.disconnect()
            await asyncio.sleep(0.1)
            continue
        try:
            return list(await ib.reqExecutionsAsync()), list(await ib.reqCompletedOrdersAsync(False))
        finally:
            ib.disconnect()
    raise AssertionError("could not connect to the exchange as client 0")


def test_trader_when_exchange_goes_down_then_orders_refused_then_reconnects_by_itself_and_reconciles(
    procs: Processes, tmp_path: Path
) -> None:
    async def body() -> None:
        exchange = await asyncio.to_thread(start_exchange, procs, tmp_path / "exchange")
        trader = await asyncio.to_thread(start_trader, procs, tmp_path / "trader", exchange.port)
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            first: dict[str, Any] = {
                "strategy": "steady",
                "client_order_id": coid(),
                "symbol": "AMZN",
                "action": "BUY",
                "quantity": 7,
            }
            await rpc.call("place_order", **first)
            await events.wait_for("fill.steady", of_order(first["client_order_id"]))

            await asyncio.to_thread(exchange.child.stop)  # TWS goes away (clean stop: state saved)
            await events.wait_for("connection", lambda b: b["state"] == "disconnected")
            started = time.monotonic()
            code = await error_code(rpc.call("place_order", **(first | {"client_order_id": coid()})))
            assert code == "not_connected" and time.monotonic() - started < 1.0  # at once, not queued
            repeat = await rpc.call("place_order", **first)  # answered from the book while down
            assert repeat["created"] is False and repeat["order"]["state"] == "Filled"
            status = await rpc.call("status")
            assert status["ib"]["state"] in ("disconnected", "connecting") and status["ib"]["down_since"]

            await asyncio.to_thread(start_exchange, procs, exchange.data_dir, port=exchange.port)
            synced = await events.wait_for("reconcile", lambda b: b["reason"] == "sync: reconnect", within=20)
            assert [f for f in synced["findings"] if f["severity"] != "action"] == []
            await wait_connected(rpc)
            (position,) = await rpc.call("get_positions", strategy="steady")
            assert position["quantity"] == 7.0
            after = {**first, "client_order_id": coid(), "action": "SELL", "quantity": 2}
            assert (await rpc.call("place_order", **after))["created"] is True
            await events.wait_for("fill.steady", of_order(after["client_order_id"]))
            (position,) = await rpc.call("get_positions", strategy="steady")
            assert position["quantity"] == 5.0
        assert trader.child.popen.poll() is None and "Traceback" not in trader.log_text()

    run(body(), timeout=60)


def test_trader_when_killed_mid_trading_and_restarted_then_positions_kept_fills_once_nothing_placed_twice(
    procs: Processes, tmp_path: Path
) -> None:
    plan: list[dict[str, Any]] = [
        {
            "strategy": ("alpha", "beta")[i % 2],
            "client_order_id": coid(f"k{i}-"),
            "symbol": ("NVDA", "AMD")[i % 3 % 2],
            "action": ("BUY", "SELL")[i % 4 // 3],
            "quantity": 1 + i % 3,
        }
        for i in range(24)
    ]

    async def body() -> None:
        exchange = await asyncio.to_thread(start_exchange, procs, tmp_path / "exchange")
        trader = await asyncio.to_thread(start_trader, procs, tmp_path / "trader", exchange.port)
        endpoints = {"rpc": trader.rpc, "ticks": trader.ticks, "events": trader.events}
        async with AsyncRpcClient(trader.rpc, timeout=5.0) as rpc:
            await wait_connected(rpc)
            for i, params in enumerate(plan):
                if i == len(plan) // 2:  # mid-trading: orders of the first half may still be filling
                    trader.child.kill(signal.SIGKILL)
                    with contextlib.suppress(RpcClientError):  # sent to a dead trader: unknown fate
                        await rpc.call("place_order", **params, timeout=0.5)
                    break
                await rpc.call("place_order", **params)

        restarted = await asyncio.to_thread(
            start_trader, procs, trader.data_dir, exchange.port, endpoints=endpoints
        )
        async with trader_session(restarted) as (rpc, _events):
            await wait_connected(rpc)
            replies = [await rpc.call("place_order", **params) for params in plan]  # everything, again
            assert all(not r["created"] for r in replies[: len(plan) // 2])  # placed before the kill
            await poll(rpc, "get_orders", lambda rows: rows == [], open_only=True, what="all orders done")
            book_fills = await poll(
                rpc,
                "get_fills",
                lambda rows: sum(r["shares"] for r in rows) == sum(p["quantity"] for p in plan),
            )
            positions = {(p["strategy"], p["con_id"]): p["quantity"] for p in await rpc.call("get_positions")}
            stored = await poll(rpc, "get_fills", lambda df: len(df) == len(book_fills), source="store")
        await asyncio.to_thread(restarted.child.stop)
        assert "Traceback" not in restarted.log_text()

        executions, completed = await master_view(exchange)
        exec_ids = [f.execution.execId for f in executions]
        assert sorted(stored["exec_id"]) == sorted(exec_ids)  # every fill stored exactly once
        assert sorted(f["exec_id"] for f in book_fills) == sorted(exec_ids)  # and booked once
        refs = Counter(t.order.orderRef for t in completed)
        assert {f"{p['strategy']}:{p['client_order_id']}" for p in plan} == set(refs)
        assert set(refs.values()) == {1}  # no order submitted twice
        expected: dict[tuple[str, int], float] = defaultdict(float)
        for fill in executions:
            strategy = fill.execution.orderRef.split(":")[0]
            sign = 1.0 if fill.execution.side == "BOT" else -1.0
            expected[strategy, fill.contract.conId] += sign * float(fill.execution.shares)
        assert {k: v for k, v in positions.items() if v} == {k: v for k, v in expected.items() if v}
        assert {c for _, c in positions} <= {con_id("NVDA"), con_id("AMD")}

    run(body(), timeout=90)
