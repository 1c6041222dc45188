"""The ``info`` dashboard's state and rendering, fed with events shaped as docs/rpc.md's (no sockets)."""

from __future__ import annotations

import io
import time
from typing import Any

from rich.console import Console

from trader.cli.dashboard import DashboardState, render

NOW_NS = 1_768_400_000_000_000_000


def order(client_order_id: str, state: str, *, working: bool, updated_ns: int = NOW_NS) -> dict[str, Any]:
    return {
        "client_order_id": client_order_id,
        "strategy": "sma",
        "order_ref": f"sma:{client_order_id}",
        "symbol": "AAPL",
        "con_id": 265598,
        "account": "DU1234567",
        "action": "BUY",
        "quantity": 10.0,
        "order_type": "LMT",
        "limit_price": 181.5,
        "aux_price": None,
        "tif": "DAY",
        "state": state,
        "ib_status": state,
        "filled": 0.0,
        "remaining": 10.0,
        "avg_fill_price": 0.0,
        "order_id": 12,
        "perm_id": 1000012,
        "client_id": 0,
        "reason": "",
        "created_ns": NOW_NS,
        "updated_ns": updated_ns,
        "working": working,
        "previous": None,
        "time_ns": updated_ns,
    }


def fill(exec_id: str, shares: float, price: float, commission: float | None) -> dict[str, Any]:
    return {
        "kind": "fill",
        "exec_id": exec_id,
        "strategy": "sma",
        "client_order_id": "sma-0001",
        "order_id": 12,
        "perm_id": 1000012,
        "account": "DU1234567",
        "con_id": 265598,
        "symbol": "AAPL",
        "side": "BOT",
        "shares": shares,
        "quantity": shares,
        "price": price,
        "commission": commission,
        "currency": "USD",
        "multiplier": 1.0,
        "time_ns": NOW_NS,
        "order_state": "Filled",
        "order_filled": shares,
    }


def position(strategy: str, symbol: str, con_id: int, quantity: float, avg: float) -> dict[str, Any]:
    return {
        "account": "DU1234567",
        "strategy": strategy,
        "con_id": con_id,
        "symbol": symbol,
        "quantity": quantity,
        "avg_price": avg,
        "avg_cost": avg,
        "multiplier": 1.0,
        "realized": -1.0,
        "commissions": 1.0,
        "fills": 1,
        "mark": None,
        "market_value": None,
        "unrealized": None,
        "net_quantity": quantity,
        "time_ns": NOW_NS,
    }


def screen(state: DashboardState, width: int = 120, height: int = 40) -> str:
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)
    console.print(render(state, width, height))
    return console.export_text()


def connected_state() -> DashboardState:
    state = DashboardState()
    state.load(
        {
            "status": {
                "ib": {"state": "connected", "since": time.time() - 5, "client_id": 0, "account": "DU1234567"}
            },
            "subscriptions": [{"con_id": 265598, "topic": "AAPL"}, {"con_id": 272093, "topic": "MSFT"}],
            "processes": {"running": True, "jobs": [{"name": "trader", "state": "ready"}]},
        }
    )
    return state


def test_render_when_events_arrive_then_positions_orders_fills_and_pnl_are_shown() -> None:
    state = connected_state()
    state.apply_event("order.sma", order("sma-0001", "Submitted", working=True))
    state.apply_event("order.sma", order("sma-0002", "Filled", working=False))
    state.apply_event("fill.sma", fill("0001.01", 10.0, 180.85, None))
    state.apply_event("fill.sma", fill("0001.01", 10.0, 180.85, 1.0) | {"kind": "commission"})
    state.apply_event("position.sma", position("sma", "AAPL", 265598, 10.0, 180.85))
    state.apply_ticks(
        "AAPL", [{"time": NOW_NS, "con_id": 265598, "bid": 181.85, "ask": 181.87, "last": 181.86}]
    )

    text = screen(state)

    assert "connected" in text and "DU1234567" in text and "trader ready" in text
    assert "sma-0001" in text and "Submitted" in text
    assert "sma-0002" not in text  # filled: not an open order
    assert "BOT 10" in text and "180.85" in text and "1.00" in text  # the fill with its commission
    assert "181.86" in text  # the mark: the tick's mid
    assert "10.10" in text  # unrealized (181.86 - 180.85) * 10 at the tick's mark
    assert "9.10" in text  # total: realized -1 + unrealized 10.10
    assert len(state.fills) == 1
    assert state.pnl()["total"]["unrealized"] == state.pnl()["sma"]["unrealized"]


def test_apply_event_when_an_older_order_update_comes_late_then_the_newer_state_is_kept() -> None:
    state = connected_state()
    state.apply_event("order.sma", order("sma-0001", "Cancelled", working=False, updated_ns=NOW_NS + 10))
    state.apply_event("order.sma", order("sma-0001", "Submitted", working=True, updated_ns=NOW_NS))

    assert state.open_orders() == []
    assert state.orders["sma-0001"]["state"] == "Cancelled"


def test_apply_event_when_connection_drops_then_the_header_shows_the_new_state_and_errors() -> None:
    state = connected_state()
    state.apply_event(
        "connection",
        {
            "state": "connecting",
            "previous": "connected",
            "since": time.time(),
            "reason": "connection lost",
            "code": 1100,
            "client_id": 0,
        },
    )
    state.apply_event(
        "error", {"source": "ib", "code": 1100, "message": "Connectivity between IB and TWS lost"}
    )
    state.apply_event("reconcile", {"reason": "sync: reconnect", "count": 0, "findings": []})

    text = screen(state)

    assert "IB: connecting" in text
    assert "ib 1100: Connectivity between IB and TWS lost" in text
    assert "sync: reconnect: 0 findings" in text
    assert "events 3" in text


def test_apply_ticks_when_quotes_stream_then_the_latest_prices_of_each_symbol_are_shown() -> None:
    state = connected_state()
    state.apply_ticks(
        "MSFT", [{"time": NOW_NS, "con_id": 272093, "bid": 423.5, "ask": 423.6, "last": 423.55}]
    )
    state.apply_ticks(
        "MSFT", [{"time": NOW_NS + 1, "con_id": 272093, "bid": 424.0, "ask": 424.1, "last": float("nan")}]
    )

    text = screen(state)

    assert "424.00" in text and "424.10" in text
    assert "423.55" in text  # the last trade stays when a quote comes without one
    assert "AAPL" in text  # subscribed, no tick yet: listed without prices
    assert state.marks[272093] == 424.05


def test_render_when_narrow_and_pycron_down_then_tables_stack_and_pycron_is_named() -> None:
    state = connected_state()
    state.load({"processes": {"running": False, "error": "pycron is not running at http://127.0.0.1:8081"}})
    state.apply_event("position.manual", position("manual", "MSFT", 272093, -3.0, 423.94))

    text = screen(state, width=80, height=30)

    assert "pycron is not running at http://127.0.0.1:8081" in text
    assert "manual" in text and "-3" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_to_dict_when_state_is_loaded_then_it_is_plain_data_for_json() -> None:
    state = connected_state()
    state.apply_event("position.sma", position("sma", "AAPL", 265598, 10.0, 180.85))

    doc = state.to_dict()

    assert doc["connection"]["state"] == "connected"
    assert doc["trading"] == {"state": "active", "note": "no risk gate yet"}
    assert doc["positions"][0]["symbol"] == "AAPL"
    assert doc["pnl"]["total"]["realized"] == -1.0
