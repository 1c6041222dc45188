"""Cash sizing (trader.execution.sizing): multiplier, lot size, minimum size, the price used."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.execution.builders import BadOrder
from trader.execution.sizing import (
    LotRules,
    is_lot_multiple,
    lot_rules,
    quantity_for_cash,
    quantity_for_cash_with,
    round_to_lot,
    sizing_price,
)


def test_quantity_for_cash_when_stock_then_floor_whole_shares() -> None:
    assert quantity_for_cash(10_000, 181.5) == 55.0


def test_quantity_for_cash_when_future_then_multiplier_applies() -> None:
    assert quantity_for_cash(1_000_000, 5000, multiplier=50) == 4.0


def test_quantity_for_cash_when_lot_size_then_floor_to_lot() -> None:
    assert quantity_for_cash(10_000, 1.0, lot_size=100) == 10_000.0
    assert quantity_for_cash(10_099, 1.0, lot_size=100) == 10_000.0
    assert quantity_for_cash(1_000, 3.0, lot_size=0.1) == 333.3


def test_quantity_for_cash_when_exact_multiple_then_not_lost_to_float() -> None:
    assert quantity_for_cash(0.3, 0.1) == 3.0
    assert quantity_for_cash(181.5 * 3, 181.5) == 3.0


def test_quantity_for_cash_when_below_one_lot_then_bad_order_names_numbers() -> None:
    with pytest.raises(BadOrder) as caught:
        quantity_for_cash(100, 181.5, symbol="AAPL")
    text = str(caught.value)
    assert "cash_amount 100 buys 0.550964 units of AAPL at 181.5 x 1" in text
    assert "less than one lot of 1 (needs at least 181.50)" in text


def test_quantity_for_cash_when_below_lot_of_future_then_needs_a_contract() -> None:
    with pytest.raises(BadOrder, match=r"at 5000 x 50, less than one lot of 1 \(needs at least 250000.00\)"):
        quantity_for_cash(200_000, 5000, multiplier=50)


def test_quantity_for_cash_when_below_min_size_then_bad_order_names_minimum() -> None:
    with pytest.raises(BadOrder, match=r"less than one order \(the minimum size\) of 20000"):
        quantity_for_cash(10_000, 1.1, lot_size=1, min_size=20_000)
    assert quantity_for_cash(30_000, 1.0, min_size=20_000) == 30_000.0


@pytest.mark.parametrize(
    ("cash", "price", "message"),
    [
        (0, 10, "cash_amount must be a positive number"),
        (-5, 10, "cash_amount must be a positive number"),
        (math.inf, 10, "cash_amount must be a positive number"),
        (100, 0, "no usable price to size cash_amount 100"),
        (100, math.nan, "no usable price"),
        (100, 1.7976931348623157e308, "no usable price"),
    ],
)
def test_quantity_for_cash_when_bad_inputs_then_bad_order(cash: float, price: float, message: str) -> None:
    with pytest.raises(BadOrder, match=message):
        quantity_for_cash(cash, price)


def test_lot_rules_when_bad_then_bad_order() -> None:
    with pytest.raises(BadOrder, match="lot_size must be a positive number"):
        LotRules(lot_size=0)
    with pytest.raises(BadOrder, match="multiplier must be a positive number"):
        LotRules(multiplier=-1)
    with pytest.raises(BadOrder, match="multiplier must be a number"):
        lot_rules("x")


@dataclass
class Details:
    minSize: float
    sizeIncrement: float


def test_lot_rules_when_contract_details_then_size_increment_is_lot() -> None:
    rules = lot_rules("50", Details(minSize=1, sizeIncrement=1))
    assert rules == LotRules(50.0, 1.0, 1.0)
    assert lot_rules("", None) == LotRules(1.0, 1.0, 0.0)
    fx = lot_rules(None, Details(minSize=25_000, sizeIncrement=0.0))
    assert (fx.lot_size, fx.smallest) == (1.0, 25_000.0)
    assert quantity_for_cash_with(30_000.5, 1.0, fx, symbol="EUR.USD") == 30_000.0


def test_round_to_lot_when_modes_then_floor_ceil_nearest() -> None:
    assert round_to_lot(250, 100) == 200
    assert round_to_lot(250.1, 100, "up") == 300
    assert round_to_lot(249, 100, "nearest") == 200
    assert round_to_lot(0.7, 0.1, "down") == 0.7
    assert is_lot_multiple(0.3, 0.1) and not is_lot_multiple(0.35, 0.1)
    with pytest.raises(ValueError, match="mode must be"):
        round_to_lot(1, 1, "sideways")


def test_sizing_price_when_order_has_prices_then_they_win() -> None:
    assert sizing_price("BUY", bid=9, ask=11, limit_price=10.5) == 10.5
    assert sizing_price("BUY", bid=9, ask=11, stop_price=12) == 12


def test_sizing_price_when_no_order_price_then_touch_then_mid_then_last() -> None:
    assert sizing_price("BUY", bid=9, ask=11, last=10) == 11
    assert sizing_price("sell", bid=9, ask=11, last=10) == 9
    assert sizing_price("BUY", bid=9, ask=math.nan, last=10) == 10
    assert sizing_price("SELL", bid=-1, ask=11, last=math.nan) == 11
    with pytest.raises(BadOrder, match="no usable price"):
        sizing_price("BUY", bid=math.nan, ask=math.nan, last=math.nan)


@given(
    cash=st.floats(1, 1e8),
    price=st.floats(0.01, 1e5),
    multiplier=st.sampled_from([1.0, 10.0, 50.0, 100.0]),
    lot=st.sampled_from([1.0, 100.0, 0.01, 0.5]),
)
def test_quantity_for_cash_when_any_then_whole_lots_within_cash(
    cash: float, price: float, multiplier: float, lot: float
) -> None:
    try:
        quantity = quantity_for_cash(cash, price, multiplier, lot)
    except BadOrder:
        assert cash / (price * multiplier) < lot * (1 + 1e-9)
        return
    assert quantity >= lot and is_lot_multiple(quantity, lot)
    assert quantity * price * multiplier <= cash * (1 + 1e-9)
    assert (quantity + lot) * price * multiplier > cash * (1 - 1e-9)
