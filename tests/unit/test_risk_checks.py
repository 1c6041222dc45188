"""The limit checks: each refuses with its numbers, passes under its limit, refuses an unknown
price; worst case with working orders; only growth beyond a limit is refused."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.risk import (
    CHECKS,
    BookSnapshot,
    MarketSnapshot,
    OrderIntent,
    PnLSnapshot,
    PositionSnapshot,
    RiskLimits,
    ScopeView,
    WorkingOrder,
)
from trader.risk.checks import (
    fmt,
    max_daily_loss,
    max_drawdown,
    max_gross_exposure,
    max_leverage,
    max_net_exposure,
    max_open_orders,
    max_order_notional,
    max_order_quantity,
    max_orders_per_minute,
    max_orders_per_second,
    max_position_notional,
    max_position_quantity,
    order_price,
)

AAPL, MSFT, ES, EURUSD, SONY = 265598, 272093, 495512563, 12087792, 6223250


def order(
    action: str = "BUY",
    quantity: float = 100.0,
    con_id: int = AAPL,
    symbol: str = "AAPL",
    order_type: str = "MKT",
    **kwargs: Any,
) -> OrderIntent:
    return OrderIntent("alpha", "o1", con_id, symbol, "STK", action, quantity, order_type, **kwargs)


def view(
    positions: tuple[PositionSnapshot, ...] = (),
    working: tuple[WorkingOrder, ...] = (),
    net_liquidation: float | None = None,
    **kwargs: Any,
) -> ScopeView:
    return ScopeView("account", BookSnapshot(positions, working, net_liquidation), **kwargs)


def pos(quantity: float, con_id: int = AAPL, symbol: str = "AAPL", **kwargs: Any) -> PositionSnapshot:
    return PositionSnapshot("alpha", con_id, symbol, quantity, **kwargs)


def work(remaining: float, con_id: int = AAPL, symbol: str = "AAPL", coid: str = "w") -> WorkingOrder:
    return WorkingOrder("alpha", coid, con_id, symbol, remaining)


MARKET = MarketSnapshot({AAPL: 125.0, MSFT: 400.0, ES: 5000.0, EURUSD: 1.1, SONY: 3000.0}, {"JPY": 0.0067})


def test_fmt_when_numbers_then_thousands_separators_and_at_most_two_decimals() -> None:
    assert (fmt(1200), fmt(1234.5), fmt(0.25), fmt(-5200.0), fmt(100000)) == (
        "1,200",
        "1,234.5",
        "0.25",
        "-5,200",
        "100,000",
    )


def test_registry_when_listed_then_one_check_per_limit_key() -> None:
    assert list(CHECKS) == list(RiskLimits().to_dict())


def test_every_check_when_its_limit_is_none_then_it_passes() -> None:
    for check in CHECKS.values():
        assert check(order(quantity=1e9), view(), MarketSnapshot(), RiskLimits(), 0) is None


def test_max_order_quantity_when_over_then_reason_with_numbers() -> None:
    limits = RiskLimits(max_order_quantity=1000)
    assert (
        max_order_quantity(order(quantity=1500), view(), MARKET, limits, 0)
        == "AAPL order 1,500 > limit 1,000"
    )
    assert max_order_quantity(order(quantity=1000), view(), MARKET, limits, 0) is None


def test_max_order_notional_when_over_then_quantity_price_and_total_named() -> None:
    limits = RiskLimits(max_order_notional=100_000)
    reason = max_order_notional(order(quantity=1000), view(), MARKET, limits, 0)
    assert reason == "AAPL order 1,000 x 125 = 125,000 > limit 100,000"
    assert max_order_notional(order(quantity=800), view(), MARKET, limits, 0) is None


def test_max_order_notional_when_future_then_the_multiplier_counts() -> None:
    es = order(quantity=1, con_id=ES, symbol="ES", multiplier=50.0)
    reason = max_order_notional(es, view(), MARKET, RiskLimits(max_order_notional=200_000), 0)
    assert reason == "ES order 1 x 5,000 x 50 = 250,000 > limit 200,000"


def test_max_order_notional_when_no_quote_then_refused_not_passed() -> None:
    limits = RiskLimits(max_order_notional=100_000)
    reason = max_order_notional(order(quantity=1), view(), MarketSnapshot(), limits, 0)
    assert reason == "no price for AAPL (no quote)"
    assert max_order_notional(order(quantity=1), view(), MarketSnapshot({AAPL: None}), limits, 0) is not None


def test_max_order_notional_when_limit_order_without_quote_then_its_limit_price_values_it() -> None:
    limits = RiskLimits(max_order_notional=100_000)
    lmt = order(quantity=1000, order_type="LMT", limit_price=150.0)
    assert max_order_notional(lmt, view(), MarketSnapshot(), limits, 0) == (
        "AAPL order 1,000 x 150 = 150,000 > limit 100,000"
    )


def test_order_price_when_limit_below_mark_then_the_higher_mark_is_used() -> None:
    assert order_price(order(order_type="LMT", limit_price=100.0), MARKET) == 125.0
    assert order_price(order(order_type="LMT", limit_price=130.0), MARKET) == 130.0
    assert order_price(order(order_type="MKT", limit_price=130.0), MARKET) == 125.0


def test_max_order_notional_when_foreign_currency_then_converted_and_unknown_rate_refused() -> None:
    sony = order(quantity=10_000, con_id=SONY, symbol="6758", currency="JPY")
    reason = max_order_notional(sony, view(), MARKET, RiskLimits(max_order_notional=100_000), 0)
    assert reason == "6758 order 10,000 x 3,000 x 0.0067 JPY/USD = 201,000 > limit 100,000"
    no_fx = MarketSnapshot({SONY: 3000.0})
    assert max_order_notional(sony, view(), no_fx, RiskLimits(max_order_notional=1e12), 0) == (
        "no JPY/USD rate for 6758"
    )


def test_max_position_quantity_when_working_orders_would_take_it_over_then_all_terms_named() -> None:
    limits = RiskLimits(max_position_quantity=1000)
    reason = max_position_quantity(
        order(quantity=500), view((pos(500),), (work(200), work(-300))), MARKET, limits, 0
    )
    assert reason == "AAPL would be 1,200 > limit 1,000 (position 500, working +200, order +500)"
    assert (
        max_position_quantity(order(quantity=300), view((pos(500),), (work(200),)), MARKET, limits, 0) is None
    )


def test_max_position_quantity_when_over_but_the_order_reduces_then_it_passes() -> None:
    limits = RiskLimits(max_position_quantity=1000)
    assert max_position_quantity(order("SELL", 300), view((pos(2000),)), MARKET, limits, 0) is None
    flip = max_position_quantity(order("SELL", 3500), view((pos(2000),)), MARKET, limits, 0)
    assert flip == "AAPL would be -1,500 > limit 1,000 (position 2,000, working 0, order -3,500)"


def test_max_position_notional_when_over_then_value_and_quantity_named() -> None:
    limits = RiskLimits(max_position_notional=100_000)
    reason = max_position_notional(order(quantity=400), view((pos(500),)), MARKET, limits, 0)
    assert reason == "AAPL would be 112,500 > limit 100,000 (900 x 125)"
    assert max_position_notional(order(quantity=100), view((pos(500),)), MARKET, limits, 0) is None
    assert max_position_notional(order(quantity=1), view(), MarketSnapshot(), limits, 0) == (
        "no price for AAPL (no quote)"
    )


def test_max_gross_exposure_when_over_then_worst_case_named() -> None:
    book = view((pos(1000), pos(-500, MSFT, "MSFT")), (work(-200, MSFT, "MSFT"),))
    # now: AAPL 1,000 x 125 = 125,000; MSFT worst -700 x 400 = 280,000 -> 405,000
    limits = RiskLimits(max_gross_exposure=450_000)
    assert max_gross_exposure(order(quantity=400), book, MARKET, limits, 0) == (
        "would be 455,000 > limit 450,000 (now 405,000 worst case)"
    )
    assert max_gross_exposure(order(quantity=300), book, MARKET, limits, 0) is None
    assert max_gross_exposure(order("SELL", 1000), book, MARKET, RiskLimits(max_gross_exposure=1), 0) is None


def test_max_gross_exposure_when_a_held_instrument_has_no_quote_then_refused() -> None:
    book = view((pos(10, MSFT, "MSFT"),))
    reason = max_gross_exposure(
        order(), book, MarketSnapshot({AAPL: 125.0}), RiskLimits(max_gross_exposure=1e9), 0
    )
    assert reason == "no price for MSFT (no quote)"


def test_max_net_exposure_when_longs_add_up_then_signed_worst_case_named() -> None:
    book = view((pos(1000), pos(-100, MSFT, "MSFT")))
    limits = RiskLimits(max_net_exposure=150_000)
    assert max_net_exposure(order(quantity=500), book, MARKET, limits, 0) is None  # 147,500
    assert max_net_exposure(order(quantity=600), book, MARKET, limits, 0) == (
        "would be +160,000 > limit 150,000 (now 85,000 worst case)"
    )
    # a short that lowers the net passes even past the limit on the other instrument
    assert max_net_exposure(order("SELL", 100, MSFT, "MSFT"), view((pos(2000),)), MARKET, limits, 0) is None


def test_max_leverage_when_futures_stocks_and_fx_then_values_use_multipliers_and_rates() -> None:
    positions = (
        pos(1, ES, "ES", multiplier=50.0),  # 250,000
        pos(-1000, AAPL, "AAPL"),  # 125,000
        pos(100_000, EURUSD, "EUR.USD", currency="USD"),  # 110,000 (EUR.USD quoted in USD)
    )
    book = view(positions, net_liquidation=250_000.0)
    limits = RiskLimits(max_leverage=2.0)
    es = order(quantity=1, con_id=ES, symbol="ES", multiplier=50.0)
    # gross 485,000 -> 735,000 with one more ES: 2.94x
    assert max_leverage(es, book, MARKET, limits, 0) == (
        "would be 2.94x > limit 2.00x (gross 735,000 / net liquidation 250,000)"
    )
    eur = order(quantity=10_000, con_id=EURUSD, symbol="EUR.USD")  # +11,000 -> 496,000: 1.98x
    assert max_leverage(eur, book, MARKET, limits, 0) is None
    # closing the short AAPL lowers gross: passes whatever the leverage
    assert max_leverage(order(quantity=1000), view(positions, net_liquidation=1.0), MARKET, limits, 0) is None


def test_max_leverage_when_net_liquidation_unknown_then_refused() -> None:
    reason = max_leverage(order(quantity=1), view(), MARKET, RiskLimits(max_leverage=2), 0)
    assert reason == "net liquidation unknown: leverage cannot be checked"


def test_max_open_orders_when_bracket_then_three_legs_count() -> None:
    book = view(working=tuple(work(1, coid=f"w{i}") for i in range(8)))
    limits = RiskLimits(max_open_orders=10)
    assert max_open_orders(order(), book, MARKET, limits, 0) is None
    assert (
        max_open_orders(order(bracket=True), book, MARKET, limits, 0)
        == "would be 11 > limit 10 (8 working + 3)"
    )


def test_rate_checks_when_windows_full_then_counts_named() -> None:
    limits = RiskLimits(max_orders_per_second=5, max_orders_per_minute=100)
    busy = view(orders_last_second=5, orders_last_minute=100)
    assert max_orders_per_second(order(), busy, MARKET, limits, 0) == "would be 6 orders in 1 s > limit 5"
    assert (
        max_orders_per_minute(order(), busy, MARKET, limits, 0) == "would be 101 orders in 60 s > limit 100"
    )
    calm = view(orders_last_second=4, orders_last_minute=99)
    assert max_orders_per_second(order(), calm, MARKET, limits, 0) is None
    assert max_orders_per_minute(order(), calm, MARKET, limits, 0) is None


def test_max_daily_loss_when_breached_then_only_reducing_orders_pass() -> None:
    limits = RiskLimits(max_daily_loss=5000)
    lost = view((pos(100),), day_pnl=PnLSnapshot(-3000.0, -2200.0))
    assert max_daily_loss(order(), lost, MARKET, limits, 0) == (
        "day loss 5,200 >= limit 5,000 (realized -3,000, unrealized -2,200): only reducing orders"
    )
    assert max_daily_loss(order("SELL", 100), lost, MARKET, limits, 0) is None
    fine = view(day_pnl=PnLSnapshot(-1000.0, 0.0))
    assert max_daily_loss(order(), fine, MARKET, limits, 0) is None
    unknown = view(day_pnl=PnLSnapshot(0.0, 0.0, (MSFT,)))
    assert (
        max_daily_loss(order(), unknown, MARKET, limits, 0) == f"day P&L unknown (no mark for conId {MSFT})"
    )


def test_max_drawdown_when_fallen_from_the_peak_then_refused_with_peak_named() -> None:
    limits = RiskLimits(max_drawdown=2500)
    fallen = view(day_pnl=PnLSnapshot(-1000.0, -1000.0), day_peak=1000.0)
    assert max_drawdown(order(), fallen, MARKET, limits, 0) == (
        "drawdown 3,000 from the day's peak 1,000 >= limit 2,500: only reducing orders"
    )
    assert max_drawdown(order(), view(day_pnl=PnLSnapshot(0.0), day_peak=2000.0), MARKET, limits, 0) is None


def _fills(position: float, working: Sequence[float], new: float) -> list[float]:
    """Every position reachable by filling any subset of the working orders and the new order."""
    orders = [*working, new]
    return [position + sum(s) for n in range(len(orders) + 1) for s in itertools.combinations(orders, n)]


@given(
    st.integers(-1500, 1500),
    st.lists(st.integers(-800, 800).filter(bool), max_size=5),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 1500),
)
def test_max_position_quantity_when_admitted_then_no_fill_combination_grows_past_the_limit(
    position: int, working: list[int], action: str, quantity: int
) -> None:
    limit = 1000.0
    book = view((pos(position),), tuple(work(w, coid=f"w{i}") for i, w in enumerate(working)))
    new = order(action, quantity)
    admitted = max_position_quantity(new, book, MARKET, RiskLimits(max_position_quantity=limit), 0) is None
    if not admitted:
        return
    before = max(abs(x) for x in _fills(position, working, 0.0))
    after = max(abs(x) for x in _fills(position, working, new.signed_quantity))
    assert after <= limit or after <= before


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_when_its_limit_is_exceeded_then_the_reason_holds_a_number(name: str) -> None:
    limits = RiskLimits(**{name: 1})
    book = view(
        (pos(10),),
        tuple(work(1, coid=f"w{i}") for i in range(3)),
        net_liquidation=10.0,
        orders_last_second=3,
        orders_last_minute=3,
        day_pnl=PnLSnapshot(-50.0, -5.0),
        day_peak=10.0,
    )
    reason = CHECKS[name](order(quantity=100), book, MARKET, limits, 0)
    assert reason is not None and any(ch.isdigit() for ch in reason) and "limit" in reason
