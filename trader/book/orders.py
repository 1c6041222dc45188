"""The book: orders by client order id, IB order id and permId; the fill ledger; positions.

:class:`Order` owns its lifecycle: ``Order.apply(event)`` reduces an event to a
:class:`~trader.book.states.Trigger`, checks it against the transition table (raising
:class:`~trader.book.states.InvalidTransition` before changing anything) and updates itself.
:class:`Book` routes events to orders, books executions once per exec id into
:class:`~trader.book.positions.Positions`, matches commissions to executions in either order, and
adopts orders it never placed (strategy ``external`` unless their orderRef is Bourse's).

Lookups, in order: permId, then ``(client_id, order_id)``, then the client order id in the
orderRef. Client order ids are unique across the book (strategies generate unique ones); an order
placed outside Bourse gets ``ext:<permId>``. A permId belongs to one order forever; an IB order id
of a done order may be taken by a new one (TWS can reset its sequence), of a working one never.

Pure and synchronous: no I/O, no clock (every event carries its time). The book mutates only
through :meth:`Book.register` and :meth:`Book.apply` (and :meth:`Book.from_records`): they keep
its indexes (ids, working orders) in step with its orders, so an order must not be changed
behind the book's back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from trader.book.events import (
    EXTERNAL,
    BookEvent,
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
    parse_order_ref,
)
from trader.book.positions import Fill, Positions
from trader.book.states import BookConflict, Order, OrderEvent, OrderState, UnknownOrder

RECORDS_VERSION = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`Book.apply` did."""

    changed: bool
    client_order_id: str | None = None
    previous: OrderState | None = None
    state: OrderState | None = None
    fill: Fill | None = None
    overfill: bool = False
    """The order now has more executions than its quantity: an error to raise to an operator."""
    note: str = ""


class Book:
    """Orders, the fill ledger and positions. See the module docstring."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.positions = Positions()
        self.pending_commissions: dict[str, Commission] = {}
        """Commission reports whose execution has not arrived yet."""
        self._by_order_id: dict[tuple[int, int], str] = {}
        self._by_perm_id: dict[int, str] = {}
        self._working: set[str] = set()
        """Client order ids of the working orders (``state.is_working``), kept on every change."""

    # -- lookups ---------------------------------------------------------------------------------

    def get(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def order(self, client_order_id: str) -> Order:
        try:
            return self.orders[client_order_id]
        except KeyError:
            raise UnknownOrder(client_order_id) from None

    def by_order_id(self, order_id: int, client_id: int = 0) -> Order | None:
        coid = self._by_order_id.get((client_id, order_id))
        return None if coid is None else self.orders[coid]

    def by_perm_id(self, perm_id: int) -> Order | None:
        coid = self._by_perm_id.get(perm_id)
        return None if coid is None else self.orders[coid]

    def find(
        self, *, order_id: int = 0, perm_id: int = 0, client_id: int = 0, order_ref: str = ""
    ) -> Order | None:
        """permId, then (client id, order id), then the client order id of a Bourse orderRef."""
        if perm_id and (order := self.by_perm_id(perm_id)) is not None:
            return order
        if order_id > 0 and (order := self.by_order_id(order_id, client_id)) is not None:
            return order
        parsed = parse_order_ref(order_ref)
        return None if parsed is None else self.orders.get(parsed[1])

    def working_orders(self, strategy: str | None = None) -> list[Order]:
        """Orders that may still fill (Unknown included), by client order id. O(working orders)."""
        orders = self.orders
        chosen = (orders[coid] for coid in sorted(self._working))
        if strategy is None:
            return list(chosen)
        return [o for o in chosen if o.strategy == strategy]

    def has_execution(self, exec_id: str) -> bool:
        return exec_id in self.positions

    # -- changes ---------------------------------------------------------------------------------

    def register(self, request: OrderRequest) -> tuple[Order, bool]:
        """The order of ``request``, created Initialized; a client order id already seen returns
        the existing order with ``created=False`` (idempotent). The same id with other terms
        (strategy, conId, action, quantity) is a :class:`BookConflict`."""
        existing = self.orders.get(request.client_order_id)
        if existing is not None:
            theirs = (existing.strategy, existing.con_id, existing.action, existing.quantity)
            ours = (request.strategy, request.con_id, request.action, request.quantity)
            if theirs != ours:
                raise BookConflict(
                    f"client order id {request.client_order_id} already names {theirs}, not {ours}"
                )
            return existing, False
        order = Order(
            client_order_id=request.client_order_id,
            strategy=request.strategy,
            con_id=request.con_id,
            symbol=request.symbol,
            action=request.action,
            quantity=request.quantity,
            created_ns=request.time_ns,
            account=request.account,
            order_type=request.order_type,
            limit_price=request.limit_price,
            aux_price=request.aux_price,
            tif=request.tif,
            multiplier=request.multiplier,
            updated_ns=request.time_ns,
        )
        self._put(order)
        return order, True

    def apply(self, event: BookEvent) -> Outcome:
        """Apply one event. Raises InvalidTransition / BookConflict / UnknownOrder without
        changing anything; IB messages about orders the book cannot place are ignored (see
        ``Outcome.note``) except openOrder and executions, which adopt the order."""
        match event:
            case Execution():
                return self._execution(event)
            case Commission():
                return self._commission(event)
            case PositionAdjusted():
                return self._adjustment(event)
            case OpenOrder():
                order = self.find(
                    order_id=event.order_id,
                    perm_id=event.perm_id,
                    client_id=event.client_id,
                    order_ref=event.order_ref,
                )
                if order is None:
                    order = self._adopt(event)
                    self._check_index(order, event.order_id, event.perm_id, event.client_id)
                    self._put(order)
                return self._order_event(order, event)
            case OrderStatusUpdate():
                order = self.find(order_id=event.order_id, perm_id=event.perm_id, client_id=event.client_id)
                if order is None:
                    return Outcome(
                        False, note=f"orderStatus for unknown order {event.order_id}/{event.perm_id}"
                    )
                return self._order_event(order, event)
            case OrderError():
                order = self.by_order_id(event.order_id, event.client_id)
                if order is None:
                    return Outcome(False, note=f"error {event.code} for unknown order {event.order_id}")
                return self._order_event(order, event)
            case OrderSubmitted() | OrderDenied() | CancelRequested() | OrderLost():
                return self._order_event(self.order(event.client_order_id), event)

    def _order_event(self, order: Order, event: OrderEvent) -> Outcome:
        if isinstance(event, OrderSubmitted | OpenOrder | OrderStatusUpdate):
            perm_id = 0 if isinstance(event, OrderSubmitted) else event.perm_id
            self._check_index(order, event.order_id, perm_id, event.client_id)
        previous = order.state
        try:
            changed = order.apply(event)
        finally:
            self._track(order)
        self._index(order)
        return Outcome(changed, order.client_order_id, previous, order.state)

    def _execution(self, event: Execution) -> Outcome:
        if event.exec_id in self.positions:
            booked = self.positions.fill(event.exec_id)
            coid = None if booked is None else booked.client_order_id
            return Outcome(False, coid, note=f"duplicate execution {event.exec_id}")
        order = self.find(
            order_id=event.order_id,
            perm_id=event.perm_id,
            client_id=event.client_id,
            order_ref=event.order_ref,
        )
        created = order is None
        if order is None:
            order = self._placeholder(event)
        self._check_index(order, event.order_id, event.perm_id, event.client_id)
        order.validate(event)
        previous = order.state
        multiplier = event.multiplier if event.multiplier != 1.0 else order.multiplier
        pending = self.pending_commissions.get(event.exec_id)
        fill = Fill(
            exec_id=event.exec_id,
            account=event.account or order.account,
            strategy=order.strategy,
            con_id=event.con_id,
            symbol=event.symbol,
            quantity=event.signed_shares,
            price=event.price,
            time_ns=event.time_ns,
            multiplier=multiplier,
            commission=None if pending is None else pending.commission,
            currency=event.currency,
            client_order_id=order.client_order_id,
            order_id=event.order_id,
            perm_id=event.perm_id,
        )
        self.positions.add(fill)  # may raise (multiplier mismatch) before the order changes
        if created:
            self._put(order)
        try:
            order.apply(event)
        finally:
            self._track(order)
        self._index(order)
        self.pending_commissions.pop(event.exec_id, None)
        return Outcome(True, order.client_order_id, previous, order.state, fill, order.overfilled)

    def _commission(self, event: Commission) -> Outcome:
        fill = self.positions.fill(event.exec_id)
        if fill is None:
            changed = self.pending_commissions.get(event.exec_id) != event
            self.pending_commissions[event.exec_id] = event
            return Outcome(changed, note=f"commission of {event.exec_id} waits for its execution")
        changed = self.positions.set_commission(event.exec_id, event.commission)
        return Outcome(changed, fill.client_order_id, fill=self.positions.fill(event.exec_id))

    def _adjustment(self, event: PositionAdjusted) -> Outcome:
        fill = Fill(
            exec_id=event.adjustment_id,
            account=event.account,
            strategy=event.strategy,
            con_id=event.con_id,
            symbol=event.symbol,
            quantity=event.quantity,
            price=event.price,
            time_ns=event.time_ns,
            multiplier=event.multiplier,
            commission=0.0,
        )
        if not self.positions.add(fill):
            return Outcome(False, note=f"duplicate adjustment {event.adjustment_id}")
        return Outcome(True, fill=fill)

    def _adopt(self, event: OpenOrder) -> Order:
        parsed = parse_order_ref(event.order_ref)
        strategy, coid = (
            parsed if parsed else (EXTERNAL, _external_id(event.perm_id, event.client_id, event.order_id))
        )
        return Order(
            client_order_id=coid,
            strategy=strategy,
            con_id=event.con_id,
            symbol=event.symbol,
            action=event.action,
            quantity=event.total_quantity,
            created_ns=event.time_ns,
            account=event.account,
            multiplier=event.multiplier,
            updated_ns=event.time_ns,
        )

    def _placeholder(self, event: Execution) -> Order:
        """The order of an execution that came before its openOrder (and any order of ours)."""
        parsed = parse_order_ref(event.order_ref)
        if parsed:
            strategy, coid = parsed
        else:
            strategy = EXTERNAL
            coid = _external_id(event.perm_id, event.client_id, event.order_id, event.exec_id)
        return Order(
            client_order_id=coid,
            strategy=strategy,
            con_id=event.con_id,
            symbol=event.symbol,
            action="BUY" if event.side == "BOT" else "SELL",
            quantity=None,
            created_ns=event.time_ns,
            account=event.account,
            multiplier=event.multiplier,
            updated_ns=event.time_ns,
        )

    def _check_index(self, order: Order, order_id: int, perm_id: int, client_id: int) -> None:
        if perm_id:
            owner = self._by_perm_id.get(perm_id)
            if owner is not None and owner != order.client_order_id:
                raise BookConflict(f"permId {perm_id} belongs to {owner}, not {order.client_order_id}")
        if order_id > 0:
            owner = self._by_order_id.get((client_id, order_id))
            if owner is not None and owner != order.client_order_id and self.orders[owner].state.is_working:
                raise BookConflict(
                    f"orderId {order_id} (client {client_id}) belongs to {owner}, not {order.client_order_id}"
                )

    def _put(self, order: Order) -> None:
        self.orders[order.client_order_id] = order
        self._track(order)

    def _track(self, order: Order) -> None:
        """Keep ``order`` in the working index iff it is working (after any change of its state)."""
        if order.state.is_working:
            self._working.add(order.client_order_id)
        else:
            self._working.discard(order.client_order_id)

    def _index(self, order: Order) -> None:
        """Index ``order``; an order id of a done order may be reused (IB's sequence can be reset)."""
        if order.perm_id:
            self._by_perm_id[order.perm_id] = order.client_order_id
        if order.order_id > 0:
            self._by_order_id[order.client_id, order.order_id] = order.client_order_id

    # -- records ---------------------------------------------------------------------------------

    def to_records(self) -> dict[str, Any]:
        """Plain dicts and lists (canonically ordered) of orders, fills, pending commissions and
        positions (derived from the fills; :meth:`from_records` checks them)."""
        return {
            "version": RECORDS_VERSION,
            "orders": [self.orders[c].to_record() for c in sorted(self.orders)],
            "fills": [f.to_record() for f in self.positions.fills()],
            "pending_commissions": [
                _commission_record(self.pending_commissions[e]) for e in sorted(self.pending_commissions)
            ],
            "positions": [p.to_record() for p in self.positions.positions()],
        }

    @classmethod
    def from_records(cls, records: Mapping[str, Any]) -> Book:
        """The book of :meth:`to_records`. ValueError when the records are inconsistent (an order's
        fill missing, positions that its fills do not give)."""
        if records.get("version") != RECORDS_VERSION:
            raise ValueError(f"book records version {records.get('version')!r}, expected {RECORDS_VERSION}")
        book = cls()
        for record in records["fills"]:
            book.positions.add(Fill.from_record(record))
        fills = {f.exec_id: f for f in book.positions.fills()}
        orders = [Order.from_record(record, fills) for record in records["orders"]]
        for order in sorted(orders, key=lambda o: (o.state.is_working, o.created_ns)):  # working ones win
            book._check_index(order, order.order_id, order.perm_id, order.client_id)
            book.orders[order.client_order_id] = order
            book._index(order)
        book.orders = dict(sorted(book.orders.items()))
        book._working = {coid for coid, order in book.orders.items() if order.state.is_working}
        for record in records.get("pending_commissions", []):
            commission = Commission(**record)
            book.pending_commissions[commission.exec_id] = commission
        if "positions" in records:
            stored = [dict(r) for r in records["positions"]]
            derived = [p.to_record() for p in book.positions.positions()]
            if not _same_positions(stored, derived):
                raise ValueError("book records: the positions differ from what the fills give")
        return book

    def copy(self) -> Book:
        return Book.from_records(self.to_records())


def _external_id(perm_id: int, client_id: int, order_id: int, exec_id: str = "") -> str:
    if perm_id:
        return f"ext:{perm_id}"
    if order_id > 0:
        return f"ext:{client_id}:{order_id}"
    return f"ext:exec:{exec_id}"


def _commission_record(c: Commission) -> dict[str, Any]:
    return {
        "exec_id": c.exec_id,
        "commission": c.commission,
        "currency": c.currency,
        "realized_pnl": c.realized_pnl,
    }


def _same_positions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys():
            return False
        for k, v in x.items():
            w = y[k]
            if isinstance(v, float) or isinstance(w, float):
                if not math.isclose(cast(float, v), cast(float, w), rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif v != w:
                return False
    return True
