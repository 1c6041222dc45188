"""Trading states: the transition table, invalid moves raise, halts with an end, admission."""

from __future__ import annotations

import pytest

from trader.risk.state import (
    TRANSITIONS,
    InvalidStateTransition,
    ScopeState,
    StateAction,
    TradingState,
    admits,
)

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@pytest.mark.parametrize(
    ("state", "action", "target"),
    [
        (ACTIVE, StateAction.HALT, HALTED),
        (ACTIVE, StateAction.REDUCE, REDUCING),
        (REDUCING, StateAction.HALT, HALTED),
        (REDUCING, StateAction.RESUME, ACTIVE),
        (HALTED, StateAction.RESUME, ACTIVE),
        (HALTED, StateAction.REDUCE, REDUCING),
        (HALTED, StateAction.HALT, HALTED),
    ],
)
def test_apply_when_move_in_table_then_new_state_with_reason_and_since(
    state: TradingState, action: StateAction, target: TradingState
) -> None:
    moved = ScopeState("account", state, "before", 1).apply(action, "why", 5)
    assert moved.state is target and moved.reason == "why"
    assert moved.since_ns == (1 if target is state else 5)


@pytest.mark.parametrize(("state", "action"), [(ACTIVE, StateAction.RESUME), (REDUCING, StateAction.REDUCE)])
def test_apply_when_move_not_in_table_then_raises_naming_scope_state_and_action(
    state: TradingState, action: StateAction
) -> None:
    with pytest.raises(InvalidStateTransition, match=f"strategy:alpha is {state}: cannot {action}"):
        ScopeState("strategy:alpha", state).apply(action, "why", 1)
    assert (state, action) not in TRANSITIONS


def test_apply_when_halted_again_then_manual_halt_outlasts_a_timed_one() -> None:
    timed = ScopeState("account").apply(StateAction.HALT, "breaker", 1, until_ns=100)
    assert timed.until_ns == 100
    assert timed.apply(StateAction.HALT, "later breaker", 2, until_ns=200).until_ns == 200
    manual = timed.apply(StateAction.HALT, "kill switch", 3)
    assert manual.until_ns is None and manual.since_ns == 1 and manual.reason == "kill switch"
    assert manual.apply(StateAction.RESUME, "operator", 4).until_ns is None


def test_record_when_round_tripped_then_equal() -> None:
    state = ScopeState("strategy:x", HALTED, "r", 3, 9)
    assert ScopeState.from_record(state.to_record()) == state


@pytest.mark.parametrize(
    ("state", "quantity", "position", "pending", "admitted"),
    [
        (ACTIVE, 100, 0, 0, True),
        (HALTED, -10, 100, 0, False),
        (REDUCING, -10, 100, 0, True),
        (REDUCING, -100, 100, 0, True),
        (REDUCING, -101, 100, 0, False),
        (REDUCING, -50, 100, -60, False),
        (REDUCING, 10, 100, 0, False),
        (REDUCING, 10, -100, 0, True),
        (REDUCING, 10, 0, 0, False),
        (REDUCING, -10, 0, 0, False),
    ],
)
def test_admits_when_state_and_position_then_only_reducing_orders_in_reducing(
    state: TradingState, quantity: float, position: float, pending: float, admitted: bool
) -> None:
    assert admits(state, quantity, position, pending) is admitted
