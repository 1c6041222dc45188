"""Server -> client order messages: openOrder, orderStatus, completedOrder, execDetails, commission.

``encode_open_order`` / ``encode_completed_order`` write every field ib_async 2.1.0's decoder reads
in its ``openOrder`` / ``completedOrder`` branches, in order, including the value-dependent groups
(delta-neutral, combo legs, scale, hedge, algo, PEG BENCH, conditions) and the version-gated tail:

* ``faProfile`` only below 177;
* openOrder: ``duration`` >= 158 (ib_async reads it from 159; at 158 it is an ignored trailing
  field, as with real TWS), ``postToAts`` >= 160, ``autoCancelParent`` >= 162;
* both: ``minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsetAtWhole,
  midOffsetAtHalf`` >= 170;
* execDetails: ``pendingPriceRevision`` >= 178.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from decimal import Decimal

from trader.exchange.protocol.fields import (
    ContractFields,
    OrderFields,
    OrderStateFields,
)
from trader.exchange.protocol.framing import UNSET_DOUBLE, FieldValue, encode_fields
from trader.exchange.protocol.ids import OutgoingMessageId as O
from trader.exchange.protocol.responses import Number, contract_fields, format_tws_time

__all__ = [
    "ExecutionFields",
    "encode_commission_report",
    "encode_completed_order",
    "encode_completed_orders_end",
    "encode_exec_details",
    "encode_exec_details_end",
    "encode_open_order",
    "encode_open_order_end",
    "encode_order_bound",
    "encode_order_status",
]


def encode_order_status(
    orderId: int,
    status: str,
    *,
    filled: Number,
    remaining: Number,
    avgFillPrice: Number,
    permId: int,
    parentId: int,
    lastFillPrice: Number,
    clientId: int,
    whyHeld: str = "",
    mktCapPrice: Number = 0.0,
) -> bytes:
    """ORDER_STATUS (no version field since server version 131).

    ib_async finds the trade by (clientId, orderId) - or by permId for clientId 0 / orderId 0 -
    so send the openOrder first; an orderStatus for an unknown trade is logged as an error.
    Status strings: PendingSubmit, PreSubmitted, Submitted, ApiCancelled, Cancelled, Filled,
    Inactive."""
    return encode_fields(
        O.ORDER_STATUS,
        orderId,
        status,
        filled,
        remaining,
        avgFillPrice,
        permId,
        parentId,
        lastFillPrice,
        clientId,
        whyHeld,
        mktCapPrice,
    )


def _combo_legs(c: ContractFields) -> list[FieldValue]:
    out: list[FieldValue] = [len(c.comboLegs)]
    for leg in c.comboLegs:
        out += [
            leg.conId,
            leg.ratio,
            leg.action,
            leg.exchange,
            leg.openClose,
            leg.shortSaleSlot,
            leg.designatedLocation,
            leg.exemptCode,
        ]
    return out


def _order_combo_and_smart_params(o: OrderFields) -> list[FieldValue]:
    out: list[FieldValue] = [len(o.orderComboLegPrices), *o.orderComboLegPrices]
    out.append(len(o.smartComboRoutingParams))
    for tv in o.smartComboRoutingParams:
        out += [tv.tag, tv.value]
    return out


def _scale(o: OrderFields) -> list[FieldValue]:
    out: list[FieldValue] = [o.scaleInitLevelSize, o.scaleSubsLevelSize, o.scalePriceIncrement]
    inc = o.scalePriceIncrement
    if inc is not None and 0 < inc < UNSET_DOUBLE:
        out += [
            o.scalePriceAdjustValue,
            o.scalePriceAdjustInterval,
            o.scaleProfitOffset,
            o.scaleAutoReset,
            o.scaleInitPosition,
            o.scaleInitFillQty,
            o.scaleRandomPercent,
        ]
    out.append(o.hedgeType)
    if o.hedgeType:
        out.append(o.hedgeParam)
    return out


def _delta_neutral_contract(c: ContractFields) -> list[FieldValue]:
    dnc = c.deltaNeutralContract
    if dnc is None:
        return [False]
    return [True, dnc.conId, dnc.delta, dnc.price]


def _algo(o: OrderFields) -> list[FieldValue]:
    out: list[FieldValue] = [o.algoStrategy]
    if o.algoStrategy:
        out.append(len(o.algoParams))
        for tv in o.algoParams:
            out += [tv.tag, tv.value]
    return out


def _peg_bench(o: OrderFields) -> list[FieldValue]:
    if o.orderType not in {"PEG BENCH", "PEGBENCH"}:
        return []
    return [
        o.referenceContractId,
        o.isPeggedChangeAmountDecrease,
        o.peggedChangeAmount,
        o.referenceChangeAmount,
        o.referenceExchangeId,
    ]


def _conditions(o: OrderFields) -> list[FieldValue]:
    out: list[FieldValue] = [len(o.conditions)]
    for cond in o.conditions:
        out += [getattr(cond, f.name) for f in dc_fields(cond)]  # condType first, then wire order
    if o.conditions:
        out += [o.conditionsIgnoreRth, o.conditionsCancelOrder]
    return out


def _peg_best_mid(o: OrderFields) -> list[FieldValue]:
    return [
        o.minTradeQty,
        o.minCompeteSize,
        o.competeAgainstBestOffset,
        o.midOffsetAtWhole,
        o.midOffsetAtHalf,
    ]


def _fa(o: OrderFields, server_version: int) -> list[FieldValue]:
    out: list[FieldValue] = [o.faGroup, o.faMethod, o.faPercentage]
    if server_version < 177:
        out.append(o.faProfile)
    return out


def encode_open_order(
    orderId: int,
    contract: ContractFields,
    order: OrderFields,
    orderState: OrderStateFields,
    *,
    server_version: int,
) -> bytes:
    """OPEN_ORDER. ``order.clientId`` / ``order.permId`` identify the order to ib_async (set them
    with ``dataclasses.replace`` on the decoded PlaceOrder's order). For a whatIf order, answer
    with ``order.whatIf=True`` and numeric margin strings in ``orderState``."""
    c, o, st = contract, order, orderState
    f: list[FieldValue] = [O.OPEN_ORDER, orderId, *contract_fields(c)]
    f += [o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.auxPrice, o.tif, o.ocaGroup]
    f += [o.account, o.openClose, o.origin, o.orderRef, o.clientId, o.permId, o.outsideRth]
    f += [o.hidden, o.discretionaryAmt, o.goodAfterTime, "", *_fa(o, server_version)]
    f += [o.modelCode, o.goodTillDate, o.rule80A, o.percentOffset, o.settlingFirm]
    f += [o.shortSaleSlot, o.designatedLocation, o.exemptCode, o.auctionStrategy]
    f += [o.startingPrice, o.stockRefPrice, o.delta, o.stockRangeLower, o.stockRangeUpper]
    f += [o.displaySize, o.blockOrder, o.sweepToFill, o.allOrNone, o.minQty, o.ocaType]
    f += [o.eTradeOnly, o.firmQuoteOnly, o.nbboPriceCap, o.parentId, o.triggerMethod]
    f += [o.volatility, o.volatilityType, o.deltaNeutralOrderType, o.deltaNeutralAuxPrice]
    if o.deltaNeutralOrderType:
        f += [
            o.deltaNeutralConId,
            o.deltaNeutralSettlingFirm,
            o.deltaNeutralClearingAccount,
            o.deltaNeutralClearingIntent,
            o.deltaNeutralOpenClose,
            o.deltaNeutralShortSale,
            o.deltaNeutralShortSaleSlot,
            o.deltaNeutralDesignatedLocation,
        ]
    f += [o.continuousUpdate, o.referencePriceType, o.trailStopPrice, o.trailingPercent]
    f += [o.basisPoints, o.basisPointsType, c.comboLegsDescrip]
    f += _combo_legs(c) + _order_combo_and_smart_params(o) + _scale(o)
    f += [o.optOutSmartRouting, o.clearingAccount, o.clearingIntent, o.notHeld]
    f += _delta_neutral_contract(c) + _algo(o)
    f += [o.solicited, o.whatIf, st.status]
    f += [st.initMarginBefore, st.maintMarginBefore, st.equityWithLoanBefore]
    f += [st.initMarginChange, st.maintMarginChange, st.equityWithLoanChange]
    f += [st.initMarginAfter, st.maintMarginAfter, st.equityWithLoanAfter]
    f += [st.commission, st.minCommission, st.maxCommission, st.commissionCurrency]
    f += [st.warningText, o.randomizeSize, o.randomizePrice]
    f += _peg_bench(o) + _conditions(o)
    f += [o.adjustedOrderType, o.triggerPrice, o.trailStopPrice, o.lmtPriceOffset]
    f += [o.adjustedStopPrice, o.adjustedStopLimitPrice, o.adjustedTrailingAmount]
    f += [o.adjustableTrailingUnit]
    f += [o.softDollarTier.name, o.softDollarTier.val, o.softDollarTier.displayName]
    f += [o.cashQty, o.dontUseAutoPriceForHedge, o.isOmsContainer]
    f += [o.discretionaryUpToLimitPrice, o.usePriceMgmtAlgo]
    if server_version >= 158:
        f.append(o.duration)
    if server_version >= 160:
        f.append(o.postToAts)
    if server_version >= 162:
        f.append(o.autoCancelParent)
    if server_version >= 170:
        f += _peg_best_mid(o)
    return encode_fields(*f)


def encode_open_order_end() -> bytes:
    """OPEN_ORDER_END: completes ib_async's reqOpenOrders / reqAllOpenOrders."""
    return encode_fields(O.OPEN_ORDER_END, 1)


def encode_completed_order(
    contract: ContractFields,
    order: OrderFields,
    orderState: OrderStateFields,
    *,
    server_version: int,
) -> bytes:
    """COMPLETED_ORDER (reqCompletedOrders): no order id / client id; ``order.permId`` identifies
    it, ``orderState.status`` / ``completedTime`` / ``completedStatus`` describe the outcome."""
    c, o, st = contract, order, orderState
    f: list[FieldValue] = [O.COMPLETED_ORDER, *contract_fields(c)]
    f += [o.action, o.totalQuantity, o.orderType, o.lmtPrice, o.auxPrice, o.tif, o.ocaGroup]
    f += [o.account, o.openClose, o.origin, o.orderRef, o.permId, o.outsideRth, o.hidden]
    f += [o.discretionaryAmt, o.goodAfterTime, *_fa(o, server_version)]
    f += [o.modelCode, o.goodTillDate, o.rule80A, o.percentOffset, o.settlingFirm]
    f += [o.shortSaleSlot, o.designatedLocation, o.exemptCode]
    f += [o.startingPrice, o.stockRefPrice, o.delta, o.stockRangeLower, o.stockRangeUpper]
    f += [o.displaySize, o.sweepToFill, o.allOrNone, o.minQty, o.ocaType, o.triggerMethod]
    f += [o.volatility, o.volatilityType, o.deltaNeutralOrderType, o.deltaNeutralAuxPrice]
    if o.deltaNeutralOrderType:
        f += [
            o.deltaNeutralConId,
            o.deltaNeutralShortSale,
            o.deltaNeutralShortSaleSlot,
            o.deltaNeutralDesignatedLocation,
        ]
    f += [o.continuousUpdate, o.referencePriceType, o.trailStopPrice, o.trailingPercent]
    f += [c.comboLegsDescrip]
    f += _combo_legs(c) + _order_combo_and_smart_params(o) + _scale(o)
    f += [o.clearingAccount, o.clearingIntent, o.notHeld]
    f += _delta_neutral_contract(c) + _algo(o)
    f += [o.solicited, st.status, o.randomizeSize, o.randomizePrice]
    f += _peg_bench(o) + _conditions(o)
    f += [o.trailStopPrice, o.lmtPriceOffset, o.cashQty, o.dontUseAutoPriceForHedge]
    f += [o.isOmsContainer, o.autoCancelDate, o.filledQuantity, o.refFuturesConId]
    f += [o.autoCancelParent, o.shareholder, o.imbalanceOnly, o.routeMarketableToBbo]
    f += [o.parentPermId, st.completedTime, st.completedStatus]
    if server_version >= 170:
        f += _peg_best_mid(o)
    return encode_fields(*f)


def encode_completed_orders_end() -> bytes:
    return encode_fields(O.COMPLETED_ORDERS_END)


@dataclass(frozen=True, slots=True)
class ExecutionFields:
    """ib_async ``Execution``. ``time``: an aware datetime (sent as ``format_tws_time``) or a
    ready TWS string. ``side`` is ``"BOT"`` / ``"SLD"``; ``lastLiquidity`` 1 added, 2 removed."""

    execId: str
    time: dt.datetime | str
    acctNumber: str
    exchange: str
    side: str
    shares: Decimal | float
    price: float
    permId: int
    clientId: int
    orderId: int
    liquidation: int = 0
    cumQty: Decimal | float = Decimal(0)
    avgPrice: float = 0.0
    orderRef: str = ""
    evRule: str = ""
    evMultiplier: float | None = None
    modelCode: str = ""
    lastLiquidity: int = 0
    pendingPriceRevision: bool = False  # on the wire from server version 178


def encode_exec_details(
    reqId: int, contract: ContractFields, execution: ExecutionFields, *, server_version: int
) -> bytes:
    """EXECUTION_DATA. ``reqId`` is the reqExecutions request id, or -1 for a live fill.
    Follow each with :func:`encode_commission_report` for the same ``execId``."""
    e = execution
    when = e.time if isinstance(e.time, str) else format_tws_time(e.time)
    f: list[FieldValue] = [O.EXECUTION_DATA, reqId, e.orderId, *contract_fields(contract)]
    f += [e.execId, when, e.acctNumber, e.exchange, e.side, e.shares, e.price, e.permId]
    f += [e.clientId, e.liquidation, e.cumQty, e.avgPrice, e.orderRef, e.evRule]
    f += [e.evMultiplier, e.modelCode, e.lastLiquidity]
    if server_version >= 178:
        f.append(e.pendingPriceRevision)
    return encode_fields(*f)


def encode_exec_details_end(reqId: int) -> bytes:
    return encode_fields(O.EXECUTION_DATA_END, 1, reqId)


def encode_commission_report(
    execId: str,
    commission: Number,
    currency: str,
    *,
    realizedPNL: Number | None = None,
    yield_: Number | None = None,
    yieldRedemptionDate: int = 0,
) -> bytes:
    """COMMISSION_REPORT. ``None`` realizedPNL / yield are sent as UNSET_DOUBLE, as TWS does for
    an opening fill (ib_async turns them into 0.0)."""
    return encode_fields(
        O.COMMISSION_REPORT,
        1,
        execId,
        commission,
        currency,
        UNSET_DOUBLE if realizedPNL is None else realizedPNL,
        UNSET_DOUBLE if yield_ is None else yield_,
        yieldRedemptionDate,
        make_empty=False,
    )


def encode_order_bound(permId: int, clientId: int, orderId: int) -> bytes:
    """ORDER_BOUND: binds a manual (TWS) order to an API client/order id (reqAutoOpenOrders)."""
    return encode_fields(O.ORDER_BOUND, permId, clientId, orderId)
