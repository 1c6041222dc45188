"""The order state machine: the transition table and Order.apply under IB's real message orders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.book.events import (
    CancelRequested,
    Execution,
    OpenOrder,
    OrderDenied,
    OrderError,
    OrderLost,
    OrderStatusUpdate,
    OrderSubmitted,
)
from trader.book.states import (
    ABSORBING_STATES,
    STATUS_TRIGGERS,
    TRANSITIONS,
    InvalidTransition,
    Order,
    OrderEvent,
    OrderState,
    Trigger,
    error_trigger,
    next_state,
    status_trigger,
)

S = OrderState
T = Trigger
T0 = 1_700_000_000_000_000_000
AAPL = 265598


def order(quantity: float | None = 100.0, state: OrderState = S.INITIALIZED) -> Order:
    o = Order("c1", "sma", AAPL, "AAPL", "BUY", quantity, T0)
    o.state = state
    return o


def status(name: str, t: int = 1, filled: float = 0.0) -> OrderStatusUpdate:
    return OrderStatusUpdate(7, 1001, name, T0 + t, filled=filled)


def execution(exec_id: str, shares: float, t: int = 1, price: float = 10.0) -> Execution:
    return Execution(exec_id, 7, 1001, "sma:c1", AAPL, "AAPL", "BOT", shares, price, T0 + t, "DU1")


def open_order(name: str = "Submitted", quantity: float = 100.0) -> OpenOrder:
    return OpenOrder(7, 1001, "sma:c1", "DU1", AAPL, "AAPL", "BUY", quantity, name, T0 + 1)


def state_of(o: Order) -> OrderState:
    """The state, un-narrowed (for mypy, across assertions)."""
    return o.state


def submitted(o: Order) -> Order:
    o.apply(OrderSubmitted("c1", 7, T0))
    return o


# -- the table ---------------------------------------------------------------------------------------


EXPECTED_INVALID = {
    *((s, T.SUBMIT) for s in [S.REJECTED]),
    *((s, T.DENY) for s in S if s not in (S.INITIALIZED, S.REJECTED)),
    *((s, T.CANCEL_REQUEST) for s in (S.FILLED, S.CANCELLED, S.API_CANCELLED, S.REJECTED)),
    (S.FILLED, T.IB_CANCELLED),
    (S.FILLED, T.IB_API_CANCELLED),
    (S.FILLED, T.IB_INACTIVE),
    (S.CANCELLED, T.IB_FILLED),
    (S.API_CANCELLED, T.IB_FILLED),
    (S.REJECTED, T.IB_FILLED),
}


def test_table_when_enumerated_then_exactly_the_documented_pairs_are_invalid() -> None:
    invalid = {(s, t) for s in S for t in T if (s, t) not in TRANSITIONS}
    assert invalid == EXPECTED_INVALID


@pytest.mark.parametrize("state", list(S))
def test_table_when_an_execution_arrives_in_any_state_then_it_is_accepted(state: OrderState) -> None:
    assert next_state(state, T.FILL_COMPLETE) is S.FILLED
    assert (state, T.FILL) in TRANSITIONS


@pytest.mark.parametrize("state", sorted(ABSORBING_STATES))
@pytest.mark.parametrize(
    "trigger",
    [T.IB_PENDING_SUBMIT, T.IB_API_PENDING, T.IB_PRE_SUBMITTED, T.IB_SUBMITTED, T.IB_PENDING_CANCEL],
)
def test_table_when_terminal_state_takes_a_late_working_status_then_no_op(
    state: OrderState, trigger: Trigger
) -> None:
    assert next_state(state, trigger) is state


@pytest.mark.parametrize("state", sorted(ABSORBING_STATES))
def test_table_when_terminal_state_takes_its_own_status_again_then_no_op(state: OrderState) -> None:
    trigger = {S.FILLED: T.IB_FILLED, S.CANCELLED: T.IB_CANCELLED, S.API_CANCELLED: T.IB_API_CANCELLED}.get(
        state, T.REJECT
    )
    assert next_state(state, trigger) is state


def test_next_state_when_impossible_then_invalid_transition_names_order_state_and_event() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(S.FILLED, T.IB_CANCELLED, order="c1 (orderId 7)", event="OrderStatusUpdate")
    assert info.value.state is S.FILLED and info.value.trigger is T.IB_CANCELLED
    assert str(info.value) == "order c1 (orderId 7) in state Filled cannot take Cancelled (OrderStatusUpdate)"


def test_status_trigger_when_every_ib_status_then_mapped_and_unknown_refused() -> None:
    assert {status_trigger(s) for s in STATUS_TRIGGERS} == set(STATUS_TRIGGERS.values())
    assert status_trigger("ValidationError") is None
    assert status_trigger("") is None
    with pytest.raises(ValueError, match="Bogus"):
        status_trigger("Bogus")


@pytest.mark.parametrize(
    ("code", "trigger"),
    [
        (201, T.REJECT),
        (103, T.REJECT),
        (110, T.REJECT),
        (200, T.REJECT),
        (202, T.IB_CANCELLED),
        (10148, T.CANCEL_REJECT),
        (161, T.CANCEL_REJECT),
        (10147, T.CANCEL_REJECT),
        (399, None),
        (2109, None),
    ],
)
def test_error_trigger_when_code_then_classified(code: int, trigger: Trigger | None) -> None:
    assert error_trigger(code) is trigger


# -- Order.apply under IB's message orders -------------------------------------------------------------


def test_order_when_submitted_then_pending_submit_with_order_id() -> None:
    o = submitted(order())
    assert (o.state, o.order_id) == (S.PENDING_SUBMIT, 7)
    assert o.apply(OrderSubmitted("c1", 7, T0)) is False


def test_order_when_execution_arrives_before_open_order_then_partially_filled_and_ack_keeps_it() -> None:
    o = submitted(order())
    assert o.apply(execution("e1", 40))
    assert (o.state, o.filled, o.perm_id) == (S.PARTIALLY_FILLED, 40, 1001)
    o.apply(open_order("Submitted"))
    o.apply(status("Submitted", filled=40))
    assert o.state is S.PARTIALLY_FILLED


def test_order_when_filled_status_precedes_last_execution_then_filled_and_last_fill_counted() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(execution("e1", 60))
    o.apply(status("Filled", filled=100))
    assert (o.state, o.filled) == (S.FILLED, 60)
    assert o.apply(execution("e2", 40, t=2, price=11.0))
    assert (o.state, o.filled, o.avg_fill_price) == (S.FILLED, 100, 10.4)


def test_order_when_filled_status_never_comes_then_the_completing_execution_fills_it() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(execution("e1", 30))
    o.apply(execution("e2", 70, t=2))
    assert (o.state, o.filled, o.remaining) == (S.FILLED, 100, 0)


def test_order_when_status_reports_filled_then_filled_quantity_comes_only_from_executions() -> None:
    o = submitted(order())
    o.apply(status("Submitted", filled=50))
    assert (o.state, o.filled, o.ib_filled) == (S.SUBMITTED, 0, 50)


def test_order_when_duplicate_execution_then_applied_once() -> None:
    o = submitted(order())
    o.apply(execution("e1", 40))
    assert o.apply(execution("e1", 40)) is False
    assert o.filled == 40


def test_order_when_repeated_status_then_no_change() -> None:
    o = submitted(order())
    assert o.apply(status("Submitted"))
    assert o.apply(status("Submitted")) is False


def test_order_when_stale_submitted_arrives_after_filled_then_absorbed() -> None:
    o = submitted(order())
    o.apply(execution("e1", 100))
    o.apply(status("Filled"))
    o.apply(status("Submitted"))
    o.apply(status("PreSubmitted"))
    assert o.state is S.FILLED


def test_order_when_cancelled_status_after_filled_then_invalid_and_unchanged() -> None:
    o = submitted(order())
    o.apply(execution("e1", 100))
    record = o.to_record()
    with pytest.raises(InvalidTransition, match=r"c1 .* in state Filled cannot take Cancelled"):
        o.apply(status("Cancelled"))
    assert o.to_record() == record


def test_order_when_cancel_requested_on_filled_order_then_invalid_transition() -> None:
    o = submitted(order())
    o.apply(execution("e1", 100))
    with pytest.raises(InvalidTransition, match="cancel_request"):
        o.apply(CancelRequested("c1", T0 + 5))
    assert o.state is S.FILLED


def test_order_when_cancel_requested_before_sending_then_cancelled_locally() -> None:
    o = order()
    o.apply(CancelRequested("c1", T0 + 1))
    assert o.state is S.CANCELLED


@pytest.mark.parametrize("first", [CancelRequested("c1", T0 + 1), OrderLost("c1", T0 + 1)])
def test_order_when_cancelled_or_lost_before_sending_then_it_cannot_be_submitted(
    first: CancelRequested | OrderLost,
) -> None:
    o = order()
    o.apply(first)
    with pytest.raises(InvalidTransition, match="never sent"):
        o.apply(OrderSubmitted("c1", 7, T0 + 2))


def test_order_when_cancel_is_refused_then_the_previous_state_returns() -> None:
    o = submitted(order())
    o.apply(status("PreSubmitted"))
    o.apply(CancelRequested("c1", T0 + 2))
    assert o.state is S.PENDING_CANCEL
    o.apply(OrderError(7, 10148, "cannot be cancelled", T0 + 3))
    assert state_of(o) is S.PRE_SUBMITTED


def test_order_when_fill_arrives_during_pending_cancel_and_cancel_is_refused_then_partially_filled() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(CancelRequested("c1", T0 + 2))
    o.apply(execution("e1", 10, t=3))
    assert o.state is S.PENDING_CANCEL
    o.apply(OrderError(7, 161, "not in a cancellable state", T0 + 4))
    assert state_of(o) is S.PARTIALLY_FILLED


def test_order_when_fill_races_the_cancel_then_the_fill_counts_and_the_order_stays_cancelled() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(CancelRequested("c1", T0 + 2))
    o.apply(status("Cancelled", t=3))
    o.apply(execution("e1", 10, t=2))
    assert (o.state, o.filled) == (S.CANCELLED, 10)
    o.apply(execution("e2", 90, t=2))
    assert o.state is S.FILLED


def test_order_when_reject_code_before_acknowledgement_then_rejected() -> None:
    o = submitted(order())
    o.apply(OrderError(7, 201, "Order rejected - reason: margin", T0 + 1))
    assert (o.state, o.reason) == (S.REJECTED, "201: Order rejected - reason: margin")
    o.apply(status("Cancelled", t=2))
    o.apply(status("Inactive", t=3))
    assert o.state is S.REJECTED


def test_order_when_reject_code_after_acknowledgement_then_a_modification_was_rejected() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(OrderError(7, 201, "Order rejected - reason: modify", T0 + 1))
    assert o.state is S.SUBMITTED


def test_order_when_denied_before_sending_then_rejected_and_cannot_be_submitted() -> None:
    o = order()
    o.apply(OrderDenied("c1", "max order size", T0 + 1))
    assert (o.state, o.reason) == (S.REJECTED, "max order size")
    with pytest.raises(InvalidTransition):
        o.apply(OrderSubmitted("c1", 7, T0 + 2))


def test_order_when_inactive_then_submitted_again_then_revived() -> None:
    o = submitted(order())
    o.apply(status("Inactive"))
    assert o.state.is_done
    o.apply(status("Submitted", t=2))
    assert o.state is S.SUBMITTED


def test_order_when_lost_then_unknown_until_an_ib_message_resolves_it() -> None:
    o = submitted(order())
    o.apply(status("Submitted"))
    o.apply(OrderLost("c1", T0 + 5))
    assert (o.state, o.state.is_working) == (S.UNKNOWN, True)
    assert o.apply(OrderLost("c1", T0 + 6)) is False
    o.apply(status("Cancelled", t=7))
    assert o.state is S.CANCELLED


def test_order_when_api_cancelled_then_late_cancelled_is_a_no_op() -> None:
    o = submitted(order())
    o.apply(status("ApiCancelled"))
    assert o.apply(status("Cancelled", t=2)) is False
    assert o.state is S.API_CANCELLED


def test_order_when_open_order_changes_quantity_then_quantity_follows_ib() -> None:
    o = submitted(order())
    o.apply(open_order("Submitted", quantity=150))
    o.apply(execution("e1", 100))
    assert (o.quantity, o.state) == (150, S.PARTIALLY_FILLED)


def test_order_when_record_round_trips_then_equal() -> None:
    from trader.book.positions import Fill

    o = submitted(order())
    o.apply(execution("e1", 40))
    fills = {"e1": Fill("e1", "DU1", "sma", AAPL, "AAPL", 40, 10.0, T0 + 1, client_order_id="c1")}
    again = Order.from_record(o.to_record(), fills)
    assert again.to_record() == o.to_record()
    assert again.fills == o.fills


# -- properties ------------------------------------------------------------------------------------------

STATUSES = ["PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel", "Cancelled", "Filled", "Inactive"]
ib_messages = st.lists(
    st.one_of(
        st.builds(status, st.sampled_from(STATUSES), st.integers(1, 50)),
        st.builds(
            lambda i, q, t: execution(f"e{i}", q, t),
            st.integers(0, 6),
            st.sampled_from([10.0, 25.0]),
            st.integers(1, 50),
        ),
        st.builds(lambda c: OrderError(7, c, "x", T0), st.sampled_from([201, 202, 10148, 399])),
        st.builds(lambda t: CancelRequested("c1", T0 + t), st.integers(1, 50)),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ib_messages)
def test_order_when_any_message_sequence_then_fills_counted_once_and_refusals_change_nothing(
    events: list[OrderEvent],
) -> None:
    o = submitted(order())
    shares: dict[str, float] = {}
    for event in events:
        before = o.to_record()
        try:
            o.apply(event)
        except InvalidTransition:
            assert o.to_record() == before
            assert not isinstance(event, Execution)
            continue
        if isinstance(event, Execution):
            shares.setdefault(event.exec_id, event.shares)
    assert o.filled == sum(shares.values())
    if o.quantity is not None and o.filled >= o.quantity:
        assert o.state is S.FILLED
