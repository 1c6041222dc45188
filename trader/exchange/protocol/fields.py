"""Frozen dataclasses shared by request decoding and response encoding.

Naming: data fields are **camelCase, exactly as in ib_async** (``Contract``, ``Order``,
``OrderState``, ``Execution``, ``ContractDetails`` ...) so the session can map them one to one;
module-level functions are snake_case.

Numbers follow TWS's own reading of the wire: a field ib_async defaults to UNSET (UNSET_DOUBLE,
UNSET_INTEGER or None) is ``T | None`` here and ``None`` means "not set" (sent as ``""``); a field
with a concrete default (0, False, -1) is a plain ``T`` and ``""`` reads as 0/False. Sizes and
quantities are ``Decimal`` (exact, as TWS >= 163); prices are ``float``. Sequences are tuples so
every dataclass is immutable and hashable; use ``dataclasses.replace`` to derive variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "ComboLegFields",
    "ContractFields",
    "DeltaNeutralContractFields",
    "ExecutionConditionFields",
    "MarginConditionFields",
    "OrderConditionFields",
    "OrderFields",
    "OrderStateFields",
    "PercentChangeConditionFields",
    "PriceConditionFields",
    "SoftDollarTierFields",
    "TagValue",
    "TimeConditionFields",
    "VolumeConditionFields",
    "format_tag_values",
    "parse_tag_values",
]

#: How TWS writes "not set" for the OrderState margin strings (Java's Double.MAX_VALUE).
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"


class TagValue(NamedTuple):
    tag: str
    value: str


def parse_tag_values(text: str) -> tuple[TagValue, ...]:
    """Split an options string as ib_async sends it (``"tag=value;tag2=value2;"``)."""
    out: list[TagValue] = []
    for item in text.split(";"):
        if item:
            tag, _, value = item.partition("=")
            out.append(TagValue(tag, value))
    return tuple(out)


def format_tag_values(items: tuple[TagValue, ...] | list[TagValue]) -> str:
    return "".join(f"{t.tag}={t.value};" for t in items)


@dataclass(frozen=True, slots=True)
class ComboLegFields:
    """A combo (BAG) leg. Market data / historical requests carry only the first four fields."""

    conId: int = 0
    ratio: int = 0
    action: str = ""
    exchange: str = ""
    openClose: int = 0
    shortSaleSlot: int = 0
    designatedLocation: str = ""
    exemptCode: int = -1


@dataclass(frozen=True, slots=True)
class DeltaNeutralContractFields:
    conId: int = 0
    delta: float = 0.0
    price: float = 0.0


@dataclass(frozen=True, slots=True)
class ContractFields:
    """Superset of the contract fields any request or response carries (ib_async ``Contract``)."""

    conId: int = 0
    symbol: str = ""
    secType: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primaryExchange: str = ""
    currency: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    includeExpired: bool = False
    secIdType: str = ""
    secId: str = ""
    description: str = ""
    issuerId: str = ""
    comboLegsDescrip: str = ""
    comboLegs: tuple[ComboLegFields, ...] = ()
    deltaNeutralContract: DeltaNeutralContractFields | None = None


@dataclass(frozen=True, slots=True)
class SoftDollarTierFields:
    name: str = ""
    val: str = ""
    displayName: str = ""


# Order conditions: the field order is the wire order (after condType), as in ib_async order.py.


@dataclass(frozen=True, slots=True)
class PriceConditionFields:
    condType: int = field(default=1, init=False)
    conjunction: str = "a"
    isMore: bool = True
    price: float = 0.0
    conId: int = 0
    exch: str = ""
    triggerMethod: int = 0


@dataclass(frozen=True, slots=True)
class TimeConditionFields:
    condType: int = field(default=3, init=False)
    conjunction: str = "a"
    isMore: bool = True
    time: str = ""


@dataclass(frozen=True, slots=True)
class MarginConditionFields:
    condType: int = field(default=4, init=False)
    conjunction: str = "a"
    isMore: bool = True
    percent: int = 0


@dataclass(frozen=True, slots=True)
class ExecutionConditionFields:
    condType: int = field(default=5, init=False)
    conjunction: str = "a"
    secType: str = ""
    exch: str = ""
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class VolumeConditionFields:
    condType: int = field(default=6, init=False)
    conjunction: str = "a"
    isMore: bool = True
    volume: int = 0
    conId: int = 0
    exch: str = ""


@dataclass(frozen=True, slots=True)
class PercentChangeConditionFields:
    condType: int = field(default=7, init=False)
    conjunction: str = "a"
    isMore: bool = True
    changePercent: float = 0.0
    conId: int = 0
    exch: str = ""


OrderConditionFields = (
    PriceConditionFields
    | TimeConditionFields
    | MarginConditionFields
    | ExecutionConditionFields
    | VolumeConditionFields
    | PercentChangeConditionFields
)


@dataclass(frozen=True, slots=True)
class OrderFields:
    """An order as placeOrder carries it, plus the fields only openOrder/completedOrder carry.

    Fields marked *out* are never sent by the client (decoded requests leave the default); the
    session fills them (``dataclasses.replace``) before echoing the order in openOrder /
    completedOrder. The order id is not here: it is ``PlaceOrder.orderId`` and an argument of
    ``encode_open_order``.
    """

    clientId: int = 0  # out
    permId: int = 0  # out
    action: str = ""
    totalQuantity: Decimal = Decimal(0)
    orderType: str = ""
    lmtPrice: float | None = None
    auxPrice: float | None = None
    tif: str = ""
    activeStartTime: str = ""
    activeStopTime: str = ""
    ocaGroup: str = ""
    ocaType: int = 0
    orderRef: str = ""
    transmit: bool = True
    parentId: int = 0
    blockOrder: bool = False
    sweepToFill: bool = False
    displaySize: int = 0
    triggerMethod: int = 0
    outsideRth: bool = False
    hidden: bool = False
    goodAfterTime: str = ""
    goodTillDate: str = ""
    rule80A: str = ""
    allOrNone: bool = False
    minQty: int | None = None
    percentOffset: float | None = None
    overridePercentageConstraints: bool = False
    trailStopPrice: float | None = None
    trailingPercent: float | None = None
    faGroup: str = ""
    faProfile: str = ""  # only sent below server version 177
    faMethod: str = ""
    faPercentage: str = ""
    designatedLocation: str = ""
    openClose: str = ""
    origin: int = 0
    shortSaleSlot: int = 0
    exemptCode: int = -1
    discretionaryAmt: float = 0.0
    eTradeOnly: bool = False
    firmQuoteOnly: bool = False
    nbboPriceCap: float | None = None
    optOutSmartRouting: bool = False
    auctionStrategy: int = 0
    startingPrice: float | None = None
    stockRefPrice: float | None = None
    delta: float | None = None
    stockRangeLower: float | None = None
    stockRangeUpper: float | None = None
    randomizePrice: bool = False
    randomizeSize: bool = False
    volatility: float | None = None
    volatilityType: int | None = None
    deltaNeutralOrderType: str = ""
    deltaNeutralAuxPrice: float | None = None
    deltaNeutralConId: int = 0
    deltaNeutralSettlingFirm: str = ""
    deltaNeutralClearingAccount: str = ""
    deltaNeutralClearingIntent: str = ""
    deltaNeutralOpenClose: str = ""
    deltaNeutralShortSale: bool = False
    deltaNeutralShortSaleSlot: int = 0
    deltaNeutralDesignatedLocation: str = ""
    continuousUpdate: bool = False
    referencePriceType: int | None = None
    basisPoints: float | None = None  # out
    basisPointsType: int | None = None  # out
    scaleInitLevelSize: int | None = None
    scaleSubsLevelSize: int | None = None
    scalePriceIncrement: float | None = None
    scalePriceAdjustValue: float | None = None
    scalePriceAdjustInterval: int | None = None
    scaleProfitOffset: float | None = None
    scaleAutoReset: bool = False
    scaleInitPosition: int | None = None
    scaleInitFillQty: int | None = None
    scaleRandomPercent: bool = False
    scaleTable: str = ""
    hedgeType: str = ""
    hedgeParam: str = ""
    account: str = ""
    settlingFirm: str = ""
    clearingAccount: str = ""
    clearingIntent: str = ""
    algoStrategy: str = ""
    algoParams: tuple[TagValue, ...] = ()
    smartComboRoutingParams: tuple[TagValue, ...] = ()
    algoId: str = ""
    whatIf: bool = False
    notHeld: bool = False
    solicited: bool = False
    modelCode: str = ""
    orderComboLegPrices: tuple[float | None, ...] = ()  # ib_async order.orderComboLegs[i].price
    orderMiscOptions: str = ""  # raw "tag=value;..." as sent; see parse_tag_values
    referenceContractId: int = 0
    peggedChangeAmount: float = 0.0
    isPeggedChangeAmountDecrease: bool = False
    referenceChangeAmount: float = 0.0
    referenceExchangeId: str = ""
    adjustedOrderType: str = ""
    triggerPrice: float | None = None
    adjustedStopPrice: float | None = None
    adjustedStopLimitPrice: float | None = None
    adjustedTrailingAmount: float | None = None
    adjustableTrailingUnit: int = 0
    lmtPriceOffset: float | None = None
    conditions: tuple[OrderConditionFields, ...] = ()
    conditionsCancelOrder: bool = False
    conditionsIgnoreRth: bool = False
    extOperator: str = ""
    softDollarTier: SoftDollarTierFields = SoftDollarTierFields()
    cashQty: float | None = None
    mifid2DecisionMaker: str = ""
    mifid2DecisionAlgo: str = ""
    mifid2ExecutionTrader: str = ""
    mifid2ExecutionAlgo: str = ""
    dontUseAutoPriceForHedge: bool = False
    isOmsContainer: bool = False
    discretionaryUpToLimitPrice: bool = False
    autoCancelDate: str = ""  # out
    filledQuantity: Decimal | None = None  # out
    refFuturesConId: int = 0  # out
    autoCancelParent: bool = False
    shareholder: str = ""  # out
    imbalanceOnly: bool = False  # out
    routeMarketableToBbo: bool = False  # out
    parentPermId: int = 0  # out
    usePriceMgmtAlgo: bool = False
    duration: int | None = None
    postToAts: int | None = None
    advancedErrorOverride: str = ""
    manualOrderTime: str = ""
    minTradeQty: int | None = None
    minCompeteSize: int | None = None
    competeAgainstBestOffset: float | None = None  # math.inf = "compete against best offset up to mid"
    midOffsetAtWhole: float | None = None
    midOffsetAtHalf: float | None = None


@dataclass(frozen=True, slots=True)
class OrderStateFields:
    """ib_async ``OrderState``. The margin fields are strings on the wire; "not set" is TWS's
    ``"1.7976931348623157E308"`` (the default here). ib_async's ``whatIfOrder`` only completes on
    an openOrder with ``whatIf`` set whose ``initMarginChange`` is a number other than that, and
    it calls ``float()`` on it, so never send ``""`` there."""

    status: str = ""
    initMarginBefore: str = UNSET_DOUBLE_TEXT
    maintMarginBefore: str = UNSET_DOUBLE_TEXT
    equityWithLoanBefore: str = UNSET_DOUBLE_TEXT
    initMarginChange: str = UNSET_DOUBLE_TEXT
    maintMarginChange: str = UNSET_DOUBLE_TEXT
    equityWithLoanChange: str = UNSET_DOUBLE_TEXT
    initMarginAfter: str = UNSET_DOUBLE_TEXT
    maintMarginAfter: str = UNSET_DOUBLE_TEXT
    equityWithLoanAfter: str = UNSET_DOUBLE_TEXT
    commission: float | None = None
    minCommission: float | None = None
    maxCommission: float | None = None
    commissionCurrency: str = ""
    warningText: str = ""
    completedTime: str = ""  # completedOrder only
    completedStatus: str = ""  # completedOrder only
