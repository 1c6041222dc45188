"""The risk engine: every failing rule named, scopes (account and strategy), trading states,
rate windows, runtime limits, kill switch, breaker through on_pnl, and the gate in front of it."""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.book import Book, Execution, OrderRequest, OrderSubmitted
from trader.risk import (
    ACCOUNT,
    BookSnapshot,
    CancelScope,
    FlattenOrder,
    FlattenScope,
    GateContext,
    Halt,
    InvalidStateTransition,
    LimitError,
    MarketSnapshot,
    OrderIntent,
    PnLSnapshot,
    PositionSnapshot,
    Reduce,
    Refusal,
    Resume,
    RiskConfig,
    RiskEngine,
    RiskError,
    RiskGate,
    RiskLimits,
    RiskSnapshot,
    TradingState,
    WorkingOrder,
    flatten_orders,
    snapshot_from_book,
)

AAPL, MSFT = 265598, 272093
S = 1_000_000_000
T0 = 1_763_700_000 * S  # 2025-11-21 04:40 UTC: Thursday 23:40 New York, trading day 2025-11-21
MARKET = MarketSnapshot(types.MappingProxyType({AAPL: 125.0, MSFT: 400.0}))


def order(
    action: str = "BUY", quantity: float = 100.0, strategy: str = "alpha", **kwargs: Any
) -> OrderIntent:
    return OrderIntent(strategy, "o1", AAPL, "AAPL", "STK", action, quantity, "MKT", **kwargs)


def snap(
    positions: tuple[PositionSnapshot, ...] = (),
    working: tuple[WorkingOrder, ...] = (),
    pnl: dict[str, PnLSnapshot] | None = None,
    market: MarketSnapshot = MARKET,
) -> RiskSnapshot:
    return RiskSnapshot(
        BookSnapshot(positions, working, 1_000_000.0, types.MappingProxyType(pnl or {})), market
    )


def pos(quantity: float, strategy: str = "alpha", con_id: int = AAPL) -> PositionSnapshot:
    return PositionSnapshot(strategy, con_id, "AAPL" if con_id == AAPL else "MSFT", quantity)


def engine(**limits: Any) -> RiskEngine:
    return RiskEngine(RiskConfig(limits=RiskLimits(**limits)))


def test_check_when_no_limits_then_passes_and_counts() -> None:
    risk = RiskEngine()
    assert risk.check(order(), snap(), T0) is None
    assert risk.status(T0)["checks"]["passed"] == 1


def test_check_when_several_rules_fail_then_all_named_with_their_numbers() -> None:
    risk = engine(max_order_quantity=50, max_order_notional=10_000, max_position_quantity=1000)
    refusal = risk.check(order(quantity=1000), snap((pos(500),)), T0)
    assert refusal is not None
    assert refusal.rule == "max_order_quantity,max_order_notional,max_position_quantity"
    assert refusal.reason == (
        "max_order_quantity: AAPL order 1,000 > limit 50; "
        "max_order_notional: AAPL order 1,000 x 125 = 125,000 > limit 10,000; "
        "max_position_quantity: AAPL would be 1,500 > limit 1,000 (position 500, working 0, order +1,000)"
    )
    assert str(refusal) == refusal.reason
    assert [v.rule for v in refusal.violations] == list(refusal.rules)
    assert risk.status(T0)["checks"]["refused"] == {
        "max_order_quantity": 1,
        "max_order_notional": 1,
        "max_position_quantity": 1,
    }


def test_check_when_no_quote_then_refused_naming_the_instrument() -> None:
    risk = engine(max_order_notional=1e9)
    refusal = risk.check(order(), snap(market=MarketSnapshot()), T0)
    assert refusal is not None
    assert (refusal.rule, refusal.reason) == (
        "max_order_notional",
        "max_order_notional: no price for AAPL (no quote)",
    )
    assert isinstance(refusal, Refusal)


def test_check_when_strategy_limit_is_tighter_then_refused_in_the_strategy_scope_only() -> None:
    config = RiskConfig(
        limits=RiskLimits(max_position_quantity=10_000),
        strategy_limits=RiskLimits(max_position_quantity=1000),
        strategies=types.MappingProxyType({"beta": RiskLimits(max_position_quantity=200)}),
    )
    risk = RiskEngine(config)
    book = snap((pos(150, "beta"), pos(9000, "alpha")))
    refusal = risk.check(order(quantity=100, strategy="beta"), book, T0)
    assert refusal is not None and refusal.rule == "max_position_quantity"
    assert refusal.reason == (
        "max_position_quantity (strategy:beta): AAPL would be 250 > limit 200 "
        "(position 150, working 0, order +100)"
    )
    both = risk.check(order(quantity=1500, strategy="alpha"), book, T0)
    assert both is not None and [v.scope for v in both.violations] == ["account", "strategy:alpha"]
    assert risk.limits_for("strategy:gamma").max_position_quantity == 1000


def test_set_limit_when_changed_then_event_and_in_force_and_strategy_none_inherits() -> None:
    risk = RiskEngine(RiskConfig(strategy_limits=RiskLimits(max_order_quantity=500)))
    event = risk.set_limit("strategy:alpha", "max_order_quantity", 50, T0)
    assert event == {
        "type": "risk.limit",
        "scope": "strategy:alpha",
        "key": "max_order_quantity",
        "value": 50.0,
        "previous": 500.0,
        "effective": 50.0,
        "at_ns": T0,
    }
    assert risk.check(order(quantity=60), snap(), T0) is not None
    assert risk.set_limit("strategy:alpha", "max_order_quantity", None, T0)["effective"] == 500.0
    assert risk.set_limit("account", "max_open_orders", 3, T0)["value"] == 3
    assert risk.overrides_record() == {
        "strategy:alpha": {"max_order_quantity": None},
        "account": {"max_open_orders": 3},
    }


@pytest.mark.parametrize(
    ("scope", "key", "value", "message"),
    [
        ("account", "max_foo", 1, "max_foo: unknown limit"),
        ("account", "max_open_orders", 2.5, "max_open_orders: expected a whole number"),
        ("account", "max_order_notional", -1, "max_order_notional: must be a positive number"),
        ("account", "max_order_notional", "big", "max_order_notional: expected a number"),
        ("desk", "max_order_notional", 1, "scope 'desk'"),
    ],
)
def test_set_limit_when_invalid_then_limit_error_names_the_key(
    scope: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(LimitError, match=message):
        RiskEngine().set_limit(scope, key, value, T0)


def test_states_when_account_halted_then_nothing_passes_and_resume_restores() -> None:
    risk = RiskEngine()
    actions = risk.halt(ACCOUNT, "operator: risk halt", T0)
    assert actions == [
        Halt(ACCOUNT, "operator: risk halt", T0, None, ""),
        CancelScope(ACCOUNT, "operator: risk halt", T0),
    ]
    refusal = risk.check(order("SELL"), snap((pos(100),)), T0)
    assert refusal is not None and refusal.reason == (
        "trading_state: account is HALTED (operator: risk halt): no new orders"
    )
    assert risk.resume(ACCOUNT, "operator", T0 + S) == [Resume(ACCOUNT, "operator", T0 + S)]
    assert risk.check(order(), snap(), T0 + S) is None
    with pytest.raises(InvalidStateTransition, match="account is active: cannot resume"):
        risk.resume(ACCOUNT, "again", T0 + S)


def test_states_when_strategy_reducing_then_only_its_reducing_orders_pass() -> None:
    risk = RiskEngine()
    assert risk.reduce("strategy:alpha", "winding down", T0) == [Reduce("strategy:alpha", "winding down", T0)]
    book = snap((pos(100), pos(100, "beta")))
    refusal = risk.check(order("BUY", 10), book, T0)
    assert refusal is not None and refusal.reason == (
        "trading_state (strategy:alpha): strategy:alpha is REDUCING (winding down): "
        "only orders that reduce a position"
    )
    assert risk.check(order("SELL", 100), book, T0) is None
    assert risk.check(order("SELL", 101), book, T0) is not None  # crossing zero grows the short
    assert risk.check(order("BUY", 10, strategy="beta"), book, T0) is None


@given(
    st.integers(-1000, 1000),
    st.lists(st.integers(-500, 500).filter(bool), max_size=4),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 2000),
    st.sampled_from(["account", "strategy:alpha"]),
)
def test_reducing_when_any_order_then_admitted_ones_never_grow_a_position(
    position: int, working: list[int], action: str, quantity: int, scope: str
) -> None:
    risk = RiskEngine()
    risk.reduce(scope, "test", T0)
    work = tuple(WorkingOrder("alpha", f"w{i}", AAPL, "AAPL", w) for i, w in enumerate(working))
    new = order(action, quantity)
    if risk.check(new, snap((pos(position),), work), T0) is not None:
        return
    same_side = sum(w for w in working if (w > 0) == (new.signed_quantity > 0))
    for filled in (new.signed_quantity, new.signed_quantity + same_side):
        after = position + filled
        assert abs(after) < abs(position)
        assert after == 0 or (after > 0) == (position > 0)


def test_rate_limits_when_orders_admitted_then_windows_per_second_and_minute_refuse() -> None:
    risk = RiskEngine(RiskConfig(limits=RiskLimits(max_orders_per_second=3, max_orders_per_minute=5)))
    times = [T0, T0 + S // 10, T0 + S // 5]
    assert [risk.check(order(), snap(), t) for t in times] == [None, None, None]
    refusal = risk.check(order(), snap(), T0 + S // 2)
    assert (
        refusal is not None and refusal.reason == "max_orders_per_second: would be 4 orders in 1 s > limit 3"
    )
    assert risk.check(order(), snap(), T0 + S + S // 5 + 1) is None  # the first two left the second
    assert risk.check(order(strategy="beta"), snap(), T0 + 2 * S) is None
    refusal = risk.check(order(strategy="gamma"), snap(), T0 + 3 * S)
    assert refusal is not None and refusal.rule == "max_orders_per_minute"
    assert risk.check(order(), snap(), T0 + 61 * S) is None


def test_rate_limits_when_per_strategy_then_other_strategies_unaffected() -> None:
    risk = RiskEngine(RiskConfig(strategy_limits=RiskLimits(max_orders_per_second=1)))
    assert risk.check(order(), snap(), T0) is None
    refusal = risk.check(order(), snap(), T0 + 1)
    assert refusal is not None and refusal.reason == (
        "max_orders_per_second (strategy:alpha): would be 2 orders in 1 s > limit 1"
    )
    assert risk.check(order(strategy="beta"), snap(), T0 + 2) is None


def test_kill_switch_when_file_appears_then_halt_and_cancel_all_and_removal_does_not_resume() -> None:
    risk = RiskEngine()
    actions = risk.kill_switch(True, T0)
    assert [type(a) for a in actions] == [Halt, CancelScope]
    assert isinstance(actions[0], Halt) and actions[0].rule == "kill_switch"
    assert risk.kill_switch(True, T0 + 1) == []  # still there: nothing new
    with pytest.raises(RiskError, match="STOP file is present"):
        risk.resume(ACCOUNT, "operator", T0 + 2)
    assert risk.kill_switch(False, T0 + 3) == []
    assert risk.state_of(ACCOUNT).state is TradingState.HALTED
    assert risk.check(order(), snap(), T0 + 4) is not None
    risk.resume(ACCOUNT, "operator", T0 + 5)
    assert risk.check(order(), snap(), T0 + 6) is None


def test_on_pnl_when_strategy_loss_breaches_then_it_halts_cancels_flattens_until_next_day() -> None:
    risk = RiskEngine(RiskConfig(strategy_limits=RiskLimits(max_daily_loss=1000)))
    assert risk.on_pnl(BookSnapshot(pnl={"alpha": PnLSnapshot(500.0, 0.0)}), T0) == []
    actions = risk.on_pnl(BookSnapshot(pnl={"alpha": PnLSnapshot(0.0, -600.0)}), T0 + S)
    assert [type(a) for a in actions] == [Halt, CancelScope, FlattenScope]
    halt = actions[0]
    assert isinstance(halt, Halt) and halt.scope == "strategy:alpha" and halt.rule == "max_daily_loss"
    assert halt.reason == (
        "circuit breaker strategy:alpha: max_daily_loss: day loss 1,100 >= limit 1,000 "
        "(realized -500, unrealized -600)"
    )
    assert halt.event()["alert"] is True
    next_day = 1_763_762_400 * S  # 2025-11-21 17:00 New York (22:00 UTC)
    assert halt.until_ns == next_day
    assert risk.check(order(), snap(), T0 + 2 * S) is not None
    assert risk.check(order(strategy="beta"), snap(), T0 + 2 * S) is None
    assert risk.on_pnl(BookSnapshot(pnl={"alpha": PnLSnapshot(0.0, -900.0)}), T0 + 3 * S) == []  # once a day
    resumed = risk.on_pnl(BookSnapshot(pnl={"alpha": PnLSnapshot(0.0, -900.0)}), next_day)
    assert resumed == [Resume("strategy:alpha", "trading day 2025-11-22 started", next_day)]
    assert risk.check(order(), snap(), next_day + 1) is None


def test_flatten_orders_when_scope_then_one_market_order_per_strategy_and_instrument() -> None:
    book = BookSnapshot((pos(100), pos(-50, "alpha", MSFT), pos(30, "beta"), pos(0, "gamma")))
    assert flatten_orders("strategy:alpha", book) == [
        FlattenOrder("alpha", AAPL, "AAPL", "SELL", 100),
        FlattenOrder("alpha", MSFT, "MSFT", "BUY", 50),
    ]
    assert len(flatten_orders(ACCOUNT, book)) == 3


def test_liquidation_when_halted_then_reducing_flatten_orders_pass_and_others_not() -> None:
    risk = RiskEngine(RiskConfig(limits=RiskLimits(max_orders_per_second=1)))
    risk.halt(ACCOUNT, "breaker", T0)
    book = snap((pos(100),), market=MarketSnapshot())
    assert risk.check(order("SELL", 100, liquidation=True), book, T0) is None
    refusal = risk.check(order("SELL", 150, liquidation=True), book, T0)
    assert refusal is not None and refusal.reason == (
        "liquidation (strategy:alpha): AAPL order -150 does not reduce position 100"
    )


def test_persistence_when_engine_rebuilt_from_records_then_halts_and_limits_survive() -> None:
    risk = RiskEngine(RiskConfig(limits=RiskLimits(max_daily_loss=100)))
    risk.set_limit("account", "max_order_quantity", 10, T0)
    risk.on_pnl(BookSnapshot(pnl={"alpha": PnLSnapshot(-200.0)}), T0)
    risk.kill_switch(True, T0)
    again = RiskEngine(risk.config, overrides=risk.overrides_record(), state=risk.state_record())
    assert again.state_record() == risk.state_record()
    assert again.limits_for(ACCOUNT).max_order_quantity == 10
    assert again.kill_switch_engaged and again.state_of(ACCOUNT).state is TradingState.HALTED


def test_status_when_asked_then_states_limits_and_day_are_reported() -> None:
    risk = RiskEngine(RiskConfig(strategies=types.MappingProxyType({"alpha": RiskLimits(max_drawdown=5)})))
    risk.reduce("strategy:beta", "why", T0)
    status = risk.status(T0)
    assert status["trading"]["state"] == "active"
    assert status["trading"]["strategies"]["beta"]["state"] == "reducing"
    assert status["limits"]["strategy:alpha"]["max_drawdown"] == 5
    assert status["trading_day"]["day"] == "2025-11-21"


def test_gate_when_engine_refuses_then_all_rules_and_extra_checks_are_named() -> None:
    risk = engine(max_order_quantity=5, max_open_orders=1)
    book = Book()
    book.register(OrderRequest("alpha", "o0", AAPL, "AAPL", "BUY", 1.0, 1))
    book.apply(OrderSubmitted("o0", 1, 2))

    def extra(order: OrderIntent, context: GateContext) -> str | None:
        return "always"

    gate = RiskGate([extra], engine=risk)
    context = GateContext(True, "connected", "", book, T0, {AAPL: 125.0})
    refusal = gate.check(order(quantity=10), context)
    assert refusal is not None and refusal.rule == "max_order_quantity,max_open_orders,extra"
    assert "max_open_orders: would be 2 > limit 1 (1 working + 1)" in refusal.reason
    assert refusal.reason.endswith("; extra: always")
    assert gate.stats()["refused"] == {"max_order_quantity": 1, "max_open_orders": 1, "extra": 1}
    assert gate.connection(context) is None


def test_gate_when_engine_passes_then_order_counts_in_the_rate_window() -> None:
    gate = RiskGate(engine=RiskEngine(RiskConfig(limits=RiskLimits(max_orders_per_second=1))))
    context = GateContext(True, "connected", "", Book(), T0, {AAPL: 125.0})
    assert gate.check(order(), context) is None
    refusal = gate.check(order(), context)
    assert refusal is not None and refusal.rule == "max_orders_per_second"
    assert gate.stats()["trading"] == {
        "state": "active",
        "reason": "",
        "since_ns": 0,
        "until_ns": None,
        "kill_switch": False,
        "strategies": {},
    }


def test_snapshot_from_book_when_positions_and_working_orders_then_signed_and_attributed() -> None:
    book = Book()
    book.register(OrderRequest("alpha", "b1", AAPL, "AAPL", "BUY", 10.0, 1))
    book.apply(OrderSubmitted("b1", 1, 2))
    book.apply(Execution("e1", 1, 0, "alpha:b1", AAPL, "AAPL", "BOT", 4.0, 120.0, 3, ""))
    book.register(OrderRequest("beta", "s1", MSFT, "MSFT", "SELL", 5.0, 1))
    book.apply(OrderSubmitted("s1", 2, 2))
    snapshot = snapshot_from_book(book, {AAPL: 125.0}, net_liquidation=1e6, currencies={MSFT: "USD"})
    assert snapshot.book.positions == (PositionSnapshot("alpha", AAPL, "AAPL", 4.0),)
    assert [(w.client_order_id, w.remaining) for w in snapshot.book.working] == [("b1", 6.0), ("s1", -5.0)]
    assert snapshot.book.pnl["alpha"].unrealized == pytest.approx(20.0)
    assert snapshot.book.total_pnl().unrealized == pytest.approx(20.0)
    assert snapshot.market.mark(AAPL) == 125.0 and snapshot.market.mark(MSFT) is None
