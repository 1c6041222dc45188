"""Positions and P&L: average price, realized net of commissions, multipliers, strategies vs account."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.book.positions import Fill, PnL, PositionKey, Positions

T0 = 1_700_000_000_000_000_000
AAPL = 265598
ES = 495512563
MSFT = 272093


def fill(
    exec_id: str,
    quantity: float,
    price: float,
    *,
    t: int = 0,
    strategy: str = "sma",
    con_id: int = AAPL,
    commission: float | None = None,
    multiplier: float = 1.0,
    account: str = "DU1",
) -> Fill:
    return Fill(
        exec_id,
        account,
        strategy,
        con_id,
        "X",
        quantity,
        price,
        T0 + t,
        multiplier=multiplier,
        commission=commission,
    )


def book(*fills: Fill) -> Positions:
    positions = Positions()
    for f in fills:
        positions.add(f)
    return positions


KEY = PositionKey("DU1", "sma", AAPL)


def test_position_when_adding_then_average_price_is_quantity_weighted() -> None:
    pos = book(fill("a", 100, 10.0), fill("b", 300, 12.0, t=1)).position(KEY)
    assert (pos.quantity, pos.avg_price, pos.realized) == (400, 11.5, 0.0)


def test_position_when_reducing_then_average_kept_and_realized_booked() -> None:
    pos = book(fill("a", 100, 10.0), fill("b", -40, 12.5, t=1)).position(KEY)
    assert (pos.quantity, pos.avg_price, pos.realized) == (60, 10.0, 100.0)


def test_position_when_flipping_through_zero_then_the_rest_opens_at_the_fill_price() -> None:
    pos = book(fill("a", 100, 10.0), fill("b", -150, 9.0, t=1)).position(KEY)
    assert (pos.quantity, pos.avg_price, pos.realized) == (-50, 9.0, -100.0)


def test_position_when_closed_then_flat_with_zero_average() -> None:
    pos = book(fill("a", -10, 10.0), fill("b", 10, 8.0, t=1)).position(KEY)
    assert (pos.quantity, pos.avg_price, pos.realized, pos.is_flat) == (0, 0, 20.0, True)


def test_pnl_when_commissions_known_then_realized_is_net_of_all_of_them() -> None:
    positions = book(fill("a", 100, 10.0, commission=1.0), fill("b", -100, 11.0, t=1, commission=1.5))
    pnl = positions.pnl({AAPL: 11.0})
    assert (pnl.realized, pnl.commissions, pnl.unrealized) == (97.5, 2.5, 0.0)


def test_pnl_when_commission_arrives_late_then_averages_unchanged_and_realized_net() -> None:
    positions = book(fill("a", 100, 10.0))
    assert positions.set_commission("a", 1.0)
    assert not positions.set_commission("a", 1.0)
    pos = positions.position(KEY)
    assert (pos.avg_price, pos.realized, pos.commissions) == (10.0, -1.0, 1.0)
    with pytest.raises(KeyError):
        positions.set_commission("nope", 1.0)


def test_pnl_when_future_then_multiplier_scales_realized_and_unrealized() -> None:
    positions = book(
        fill("a", 2, 4500.0, con_id=ES, multiplier=50, commission=2.0),
        fill("b", -1, 4510.0, t=1, con_id=ES, multiplier=50, commission=2.0),
    )
    pos = positions.position(PositionKey("DU1", "sma", ES))
    assert (pos.quantity, pos.avg_cost, pos.realized) == (1, 225_000.0, 500.0 - 4.0)
    assert positions.pnl({ES: 4520.0}) == PnL(496.0, 1000.0, 4.0)
    assert pos.market_value(4520.0) == 226_000.0


def test_positions_when_multiplier_changes_for_a_con_id_then_refused() -> None:
    positions = book(fill("a", 1, 4500.0, con_id=ES, multiplier=50))
    with pytest.raises(ValueError, match="multiplier"):
        positions.add(fill("b", 1, 4500.0, t=1, con_id=ES, multiplier=5))
    assert len(positions) == 1


def test_positions_when_two_strategies_hold_opposite_positions_then_account_is_the_sum() -> None:
    positions = book(
        fill("a", 100, 10.0, strategy="sma"),
        fill("b", -30, 11.0, strategy="momo", t=1),
    )
    assert positions.net_quantity("DU1", AAPL) == 70
    assert positions.account_quantities() == {("DU1", AAPL): 70}
    by_strategy = positions.pnl_by_strategy({AAPL: 12.0})
    assert by_strategy["sma"].unrealized == 200.0 and by_strategy["momo"].unrealized == -30.0
    assert positions.pnl_by_account({AAPL: 12.0})["DU1"].unrealized == 170.0


def test_pnl_when_a_mark_is_missing_then_reported_and_left_out() -> None:
    positions = book(
        fill("a", 100, 10.0), fill("b", 5, 20.0, con_id=MSFT), fill("c", -5, 21.0, t=1, con_id=MSFT)
    )
    pnl = positions.pnl({})
    assert pnl.missing_marks == (AAPL,) and pnl.unrealized == 0.0 and pnl.realized == 5.0


def test_positions_when_a_fill_arrives_out_of_order_then_same_as_in_order() -> None:
    fills = [fill("a", 100, 10.0, t=0), fill("b", -100, 12.0, t=1), fill("c", 50, 11.0, t=2)]
    in_order = book(*fills)
    late = book(fills[0], fills[2], fills[1])
    assert late.positions() == in_order.positions()
    assert late.position(KEY).realized == 200.0


def test_positions_when_duplicate_exec_id_then_not_booked_twice() -> None:
    positions = book(fill("a", 100, 10.0))
    assert not positions.add(fill("a", 100, 10.0))
    assert positions.position(KEY).quantity == 100


def test_positions_when_filtered_then_only_matching_and_flat_ones_optional() -> None:
    positions = book(fill("a", 10, 1.0), fill("b", -10, 1.0, t=1), fill("c", 5, 1.0, strategy="momo"))
    assert [p.strategy for p in positions.positions(include_flat=False)] == ["momo"]
    assert [p.strategy for p in positions.positions(strategy="sma")] == ["sma"]
    assert positions.strategies() == ["momo", "sma"] and positions.accounts() == ["DU1"]
    assert [f.exec_id for f in positions.fills(strategy="sma")] == ["a", "b"]


# -- properties -------------------------------------------------------------------------------------

INSTRUMENTS = {AAPL: 1.0, ES: 50.0}
rows = st.lists(
    st.tuples(
        st.sampled_from(["sma", "momo", "mr"]),
        st.sampled_from(sorted(INSTRUMENTS)),
        st.integers(-20, 20).filter(bool),
        st.integers(360, 440).map(lambda p: p / 4),
        st.integers(0, 8).map(lambda c: c / 8),
        st.integers(0, 50),
    ),
    max_size=40,
)
marks = st.fixed_dictionaries({c: st.integers(360, 440).map(lambda p: p / 4) for c in INSTRUMENTS})


def fills_of(data: list[tuple[str, int, int, float, float, int]]) -> list[Fill]:
    return [
        fill(f"x{i}", q, p, t=t, strategy=s, con_id=c, commission=com, multiplier=INSTRUMENTS[c])
        for i, (s, c, q, p, com, t) in enumerate(data)
    ]


@settings(max_examples=200, deadline=None)
@given(rows)
def test_positions_when_any_fills_then_account_position_is_the_sum_of_strategy_positions(
    data: list[tuple[str, int, int, float, float, int]],
) -> None:
    fills = fills_of(data)
    positions = book(*fills)
    for (account, con_id), quantity in positions.account_quantities().items():
        expected = sum(f.quantity for f in fills if (f.account, f.con_id) == (account, con_id))
        assert quantity == pytest.approx(expected, abs=1e-9)
        by_strategy = [p.quantity for p in positions.positions(account=account, con_id=con_id)]
        assert quantity == pytest.approx(math.fsum(by_strategy), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(rows, marks)
def test_pnl_when_any_fills_then_realized_plus_unrealized_is_the_mark_to_market_change_net_of_commissions(
    data: list[tuple[str, int, int, float, float, int]], mark: dict[int, float]
) -> None:
    fills = fills_of(data)
    positions = book(*fills)
    for strategy in ["sma", "momo", "mr"]:
        mine = [f for f in fills if f.strategy == strategy]
        cash = -sum(f.quantity * f.price * f.multiplier + (f.commission or 0.0) for f in mine)
        held = {c: sum(f.quantity for f in mine if f.con_id == c) for c in INSTRUMENTS}
        value = cash + sum(q * mark[c] * INSTRUMENTS[c] for c, q in held.items())
        pnl = positions.pnl(mark, strategy=strategy)
        assert pnl.total == pytest.approx(value, abs=1e-6)
    assert positions.pnl(mark).total == pytest.approx(
        sum(p.total for p in positions.pnl_by_strategy(mark).values()), abs=1e-6
    )


@settings(max_examples=200, deadline=None)
@given(rows, st.randoms(use_true_random=False))
def test_positions_when_fills_arrive_in_any_order_with_duplicates_then_identical(
    data: list[tuple[str, int, int, float, float, int]], rnd: random.Random
) -> None:
    fills = fills_of(data)
    reference = book(*fills).positions()
    replay = fills + rnd.sample(fills, k=len(fills) // 2)
    rnd.shuffle(replay)
    assert book(*replay).positions() == reference
