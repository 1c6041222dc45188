"""Order terms checked and built into ib_async orders (trader.service.orders), and ib_async's
objects mapped to the book's events and to records (trader.service.mapping). No sockets."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ib_async import CommissionReport, Contract, Execution, Fill, Order, OrderStatus, Trade, TradeLogEntry
from ib_async.util import UNSET_DOUBLE

from trader.book import Book, OpenOrder, OrderRequest, OrderStatusUpdate, OrderSubmitted, to_ns
from trader.data.prepare import prepare_fills, prepare_orders
from trader.service import mapping as mp
from trader.service.orders import (
    BadOrder,
    Modification,
    OrderSpec,
    build_legs,
    check_spec,
    modified,
    order_requests,
    quantity_for_cash,
)

AAPL = Contract(
    conId=265598, symbol="AAPL", secType="STK", exchange="SMART", currency="USD", localSymbol="AAPL"
)
ES = Contract(
    conId=950000001, symbol="ES", secType="FUT", exchange="CME", localSymbol="ESZ6", multiplier="50"
)


def legs_of(spec: OrderSpec, account: str = "") -> list[Order]:
    ids = itertools.count(100)
    return [
        leg.order
        for leg in build_legs(check_spec(spec), lambda s: f"alpha:o1{s}", lambda: next(ids), account)
    ]


# -- checking ----------------------------------------------------------------------------------------


def test_check_spec_when_terms_valid_then_normalised() -> None:
    spec = check_spec(OrderSpec("buy", 5, "stp_lmt", limit_price=10, stop_price=9.5, tif="gtc"))
    assert (spec.action, spec.order_type, spec.tif) == ("BUY", "STP LMT", "GTC")
    assert spec.quantity == 5.0 and isinstance(spec.quantity, float)
    assert spec.aux_price == 9.5 and not spec.bracket and spec.exit_action == "SELL"
    trail = check_spec(OrderSpec("SELL", 1, "TRAIL", trail_percent=2))
    assert trail.aux_price is None and trail.trail_percent == 2.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (OrderSpec("BUY", 1, "LMT"), "limit_price is required for LMT"),
        (OrderSpec("BUY", 1, "MKT", limit_price=1), "limit_price is not used for MKT"),
        (OrderSpec("BUY", 1, "STP"), "stop_price is required for STP"),
        (OrderSpec("BUY", 1, "LMT", limit_price=1, stop_price=1), "stop_price is not used for LMT"),
        (OrderSpec("BUY", 1, "TRAIL"), "exactly one of trail_amount and trail_percent"),
        (OrderSpec("BUY", 1, "TRAIL", trail_amount=1, trail_percent=1), "exactly one"),
        (OrderSpec("BUY", 1, "TRAIL", trail_percent=100), "trail_percent must be below 100"),
        (OrderSpec("BUY", 1, "LMT", limit_price=1, trail_amount=1), "not used for LMT"),
        (OrderSpec("BUY", 1, "LMT", limit_price=-1), "limit_price must be a positive number"),
        (OrderSpec("BUY", 0), "quantity must be a positive number"),
        (OrderSpec("BUY", math.nan), "quantity must be a positive number"),
        (OrderSpec("HOLD", 1), "action must be one of BUY, SELL"),
        (OrderSpec("BUY", 1, "MIDPRICE"), "order_type must be one of"),
        (OrderSpec("BUY", 1, tif="FOK"), "tif FOK is not supported by Bourse"),
        (OrderSpec("BUY", 1, "LMT", limit_price=1, tif="OPG"), "tif OPG is not supported by Bourse"),
        (OrderSpec("BUY", 1, tif="GTD"), "tif must be one of"),
        (OrderSpec("BUY", 1, take_profit=90, stop_loss=110), "take_profit 90 must be above stop_loss"),
        (OrderSpec("SELL", 1, take_profit=110, stop_loss=90), "must be below stop_loss"),
        (OrderSpec("BUY", 1, "LMT", limit_price=100, take_profit=99), "wrong side of limit_price"),
        (OrderSpec("BUY", 1, "LMT", limit_price=100, stop_loss=101), "wrong side of limit_price"),
        (OrderSpec("BUY", 1, tif="IOC", take_profit=110), "cannot be IOC"),
    ],
)
def test_check_spec_when_terms_invalid_then_bad_order_names_the_field(spec: OrderSpec, message: str) -> None:
    with pytest.raises(BadOrder, match=message):
        check_spec(spec)


def test_quantity_for_cash_when_sized_then_whole_units_unless_fractional() -> None:
    assert quantity_for_cash(10_000, 333.0) == 30.0
    assert quantity_for_cash(10_000, 100.0) == 100.0  # exact: not 99 from float error
    assert quantity_for_cash(1_000_000, 6000.0, 50) == 3.0
    with pytest.raises(BadOrder, match="less than one lot"):
        quantity_for_cash(100_000, 6000.0, 50)
    assert quantity_for_cash(1000, 1.1, fractional=True) == pytest.approx(909.0909, rel=1e-6)
    for cash, price in ((0, 1), (10, 0), (10, math.nan)):
        with pytest.raises(BadOrder):
            quantity_for_cash(cash, price)


# -- building ----------------------------------------------------------------------------------------


def test_build_legs_when_each_type_then_ib_fields_set() -> None:
    (mkt,) = legs_of(OrderSpec("BUY", 3))
    assert (mkt.orderType, mkt.action, mkt.totalQuantity, mkt.orderId) == ("MKT", "BUY", 3.0, 100)
    assert (mkt.orderRef, mkt.transmit, mkt.tif, mkt.outsideRth) == ("alpha:o1", True, "DAY", False)
    (lmt,) = legs_of(OrderSpec("SELL", 1, "LMT", limit_price=9.5, tif="GTC", outside_rth=True), account="DU1")
    assert (lmt.orderType, lmt.lmtPrice, lmt.tif, lmt.outsideRth, lmt.account) == (
        "LMT",
        9.5,
        "GTC",
        True,
        "DU1",
    )
    (stp,) = legs_of(OrderSpec("SELL", 1, "STP", stop_price=8))
    assert (stp.orderType, stp.auxPrice) == ("STP", 8.0)
    (stl,) = legs_of(OrderSpec("BUY", 1, "STP LMT", limit_price=10.5, stop_price=10))
    assert (stl.orderType, stl.lmtPrice, stl.auxPrice) == ("STP LMT", 10.5, 10.0)
    (amount,) = legs_of(OrderSpec("SELL", 1, "TRAIL", trail_amount=0.5))
    assert (amount.orderType, amount.auxPrice, amount.trailingPercent) == ("TRAIL", 0.5, UNSET_DOUBLE)
    (percent,) = legs_of(OrderSpec("SELL", 1, "TRAIL", trail_percent=1.5))
    assert (percent.trailingPercent, percent.auxPrice) == (1.5, UNSET_DOUBLE)


def test_build_legs_when_bracket_then_parent_then_children_transmitted_together() -> None:
    parent, tp, sl = legs_of(OrderSpec("BUY", 5, "LMT", limit_price=100, take_profit=110, stop_loss=95))
    assert [o.orderId for o in (parent, tp, sl)] == [100, 101, 102]
    assert (tp.parentId, sl.parentId, parent.parentId) == (100, 100, 0)
    assert [o.transmit for o in (parent, tp, sl)] == [False, False, True]
    assert [o.orderRef for o in (parent, tp, sl)] == ["alpha:o1", "alpha:o1.tp", "alpha:o1.sl"]
    assert (tp.action, tp.orderType, tp.lmtPrice, tp.totalQuantity) == ("SELL", "LMT", 110.0, 5.0)
    assert (sl.action, sl.orderType, sl.auxPrice) == ("SELL", "STP", 95.0)
    only_stop = legs_of(OrderSpec("SELL", 2, stop_loss=120))
    assert [(o.action, o.orderType) for o in only_stop] == [("SELL", "MKT"), ("BUY", "STP")]


def test_order_requests_when_bracket_then_one_book_request_per_leg() -> None:
    spec = check_spec(OrderSpec("BUY", 5, "LMT", limit_price=100, take_profit=110, stop_loss=95))
    requests = order_requests("alpha", "o1", ES, spec, account="DU1", now_ns=7)
    assert [(r.client_order_id, r.action, r.order_type, r.limit_price, r.aux_price) for r in requests] == [
        ("o1", "BUY", "LMT", 100.0, None),
        ("o1.tp", "SELL", "LMT", 110.0, None),
        ("o1.sl", "SELL", "STP", None, 95.0),
    ]
    assert {(r.symbol, r.con_id, r.multiplier, r.account, r.time_ns) for r in requests} == {
        ("ESZ6", 950000001, 50.0, "DU1", 7)
    }


def test_modified_when_terms_change_then_a_checked_copy() -> None:
    (order,) = legs_of(OrderSpec("BUY", 3, "LMT", limit_price=10))
    new = modified(order, Modification(quantity=4, limit_price=9.5, tif="gtc"))
    assert (new.totalQuantity, new.lmtPrice, new.tif, new.orderId) == (4.0, 9.5, "GTC", order.orderId)
    assert (order.totalQuantity, order.lmtPrice) == (3.0, 10.0)  # the original is untouched
    with pytest.raises(BadOrder, match="nothing to modify"):
        modified(order, Modification())
    with pytest.raises(BadOrder, match="stop_price is not used for LMT"):
        modified(order, Modification(stop_price=9))
    with pytest.raises(BadOrder, match="quantity must be a positive"):
        modified(order, Modification(quantity=0))
    (trail,) = legs_of(OrderSpec("SELL", 1, "TRAIL", trail_amount=0.5))
    switched = modified(trail, Modification(trail_percent=2))
    assert (switched.trailingPercent, switched.auxPrice) == (2.0, UNSET_DOUBLE)


@given(
    action=st.sampled_from(["BUY", "SELL"]),
    quantity=st.floats(0.01, 1e6),
    kind=st.sampled_from(["MKT", "LMT", "STP", "STP LMT", "TRAIL"]),
    price=st.floats(1, 1000),
    with_tp=st.booleans(),
    with_sl=st.booleans(),
)
def test_build_legs_when_any_valid_spec_then_legs_consistent(
    *, action: str, quantity: float, kind: str, price: float, with_tp: bool, with_sl: bool
) -> None:
    up = 1 if action == "BUY" else -1
    spec = OrderSpec(
        action,
        quantity,
        kind,
        limit_price=price if kind in ("LMT", "STP LMT") else None,
        stop_price=price if kind in ("STP", "STP LMT") else None,
        trail_amount=1.0 if kind == "TRAIL" else None,
        take_profit=price * (1 + 0.1 * up) if with_tp else None,
        stop_loss=price * (1 - 0.1 * up) if with_sl else None,
    )
    legs = legs_of(spec)
    assert len(legs) == 1 + with_tp + with_sl
    assert [o.transmit for o in legs] == [False] * (len(legs) - 1) + [True]
    assert len({o.orderRef for o in legs}) == len({o.orderId for o in legs}) == len(legs)
    assert all(o.totalQuantity == quantity for o in legs)
    assert all(o.action != action and o.parentId == legs[0].orderId for o in legs[1:])
    requests = order_requests("s", "c", AAPL, check_spec(spec), account="", now_ns=0)
    assert [r.action for r in requests] == [o.action for o in legs]


# -- ib_async -> book --------------------------------------------------------------------------------


def trade(status: str = "Submitted", *, order_ref: str = "alpha:o1", error_code: int = 0) -> Trade:
    order = Order(orderId=5, clientId=0, permId=77, action="BUY", totalQuantity=10.0, orderType="LMT")
    order.lmtPrice, order.orderRef, order.account = 99.5, order_ref, "DU1"
    log = [TradeLogEntry(datetime.now(UTC), status, "", error_code)]
    return Trade(ES, order, OrderStatus(orderId=5, status=status, filled=2.0, remaining=8.0), [], log)


def test_open_order_and_status_events_when_mapped_then_book_fields() -> None:
    event = mp.open_order_event(trade(), 11)
    assert event == OpenOrder(
        5,
        77,
        "alpha:o1",
        "DU1",
        950000001,
        "ESZ6",
        "BUY",
        10.0,
        "Submitted",
        11,
        0,
        "LMT",
        99.5,
        None,
        "DAY",
        50.0,
        2.0,
    )
    status = mp.status_event(trade("Filled"), 12)
    assert status == OrderStatusUpdate(5, 77, "Filled", 12, 0, 2.0, 8.0, 0.0)
    assert mp.status_event(trade("Cancelled", error_code=201), 13) is None  # ib_async's synthetic status
    assert mp.ib_price(UNSET_DOUBLE) is None and mp.ib_price(None) is None and mp.ib_price(1.5) == 1.5
    assert mp.multiplier_of(Contract(multiplier="x")) == 1.0 and mp.multiplier_of(None) == 1.0


def test_execution_and_commission_events_when_mapped_then_book_fields() -> None:
    when = datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
    execution = Execution(execId="e1", time=when, acctNumber="DU1", side="BOT", shares=2.0, price=6000.25)
    execution.permId, execution.orderId, execution.orderRef = 77, 5, "alpha:o1"
    event = mp.execution_event(Fill(ES, execution, CommissionReport(), when))
    assert (event.exec_id, event.side, event.shares, event.price, event.multiplier) == (
        "e1",
        "BOT",
        2.0,
        6000.25,
        50,
    )
    assert (event.time_ns, event.order_ref, event.symbol) == (to_ns(when), "alpha:o1", "ESZ6")
    commission = mp.commission_event(CommissionReport("e1", 2.5, "USD", 0.0))
    assert (commission.exec_id, commission.commission, commission.realized_pnl) == ("e1", 2.5, None)


def booked() -> Book:
    book = Book()
    book.register(
        OrderRequest("alpha", "o1", 950000001, "ESZ6", "BUY", 10.0, 1, "LMT", 99.5, multiplier=50.0)
    )
    book.apply(OrderSubmitted("o1", 5, 2, 0))
    return book


def test_completed_events_when_ib_reports_done_orders_then_settled_or_adopted() -> None:
    book = booked()
    assert mp.completed_events(book, [trade("Submitted")], 3) == []  # not done: nothing
    (settle,) = mp.completed_events(book, [trade("Cancelled")], 3)
    assert settle == OrderStatusUpdate(5, 77, "Cancelled", 3, 0)
    (adopt,) = mp.completed_events(Book(), [trade("Filled")], 3)
    assert isinstance(adopt, OpenOrder) and adopt.order_ref == "alpha:o1"
    assert mp.completed_events(Book(), [trade("Filled", order_ref="")], 3) == []  # outside Bourse: left


def test_records_when_built_then_the_store_schemas_accept_the_rows() -> None:
    book = booked()
    order = book.order("o1")
    record = mp.order_record(order)
    assert (record["order_ref"], record["state"], record["working"], record["filled"]) == (
        "alpha:o1",
        "PendingSubmit",
        True,
        0.0,
    )
    prepare_orders("alpha", [mp.order_log_row(order)])
    now = datetime.now(UTC)
    ib_execution = Execution(execId="e1", time=now, side="BOT", shares=2.0, price=1.0, acctNumber="DU1")
    ib_execution.permId, ib_execution.orderId, ib_execution.orderRef = 77, 5, "alpha:o1"
    execution = mp.execution_event(Fill(ES, ib_execution, CommissionReport(), now))
    outcome = book.apply(execution)
    assert outcome.fill is not None
    fill = mp.fill_record(outcome.fill, book)
    assert (fill["kind"], fill["side"], fill["shares"], fill["order_state"]) == (
        "fill",
        "BOT",
        2.0,
        "PartiallyFilled",
    )
    row = mp.fill_row(outcome.fill, book)
    assert row["order_ref"] == "alpha:o1"
    prepared = prepare_fills("alpha", [row])
    assert list(prepared.frame["exec_id"]) == ["e1"]
    position = mp.position_record(book.positions.positions()[0], 3.0)
    assert (position["quantity"], position["unrealized"], position["avg_cost"]) == (2.0, 200.0, 50.0)
    assert mp.position_record(dataclasses.replace(book.positions.positions()[0]), None)["unrealized"] is None
