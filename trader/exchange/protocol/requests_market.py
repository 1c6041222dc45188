"""Market data, historical data, contract and reference-data requests (ib_async 2.1.0 client.py).

Option lists (``mktDataOptions``, ``chartOptions``...) arrive as ib_async formats a list of
TagValue: one string ``"tag=value;tag=value;"`` (``""`` when empty); they are kept raw, see
``fields.parse_tag_values``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from trader.exchange.protocol.fields import ContractFields
from trader.exchange.protocol.ids import IncomingMessageId as M
from trader.exchange.protocol.reader import ApiRequest, FieldReader, RequestDecoder, simple_decoder
from trader.exchange.protocol.requests_orders import (
    read_combo_legs_short,
    read_contract,
    read_delta_neutral,
)

__all__ = [
    "MARKET_DECODERS",
    "CancelHeadTimeStamp",
    "CancelHistogramData",
    "CancelHistoricalData",
    "CancelMktData",
    "CancelMktDepth",
    "CancelRealTimeBars",
    "CancelTickByTickData",
    "ReqContractDetails",
    "ReqHeadTimeStamp",
    "ReqHistogramData",
    "ReqHistoricalData",
    "ReqHistoricalTicks",
    "ReqMarketDataType",
    "ReqMktData",
    "ReqMktDepth",
    "ReqRealTimeBars",
    "ReqTickByTickData",
]


@dataclass(frozen=True, slots=True)
class ReqMktData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MKT_DATA
    reqId: int
    contract: ContractFields  # + comboLegs (short form) for BAG, + deltaNeutralContract
    genericTickList: str
    snapshot: bool
    regulatorySnapshot: bool
    mktDataOptions: str


def _req_mkt_data(r: FieldReader, _v: int) -> ReqMktData:
    r.skip("version")
    req_id = r.int_("reqId")
    contract = read_contract(r)
    if contract.secType == "BAG":
        contract = replace(contract, comboLegs=read_combo_legs_short(r))
    contract = replace(contract, deltaNeutralContract=read_delta_neutral(r))
    return ReqMktData(
        req_id,
        contract,
        r.str_("genericTickList"),
        r.bool_("snapshot"),
        r.bool_("regulatorySnapshot"),
        r.str_("mktDataOptions"),
    )


@dataclass(frozen=True, slots=True)
class CancelMktData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_MKT_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqContractDetails(ApiRequest):
    msgId: ClassVar[M] = M.REQ_CONTRACT_DATA
    reqId: int
    contract: ContractFields  # + includeExpired, secIdType, secId, issuerId (>= 176)


def _req_contract_details(r: FieldReader, v: int) -> ReqContractDetails:
    r.skip("version")
    req_id = r.int_("reqId")
    contract = replace(
        read_contract(r),
        includeExpired=r.bool_("contract.includeExpired"),
        secIdType=r.str_("contract.secIdType"),
        secId=r.str_("contract.secId"),
    )
    if v >= 176:
        contract = replace(contract, issuerId=r.str_("contract.issuerId"))
    return ReqContractDetails(req_id, contract)


@dataclass(frozen=True, slots=True)
class ReqMktDepth(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MKT_DEPTH
    reqId: int
    contract: ContractFields
    numRows: int
    isSmartDepth: bool
    mktDepthOptions: str


def _req_mkt_depth(r: FieldReader, _v: int) -> ReqMktDepth:
    r.skip("version")
    req_id = r.int_("reqId")
    # the 12 contract fields written one by one: an UNSET strike arrives as "" (read as 0.0)
    contract = read_contract(r)
    return ReqMktDepth(
        req_id, contract, r.int_("numRows"), r.bool_("isSmartDepth"), r.str_("mktDepthOptions")
    )


@dataclass(frozen=True, slots=True)
class CancelMktDepth(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_MKT_DEPTH
    reqId: int
    isSmartDepth: bool


@dataclass(frozen=True, slots=True)
class ReqHistoricalData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_HISTORICAL_DATA
    reqId: int
    contract: ContractFields  # + includeExpired, + comboLegs (short form) for BAG
    endDateTime: str
    barSizeSetting: str
    durationStr: str
    useRTH: bool
    whatToShow: str
    formatDate: int
    keepUpToDate: bool
    chartOptions: str


def _req_historical_data(r: FieldReader, _v: int) -> ReqHistoricalData:
    req_id = r.int_("reqId")
    contract = replace(read_contract(r), includeExpired=r.bool_("contract.includeExpired"))
    end, bar_size, duration = r.str_("endDateTime"), r.str_("barSizeSetting"), r.str_("durationStr")
    use_rth, what, fmt = r.bool_("useRTH"), r.str_("whatToShow"), r.int_("formatDate")
    if contract.secType == "BAG":
        contract = replace(contract, comboLegs=read_combo_legs_short(r))
    return ReqHistoricalData(
        req_id,
        contract,
        end,
        bar_size,
        duration,
        use_rth,
        what,
        fmt,
        r.bool_("keepUpToDate"),
        r.str_("chartOptions"),
    )


@dataclass(frozen=True, slots=True)
class CancelHistoricalData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_HISTORICAL_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqRealTimeBars(ApiRequest):
    msgId: ClassVar[M] = M.REQ_REAL_TIME_BARS
    reqId: int
    contract: ContractFields
    barSize: int
    whatToShow: str
    useRTH: bool
    realTimeBarsOptions: str


def _req_real_time_bars(r: FieldReader, _v: int) -> ReqRealTimeBars:
    r.skip("version")
    return ReqRealTimeBars(
        r.int_("reqId"),
        read_contract(r),
        r.int_("barSize"),
        r.str_("whatToShow"),
        r.bool_("useRTH"),
        r.str_("realTimeBarsOptions"),
    )


@dataclass(frozen=True, slots=True)
class CancelRealTimeBars(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_REAL_TIME_BARS
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqMarketDataType(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MARKET_DATA_TYPE
    marketDataType: int  # 1 live, 2 frozen, 3 delayed, 4 delayed frozen


@dataclass(frozen=True, slots=True)
class ReqHeadTimeStamp(ApiRequest):
    msgId: ClassVar[M] = M.REQ_HEAD_TIMESTAMP
    reqId: int
    contract: ContractFields  # + includeExpired
    useRTH: bool
    whatToShow: str
    formatDate: int


def _req_head_time_stamp(r: FieldReader, _v: int) -> ReqHeadTimeStamp:
    req_id = r.int_("reqId")
    contract = replace(read_contract(r), includeExpired=r.bool_("contract.includeExpired"))
    return ReqHeadTimeStamp(req_id, contract, r.bool_("useRTH"), r.str_("whatToShow"), r.int_("formatDate"))


@dataclass(frozen=True, slots=True)
class ReqHistogramData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_HISTOGRAM_DATA
    reqId: int  # ib_async's tickerId
    contract: ContractFields  # + includeExpired
    useRTH: bool
    timePeriod: str


def _req_histogram_data(r: FieldReader, _v: int) -> ReqHistogramData:
    req_id = r.int_("reqId")
    contract = replace(read_contract(r), includeExpired=r.bool_("contract.includeExpired"))
    return ReqHistogramData(req_id, contract, r.bool_("useRTH"), r.str_("timePeriod"))


@dataclass(frozen=True, slots=True)
class CancelHistogramData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_HISTOGRAM_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class CancelHeadTimeStamp(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_HEAD_TIMESTAMP
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqHistoricalTicks(ApiRequest):
    msgId: ClassVar[M] = M.REQ_HISTORICAL_TICKS
    reqId: int
    contract: ContractFields  # + includeExpired
    startDateTime: str
    endDateTime: str
    numberOfTicks: int
    whatToShow: str
    useRth: bool
    ignoreSize: bool
    miscOptions: str


def _req_historical_ticks(r: FieldReader, _v: int) -> ReqHistoricalTicks:
    req_id = r.int_("reqId")
    contract = replace(read_contract(r), includeExpired=r.bool_("contract.includeExpired"))
    return ReqHistoricalTicks(
        req_id,
        contract,
        r.str_("startDateTime"),
        r.str_("endDateTime"),
        r.int_("numberOfTicks"),
        r.str_("whatToShow"),
        r.bool_("useRth"),
        r.bool_("ignoreSize"),
        r.str_("miscOptions"),
    )


@dataclass(frozen=True, slots=True)
class ReqTickByTickData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_TICK_BY_TICK_DATA
    reqId: int
    contract: ContractFields
    tickType: str  # "Last", "AllLast", "BidAsk", "MidPoint"
    numberOfTicks: int
    ignoreSize: bool


def _req_tick_by_tick(r: FieldReader, _v: int) -> ReqTickByTickData:
    return ReqTickByTickData(
        r.int_("reqId"),
        read_contract(r),
        r.str_("tickType"),
        r.int_("numberOfTicks"),
        r.bool_("ignoreSize"),
    )


@dataclass(frozen=True, slots=True)
class CancelTickByTickData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_TICK_BY_TICK_DATA
    reqId: int


_REQ = ("reqId", "int_")

MARKET_DECODERS: dict[int, RequestDecoder] = {
    M.REQ_MKT_DATA: _req_mkt_data,
    M.CANCEL_MKT_DATA: simple_decoder(CancelMktData, _REQ),
    M.REQ_CONTRACT_DATA: _req_contract_details,
    M.REQ_MKT_DEPTH: _req_mkt_depth,
    M.CANCEL_MKT_DEPTH: simple_decoder(CancelMktDepth, _REQ, ("isSmartDepth", "bool_")),
    M.REQ_HISTORICAL_DATA: _req_historical_data,
    M.CANCEL_HISTORICAL_DATA: simple_decoder(CancelHistoricalData, _REQ),
    M.REQ_REAL_TIME_BARS: _req_real_time_bars,
    M.CANCEL_REAL_TIME_BARS: simple_decoder(CancelRealTimeBars, _REQ),
    M.REQ_MARKET_DATA_TYPE: simple_decoder(ReqMarketDataType, ("marketDataType", "int_")),
    M.REQ_HEAD_TIMESTAMP: _req_head_time_stamp,
    M.REQ_HISTOGRAM_DATA: _req_histogram_data,
    M.CANCEL_HISTOGRAM_DATA: simple_decoder(CancelHistogramData, _REQ, version=False),
    M.CANCEL_HEAD_TIMESTAMP: simple_decoder(CancelHeadTimeStamp, _REQ, version=False),
    M.REQ_HISTORICAL_TICKS: _req_historical_ticks,
    M.REQ_TICK_BY_TICK_DATA: _req_tick_by_tick,
    M.CANCEL_TICK_BY_TICK_DATA: simple_decoder(CancelTickByTickData, _REQ, version=False),
}
