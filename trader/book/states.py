"""The order state machine: states, triggers, one transition table, and :class:`Order`.

Every message about an order is reduced to a :class:`Trigger`; :func:`next_state` looks the pair
``(state, trigger)`` up in :data:`TRANSITIONS` and raises :class:`InvalidTransition` when the pair
is absent. An entry whose target equals its source is an *idempotent no-op*: the message is
absorbed (a late duplicate, a stale status that IB sent before a newer one, a fill that raced a
cancel) and the order does not move.

How IB really behaves, and what the table makes of it:

* ``orderStatus`` only moves the state; its ``filled`` field is never a fill. Fills come from
  ``execDetails`` (triggers :attr:`Trigger.FILL` and :attr:`Trigger.FILL_COMPLETE`, chosen by the
  order from its own executions) and are accepted in **every** state: money moved, so an execution
  is never refused. A fill that completes the quantity makes the order Filled whatever IB's
  statuses said (a Cancelled that raced the last fill, a missing Filled status); a partial fill on
  a cancelled order leaves it cancelled (the rest was cancelled).
* A ``Filled`` status may come before the last execution: the order is Filled and keeps taking
  executions until the quantity is complete.
* Working statuses (PendingSubmit, ApiPending, PreSubmitted, Submitted) arriving after a newer
  state are stale and absorbed; once an order has executions it is PartiallyFilled, which IB calls
  Submitted.
* Rejects (:attr:`Trigger.REJECT`, from error codes) reject an order IB has not acknowledged yet;
  after an acknowledgement the same codes reject a *modification* and the order stays live (no-op).
* Inactive is done but not absorbing: IB may revive an Inactive order, so working statuses and
  fills move it again. Filled, Cancelled, ApiCancelled and Rejected absorb late IB messages.
* Unknown is Bourse's: reconciliation found no trace of a working order at IB. It is never
  resubmitted; any later IB message (or a status query) resolves it.

Errors (:class:`InvalidTransition`, raised before anything changes) are contradictions and
misuse, never races:

* a status that contradicts a completed order: Cancelled / ApiCancelled / Inactive on Filled;
  Filled on Cancelled / ApiCancelled / Rejected (executions, not statuses, prove a fill);
* local commands out of place: ``SUBMIT`` of a rejected order or of one cancelled or lost before
  it was ever sent (:meth:`Order.next_state` checks the latter), ``DENY`` after submission,
  ``CANCEL_REQUEST`` on a Filled, Cancelled, ApiCancelled or Rejected order (too late: the caller
  is told so).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from trader.book.events import (
    EXTERNAL,
    Action,
    CancelRequested,
    Execution,
    OpenOrder,
    OrderDenied,
    OrderError,
    OrderLost,
    OrderStatusUpdate,
    OrderSubmitted,
    build_order_ref,
    parse_order_ref,
)
from trader.book.positions import EPS, Fill


class OrderState(StrEnum):
    """Bourse's order states; the values are IB's status strings where IB has the state."""

    INITIALIZED = "Initialized"
    """Registered in the book, not yet sent to IB (the risk gate decides)."""
    PENDING_SUBMIT = "PendingSubmit"
    API_PENDING = "ApiPending"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    PARTIALLY_FILLED = "PartiallyFilled"
    PENDING_CANCEL = "PendingCancel"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    API_CANCELLED = "ApiCancelled"
    INACTIVE = "Inactive"
    REJECTED = "Rejected"
    UNKNOWN = "Unknown"
    """Reconciliation lost sight of a working order; never resubmitted, resolved by IB messages."""

    @property
    def is_done(self) -> bool:
        """No longer working (Inactive included, although IB may revive it)."""
        return self in DONE_STATES

    @property
    def is_working(self) -> bool:
        """May still fill: everything not done (Initialized and Unknown included, conservatively)."""
        return self not in DONE_STATES


class Trigger(StrEnum):
    """What a message does to an order's state."""

    SUBMIT = "submit"
    """Bourse sent placeOrder."""
    DENY = "deny"
    """Bourse refused the order before sending it (risk gate)."""
    CANCEL_REQUEST = "cancel_request"
    """Bourse sent cancelOrder."""
    IB_PENDING_SUBMIT = "PendingSubmit"
    IB_API_PENDING = "ApiPending"
    IB_PRE_SUBMITTED = "PreSubmitted"
    IB_SUBMITTED = "Submitted"
    IB_PENDING_CANCEL = "PendingCancel"
    IB_CANCELLED = "Cancelled"
    IB_API_CANCELLED = "ApiCancelled"
    IB_INACTIVE = "Inactive"
    IB_FILLED = "Filled"
    REJECT = "reject"
    """An order error (201, 103, 110, 200, ...)."""
    CANCEL_REJECT = "cancel_reject"
    """IB refused a cancel (161, 10147, 10148)."""
    FILL = "fill"
    """An execution that leaves quantity open (or the quantity is unknown)."""
    FILL_COMPLETE = "fill_complete"
    """An execution that completes (or exceeds) the order's quantity."""
    LOST = "lost"
    """Reconciliation: the book thinks the order works, IB does not list it."""


_S = OrderState
_T = Trigger

DONE_STATES = frozenset({_S.FILLED, _S.CANCELLED, _S.API_CANCELLED, _S.INACTIVE, _S.REJECTED})
ABSORBING_STATES = frozenset({_S.FILLED, _S.CANCELLED, _S.API_CANCELLED, _S.REJECTED})
"""Terminal: only executions (and Filled from a completing one) move them; late messages are no-ops."""

PRE_ACK = (_S.INITIALIZED, _S.PENDING_SUBMIT, _S.API_PENDING)
"""Not yet acknowledged by IB (a reject code rejects the order itself)."""
ACKED = (_S.PRE_SUBMITTED, _S.SUBMITTED, _S.PARTIALLY_FILLED, _S.PENDING_CANCEL)
LIVE = (*PRE_ACK, *ACKED, _S.UNKNOWN)
"""Every working state."""

RESTORE = _S.PENDING_CANCEL
"""Marker target of (PendingCancel, CANCEL_REJECT): back to the state before the cancel request."""

STATUS_TRIGGERS: Mapping[str, Trigger] = MappingProxyType(
    {
        "PendingSubmit": _T.IB_PENDING_SUBMIT,
        "ApiPending": _T.IB_API_PENDING,
        "PreSubmitted": _T.IB_PRE_SUBMITTED,
        "Submitted": _T.IB_SUBMITTED,
        "PendingCancel": _T.IB_PENDING_CANCEL,
        "Cancelled": _T.IB_CANCELLED,
        "ApiCancelled": _T.IB_API_CANCELLED,
        "Inactive": _T.IB_INACTIVE,
        "Filled": _T.IB_FILLED,
    }
)
IGNORED_STATUSES = frozenset({"", "ApiUpdate", "ValidationError"})
"""Statuses that move nothing: empty, ib_async's synthetic ValidationError, ApiUpdate."""

CANCEL_REJECT_CODES = frozenset({161, 10147, 10148})
"""Cancel refused: not in a cancellable state (161, 10148) or order id not found (10147)."""
CANCELLED_CODES = frozenset({202})
""""Order Canceled - reason": the same as a Cancelled status."""
WARNING_CODES = frozenset({165, 399, 404, 492, 10167})
"""Order messages that change nothing (399 order message, 404 shares being located ...); so are
2100-2199. Every other code on an order id is a reject (:attr:`Trigger.REJECT`)."""


def status_trigger(status: str) -> Trigger | None:
    """The trigger of an IB status string; ``None`` for statuses that move nothing."""
    if status in IGNORED_STATUSES:
        return None
    try:
        return STATUS_TRIGGERS[status]
    except KeyError:
        raise ValueError(f"unknown IB order status {status!r}") from None


def error_trigger(code: int) -> Trigger | None:
    """The trigger of an IB error code about an order; ``None`` for warnings."""
    if code in CANCEL_REJECT_CODES:
        return _T.CANCEL_REJECT
    if code in CANCELLED_CODES:
        return _T.IB_CANCELLED
    if code in WARNING_CODES or 2100 <= code < 2200:
        return None
    return _T.REJECT


def _table() -> dict[tuple[OrderState, Trigger], OrderState]:
    t: dict[tuple[OrderState, Trigger], OrderState] = {}

    def put(sources: Iterable[OrderState], trigger: Trigger, target: OrderState | None) -> None:
        """``target=None``: each source stays where it is (an idempotent no-op)."""
        for source in sources:
            t[source, trigger] = source if target is None else target

    # Local commands.
    put([_S.INITIALIZED], _T.SUBMIT, _S.PENDING_SUBMIT)
    put([s for s in _S if s not in (_S.INITIALIZED, _S.REJECTED)], _T.SUBMIT, None)  # IB spoke first / replay
    put([_S.INITIALIZED], _T.DENY, _S.REJECTED)
    put([_S.REJECTED], _T.DENY, None)
    put([_S.INITIALIZED], _T.CANCEL_REQUEST, _S.CANCELLED)  # never sent: cancelled locally
    cancellable = [_S.PENDING_SUBMIT, _S.API_PENDING, _S.PRE_SUBMITTED, _S.SUBMITTED, _S.PARTIALLY_FILLED]
    put([*cancellable, _S.UNKNOWN, _S.INACTIVE], _T.CANCEL_REQUEST, _S.PENDING_CANCEL)
    put([_S.PENDING_CANCEL], _T.CANCEL_REQUEST, None)

    # Working statuses: forward moves; stale ones are absorbed.
    for trig, target in (
        (_T.IB_PENDING_SUBMIT, _S.PENDING_SUBMIT),
        (_T.IB_API_PENDING, _S.API_PENDING),
        (_T.IB_PRE_SUBMITTED, _S.PRE_SUBMITTED),
        (_T.IB_SUBMITTED, _S.SUBMITTED),
    ):
        put([*PRE_ACK, _S.UNKNOWN, _S.INACTIVE], trig, target)
        acked = trig in (_T.IB_PRE_SUBMITTED, _T.IB_SUBMITTED)
        put([_S.PRE_SUBMITTED, _S.SUBMITTED], trig, target if acked else None)
        put([_S.PARTIALLY_FILLED, _S.PENDING_CANCEL, *ABSORBING_STATES], trig, None)

    put([*PRE_ACK, *cancellable, _S.UNKNOWN, _S.INACTIVE], _T.IB_PENDING_CANCEL, _S.PENDING_CANCEL)
    put([_S.PENDING_CANCEL, *ABSORBING_STATES], _T.IB_PENDING_CANCEL, None)

    # Done statuses.
    for trig, target in (
        (_T.IB_CANCELLED, _S.CANCELLED),
        (_T.IB_API_CANCELLED, _S.API_CANCELLED),
        (_T.IB_INACTIVE, _S.INACTIVE),
    ):
        put([*LIVE, _S.INACTIVE], trig, target)
        put([_S.CANCELLED, _S.API_CANCELLED, _S.REJECTED], trig, None)
        # (Filled, trig) is absent: a cancelled / inactive filled order is a contradiction.
    put([*LIVE, _S.INACTIVE], _T.IB_FILLED, _S.FILLED)
    put([_S.FILLED], _T.IB_FILLED, None)

    # Errors.
    put([*PRE_ACK, _S.INACTIVE], _T.REJECT, _S.REJECTED)
    put([*ACKED, _S.UNKNOWN, *ABSORBING_STATES], _T.REJECT, None)  # a rejected modification
    for s in _S:
        t[s, _T.CANCEL_REJECT] = s
    t[_S.PENDING_CANCEL, _T.CANCEL_REJECT] = RESTORE

    # Executions: accepted everywhere.
    put([*PRE_ACK, *cancellable, _S.UNKNOWN, _S.INACTIVE, _S.REJECTED], _T.FILL, _S.PARTIALLY_FILLED)
    put([_S.PENDING_CANCEL, _S.FILLED, _S.CANCELLED, _S.API_CANCELLED], _T.FILL, None)
    put(list(_S), _T.FILL_COMPLETE, _S.FILLED)

    # Reconciliation.
    put([*PRE_ACK, *ACKED], _T.LOST, _S.UNKNOWN)
    put([_S.UNKNOWN, _S.INACTIVE, *ABSORBING_STATES], _T.LOST, None)
    return t


TRANSITIONS: Mapping[tuple[OrderState, Trigger], OrderState] = MappingProxyType(_table())
"""``(state, trigger) -> target``; target == state is a no-op; a missing pair is invalid.

``(PendingCancel, CANCEL_REJECT)`` maps to :data:`RESTORE`: the state before the cancel request."""


class InvalidTransition(Exception):
    """An impossible move; names the order, its state and the event."""

    def __init__(self, order: str, state: OrderState, trigger: Trigger, event: str = "") -> None:
        self.order = order
        self.state = state
        self.trigger = trigger
        self.event = event
        what = f"{trigger.value}" + (f" ({event})" if event else "")
        super().__init__(f"order {order} in state {state.value} cannot take {what}")


def is_valid(state: OrderState, trigger: Trigger) -> bool:
    return (state, trigger) in TRANSITIONS


def next_state(state: OrderState, trigger: Trigger, *, order: str = "?", event: str = "") -> OrderState:
    """The state after ``trigger``; raises :class:`InvalidTransition` on an impossible move.

    ``(PendingCancel, CANCEL_REJECT)`` returns PendingCancel (:data:`RESTORE`); the order restores
    the state it had before the cancel request."""
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise InvalidTransition(order, state, trigger, event) from None


OrderEvent = (
    OrderSubmitted
    | OrderDenied
    | CancelRequested
    | OpenOrder
    | OrderStatusUpdate
    | Execution
    | OrderError
    | OrderLost
)


class BookConflict(ValueError):
    """Inputs that contradict the book's identities (a reused order id, a permId of another order,
    a request reusing a client order id with other terms)."""


class UnknownOrder(KeyError):
    """A Bourse command names a client order id the book does not have."""


@dataclass(slots=True, eq=False)
class Order:
    """One order and its lifecycle. Mutate only through :meth:`apply` (or the book)."""

    client_order_id: str
    strategy: str
    con_id: int
    symbol: str
    action: Action
    quantity: float | None
    """``None`` while unknown (an execution of an outside order arrived before its openOrder)."""
    created_ns: int
    account: str = ""
    order_type: str = "MKT"
    limit_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    multiplier: float = 1.0
    state: OrderState = OrderState.INITIALIZED
    order_id: int = 0
    perm_id: int = 0
    client_id: int = 0
    updated_ns: int = 0
    ib_status: str = ""
    """The last IB status string seen (informational)."""
    ib_filled: float = 0.0
    """IB's own filled count from the last orderStatus / openOrder (informational, never a fill)."""
    reason: str = ""
    """Why it was denied, rejected, lost, or the last order error/warning."""
    state_before_cancel: OrderState | None = None
    fills: dict[str, tuple[float, float]] = field(default_factory=dict)
    """exec id -> (shares, price) of its executions."""

    # -- derived ---------------------------------------------------------------------------------

    @property
    def order_ref(self) -> str:
        if self.strategy == EXTERNAL:
            return ""
        return build_order_ref(self.strategy, self.client_order_id)

    @property
    def filled(self) -> float:
        """Cumulative filled quantity, from executions only."""
        return math.fsum(shares for shares, _ in self.fills.values())

    @property
    def avg_fill_price(self) -> float:
        filled = self.filled
        if filled == 0:
            return 0.0
        return math.fsum(shares * price for shares, price in self.fills.values()) / filled

    @property
    def remaining(self) -> float | None:
        return None if self.quantity is None else max(self.quantity - self.filled, 0.0)

    @property
    def overfilled(self) -> bool:
        return self.quantity is not None and self.filled > self.quantity + EPS

    @property
    def is_external(self) -> bool:
        return self.strategy == EXTERNAL

    def describe(self) -> str:
        return f"{self.client_order_id} (orderId {self.order_id}, permId {self.perm_id})"

    # -- lifecycle -------------------------------------------------------------------------------

    def trigger_of(self, event: OrderEvent) -> Trigger | None:
        """The trigger ``event`` would fire (``None``: it moves no state)."""
        match event:
            case OrderSubmitted():
                return Trigger.SUBMIT
            case OrderDenied():
                return Trigger.DENY
            case CancelRequested():
                return Trigger.CANCEL_REQUEST
            case OpenOrder() | OrderStatusUpdate():
                return status_trigger(event.status)
            case OrderError():
                return error_trigger(event.code)
            case OrderLost():
                return Trigger.LOST
            case Execution():
                if event.exec_id in self.fills:
                    return None
                filled = self.filled + event.shares
                if self.quantity is not None and filled >= self.quantity - EPS:
                    return Trigger.FILL_COMPLETE
                return Trigger.FILL

    def next_state(self, event: OrderEvent) -> OrderState:
        """The state ``event`` would lead to, without applying it (raises InvalidTransition)."""
        trigger = self.trigger_of(event)
        if trigger is None:
            return self.state
        if trigger is Trigger.SUBMIT and self.state is not OrderState.INITIALIZED and self.order_id <= 0:
            # cancelled or lost before it was ever sent: sending it now would be a resubmission
            raise InvalidTransition(self.describe(), self.state, trigger, "never sent before")
        target = next_state(self.state, trigger, order=self.describe(), event=type(event).__name__)
        if self.state is OrderState.PENDING_CANCEL and trigger is Trigger.CANCEL_REJECT:
            target = self.state_before_cancel or OrderState.SUBMITTED
        if target in (OrderState.PRE_SUBMITTED, OrderState.SUBMITTED) and self.fills:
            target = OrderState.PARTIALLY_FILLED  # IB says Submitted; it has executions
        return target

    def validate(self, event: OrderEvent) -> OrderState:
        """The state after ``event``; raises InvalidTransition, or BookConflict for ids that
        contradict the order's, and changes nothing."""
        target = self.next_state(event)
        self._check_ids(event)
        return target

    def apply(self, event: OrderEvent) -> bool:
        """Apply ``event``; ``True`` when its state, ids, terms, reason or fills changed (the
        informational ``ib_status`` / ``ib_filled`` are refreshed without counting). Raises like
        :meth:`validate`, before changing anything."""
        target = self.validate(event)
        before = self._fingerprint()
        match event:
            case OrderSubmitted():
                self.order_id, self.client_id = event.order_id, event.client_id
            case OrderDenied():
                self.reason = event.reason
            case OpenOrder():
                self._adopt_ids(event.order_id, event.perm_id, event.client_id)
                self.quantity = event.total_quantity
                self.order_type, self.tif = event.order_type, event.tif
                self.limit_price, self.aux_price = event.limit_price, event.aux_price
                self.account = self.account or event.account
                self.ib_status, self.ib_filled = event.status or self.ib_status, event.filled
            case OrderStatusUpdate():
                self._adopt_ids(event.order_id, event.perm_id, event.client_id)
                self.ib_status, self.ib_filled = event.status or self.ib_status, event.filled
            case OrderError():
                self.reason = f"{event.code}: {event.message}"
            case OrderLost():
                if target is not self.state:
                    self.reason = event.reason
            case Execution():
                self._adopt_ids(event.order_id, event.perm_id, event.client_id)
                self.fills.setdefault(event.exec_id, (event.shares, event.price))
                self.created_ns = min(self.created_ns, event.time_ns)  # placeholders: any fill order
            case CancelRequested():
                pass
        if target is OrderState.PENDING_CANCEL and self.state is not OrderState.PENDING_CANCEL:
            self.state_before_cancel = self.state
        elif target is not OrderState.PENDING_CANCEL:
            self.state_before_cancel = None
        self.state = target
        changed = self._fingerprint() != before
        if changed:
            self.updated_ns = max(self.updated_ns, _time_of(event))
        return changed

    def _check_ids(self, event: OrderEvent) -> None:
        if isinstance(event, OrderSubmitted):
            ids = (event.order_id, 0, event.client_id)
        elif isinstance(event, OpenOrder | OrderStatusUpdate | Execution):
            ids = (event.order_id, event.perm_id, event.client_id)
        else:
            return
        order_id, perm_id, client_id = ids
        if isinstance(event, OpenOrder | Execution):
            parsed = parse_order_ref(event.order_ref)
            if parsed is not None and parsed != (self.strategy, self.client_order_id):
                raise BookConflict(
                    f"order {self.describe()} of {self.strategy}: orderRef {event.order_ref!r}"
                )
        if perm_id and self.perm_id and perm_id != self.perm_id:
            raise BookConflict(f"order {self.describe()}: {type(event).__name__} carries permId {perm_id}")
        if order_id > 0 and self.order_id > 0 and (order_id, client_id) != (self.order_id, self.client_id):
            raise BookConflict(
                f"order {self.describe()} of client {self.client_id}: {type(event).__name__} carries "
                f"orderId {order_id} of client {client_id}"
            )

    def _adopt_ids(self, order_id: int, perm_id: int, client_id: int) -> None:
        if order_id > 0 and self.order_id <= 0:
            self.order_id, self.client_id = order_id, client_id
        if perm_id and not self.perm_id:
            self.perm_id = perm_id

    def _fingerprint(self) -> tuple[object, ...]:
        return (
            self.state,
            self.order_id,
            self.perm_id,
            self.client_id,
            self.quantity,
            self.order_type,
            self.limit_price,
            self.aux_price,
            self.tif,
            self.account,
            self.reason,
            len(self.fills),
        )

    # -- records ---------------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "strategy": self.strategy,
            "con_id": self.con_id,
            "symbol": self.symbol,
            "action": self.action,
            "quantity": self.quantity,
            "created_ns": self.created_ns,
            "account": self.account,
            "order_type": self.order_type,
            "limit_price": self.limit_price,
            "aux_price": self.aux_price,
            "tif": self.tif,
            "multiplier": self.multiplier,
            "state": self.state.value,
            "order_id": self.order_id,
            "perm_id": self.perm_id,
            "client_id": self.client_id,
            "updated_ns": self.updated_ns,
            "ib_status": self.ib_status,
            "ib_filled": self.ib_filled,
            "reason": self.reason,
            "state_before_cancel": None
            if self.state_before_cancel is None
            else self.state_before_cancel.value,
            "exec_ids": sorted(self.fills),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], fills: Mapping[str, Fill]) -> Order:
        """Rebuild from :meth:`to_record`; ``fills`` (by exec id) supplies its executions."""
        data = dict(record)
        exec_ids = data.pop("exec_ids")
        data["state"] = OrderState(data["state"])
        before = data["state_before_cancel"]
        data["state_before_cancel"] = None if before is None else OrderState(before)
        missing = [e for e in exec_ids if e not in fills]
        if missing:
            raise ValueError(f"order {data['client_order_id']}: fills {missing} are not in the records")
        data["fills"] = {e: (abs(fills[e].quantity), fills[e].price) for e in exec_ids}
        return cls(**data)


def _time_of(event: OrderEvent) -> int:
    return event.time_ns
