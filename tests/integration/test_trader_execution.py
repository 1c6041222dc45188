"""Execution end to end: the trader service on the paper exchange (real processes, free ports).

Brackets driven by the exchange's ``shock`` fault (control RPC), every new order type, OCO groups,
exits attached to a position, and the algorithms (TWAP, iceberg) the trader runs: completion,
display size, cancellation, and children refused by the risk gate. Each test has its own
strategy and instrument (a shock moves the instrument for the rest of the module). Waits are on
events or polled RPCs with deadlines.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.exchange_fixtures import ExchangeProcess, run
from tests.integration.test_trader_orders import (
    Events,
    TraderProcess,
    coid,
    error_code,
    of_order,
    poll,
    trader_session,
    wait_connected,
)
from trader.messaging.rpc import AsyncRpcClient

pytestmark = pytest.mark.integration

WORKING = ("PreSubmitted", "Submitted")


async def shock(exchange: ExchangeProcess, symbol: str, percent: float) -> dict[str, Any]:
    async with AsyncRpcClient(exchange.control, timeout=10.0) as control:
        result: dict[str, Any] = await control.call("shock", symbol=symbol, percent=percent)
        return result


async def mid(rpc: AsyncRpcClient, symbol: str) -> float:
    snap = await poll(rpc, "snapshot", lambda s: s["bid"] > 0 and s["ask"] > 0, symbol=symbol)
    return (float(snap["bid"]) + float(snap["ask"])) / 2


async def bought(rpc: AsyncRpcClient, events: Events, strategy: str, symbol: str, quantity: float) -> None:
    """A filled market BUY of ``quantity`` for ``strategy``."""
    oid = coid("entry")
    await rpc.call(
        "place_order", strategy=strategy, client_order_id=oid, symbol=symbol, action="BUY", quantity=quantity
    )
    await events.wait_for(f"order.{strategy}", of_order(oid, "Filled"))
    await poll(
        rpc,
        "get_positions",
        lambda rows: sum(r["quantity"] for r in rows) == quantity,
        strategy=strategy,
        what=f"{strategy} long {quantity}",
    )


def algo_done(parent: str) -> Any:
    return lambda b: b.get("client_order_id") == parent and b.get("state") == "done"


# -- brackets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "percent", "exit_suffix", "cancelled_suffix"),
    [("NVDA", 8.0, ".tp", ".sl"), ("AMD", -8.0, ".sl", ".tp")],
)
def test_bracket_when_price_shocked_then_one_exit_fills_and_the_other_is_cancelled(  # noqa: PLR0917
    trader: TraderProcess,
    exchange: ExchangeProcess,
    symbol: str,
    percent: float,
    exit_suffix: str,
    cancelled_suffix: str,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy, oid = f"brk{symbol.lower()}", coid("brk")
            price = await mid(rpc, symbol)
            reply = await rpc.call(
                "place_order", strategy=strategy, client_order_id=oid, symbol=symbol, action="BUY",
                quantity=5, take_profit=round(price * 1.04, 2), stop_loss=round(price * 0.96, 2),
            )  # fmt: skip
            assert [c["client_order_id"] for c in reply["children"]] == [f"{oid}.tp", f"{oid}.sl"]
            await events.wait_for(f"order.{strategy}", of_order(oid, "Filled"))
            await poll(rpc, "get_orders", lambda rows: len(rows) == 2, strategy=strategy, open_only=True)
            await shock(exchange, symbol, percent)
            filled = await events.wait_for(f"order.{strategy}", of_order(oid + exit_suffix, "Filled"))
            assert filled["filled"] == 5.0
            await events.wait_for(f"order.{strategy}", of_order(oid + cancelled_suffix, "Cancelled"))
            await poll(rpc, "get_orders", lambda rows: rows == [], strategy=strategy, open_only=True)
            await poll(
                rpc, "get_positions", lambda rows: all(r["quantity"] == 0 for r in rows), strategy=strategy
            )

    run(body(), timeout=60)


# -- order types ------------------------------------------------------------------------------------


def test_new_order_types_when_placed_then_accepted_and_working_and_fok_opg_refused(
    trader: TraderProcess,
) -> None:
    """TRAIL LIMIT, MOC and LOC are accepted and work (MOC/LOC until the session's close: on the
    paper exchange's always-open calendar that is the instrument's local midnight on the wall
    clock, which a test cannot bring forward, so their auction fill is covered by the exchange's
    unit tests); FOK and OPG are refused before they are sent."""

    async def body() -> None:
        async with trader_session(trader) as (rpc, _events):
            await wait_connected(rpc)
            price = await mid(rpc, "IBM")
            kinds: list[dict[str, Any]] = [
                {"order_type": "TRAIL LIMIT", "action": "SELL", "trail_amount": round(price * 0.3, 2),
                 "limit_offset": 1.0},
                {"order_type": "TRAIL_LIMIT", "action": "BUY", "trail_percent": 30.0, "limit_offset": 0.5,
                 "tif": "GTC"},
                {"order_type": "MOC", "action": "BUY"},
                {"order_type": "LOC", "action": "BUY", "limit_price": round(price * 0.5, 2)},
            ]  # fmt: skip
            for terms in kinds:
                reply = await rpc.call(
                    "place_order", strategy="types", client_order_id=coid("typ"), symbol="IBM", quantity=1,
                    wait_s=5, **terms,
                )  # fmt: skip
                order = reply["order"]
                assert order["state"] in WORKING, order
                assert order["order_type"] == terms["order_type"].replace("_", " ")
            for tif in ("FOK", "OPG"):
                call = rpc.call(
                    "place_order", strategy="types", client_order_id=coid("tif"), symbol="IBM",
                    action="BUY", quantity=1, order_type="LMT", limit_price=1.0, tif=tif,
                )  # fmt: skip
                assert await error_code(call) == "bad_order"
            bad = rpc.call(
                "place_order", strategy="types", client_order_id=coid("bad"), symbol="IBM", action="BUY",
                quantity=1, order_type="TRAIL LIMIT", trail_amount=1.0,
            )  # fmt: skip
            assert await error_code(bad) == "bad_order"  # no limit_offset
            result = await rpc.call("cancel_all", strategy="types")
            assert len(result["cancelled"]) == len(kinds) and result["errors"] == {}
            await poll(rpc, "get_orders", lambda rows: rows == [], strategy="types", open_only=True)

    run(body(), timeout=60)


def test_trail_limit_when_price_falls_through_the_stop_then_it_sells(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy = "traillimit"
            await bought(rpc, events, strategy, "XOM", 4)
            price = await mid(rpc, "XOM")
            oid = coid("trl")
            reply = await rpc.call(
                "place_order", strategy=strategy, client_order_id=oid, symbol="XOM", action="SELL",
                quantity=4, order_type="TRAIL LIMIT", trail_amount=round(price * 0.02, 2),
                limit_offset=round(price * 0.2, 2), wait_s=5,
            )  # fmt: skip
            assert reply["order"]["state"] in WORKING
            await shock(exchange, "XOM", -8.0)
            await events.wait_for(f"order.{strategy}", of_order(oid, "Filled"))
            await poll(
                rpc, "get_positions", lambda rows: all(r["quantity"] == 0 for r in rows), strategy=strategy
            )

    run(body(), timeout=60)


# -- OCO and exits of a position --------------------------------------------------------------------


def test_place_oco_when_one_fills_then_the_other_is_cancelled(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy = "oco"
            await bought(rpc, events, strategy, "JPM", 6)
            price = await mid(rpc, "JPM")
            oid = coid("oco")
            legs = [
                {"symbol": "JPM", "action": "SELL", "quantity": 6, "order_type": "LMT",
                 "limit_price": round(price * 1.04, 2), "tif": "GTC"},
                {"symbol": "JPM", "action": "SELL", "quantity": 6, "order_type": "STP",
                 "stop_price": round(price * 0.9, 2), "tif": "GTC"},
            ]  # fmt: skip
            reply = await rpc.call("place_oco", strategy=strategy, client_order_id=oid, orders=legs, wait_s=5)
            assert reply["oca_group"] == f"oca:{oid}"
            assert [o["client_order_id"] for o in reply["orders"]] == [f"{oid}.1", f"{oid}.2"]
            assert all(o["state"] in WORKING for o in reply["orders"]), reply
            again = await rpc.call("place_oco", strategy=strategy, client_order_id=oid, orders=legs)
            assert again["created"] is False
            bad = rpc.call("place_oco", strategy=strategy, client_order_id=coid("oco"), orders=legs[:1])
            assert await error_code(bad) == "bad_order"
            await shock(exchange, "JPM", 8.0)
            await events.wait_for(f"order.{strategy}", of_order(f"{oid}.1", "Filled"))
            await events.wait_for(f"order.{strategy}", of_order(f"{oid}.2", "Cancelled"))
            await poll(
                rpc, "get_positions", lambda rows: all(r["quantity"] == 0 for r in rows), strategy=strategy
            )

    run(body(), timeout=60)


def test_protect_position_when_stop_or_trail_then_exit_sized_to_the_position_and_stop_fills(
    trader: TraderProcess, exchange: ExchangeProcess
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy = "protect"
            none = rpc.call("protect_position", strategy=strategy, symbol="WFC", stop_price=1.0)
            assert await error_code(none) == "bad_order"  # no position
            await bought(rpc, events, strategy, "WFC", 7)
            price = await mid(rpc, "WFC")
            wrong = rpc.call(
                "protect_position", strategy=strategy, symbol="WFC", stop_price=round(price * 1.2, 2)
            )
            assert await error_code(wrong) == "bad_order"  # above the market: would trigger at once
            trail = await rpc.call(
                "protect_position", strategy=strategy, symbol="WFC", trail_percent=40.0, wait_s=5
            )
            order = trail["order"]
            assert (order["action"], order["quantity"], order["order_type"], order["tif"]) == (
                "SELL", 7.0, "TRAIL", "GTC",
            )  # fmt: skip
            assert order["state"] in WORKING and trail["position"] == 7.0
            await rpc.call("cancel_order", client_order_id=order["client_order_id"], wait_s=5)
            oid = coid("prot")
            stop = await rpc.call(
                "protect_position", strategy=strategy, symbol="WFC", stop_price=round(price * 0.95, 2),
                client_order_id=oid, wait_s=5,
            )  # fmt: skip
            assert (stop["order"]["action"], stop["order"]["quantity"], stop["order"]["order_type"]) == (
                "SELL", 7.0, "STP",
            )  # fmt: skip
            await shock(exchange, "WFC", -10.0)
            await events.wait_for(f"order.{strategy}", of_order(oid, "Filled"))
            await poll(
                rpc, "get_positions", lambda rows: all(r["quantity"] == 0 for r in rows), strategy=strategy
            )

    run(body(), timeout=60)


# -- algorithms -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "style"), [("GOOGL", "market"), ("META", "limit")])
def test_twap_when_run_then_its_quantity_completes_across_slices(
    trader: TraderProcess, symbol: str, style: str
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy, parent = f"twap{style}", coid("twap")
            reply = await rpc.call(
                "place_algo", strategy=strategy, client_order_id=parent, algo="twap", symbol=symbol,
                action="BUY", quantity=30, duration_s=3.0, slices=3, style=style,
            )  # fmt: skip
            assert reply["created"] is True and reply["algo"]["algo"] == "twap"
            again = await rpc.call(
                "place_algo", strategy=strategy, client_order_id=parent, algo="twap", symbol=symbol,
                action="BUY", quantity=30, duration_s=3.0, slices=3, style=style,
            )  # fmt: skip
            assert again["created"] is False
            done = await events.wait_for(f"algo.{strategy}", algo_done(parent), within=20)
            assert done["reason"] == "filled", done
            assert done["filled"] == 30.0 and done["remaining"] == 0.0
            children = done["children"]
            assert sum(c["filled"] for c in children) == 30.0
            slices = {c["slice"] for c in children}
            assert len(slices) >= (3 if style == "market" else 1), children
            if style == "market":
                assert [c["quantity"] for c in children] == [10.0, 10.0, 10.0]
            await poll(
                rpc, "get_positions", lambda rows: sum(r["quantity"] for r in rows) == 30.0, strategy=strategy
            )
            (record,) = await rpc.call("get_algos", client_order_id=parent)
            assert record["state"] == "done" and record["strategy"] == strategy
            assert await rpc.call("get_algos", strategy=strategy, active_only=True) == []

    run(body(), timeout=60)


def test_iceberg_when_filling_then_never_more_than_display_working(trader: TraderProcess) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy, parent = "iceberg", coid("ice")
            price = await mid(rpc, "DIS")
            await rpc.call(
                "place_algo", strategy=strategy, client_order_id=parent, algo="iceberg", symbol="DIS",
                action="BUY", quantity=40, display=10, limit_price=round(price * 1.05, 2),
            )  # fmt: skip
            done = await events.wait_for(f"algo.{strategy}", algo_done(parent), within=30)
            assert done["reason"] == "filled" and done["filled"] == 40.0, done
            assert len(done["children"]) >= 4
            assert all(c["quantity"] <= 10.0 for c in done["children"])
            # at every update of any child, the book's working children total at most the display
            remaining: dict[str, float] = {}
            updates = events.seen(f"order.{strategy}", lambda b: b["client_order_id"].startswith(parent))
            assert updates
            for update in updates:
                working = update["working"] and update["state"] not in ("Filled", "Cancelled")
                remaining[update["client_order_id"]] = float(update["remaining"] or 0) if working else 0.0
                assert sum(remaining.values()) <= 10.0, (update, remaining)
            for record in events.seen(f"algo.{strategy}", lambda b: b["client_order_id"] == parent):
                assert record["working"] <= 10.0, record

    run(body(), timeout=60)


def test_cancel_algo_when_children_work_then_nothing_is_left_working(trader: TraderProcess) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy, parent = "algocancel", coid("ice")
            price = await mid(rpc, "BAC")
            await rpc.call(
                "place_algo", strategy=strategy, client_order_id=parent, algo="iceberg", symbol="BAC",
                action="BUY", quantity=50, display=10, limit_price=round(price * 0.5, 2),
            )  # fmt: skip
            await poll(rpc, "get_orders", lambda rows: len(rows) == 1, strategy=strategy, open_only=True)
            twap = coid("twap")
            await rpc.call(
                "place_algo", strategy=strategy, client_order_id=twap, algo="twap", symbol="BAC",
                action="SELL", quantity=20, duration_s=60.0, slices=4, style="limit",
            )  # fmt: skip
            await poll(rpc, "get_orders", lambda rows: len(rows) == 2, strategy=strategy, open_only=True)
            for oid in (parent, twap):
                reply = await rpc.call("cancel_algo", client_order_id=oid, wait_s=10)
                assert reply["algo"]["state"] == "done" and reply["algo"]["reason"] == "cancelled", reply
                assert reply["algo"]["working"] == 0.0
            await poll(rpc, "get_orders", lambda rows: rows == [], strategy=strategy, open_only=True)
            assert await rpc.call("get_algos", strategy=strategy, active_only=True) == []
            assert (
                await error_code(rpc.call("cancel_algo", client_order_id="no-such-algo")) == "unknown_order"
            )
            await events.wait_for(f"algo.{strategy}", algo_done(parent))

    run(body(), timeout=60)


def test_algo_when_the_risk_gate_refuses_then_parent_or_child_refusal_is_reported(
    trader: TraderProcess,
) -> None:
    async def body() -> None:
        async with trader_session(trader) as (rpc, events):
            await wait_connected(rpc)
            strategy = "algorisk"
            scope = f"strategy:{strategy}"
            price = await mid(rpc, "F")
            await rpc.call("risk_set", key="max_order_quantity", value=35, scope=scope)
            await rpc.call("risk_set", key="max_position_quantity", value=5, scope=scope)
            terms: dict[str, Any] = {
                "strategy": strategy, "algo": "iceberg", "symbol": "F", "action": "BUY", "display": 10,
                "limit_price": round(price * 0.5, 2),
            }  # fmt: skip
            too_big = rpc.call("place_algo", client_order_id=coid("big"), quantity=50, **terms)
            assert await error_code(too_big) == "refused"  # the whole parent: 50 > 35
            parent = coid("ice")
            await rpc.call("place_algo", client_order_id=parent, quantity=30, **terms)
            rejected = await events.wait_for(
                f"algo.{strategy}",
                lambda b: (
                    b["client_order_id"] == parent and any(c["state"] == "Rejected" for c in b["children"])
                ),
            )
            assert any("max_position_quantity" in e for e in rejected["errors"]), rejected
            child = await events.wait_for(f"order.{strategy}", of_order(f"{parent}.1", "Rejected"))
            assert "max_position_quantity" in child["reason"]
            done = await events.wait_for(f"algo.{strategy}", algo_done(parent), within=20)
            assert done["reason"].startswith("failed"), done
            assert done["filled"] == 0.0
            await rpc.call("risk_set", key="max_position_quantity", value=None, scope=scope)
            await rpc.call("risk_set", key="max_order_quantity", value=None, scope=scope)

    run(body(), timeout=60)
