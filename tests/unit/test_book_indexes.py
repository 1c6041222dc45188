"""The book's incremental indexes against full scans: the working-order index of :class:`Book` and
the running commission sum of each position in :class:`Positions`, over random event sequences
(registrations, submissions, IB statuses and errors, fills, commission reports before and after
their fills and corrections, cancels, denials, rejections, losses, adjustments, reloads from
records)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from trader.book.events import (
    CancelRequested,
    Commission,
    Execution,
    OpenOrder,
    OrderDenied,
    OrderError,
    OrderLost,
    OrderRequest,
    OrderStatusUpdate,
    OrderSubmitted,
    PositionAdjusted,
    build_order_ref,
)
from trader.book.orders import Book
from trader.book.positions import Fill, Position, PositionKey, Positions, _Fold
from trader.book.states import BookConflict, InvalidTransition, Order, UnknownOrder

T0 = 1_700_000_000_000_000_000
STRATEGIES = ("sma", "mr")
CON_IDS = (265598, 272093)
ACCOUNTS = ("DU1", "DU2")
STATUSES = (
    "PendingSubmit",
    "PreSubmitted",
    "Submitted",
    "PendingCancel",
    "Cancelled",
    "ApiCancelled",
    "Inactive",
    "Filled",
)
ERROR_CODES = (201, 202, 161, 399, 2109)
"""A reject, a cancel, a cancel reject, warnings."""

COMMISSIONS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.35, 0.1, 0.2, 0.3, 1e16, -1e16, 1e-300, 2.5e-17]),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
)
"""Commissions (rebates negative) whose naive running sum would round differently from fsum."""


# -- steps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Register:
    order: int
    strategy: int
    con: int
    account: int
    sell: bool
    quantity: int


@dataclass(frozen=True)
class Submit:
    order: int


@dataclass(frozen=True)
class Status:
    order: int
    status: str
    open_order: bool


@dataclass(frozen=True)
class Error:
    order: int
    code: int


@dataclass(frozen=True)
class Command:
    order: int
    kind: str
    """cancel, deny or lost."""


@dataclass(frozen=True)
class Fill_:
    execution: int
    order: int
    shares: int
    price: float
    time: int
    external: bool


@dataclass(frozen=True)
class Report:
    execution: int
    commission: float


@dataclass(frozen=True)
class Adjust:
    adjustment: int
    strategy: int
    con: int
    quantity: int
    price: float


@dataclass(frozen=True)
class Reload:
    pass


Step = Register | Submit | Status | Error | Command | Fill_ | Report | Adjust | Reload

ORDERS = st.integers(0, 7)
EXECUTIONS = st.integers(0, 11)
PRICES = st.floats(min_value=1.0, max_value=500.0, allow_nan=False).map(lambda p: round(p, 2))

STEPS: st.SearchStrategy[Step] = st.one_of(
    st.builds(
        Register,
        ORDERS,
        st.integers(0, len(STRATEGIES) - 1),
        st.integers(0, len(CON_IDS) - 1),
        st.integers(0, len(ACCOUNTS) - 1),
        st.booleans(),
        st.integers(1, 300),
    ),
    st.builds(Submit, ORDERS),
    st.builds(Status, ORDERS, st.sampled_from(STATUSES), st.booleans()),
    st.builds(Error, ORDERS, st.sampled_from(ERROR_CODES)),
    st.builds(Command, ORDERS, st.sampled_from(["cancel", "deny", "lost"])),
    st.builds(Fill_, EXECUTIONS, ORDERS, st.integers(1, 200), PRICES, st.integers(0, 50), st.booleans()),
    st.builds(Report, EXECUTIONS, COMMISSIONS),
    st.builds(
        Adjust,
        st.integers(0, 3),
        st.integers(0, len(STRATEGIES) - 1),
        st.integers(0, len(CON_IDS) - 1),
        st.integers(-100, 100).filter(bool),
        PRICES,
    ),
    st.just(Reload()),
)


def coid(index: int) -> str:
    return f"c{index}"


def order_id(index: int) -> int:
    return 100 + index


def run(book: Book, step: Step) -> Book:
    """Apply ``step`` to ``book`` (the book of a reload); refused events change nothing."""
    try:
        if isinstance(step, Reload):
            return Book.from_records(book.to_records())
        event = event_of(book, step)
        if isinstance(event, OrderRequest):
            book.register(event)
        elif event is not None:
            book.apply(event)
    except (InvalidTransition, BookConflict, UnknownOrder, ValueError):
        pass
    return book


def event_of(
    book: Book, step: Step
) -> (
    OrderRequest
    | OrderSubmitted
    | OrderStatusUpdate
    | OpenOrder
    | OrderError
    | CancelRequested
    | OrderDenied
    | OrderLost
    | Execution
    | Commission
    | PositionAdjusted
    | None
):
    t = T0 + len(book.orders) + len(book.positions)
    match step:
        case Register():
            return OrderRequest(
                STRATEGIES[step.strategy],
                coid(step.order),
                CON_IDS[step.con],
                "X",
                "SELL" if step.sell else "BUY",
                float(step.quantity),
                t,
                account=ACCOUNTS[step.account],
            )
        case Submit():
            return OrderSubmitted(coid(step.order), order_id(step.order), t)
        case Status():
            order = book.get(coid(step.order))
            if not step.open_order:
                return OrderStatusUpdate(order_id(step.order), 0, step.status, t)
            if order is None:  # adopted: an order placed outside Bourse
                return OpenOrder(
                    order_id(step.order),
                    5000 + step.order,
                    "",
                    "DU1",
                    CON_IDS[0],
                    "X",
                    "BUY",
                    50.0,
                    step.status,
                    t,
                )
            return OpenOrder(
                order_id(step.order),
                0,
                build_order_ref(order.strategy, order.client_order_id),
                order.account,
                order.con_id,
                order.symbol,
                order.action,
                order.quantity or 1.0,
                step.status,
                t,
            )
        case Error():
            return OrderError(order_id(step.order), step.code, "error", t)
        case Command(kind="cancel"):
            return CancelRequested(coid(step.order), t)
        case Command(kind="deny"):
            return OrderDenied(coid(step.order), "risk", t)
        case Command():
            return OrderLost(coid(step.order), t)
        case Fill_():
            order = book.get(coid(step.order))
            strategy = STRATEGIES[0] if order is None else order.strategy
            return Execution(
                f"e{step.execution}",
                order_id(step.order),
                0,
                "" if step.external else build_order_ref(strategy, coid(step.order)),
                CON_IDS[0] if order is None else order.con_id,
                "X",
                "BOT" if order is None or order.action == "BUY" else "SLD",
                float(step.shares),
                step.price,
                T0 + step.time,  # out of time order: late fills refold their position
                "DU1" if order is None else order.account,
            )
        case Report():
            return Commission(f"e{step.execution}", step.commission)
        case Adjust():
            return PositionAdjusted(
                f"adj{step.adjustment}",
                ACCOUNTS[0],
                STRATEGIES[step.strategy],
                CON_IDS[step.con],
                "X",
                float(step.quantity),
                step.price,
                t,
            )
        case _:
            return None


# -- full scans ------------------------------------------------------------------------------------


def scanned_working(book: Book, strategy: str | None = None) -> list[Order]:
    """What ``Book.working_orders`` returned before the index: every order scanned."""
    return [
        o
        for _, o in sorted(book.orders.items())
        if o.state.is_working and (strategy is None or o.strategy == strategy)
    ]


def scanned_position(positions: Positions, key: PositionKey) -> Position:
    """What ``Positions.position`` returned before the running sum: the key's fills refolded and
    their commissions summed with ``math.fsum`` in canonical order."""
    fills = positions.fills(account=key.account, strategy=key.strategy, con_id=key.con_id)
    fold = _Fold()
    for f in fills:
        fold.step(f.quantity, f.price, f.multiplier)
    commissions = math.fsum(f.commission for f in fills if f.commission is not None)
    last = fills[-1]
    return Position(
        key.account,
        key.strategy,
        key.con_id,
        last.symbol,
        last.multiplier,
        fold.quantity,
        fold.avg_price,
        fold.realized_gross - commissions,
        commissions,
        len(fills),
    )


def bits(position: Position) -> tuple[object, ...]:
    """Its fields, floats by their exact bits (``-0.0`` is not ``0.0``, ``nan`` is itself)."""
    return tuple(v.hex() if isinstance(v, float) else v for v in position.to_record().values())


def assert_indexes_match_scans(book: Book) -> None:
    assert book.working_orders() == scanned_working(book)
    for strategy in (*STRATEGIES, "external", "none"):
        assert book.working_orders(strategy) == scanned_working(book, strategy)
    for position in book.positions.positions():
        assert bits(position) == bits(scanned_position(book.positions, position.key))
        assert position.commissions.hex() == book.positions.commissions(position.key).hex()


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(STEPS, max_size=60))
def test_book_indexes_when_random_event_sequences_then_equal_full_scans(steps: list[Step]) -> None:
    book = Book()
    for step in steps:
        book = run(book, step)
        assert_indexes_match_scans(book)


@settings(max_examples=150, deadline=None)
@given(st.lists(STEPS, max_size=60))
def test_book_indexes_when_reloaded_from_records_then_equal_the_live_ones(steps: list[Step]) -> None:
    book = Book()
    for step in steps:
        book = run(book, step)
    reloaded = Book.from_records(book.to_records())
    assert_indexes_match_scans(reloaded)
    assert [o.to_record() for o in reloaded.working_orders()] == [
        o.to_record() for o in book.working_orders()
    ]
    assert [bits(p) for p in reloaded.positions.positions()] == [bits(p) for p in book.positions.positions()]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), COMMISSIONS), max_size=40),
    st.booleans(),
)
def test_running_commissions_when_reports_before_after_and_corrected_then_equal_recomputed(
    reports: list[tuple[int, float]], fills_first: bool
) -> None:
    book = Book()
    key = PositionKey("DU1", "external", 265598)
    executions = [
        Execution(f"e{i}", 0, 0, "", 265598, "X", "BOT", 1.0, 10.0 + i, T0 + 9 - i, "DU1") for i in range(10)
    ]
    if fills_first:
        for ex in executions:
            book.apply(ex)
    for exec_id, commission in reports:
        book.apply(Commission(f"e{exec_id}", commission))
        if fills_first:
            assert book.positions.position(key).commissions.hex() == book.positions.commissions(key).hex()
    for ex in executions:  # no-ops when already booked; else each takes its waiting report
        book.apply(ex)
        assert bits(book.positions.position(key)) == bits(scanned_position(book.positions, key))
    assert book.positions.position(key).commissions.hex() == book.positions.commissions(key).hex()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            COMMISSIONS,
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from([1e308, -1e308, math.inf, -math.inf, math.nan]),
            st.none(),
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.tuples(st.integers(0, 7), COMMISSIONS), max_size=8),
)
def test_running_commissions_when_huge_or_not_finite_then_same_result_or_error_as_fsum(
    commissions: list[float | None], corrections: list[tuple[int, float]]
) -> None:
    positions = Positions()
    key = PositionKey("DU1", "sma", 1)
    for i, commission in enumerate(commissions):
        positions.add(Fill(f"e{i}", "DU1", "sma", 1, "X", 1.0, 10.0, T0 + i, commission=commission))
    for i, commission in corrections:
        if i < len(commissions):
            positions.set_commission(f"e{i}", commission)
    try:
        expected: Position | type[Exception] = scanned_position(positions, key)
    except (OverflowError, ValueError) as exc:  # fsum: intermediate overflow, inf + -inf
        expected = type(exc)
    try:
        got: Position | type[Exception] = positions.position(key)
    except (OverflowError, ValueError) as exc:
        got = type(exc)
    if isinstance(expected, Position) and isinstance(got, Position):
        assert bits(got) == bits(expected)
    else:
        assert got == expected
