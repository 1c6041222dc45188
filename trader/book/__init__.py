"""The trading book: order lifecycle, fills, positions and P&L per strategy, reconciliation with IB.

Pure and synchronous (no sockets, no asyncio, no ib_async, no clock): the trader service feeds it
typed events built from ib_async's objects and persists :meth:`Book.to_records`.

* :mod:`~trader.book.states`: the order state machine (transition table, :class:`Order`).
* :mod:`~trader.book.events`: the typed inputs, orderRef helpers.
* :mod:`~trader.book.orders`: :class:`Book` (orders by client order id / orderId / permId, fills).
* :mod:`~trader.book.positions`: positions, average price, realized and unrealized P&L.
* :mod:`~trader.book.reconcile`: :func:`reconcile` and :func:`apply_findings`.
"""

from trader.book.events import (
    EXTERNAL,
    UNATTRIBUTED,
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
    build_order_ref,
    parse_order_ref,
    to_ns,
)
from trader.book.orders import Book, Outcome
from trader.book.positions import Fill, Marks, PnL, Position, PositionKey, Positions
from trader.book.reconcile import (
    AdoptOrder,
    Conflict,
    FillsUnaccounted,
    Finding,
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
from trader.book.states import (
    TRANSITIONS,
    BookConflict,
    InvalidTransition,
    Order,
    OrderState,
    Trigger,
    UnknownOrder,
)

__all__ = [
    "EXTERNAL",
    "TRANSITIONS",
    "UNATTRIBUTED",
    "AdoptOrder",
    "Book",
    "BookConflict",
    "BookEvent",
    "CancelRequested",
    "Commission",
    "Conflict",
    "Execution",
    "Fill",
    "FillsUnaccounted",
    "Finding",
    "IbPosition",
    "IbSnapshot",
    "InvalidTransition",
    "LostOrder",
    "Marks",
    "MissedCommission",
    "MissedFill",
    "OpenOrder",
    "Order",
    "OrderDenied",
    "OrderError",
    "OrderLost",
    "OrderRequest",
    "OrderState",
    "OrderStatusUpdate",
    "OrderSubmitted",
    "OrderUpdate",
    "Outcome",
    "OverFill",
    "PnL",
    "Position",
    "PositionAdjusted",
    "PositionKey",
    "PositionResidual",
    "Positions",
    "Trigger",
    "UnknownOrder",
    "actions",
    "apply_findings",
    "build_order_ref",
    "parse_order_ref",
    "reconcile",
    "to_ns",
]
