"""Mapping between ib_async, the book and the outside world; pure functions, no I/O.

* ib_async -> book: ``*_event`` turn a ``Trade`` / ``Fill`` / ``CommissionReport`` into the book's
  events as the book's wiring notes say (UNSET prices -> None; ib_async's synthetic statuses after
  an error skipped); :func:`ib_snapshot` is the reconciliation's input, :func:`finding_events` and
  :func:`completed_events` what it applies; :func:`stored_execution` rebuilds an execution from a
  row of the store.
* book -> outside: ``*_record`` are RPC results and event bodies (plain msgpack-able dicts),
  ``*_row`` the store's rows (schemas FILLS and ORDERS of trader/data).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from ib_async import CommissionReport as IbCommissionReport
from ib_async import Contract, Order, OrderStatus, Trade
from ib_async import Fill as IbFill
from ib_async import Position as IbPositionRow

from trader.book import (
    AdoptOrder,
    Book,
    BookEvent,
    Commission,
    Execution,
    Fill,
    Finding,
    IbPosition,
    IbSnapshot,
    LostOrder,
    MissedCommission,
    MissedFill,
    OpenOrder,
    OrderLost,
    OrderStatusUpdate,
    OrderUpdate,
    PnL,
    Position,
    PositionResidual,
    parse_order_ref,
    to_ns,
)
from trader.book import Order as BookOrder

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

_UNSET: Final = 1e300


def ib_price(value: float | Decimal | None) -> float | None:
    """An IB price, ``None`` when unset (TWS's max double) or not a number."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) >= _UNSET:
        return None
    return number


def multiplier_of(contract: Contract | None) -> float:
    try:
        value = float(contract.multiplier or 1) if contract is not None else 1.0
    except (TypeError, ValueError):
        return 1.0
    return value if math.isfinite(value) and value > 0 else 1.0


def symbol_of(contract: Contract | None) -> str:
    if contract is None:
        return ""
    return str(contract.localSymbol or contract.symbol or contract.conId)


def _terms(order: Order) -> tuple[str, float | None, float | None]:
    kind = str(order.orderType or "MKT").upper()
    limit = ib_price(order.lmtPrice) if kind in ("LMT", "STP LMT") else None
    aux = ib_price(order.auxPrice) if kind in ("STP", "STP LMT", "TRAIL") else None
    return kind, limit, aux


def open_order_event(trade: Trade, now_ns: int) -> OpenOrder:
    order, contract, status = trade.order, trade.contract, trade.orderStatus
    kind, limit, aux = _terms(order)
    return OpenOrder(
        order_id=int(order.orderId),
        perm_id=int(order.permId),
        order_ref=str(order.orderRef or ""),
        account=str(order.account or ""),
        con_id=int(contract.conId),
        symbol=symbol_of(contract),
        action="BUY" if str(order.action).upper() == "BUY" else "SELL",
        total_quantity=float(order.totalQuantity),
        status=str(status.status or ""),
        time_ns=now_ns,
        client_id=int(order.clientId),
        order_type=kind,
        limit_price=limit,
        aux_price=aux,
        tif=str(order.tif or "DAY"),
        multiplier=multiplier_of(contract),
        filled=float(status.filled or 0.0),
    )


def status_event(trade: Trade, now_ns: int) -> OrderStatusUpdate | None:
    """``None`` for ib_async's synthetic statuses after an error (its log's last entry carries
    the error code): the error itself reaches the book as an OrderError."""
    if trade.log and trade.log[-1].errorCode:
        return None
    order, status = trade.order, trade.orderStatus
    return OrderStatusUpdate(
        order_id=int(order.orderId),
        perm_id=int(order.permId or status.permId),
        status=str(status.status or ""),
        time_ns=now_ns,
        client_id=int(order.clientId),
        filled=float(status.filled or 0.0),
        remaining=float(status.remaining or 0.0),
        avg_fill_price=float(status.avgFillPrice or 0.0),
    )


def execution_event(fill: IbFill) -> Execution:
    ex, contract = fill.execution, fill.contract
    return Execution(
        exec_id=str(ex.execId),
        order_id=int(ex.orderId),
        perm_id=int(ex.permId),
        order_ref=str(ex.orderRef or ""),
        con_id=int(contract.conId),
        symbol=symbol_of(contract),
        side="BOT" if str(ex.side).upper() in ("BOT", "BUY") else "SLD",
        shares=float(ex.shares),
        price=float(ex.price),
        time_ns=to_ns(ex.time),
        account=str(ex.acctNumber or ""),
        cum_qty=float(ex.cumQty or 0.0),
        avg_price=float(ex.avgPrice or 0.0),
        client_id=int(ex.clientId),
        multiplier=multiplier_of(contract),
        currency=str(contract.currency or "USD"),
    )


def commission_event(report: IbCommissionReport) -> Commission:
    realized = ib_price(report.realizedPNL)
    return Commission(
        exec_id=str(report.execId),
        commission=float(report.commission),
        currency=str(report.currency or "USD"),
        realized_pnl=realized if realized else None,
    )


# -- reconciliation inputs ------------------------------------------------------------------------


def ib_snapshot(
    accounts: Iterable[str],
    positions: Iterable[IbPositionRow],
    open_trades: Iterable[Trade],
    fills: Iterable[IbFill],
    now_ns: int,
) -> IbSnapshot:
    """What ib_async knows after reqAllOpenOrders / reqExecutions, as the book's snapshot."""
    ib_fills = list(fills)
    return IbSnapshot(
        accounts=tuple(accounts),
        positions=tuple(
            IbPosition(
                p.account,
                int(p.contract.conId),
                symbol_of(p.contract),
                float(p.position),
                float(p.avgCost),
                multiplier_of(p.contract),
            )
            for p in positions
        ),
        open_orders=tuple(open_order_event(t, now_ns) for t in open_trades if not t.order.whatIf),
        executions=tuple(execution_event(f) for f in ib_fills),
        commissions=tuple(
            commission_event(f.commissionReport) for f in ib_fills if f.commissionReport.execId
        ),
    )


def finding_events(finding: Finding) -> list[BookEvent]:
    """The book events that apply ``finding`` (none for errors and warnings), as apply_findings."""
    match finding:
        case AdoptOrder() | OrderUpdate():
            return [finding.open_order]
        case MissedFill():
            events: list[BookEvent] = [finding.execution]
            return events + ([finding.commission] if finding.commission else [])
        case MissedCommission():
            return [finding.commission]
        case LostOrder():
            return [OrderLost(finding.client_order_id, finding.time_ns)]
        case PositionResidual():
            return [finding.adjustment()]
        case _:
            return []


def completed_events(book: Book, completed: Iterable[Trade], now_ns: int) -> list[BookEvent]:
    """Done orders IB reports (reqCompletedOrders): settle the book's working or Unknown ones, and
    adopt Bourse orders the book lost (so their client order ids stay taken). An order the book
    only knows from executions (no quantity yet) takes its terms from IB's record."""
    events: list[BookEvent] = []
    for trade in completed:
        status = str(trade.orderStatus.status or "")
        if status not in OrderStatus.DoneStates:
            continue
        ref = str(trade.order.orderRef or "")
        order = book.find(perm_id=int(trade.order.permId), order_ref=ref)
        if order is None:
            if parse_order_ref(ref) is not None:
                events.append(open_order_event(trade, now_ns))
        elif order.state.is_working and order.quantity is None:
            record = open_order_event(trade, now_ns)
            if order.order_id > 0:
                record = dataclasses.replace(record, order_id=order.order_id, client_id=order.client_id)
            events.append(record)
        elif order.state.is_working:
            perm_id = int(trade.order.permId) or order.perm_id
            events.append(OrderStatusUpdate(order.order_id, perm_id, status, now_ns, order.client_id))
    return events


def stored_execution(row: Any, order: BookOrder | None, multiplier: float) -> Execution:
    """A row of the store's fills as an execution (ids of the client from its order, if known)."""
    return Execution(
        exec_id=str(row.exec_id),
        order_id=order.order_id if order is not None else int(row.order_id),
        perm_id=int(row.perm_id),
        order_ref=str(row.order_ref),
        con_id=int(row.con_id),
        symbol=str(row.symbol),
        side="BOT" if row.side == "BOT" else "SLD",
        shares=float(row.shares),
        price=float(row.price),
        time_ns=int(pd.Timestamp(row.time).value),
        account=str(row.account),
        client_id=order.client_id if order is not None else 0,
        multiplier=order.multiplier if order is not None else multiplier,
        currency=str(row.currency or "USD"),
    )


# -- records: RPC results, event bodies, store rows -----------------------------------------------


def order_record(order: BookOrder) -> dict[str, Any]:
    """An order as RPC results and ``order`` events carry it (the book's record plus derived fields)."""
    return order.to_record() | {
        "order_ref": order.order_ref,
        "filled": order.filled,
        "remaining": order.remaining,
        "avg_fill_price": order.avg_fill_price,
        "working": order.state.is_working,
    }


def order_log_row(order: BookOrder) -> dict[str, Any]:
    """A row of the store's order log (schema ORDERS)."""
    keep = (
        "order_id",
        "perm_id",
        "con_id",
        "symbol",
        "action",
        "order_type",
        "quantity",
        "limit_price",
        "tif",
    )
    return {k: v for k, v in order.to_record().items() if k in keep} | {
        "time": pd.Timestamp(order.updated_ns or order.created_ns, tz="UTC"),
        "stop_price": order.aux_price,
        "status": str(order.state),
        "filled": order.filled,
        "remaining": order.remaining,
        "avg_fill_price": order.avg_fill_price,
        "order_ref": order.order_ref or order.client_order_id,
        "message": order.reason,
    }


def fill_record(fill: Fill, book: Book) -> dict[str, Any]:
    """A fill as RPC results and ``fill`` events carry it (``kind`` "fill")."""
    order = book.get(fill.client_order_id) if fill.client_order_id else None
    return fill.to_record() | {
        "kind": "fill",
        "side": "BOT" if fill.quantity > 0 else "SLD",
        "shares": abs(fill.quantity),
        "order_state": str(order.state) if order is not None else None,
        "order_filled": order.filled if order is not None else None,
    }


def fill_row(fill: Fill, book: Book) -> dict[str, Any]:
    """A row of the store's fills (schema FILLS)."""
    order = book.get(fill.client_order_id) if fill.client_order_id else None
    keep = (
        "exec_id",
        "order_id",
        "perm_id",
        "con_id",
        "symbol",
        "price",
        "commission",
        "currency",
        "account",
    )
    return {k: v for k, v in fill.to_record().items() if k in keep} | {
        "time": pd.Timestamp(fill.time_ns, tz="UTC"),
        "side": "BOT" if fill.quantity > 0 else "SLD",
        "shares": abs(fill.quantity),
        "order_ref": order.order_ref if order is not None else "",
    }


def position_record(position: Position, mark: float | None) -> dict[str, Any]:
    """A position with its mark, market value and unrealized P&L (None without a mark)."""
    return position.to_record() | {
        "avg_cost": position.avg_cost,
        "mark": mark,
        "market_value": None if mark is None else position.market_value(mark),
        "unrealized": None if mark is None else position.unrealized(mark),
    }


def pnl_record(pnl: PnL) -> dict[str, Any]:
    return {
        "realized": pnl.realized,
        "unrealized": pnl.unrealized,
        "commissions": pnl.commissions,
        "total": pnl.total,
        "missing_marks": list(pnl.missing_marks),
    }


def findings_record(reason: str, findings: Iterable[Finding]) -> dict[str, Any]:
    """The body of a ``reconcile`` event."""
    items = [
        {"kind": type(f).__name__, "severity": f.severity, "message": f.message}
        | ({"client_order_id": f.client_order_id} if hasattr(f, "client_order_id") else {})
        for f in findings
    ]
    return {"reason": reason, "count": len(items), "findings": items}


def app_status(app: TraderApp) -> dict[str, Any]:
    """The live part of the ``status`` RPC: IB, market data, book, store, reconciliation, risk."""
    session, book, writer = app.session, app.book, app.writer
    return {
        "ib": session.status()
        | {
            "configured_client_id": session.config.client_id,
            "connected": session.connected,
            "down_since": session.down_since,
        },
        "subscriptions": len(app.md.subscriptions()),
        "last_tick_age_s": None if app.last_tick_at is None else round(time.time() - app.last_tick_at, 3),
        "book": {
            "orders": len(book.orders),
            "working": len(book.working_orders()),
            "fills": len(book.positions),
            "open_positions": len(book.positions.positions(include_flat=False)),
            "strategies": book.positions.strategies(),
            "file": str(app.book_file.path),
            "saves": app.book_file.saves,
        },
        "store": {
            "uri": app.store_uri,
            "pending_writes": writer.pending if writer is not None else 0,
            "unstored_fills": app.journal.unconfirmed,
        },
        "reconcile": dict(app.reconciles),
        "risk": app.gate.stats(),
        "trading": app.risk.engine.status(time.time_ns())["trading"],
    }


def marks_of(app: TraderApp) -> dict[int, float]:
    """Marks by conId: IB's portfolio prices, overridden by the latest ticks."""
    out = {
        int(item.contract.conId): float(item.marketPrice)
        for item in app.session.ib.portfolio()
        if item.marketPrice and math.isfinite(item.marketPrice) and item.marketPrice > 0
    }
    out.update(app.marks)
    return out
