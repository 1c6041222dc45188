"""Server -> client market data, historical data and contract data messages.

Version-gated here: CONTRACT_DATA (below 164 a version field and ``mdSizeMultiplier``; exactly 163
one size field; from 164 ``minSize, sizeIncrement, suggestedSizeIncrement``) and SYMBOL_SAMPLES
(``description, issuerId`` per contract from 176). HISTORICAL_DATA carries its own end (start/end
strings) at every version up to 178; there is no separate HISTORICAL_DATA_END message before 196.

Tick types (TWS): 1 bid, 2 ask, 4 last, 6 high, 7 low, 9 close, 14 open (prices); 0 bid size,
3 ask size, 5 last size, 8 volume (sizes); 45 last timestamp (string); 49 halted (generic);
66..76 delayed equivalents. ib_async reads a TICK_PRICE's size too (``priceSizeTick``), so no
separate TICK_SIZE is needed for bid/ask/last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from trader.exchange.protocol.fields import ContractFields, TagValue
from trader.exchange.protocol.framing import FieldValue, encode_fields
from trader.exchange.protocol.ids import OutgoingMessageId as O
from trader.exchange.protocol.responses import Number

__all__ = [
    "BarFields",
    "ContractDescriptionFields",
    "ContractDetailsFields",
    "HistoricalTickBidAskFields",
    "HistoricalTickFields",
    "HistoricalTickLastFields",
    "encode_contract_details",
    "encode_contract_details_end",
    "encode_head_timestamp",
    "encode_historical_data",
    "encode_historical_data_update",
    "encode_historical_schedule",
    "encode_historical_ticks",
    "encode_historical_ticks_bid_ask",
    "encode_historical_ticks_last",
    "encode_market_data_type",
    "encode_market_rule",
    "encode_mkt_depth_exchanges",
    "encode_real_time_bar",
    "encode_sec_def_opt_params",
    "encode_sec_def_opt_params_end",
    "encode_smart_components",
    "encode_symbol_samples",
    "encode_tick_by_tick_all_last",
    "encode_tick_by_tick_bid_ask",
    "encode_tick_by_tick_mid_point",
    "encode_tick_generic",
    "encode_tick_option_computation",
    "encode_tick_price",
    "encode_tick_req_params",
    "encode_tick_size",
    "encode_tick_snapshot_end",
    "encode_tick_string",
    "encode_update_mkt_depth",
    "encode_update_mkt_depth_l2",
]


# --- ticks ---------------------------------------------------------------------------------------


def encode_tick_price(
    reqId: int,
    tickType: int,
    price: Number,
    size: Number = 0,
    *,
    canAutoExecute: bool = False,
    pastLimit: bool = False,
    preOpen: bool = False,
) -> bytes:
    """TICK_PRICE (version 6) with its size and attribute mask. ib_async treats a bid/ask with
    size 0 as "no quote" (price replaced by its default empty price)."""
    mask = int(canAutoExecute) | int(pastLimit) << 1 | int(preOpen) << 2
    return encode_fields(O.TICK_PRICE, 6, reqId, tickType, price, size, mask)


def encode_tick_size(reqId: int, tickType: int, size: Number) -> bytes:
    return encode_fields(O.TICK_SIZE, 6, reqId, tickType, size)


def encode_tick_string(reqId: int, tickType: int, value: str) -> bytes:
    """TICK_STRING, e.g. tick 45 (last timestamp, epoch seconds) or 48 (RTVolume)."""
    return encode_fields(O.TICK_STRING, 6, reqId, tickType, value)


def encode_tick_generic(reqId: int, tickType: int, value: Number) -> bytes:
    return encode_fields(O.TICK_GENERIC, 6, reqId, tickType, value)


def encode_tick_snapshot_end(reqId: int) -> bytes:
    return encode_fields(O.TICK_SNAPSHOT_END, 1, reqId)


def encode_market_data_type(reqId: int, marketDataType: int) -> bytes:
    """MARKET_DATA_TYPE: 1 live, 2 frozen, 3 delayed, 4 delayed-frozen (sent before the ticks)."""
    return encode_fields(O.MARKET_DATA_TYPE, 1, reqId, marketDataType)


def encode_tick_req_params(reqId: int, minTick: float, bboExchange: str, snapshotPermissions: int) -> bytes:
    return encode_fields(O.TICK_REQ_PARAMS, reqId, minTick, bboExchange, snapshotPermissions)


def encode_tick_option_computation(
    reqId: int,
    tickType: int,
    tickAttrib: int,
    *,
    impliedVol: float | None,
    delta: float | None,
    optPrice: float | None,
    pvDividend: float | None,
    gamma: float | None,
    vega: float | None,
    theta: float | None,
    undPrice: float | None,
) -> bytes:
    """TICK_OPTION_COMPUTATION (no version field from 156). ``None`` means "not computed" and is
    sent as TWS does: -1 for impliedVol, optPrice, pvDividend, undPrice; -2 for the greeks
    (ib_async maps those back to None)."""
    values: list[FieldValue] = [
        -1.0 if impliedVol is None else impliedVol,
        -2.0 if delta is None else delta,
        -1.0 if optPrice is None else optPrice,
        -1.0 if pvDividend is None else pvDividend,
        -2.0 if gamma is None else gamma,
        -2.0 if vega is None else vega,
        -2.0 if theta is None else theta,
        -1.0 if undPrice is None else undPrice,
    ]
    return encode_fields(O.TICK_OPTION_COMPUTATION, reqId, tickType, tickAttrib, *values)


def encode_tick_by_tick_all_last(
    reqId: int,
    tickType: int,
    time: int,
    price: Number,
    size: Number,
    *,
    exchange: str = "",
    specialConditions: str = "",
    pastLimit: bool = False,
    unreported: bool = False,
) -> bytes:
    """TICK_BY_TICK for "Last" (tickType 1) or "AllLast" (2); ``time`` in epoch seconds."""
    if tickType not in (1, 2):
        raise ValueError(f"Last/AllLast tick-by-tick type must be 1 or 2, not {tickType}")
    mask = int(pastLimit) | int(unreported) << 1
    return encode_fields(
        O.TICK_BY_TICK, reqId, tickType, time, price, size, mask, exchange, specialConditions
    )


def encode_tick_by_tick_bid_ask(
    reqId: int,
    time: int,
    *,
    bidPrice: Number,
    askPrice: Number,
    bidSize: Number,
    askSize: Number,
    bidPastLow: bool = False,
    askPastHigh: bool = False,
) -> bytes:
    mask = int(bidPastLow) | int(askPastHigh) << 1
    return encode_fields(O.TICK_BY_TICK, reqId, 3, time, bidPrice, askPrice, bidSize, askSize, mask)


def encode_tick_by_tick_mid_point(reqId: int, time: int, midPoint: Number) -> bytes:
    return encode_fields(O.TICK_BY_TICK, reqId, 4, time, midPoint)


def encode_update_mkt_depth(
    reqId: int, position: int, *, operation: int, side: int, price: Number, size: Number
) -> bytes:
    """MARKET_DEPTH: operation 0 insert, 1 update, 2 delete; side 0 ask, 1 bid."""
    return encode_fields(O.MARKET_DEPTH, 1, reqId, position, operation, side, price, size)


def encode_update_mkt_depth_l2(
    reqId: int,
    position: int,
    *,
    marketMaker: str,
    operation: int,
    side: int,
    price: Number,
    size: Number,
    isSmartDepth: bool,
) -> bytes:
    return encode_fields(
        O.MARKET_DEPTH_L2, 1, reqId, position, marketMaker, operation, side, price, size, isSmartDepth
    )


# --- bars and historical ---------------------------------------------------------------------------


def encode_real_time_bar(
    reqId: int,
    time: int,
    *,
    open_: Number,
    high: Number,
    low: Number,
    close: Number,
    volume: Number,
    wap: Number,
    count: int,
) -> bytes:
    """REAL_TIME_BARS (one 5-second bar); ``time`` is the bar start in epoch seconds."""
    return encode_fields(O.REAL_TIME_BARS, 3, reqId, time, open_, high, low, close, volume, wap, count)


@dataclass(frozen=True, slots=True)
class BarFields:
    """One historical bar. ``date``: ``"20261121"`` for daily bars; for intraday
    ``"20261121 09:30:00 US/Eastern"`` (formatDate=1, see ``format_tws_time``) or epoch seconds
    as a string (formatDate=2)."""

    date: str
    open: Number
    high: Number
    low: Number
    close: Number
    volume: Number
    average: Number
    barCount: int


def encode_historical_data(
    reqId: int, bars: Sequence[BarFields], startDateStr: str, endDateStr: str
) -> bytes:
    """HISTORICAL_DATA: all bars plus the end marker in one message (ib_async calls
    historicalData per bar and then historicalDataEnd)."""
    f: list[FieldValue] = [O.HISTORICAL_DATA, reqId, startDateStr, endDateStr, len(bars)]
    for b in bars:
        f += [b.date, b.open, b.high, b.low, b.close, b.volume, b.average, b.barCount]
    return encode_fields(*f)


def encode_historical_data_update(reqId: int, bar: BarFields) -> bytes:
    """HISTORICAL_DATA_UPDATE (keepUpToDate=True): the current bar; note the field order."""
    b = bar
    return encode_fields(
        O.HISTORICAL_DATA_UPDATE,
        reqId,
        b.barCount,
        b.date,
        b.open,
        b.close,
        b.high,
        b.low,
        b.average,
        b.volume,
    )


def encode_head_timestamp(reqId: int, headTimestamp: str) -> bytes:
    """HEAD_TIMESTAMP: ``"20200102 09:30:00 US/Eastern"``, ``"20200102"`` or epoch seconds."""
    return encode_fields(O.HEAD_TIMESTAMP, reqId, headTimestamp)


def encode_historical_schedule(
    reqId: int,
    startDateTime: str,
    endDateTime: str,
    timeZone: str,
    sessions: Sequence[tuple[str, str, str]],
) -> bytes:
    """HISTORICAL_SCHEDULE (reqHistoricalData whatToShow="SCHEDULE"): (start, end, refDate)."""
    flat = [v for s in sessions for v in s]
    return encode_fields(
        O.HISTORICAL_SCHEDULE, reqId, startDateTime, endDateTime, timeZone, len(sessions), *flat
    )


@dataclass(frozen=True, slots=True)
class HistoricalTickFields:
    time: int
    price: Number
    size: Number


@dataclass(frozen=True, slots=True)
class HistoricalTickBidAskFields:
    time: int
    priceBid: Number
    priceAsk: Number
    sizeBid: Number
    sizeAsk: Number
    askPastHigh: bool = False
    bidPastLow: bool = False


@dataclass(frozen=True, slots=True)
class HistoricalTickLastFields:
    time: int
    price: Number
    size: Number
    exchange: str = ""
    specialConditions: str = ""
    pastLimit: bool = False
    unreported: bool = False


def encode_historical_ticks(reqId: int, ticks: Sequence[HistoricalTickFields], done: bool) -> bytes:
    """HISTORICAL_TICKS (whatToShow MIDPOINT)."""
    f: list[FieldValue] = [O.HISTORICAL_TICKS, reqId, len(ticks)]
    for t in ticks:
        f += [t.time, 0, t.price, t.size]
    return encode_fields(*f, done)


def encode_historical_ticks_bid_ask(
    reqId: int, ticks: Sequence[HistoricalTickBidAskFields], done: bool
) -> bytes:
    f: list[FieldValue] = [O.HISTORICAL_TICKS_BID_ASK, reqId, len(ticks)]
    for t in ticks:
        mask = int(t.askPastHigh) | int(t.bidPastLow) << 1
        f += [t.time, mask, t.priceBid, t.priceAsk, t.sizeBid, t.sizeAsk]
    return encode_fields(*f, done)


def encode_historical_ticks_last(reqId: int, ticks: Sequence[HistoricalTickLastFields], done: bool) -> bytes:
    f: list[FieldValue] = [O.HISTORICAL_TICKS_LAST, reqId, len(ticks)]
    for t in ticks:
        mask = int(t.pastLimit) | int(t.unreported) << 1
        f += [t.time, mask, t.price, t.size, t.exchange, t.specialConditions]
    return encode_fields(*f, done)


# --- contracts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractDetailsFields:
    """ib_async ``ContractDetails`` (non-bond). ``contract`` supplies conId, symbol, secType,
    lastTradeDateOrContractMonth, strike, right, exchange, primaryExchange, currency, localSymbol,
    tradingClass and multiplier. Integer fields must be integral (ib_async parses with int())."""

    contract: ContractFields
    marketName: str = ""
    minTick: float = 0.01
    orderTypes: str = ""
    validExchanges: str = ""
    priceMagnifier: int = 1
    underConId: int = 0
    longName: str = ""
    contractMonth: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    timeZoneId: str = ""
    tradingHours: str = ""  # "20261123:0930-20261123:1600;20261122:CLOSED;..."
    liquidHours: str = ""
    evRule: str = ""
    evMultiplier: int = 0
    mdSizeMultiplier: int = 1  # only on the wire below 164
    secIdList: tuple[TagValue, ...] = ()
    aggGroup: int = 0
    underSymbol: str = ""
    underSecType: str = ""
    marketRuleIds: str = ""
    realExpirationDate: str = ""
    lastTradeTime: str = ""
    stockType: str = ""
    minSize: Decimal = Decimal(1)
    sizeIncrement: Decimal = Decimal(1)
    suggestedSizeIncrement: Decimal = Decimal(1)


def _ascii7(text: str) -> str:
    """TWS sends longName ASCII-7 escaped; ib_async undoes it with ``unicode-escape``."""
    return text.encode("unicode_escape").decode("ascii")


def encode_contract_details(reqId: int, details: ContractDetailsFields, *, server_version: int) -> bytes:
    """CONTRACT_DATA (one per matching contract; finish with :func:`encode_contract_details_end`).
    ``lastTradeTime`` rides on the lastTradeDate field as ``"<date> <time>"``, as TWS does."""
    d, c = details, details.contract
    last = c.lastTradeDateOrContractMonth
    if last and d.lastTradeTime:
        last = f"{last} {d.lastTradeTime}"
    f: list[FieldValue] = [O.CONTRACT_DATA]
    if server_version < 164:
        f.append(8)
    f += [reqId, c.symbol, c.secType, last, c.strike, c.right, c.exchange, c.currency]
    f += [c.localSymbol, d.marketName, c.tradingClass, c.conId, d.minTick]
    if server_version < 164:
        f.append(d.mdSizeMultiplier)
    f += [c.multiplier, d.orderTypes, d.validExchanges, d.priceMagnifier, d.underConId]
    f += [_ascii7(d.longName), c.primaryExchange, d.contractMonth, d.industry, d.category]
    f += [d.subcategory, d.timeZoneId, d.tradingHours, d.liquidHours, d.evRule, d.evMultiplier]
    f.append(len(d.secIdList))
    for tv in d.secIdList:
        f += [tv.tag, tv.value]
    f += [d.aggGroup, d.underSymbol, d.underSecType, d.marketRuleIds, d.realExpirationDate]
    f.append(d.stockType)
    if server_version == 163:
        f.append(d.suggestedSizeIncrement)  # TWS's sizeMinTick; ib_async stores it there
    if server_version >= 164:
        f += [d.minSize, d.sizeIncrement, d.suggestedSizeIncrement]
    return encode_fields(*f)


def encode_contract_details_end(reqId: int) -> bytes:
    return encode_fields(O.CONTRACT_DATA_END, 1, reqId)


@dataclass(frozen=True, slots=True)
class ContractDescriptionFields:
    """One reqMatchingSymbols result; ``contract`` supplies conId, symbol, secType,
    primaryExchange, currency and (from 176) description and issuerId."""

    contract: ContractFields
    derivativeSecTypes: tuple[str, ...] = ()


def encode_symbol_samples(
    reqId: int, descriptions: Sequence[ContractDescriptionFields], *, server_version: int
) -> bytes:
    f: list[FieldValue] = [O.SYMBOL_SAMPLES, reqId, len(descriptions)]
    for d in descriptions:
        c = d.contract
        f += [c.conId, c.symbol, c.secType, c.primaryExchange, c.currency]
        f += [len(d.derivativeSecTypes), *d.derivativeSecTypes]
        if server_version >= 176:
            f += [c.description, c.issuerId]
    return encode_fields(*f)


def encode_market_rule(marketRuleId: int, increments: Sequence[tuple[Number, Number]]) -> bytes:
    """MARKET_RULE: (lowEdge, increment) pairs, e.g. [(0, 0.01)]."""
    flat = [v for pair in increments for v in pair]
    return encode_fields(O.MARKET_RULE, marketRuleId, len(increments), *flat)


def encode_sec_def_opt_params(
    reqId: int,
    *,
    exchange: str,
    underlyingConId: int,
    tradingClass: str,
    multiplier: str,
    expirations: Sequence[str],
    strikes: Sequence[Number],
) -> bytes:
    return encode_fields(
        O.SECURITY_DEFINITION_OPTION_PARAMETER,
        reqId,
        exchange,
        underlyingConId,
        tradingClass,
        multiplier,
        len(expirations),
        *expirations,
        len(strikes),
        *strikes,
    )


def encode_sec_def_opt_params_end(reqId: int) -> bytes:
    return encode_fields(O.SECURITY_DEFINITION_OPTION_PARAMETER_END, reqId)


def encode_mkt_depth_exchanges(descriptions: Sequence[tuple[str, str, str, str, int]]) -> bytes:
    """(exchange, secType, listingExch, serviceDataType, aggGroup) per entry."""
    flat = [v for d in descriptions for v in d]
    return encode_fields(O.MKT_DEPTH_EXCHANGES, len(descriptions), *flat)


def encode_smart_components(reqId: int, components: Sequence[tuple[int, str, str]]) -> bytes:
    """(bitNumber, exchange, exchangeLetter) per component."""
    flat = [v for comp in components for v in comp]
    return encode_fields(O.SMART_COMPONENTS, reqId, len(components), *flat)
