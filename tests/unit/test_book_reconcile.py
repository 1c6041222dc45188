"""Reconciliation: missed fills, outside orders, lost orders, residuals; pure, idempotent, never submits."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.book.events import (
    EXTERNAL,
    UNATTRIBUTED,
    Commission,
    Execution,
    OpenOrder,
    OrderRequest,
    OrderStatusUpdate,
    OrderSubmitted,
)
from trader.book.orders import Book
from trader.book.reconcile import (
    AdoptOrder,
    Conflict,
    FillsUnaccounted,
    IbPosition,
    IbSnapshot,
    LostOrder,
    MissedCommission,
    MissedFill,
    OrderUpdate,
    OverFill,
    PositionResidual,
    actions,
    apply_findings,
    reconcile,
)
from trader.book.states import OrderState

T0 = 1_700_000_000_000_000_000
NOW = T0 + 3_600 * 10**9
AAPL = 265598
ES = 495512563


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
    multiplier: float = 1.0,
) -> Execution:
    return Execution(
        exec_id,
        order_id,
        perm_id,
        order_ref,
        con_id,
        "AAPL" if con_id == AAPL else "ES",
        "BOT" if side == "BOT" else "SLD",
        shares,
        price,
        T0 + t,
        "DU1",
        multiplier=multiplier,
    )


def open_order(
    *,
    order_ref: str = "sma:c1",
    order_id: int = 7,
    perm_id: int = 1001,
    status: str = "Submitted",
    filled: float = 0,
) -> OpenOrder:
    return OpenOrder(
        order_id, perm_id, order_ref, "DU1", AAPL, "AAPL", "BUY", 100, status, T0 + 1, filled=filled
    )


def placed(
    book: Book, coid: str = "c1", order_id: int = 7, strategy: str = "sma", action: str = "BUY"
) -> None:
    book.register(OrderRequest(strategy, coid, AAPL, "AAPL", "BUY" if action == "BUY" else "SELL", 100, T0))
    book.apply(OrderSubmitted(coid, order_id, T0))


def snapshot(
    *,
    positions: tuple[IbPosition, ...] = (),
    open_orders: tuple[OpenOrder, ...] = (),
    executions: tuple[Execution, ...] = (),
    commissions: tuple[Commission, ...] = (),
) -> IbSnapshot:
    return IbSnapshot(("DU1",), positions, open_orders, executions, commissions)


def aapl(quantity: float, avg_cost: float = 10.0) -> IbPosition:
    return IbPosition("DU1", AAPL, "AAPL", quantity, avg_cost)


def settle(snap: IbSnapshot, book: Book, now: int = NOW) -> list[object]:
    """Reconcile and apply; the findings."""
    findings = reconcile(snap, book, now)
    apply_findings(book, findings)
    return list(findings)


# -- findings ---------------------------------------------------------------------------------------


def test_reconcile_when_fills_were_missed_while_down_then_they_are_found_and_booked_once() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 40))
    snap = snapshot(
        positions=(aapl(100),),
        open_orders=(open_order(status="Filled", filled=100),),
        executions=(execution("e1", 40), execution("e2", 60, t=2, price=11.0)),
        commissions=(Commission("e1", 1.0), Commission("e2", 1.0)),
    )
    findings = reconcile(snap, book, NOW)
    kinds = [type(f) for f in findings]
    assert kinds == [OrderUpdate, MissedFill, MissedCommission]
    missed = findings[1]
    assert isinstance(missed, MissedFill) and missed.execution.exec_id == "e2" and missed.strategy == "sma"
    assert missed.commission == Commission("e2", 1.0)
    apply_findings(book, findings)
    order = book.order("c1")
    assert (order.state, order.filled) == (OrderState.FILLED, 100)
    assert book.positions.pnl({AAPL: 11.0}).realized == -2.0


def test_reconcile_when_ib_works_an_order_placed_outside_bourse_then_it_is_adopted_as_external() -> None:
    book = Book()
    outside = open_order(order_ref="", order_id=0, perm_id=4242)
    findings = settle(snapshot(open_orders=(outside,)), book)
    assert findings == [AdoptOrder(outside, EXTERNAL, "ext:4242")]
    assert book.order("ext:4242").strategy == EXTERNAL


def test_reconcile_when_a_bourse_order_is_unknown_to_the_book_then_adopted_under_its_strategy() -> None:
    book = Book()
    ours = open_order(order_ref="momo:q1", order_id=31, perm_id=4243)
    (finding,) = settle(snapshot(open_orders=(ours,)), book)
    assert isinstance(finding, AdoptOrder) and (finding.strategy, finding.client_order_id) == ("momo", "q1")
    assert book.order("q1").state is OrderState.SUBMITTED


def test_reconcile_when_a_working_order_is_not_at_ib_then_marked_unknown_and_never_resubmitted() -> None:
    book = Book()
    placed(book)
    book.apply(OrderStatusUpdate(7, 1001, "Submitted", T0 + 1))
    findings = settle(snapshot(), book)
    assert findings == [LostOrder("c1", "sma", OrderState.SUBMITTED, NOW)]
    order = book.order("c1")
    assert order.state is OrderState.UNKNOWN and order.state.is_working
    assert (order.order_id, len(book.orders)) == (7, 1)  # same order, same id: nothing new was placed
    book.apply(OrderStatusUpdate(7, 1001, "Cancelled", NOW + 1))  # a status query resolves it
    assert book.order("c1").state is OrderState.CANCELLED


def test_reconcile_when_an_order_never_sent_is_found_then_unknown_not_submitted() -> None:
    book = Book()
    book.register(OrderRequest("sma", "c9", AAPL, "AAPL", "BUY", 5, T0))
    findings = settle(snapshot(), book)
    assert [type(f) for f in findings] == [LostOrder]
    assert book.order("c9").state is OrderState.UNKNOWN
    assert not any(isinstance(f, OrderSubmitted) for f in findings)


def test_reconcile_when_executions_complete_an_unlisted_order_then_filled_not_lost() -> None:
    book = Book()
    placed(book)
    findings = settle(snapshot(positions=(aapl(100),), executions=(execution("e1", 100),)), book)
    assert [type(f) for f in findings] == [MissedFill]
    assert book.order("c1").state is OrderState.FILLED


def test_reconcile_when_an_order_changed_within_the_grace_period_then_not_lost() -> None:
    book = Book()
    placed(book)
    assert reconcile(snapshot(), book, T0 + 10, grace_ns=100) == []
    assert [type(f) for f in reconcile(snapshot(), book, T0 + 1_000, grace_ns=100)] == [LostOrder]


def test_reconcile_when_ib_holds_more_than_the_strategies_then_the_residual_goes_to_unattributed() -> None:
    book = Book()
    placed(book)
    placed(book, "m1", 8, strategy="momo", action="SELL")
    book.apply(execution("e1", 100))
    book.apply(execution("e2", 30, order_ref="momo:m1", order_id=8, perm_id=1002, side="SLD"))
    findings = settle(snapshot(positions=(aapl(120, avg_cost=9.5),)), book)
    (residual,) = [f for f in findings if isinstance(f, PositionResidual)]
    assert isinstance(residual, PositionResidual)
    assert (residual.ib_quantity, residual.book_quantity, residual.residual) == (120, 70, 50)
    assert "booked to unattributed" in residual.message
    by_strategy = {p.strategy: p.quantity for p in book.positions.positions()}
    assert by_strategy == {"sma": 100, "momo": -30, UNATTRIBUTED: 50}
    assert book.positions.net_quantity("DU1", AAPL) == 120
    assert book.positions.positions(strategy=UNATTRIBUTED)[0].avg_price == 9.5


def test_reconcile_when_ib_is_flat_but_the_book_is_long_then_unattributed_offsets_at_the_book_price() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 100, price=10.0))
    findings = settle(snapshot(executions=(execution("e1", 100, price=10.0),)), book)
    assert [type(f) for f in findings] == [PositionResidual]
    assert book.positions.net_quantity("DU1", AAPL) == 0
    account = book.positions.pnl_by_account({AAPL: 12.0})["DU1"]
    assert account.unrealized == 0.0


def test_reconcile_when_a_future_residual_then_multiplier_kept() -> None:
    book = Book()
    snap = IbSnapshot(("DU1",), (IbPosition("DU1", ES, "ES", 2, 225_000.0, 50.0),))
    settle(snap, book)
    (pos,) = book.positions.positions()
    assert (pos.strategy, pos.quantity, pos.avg_price, pos.multiplier) == (UNATTRIBUTED, 2, 4500.0, 50.0)


def test_reconcile_when_an_account_is_not_in_the_snapshot_then_its_positions_are_left_alone() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 100))
    assert reconcile(IbSnapshot(("DU2",)), book, NOW) == []


def test_reconcile_when_ib_status_differs_then_order_updated() -> None:
    book = Book()
    placed(book)
    findings = settle(snapshot(open_orders=(open_order(status="PreSubmitted"),)), book)
    assert findings == [
        OrderUpdate(
            open_order(status="PreSubmitted"), "c1", OrderState.PENDING_SUBMIT, OrderState.PRE_SUBMITTED
        )
    ]
    assert book.by_perm_id(1001) is book.order("c1")


def test_reconcile_when_ib_contradicts_the_book_then_a_conflict_and_nothing_applied() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 100))
    findings = reconcile(
        snapshot(positions=(aapl(100),), open_orders=(open_order(status="Cancelled"),)), book, NOW
    )
    assert [type(f) for f in findings] == [Conflict]
    assert findings[0].severity == "error" and "Filled cannot take Cancelled" in findings[0].message
    assert actions(findings) == []


def test_reconcile_when_executions_exceed_the_order_then_an_overfill_error() -> None:
    book = Book()
    placed(book)
    book.apply(execution("e1", 80))
    snap = snapshot(positions=(aapl(120),), executions=(execution("e1", 80), execution("e2", 40, t=2)))
    findings = reconcile(snap, book, NOW)
    assert [type(f) for f in findings] == [MissedFill, OverFill]
    assert findings[1] == OverFill("c1", "sma", 100, 120)


def test_reconcile_when_ib_counts_fills_the_executions_lack_then_a_warning() -> None:
    book = Book()
    placed(book)
    snap = snapshot(positions=(aapl(30),), open_orders=(open_order(filled=30),))
    findings = reconcile(snap, book, NOW)
    assert [type(f) for f in findings] == [OrderUpdate, FillsUnaccounted, PositionResidual]
    assert findings[1].severity == "warning"


# -- purity and idempotency -------------------------------------------------------------------------


def messy() -> tuple[Book, IbSnapshot]:
    book = Book()
    placed(book, "c1", 7)
    placed(book, "c2", 8)
    book.apply(execution("e1", 40))
    snap = snapshot(
        positions=(aapl(145), IbPosition("DU1", ES, "ES", -1, 225_000.0, 50.0)),
        open_orders=(open_order(filled=40), open_order(order_ref="", order_id=0, perm_id=4242)),
        executions=(
            execution("e1", 40),
            execution("e2", 20, t=2),
            execution("x1", 5, order_ref="", perm_id=99),
        ),
        commissions=(Commission("e2", 1.0), Commission("x1", 0.5)),
    )
    return book, snap


def test_reconcile_when_run_then_the_book_is_unchanged() -> None:
    book, snap = messy()
    before = book.to_records()
    assert actions(reconcile(snap, book, NOW))
    assert book.to_records() == before


def test_reconcile_when_run_twice_then_the_second_run_changes_nothing() -> None:
    book, snap = messy()
    first = reconcile(snap, book, NOW)
    outcomes = apply_findings(book, first)
    assert any(o.changed for o in outcomes)
    after = book.to_records()
    assert actions(reconcile(snap, book, NOW + 1)) == []
    assert not any(o.changed for o in apply_findings(book, first))  # the same findings again
    assert book.to_records() == after
    assert book.positions.account_quantities() == {("DU1", AAPL): 145, ("DU1", ES): -1}


# -- restart: book from the store + IB = the book that never stopped ------------------------------

ORDERS = {"sma:a": (7, 1, "BUY"), "sma:b": (8, 2, "SELL"), "momo:c": (9, 3, "BUY"), "": (0, 4, "SELL")}
rows = st.lists(
    st.tuples(
        st.sampled_from(sorted(ORDERS)), st.integers(1, 30), st.integers(36, 44).map(float), st.booleans()
    ),
    min_size=1,
    max_size=25,
)


def day(rows_: list[tuple[str, int, float, bool]]) -> tuple[list[Execution | Commission], list[Commission]]:
    """The day's live events (executions, most commissions right after) and late commissions."""
    events: list[Execution | Commission] = []
    late: list[Commission] = []
    for i, (ref, qty, price, commission_late) in enumerate(rows_):
        order_id, perm_id, side = ORDERS[ref]
        bot = "BOT" if side == "BUY" else "SLD"
        ex = execution(
            f"x{i}", qty, order_ref=ref, order_id=order_id, perm_id=perm_id, side=bot, price=price, t=i
        )
        events.append(ex)
        (late if commission_late else events).append(Commission(ex.exec_id, 0.125 * qty))
    return events, late


def started() -> Book:
    book = Book()
    for ref, (order_id, _, side) in ORDERS.items():
        if ref:
            strategy, coid = ref.split(":")
            book.register(
                OrderRequest(strategy, coid, AAPL, "AAPL", "BUY" if side == "BUY" else "SELL", 500, T0)
            )
            book.apply(OrderSubmitted(coid, order_id, T0))
    return book


@settings(max_examples=100, deadline=None)
@given(rows, st.data())
def test_restart_when_store_book_is_reconciled_with_ib_then_positions_and_pnl_equal_uninterrupted_book(
    rows_: list[tuple[str, int, float, bool]], data: st.DataObject
) -> None:
    events, late = day(rows_)
    crash = data.draw(st.integers(0, len(events)), label="crash")
    uninterrupted = started()
    for event in [*events, *late]:
        uninterrupted.apply(event)

    store = started()
    for event in events[:crash]:
        store.apply(event)
    rebuilt = Book.from_records(store.to_records())
    executions = tuple(e for e in events if isinstance(e, Execution))
    commissions = tuple(e for e in [*events, *late] if isinstance(e, Commission))
    net = uninterrupted.positions.net_quantity("DU1", AAPL)
    snap = snapshot(positions=(aapl(net),) if net else (), executions=executions, commissions=commissions)
    findings = reconcile(snap, rebuilt, NOW)
    assert not any(isinstance(f, PositionResidual | Conflict) for f in findings)
    apply_findings(rebuilt, findings)

    marks = {AAPL: 40.0}
    assert rebuilt.positions.positions() == uninterrupted.positions.positions()
    assert rebuilt.to_records()["fills"] == uninterrupted.to_records()["fills"]
    assert rebuilt.positions.pnl_by_strategy(marks) == uninterrupted.positions.pnl_by_strategy(marks)
    for coid, order in uninterrupted.orders.items():
        assert rebuilt.order(coid).filled == order.filled

    replay = list(events)
    random.Random(crash).shuffle(replay)
    for event in replay:  # IB replays the day's executions after the reconnection
        rebuilt.apply(event)
    assert rebuilt.positions.positions() == uninterrupted.positions.positions()
    assert actions(reconcile(snap, rebuilt, NOW + 1)) == []


def test_findings_when_any_then_each_has_a_severity_and_a_message() -> None:
    book, snap = messy()
    for finding in reconcile(snap, book, NOW):
        assert finding.severity in ("action", "error", "warning")
        assert finding.message
        name = dataclasses.fields(finding)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(finding, name, None)
