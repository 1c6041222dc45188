"""The book: orderRef, idempotent registration, lookups, commissions, outside orders, records."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.book.events import (
    EXTERNAL,
    CancelRequested,
    Commission,
    Execution,
    OpenOrder,
    OrderRequest,
    OrderStatusUpdate,
    OrderSubmitted,
    PositionAdjusted,
    build_order_ref,
    parse_order_ref,
    to_ns,
)
from trader.book.orders import Book
from trader.book.states import BookConflict, InvalidTransition, OrderState, UnknownOrder

T0 = 1_700_000_000_000_000_000
AAPL = 265598
MSFT = 272093


def request(
    coid: str = "c1", strategy: str = "sma", quantity: float = 100, action: str = "BUY"
) -> OrderRequest:
    return OrderRequest(strategy, coid, AAPL, "AAPL", "BUY" if action == "BUY" else "SELL", quantity, T0)


def execution(
    exec_id: str,
    shares: float,
    *,
    order_ref: str = "sma:c1",
    order_id: int = 7,
    perm_id: int = 1001,
    side: str = "BOT",
    price: float = 10.0,
    t: int = 1,
    con_id: int = AAPL,
) -> Execution:
    return Execution(
        exec_id,
        order_id,
        perm_id,
        order_ref,
        con_id,
        "AAPL",
        "BOT" if side == "BOT" else "SLD",
        shares,
        price,
        T0 + t,
        "DU1",
    )


def open_order(
    *,
    order_ref: str = "sma:c1",
    order_id: int = 7,
    perm_id: int = 1001,
    status: str = "Submitted",
    qty: float = 100,
) -> OpenOrder:
    return OpenOrder(order_id, perm_id, order_ref, "DU1", AAPL, "AAPL", "BUY", qty, status, T0 + 1)


def placed(book: Book, coid: str = "c1", order_id: int = 7, quantity: float = 100) -> None:
    book.register(request(coid, quantity=quantity))
    book.apply(OrderSubmitted(coid, order_id, T0))


# -- orderRef ------------------------------------------------------------------------------------------


def test_order_ref_when_built_then_parsed_back() -> None:
    assert build_order_ref("sma", "c-1") == "sma:c-1"
    assert parse_order_ref("sma:c-1") == ("sma", "c-1")
    assert parse_order_ref("sma:a:b") == ("sma", "a:b")


@pytest.mark.parametrize("strategy", ["", "a:b", "with space", "external", "unattributed"])
def test_order_ref_when_strategy_invalid_or_reserved_then_refused(strategy: str) -> None:
    with pytest.raises(ValueError, match="strategy"):
        build_order_ref(strategy, "c1")


@pytest.mark.parametrize("ref", ["", "manual", ":c1", "sma:", "external:c1", "my strat:c1"])
def test_order_ref_when_not_bourse_then_parse_returns_none(ref: str) -> None:
    assert parse_order_ref(ref) is None


def test_to_ns_when_aware_datetime_then_nanoseconds_and_naive_refused() -> None:
    assert to_ns(datetime(2023, 11, 14, 22, 13, 20, 5, tzinfo=UTC)) == T0 + 5_000
    with pytest.raises(ValueError, match="naive"):
        to_ns(datetime(2023, 11, 14))


# -- registration and lookups -----------------------------------------------------------------------


def test_register_when_client_order_id_is_new_then_initialized_order_created() -> None:
    book = Book()
    order, created = book.register(request())
    assert created and order.state is OrderState.INITIALIZED and order.order_ref == "sma:c1"


def test_register_when_client_order_id_already_seen_then_existing_order_returned() -> None:
    book = Book()
    first, _ = book.register(request())
    again, created = book.register(request())
    assert again is first and not created and len(book.orders) == 1


def test_register_when_client_order_id_reused_with_other_terms_then_conflict() -> None:
    book = Book()
    book.register(request())
    with pytest.raises(BookConflict, match="c1"):
        book.register(request(quantity=5))


def test_book_when_submitted_and_acknowledged_then_found_by_order_id_and_perm_id() -> None:
    book = Book()
    placed(book)
    book.apply(open_order())
    order = book.order("c1")
    assert book.by_order_id(7) is order and book.by_perm_id(1001) is order
    assert book.by_order_id(7, client_id=3) is None
    assert order.state is OrderState.SUBMITTED


def test_book_when_order_id_of_another_order_is_submitted_then_conflict_and_unchanged() -> None:
    book = Book()
    placed(book, "c1", 7)
    book.register(request("c2"))
    records = book.to_records()
    with pytest.raises(BookConflict, match="orderId 7"):
        book.apply(OrderSubmitted("c2", 7, T0))
    assert book.to_records() == records


def test_book_when_order_id_of_a_done_order_is_reused_then_the_new_order_takes_it() -> None:
    book = Book()
    placed(book, "c1", 7)
    book.apply(execution("e1", 100))
    placed(book, "c2", 7)
    assert book.by_order_id(7) is book.order("c2")
    again = Book.from_records(book.to_records()).by_order_id(7)
    assert again is not None and again.client_order_id == "c2"


def test_book_when_order_ref_names_another_strategy_then_conflict() -> None:
    book = Book()
    placed(book)
    book.apply(open_order())
    with pytest.raises(BookConflict, match="momo:c1"):
        book.apply(open_order(order_ref="momo:c1"))
    with pytest.raises(BookConflict, match="orderRef"):
        book.apply(execution("e1", 1, order_ref="sma:other"))
    assert not book.has_execution("e1")


def test_book_when_command_names_unknown_order_then_unknown_order() -> None:
    with pytest.raises(UnknownOrder):
        Book().apply(CancelRequested("nope", T0))


def test_book_when_status_for_unknown_order_then_ignored_with_a_note() -> None:
    outcome = Book().apply(OrderStatusUpdate(99, 0, "Submitted", T0))
    assert not outcome.changed and "unknown order" in outcome.note


def test_book_when_invalid_transition_then_book_unchanged() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 100))
    records = book.to_records()
    with pytest.raises(InvalidTransition):
        book.apply(OrderStatusUpdate(7, 1001, "Cancelled", T0 + 9))
    assert book.to_records() == records


# -- executions and commissions ---------------------------------------------------------------------


def test_book_when_execution_arrives_before_open_order_then_found_by_order_ref() -> None:
    book = Book()
    book.register(request())
    outcome = book.apply(execution("e1", 40, order_id=0))
    assert outcome.client_order_id == "c1" and outcome.state is OrderState.PARTIALLY_FILLED
    assert book.by_perm_id(1001) is book.order("c1")
    assert book.positions.net_quantity("DU1", AAPL) == 40


def test_book_when_execution_is_replayed_then_applied_once() -> None:
    book = Book()
    placed(book)
    assert book.apply(execution("e1", 40)).changed
    outcome = book.apply(execution("e1", 40))
    assert not outcome.changed and outcome.client_order_id == "c1"
    assert book.order("c1").filled == 40 and book.positions.net_quantity("DU1", AAPL) == 40


def test_book_when_commission_arrives_before_its_execution_then_attached_when_it_comes() -> None:
    book = Book()
    placed(book)
    assert book.apply(Commission("e1", 1.25)).changed
    assert "e1" in book.pending_commissions
    outcome = book.apply(execution("e1", 40))
    assert outcome.fill is not None and outcome.fill.commission == 1.25
    assert not book.pending_commissions


def test_book_when_commission_arrives_after_its_execution_then_realized_is_net_of_it() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 40))
    assert book.apply(Commission("e1", 1.25)).changed
    assert not book.apply(Commission("e1", 1.25)).changed
    assert book.positions.pnl({AAPL: 10.0}).realized == -1.25


def test_book_when_execution_exceeds_quantity_then_overfill_flagged_and_booked() -> None:
    book = Book()
    placed(book, quantity=50)
    assert not book.apply(execution("e1", 40)).overfill
    outcome = book.apply(execution("e2", 20, t=2))
    assert outcome.overfill and book.order("c1").overfilled
    assert book.order("c1").state is OrderState.FILLED
    assert book.positions.net_quantity("DU1", AAPL) == 60


def test_book_when_open_order_placed_outside_bourse_then_adopted_as_external() -> None:
    book = Book()
    outcome = book.apply(open_order(order_ref="", order_id=0, perm_id=555))
    order = book.order("ext:555")
    assert outcome.changed and order.strategy == EXTERNAL and order.is_external and order.order_ref == ""
    book.apply(execution("x1", 100, order_ref="", order_id=0, perm_id=555))
    assert order.state is OrderState.FILLED
    assert book.positions.positions(strategy=EXTERNAL)[0].quantity == 100


def test_book_when_outside_execution_precedes_its_open_order_then_one_external_order() -> None:
    book = Book()
    book.apply(execution("x1", 30, order_ref="manual", order_id=0, perm_id=556))
    order = book.order("ext:556")
    assert order.quantity is None and order.state is OrderState.PARTIALLY_FILLED
    book.apply(open_order(order_ref="manual", order_id=0, perm_id=556, qty=30, status="Filled"))
    assert list(book.orders) == ["ext:556"]
    again = book.order("ext:556")
    assert (again.quantity, again.state) == (30, OrderState.FILLED)


def test_book_when_bourse_order_unknown_to_the_book_then_adopted_under_its_strategy() -> None:
    book = Book()
    book.apply(open_order(order_ref="momo:z9", perm_id=777, order_id=12))
    order = book.order("z9")
    assert (order.strategy, order.quantity, order.state) == ("momo", 100, OrderState.SUBMITTED)
    again, created = book.register(
        OrderRequest("momo", "z9", AAPL, "AAPL", "BUY", 100, T0 + 5)
    )  # the strategy retries after a restart
    assert again is order and not created


def test_book_when_adjustment_applied_twice_then_booked_once() -> None:
    book = Book()
    adj = PositionAdjusted("adj1", "DU1", "unattributed", AAPL, "AAPL", 5, 10.0, T0)
    assert book.apply(adj).changed and not book.apply(adj).changed
    assert book.positions.net_quantity("DU1", AAPL) == 5


def test_book_when_working_orders_listed_then_done_ones_excluded() -> None:
    book = Book()
    placed(book, "c1", 7)
    placed(book, "c2", 8)
    book.apply(execution("e1", 100))
    assert [o.client_order_id for o in book.working_orders()] == ["c2"]


# -- records ----------------------------------------------------------------------------------------


def busy_book() -> Book:
    book = Book()
    placed(book, "c1", 7)
    placed(book, "c2", 8, quantity=50)
    book.apply(open_order())
    book.apply(execution("e1", 40))
    book.apply(Commission("e1", 1.0))
    book.apply(Commission("e9", 0.5))  # its execution has not come yet
    book.apply(execution("e2", 20, order_ref="sma:c2", order_id=8, perm_id=1002, side="SLD", price=12.0, t=3))
    book.apply(CancelRequested("c1", T0 + 4))
    book.apply(execution("x1", 3, order_ref="", order_id=0, perm_id=900, t=5))
    return book


def test_records_when_round_tripped_through_json_then_identical_book() -> None:
    book = busy_book()
    records = json.loads(json.dumps(book.to_records()))
    again = Book.from_records(records)
    assert again.to_records() == book.to_records()
    assert again.order("c1").state is OrderState.PENDING_CANCEL
    assert again.by_perm_id(1002) is again.order("c2")
    assert again.apply(execution("e1", 40)).changed is False


def test_records_when_positions_disagree_with_fills_then_refused() -> None:
    records = busy_book().to_records()
    records["positions"][0]["quantity"] += 1
    with pytest.raises(ValueError, match="positions differ"):
        Book.from_records(records)


def test_records_when_an_order_fill_is_missing_then_refused() -> None:
    records = busy_book().to_records()
    records["fills"] = [f for f in records["fills"] if f["exec_id"] != "e1"]
    del records["positions"]
    with pytest.raises(ValueError, match="e1"):
        Book.from_records(records)


# -- properties -------------------------------------------------------------------------------------

fills = st.lists(
    st.tuples(
        st.sampled_from(["sma:a", "sma:b", "momo:c", ""]),
        st.integers(1, 40),
        st.integers(80, 120).map(lambda p: p / 4),
        st.integers(0, 20),
    ),
    min_size=1,
    max_size=30,
)


PERM = {"sma:a": 1, "sma:b": 2, "momo:c": 3, "": 4}
SIDE = {"sma:a": "BOT", "sma:b": "SLD", "momo:c": "BOT", "": "SLD"}
"""One order per orderRef, each with one side; sma buys (a) and sells (b) so its position turns."""


def executions_of(rows: list[tuple[str, int, float, int]]) -> list[Execution]:
    return [
        execution(f"x{i}", q, order_ref=ref, order_id=0, perm_id=PERM[ref], side=SIDE[ref], price=p, t=t)
        for i, (ref, q, p, t) in enumerate(rows)
    ]


def book_of(events: list[Execution | Commission]) -> Book:
    book = Book()
    book.register(OrderRequest("sma", "a", AAPL, "AAPL", "BUY", 200, T0))
    book.register(OrderRequest("sma", "b", AAPL, "AAPL", "SELL", 300, T0))
    for event in events:
        book.apply(event)
    return book


@settings(max_examples=150, deadline=None)
@given(fills, st.randoms(use_true_random=False))
def test_book_when_executions_replayed_in_any_order_with_duplicates_then_same_book(
    rows: list[tuple[str, int, float, int]], rnd: random.Random
) -> None:
    executions = executions_of(rows)
    events: list[Execution | Commission] = [*executions, *(Commission(e.exec_id, 0.25) for e in executions)]
    reference = book_of(events).to_records()
    shuffled = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(shuffled)
    assert book_of(shuffled).to_records() == reference


@settings(max_examples=150, deadline=None)
@given(fills)
def test_book_when_any_fills_then_cumulative_filled_exceeds_quantity_only_with_an_overfill(
    rows: list[tuple[str, int, float, int]],
) -> None:
    book = book_of([])
    flagged: set[str] = set()
    for event in executions_of(rows):
        outcome = book.apply(event)
        if outcome.overfill and outcome.client_order_id:
            flagged.add(outcome.client_order_id)
    for coid, order in book.orders.items():
        if order.quantity is not None and order.filled > order.quantity:
            assert coid in flagged
