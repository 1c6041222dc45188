"""Request decoding against the real ib_async 2.1.0 ``Client``: every request method, every server
version 157..178. No sockets: the client's ``sendMsg`` is replaced by a list, the captured message
is framed with the client's own ``_prefix``, parsed by ``FrameParser`` and decoded with
``decode_request`` (which fails on any field left over or missing)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import (
    Bag,
    ComboLeg,
    Contract,
    DeltaNeutralContract,
    ExecutionCondition,
    ExecutionFilter,
    LimitOrder,
    MarginCondition,
    MarketOrder,
    Option,
    Order,
    OrderComboLeg,
    PercentChangeCondition,
    PriceCondition,
    ScannerSubscription,
    Stock,
    StopLimitOrder,
    StopOrder,
    TimeCondition,
    VolumeCondition,
)
from ib_async import (
    TagValue as IbTagValue,
)
from ib_async.client import Client
from ib_async.objects import SoftDollarTier, WshEventData

from trader.exchange.protocol import (
    UNSET_DOUBLE,
    UNSET_INTEGER,
    ApiRequest,
    CalculateImpliedVolatility,
    CalculateOptionPrice,
    CancelAccountSummary,
    CancelAccountUpdatesMulti,
    CancelCalculateImpliedVolatility,
    CancelCalculateOptionPrice,
    CancelFundamentalData,
    CancelHeadTimeStamp,
    CancelHistogramData,
    CancelHistoricalData,
    CancelMktData,
    CancelMktDepth,
    CancelNewsBulletins,
    CancelOrder,
    CancelPnL,
    CancelPnLSingle,
    CancelPositions,
    CancelPositionsMulti,
    CancelRealTimeBars,
    CancelScannerSubscription,
    CancelTickByTickData,
    CancelWshEventData,
    CancelWshMetaData,
    ComboLegFields,
    ContractFields,
    DeltaNeutralContractFields,
    ExecutionConditionFields,
    ExecutionFilterFields,
    ExerciseOptions,
    FrameParser,
    MarginConditionFields,
    OrderConditionFields,
    OrderFields,
    PercentChangeConditionFields,
    PlaceOrder,
    PriceConditionFields,
    QueryDisplayGroups,
    ReplaceFA,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqAllOpenOrders,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqCurrentTime,
    ReqExecutions,
    ReqFamilyCodes,
    ReqFundamentalData,
    ReqGlobalCancel,
    ReqHeadTimeStamp,
    ReqHistogramData,
    ReqHistoricalData,
    ReqHistoricalNews,
    ReqHistoricalTicks,
    ReqIds,
    ReqManagedAccts,
    ReqMarketDataType,
    ReqMarketRule,
    ReqMatchingSymbols,
    ReqMktData,
    ReqMktDepth,
    ReqMktDepthExchanges,
    ReqNewsArticle,
    ReqNewsBulletins,
    ReqNewsProviders,
    ReqOpenOrders,
    ReqPnL,
    ReqPnLSingle,
    ReqPositions,
    ReqPositionsMulti,
    ReqRealTimeBars,
    ReqScannerParameters,
    ReqScannerSubscription,
    ReqSecDefOptParams,
    ReqSmartComponents,
    ReqSoftDollarTiers,
    ReqTickByTickData,
    RequestDecodeError,
    RequestFA,
    ReqUserInfo,
    ReqWshEventData,
    ReqWshMetaData,
    ScannerSubscriptionFields,
    SetServerLogLevel,
    SoftDollarTierFields,
    StartApi,
    SubscribeToGroupEvents,
    TagValue,
    TimeConditionFields,
    UnsubscribeFromGroupEvents,
    UnsupportedRequest,
    UpdateDisplayGroup,
    VerifyAndAuthMessage,
    VerifyAndAuthRequest,
    VerifyMessage,
    VerifyRequest,
    VolumeConditionFields,
    decode_request,
    parse_tag_values,
)

ALL_VERSIONS = tuple(range(157, 179))
#: every version where some request changes shape, plus both ends
GATE_VERSIONS = (157, 165, 166, 168, 169, 170, 171, 172, 173, 175, 176, 177, 178)

FIELD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=8)


# --- capture -----------------------------------------------------------------------------------


def capture(version: int, call: Callable[[Any], object]) -> list[list[str]]:
    """Run ``call`` on a real, 'connected' ib_async Client and return the frames it sent."""
    client: Any = cast(Any, Client)(object())
    client._serverVersion = version
    client.connState = Client.CONNECTED
    sent: list[str] = []
    client.sendMsg = sent.append
    call(client)
    return FrameParser().feed(b"".join(client._prefix(m.encode()) for m in sent))


def roundtrip(version: int, call: Callable[[Any], object]) -> ApiRequest | UnsupportedRequest:
    frames = capture(version, call)
    assert len(frames) == 1
    return decode_request(frames[0], version)


def cf(c: Any, **extra: Any) -> ContractFields:
    """The ContractFields the 12 wire fields of an ib_async Contract decode to."""
    return ContractFields(
        conId=int(c.conId),
        symbol=c.symbol,
        secType=c.secType,
        lastTradeDateOrContractMonth=c.lastTradeDateOrContractMonth,
        strike=float(c.strike),
        right=c.right,
        multiplier=str(c.multiplier),
        exchange=c.exchange,
        primaryExchange=c.primaryExchange,
        currency=c.currency,
        localSymbol=c.localSymbol,
        tradingClass=c.tradingClass,
        **extra,
    )


def stk() -> Any:
    return Stock("AAPL", "SMART", "USD", primaryExchange="NASDAQ", conId=265598, localSymbol="AAPL")


def opt() -> Any:
    return Option(
        "SPY",
        "20261218",
        500.5,
        "C",
        "SMART",
        multiplier="100",
        currency="USD",
        tradingClass="SPY",
        localSymbol="SPY   261218C00500500",
        conId=7001,
    )


def bag() -> Any:
    return cast(Any, Bag)(
        symbol="SPY",
        exchange="SMART",
        currency="USD",
        comboLegs=[
            ComboLeg(conId=11, ratio=1, action="BUY", exchange="SMART"),
            ComboLeg(
                conId=12,
                ratio=2,
                action="SELL",
                exchange="CBOE",
                openClose=1,
                shortSaleSlot=2,
                designatedLocation="LOC",
                exemptCode=3,
            ),
        ],
    )


BAG_LEGS_SHORT = (ComboLegFields(11, 1, "BUY", "SMART"), ComboLegFields(12, 2, "SELL", "CBOE"))
BAG_LEGS_FULL = (
    ComboLegFields(11, 1, "BUY", "SMART", 0, 0, "", -1),
    ComboLegFields(12, 2, "SELL", "CBOE", 1, 2, "LOC", 3),
)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    args: Callable[[], tuple[Any, ...]]
    expected: Callable[[int], object]


def _c(
    method: str, args: Callable[[], tuple[Any, ...]], expected: Callable[[int], object], tag: str = ""
) -> Case:
    return Case(f"{method}{'-' + tag if tag else ''}", method, args, expected)


OPTS = [IbTagValue("a", "1"), IbTagValue("b", "x=y")]

CASES: list[Case] = [
    _c(
        "reqMktData",
        lambda: (5, stk(), "233,236", False, False, []),
        lambda v: ReqMktData(5, cf(stk()), "233,236", False, False, ""),
    ),
    _c(
        "reqMktData",
        lambda: (5, stk(), "", True, True, OPTS),
        lambda v: ReqMktData(5, cf(stk()), "", True, True, "a=1;b=x=y;"),
        "snapshot-options",
    ),
    _c(
        "reqMktData",
        lambda: (6, bag(), "", False, False, []),
        lambda v: ReqMktData(6, cf(bag(), comboLegs=BAG_LEGS_SHORT), "", False, False, ""),
        "bag",
    ),
    _c(
        "reqMktData",
        lambda: (
            7,
            Stock("X", "SMART", "USD", deltaNeutralContract=DeltaNeutralContract(9, 0.25, 101.5)),
            "",
            0,
            0,
            [],
        ),
        lambda v: ReqMktData(
            7,
            cf(Stock("X", "SMART", "USD"), deltaNeutralContract=DeltaNeutralContractFields(9, 0.25, 101.5)),
            "",
            False,
            False,
            "",
        ),
        "delta-neutral",
    ),
    _c("cancelMktData", lambda: (5,), lambda v: CancelMktData(5)),
    _c(
        "cancelOrder",
        lambda: (42, "20261121 10:00:00"),
        lambda v: CancelOrder(42, "20261121 10:00:00" if v >= 169 else ""),
    ),
    _c("cancelOrder", lambda: (42,), lambda v: CancelOrder(42, ""), "default"),
    _c("reqOpenOrders", lambda: (), lambda v: ReqOpenOrders()),
    _c("reqAccountUpdates", lambda: (True, "DU1"), lambda v: ReqAccountUpdates(True, "DU1")),
    _c(
        "reqExecutions",
        lambda: (3, ExecutionFilter(1, "DU1", "20261121 00:00:00", "AAPL", "STK", "SMART", "BUY")),
        lambda v: ReqExecutions(
            3, ExecutionFilterFields(1, "DU1", "20261121 00:00:00", "AAPL", "STK", "SMART", "BUY")
        ),
    ),
    _c(
        "reqExecutions",
        lambda: (4, ExecutionFilter()),
        lambda v: ReqExecutions(4, ExecutionFilterFields()),
        "empty",
    ),
    _c("reqIds", lambda: (1,), lambda v: ReqIds(1)),
    _c(
        "reqContractDetails",
        lambda: (
            4,
            Contract(
                secType="BOND", secIdType="ISIN", secId="US0378331005", includeExpired=True, issuerId="e1"
            ),
        ),
        lambda v: ReqContractDetails(
            4,
            cf(
                Contract(secType="BOND"),
                includeExpired=True,
                secIdType="ISIN",
                secId="US0378331005",
                issuerId="e1" if v >= 176 else "",
            ),
        ),
    ),
    _c("reqMktDepth", lambda: (6, stk(), 5, True, []), lambda v: ReqMktDepth(6, cf(stk()), 5, True, "")),
    _c("cancelMktDepth", lambda: (6, True), lambda v: CancelMktDepth(6, True)),
    _c("reqNewsBulletins", lambda: (True,), lambda v: ReqNewsBulletins(True)),
    _c("cancelNewsBulletins", lambda: (), lambda v: CancelNewsBulletins()),
    _c("setServerLogLevel", lambda: (3,), lambda v: SetServerLogLevel(3)),
    _c("reqAutoOpenOrders", lambda: (True,), lambda v: ReqAutoOpenOrders(True)),
    _c("reqAllOpenOrders", lambda: (), lambda v: ReqAllOpenOrders()),
    _c("reqManagedAccts", lambda: (), lambda v: ReqManagedAccts()),
    _c("requestFA", lambda: (1,), lambda v: RequestFA(1)),
    _c("replaceFA", lambda: (9, 1, "<xml/>"), lambda v: ReplaceFA(1, "<xml/>", 9)),
    _c(
        "reqHistoricalData",
        lambda: (8, stk(), "20261121 16:00:00 UTC", "1 D", "1 min", "TRADES", True, 1, False, []),
        lambda v: ReqHistoricalData(
            8, cf(stk()), "20261121 16:00:00 UTC", "1 min", "1 D", True, "TRADES", 1, False, ""
        ),
    ),
    _c(
        "reqHistoricalData",
        lambda: (9, bag(), "", "2 D", "1 hour", "MIDPOINT", 0, 2, True, OPTS),
        lambda v: ReqHistoricalData(
            9,
            cf(bag(), comboLegs=BAG_LEGS_SHORT),
            "",
            "1 hour",
            "2 D",
            False,
            "MIDPOINT",
            2,
            True,
            "a=1;b=x=y;",
        ),
        "bag-keep-up-to-date",
    ),
    _c(
        "exerciseOptions",
        lambda: (10, opt(), 1, 5, "DU1", 0),
        lambda v: ExerciseOptions(10, dataclasses.replace(cf(opt()), primaryExchange=""), 1, 5, "DU1", 0),
    ),
    _c(
        "reqScannerSubscription",
        lambda: (
            11,
            ScannerSubscription(
                numberOfRows=10, instrument="STK", locationCode="STK.US.MAJOR", scanCode="HOT", abovePrice=5.0
            ),
            [IbTagValue("o", "1")],
            [IbTagValue("f", "2")],
        ),
        lambda v: ReqScannerSubscription(
            11,
            ScannerSubscriptionFields(
                numberOfRows=10, instrument="STK", locationCode="STK.US.MAJOR", scanCode="HOT", abovePrice=5.0
            ),
            "f=2;",
            "o=1;",
        ),
    ),
    _c("cancelScannerSubscription", lambda: (11,), lambda v: CancelScannerSubscription(11)),
    _c("reqScannerParameters", lambda: (), lambda v: ReqScannerParameters()),
    _c("cancelHistoricalData", lambda: (8,), lambda v: CancelHistoricalData(8)),
    _c("reqCurrentTime", lambda: (), lambda v: ReqCurrentTime()),
    _c(
        "reqRealTimeBars",
        lambda: (12, stk(), 5, "MIDPOINT", False, []),
        lambda v: ReqRealTimeBars(12, cf(stk()), 5, "MIDPOINT", False, ""),
    ),
    _c("cancelRealTimeBars", lambda: (12,), lambda v: CancelRealTimeBars(12)),
    _c(
        "reqFundamentalData",
        lambda: (13, stk(), "ReportSnapshot", OPTS),
        lambda v: ReqFundamentalData(
            13,
            ContractFields(
                conId=265598,
                symbol="AAPL",
                secType="STK",
                exchange="SMART",
                primaryExchange="NASDAQ",
                currency="USD",
                localSymbol="AAPL",
            ),
            "ReportSnapshot",
            "a=1;b=x=y;",
        ),
    ),
    _c("cancelFundamentalData", lambda: (13,), lambda v: CancelFundamentalData(13)),
    _c(
        "calculateImpliedVolatility",
        lambda: (14, opt(), 5.5, 500.25, []),
        lambda v: CalculateImpliedVolatility(14, cf(opt()), 5.5, 500.25, ""),
    ),
    _c(
        "calculateOptionPrice",
        lambda: (15, opt(), 0.2, 500.0, OPTS),
        lambda v: CalculateOptionPrice(15, cf(opt()), 0.2, 500.0, "a=1;b=x=y;"),
    ),
    _c("cancelCalculateImpliedVolatility", lambda: (14,), lambda v: CancelCalculateImpliedVolatility(14)),
    _c("cancelCalculateOptionPrice", lambda: (15,), lambda v: CancelCalculateOptionPrice(15)),
    _c("reqGlobalCancel", lambda: (), lambda v: ReqGlobalCancel()),
    _c("reqMarketDataType", lambda: (3,), lambda v: ReqMarketDataType(3)),
    _c("reqPositions", lambda: (), lambda v: ReqPositions()),
    _c(
        "reqAccountSummary",
        lambda: (16, "All", "NetLiquidation,BuyingPower"),
        lambda v: ReqAccountSummary(16, "All", "NetLiquidation,BuyingPower"),
    ),
    _c("cancelAccountSummary", lambda: (16,), lambda v: CancelAccountSummary(16)),
    _c("cancelPositions", lambda: (), lambda v: CancelPositions()),
    _c("verifyRequest", lambda: ("name", "1.0"), lambda v: VerifyRequest("name", "1.0")),
    _c("verifyMessage", lambda: ("data",), lambda v: VerifyMessage("data")),
    _c("queryDisplayGroups", lambda: (17,), lambda v: QueryDisplayGroups(17)),
    _c("subscribeToGroupEvents", lambda: (17, 4), lambda v: SubscribeToGroupEvents(17, 4)),
    _c("updateDisplayGroup", lambda: (17, "8314@SMART"), lambda v: UpdateDisplayGroup(17, "8314@SMART")),
    _c("unsubscribeFromGroupEvents", lambda: (17,), lambda v: UnsubscribeFromGroupEvents(17)),
    _c("startApi", lambda: (), lambda v: StartApi(-1, "")),
    _c("verifyAndAuthRequest", lambda: ("n", "v", "k"), lambda v: VerifyAndAuthRequest("n", "v", "k")),
    _c("verifyAndAuthMessage", lambda: ("d", "r"), lambda v: VerifyAndAuthMessage("d", "r")),
    _c("reqPositionsMulti", lambda: (18, "DU1", "M"), lambda v: ReqPositionsMulti(18, "DU1", "M")),
    _c("cancelPositionsMulti", lambda: (18,), lambda v: CancelPositionsMulti(18)),
    _c(
        "reqAccountUpdatesMulti",
        lambda: (19, "DU1", "", False),
        lambda v: ReqAccountUpdatesMulti(19, "DU1", "", False),
    ),
    _c("cancelAccountUpdatesMulti", lambda: (19,), lambda v: CancelAccountUpdatesMulti(19)),
    _c(
        "reqSecDefOptParams",
        lambda: (20, "SPY", "", "STK", 756733),
        lambda v: ReqSecDefOptParams(20, "SPY", "", "STK", 756733),
    ),
    _c("reqSoftDollarTiers", lambda: (21,), lambda v: ReqSoftDollarTiers(21)),
    _c("reqFamilyCodes", lambda: (), lambda v: ReqFamilyCodes()),
    _c("reqMatchingSymbols", lambda: (22, "AAP"), lambda v: ReqMatchingSymbols(22, "AAP")),
    _c("reqMktDepthExchanges", lambda: (), lambda v: ReqMktDepthExchanges()),
    _c("reqSmartComponents", lambda: (23, "a6"), lambda v: ReqSmartComponents(23, "a6")),
    _c("reqNewsArticle", lambda: (24, "BZ", "BZ$1", []), lambda v: ReqNewsArticle(24, "BZ", "BZ$1", "")),
    _c("reqNewsProviders", lambda: (), lambda v: ReqNewsProviders()),
    _c(
        "reqHistoricalNews",
        lambda: (25, 8314, "BZ+FLY", "", "", 10, []),
        lambda v: ReqHistoricalNews(25, 8314, "BZ+FLY", "", "", 10, ""),
    ),
    _c(
        "reqHeadTimeStamp",
        lambda: (26, stk(), "TRADES", True, 1),
        lambda v: ReqHeadTimeStamp(26, cf(stk()), True, "TRADES", 1),
    ),
    _c(
        "reqHistogramData",
        lambda: (27, stk(), True, "3 days"),
        lambda v: ReqHistogramData(27, cf(stk()), True, "3 days"),
    ),
    _c("cancelHistogramData", lambda: (27,), lambda v: CancelHistogramData(27)),
    _c("cancelHeadTimeStamp", lambda: (26,), lambda v: CancelHeadTimeStamp(26)),
    _c("reqMarketRule", lambda: (26,), lambda v: ReqMarketRule(26)),
    _c("reqPnL", lambda: (28, "DU1", ""), lambda v: ReqPnL(28, "DU1", "")),
    _c("cancelPnL", lambda: (28,), lambda v: CancelPnL(28)),
    _c("reqPnLSingle", lambda: (29, "DU1", "", 265598), lambda v: ReqPnLSingle(29, "DU1", "", 265598)),
    _c("cancelPnLSingle", lambda: (29,), lambda v: CancelPnLSingle(29)),
    _c(
        "reqHistoricalTicks",
        lambda: (30, stk(), "20261121 09:30:00 UTC", "", 1000, "TRADES", True, False, []),
        lambda v: ReqHistoricalTicks(
            30, cf(stk()), "20261121 09:30:00 UTC", "", 1000, "TRADES", True, False, ""
        ),
    ),
    _c(
        "reqTickByTickData",
        lambda: (31, stk(), "AllLast", 0, False),
        lambda v: ReqTickByTickData(31, cf(stk()), "AllLast", 0, False),
    ),
    _c("cancelTickByTickData", lambda: (31,), lambda v: CancelTickByTickData(31)),
    _c("reqCompletedOrders", lambda: (False,), lambda v: ReqCompletedOrders(False)),
    _c("reqWshMetaData", lambda: (32,), lambda v: ReqWshMetaData(32)),
    _c("cancelWshMetaData", lambda: (32,), lambda v: CancelWshMetaData(32)),
    _c(
        "reqWshEventData",
        lambda: (33, WshEventData(8314, "{}", True, False, True, "20260101", "20261231", 10)),
        lambda v: ReqWshEventData(
            33,
            8314,
            *(("{}", True, False, True) if v >= 171 else ("", False, False, False)),
            *(("20260101", "20261231", 10) if v >= 173 else ("", "", None)),
        ),
    ),
    _c(
        "reqWshEventData",
        lambda: (34, WshEventData()),
        lambda v: ReqWshEventData(34, None),
        "unset",
    ),
    _c("cancelWshEventData", lambda: (33,), lambda v: CancelWshEventData(33)),
    _c("reqUserInfo", lambda: (34,), lambda v: ReqUserInfo(34)),
]


@pytest.mark.parametrize("version", GATE_VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_request_when_sent_by_ib_async_then_decodes_to_expected_dataclass(case: Case, version: int) -> None:
    decoded = roundtrip(version, lambda c: getattr(c, case.method)(*case.args()))
    assert decoded == case.expected(version)
    assert not isinstance(decoded, UnsupportedRequest)
    assert int(decoded.msgId) == int(capture(version, lambda c: getattr(c, case.method)(*case.args()))[0][0])


def test_request_cases_when_compared_with_client_methods_then_every_sending_method_covered() -> None:
    from tests.unit.test_exchange_framing import _client_message_ids

    covered = {c.method for c in CASES} | {"placeOrder"}
    assert set(_client_message_ids()) - covered == set()


# --- placeOrder: explicit orders --------------------------------------------------------------------

_KINDS = {f.name: str(f.type) for f in dataclasses.fields(OrderFields)}


def _names(text: str) -> list[str]:
    return text.split()


def _norm(kind: str, v: Any) -> Any:
    """The decoded value of ib_async field value ``v`` for an OrderFields field of type ``kind``."""
    if kind == "str":
        return "" if v is None else str(v)
    if kind == "bool":
        return bool(v)
    if kind == "int":
        return 0 if v is None or v == UNSET_INTEGER else int(v)
    if kind == "int | None":
        return None if v is None or v == UNSET_INTEGER else int(v)
    if kind == "float":
        return 0.0 if v is None or v == UNSET_DOUBLE else float(v)
    if kind == "float | None":
        return None if v is None or v == UNSET_DOUBLE else float(v)
    if kind == "Decimal":
        return Decimal(0) if v is None or v == UNSET_DOUBLE else Decimal(str(v))
    raise AssertionError(kind)


def _cond(c: Any) -> OrderConditionFields:
    kinds = {1: PriceConditionFields, 3: TimeConditionFields, 4: MarginConditionFields}
    kinds |= {5: ExecutionConditionFields, 6: VolumeConditionFields, 7: PercentChangeConditionFields}
    cls = kinds[c.condType]
    values = {}
    for f in dataclasses.fields(cls):
        if f.init:
            raw = getattr(c, f.name)
            values[f.name] = _norm(str(f.type), raw)
    result: OrderConditionFields = cls(**values)
    return result


ALWAYS = _names(
    "action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin orderRef "
    "transmit parentId blockOrder sweepToFill displaySize triggerMethod outsideRth hidden "
    "discretionaryAmt goodAfterTime goodTillDate faGroup faMethod faPercentage modelCode "
    "shortSaleSlot designatedLocation exemptCode ocaType rule80A settlingFirm allOrNone minQty "
    "percentOffset eTradeOnly firmQuoteOnly nbboPriceCap auctionStrategy startingPrice stockRefPrice "
    "delta stockRangeLower stockRangeUpper overridePercentageConstraints volatility volatilityType "
    "deltaNeutralOrderType deltaNeutralAuxPrice continuousUpdate referencePriceType trailStopPrice "
    "trailingPercent scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement scaleTable "
    "activeStartTime activeStopTime hedgeType optOutSmartRouting clearingAccount clearingIntent "
    "notHeld algoStrategy algoId whatIf solicited randomizeSize randomizePrice adjustedOrderType "
    "triggerPrice lmtPriceOffset adjustedStopPrice adjustedStopLimitPrice adjustedTrailingAmount "
    "adjustableTrailingUnit extOperator cashQty mifid2DecisionMaker mifid2DecisionAlgo "
    "mifid2ExecutionTrader mifid2ExecutionAlgo dontUseAutoPriceForHedge isOmsContainer "
    "discretionaryUpToLimitPrice usePriceMgmtAlgo"
)
DELTA_NEUTRAL = _names(
    "deltaNeutralConId deltaNeutralSettlingFirm deltaNeutralClearingAccount "
    "deltaNeutralClearingIntent deltaNeutralOpenClose deltaNeutralShortSale deltaNeutralShortSaleSlot "
    "deltaNeutralDesignatedLocation"
)
SCALE = _names(
    "scalePriceAdjustValue scalePriceAdjustInterval scaleProfitOffset scaleAutoReset "
    "scaleInitPosition scaleInitFillQty scaleRandomPercent"
)
PEG_BENCH = _names(
    "referenceContractId isPeggedChangeAmountDecrease peggedChangeAmount referenceChangeAmount "
    "referenceExchangeId"
)


def expected_place_order(order_id: int, c: Any, o: Any, v: int) -> PlaceOrder:
    """The PlaceOrder a correct decoder yields for what ``Client.placeOrder`` sent (``o`` after the
    call: the client itself blanks ``volatility`` for non-VOL orders)."""
    names = list(ALWAYS)
    if o.deltaNeutralOrderType:
        names += DELTA_NEUTRAL
    inc = o.scalePriceIncrement
    if 0 < inc < UNSET_DOUBLE:
        names += SCALE
    if o.hedgeType:
        names.append("hedgeParam")
    if o.orderType in {"PEG BENCH", "PEGBENCH"}:
        names += PEG_BENCH
    if o.conditions:
        names += ["conditionsIgnoreRth", "conditionsCancelOrder"]
    gates = [(v < 177, "faProfile"), (v >= 158, "duration"), (v >= 160, "postToAts")]
    gates += [
        (v >= 162, "autoCancelParent"),
        (v >= 166, "advancedErrorOverride"),
        (v >= 169, "manualOrderTime"),
    ]
    gates += [(v >= 170 and c.exchange == "IBKRATS", "minTradeQty")]
    peg_best = v >= 170 and o.orderType in {"PEG BEST", "PEGBEST"}
    gates += [(peg_best, "minCompeteSize"), (peg_best, "competeAgainstBestOffset")]
    mid = v >= 170 and (
        o.orderType in {"PEG MID", "PEGMID"} or (peg_best and o.competeAgainstBestOffset == math.inf)
    )
    gates += [(mid, "midOffsetAtWhole"), (mid, "midOffsetAtHalf")]
    names += [name for on, name in gates if on]
    values: dict[str, Any] = {n: _norm(_KINDS[n], getattr(o, n)) for n in names}
    if c.secType == "BAG":
        values["orderComboLegPrices"] = tuple(_norm("float | None", leg.price) for leg in o.orderComboLegs)
        values["smartComboRoutingParams"] = tuple(TagValue(t.tag, t.value) for t in o.smartComboRoutingParams)
    if o.algoStrategy:
        values["algoParams"] = tuple(TagValue(t.tag, t.value) for t in o.algoParams)
    values["orderMiscOptions"] = "".join(f"{t.tag}={t.value};" for t in o.orderMiscOptions)
    values["conditions"] = tuple(_cond(x) for x in o.conditions)
    values["softDollarTier"] = SoftDollarTierFields(o.softDollarTier.name, o.softDollarTier.val)
    extra: dict[str, Any] = {"secIdType": c.secIdType, "secId": c.secId}
    if c.secType == "BAG":
        extra["comboLegs"] = tuple(
            ComboLegFields(
                _norm("int", leg.conId),
                _norm("int", leg.ratio),
                leg.action,
                leg.exchange,
                _norm("int", leg.openClose),
                _norm("int", leg.shortSaleSlot),
                leg.designatedLocation,
                _norm("int", leg.exemptCode),
            )
            for leg in c.comboLegs
        )
    dnc = c.deltaNeutralContract
    if dnc:
        extra["deltaNeutralContract"] = DeltaNeutralContractFields(
            _norm("int", dnc.conId), _norm("float", dnc.delta), _norm("float", dnc.price)
        )
    return PlaceOrder(_norm("int", order_id), cf(c, **extra), OrderFields(**values))


def place(version: int, order_id: int, contract: Any, order: Any) -> PlaceOrder:
    decoded = roundtrip(version, lambda cl: cl.placeOrder(order_id, contract, order))
    assert isinstance(decoded, PlaceOrder)
    assert decoded == expected_place_order(order_id, contract, order, version)
    return decoded


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_place_order_when_market_order_with_defaults_then_unset_fields_decode_to_none(version: int) -> None:
    d = place(version, 1, stk(), MarketOrder("BUY", 100))
    o = d.order
    assert (o.action, o.totalQuantity, o.orderType) == ("BUY", Decimal(100), "MKT")
    assert o.lmtPrice is None and o.auxPrice is None and o.minQty is None and o.volatility is None
    assert o.transmit is True and o.openClose == "O" and o.exemptCode == -1
    assert o.duration is None and o.postToAts is None
    assert d.contract.conId == 265598 and d.contract.primaryExchange == "NASDAQ"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_place_order_when_bracket_with_oca_then_parent_child_and_oca_fields_decode(version: int) -> None:
    parent = LimitOrder(
        "BUY", 10, 150.25, orderId=100, transmit=False, orderRef="entry", outsideRth=True, tif="GTC"
    )
    take = LimitOrder("SELL", 10, 160.0, parentId=100, transmit=False, ocaGroup="OCA_1", ocaType=1)
    stop = StopOrder("SELL", 10, 140.5, parentId=100, transmit=True, ocaGroup="OCA_1", ocaType=1)
    p = place(version, 100, stk(), parent).order
    t = place(version, 101, stk(), take).order
    s = place(version, 102, stk(), stop).order
    assert (p.lmtPrice, p.transmit, p.orderRef, p.outsideRth, p.tif) == (150.25, False, "entry", True, "GTC")
    assert (t.parentId, t.ocaGroup, t.ocaType, t.lmtPrice) == (100, "OCA_1", 1, 160.0)
    assert (s.orderType, s.auxPrice, s.lmtPrice, s.transmit) == ("STP", 140.5, None, True)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    "order",
    [
        lambda: StopLimitOrder("SELL", cast(Any, Decimal("0.5")), 99.5, 100.0, whatIf=True),
        lambda: Order(
            action="SELL", totalQuantity=5, orderType="TRAIL", trailingPercent=1.5, trailStopPrice=98.0
        ),
        lambda: Order(
            action="BUY", totalQuantity=5, orderType="TRAIL LIMIT", auxPrice=0.5, lmtPriceOffset=0.1
        ),
        lambda: Order(
            action="BUY", totalQuantity=1, orderType="MOC", account="DU1", modelCode="m", cashQty=1000.0
        ),
        lambda: Order(action="BUY", totalQuantity=3, orderType="VOL", volatility=0.25, volatilityType=2),
        lambda: Order(action="BUY", totalQuantity=3, orderType="LMT", lmtPrice=1.0, volatility=0.25),
    ],
    ids=["stop-limit-whatif", "trail", "trail-limit", "moc-cashqty", "vol", "volatility-blanked"],
)
def test_place_order_when_order_type_varies_then_all_fields_roundtrip(
    version: int, order: Callable[[], Any]
) -> None:
    o = order()
    d = place(version, 7, stk(), o).order
    if o.orderType == "VOL":
        assert d.volatility == 0.25 and d.volatilityType == 2
    else:
        assert d.volatility is None  # ib_async blanks volatility of non-VOL orders itself


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_place_order_when_every_optional_group_present_then_every_field_roundtrips(version: int) -> None:
    order = Order(
        action="BUY",
        totalQuantity=2,
        orderType="PEG BENCH",
        lmtPrice=10.0,
        deltaNeutralOrderType="LMT",
        deltaNeutralConId=5,
        deltaNeutralSettlingFirm="F",
        deltaNeutralClearingAccount="CA",
        deltaNeutralClearingIntent="IB",
        deltaNeutralOpenClose="O",
        deltaNeutralShortSale=True,
        deltaNeutralShortSaleSlot=2,
        deltaNeutralDesignatedLocation="DL",
        scaleInitLevelSize=100,
        scaleSubsLevelSize=50,
        scalePriceIncrement=0.05,
        scalePriceAdjustValue=0.01,
        scalePriceAdjustInterval=60,
        scaleProfitOffset=0.2,
        scaleAutoReset=True,
        scaleInitPosition=10,
        scaleInitFillQty=5,
        scaleRandomPercent=True,
        hedgeType="D",
        hedgeParam="0.5",
        algoStrategy="Adaptive",
        algoParams=[IbTagValue("adaptivePriority", "Normal")],
        orderMiscOptions=[IbTagValue("x", "1")],
        referenceContractId=8314,
        isPeggedChangeAmountDecrease=True,
        peggedChangeAmount=0.5,
        referenceChangeAmount=0.25,
        referenceExchangeId="NYSE",
        conditions=[
            PriceCondition(price=101.5, conId=265598, exch="SMART", isMore=False, triggerMethod=2),
            TimeCondition(conjunction="o", time="20261121 15:00:00"),
            MarginCondition(percent=30),
            ExecutionCondition(secType="STK", exch="SMART", symbol="AAPL"),
            VolumeCondition(volume=10000, conId=265598, exch="SMART"),
            PercentChangeCondition(changePercent=2.5, conId=265598, exch="SMART"),
        ],
        conditionsIgnoreRth=True,
        conditionsCancelOrder=True,
        softDollarTier=SoftDollarTier("tier", "1", "Tier 1"),
        mifid2DecisionMaker="dm",
        advancedErrorOverride="8229",
        manualOrderTime="20261121 10:00:00",
        duration=60,
        postToAts=1,
        autoCancelParent=True,
    )
    contract = stk()
    contract.deltaNeutralContract = DeltaNeutralContract(9, 0.5, 100.0)
    d = place(version, 9, contract, order)
    assert len(d.order.conditions) == 6 and d.order.conditions[1] == TimeConditionFields(
        "o", True, "20261121 15:00:00"
    )
    assert d.order.algoParams == (TagValue("adaptivePriority", "Normal"),)
    assert parse_tag_values(d.order.orderMiscOptions) == (TagValue("x", "1"),)
    assert d.contract.deltaNeutralContract == DeltaNeutralContractFields(9, 0.5, 100.0)
    assert d.order.duration == (60 if version >= 158 else None)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_place_order_when_combo_bag_then_legs_leg_prices_and_routing_params_decode(version: int) -> None:
    order = LimitOrder(
        "BUY",
        1,
        2.5,
        orderComboLegs=[OrderComboLeg(1.0), OrderComboLeg()],
        smartComboRoutingParams=[IbTagValue("NonGuaranteed", "1")],
    )
    d = place(version, 3, bag(), order)
    assert d.contract.comboLegs == BAG_LEGS_FULL
    assert d.order.orderComboLegPrices == (1.0, None)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(
    ("order_type", "exchange", "compete"),
    [
        ("PEG BEST", "IBKRATS", math.inf),
        ("PEG BEST", "IBKRATS", 0.02),
        ("PEG MID", "IBKRATS", UNSET_DOUBLE),
        ("PEGMID", "SMART", UNSET_DOUBLE),
    ],
)
def test_place_order_when_peg_best_or_mid_then_version_gated_offsets_decode(
    version: int, order_type: str, exchange: str, compete: float
) -> None:
    order = Order(
        action="BUY",
        totalQuantity=100,
        orderType=order_type,
        minTradeQty=10,
        minCompeteSize=5,
        competeAgainstBestOffset=compete,
        midOffsetAtWhole=0.01,
        midOffsetAtHalf=0.005,
    )
    d = place(version, 4, Stock("AAPL", exchange, "USD"), order).order
    if version < 170:
        assert d.minTradeQty is None and d.midOffsetAtWhole is None
    else:
        assert d.minTradeQty == (10 if exchange == "IBKRATS" else None)
        if order_type == "PEG BEST":
            assert d.competeAgainstBestOffset == compete
            assert d.midOffsetAtWhole == (0.01 if compete == math.inf else None)
        else:
            assert (d.midOffsetAtWhole, d.midOffsetAtHalf) == (0.01, 0.005)


# --- placeOrder: generated ----------------------------------------------------------------------------

FLOATY = st.one_of(
    st.just(UNSET_DOUBLE),
    st.floats(allow_nan=False),
    st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False),
)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "str": FIELD_TEXT,
    "bool": st.booleans(),
    "int": INT32,
    "int | None": st.one_of(st.none(), st.just(UNSET_INTEGER), INT32),
    "float": FLOATY,
    "float | None": st.one_of(st.none(), FLOATY),
    "Decimal": st.one_of(
        st.floats(allow_nan=False), st.decimals(allow_nan=False, allow_infinity=False), st.integers(0, 10**6)
    ),
}
SPECIAL = {
    "orderType": st.sampled_from(
        [
            "MKT",
            "LMT",
            "STP",
            "STP LMT",
            "TRAIL",
            "VOL",
            "PEG BENCH",
            "PEGBENCH",
            "PEG BEST",
            "PEG MID",
            "REL",
        ]
    ),
    "deltaNeutralOrderType": st.sampled_from(["", "", "LMT", "MKT"]),
    "hedgeType": st.sampled_from(["", "", "D", "B", "F", "P"]),
    "algoStrategy": st.sampled_from(["", "", "Adaptive", "Vwap"]),
    "scalePriceIncrement": st.one_of(st.just(UNSET_DOUBLE), st.floats(allow_nan=False)),
    "competeAgainstBestOffset": st.one_of(
        st.just(UNSET_DOUBLE), st.just(math.inf), st.floats(allow_nan=False)
    ),
}
SKIP = {"clientId", "permId", "basisPoints", "basisPointsType", "autoCancelDate", "filledQuantity"}
SKIP |= {"refFuturesConId", "shareholder", "imbalanceOnly", "routeMarketableToBbo", "parentPermId"}
SKIP |= {"algoParams", "smartComboRoutingParams", "orderComboLegPrices", "orderMiscOptions", "conditions"}
SKIP |= {"softDollarTier"}
TAGS = st.lists(st.builds(IbTagValue, FIELD_TEXT, FIELD_TEXT), max_size=3)
CONDITIONS = st.lists(
    st.one_of(
        st.builds(
            PriceCondition,
            conjunction=st.sampled_from("ao"),
            isMore=st.booleans(),
            price=st.floats(allow_nan=False),
            conId=INT32,
            exch=FIELD_TEXT,
            triggerMethod=INT32,
        ),
        st.builds(TimeCondition, conjunction=st.sampled_from("ao"), isMore=st.booleans(), time=FIELD_TEXT),
        st.builds(MarginCondition, conjunction=st.sampled_from("ao"), isMore=st.booleans(), percent=INT32),
        st.builds(
            ExecutionCondition,
            conjunction=st.sampled_from("ao"),
            secType=FIELD_TEXT,
            exch=FIELD_TEXT,
            symbol=FIELD_TEXT,
        ),
        st.builds(
            VolumeCondition,
            conjunction=st.sampled_from("ao"),
            isMore=st.booleans(),
            volume=INT32,
            conId=INT32,
            exch=FIELD_TEXT,
        ),
        st.builds(
            PercentChangeCondition,
            conjunction=st.sampled_from("ao"),
            isMore=st.booleans(),
            changePercent=st.floats(allow_nan=False),
            conId=INT32,
            exch=FIELD_TEXT,
        ),
    ),
    max_size=3,
)


@st.composite
def ib_orders(draw: st.DrawFn) -> Any:
    kwargs: dict[str, Any] = {}
    for name, kind in _KINDS.items():
        if name in SKIP:
            continue
        kwargs[name] = draw(SPECIAL.get(name, KIND_STRATEGIES[kind]))
    kwargs["algoParams"] = draw(TAGS)
    kwargs["smartComboRoutingParams"] = draw(TAGS)
    kwargs["orderMiscOptions"] = draw(TAGS)
    kwargs["orderComboLegs"] = [OrderComboLeg(p) for p in draw(st.lists(FLOATY, max_size=3))]
    kwargs["conditions"] = draw(CONDITIONS)
    kwargs["softDollarTier"] = SoftDollarTier(draw(FIELD_TEXT), draw(FIELD_TEXT), draw(FIELD_TEXT))
    return Order(**kwargs)


@st.composite
def ib_contracts(draw: st.DrawFn) -> Any:
    legs = st.builds(
        ComboLeg,
        conId=INT32,
        ratio=INT32,
        action=FIELD_TEXT,
        exchange=FIELD_TEXT,
        openClose=INT32,
        shortSaleSlot=INT32,
        designatedLocation=FIELD_TEXT,
        exemptCode=INT32,
    )
    dnc = st.one_of(
        st.none(),
        st.builds(DeltaNeutralContract, INT32, st.floats(allow_nan=False), st.floats(allow_nan=False)),
    )
    return Contract(
        secType=draw(st.sampled_from(["STK", "OPT", "FUT", "BAG", "CASH"])),
        conId=draw(INT32),
        symbol=draw(FIELD_TEXT),
        lastTradeDateOrContractMonth=draw(FIELD_TEXT),
        strike=draw(st.floats(allow_nan=False, allow_infinity=False)),
        right=draw(FIELD_TEXT),
        multiplier=draw(FIELD_TEXT),
        exchange=draw(st.one_of(st.sampled_from(["SMART", "IBKRATS"]), FIELD_TEXT)),
        primaryExchange=draw(FIELD_TEXT),
        currency=draw(FIELD_TEXT),
        localSymbol=draw(FIELD_TEXT),
        tradingClass=draw(FIELD_TEXT),
        secIdType=draw(FIELD_TEXT),
        secId=draw(FIELD_TEXT),
        comboLegs=draw(st.lists(legs, max_size=3)),
        deltaNeutralContract=draw(dnc),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(ALL_VERSIONS),
    order_id=INT32,
    contract=ib_contracts(),
    order=ib_orders(),
)
def test_place_order_when_any_field_values_then_every_field_roundtrips_and_none_left_over(
    version: int, order_id: int, contract: Any, order: Any
) -> None:
    place(version, order_id, contract, order)


# --- errors ----------------------------------------------------------------------------------------


def _place_fields(version: int = 178) -> list[str]:
    return capture(version, lambda c: c.placeOrder(1, stk(), LimitOrder("BUY", 1, 1.0)))[0]


def test_place_order_when_field_missing_then_error_names_message_and_position() -> None:
    fields = _place_fields()[:-1]
    with pytest.raises(RequestDecodeError, match=r"PLACE_ORDER .*ran out of fields at position") as info:
        decode_request(fields, 178)
    assert info.value.name == "PLACE_ORDER" and info.value.msg_id == 3
    assert info.value.position == len(fields)


def test_place_order_when_decoded_at_wrong_version_then_leftover_or_missing_reported() -> None:
    fields_178 = _place_fields(178)
    with pytest.raises(RequestDecodeError, match="left over"):
        decode_request(fields_178, 157)  # 157 expects fewer fields (faProfile aside)
    with pytest.raises(RequestDecodeError, match="ran out"):
        decode_request(_place_fields(157), 178)


def test_place_order_when_extra_field_then_error_names_position() -> None:
    fields = [*_place_fields(), "junk"]
    with pytest.raises(RequestDecodeError, match="1 unexpected field") as info:
        decode_request(fields, 178)
    assert info.value.position == len(fields) - 1


def test_place_order_when_number_garbled_then_error_names_field() -> None:
    fields = _place_fields()
    fields[1] = "abc"
    with pytest.raises(RequestDecodeError, match=r"field 1 \('orderId'\) is not an integer"):
        decode_request(fields, 178)


def test_place_order_when_unknown_condition_type_then_error() -> None:
    order = LimitOrder("BUY", 1, 1.0, conditions=[TimeCondition(time="x")])
    fields = capture(178, lambda c: c.placeOrder(1, stk(), order))[0]
    fields[fields.index("3", 40)] = "2"  # condType 3 (time) -> 2 (undefined)
    with pytest.raises(RequestDecodeError, match="unknown order condition type 2"):
        decode_request(fields, 178)


@pytest.mark.parametrize("fields", [["999", "x", "y"], ["60"], ["26", "1"]])
def test_decode_request_when_id_not_sent_by_ib_async_then_unsupported_request(fields: list[str]) -> None:
    req = decode_request(fields, 178)
    assert isinstance(req, UnsupportedRequest)
    assert req.msgId == int(fields[0]) and req.fields == tuple(fields[1:])


def test_decode_request_when_request_fa_then_typed_not_unsupported() -> None:
    assert decode_request(["18", "1", "1"], 178) == RequestFA(1)


def test_decode_request_when_unknown_id_then_name_is_unknown_or_tws_name() -> None:
    assert decode_request(["999"], 178) == UnsupportedRequest(999, "UNKNOWN_999", ())
    assert decode_request(["60"], 178) == UnsupportedRequest(60, "UNKNOWN_60", ())


@pytest.mark.parametrize("fields", [[], ["x"], [""]])
def test_decode_request_when_message_id_missing_or_garbled_then_error(fields: list[str]) -> None:
    with pytest.raises(RequestDecodeError):
        decode_request(fields, 178)


def test_decode_request_when_simple_request_has_extra_field_then_error() -> None:
    with pytest.raises(RequestDecodeError, match=r"REQ_IDS .*left over"):
        decode_request(["8", "1", "1", "2"], 178)


def test_decode_request_when_bool_field_garbled_then_error() -> None:
    with pytest.raises(RequestDecodeError, match="boolean"):
        decode_request(["15", "1", "yes"], 178)


def test_decode_request_when_count_negative_then_error() -> None:
    fields = capture(178, lambda c: c.reqMktData(1, bag(), "", False, False, []))[0]
    assert fields[15] == "2"  # msg id, version, reqId, 12 contract fields, then the leg count
    fields[15] = "-1"
    with pytest.raises(RequestDecodeError, match="count"):
        decode_request(fields, 178)
