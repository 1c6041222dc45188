"""Typed, immutable inputs of the book: Bourse's own commands and IB's order messages.

Field names are Python-style; each class says which TWS message (ib_async object) it mirrors.
Times are integers, nanoseconds since the epoch (UTC), passed in by the caller; :func:`to_ns`
converts an aware ``datetime`` (ib_async's ``Execution.time``). Quantities are positive; a side or
action says the direction. ``multiplier`` is the contract's (1 for stocks, 50 for ES ...).

* Bourse: :class:`OrderRequest` (``Book.register``), :class:`OrderSubmitted` (placeOrder sent),
  :class:`OrderDenied` (refused before sending), :class:`CancelRequested` (cancelOrder sent).
* IB: :class:`OpenOrder` (openOrder), :class:`OrderStatusUpdate` (orderStatus),
  :class:`Execution` (execDetails), :class:`Commission` (commissionReport),
  :class:`OrderError` (error with an order id as reqId).
* Reconciliation: :class:`OrderLost`, :class:`PositionAdjusted`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

ORDER_REF_SEPARATOR = ":"
EXTERNAL = "external"
"""Strategy of orders and fills placed outside Bourse (orderRef empty or not ``strategy:id``)."""
UNATTRIBUTED = "unattributed"
"""Strategy of position residuals: what IB holds beyond the sum of the strategies' positions."""
RESERVED_STRATEGIES = frozenset({EXTERNAL, UNATTRIBUTED})

Action = Literal["BUY", "SELL"]
ExecSide = Literal["BOT", "SLD"]
ACTIONS: frozenset[str] = frozenset({"BUY", "SELL"})
EXEC_SIDES: frozenset[str] = frozenset({"BOT", "SLD"})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (naive ones are refused)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: pass an aware one (UTC)")
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def check_strategy(name: str) -> str:
    """A valid strategy name (non-empty, no ``:``, no whitespace) or ValueError."""
    if not name or ORDER_REF_SEPARATOR in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid strategy name {name!r}: non-empty, without ':' or whitespace")
    return name


def check_client_order_id(client_order_id: str) -> str:
    if not client_order_id or any(c.isspace() for c in client_order_id):
        raise ValueError(f"invalid client order id {client_order_id!r}: non-empty, without whitespace")
    return client_order_id


def build_order_ref(strategy: str, client_order_id: str) -> str:
    """``"<strategy>:<client_order_id>"``; the reserved strategies cannot place orders."""
    if check_strategy(strategy) in RESERVED_STRATEGIES:
        raise ValueError(f"strategy name {strategy!r} is reserved")
    return f"{strategy}{ORDER_REF_SEPARATOR}{check_client_order_id(client_order_id)}"


def parse_order_ref(order_ref: str) -> tuple[str, str] | None:
    """``(strategy, client_order_id)`` of a Bourse orderRef; ``None`` for anything else (an order
    placed outside Bourse). The client order id may itself contain ``:``."""
    strategy, sep, client_order_id = order_ref.partition(ORDER_REF_SEPARATOR)
    if not sep:
        return None
    try:
        check_strategy(strategy)
        check_client_order_id(client_order_id)
    except ValueError:
        return None
    if strategy in RESERVED_STRATEGIES:
        return None
    return strategy, client_order_id


def _positive(what: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive number, not {value!r}")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a strategy asks for; ``Book.register`` turns it into an Initialized order."""

    strategy: str
    client_order_id: str
    con_id: int
    symbol: str
    action: Action
    quantity: float
    time_ns: int
    order_type: str = "MKT"
    limit_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    account: str = ""
    multiplier: float = 1.0

    def __post_init__(self) -> None:
        build_order_ref(self.strategy, self.client_order_id)
        if self.action not in ACTIONS:
            raise ValueError(f"action must be BUY or SELL, not {self.action!r}")
        _positive("quantity", self.quantity)
        _positive("multiplier", self.multiplier)

    @property
    def order_ref(self) -> str:
        return build_order_ref(self.strategy, self.client_order_id)


@dataclass(frozen=True, slots=True)
class OrderSubmitted:
    """Bourse sent placeOrder with this IB order id (and API client id)."""

    client_order_id: str
    order_id: int
    time_ns: int
    client_id: int = 0


@dataclass(frozen=True, slots=True)
class OrderDenied:
    """Bourse refused the order before sending it (the risk gate's reason)."""

    client_order_id: str
    reason: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Bourse sent cancelOrder (or decided to cancel an order it never sent)."""

    client_order_id: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """openOrder (ib_async ``Trade.order`` + ``Trade.orderStatus``); also a row of IB's open orders
    in a reconciliation snapshot. ``filled`` is IB's count, informational: fills come from
    executions only."""

    order_id: int
    perm_id: int
    order_ref: str
    account: str
    con_id: int
    symbol: str
    action: Action
    total_quantity: float
    status: str
    time_ns: int
    client_id: int = 0
    order_type: str = "MKT"
    limit_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    multiplier: float = 1.0
    filled: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be BUY or SELL, not {self.action!r}")


@dataclass(frozen=True, slots=True)
class OrderStatusUpdate:
    """orderStatus: moves the state only; ``filled`` / ``avg_fill_price`` are informational."""

    order_id: int
    perm_id: int
    status: str
    time_ns: int
    client_id: int = 0
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0


@dataclass(frozen=True, slots=True)
class Execution:
    """execDetails (ib_async ``Fill.execution`` + ``Fill.contract``): one fill, applied once per
    ``exec_id``. ``cum_qty`` / ``avg_price`` are IB's order totals (informational)."""

    exec_id: str
    order_id: int
    perm_id: int
    order_ref: str
    con_id: int
    symbol: str
    side: ExecSide
    shares: float
    price: float
    time_ns: int
    account: str
    cum_qty: float = 0.0
    avg_price: float = 0.0
    client_id: int = 0
    multiplier: float = 1.0
    currency: str = "USD"

    def __post_init__(self) -> None:
        if not self.exec_id:
            raise ValueError("an execution needs an exec id")
        if self.side not in EXEC_SIDES:
            raise ValueError(f"side must be BOT or SLD, not {self.side!r}")
        _positive("shares", self.shares)
        _positive("multiplier", self.multiplier)
        if not math.isfinite(self.price):
            raise ValueError(f"price must be finite, not {self.price!r}")

    @property
    def signed_shares(self) -> float:
        return self.shares if self.side == "BOT" else -self.shares


@dataclass(frozen=True, slots=True)
class Commission:
    """commissionReport, matched to its execution by ``exec_id`` (it may arrive first).
    ``realized_pnl`` is IB's (``None`` when unset); the book computes its own."""

    exec_id: str
    commission: float
    currency: str = "USD"
    realized_pnl: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.commission):
            raise ValueError(f"commission must be finite, not {self.commission!r}")


@dataclass(frozen=True, slots=True)
class OrderError:
    """error with an order id as reqId; classified by ``states.error_trigger``."""

    order_id: int
    code: int
    message: str
    time_ns: int
    client_id: int = 0


@dataclass(frozen=True, slots=True)
class OrderLost:
    """Reconciliation: the book's working order is not at IB; it becomes Unknown (never resubmitted)."""

    client_order_id: str
    time_ns: int
    reason: str = "not among IB's open orders"


@dataclass(frozen=True, slots=True)
class PositionAdjusted:
    """A booked correction without an execution (a reconciliation residual, an opening balance).
    ``adjustment_id`` plays the exec id: applied once. ``quantity`` is signed."""

    adjustment_id: str
    account: str
    strategy: str
    con_id: int
    symbol: str
    quantity: float
    price: float
    time_ns: int
    multiplier: float = 1.0
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.adjustment_id:
            raise ValueError("an adjustment needs an id")
        if not (math.isfinite(self.quantity) and self.quantity != 0):
            raise ValueError(f"an adjustment needs a non-zero quantity, not {self.quantity!r}")
        _positive("multiplier", self.multiplier)
        check_strategy(self.strategy)


BookEvent = (
    OrderSubmitted
    | OrderDenied
    | CancelRequested
    | OpenOrder
    | OrderStatusUpdate
    | Execution
    | Commission
    | OrderError
    | OrderLost
    | PositionAdjusted
)
"""Everything ``Book.apply`` takes."""
