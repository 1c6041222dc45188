"""The paper exchange's matching engine: order types, TIFs, sessions, brackets, OCA, errors, state."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.exchange.account import Account
from trader.exchange.events import (
    UNSET_DOUBLE,
    CommissionReportEvent,
    ErrorEvent,
    Event,
    ExecutionEvent,
    OrderStatusEvent,
    PositionEvent,
    WhatIfEvent,
)
from trader.exchange.instruments import Universe, load_universe
from trader.exchange.market import Market, Quote
from trader.exchange.matching import EngineConfig, MatchingEngine
from trader.exchange.orders import Order

NS = 1_000_000_000
UNIVERSE = load_universe()
AAPL = 265598
ES = UNIVERSE.by_symbol("ES", "FUT").conId


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * NS


RTH = utc(2026, 11, 18, 15, 0)  # Wednesday 10:00 New York
PRE_MARKET = utc(2026, 11, 18, 13, 0)  # 08:00 New York
CLOSE = utc(2026, 11, 18, 21, 0)  # 16:00 New York


@dataclass
class Env:
    universe: Universe
    market: Market
    account: Account
    engine: MatchingEngine
    now: int = RTH

    def quote(
        self, bid: float, ask: float, last: float | None = None, size: float = 100, con_id: int = AAPL
    ) -> list[Event]:
        q = Quote(
            con_id, self.now, bid, ask, size, size, bid if last is None else last, 1, 0, (bid + ask) / 2, 0
        )
        return self.engine.on_quote(q, self.now)

    def place(self, order: Order) -> list[Event]:
        return self.engine.place(order, self.now)


def make_env(config: EngineConfig | None = None, now: int = RTH) -> Env:
    market = Market(UNIVERSE)
    account = Account(UNIVERSE)
    env = Env(UNIVERSE, market, account, MatchingEngine(UNIVERSE, market, account, config=config), now)
    env.quote(100.00, 100.02)
    return env


@pytest.fixture
def env() -> Env:
    return make_env()


def lmt(order_id: int, action: str, qty: float, price: float, **kw: object) -> Order:
    return Order(order_id, 1, AAPL, action, qty, "LMT", lmtPrice=price, **kw)  # type: ignore[arg-type]


def mkt(order_id: int, action: str, qty: float, **kw: object) -> Order:
    return Order(order_id, 1, AAPL, action, qty, "MKT", **kw)  # type: ignore[arg-type]


def of(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def statuses(events: list[Event], order_id: int | None = None) -> list[str]:
    return [e.status for e in of(events, OrderStatusEvent) if order_id is None or e.orderId == order_id]


def errors(events: list[Event]) -> list[int]:
    return [e.code for e in of(events, ErrorEvent)]


def fills(events: list[Event], order_id: int | None = None) -> list[tuple[float, float]]:
    return [
        (e.shares, e.price) for e in of(events, ExecutionEvent) if order_id is None or e.orderId == order_id
    ]


# -- market orders ------------------------------------------------------------------------------------


def test_market_buy_when_larger_than_displayed_size_then_fills_at_the_ask_over_several_quotes(
    env: Env,
) -> None:
    events = env.place(mkt(1, "BUY", 250))
    assert fills(events) == [(100, 100.02)]
    assert statuses(events) == ["Submitted", "Submitted"]
    more = env.quote(100.01, 100.03) + env.quote(100.02, 100.04)
    assert fills(more) == [(100, 100.03), (50, 100.04)]
    assert statuses(more)[-1] == "Filled"
    last = of(more, OrderStatusEvent)[-1]
    assert (last.filled, last.remaining) == (250, 0)
    assert last.avgFillPrice == pytest.approx((100 * 100.02 + 100 * 100.03 + 50 * 100.04) / 250)


def test_market_sell_when_partial_fills_disabled_then_fills_everything_at_the_bid() -> None:
    env = make_env(EngineConfig(partial_fills=False))
    events = env.place(mkt(1, "SELL", 1000))
    assert fills(events) == [(1000, 100.00)]
    assert statuses(events)[-1] == "Filled"


def test_execution_when_filled_then_has_tws_ids_side_and_commission_report(env: Env) -> None:
    events = env.place(mkt(1, "BUY", 100, orderRef="note"))
    execution = of(events, ExecutionEvent)[0]
    report = of(events, CommissionReportEvent)[0]
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9a-f]{8}\.01\.01", execution.execId)
    assert (execution.side, execution.exchange, execution.orderRef) == ("BOT", "ISLAND", "note")
    assert (execution.cumQty, execution.avgPrice, execution.acctNumber) == (100, 100.02, "DU1234567")
    assert report.execId == execution.execId
    assert (report.commission, report.currency, report.realizedPNL) == (1.0, "USD", UNSET_DOUBLE)
    assert of(events, PositionEvent)[0].position == 100
    closing = env.place(mkt(2, "SELL", 100))
    assert of(closing, CommissionReportEvent)[0].realizedPNL == pytest.approx((100.00 - 100.02) * 100 - 2.0)


# -- limit orders ---------------------------------------------------------------------------------------


def test_limit_buy_when_not_marketable_then_submitted_and_fills_at_the_limit_when_crossed(env: Env) -> None:
    events = env.place(lmt(1, "BUY", 100, 99.50))
    assert statuses(events) == ["Submitted"] and not fills(events)
    assert not fills(env.quote(99.60, 99.62))
    crossed = env.quote(99.40, 99.45)
    assert fills(crossed) == [(100, 99.50)]
    assert of(crossed, ExecutionEvent)[0].lastLiquidity == 1


def test_limit_buy_when_marketable_on_arrival_then_fills_at_the_touch(env: Env) -> None:
    assert fills(env.place(lmt(1, "BUY", 100, 101.00))) == [(100, 100.02)]


def test_limit_sell_when_bid_below_limit_then_waits(env: Env) -> None:
    env.place(lmt(1, "SELL", 100, 100.50))
    assert not fills(env.quote(100.40, 100.45))
    assert fills(env.quote(100.55, 100.60)) == [(100, 100.50)]


# -- stops and trailing stops -----------------------------------------------------------------------


def test_stop_buy_when_last_reaches_the_stop_then_triggers_and_fills_at_the_ask(env: Env) -> None:
    events = env.place(Order(1, 1, AAPL, "BUY", 100, "STP", auxPrice=101.00))
    assert statuses(events) == ["PreSubmitted"]
    assert not env.quote(100.90, 100.95, last=100.95)
    triggered = env.quote(101.00, 101.02, last=101.00)
    assert statuses(triggered) == ["Submitted", "Filled"]
    assert fills(triggered) == [(100, 101.02)]


def test_stop_limit_when_triggered_beyond_the_limit_then_rests_as_a_limit(env: Env) -> None:
    env.place(Order(1, 1, AAPL, "SELL", 100, "STP LMT", auxPrice=99.00, lmtPrice=98.90))
    triggered = env.quote(98.80, 98.85, last=98.95)
    assert statuses(triggered) == ["Submitted"] and not fills(triggered)
    assert fills(env.quote(98.95, 98.97)) == [(100, 98.90)]


def test_trailing_stop_when_market_rises_then_the_stop_follows_and_never_falls_back(env: Env) -> None:
    events = env.place(Order(1, 1, AAPL, "SELL", 100, "TRAIL", auxPrice=0.50, trailStopPrice=99.00))
    assert statuses(events) == ["PreSubmitted"]
    env.quote(101.00, 101.02, last=101.00)
    stop = env.engine.open_orders()[0].order.trailStopPrice
    assert stop == 100.50
    env.quote(100.80, 100.82, last=100.80)
    assert env.engine.open_orders()[0].order.trailStopPrice == 100.50
    triggered = env.quote(100.48, 100.50, last=100.49)
    assert fills(triggered) == [(100, 100.48)]


def test_trailing_percent_when_no_initial_stop_then_starts_from_the_market(env: Env) -> None:
    env.place(Order(1, 1, AAPL, "BUY", 100, "TRAIL", trailingPercent=1.0))
    env.quote(100.00, 100.02, last=100.00)
    assert env.engine.open_orders()[0].order.trailStopPrice == 101.00
    env.quote(99.00, 99.02, last=99.00)
    assert env.engine.open_orders()[0].order.trailStopPrice == 99.99
    assert fills(env.quote(100.00, 100.02, last=100.00)) == [(100, 100.02)]


def test_trail_limit_when_triggered_then_the_limit_is_the_stop_minus_the_offset(env: Env) -> None:
    order = Order(
        1, 1, AAPL, "SELL", 100, "TRAIL LIMIT", auxPrice=1.00, trailStopPrice=99.00, lmtPriceOffset=0.10
    )
    env.place(order)
    triggered = env.quote(98.80, 98.85, last=98.95)
    assert statuses(triggered) == ["Submitted"] and not fills(triggered)
    assert fills(env.quote(98.90, 98.92)) == [(100, 98.90)]


# -- time in force, sessions ----------------------------------------------------------------------------


def test_ioc_when_partially_fillable_then_fills_what_it_can_and_cancels_the_rest(env: Env) -> None:
    events = env.place(mkt(1, "BUY", 300, tif="IOC"))
    assert fills(events) == [(100, 100.02)]
    assert statuses(events)[-1] == "Cancelled"
    assert of(events, OrderStatusEvent)[-1].filled == 100


def test_day_order_when_the_regular_session_closes_then_cancelled(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 90.00))
    env.place(lmt(2, "BUY", 100, 90.00, tif="GTC"))
    assert not env.engine.on_time(CLOSE - 1)
    events = env.engine.on_time(CLOSE)
    assert statuses(events, 1) == ["Cancelled"]
    assert statuses(events, 2) == ["PreSubmitted"]
    assert statuses(env.engine.on_time(utc(2026, 11, 19, 14, 30)), 2) == ["Submitted"]


def test_order_when_placed_before_the_open_without_outside_rth_then_waits_for_the_open() -> None:
    env = make_env(now=PRE_MARKET)
    events = env.place(lmt(1, "BUY", 100, 101.00))
    assert statuses(events) == ["PreSubmitted"]
    assert 399 in errors(events)
    assert "2026-11-18 09:30:00 US/Eastern" in of(events, ErrorEvent)[0].text
    assert not env.quote(100.00, 100.02)
    env.now = utc(2026, 11, 18, 14, 30)
    assert statuses(env.engine.on_time(env.now)) == ["Submitted"]
    assert fills(env.quote(100.00, 100.02)) == [(100, 100.02)]


def test_order_when_outside_rth_allowed_then_fills_in_the_pre_market() -> None:
    env = make_env(now=PRE_MARKET)
    assert fills(env.place(lmt(1, "BUY", 100, 101.00, outsideRth=True))) == [(100, 100.02)]


def test_market_order_when_outside_rth_set_then_warns_2109_and_ignores_it() -> None:
    env = make_env(now=PRE_MARKET)
    events = env.place(mkt(1, "BUY", 100, outsideRth=True))
    assert 2109 in errors(events)
    assert statuses(events) == ["PreSubmitted"] and not fills(events)


def test_moc_when_the_session_closes_then_fills_at_the_closing_price(env: Env) -> None:
    env.place(Order(1, 1, AAPL, "BUY", 100, "MOC"))
    env.place(Order(2, 1, AAPL, "BUY", 100, "LOC", lmtPrice=1.00))
    events = env.engine.on_time(CLOSE)
    session = UNIVERSE[AAPL].calendar.session_at(CLOSE - 1, rth=True)
    assert session is not None
    assert fills(events, 1) == [(100, env.market.close_price(AAPL, session))]
    assert statuses(events, 2) == ["Cancelled"]


def test_moc_when_placed_on_a_future_then_rejected_as_unsupported(env: Env) -> None:
    assert errors(env.place(Order(1, 1, ES, "BUY", 1, "MOC"))) == [387]


def test_order_when_instrument_halted_then_does_not_fill_until_resumed(env: Env) -> None:
    env.market.halt(AAPL, env.now)
    assert statuses(env.place(mkt(1, "BUY", 100))) == ["PreSubmitted"]
    assert not fills(env.quote(100.00, 100.02))
    env.market.resume(AAPL)
    assert fills(env.quote(100.00, 100.02)) == [(100, 100.02)]


# -- brackets and OCA -------------------------------------------------------------------------------------


def bracket(env: Env, take_profit: float = 101.00, stop: float = 99.00) -> list[Event]:
    events = env.place(lmt(1, "BUY", 100, 99.50, transmit=False))
    events += env.place(lmt(2, "SELL", 100, take_profit, parentId=1, transmit=False))
    events += env.place(Order(3, 1, AAPL, "SELL", 100, "STP", auxPrice=stop, parentId=1, transmit=True))
    return events


def test_bracket_when_children_untransmitted_then_nothing_works_until_the_last_child(env: Env) -> None:
    events = env.place(lmt(1, "BUY", 100, 101.00, transmit=False))
    events += env.place(lmt(2, "SELL", 100, 102.00, parentId=1, transmit=False))
    assert statuses(events) == ["PreSubmitted", "PreSubmitted"] and not fills(events)
    assert not fills(env.quote(100.00, 100.02))


def test_bracket_when_parent_fills_then_children_activate_and_one_fill_cancels_the_other(env: Env) -> None:
    events = bracket(env)
    assert statuses(events, 1)[-1] == "Submitted"
    assert statuses(events, 2)[-1] == "PreSubmitted" and statuses(events, 3)[-1] == "PreSubmitted"
    parent_fill = env.quote(99.40, 99.45, last=99.45)
    assert fills(parent_fill, 1) == [(100, 99.50)]
    assert statuses(parent_fill, 2)[-1] == "Submitted"
    take_profit = env.quote(101.00, 101.02, last=101.00)
    assert fills(take_profit, 2) == [(100, 101.00)]
    assert statuses(take_profit, 3) == ["Cancelled"]
    assert env.account.positions[AAPL].quantity == 0


def test_bracket_when_take_profit_partially_fills_then_the_stop_is_reduced(env: Env) -> None:
    bracket(env)
    env.quote(99.40, 99.45)
    events = env.quote(101.00, 101.02, size=40)
    assert fills(events, 2) == [(40, 101.00)]
    stop = [e for e in of(events, OrderStatusEvent) if e.orderId == 3][-1]
    assert (stop.order.totalQuantity, stop.remaining) == (60, 60)


def test_bracket_when_parent_cancelled_then_children_are_cancelled(env: Env) -> None:
    bracket(env)
    events = env.engine.cancel(1, 1, env.now)
    assert {e.orderId for e in of(events, OrderStatusEvent)} == {1, 2, 3}
    assert set(statuses(events)) == {"Cancelled"}


@pytest.mark.parametrize(("oca_type", "expected"), [(1, "Cancelled"), (2, "Submitted"), (3, "Submitted")])
def test_oca_group_when_one_order_fills_then_the_others_follow_the_oca_type(
    env: Env, oca_type: int, expected: str
) -> None:
    env.place(lmt(1, "BUY", 100, 99.00, ocaGroup="g", ocaType=oca_type))
    env.place(lmt(2, "BUY", 150, 98.00, ocaGroup="g", ocaType=oca_type))
    events = env.quote(98.95, 98.99, size=100)
    assert fills(events, 1) == [(100, 99.00)]
    other = [e for e in of(events, OrderStatusEvent) if e.orderId == 2]
    assert other[-1].status == expected
    if oca_type != 1:
        assert other[-1].remaining == 50


# -- modify, cancel -------------------------------------------------------------------------------------


def test_modify_when_limit_raised_above_the_ask_then_fills(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 99.00))
    events = env.place(lmt(1, "BUY", 100, 100.05))
    assert statuses(events)[0] == "Submitted"
    assert fills(events) == [(100, 100.02)]
    assert of(events, OrderStatusEvent)[0].permId == of(events, ExecutionEvent)[0].permId


def test_modify_when_quantity_changed_then_remaining_follows(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 99.00))
    event = of(env.place(lmt(1, "BUY", 300, 99.00)), OrderStatusEvent)[0]
    assert (event.order.totalQuantity, event.remaining) == (300, 300)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"action": "SELL"}, 105),
        ({"lmtPrice": 99.005}, 110),
        ({"totalQuantity": 0}, 434),
    ],
)
def test_modify_when_invalid_then_error_and_the_order_is_unchanged(env: Env, change: dict, code: int) -> None:  # type: ignore[type-arg]
    env.place(lmt(1, "BUY", 100, 99.00))
    assert errors(env.place(replace(lmt(1, "BUY", 100, 99.00), **change))) == [code]
    assert env.engine.open_orders()[0].order.lmtPrice == 99.00


def test_modify_when_order_filled_or_cancelled_then_104_or_103(env: Env) -> None:
    env.place(mkt(1, "BUY", 100))
    assert errors(env.place(mkt(1, "BUY", 200))) == [104]
    env.place(lmt(2, "BUY", 100, 90.00))
    env.engine.cancel(2, 1, env.now)
    assert errors(env.place(lmt(2, "BUY", 100, 91.00))) == [103]


def test_cancel_when_working_then_cancelled_with_202(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 90.00))
    events = env.engine.cancel(1, 1, env.now)
    assert statuses(events) == ["Cancelled"] and errors(events) == [202]


def test_cancel_when_unknown_or_done_then_10147_or_10148(env: Env) -> None:
    assert errors(env.engine.cancel(7, 1, env.now)) == [10147]
    env.place(mkt(1, "BUY", 100))
    events = env.engine.cancel(1, 1, env.now)
    assert errors(events) == [10148]
    assert of(events, ErrorEvent)[0].text.endswith("state: Filled.")


def test_cancel_when_another_client_asks_then_not_found(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 90.00))
    assert errors(env.engine.cancel(1, 2, env.now)) == [10147]


def test_global_cancel_when_several_clients_have_orders_then_all_are_cancelled(env: Env) -> None:
    env.place(lmt(1, "BUY", 100, 90.00))
    env.place(replace(lmt(1, "BUY", 100, 90.00), clientId=2))
    events = env.engine.global_cancel(env.now)
    assert sorted((e.clientId, e.status) for e in of(events, OrderStatusEvent)) == [
        (1, "Cancelled"),
        (2, "Cancelled"),
    ]
    assert not env.engine.open_orders()


# -- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "code"),
    [
        (Order(1, 1, 123, "BUY", 100, "MKT"), 200),
        (lmt(1, "BUY", 100, 99.999), 110),
        (lmt(1, "BUY", 0, 99.00), 434),
        (lmt(1, "BUY", 1.5, 99.00), 201),
        (Order(1, 1, AAPL, "BUY", 100, "PEG MID"), 387),
        (Order(1, 1, AAPL, "BUY", 100, "LMT"), 321),
        (Order(1, 1, AAPL, "BUY", 100, "STP"), 321),
        (Order(1, 1, AAPL, "HOLD", 100, "MKT"), 321),
        (Order(1, 1, AAPL, "BUY", 100, "MKT", tif="FOK"), 321),
        (Order(1, 1, AAPL, "BUY", 100, "TRAIL", auxPrice=1.0, trailingPercent=1.0), 321),
        (Order(1, 1, AAPL, "BUY", 100, "TRAIL LIMIT", auxPrice=1.0), 321),
        (Order(1, 1, ES, "BUY", 1, "LMT", lmtPrice=6000.10), 110),
        (lmt(1, "BUY", 100, 99.00, parentId=42), 201),
    ],
)
def test_order_when_invalid_then_tws_error_code_and_nothing_is_placed(
    env: Env, order: Order, code: int
) -> None:
    events = env.place(order)
    assert errors(events) == [code]
    assert not statuses(events)
    assert not env.engine.open_orders()


def test_order_when_margin_is_insufficient_then_inactive_with_201(env: Env) -> None:
    events = env.place(lmt(1, "BUY", 30_000, 99.00))
    assert statuses(events) == ["Inactive"]
    assert errors(events) == [201]
    assert "EQUITY WITH LOAN VALUE" in of(events, ErrorEvent)[0].text


def test_orders_when_two_clients_use_the_same_id_then_both_work_with_increasing_perm_ids(env: Env) -> None:
    a = of(env.place(lmt(5, "BUY", 100, 90.00)), OrderStatusEvent)[0]
    b = of(env.place(replace(lmt(5, "BUY", 100, 90.00), clientId=2)), OrderStatusEvent)[0]
    assert b.permId > a.permId
    assert (
        env.engine.next_order_id(1) == 6
        and env.engine.next_order_id(2) == 6
        and env.engine.next_order_id(3) == 1
    )
    assert len(env.engine.open_orders()) == 2 and len(env.engine.open_orders(client_id=2)) == 1


def test_what_if_when_requested_then_margin_figures_and_no_order(env: Env) -> None:
    events = env.place(lmt(1, "BUY", 100, 100.00, whatIf=True))
    assert len(events) == 1
    what_if = events[0]
    assert isinstance(what_if, WhatIfEvent)
    assert float(what_if.initMarginBefore) == 0.0
    assert float(what_if.initMarginAfter) == pytest.approx(100 * 100.01 * 0.5, abs=0.01)
    assert float(what_if.maintMarginAfter) == pytest.approx(100 * 100.01 * 0.25, abs=0.01)
    assert float(what_if.equityWithLoanBefore) == 1_000_000.0
    assert what_if.commission == 1.0
    assert not env.engine.open_orders()


# -- queries, persistence, live market ------------------------------------------------------------------


def test_queries_when_orders_completed_then_listed_with_executions(env: Env) -> None:
    env.place(mkt(1, "BUY", 100))
    env.place(lmt(2, "BUY", 100, 90.00))
    assert [e.orderId for e in env.engine.open_orders()] == [2]
    assert [e.status for e in env.engine.completed_orders()] == ["Filled"]
    (execution, report), *_ = env.engine.executions(client_id=1)
    assert execution.orderId == 1 and report.execId == execution.execId
    found = env.engine.order(1, 1)
    assert found is not None and found.status == "Filled"


def test_state_when_saved_and_restored_then_orders_positions_and_ids_continue(env: Env) -> None:
    env.place(mkt(1, "BUY", 100))
    env.place(lmt(2, "SELL", 100, 101.00, tif="GTC"))
    env.market.shock(AAPL, 5.0, env.now)
    data = json.loads(json.dumps(env.engine.to_dict()))
    market = Market(UNIVERSE)
    restored = MatchingEngine.from_dict(data, UNIVERSE, market)
    assert restored.account.positions[AAPL].quantity == 100
    assert [e.orderId for e in restored.open_orders()] == [2]
    assert restored.next_order_id(1) == 3
    assert market.to_dict() == env.market.to_dict()
    q = Quote(AAPL, env.now, 101.00, 101.02, 100, 100, 101.00, 1, 0, 101.01, 0)
    events = restored.on_quote(q, env.now)
    assert fills(events, 2) == [(100, 101.00)]
    first = env.engine.executions()[0][0]
    assert of(events, ExecutionEvent)[0].execId > first.execId
    assert of(events, ExecutionEvent)[0].permId == env.engine.open_orders()[0].permId


def test_reset_when_called_then_no_orders_no_positions_and_initial_cash(env: Env) -> None:
    env.place(mkt(1, "BUY", 100))
    env.place(lmt(2, "BUY", 100, 90.00))
    env.engine.reset()
    assert not env.engine.open_orders() and not env.account.positions
    assert env.account.cash == 1_000_000.0


def test_advance_when_live_market_runs_then_market_order_fills_and_day_order_expires() -> None:
    market = Market(UNIVERSE)
    account = Account(UNIVERSE)
    engine = MatchingEngine(UNIVERSE, market, account)
    quotes, _ = engine.advance(RTH)
    assert any(q.conId == AAPL for q in quotes)
    events = engine.place(mkt(1, "BUY", 1000), RTH)
    for i in range(1, 30):
        events += engine.advance(RTH + i * NS)[1]
    assert sum(e.shares for e in of(events, ExecutionEvent)) == 1000
    assert statuses(events, 1)[-1] == "Filled"
    engine.place(lmt(2, "BUY", 100, 1.00), RTH + 30 * NS)
    assert statuses(engine.advance(CLOSE)[1], 2) == ["Cancelled"]


# -- properties -------------------------------------------------------------------------------------------

ORDER_KINDS = st.sampled_from(["MKT", "LMT", "STP", "STP LMT", "TRAIL"])


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[Order], list[tuple[int, int, int]]]:
    orders = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(ORDER_KINDS)
        action = draw(st.sampled_from(["BUY", "SELL"]))
        qty = draw(st.integers(1, 400))
        price = draw(st.integers(9900, 10100)) / 100
        aux = draw(st.integers(9900, 10100)) / 100
        lmt_price = price if kind in ("LMT", "STP LMT") else None
        aux_price = aux if kind in ("STP", "STP LMT") else None
        if kind == "TRAIL":
            aux_price = draw(st.integers(1, 50)) / 100
        tif = draw(st.sampled_from(["DAY", "IOC"]))
        orders.append(
            Order(i + 1, 1, AAPL, action, qty, kind, lmtPrice=lmt_price, auxPrice=aux_price, tif=tif)
        )
    quotes = draw(
        st.lists(
            st.tuples(st.integers(9900, 10100), st.integers(1, 5), st.integers(1, 300)),
            min_size=1,
            max_size=15,
        )
    )
    return orders, quotes


def _check_invariants(events: Iterator[Event] | list[Event], orders: dict[int, Order]) -> None:
    cum: dict[int, float] = {}
    for e in events:
        if isinstance(e, OrderStatusEvent):
            assert e.filled + e.remaining == pytest.approx(e.order.totalQuantity)
            assert 0 <= e.filled <= e.order.totalQuantity
        if isinstance(e, ExecutionEvent):
            order = orders[e.orderId]
            cum[e.orderId] = cum.get(e.orderId, 0) + e.shares
            assert e.shares > 0
            assert e.cumQty == pytest.approx(cum[e.orderId]) and cum[e.orderId] <= order.totalQuantity
            limit = order.lmtPrice
            if limit is not None:
                assert e.price <= limit if order.action == "BUY" else e.price >= limit


@settings(max_examples=60, deadline=None)
@given(scenario())
def test_matching_when_random_orders_meet_random_quotes_then_fills_respect_quantities_and_limits(
    case: tuple[list[Order], list[tuple[int, int, int]]],
) -> None:
    orders, quotes = case
    env = make_env()
    events: list[Event] = []
    for order in orders:
        events += env.place(order)
    for i, (bid, spread, size) in enumerate(quotes):
        env.now = RTH + (i + 1) * NS
        events += env.quote(bid / 100, (bid + spread) / 100, last=(bid + spread * (i % 2)) / 100, size=size)
    _check_invariants(events, {o.orderId: o for o in orders})


def test_future_when_globex_overnight_then_outside_rth_orders_fill_and_others_wait_for_8_30_chicago() -> None:
    sunday_evening = utc(2026, 11, 23, 0, 0)  # Sunday 18:00 Chicago
    env = make_env(now=sunday_evening)
    env.quote(6000.00, 6000.25, con_id=ES)
    fut = Order(1, 1, ES, "BUY", 2, "MKT", outsideRth=True)
    events = env.place(fut)
    assert fills(events) == [(2, 6000.25)] and not errors(events)
    commission = of(events, CommissionReportEvent)[0].commission
    assert commission == pytest.approx(2 * (0.85 + 1.38 + 0.02))
    waiting = env.place(Order(2, 1, ES, "SELL", 1, "LMT", lmtPrice=5999.00))
    assert statuses(waiting) == ["PreSubmitted"]
    assert "2026-11-23 08:30:00 US/Central" in of(waiting, ErrorEvent)[0].text
    assert env.account.positions[ES].avgCost == pytest.approx(6000.25 * 50 + commission / 2)


def test_fx_when_traded_then_units_and_the_two_dollar_minimum() -> None:
    env = make_env()
    env.quote(1.16000, 1.16010, size=5_000_000, con_id=12087792)
    events = env.place(Order(1, 1, 12087792, "BUY", 25_000, "LMT", lmtPrice=1.1602))
    assert fills(events) == [(25_000, 1.1601)]
    assert of(events, CommissionReportEvent)[0].commission == 2.0
    assert errors(env.place(Order(2, 1, 12087792, "BUY", 25_000, "LMT", lmtPrice=1.16012))) == [110]
