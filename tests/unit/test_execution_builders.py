"""Order builders (trader.execution.builders): every order type's IB fields, brackets' transmit
chain, OCO groups and exits attached to a position. No sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ib_async import Order
from ib_async.util import UNSET_DOUBLE

from trader.execution import builders as b
from trader.execution.builders import BadOrder, OrderSpec, build_legs, build_order, check_spec


def ids(start: int = 100) -> itertools.count[int]:
    return itertools.count(start)


def legs(spec: OrderSpec, account: str = "") -> list[Order]:
    counter = ids()
    return [leg.order for leg in build_legs(spec, lambda s: f"alpha:o1{s}", lambda: next(counter), account)]


# -- one order per type ----------------------------------------------------------------------------


def test_market_when_built_then_mkt_without_prices() -> None:
    order = b.market("buy", 10)
    assert (order.action, order.totalQuantity, order.orderType, order.tif) == ("BUY", 10.0, "MKT", "DAY")
    assert order.lmtPrice == UNSET_DOUBLE and order.auxPrice == UNSET_DOUBLE
    assert order.transmit and not order.outsideRth and order.parentId == 0 and order.ocaGroup == ""


def test_limit_when_built_then_lmt_price_and_tif() -> None:
    order = b.limit("SELL", 5, 181.5, tif="gtc", outside_rth=True)
    assert (order.orderType, order.lmtPrice, order.auxPrice) == ("LMT", 181.5, UNSET_DOUBLE)
    assert (order.action, order.tif, order.outsideRth) == ("SELL", "GTC", True)


def test_stop_when_built_then_aux_price_is_the_stop() -> None:
    order = b.stop("SELL", 5, 170)
    assert (order.orderType, order.auxPrice, order.lmtPrice) == ("STP", 170.0, UNSET_DOUBLE)


def test_stop_limit_when_built_then_both_prices() -> None:
    order = b.stop_limit("BUY", 5, stop_price=190, limit_price=191)
    assert (order.orderType, order.auxPrice, order.lmtPrice) == ("STP LMT", 190.0, 191.0)


def test_trailing_stop_when_amount_then_aux_price_and_no_percent() -> None:
    order = b.trailing_stop("SELL", 5, amount=2.5, stop_price=178)
    assert (order.orderType, order.auxPrice, order.trailStopPrice) == ("TRAIL", 2.5, 178.0)
    assert order.trailingPercent == UNSET_DOUBLE and order.lmtPrice == UNSET_DOUBLE


def test_trailing_stop_when_percent_then_trailing_percent_and_no_aux() -> None:
    order = b.trailing_stop("SELL", 5, percent=1.5)
    assert (order.orderType, order.trailingPercent) == ("TRAIL", 1.5)
    assert order.auxPrice == UNSET_DOUBLE and order.trailStopPrice == UNSET_DOUBLE


def test_trailing_stop_limit_when_built_then_offset_in_lmt_price_offset() -> None:
    order = b.trailing_stop_limit("SELL", 5, amount=2, limit_offset=0.5, stop_price=178)
    assert order.orderType == "TRAIL LIMIT"
    assert (order.auxPrice, order.lmtPriceOffset, order.trailStopPrice) == (2.0, 0.5, 178.0)
    assert order.lmtPrice == UNSET_DOUBLE and order.trailingPercent == UNSET_DOUBLE
    by_percent = b.trailing_stop_limit("BUY", 5, percent=3, limit_offset=0)
    assert (by_percent.trailingPercent, by_percent.lmtPriceOffset) == (3.0, 0.0)


def test_market_on_close_when_built_then_moc_day() -> None:
    order = b.market_on_close("SELL", 100)
    assert (order.orderType, order.tif, order.lmtPrice) == ("MOC", "DAY", UNSET_DOUBLE)


def test_limit_on_close_when_built_then_loc_with_limit() -> None:
    order = b.limit_on_close("BUY", 100, 180.25)
    assert (order.orderType, order.tif, order.lmtPrice) == ("LOC", "DAY", 180.25)


def test_build_order_when_ids_given_then_order_id_ref_account_transmit() -> None:
    spec = OrderSpec("BUY", 1, "LMT", limit_price=10)
    order = build_order(spec, order_id=7, order_ref="s:c1", account="DU1", transmit=False)
    assert (order.orderId, order.orderRef, order.account, order.transmit) == (7, "s:c1", "DU1", False)


def test_check_spec_when_aliases_then_normalised() -> None:
    spec = check_spec(OrderSpec("sell", 3, "trail_limit", trail_percent=2, limit_offset=0.1, tif="gtc"))
    assert (spec.action, spec.order_type, spec.tif, spec.quantity) == ("SELL", "TRAIL LIMIT", "GTC", 3.0)
    assert check_spec(OrderSpec("buy", 1, "stp_lmt", limit_price=11, stop_price=10)).order_type == "STP LMT"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (OrderSpec("HOLD", 1), "action must be one of BUY, SELL"),
        (OrderSpec("BUY", 0), "quantity must be a positive number"),
        (OrderSpec("BUY", float("nan")), "quantity must be a positive number"),
        (OrderSpec("BUY", 1, "PEG"), "order_type must be one of"),
        (OrderSpec("BUY", 1, "LMT"), "limit_price is required for LMT"),
        (OrderSpec("BUY", 1, "MKT", limit_price=1), "limit_price is not used for MKT"),
        (OrderSpec("BUY", 1, "STP"), "stop_price is required for STP"),
        (OrderSpec("BUY", 1, "LOC"), "limit_price is required for LOC"),
        (OrderSpec("BUY", 1, "TRAIL"), "TRAIL needs exactly one of trail_amount and trail_percent"),
        (OrderSpec("BUY", 1, "TRAIL", trail_amount=1, trail_percent=1), "exactly one"),
        (OrderSpec("BUY", 1, "TRAIL", trail_percent=100), "trail_percent must be below 100"),
        (OrderSpec("BUY", 1, "TRAIL LIMIT", trail_amount=1), "limit_offset is required for TRAIL LIMIT"),
        (OrderSpec("BUY", 1, "TRAIL", trail_amount=1, limit_offset=1), "limit_offset is not used for TRAIL"),
        (OrderSpec("BUY", 1, "TRAIL LIMIT", trail_amount=1, limit_offset=-1), "limit_offset must be"),
        (OrderSpec("BUY", 1, "LMT", limit_price=1, trail_stop_price=1), "trail_stop_price is not used"),
        (OrderSpec("BUY", 1, "MOC", tif="GTC"), "MOC orders are DAY orders"),
        (OrderSpec("BUY", 1, "LOC", limit_price=1, outside_rth=True), "outside_rth is not used for LOC"),
        (OrderSpec("BUY", 1, "STP LMT", limit_price=9, stop_price=10), "must be at or above stop_price 10"),
        (OrderSpec("SELL", 1, "STP LMT", limit_price=11, stop_price=10), "must be at or below stop_price"),
        (OrderSpec("BUY", 1, tif="WEEK"), "tif must be one of"),
        (OrderSpec("BUY", 1, "LMT", limit_price=-1), "limit_price must be a positive number"),
    ],
)
def test_check_spec_when_terms_invalid_then_bad_order_names_field(spec: OrderSpec, message: str) -> None:
    with pytest.raises(BadOrder, match=message):
        check_spec(spec)


# -- brackets --------------------------------------------------------------------------------------


def test_bracket_when_both_exits_then_parent_tp_sl_transmit_chain() -> None:
    spec = OrderSpec("BUY", 10, "LMT", limit_price=100, take_profit=110, stop_loss=95, tif="GTC")
    parent, tp, sl = legs(spec, account="DU1")
    assert (parent.orderId, parent.orderType, parent.lmtPrice, parent.parentId) == (100, "LMT", 100.0, 0)
    assert (tp.orderId, tp.parentId, tp.action, tp.orderType, tp.lmtPrice) == (101, 100, "SELL", "LMT", 110.0)
    assert (sl.orderId, sl.parentId, sl.action, sl.orderType, sl.auxPrice) == (102, 100, "SELL", "STP", 95.0)
    assert [o.transmit for o in (parent, tp, sl)] == [False, False, True]
    assert [o.orderRef for o in (parent, tp, sl)] == ["alpha:o1", "alpha:o1.tp", "alpha:o1.sl"]
    assert {o.tif for o in (parent, tp, sl)} == {"GTC"} and {o.account for o in (parent, tp, sl)} == {"DU1"}
    assert {o.totalQuantity for o in (parent, tp, sl)} == {10.0}


def test_bracket_when_only_stop_loss_then_last_leg_transmits() -> None:
    parent, sl = legs(OrderSpec("SELL", 3, "MKT", stop_loss=120))
    assert (sl.action, sl.auxPrice, sl.parentId) == ("BUY", 120.0, parent.orderId)
    assert [parent.transmit, sl.transmit] == [False, True]


def test_build_legs_when_no_exits_then_one_transmitted_order() -> None:
    (only,) = legs(OrderSpec("BUY", 1, "TRAIL", trail_percent=1))
    assert only.transmit and only.orderType == "TRAIL" and only.orderRef == "alpha:o1"


def test_bracket_when_opg_parent_then_children_day() -> None:
    parent, tp = legs(OrderSpec("BUY", 1, "LMT", limit_price=10, tif="OPG", take_profit=11))
    assert (parent.tif, tp.tif) == ("OPG", "DAY")


def test_bracket_helper_when_stop_entry_then_entry_aux_price() -> None:
    counter = ids(1)
    parent, tp, sl = b.bracket(
        "BUY",
        2,
        entry_type="STP",
        entry_price=101,
        take_profit=110,
        stop_loss=98,
        next_id=lambda: next(counter),
    )
    assert (parent.orderType, parent.auxPrice, tp.parentId, sl.parentId) == ("STP", 101.0, 1, 1)
    assert [o.transmit for o in (parent, tp, sl)] == [False, False, True]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (OrderSpec("BUY", 1, "LMT", limit_price=100, take_profit=90), "take_profit 90 is on the wrong side"),
        (OrderSpec("BUY", 1, "LMT", limit_price=100, stop_loss=105), "stop_loss 105 is on the wrong side"),
        (OrderSpec("SELL", 1, "MKT", take_profit=110, stop_loss=100), "must be below stop_loss"),
        (OrderSpec("BUY", 1, "MKT", tif="IOC", take_profit=110), "cannot be IOC"),
        (OrderSpec("BUY", 1, "MOC", take_profit=110), "cannot be MOC"),
    ],
)
def test_bracket_when_exits_inconsistent_then_bad_order(spec: OrderSpec, message: str) -> None:
    with pytest.raises(BadOrder, match=message):
        legs(spec)


def test_bracket_helper_when_no_exit_then_bad_order() -> None:
    with pytest.raises(BadOrder, match="needs take_profit and/or stop_loss"):
        b.bracket("BUY", 1, entry_price=10, next_id=lambda: 1)


@given(
    action=st.sampled_from(["BUY", "SELL"]),
    entry=st.floats(10, 1000),
    gaps=st.tuples(st.floats(0.01, 5), st.floats(0.01, 5)),
    exits=st.sampled_from(["tp", "sl", "both"]),
)
def test_bracket_when_any_valid_then_only_last_leg_transmits(
    action: str, entry: float, gaps: tuple[float, float], exits: str
) -> None:
    up = 1 if action == "BUY" else -1
    tp = entry + up * gaps[0] if exits in ("tp", "both") else None
    sl = entry - up * gaps[1] if exits in ("sl", "both") else None
    orders = legs(OrderSpec(action, 1, "LMT", limit_price=entry, take_profit=tp, stop_loss=sl))
    assert [o.transmit for o in orders] == [False] * (len(orders) - 1) + [True]
    assert all(o.parentId == orders[0].orderId and o.action != action for o in orders[1:])


# -- OCO -------------------------------------------------------------------------------------------


def test_one_cancels_other_when_orders_then_copies_in_group_type_1() -> None:
    first, second = b.limit("SELL", 5, 110), b.stop("SELL", 5, 95)
    grouped = b.one_cancels_other([first, second], "exit-aapl-1")
    assert [(o.ocaGroup, o.ocaType, o.transmit) for o in grouped] == [("exit-aapl-1", 1, True)] * 2
    assert [o.orderType for o in grouped] == ["LMT", "STP"]
    assert first.ocaGroup == "" and first is not grouped[0]  # the inputs are left alone


def test_one_cancels_other_when_reduce_type_then_oca_type_kept() -> None:
    grouped = b.one_cancels_other([b.limit("BUY", 1, 9), b.limit("BUY", 1, 8)], "g", oca_type=3)
    assert {o.ocaType for o in grouped} == {3}


@pytest.mark.parametrize(
    ("orders", "group", "oca_type", "message"),
    [
        ([b.market("BUY", 1)], "g", 1, "at least 2 orders"),
        ([b.market("BUY", 1), b.market("SELL", 1)], "", 1, "non-empty name"),
        ([b.market("BUY", 1), b.market("SELL", 1)], "a b", 1, "without whitespace"),
        ([b.market("BUY", 1), b.market("SELL", 1)], "g", 4, "oca_type must be one of 1, 2, 3"),
    ],
)
def test_one_cancels_other_when_invalid_then_bad_order(
    orders: list[Order], group: str, oca_type: int, message: str
) -> None:
    with pytest.raises(BadOrder, match=message):
        b.one_cancels_other(orders, group, oca_type)


def test_one_cancels_other_when_bracket_child_or_other_group_then_bad_order() -> None:
    child = b.limit("SELL", 1, 11)
    child.parentId = 5
    with pytest.raises(BadOrder, match="bracket child"):
        b.one_cancels_other([b.limit("SELL", 1, 12), child], "g")
    other = b.limit("SELL", 1, 11)
    other.ocaGroup = "h"
    with pytest.raises(BadOrder, match="already in OCA group 'h'"):
        b.one_cancels_other([b.limit("SELL", 1, 12), other], "g")


# -- exits attached to a position ------------------------------------------------------------------


def test_stop_loss_for_position_when_long_then_sell_sized_gtc() -> None:
    order = b.stop_loss_for_position(150, 95, mark=100)
    assert (order.action, order.totalQuantity, order.orderType, order.auxPrice, order.tif) == (
        "SELL",
        150.0,
        "STP",
        95.0,
        "GTC",
    )


def test_stop_loss_for_position_when_short_with_limit_then_buy_stop_limit() -> None:
    order = b.stop_loss_for_position(-20, 105, limit_price=106)
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice) == (
        "BUY",
        20.0,
        "STP LMT",
        106.0,
    )


def test_trailing_stop_for_position_when_long_then_sell_trail() -> None:
    order = b.trailing_stop_for_position(7, percent=2)
    assert (order.action, order.totalQuantity, order.orderType, order.trailingPercent) == (
        "SELL",
        7.0,
        "TRAIL",
        2.0,
    )
    limit = b.trailing_stop_for_position(-7, amount=1, limit_offset=0.2, stop_price=101, mark=100)
    assert (limit.action, limit.orderType, limit.lmtPriceOffset, limit.trailStopPrice) == (
        "BUY",
        "TRAIL LIMIT",
        0.2,
        101.0,
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: b.stop_loss_for_position(0, 95), "no position to protect"),
        (lambda: b.stop_loss_for_position(10, 101, mark=100), "the stop 101 of a long 10 must be below"),
        (lambda: b.stop_loss_for_position(-10, 99, mark=100), "must be above the market 100"),
        (lambda: b.trailing_stop_for_position(10, stop_price=101, amount=1, mark=100), "must be below"),
        (lambda: b.trailing_stop_for_position(10), "exactly one of trail_amount and trail_percent"),
        (lambda: b.exit_for_position(1, OrderSpec("BUY", 1, take_profit=5)), "cannot itself be a bracket"),
    ],
)
def test_position_exit_when_invalid_then_bad_order(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(BadOrder, match=message):
        call()


def test_exit_for_position_when_moc_then_opposite_side_full_size() -> None:
    order = b.exit_for_position(-300, OrderSpec("SELL", 1, "MOC"))
    assert (order.action, order.totalQuantity, order.orderType) == ("BUY", 300.0, "MOC")


# -- the paper exchange accepts what the builders build ----------------------------------------------


@pytest.mark.parametrize(
    "order",
    [
        b.market("BUY", 10),
        b.limit("BUY", 10, 180.5, tif="GTC"),
        b.stop("SELL", 10, 170),
        b.stop_limit("SELL", 10, stop_price=170, limit_price=169.5),
        b.trailing_stop("SELL", 10, amount=2.5, stop_price=178),
        b.trailing_stop("SELL", 10, percent=1.5),
        b.trailing_stop_limit("SELL", 10, amount=2, limit_offset=0.5),
        b.market_on_close("SELL", 10),
        b.limit_on_close("BUY", 10, 180.25),
        b.stop_loss_for_position(10, 95),
        *b.one_cancels_other([b.limit("SELL", 10, 190), b.stop("SELL", 10, 170)], "oco-1"),
    ],
    ids=lambda order: f"{order.orderType}-{order.ocaGroup or order.tif}",
)
def test_builder_order_when_validated_by_the_paper_exchange_then_accepted(order: Order) -> None:
    from typing import cast

    from trader.exchange.feature_orders import engine_order
    from trader.exchange.instruments import load_universe
    from trader.exchange.orders import validate
    from trader.exchange.protocol.fields import OrderFields

    inst = load_universe().get(265598)  # AAPL
    assert inst is not None
    engine = engine_order(1, 0, inst, cast(OrderFields, order), "DU1")
    assert validate(engine, inst) is None
    assert (engine.orderType, engine.ocaGroup) == (order.orderType, order.ocaGroup)
