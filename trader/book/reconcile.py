"""Reconciliation: compare an IB snapshot with the book; pure, and nothing is ever submitted.

:func:`reconcile` reads a snapshot (positions by account and conId, open orders, the day's
executions and commissions) and the book, and returns typed findings; it never changes the book
(it works on a copy). :func:`apply_findings` applies them through ``Book.apply``. Both are pure (no
I/O, no clock: ``now_ns`` is passed in) and idempotent: after the findings are applied, reconciling
the same snapshot again finds no action.

Findings, in the order they are returned and applied:

* :class:`AdoptOrder` (action): IB works an order the book does not have. Its orderRef names the
  strategy, or the order was placed outside Bourse and belongs to ``external``.
* :class:`OrderUpdate` (action): IB's open order differs from the book's (status, quantity, ids).
* :class:`MissedFill` (action): an execution the book does not have (missed while down), with its
  commission when the snapshot has it; :class:`MissedCommission` (action) likewise.
* :class:`LostOrder` (action): the book thinks the order works, IB does not list it and no execution
  completes it. Conservatively it becomes Unknown: it is **never resubmitted**; a later IB message
  or a status query (``reqCompletedOrders``) resolves it.
* :class:`OverFill` (error): executions exceed the order quantity.
* :class:`FillsUnaccounted` (warning): IB counts more filled than the executions the book has
  (fills older than the snapshot's executions); the position residual books their effect.
* :class:`Conflict` (error): an IB record that contradicts the book (not applied).
* :class:`PositionResidual` (action): IB's position in a conId differs from the sum of the
  strategies' positions; the residual is booked to strategy ``unattributed`` (a
  ``PositionAdjusted`` at IB's average cost, or at the book's average price when IB is flat).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from trader.book.events import (
    EXTERNAL,
    UNATTRIBUTED,
    Commission,
    Execution,
    OpenOrder,
    OrderLost,
    PositionAdjusted,
)
from trader.book.orders import Book, Outcome
from trader.book.positions import EPS, Position
from trader.book.states import BookConflict, InvalidTransition, OrderState

Severity = Literal["action", "error", "warning"]


@dataclass(frozen=True, slots=True)
class IbPosition:
    """A position row (ib_async ``Position``): ``avg_cost`` is IB's, per unit with the multiplier."""

    account: str
    con_id: int
    symbol: str
    quantity: float
    avg_cost: float = 0.0
    multiplier: float = 1.0


@dataclass(frozen=True, slots=True)
class IbSnapshot:
    """What IB says, all of it: ``accounts`` are the accounts whose positions are complete here
    (a conId missing from ``positions`` is flat at IB); ``open_orders`` are all open orders of the
    accounts (every client, ``reqAllOpenOrders``); ``executions`` / ``commissions`` are
    ``reqExecutions``' (the day's)."""

    accounts: tuple[str, ...]
    positions: tuple[IbPosition, ...] = ()
    open_orders: tuple[OpenOrder, ...] = ()
    executions: tuple[Execution, ...] = ()
    commissions: tuple[Commission, ...] = ()


@dataclass(frozen=True, slots=True)
class AdoptOrder:
    severity: ClassVar[Severity] = "action"
    open_order: OpenOrder
    strategy: str
    client_order_id: str

    @property
    def message(self) -> str:
        who = (
            "placed outside Bourse"
            if self.strategy == EXTERNAL
            else f"of {self.strategy}, unknown to the book"
        )
        return f"IB works order {self.client_order_id} (permId {self.open_order.perm_id}) {who}"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    severity: ClassVar[Severity] = "action"
    open_order: OpenOrder
    client_order_id: str
    previous: OrderState
    state: OrderState

    @property
    def message(self) -> str:
        status = self.open_order.status
        return f"order {self.client_order_id}: IB says {status} ({self.previous} -> {self.state})"


@dataclass(frozen=True, slots=True)
class MissedFill:
    severity: ClassVar[Severity] = "action"
    execution: Execution
    strategy: str
    client_order_id: str
    commission: Commission | None = None

    @property
    def message(self) -> str:
        e = self.execution
        return f"missed fill {e.exec_id}: {e.side} {e.shares} {e.symbol} @ {e.price} ({self.strategy})"


@dataclass(frozen=True, slots=True)
class MissedCommission:
    severity: ClassVar[Severity] = "action"
    commission: Commission

    @property
    def message(self) -> str:
        return f"missed commission {self.commission.commission} of {self.commission.exec_id}"


@dataclass(frozen=True, slots=True)
class LostOrder:
    severity: ClassVar[Severity] = "action"
    client_order_id: str
    strategy: str
    state: OrderState
    time_ns: int

    @property
    def message(self) -> str:
        return (
            f"order {self.client_order_id} ({self.strategy}) is {self.state} in the book but IB does not "
            "list it: marked Unknown, not resubmitted"
        )


@dataclass(frozen=True, slots=True)
class OverFill:
    severity: ClassVar[Severity] = "error"
    client_order_id: str
    strategy: str
    quantity: float
    filled: float

    @property
    def message(self) -> str:
        return f"order {self.client_order_id} ({self.strategy}) filled {self.filled} of {self.quantity}"


@dataclass(frozen=True, slots=True)
class FillsUnaccounted:
    severity: ClassVar[Severity] = "warning"
    client_order_id: str
    ib_filled: float
    book_filled: float

    @property
    def message(self) -> str:
        return (
            f"order {self.client_order_id}: IB counts {self.ib_filled} filled, executions {self.book_filled}"
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    severity: ClassVar[Severity] = "error"
    subject: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class PositionResidual:
    severity: ClassVar[Severity] = "action"
    account: str
    con_id: int
    symbol: str
    ib_quantity: float
    book_quantity: float
    price: float
    multiplier: float
    adjustment_id: str
    time_ns: int

    @property
    def residual(self) -> float:
        return self.ib_quantity - self.book_quantity

    @property
    def message(self) -> str:
        return (
            f"{self.account} {self.symbol} ({self.con_id}): IB holds {self.ib_quantity}, strategies "
            f"{self.book_quantity}; {self.residual:+g} booked to {UNATTRIBUTED}"
        )

    def adjustment(self) -> PositionAdjusted:
        return PositionAdjusted(
            adjustment_id=self.adjustment_id,
            account=self.account,
            strategy=UNATTRIBUTED,
            con_id=self.con_id,
            symbol=self.symbol,
            quantity=self.residual,
            price=self.price,
            time_ns=self.time_ns,
            multiplier=self.multiplier,
            reason="reconciliation residual",
        )


Finding = (
    AdoptOrder
    | OrderUpdate
    | MissedFill
    | MissedCommission
    | LostOrder
    | OverFill
    | FillsUnaccounted
    | Conflict
    | PositionResidual
)


def actions(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that change the book when applied."""
    return [f for f in findings if f.severity == "action"]


def reconcile(snapshot: IbSnapshot, book: Book, now_ns: int, *, grace_ns: int = 0) -> list[Finding]:
    """The findings of ``snapshot`` against ``book`` (unchanged). Orders changed less than
    ``grace_ns`` before ``now_ns`` are not declared lost (an order just sent may not be listed
    yet). Residual adjustments are stamped ``now_ns`` (their id too: reconcile once per instant)."""
    sim = book.copy()
    findings: list[Finding] = []
    listed = _open_orders(snapshot, sim, findings)
    _executions(snapshot, sim, findings)
    for order in sim.working_orders():
        if order.client_order_id in listed or order.state is OrderState.UNKNOWN:
            continue
        if order.updated_ns > now_ns - grace_ns:
            continue
        findings.append(LostOrder(order.client_order_id, order.strategy, order.state, now_ns))
        sim.apply(OrderLost(order.client_order_id, now_ns))
    for coid, order in sorted(sim.orders.items()):
        if order.overfilled and order.quantity is not None:
            findings.append(OverFill(coid, order.strategy, order.quantity, order.filled))
    for oo in snapshot.open_orders:
        match = sim.find(
            order_id=oo.order_id, perm_id=oo.perm_id, client_id=oo.client_id, order_ref=oo.order_ref
        )
        if match is not None and oo.filled > match.filled + EPS:
            findings.append(FillsUnaccounted(match.client_order_id, oo.filled, match.filled))
    findings += _residuals(snapshot, sim, now_ns)
    return findings


def _open_orders(snapshot: IbSnapshot, sim: Book, findings: list[Finding]) -> set[str]:
    """Adopt or update IB's open orders in ``sim``; the client order ids IB lists."""
    listed: set[str] = set()
    for oo in sorted(snapshot.open_orders, key=lambda o: (o.perm_id, o.client_id, o.order_id)):
        order = sim.find(
            order_id=oo.order_id, perm_id=oo.perm_id, client_id=oo.client_id, order_ref=oo.order_ref
        )
        previous = None if order is None else order.state
        try:
            outcome = sim.apply(oo)
        except (InvalidTransition, BookConflict) as exc:
            subject = f"order {order.client_order_id}" if order else f"permId {oo.perm_id}"
            findings.append(Conflict(subject, f"IB open order ({oo.status}): {exc}"))
            if order is not None:
                listed.add(order.client_order_id)
            continue
        coid = outcome.client_order_id
        assert coid is not None and outcome.state is not None
        listed.add(coid)
        if previous is None:
            findings.append(AdoptOrder(oo, sim.order(coid).strategy, coid))
        elif outcome.changed:
            findings.append(OrderUpdate(oo, coid, previous, outcome.state))
    return listed


def _executions(snapshot: IbSnapshot, sim: Book, findings: list[Finding]) -> None:
    """Book the executions and commissions ``sim`` misses."""
    commissions = {c.exec_id: c for c in snapshot.commissions}
    for ex in sorted(snapshot.executions, key=lambda e: (e.time_ns, e.exec_id)):
        if sim.has_execution(ex.exec_id):
            continue
        try:
            outcome = sim.apply(ex)
        except (InvalidTransition, ValueError) as exc:  # BookConflict is a ValueError
            findings.append(Conflict(f"execution {ex.exec_id}", str(exc)))
            continue
        assert outcome.fill is not None and outcome.client_order_id is not None
        commission = commissions.get(ex.exec_id)
        if commission is not None:
            sim.apply(commission)
        findings.append(MissedFill(ex, outcome.fill.strategy, outcome.client_order_id, commission))
    for exec_id in sorted(commissions):
        fill = sim.positions.fill(exec_id)
        if fill is not None and fill.commission != commissions[exec_id].commission:
            sim.apply(commissions[exec_id])
            findings.append(MissedCommission(commissions[exec_id]))


def _residuals(snapshot: IbSnapshot, sim: Book, now_ns: int) -> list[PositionResidual]:
    accounts = set(snapshot.accounts)
    ib = {(p.account, p.con_id): p for p in snapshot.positions if p.account in accounts}
    book = {k: q for k, q in sim.positions.account_quantities().items() if k[0] in accounts}
    out = []
    for account, con_id in sorted(set(ib) | set(book)):
        row = ib.get((account, con_id))
        ib_qty = 0.0 if row is None else row.quantity
        book_qty = book.get((account, con_id), 0.0)
        if abs(ib_qty - book_qty) < EPS:
            continue
        held = sim.positions.positions(account=account, con_id=con_id)
        multiplier = row.multiplier if row is not None else held[0].multiplier
        symbol = row.symbol if row is not None else held[0].symbol
        if row is not None and abs(row.quantity) > EPS:
            price = row.avg_cost / multiplier
        else:
            price = _average_price(held)
        out.append(
            PositionResidual(
                account=account,
                con_id=con_id,
                symbol=symbol,
                ib_quantity=ib_qty,
                book_quantity=book_qty,
                price=price,
                multiplier=multiplier,
                adjustment_id=f"recon:{account}:{con_id}:{now_ns}",
                time_ns=now_ns,
            )
        )
    return out


def _average_price(held: Sequence[Position]) -> float:
    positions = [p for p in held if not p.is_flat]
    weight = math.fsum(abs(p.quantity) for p in positions)
    if weight == 0:
        return 0.0
    return math.fsum(abs(p.quantity) * p.avg_price for p in positions) / weight


def apply_findings(book: Book, findings: Iterable[Finding]) -> list[Outcome]:
    """Apply the actions of ``findings`` to ``book`` through ``Book.apply`` (errors and warnings
    change nothing); idempotent: applying the same findings again changes nothing. Never submits."""
    outcomes: list[Outcome] = []
    for finding in findings:
        match finding:
            case AdoptOrder() | OrderUpdate():
                outcomes.append(book.apply(finding.open_order))
            case MissedFill():
                outcomes.append(book.apply(finding.execution))
                if finding.commission is not None:
                    outcomes.append(book.apply(finding.commission))
            case MissedCommission():
                outcomes.append(book.apply(finding.commission))
            case LostOrder():
                outcomes.append(book.apply(OrderLost(finding.client_order_id, finding.time_ns)))
            case PositionResidual():
                outcomes.append(book.apply(finding.adjustment()))
            case OverFill() | FillsUnaccounted() | Conflict():
                pass
    return outcomes
