"""The paper account and commissions: IB-style costs, P&L, margins, values and persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.exchange.account import Account
from trader.exchange.commissions import CommissionSchedule
from trader.exchange.instruments import load_universe

UNIVERSE = load_universe()
AAPL, SPY, EUR = 265598, 756733, 12087792
ES = UNIVERSE.by_symbol("ES", "FUT").conId
GC = UNIVERSE.by_symbol("GC", "FUT").conId
SCHEDULE = CommissionSchedule()


def account(cash: float = 100_000.0) -> Account:
    return Account(UNIVERSE, "DU7654321", cash)


# -- commissions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "price", "expected"),
    [(100, 50.0, 1.0), (1000, 50.0, 5.0), (10, 5.0, 0.5), (100_000, 0.50, 500.0), (1, 20.0, 0.2)],
)
def test_stock_commission_when_computed_then_per_share_with_minimum_and_cap(
    shares: int, price: float, expected: float
) -> None:
    assert SCHEDULE.estimate(UNIVERSE[AAPL], shares, price) == pytest.approx(expected)


def test_commission_when_futures_and_fx_then_per_contract_and_basis_points() -> None:
    assert SCHEDULE.estimate(UNIVERSE[ES], 2, 6000.0) == pytest.approx(2 * (0.85 + 1.38 + 0.02))
    assert SCHEDULE.estimate(UNIVERSE[EUR], 20_000, 1.1) == 2.0
    assert SCHEDULE.estimate(UNIVERSE[EUR], 10_000_000, 1.1) == pytest.approx(11_000_000 * 0.2 / 10_000)


def test_commission_when_an_order_fills_in_parts_then_the_order_pays_the_schedule_once() -> None:
    inst = UNIVERSE[AAPL]
    first = SCHEDULE.for_fill(inst, 0, 0.0, 100, 50.0)
    second = SCHEDULE.for_fill(inst, 100, 5000.0, 100, 50.0)
    third = SCHEDULE.for_fill(inst, 200, 10000.0, 300, 50.0)
    assert (first, second) == (1.0, 0.0)
    assert third == pytest.approx(1.5)
    assert first + second + third == pytest.approx(SCHEDULE.estimate(inst, 500, 50.0))


# -- fills and P&L ------------------------------------------------------------------------------------


def test_fill_when_opening_a_stock_position_then_cash_and_ib_average_cost() -> None:
    acct = account()
    result = acct.apply_fill(UNIVERSE[AAPL], 100, 50.0, 1.0)
    assert result.realized is None
    assert acct.cash == 100_000.0 - 5000.0 - 1.0
    assert result.position.avgCost == pytest.approx(50.01)
    snap = acct.snapshot({AAPL: 51.0})
    assert snap.net_liquidation == pytest.approx(100_000.0 - 1.0 + 100.0)
    assert snap.unrealized_pnl == pytest.approx(100 * 51.0 - 100 * 50.01)
    assert snap.gross_position_value == pytest.approx(5100.0)


def test_fill_when_closing_then_realized_pnl_net_of_both_commissions() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 100, 50.0, 1.0)
    result = acct.apply_fill(UNIVERSE[AAPL], -100, 52.0, 1.0)
    assert result.realized == pytest.approx(200.0 - 2.0)
    assert acct.cash == pytest.approx(100_000.0 + 198.0)
    assert acct.positions[AAPL].quantity == 0
    assert acct.snapshot({}).realized_pnl == pytest.approx(198.0)
    assert acct.portfolio({}) == []


def test_fill_when_flipping_long_to_short_then_realizes_the_long_and_opens_the_short() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 100, 50.0, 1.0)
    result = acct.apply_fill(UNIVERSE[AAPL], -300, 55.0, 3.0)
    assert result.realized == pytest.approx((55.0 - 50.01) * 100 - 1.0)
    pos = acct.positions[AAPL]
    assert pos.quantity == -200
    assert pos.avgCost == pytest.approx(55.0 - 2.0 / 200)


def test_fill_when_futures_then_only_commissions_and_realized_pnl_move_cash() -> None:
    acct = account()
    es = UNIVERSE[ES]
    acct.apply_fill(es, 2, 6000.0, 4.5)
    assert acct.cash == pytest.approx(100_000.0 - 4.5)
    assert acct.positions[ES].avgCost == pytest.approx(6000.0 * 50 + 2.25)
    snap = acct.snapshot({ES: 6010.0})
    assert snap.net_liquidation == pytest.approx(100_000.0 - 4.5 + 2 * 10 * 50)
    assert snap.futures_pnl == pytest.approx(1000.0)
    assert snap.gross_position_value == 0.0
    assert snap.init_margin == pytest.approx(2 * 6010 * 50 * es.initMarginRate)
    result = acct.apply_fill(es, -2, 6020.0, 4.5)
    assert result.realized == pytest.approx(2 * 20 * 50 - 9.0)
    assert acct.cash == pytest.approx(100_000.0 + 2000.0 - 9.0)


FILLS = st.lists(
    st.tuples(
        st.sampled_from([AAPL, SPY, ES, GC, EUR]),
        st.integers(-500, 500).filter(bool),
        st.floats(0.5, 2.0),
        st.floats(0, 20),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(FILLS, st.floats(0.5, 2.0))
def test_net_liquidation_when_any_fills_then_changes_by_mark_minus_price_times_quantity_less_commissions(
    fills: list[tuple[int, int, float, float]], mark_factor: float
) -> None:
    acct = account()
    marks = {c: UNIVERSE[c].price * mark_factor for c in (AAPL, SPY, ES, GC, EUR)}
    before = acct.net_liquidation(marks)
    expected = 0.0
    for con_id, qty, factor, commission in fills:
        inst = UNIVERSE[con_id]
        price = inst.price * factor
        acct.apply_fill(inst, qty, price, commission)
        expected += (marks[con_id] - price) * qty * inst.multiplier - commission
    assert acct.net_liquidation(marks) - before == pytest.approx(expected, rel=1e-9, abs=1e-4)
    snap = acct.snapshot(marks)
    assert snap.daily_pnl == pytest.approx(expected, rel=1e-9, abs=1e-4)
    for pos in acct.positions.values():
        if pos.quantity:
            row = acct.row(pos, marks)
            assert row.unrealizedPNL == pytest.approx(row.marketValue - pos.quantity * pos.avgCost)


# -- margins, values, daily P&L -----------------------------------------------------------------------


def test_margins_when_holding_stock_then_reg_t_and_buying_power() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 1000, 50.0, 5.0)
    snap = acct.snapshot({AAPL: 50.0})
    assert (snap.init_margin, snap.maint_margin) == (25_000.0, 12_500.0)
    assert snap.available_funds == pytest.approx(snap.equity_with_loan - 25_000.0)
    assert snap.excess_liquidity == pytest.approx(snap.equity_with_loan - 12_500.0)
    assert snap.buying_power == pytest.approx(4 * snap.available_funds)


def test_account_values_when_listed_then_tws_keys_with_currencies() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 10, 50.0, 1.0)
    values = {(v.key, v.currency): v.value for v in acct.values({AAPL: 50.0})}
    for key in (
        "NetLiquidation",
        "TotalCashValue",
        "GrossPositionValue",
        "BuyingPower",
        "AvailableFunds",
        "ExcessLiquidity",
        "InitMarginReq",
        "MaintMarginReq",
        "EquityWithLoanValue",
        "AccruedCash",
    ):
        assert (key, "USD") in values, key
    assert values[("CashBalance", "BASE")] == "99499.00"
    assert values[("UnrealizedPnL", "USD")] == "-1.00"
    assert values[("AccountCode", "")] == "DU7654321"


def test_daily_pnl_when_a_new_day_starts_then_counts_from_the_marks_of_the_roll() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 100, 50.0, 1.0)
    acct.apply_fill(UNIVERSE[SPY], 10, 600.0, 1.0)
    acct.apply_fill(UNIVERSE[SPY], -10, 601.0, 1.0)
    acct.roll_day("2026-11-19", {AAPL: 51.0})
    assert acct.pnl({AAPL: 51.0}).dailyPnL == pytest.approx(0.0)
    assert acct.pnl({AAPL: 51.0}).realizedPnL == 0.0
    assert SPY not in acct.positions
    pnl = acct.pnl({AAPL: 53.0})
    assert pnl.dailyPnL == pytest.approx(200.0)
    assert pnl.unrealizedPnL == pytest.approx(100 * 53.0 - 100 * 50.01)
    single = acct.pnl_single(AAPL, {AAPL: 53.0})
    assert single is not None
    assert single.position == 100
    assert (single.dailyPnL, single.value) == pytest.approx((200.0, 5300.0))
    assert acct.pnl_single(SPY, {}) is None


def test_day_of_when_late_evening_utc_then_new_york_date() -> None:
    assert account().day_of(1_795_050_000 * 1_000_000_000) == "2026-11-18"  # 01:00 UTC on the 19th


def test_what_if_when_buying_then_margin_before_and_after() -> None:
    acct = account()
    figures = acct.what_if(UNIVERSE[AAPL], 100, 1.0, {AAPL: 50.0})
    texts = figures.texts()
    assert texts[0] == "0.00" and texts[6] == "2500.00" and texts[7] == "1250.00"
    assert texts[2] == "100000.00" and texts[8] == "99999.00"


def test_state_when_saved_as_json_and_loaded_then_identical_and_reset_clears_it() -> None:
    acct = account()
    acct.apply_fill(UNIVERSE[AAPL], 100, 50.0, 1.0)
    acct.apply_fill(UNIVERSE[ES], -1, 6000.0, 2.25)
    acct.roll_day("2026-11-18", {AAPL: 50.0, ES: 6000.0})
    data = json.loads(json.dumps(acct.to_dict()))
    loaded = Account.from_dict(UNIVERSE, data)
    marks = {AAPL: 49.0, ES: 5990.0}
    assert loaded.snapshot(marks) == acct.snapshot(marks)
    loaded.reset()
    assert (loaded.cash, loaded.positions) == (100_000.0, {})
    loaded.deposit(5.0)
    assert loaded.cash == 100_005.0
