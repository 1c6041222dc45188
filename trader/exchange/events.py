"""What the matching engine tells the session layer: frozen dataclasses, one per TWS message kind.

Field names mirror the TWS messages (``avgFillPrice``, ``execId`` ...) so the protocol layer maps
them 1:1. Every event carries the ``clientId`` it is for (``-1``: every client of the account);
times are nanoseconds since the epoch (UTC).

* :class:`OrderStatusEvent` -> openOrder + orderStatus
* :class:`ExecutionEvent` -> execDetails; :class:`CommissionReportEvent` -> commissionReport
* :class:`ErrorEvent` -> error (code, text, order id as reqId)
* :class:`WhatIfEvent` -> openOrder with the what-if OrderState (no orderStatus)
* :class:`PositionEvent` -> position + updatePortfolio
* :class:`AccountValueEvent` -> updateAccountValue
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from trader.exchange.orders import TRAIL_TYPES, Order, WorkingOrder

UNSET_DOUBLE = sys.float_info.max
"""What TWS sends for "no value" in a double field (e.g. realizedPNL of an opening trade)."""


@dataclass(frozen=True, slots=True)
class OrderStatusEvent:
    """An order's state. ``order`` is its current spec (with permId, the current totalQuantity
    after OCA reductions and the current ``trailStopPrice``), for the openOrder message."""

    order: Order
    status: str
    filled: float
    remaining: float
    avgFillPrice: float
    lastFillPrice: float
    whyHeld: str
    time_ns: int
    mktCapPrice: float = 0.0

    @property
    def clientId(self) -> int:
        return self.order.clientId

    @property
    def orderId(self) -> int:
        return self.order.orderId

    @property
    def permId(self) -> int:
        return self.order.permId

    @property
    def parentId(self) -> int:
        return self.order.parentId


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """A fill. ``side`` is BOT or SLD; ``cumQty`` / ``avgPrice`` are the order's totals so far."""

    execId: str
    time_ns: int
    acctNumber: str
    exchange: str
    side: str
    shares: float
    price: float
    permId: int
    clientId: int
    orderId: int
    cumQty: float
    avgPrice: float
    orderRef: str
    conId: int
    lastLiquidity: int = 2
    """1: added liquidity (a resting limit filled at its limit); 2: removed it (everything else)."""
    liquidation: int = 0


@dataclass(frozen=True, slots=True)
class CommissionReportEvent:
    """The commission of one execution. ``realizedPNL`` is :data:`UNSET_DOUBLE` for opening trades."""

    execId: str
    commission: float
    currency: str
    realizedPNL: float
    clientId: int
    orderId: int
    yield_: float = UNSET_DOUBLE
    yieldRedemptionDate: int = 0


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A TWS error/warning: ``reqId`` is the order id (or -1), ``code`` e.g. 201, 110, 10148."""

    clientId: int
    reqId: int
    code: int
    text: str
    time_ns: int
    advancedOrderRejectJson: str = ""


@dataclass(frozen=True, slots=True)
class WhatIfEvent:
    """The answer to a ``whatIf`` order: margin and commission figures (strings as TWS sends the
    margin ones); no order is placed."""

    order: Order
    initMarginBefore: str
    maintMarginBefore: str
    equityWithLoanBefore: str
    initMarginChange: str
    maintMarginChange: str
    equityWithLoanChange: str
    initMarginAfter: str
    maintMarginAfter: str
    equityWithLoanAfter: str
    commission: float
    minCommission: float
    maxCommission: float
    commissionCurrency: str
    warningText: str
    time_ns: int

    @property
    def clientId(self) -> int:
        return self.order.clientId

    @property
    def orderId(self) -> int:
        return self.order.orderId


@dataclass(frozen=True, slots=True)
class PositionEvent:
    """A position after a fill, with its portfolio row (marketPrice at the time of the fill)."""

    account: str
    conId: int
    position: float
    avgCost: float
    marketPrice: float
    marketValue: float
    unrealizedPNL: float
    realizedPNL: float
    time_ns: int
    clientId: int = -1


@dataclass(frozen=True, slots=True)
class AccountValueEvent:
    """One account value that changed (``key``, ``value`` text, ``currency``)."""

    account: str
    key: str
    value: str
    currency: str
    time_ns: int
    clientId: int = -1


Event = (
    OrderStatusEvent
    | ExecutionEvent
    | CommissionReportEvent
    | ErrorEvent
    | WhatIfEvent
    | PositionEvent
    | AccountValueEvent
)


def status_event(wo: WorkingOrder, now_ns: int) -> OrderStatusEvent:
    """The current state of a working order (trailing orders show their current stop)."""
    order = wo.order
    if order.orderType in TRAIL_TYPES and wo.stop_price is not None and order.trailStopPrice != wo.stop_price:
        order = dataclasses.replace(order, trailStopPrice=wo.stop_price)
    return OrderStatusEvent(
        order, wo.status, wo.filled, wo.remaining, wo.avg_fill_price, wo.last_fill_price, wo.why_held, now_ns
    )
