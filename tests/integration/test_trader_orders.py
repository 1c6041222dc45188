"""The trader service trading on the paper exchange: real processes, RPC clients, the events PUB.

One exchange and one trader service (IB client 0, the master client that sees every client's
orders) serve the module; each test uses its own strategies, client order ids and instruments.
Waits are on events (the events PUB) or on an RPC polled until a condition holds, with deadlines.
The helpers here are shared by test_trader_recovery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ib_async import LimitOrder, MarketOrder, Stock

from tests.integration.exchange_fixtures import (
    ExchangeProcess,
    anchor_price,
    con_id,
    connected,
    next_client_id,
    run,
)
from tests.support import Child, Processes, free_endpoint
from trader.messaging.pubsub import Event, TickSubscriber
from trader.messaging.rpc import AsyncRpcClient, RpcRemoteError

pytestmark = pytest.mark.integration

_ids = itertools.count(1)


def coid(prefix: str = "o") -> str:
    """A client order id no other test of this session uses."""
    return f"{prefix}{next(_ids)}-{time.monotonic_ns() % 10**9}"


# -- shared helpers -----------------------------------------------------------------------------------


@dataclass
class TraderProcess:
    child: Child
    env: dict[str, str]
    rpc: str
    events: str
    ticks: str
    data_dir: Path

    def log_text(self) -> str:
        path = self.data_dir / "logs" / "trader.service.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""


def start_trader(
    procs: Processes,
    data_dir: Path,
    ib_port: int,
    *,
    endpoints: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> TraderProcess:
    """``services/trader_service.py`` as IB client 0 of the exchange on ``ib_port``; free endpoints
    unless given (a restart reuses them); ``env``: more variables (e.g. ``BOURSE_CONFIG``)."""
    ends = endpoints or {"rpc": free_endpoint(), "ticks": free_endpoint(), "events": free_endpoint()}
    extra = env or {}
    env = {f"BOURSE_ZMQ_{name.upper()}": endpoint for name, endpoint in ends.items()}
    env |= {
        "BOURSE_DATA_DIR": str(data_dir),
        "BOURSE_IB_PORT": str(ib_port),
        "BOURSE_IB_CLIENT_ID": "0",
        "BOURSE_ZMQ_HEARTBEAT_S": "0.1",
        "BOURSE_LOGGING_CONSOLE": "false",
    }
    env |= extra
    child = procs.python("services/trader_service.py", env=env)
    child.wait_for_line("trader service ready", timeout=30)
    return TraderProcess(child, env, ends["rpc"], ends["events"], ends["ticks"], data_dir)


async def poll(
    rpc: AsyncRpcClient,
    method: str,
    done: Callable[[Any], bool],
    *,
    within: float = 15.0,
    what: str = "",
    **params: Any,
) -> Any:
    """Call ``method`` until ``done(result)``; the last result is in the failure message."""
    deadline = time.monotonic() + within
    while True:
        result = await rpc.call(method, **params)
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or method}: not done within {within}s; last: {result!r}")
        await asyncio.sleep(0.05)


async def wait_connected(rpc: AsyncRpcClient, within: float = 20.0) -> dict[str, Any]:
    status: dict[str, Any] = await poll(
        rpc, "status", lambda s: s["ib"]["state"] == "connected", within=within, what="IB connected"
    )
    return status


class Events:
    """Every event of the trader's events PUB since entering, awaitable by topic prefix."""

    def __init__(self, endpoint: str) -> None:
        self.sub = TickSubscriber(endpoint, prefixes=[""])
        self.items: list[Event] = []
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Events:
        await self.sub.__aenter__()
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(10):
            await self.sub.wait_for_heartbeat()  # subscribed: nothing after this is missed
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sub.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for msg in self.sub:
            if isinstance(msg, Event):
                self.items.append(msg)
                self._new.set()

    def seen(self, prefix: str, match: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[Any]:
        return [e.body for e in self.items if e.topic.startswith(prefix) and match(e.body)]

    async def wait_for(
        self, prefix: str, match: Callable[[dict[str, Any]], bool] = lambda _: True, within: float = 10.0
    ) -> dict[str, Any]:
        """The first event on a topic starting with ``prefix`` for which ``match(body)`` holds."""
        deadline = time.monotonic() + within
        while True:
            found = self.seen(prefix, match)
            if found:
                body: dict[str, Any] = found[0]
                return body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                topics = sorted({e.topic for e in self.items})
                raise AssertionError(f"no {prefix!r} event matching within {within}s; topics seen: {topics}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)


def of_order(client_order_id: str, state: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda b: b.get("client_order_id") == client_order_id and (state is None or b["state"] == state)


@contextlib.asynccontextmanager
async def trader_session(trader: TraderProcess) -> AsyncIterator[tuple[AsyncRpcClient, Events]]:
    async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc, Events(trader.events) as events:
        yield rpc, events


async def error_code(call: Any) -> str:
    with pytest.raises(RpcRemoteError) as caught:
        await call
    return str(caught.value.code)


# -- tests --------------------------------------------------------------------------------------------


def test_place_order_when_market_order_then_fill_event_after_store_then_position(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            oid = coid("mkt")
            reply = await rpc.call(
                "place_order", strategy="alpha", client_order_id=oid, symbol="AAPL", action="BUY", quantity=10
            )
            assert reply["created"] is True
            order = reply["order"]
            assert (order["strategy"], order["symbol"], order["con_id"]) == ("alpha", "AAPL", con_id("AAPL"))
            assert order["order_ref"] == f"alpha:{oid}" and order["order_id"] > 0
            fill = await events.wait_for("fill.alpha", of_order(oid))
            assert (fill["side"], fill["shares"], fill["strategy"]) == ("BOT", 10.0, "alpha")
            assert fill["commission"] is not None and fill["commission"] > 0
            stored = await rpc.call("get_fills", strategy="alpha", source="store")
            assert fill["exec_id"] in set(stored["exec_id"])  # stored before it was published
            position = await events.wait_for("position.alpha", lambda b: b["con_id"] == con_id("AAPL"))
            assert position["quantity"] == 10.0
            await events.wait_for("order.alpha", of_order(oid, "Filled"))
            (row,) = await rpc.call("get_positions", strategy="alpha")
            assert row["quantity"] == 10.0 and row["avg_price"] == pytest.approx(fill["price"])
            (trade,) = [
                t
                for t in await rpc.call("get_trades", strategy="alpha")
                if t["order"]["client_order_id"] == oid
            ]
            assert [f["exec_id"] for f in trade["fills"]] == [fill["exec_id"]]

    run(body())


def test_limit_order_when_resting_then_modified_then_cancelled(trader: TraderProcess) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            oid = coid("lmt")
            low = round(anchor_price("MSFT") * 0.5, 2)
            reply = await rpc.call(
                "place_order",
                strategy="rester",
                client_order_id=oid,
                symbol="MSFT",
                action="BUY",
                quantity=3,
                order_type="LMT",
                limit_price=low,
                wait_s=5,
            )
            assert reply["order"]["state"] == "Submitted"
            modified = await rpc.call("modify_order", client_order_id=oid, limit_price=low - 1, quantity=4)
            assert modified["order"]["limit_price"] == pytest.approx(low - 1)
            assert modified["order"]["quantity"] == 4.0
            await events.wait_for(
                "order.rester", lambda b: b["client_order_id"] == oid and b["quantity"] == 4.0
            )
            cancelled = await rpc.call("cancel_order", client_order_id=oid, wait_s=5)
            assert cancelled["order"]["state"] == "Cancelled"
            await events.wait_for("order.rester", of_order(oid, "Cancelled"))
            assert await rpc.call("get_orders", strategy="rester", open_only=True) == []
            assert await error_code(rpc.call("cancel_order", client_order_id=oid)) == "too_late"

    run(body())


def test_place_order_when_client_order_id_repeats_then_same_order_and_one_at_the_exchange(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, _events):
            await wait_connected(rpc)
            oid = coid("idem")
            params: dict[str, Any] = {
                "strategy": "idem",
                "client_order_id": oid,
                "symbol": "IBM",
                "action": "BUY",
                "quantity": 2,
                "order_type": "LMT",
                "limit_price": round(anchor_price("IBM") * 0.5, 2),
            }
            replies = await asyncio.gather(*(rpc.call("place_order", **params) for _ in range(3)))
            assert sorted(r["created"] for r in replies) == [False, False, True]
            assert len({r["order"]["order_id"] for r in replies}) == 1
            again = await rpc.call("place_order", **params)
            assert again["created"] is False and again["order"]["order_id"] == replies[0]["order"]["order_id"]
            other = await error_code(rpc.call("place_order", **(params | {"strategy": "someone-else"})))
            assert other == "conflict"
            async with connected(exchange) as ib:
                trades = await ib.reqAllOpenOrdersAsync()
            assert [t.order.orderRef for t in trades].count(f"idem:{oid}") == 1
            await rpc.call("cancel_order", client_order_id=oid, wait_s=5)

    run(body())


def test_positions_when_two_strategies_trade_opposite_then_attributed_per_strategy_and_aggregated(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            long_id, short_id = coid("long"), coid("short")
            for strategy, oid, action, qty in (("bull", long_id, "BUY", 10), ("bear", short_id, "SELL", 4)):
                await rpc.call(
                    "place_order",
                    strategy=strategy,
                    client_order_id=oid,
                    symbol="WFC",
                    action=action,
                    quantity=qty,
                )
            await events.wait_for("fill.bull", of_order(long_id))
            await events.wait_for("fill.bear", of_order(short_id))
            ko = con_id("WFC")
            per = {p["strategy"]: p for p in await rpc.call("get_positions") if p["con_id"] == ko}
            assert per["bull"]["quantity"] == 10.0 and per["bear"]["quantity"] == -4.0
            (agg,) = [p for p in await rpc.call("get_positions", aggregate=True) if p["con_id"] == ko]
            assert agg["quantity"] == 6.0 and agg["by_strategy"] == {"bull": 10.0, "bear": -4.0}
            await poll(
                rpc,
                "get_positions",
                lambda rows: any(r["con_id"] == ko and r["ib_quantity"] == 6.0 for r in rows),
                aggregate=True,
            )
            pnl = await rpc.call("get_pnl")
            bull, bear = pnl["by_strategy"]["bull"], pnl["by_strategy"]["bear"]
            assert bull["commissions"] > 0 and bear["commissions"] > 0
            parts = sum(p["total"] for p in pnl["by_strategy"].values())
            assert pnl["total"]["total"] == pytest.approx(parts)
            only = await rpc.call("get_pnl", strategy="bear")
            assert list(only["by_strategy"]) == ["bear"] and only["total"]["total"] == pytest.approx(
                bear["total"]
            )

    run(body())


def test_order_when_placed_outside_bourse_then_booked_to_strategy_external(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events), connected(exchange, next_client_id()) as ib:
            await wait_connected(rpc)
            contract = Stock("XOM", "SMART", "USD")
            resting = ib.placeOrder(contract, LimitOrder("BUY", 1, round(anchor_price("XOM") * 0.5, 2)))
            adopted = await events.wait_for(
                "order.external", lambda b: b["perm_id"] == resting.order.permId != 0, within=10
            )
            assert adopted["strategy"] == "external" and adopted["order_ref"] == ""
            filled = ib.placeOrder(contract, MarketOrder("SELL", 2))
            fill = await events.wait_for("fill.external", lambda b: b["con_id"] == con_id("XOM"))
            assert fill["shares"] == 2.0 and fill["side"] == "SLD"
            await poll(
                rpc,
                "get_orders",
                lambda rows: any(r["perm_id"] == filled.order.permId for r in rows),
                strategy="external",
            )
            ib.cancelOrder(resting.order)
            await events.wait_for(
                "order.external", lambda b: b["perm_id"] == resting.order.permId and b["state"] == "Cancelled"
            )

    run(body())


def test_bracket_when_parent_fills_then_children_work_and_cancel_all_cancels_them(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            oid, price = coid("brk"), anchor_price("SPY")
            reply = await rpc.call(
                "place_order",
                strategy="bracket",
                client_order_id=oid,
                symbol="SPY",
                action="BUY",
                quantity=5,
                take_profit=round(price * 2, 2),
                stop_loss=round(price * 0.4, 2),
            )
            children = reply["children"]
            assert [c["client_order_id"] for c in children] == [f"{oid}.tp", f"{oid}.sl"]
            assert [(c["action"], c["order_type"]) for c in children] == [("SELL", "LMT"), ("SELL", "STP")]
            await events.wait_for("fill.bracket", of_order(oid))
            working = await poll(
                rpc, "get_orders", lambda rows: len(rows) == 2, strategy="bracket", open_only=True
            )
            assert {r["state"] for r in working} <= {"Submitted", "PreSubmitted"}
            result = await rpc.call("cancel_all", strategy="bracket")
            assert sorted(result["cancelled"]) == [f"{oid}.sl", f"{oid}.tp"] and result["errors"] == {}
            await poll(rpc, "get_orders", lambda rows: rows == [], strategy="bracket", open_only=True)

    run(body())


def test_place_order_when_cash_amount_then_quantity_sized_from_the_price(trader: TraderProcess) -> None:
    async def body() -> None:
        async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc:
            await wait_connected(rpc)
            oid, limit = coid("cash"), round(anchor_price("WMT") * 0.5, 2)
            reply = await rpc.call(
                "place_order",
                strategy="cash",
                client_order_id=oid,
                symbol="WMT",
                action="BUY",
                cash_amount=10_000.0,
                order_type="LMT",
                limit_price=limit,
            )
            assert reply["order"]["quantity"] == float(int(10_000 // limit))
            await rpc.call("cancel_order", client_order_id=oid, strategy="cash", wait_s=5)
            snap = await rpc.call("snapshot", symbol="WMT")
            assert snap["con_id"] == con_id("WMT") and snap["bid"] > 0

    run(body())


def test_rpc_when_params_are_bad_then_error_replies_name_the_problem(trader: TraderProcess) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, _events):
            await wait_connected(rpc)
            base: dict[str, Any] = {"strategy": "bad", "symbol": "AAPL", "action": "BUY", "quantity": 1}
            cases: list[tuple[dict[str, Any], str]] = [
                ({"client_order_id": coid(), "strategy": 7}, "bad_params"),
                ({"client_order_id": coid(), "quantity": "ten"}, "bad_params"),
                ({"client_order_id": coid(), "bogus": 1}, "bad_params"),
                ({"client_order_id": coid(), "order_type": "LMT"}, "bad_order"),
                ({"client_order_id": coid(), "action": "HOLD"}, "bad_order"),
                ({"client_order_id": coid(), "quantity": -5}, "bad_order"),
                ({"client_order_id": coid(), "cash_amount": 100.0}, "bad_order"),
                ({"client_order_id": coid(), "order_type": "TRAIL"}, "bad_order"),
                ({"client_order_id": coid(), "strategy": "external"}, "bad_order"),
                ({"client_order_id": coid(), "symbol": "NOSUCHSYM"}, "unknown_contract"),
            ]
            for change, code in cases:
                assert await error_code(rpc.call("place_order", **(base | change))) == code, change
            assert (
                await error_code(rpc.call("cancel_order", client_order_id="never-placed")) == "unknown_order"
            )
            assert (
                await error_code(rpc.call("modify_order", client_order_id="never-placed")) == "unknown_order"
            )
            assert await error_code(rpc.call("get_fills", source="elsewhere")) == "bad_params"
            assert await error_code(rpc.call("resolve_symbol")) == "bad_params"
            assert (
                await error_code(rpc.call("get_history", symbol="AAPL", bar_size="7 parsecs")) == "bad_params"
            )
            assert await error_code(rpc.call("no_such_method")) == "unknown_method"
            assert (await rpc.call("resolve_symbol", symbol="AAPL"))["conId"] == con_id("AAPL")

    run(body())


def test_market_data_when_subscribed_then_ticks_on_the_ticks_pub_and_history_as_a_frame(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with (
            AsyncRpcClient(trader.rpc, timeout=10.0) as rpc,
            TickSubscriber(trader.ticks, prefixes=["NKE"]) as ticks,
        ):
            await wait_connected(rpc)
            (info,) = await rpc.call("subscribe", owner="test", symbols=["NKE"])
            assert info["con_id"] == con_id("NKE") and info["owners"] == ["test"]
            async with asyncio.timeout(10):
                async for msg in ticks:
                    if msg.topic == "NKE" and not isinstance(msg, Event):
                        assert {"bid", "ask", "last", "con_id"} <= set(msg.frame.columns)
                        break
            status = await rpc.call("status")
            assert status["subscriptions"] >= 1 and status["last_tick_age_s"] is not None
            bars = await rpc.call("get_history", symbol="NKE", bar_size="5 mins", duration="3600 S")
            assert list(bars.columns)[:5] == ["open", "high", "low", "close", "volume"] and len(bars) > 0
            assert (await rpc.call("unsubscribe", owner="test"))["unsubscribed"] == 1
            assert await rpc.call("get_subscriptions", owner="test") == []

    run(body())


def test_stop_and_trailing_orders_when_placed_then_working_at_the_exchange_until_cancelled(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc:
            await wait_connected(rpc)
            high = round(anchor_price("UBER") * 3, 2)
            kinds: list[dict[str, Any]] = [
                {"order_type": "STP", "action": "BUY", "stop_price": high},
                {"order_type": "STP LMT", "action": "BUY", "stop_price": high, "limit_price": high + 1},
                {"order_type": "TRAIL", "action": "SELL", "trail_percent": 50.0, "tif": "GTC"},
                {"order_type": "TRAIL", "action": "SELL", "trail_amount": 40.0},
            ]
            for terms in kinds:
                reply = await rpc.call(
                    "place_order", strategy="stops", client_order_id=coid("stp"), symbol="UBER", quantity=1,
                    wait_s=5, **terms,
                )  # fmt: skip
                order = reply["order"]
                assert order["state"] in ("Submitted", "PreSubmitted"), order
                assert order["order_type"] == terms["order_type"]
                assert order["aux_price"] == terms.get("stop_price", terms.get("trail_amount"))
            result = await rpc.call("cancel_all", strategy="stops")
            assert len(result["cancelled"]) == len(kinds) and result["errors"] == {}
            await poll(rpc, "get_orders", lambda rows: rows == [], strategy="stops", open_only=True)

    run(body())


def test_control_when_reconnect_and_reconcile_requested_then_connected_again_and_nothing_to_fix(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            assert (await rpc.call("reconcile"))["count"] == 0  # the book agrees with IB
            before = (await rpc.call("status"))["ib"]["connects"]
            await rpc.call("reconnect")
            synced = await events.wait_for("reconcile", lambda b: b["reason"] == "sync: reconnect")
            assert synced["count"] == 0
            status = await wait_connected(rpc)
            assert status["ib"]["connects"] == before + 1 and status["reconcile"]["failures"] == 0
            account = await rpc.call("get_account")
            assert account["account"] == "DU1234567" and account["values"]["NetLiquidation"]["USD"] > 0
            portfolio = await rpc.call("get_portfolio")
            assert {row["con_id"] for row in portfolio} >= {con_id("AAPL")}

    run(body())
