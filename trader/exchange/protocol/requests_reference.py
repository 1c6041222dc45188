"""Reference-data and rarely used requests (ib_async 2.1.0 client.py): scanner, news, fundamentals,
option calculations and exercise, option chains, symbol search, SMART components, market rules.

The exchange may well answer most of these with an error; they are decoded so the session can
name them and so a malformed one is still detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trader.exchange.protocol.fields import ContractFields
from trader.exchange.protocol.ids import IncomingMessageId as M
from trader.exchange.protocol.reader import ApiRequest, FieldReader, RequestDecoder, simple_decoder
from trader.exchange.protocol.requests_orders import read_contract

__all__ = [
    "REFERENCE_DECODERS",
    "CalculateImpliedVolatility",
    "CalculateOptionPrice",
    "CancelCalculateImpliedVolatility",
    "CancelCalculateOptionPrice",
    "CancelFundamentalData",
    "CancelNewsBulletins",
    "CancelScannerSubscription",
    "ExerciseOptions",
    "ReqFundamentalData",
    "ReqHistoricalNews",
    "ReqMarketRule",
    "ReqMatchingSymbols",
    "ReqMktDepthExchanges",
    "ReqNewsArticle",
    "ReqNewsBulletins",
    "ReqNewsProviders",
    "ReqScannerParameters",
    "ReqScannerSubscription",
    "ReqSecDefOptParams",
    "ReqSmartComponents",
    "ScannerSubscriptionFields",
]


@dataclass(frozen=True, slots=True)
class ReqNewsBulletins(ApiRequest):
    msgId: ClassVar[M] = M.REQ_NEWS_BULLETINS
    allMsgs: bool


@dataclass(frozen=True, slots=True)
class CancelNewsBulletins(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_NEWS_BULLETINS


@dataclass(frozen=True, slots=True)
class ExerciseOptions(ApiRequest):
    msgId: ClassVar[M] = M.EXERCISE_OPTIONS
    reqId: int
    contract: ContractFields  # no primaryExchange on the wire
    exerciseAction: int
    exerciseQuantity: int
    account: str
    override: int


def _exercise_options(r: FieldReader, _v: int) -> ExerciseOptions:
    r.skip("version")
    req_id = r.int_("reqId")
    contract = ContractFields(
        conId=r.int_("contract.conId"),
        symbol=r.str_("contract.symbol"),
        secType=r.str_("contract.secType"),
        lastTradeDateOrContractMonth=r.str_("contract.lastTradeDateOrContractMonth"),
        strike=r.float_("contract.strike"),
        right=r.str_("contract.right"),
        multiplier=r.str_("contract.multiplier"),
        exchange=r.str_("contract.exchange"),
        currency=r.str_("contract.currency"),
        localSymbol=r.str_("contract.localSymbol"),
        tradingClass=r.str_("contract.tradingClass"),
    )
    return ExerciseOptions(
        req_id,
        contract,
        r.int_("exerciseAction"),
        r.int_("exerciseQuantity"),
        r.str_("account"),
        r.int_("override"),
    )


@dataclass(frozen=True, slots=True)
class ScannerSubscriptionFields:
    """ib_async ``ScannerSubscription``; UNSET numbers arrive as ``""`` and read as ``None``."""

    numberOfRows: int = -1
    instrument: str = ""
    locationCode: str = ""
    scanCode: str = ""
    abovePrice: float | None = None
    belowPrice: float | None = None
    aboveVolume: int | None = None
    marketCapAbove: float | None = None
    marketCapBelow: float | None = None
    moodyRatingAbove: str = ""
    moodyRatingBelow: str = ""
    spRatingAbove: str = ""
    spRatingBelow: str = ""
    maturityDateAbove: str = ""
    maturityDateBelow: str = ""
    couponRateAbove: float | None = None
    couponRateBelow: float | None = None
    excludeConvertible: bool = False
    averageOptionVolumeAbove: int | None = None
    scannerSettingPairs: str = ""
    stockTypeFilter: str = ""


_SCANNER_SPEC = (
    ("numberOfRows", "int_"),
    ("instrument", "str_"),
    ("locationCode", "str_"),
    ("scanCode", "str_"),
    ("abovePrice", "float_opt"),
    ("belowPrice", "float_opt"),
    ("aboveVolume", "int_opt"),
    ("marketCapAbove", "float_opt"),
    ("marketCapBelow", "float_opt"),
    ("moodyRatingAbove", "str_"),
    ("moodyRatingBelow", "str_"),
    ("spRatingAbove", "str_"),
    ("spRatingBelow", "str_"),
    ("maturityDateAbove", "str_"),
    ("maturityDateBelow", "str_"),
    ("couponRateAbove", "float_opt"),
    ("couponRateBelow", "float_opt"),
    ("excludeConvertible", "bool_"),
    ("averageOptionVolumeAbove", "int_opt"),
    ("scannerSettingPairs", "str_"),
    ("stockTypeFilter", "str_"),
)


@dataclass(frozen=True, slots=True)
class ReqScannerSubscription(ApiRequest):
    msgId: ClassVar[M] = M.REQ_SCANNER_SUBSCRIPTION
    reqId: int
    subscription: ScannerSubscriptionFields
    scannerSubscriptionFilterOptions: str
    scannerSubscriptionOptions: str


def _req_scanner_subscription(r: FieldReader, _v: int) -> ReqScannerSubscription:
    req_id = r.int_("reqId")
    values = {name: getattr(r, kind)(f"subscription.{name}") for name, kind in _SCANNER_SPEC}
    sub = ScannerSubscriptionFields(**values)
    return ReqScannerSubscription(
        req_id, sub, r.str_("scannerSubscriptionFilterOptions"), r.str_("scannerSubscriptionOptions")
    )


@dataclass(frozen=True, slots=True)
class CancelScannerSubscription(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_SCANNER_SUBSCRIPTION
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqScannerParameters(ApiRequest):
    msgId: ClassVar[M] = M.REQ_SCANNER_PARAMETERS


@dataclass(frozen=True, slots=True)
class ReqFundamentalData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_FUNDAMENTAL_DATA
    reqId: int
    contract: ContractFields  # conId, symbol, secType, exchange, primaryExchange, currency, localSymbol
    reportType: str
    fundamentalDataOptions: str


def _req_fundamental_data(r: FieldReader, _v: int) -> ReqFundamentalData:
    r.skip("version")
    req_id = r.int_("reqId")
    contract = ContractFields(
        conId=r.int_("contract.conId"),
        symbol=r.str_("contract.symbol"),
        secType=r.str_("contract.secType"),
        exchange=r.str_("contract.exchange"),
        primaryExchange=r.str_("contract.primaryExchange"),
        currency=r.str_("contract.currency"),
        localSymbol=r.str_("contract.localSymbol"),
    )
    report = r.str_("reportType")
    r.count("len(fundamentalDataOptions)")  # ib_async sends the count, then ONE joined string
    return ReqFundamentalData(req_id, contract, report, r.str_("fundamentalDataOptions"))


@dataclass(frozen=True, slots=True)
class CancelFundamentalData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_FUNDAMENTAL_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class CalculateImpliedVolatility(ApiRequest):
    msgId: ClassVar[M] = M.REQ_CALC_IMPLIED_VOLAT
    reqId: int
    contract: ContractFields
    optionPrice: float
    underPrice: float
    implVolOptions: str


@dataclass(frozen=True, slots=True)
class CalculateOptionPrice(ApiRequest):
    msgId: ClassVar[M] = M.REQ_CALC_OPTION_PRICE
    reqId: int
    contract: ContractFields
    volatility: float
    underPrice: float
    optPrcOptions: str


def _calc_option(r: FieldReader, _v: int, implied: bool) -> ApiRequest:
    r.skip("version")
    req_id = r.int_("reqId")
    contract = read_contract(r)
    first = r.float_("optionPrice" if implied else "volatility")
    under = r.float_("underPrice")
    r.count("len(options)")  # the count, then ONE joined "tag=value;" string
    options = r.str_("options")
    if implied:
        return CalculateImpliedVolatility(req_id, contract, first, under, options)
    return CalculateOptionPrice(req_id, contract, first, under, options)


@dataclass(frozen=True, slots=True)
class CancelCalculateImpliedVolatility(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_CALC_IMPLIED_VOLAT
    reqId: int


@dataclass(frozen=True, slots=True)
class CancelCalculateOptionPrice(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_CALC_OPTION_PRICE
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqSecDefOptParams(ApiRequest):
    msgId: ClassVar[M] = M.REQ_SEC_DEF_OPT_PARAMS
    reqId: int
    underlyingSymbol: str
    futFopExchange: str
    underlyingSecType: str
    underlyingConId: int


@dataclass(frozen=True, slots=True)
class ReqMatchingSymbols(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MATCHING_SYMBOLS
    reqId: int
    pattern: str


@dataclass(frozen=True, slots=True)
class ReqMktDepthExchanges(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MKT_DEPTH_EXCHANGES


@dataclass(frozen=True, slots=True)
class ReqSmartComponents(ApiRequest):
    msgId: ClassVar[M] = M.REQ_SMART_COMPONENTS
    reqId: int
    bboExchange: str


@dataclass(frozen=True, slots=True)
class ReqNewsArticle(ApiRequest):
    msgId: ClassVar[M] = M.REQ_NEWS_ARTICLE
    reqId: int
    providerCode: str
    articleId: str
    newsArticleOptions: str


@dataclass(frozen=True, slots=True)
class ReqNewsProviders(ApiRequest):
    msgId: ClassVar[M] = M.REQ_NEWS_PROVIDERS


@dataclass(frozen=True, slots=True)
class ReqHistoricalNews(ApiRequest):
    msgId: ClassVar[M] = M.REQ_HISTORICAL_NEWS
    reqId: int
    conId: int
    providerCodes: str
    startDateTime: str
    endDateTime: str
    totalResults: int
    historicalNewsOptions: str


@dataclass(frozen=True, slots=True)
class ReqMarketRule(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MARKET_RULE
    marketRuleId: int


_REQ = ("reqId", "int_")

REFERENCE_DECODERS: dict[int, RequestDecoder] = {
    M.REQ_NEWS_BULLETINS: simple_decoder(ReqNewsBulletins, ("allMsgs", "bool_")),
    M.CANCEL_NEWS_BULLETINS: simple_decoder(CancelNewsBulletins),
    M.EXERCISE_OPTIONS: _exercise_options,
    M.REQ_SCANNER_SUBSCRIPTION: _req_scanner_subscription,
    M.CANCEL_SCANNER_SUBSCRIPTION: simple_decoder(CancelScannerSubscription, _REQ),
    M.REQ_SCANNER_PARAMETERS: simple_decoder(ReqScannerParameters),
    M.REQ_FUNDAMENTAL_DATA: _req_fundamental_data,
    M.CANCEL_FUNDAMENTAL_DATA: simple_decoder(CancelFundamentalData, _REQ),
    M.REQ_CALC_IMPLIED_VOLAT: lambda r, v: _calc_option(r, v, implied=True),
    M.REQ_CALC_OPTION_PRICE: lambda r, v: _calc_option(r, v, implied=False),
    M.CANCEL_CALC_IMPLIED_VOLAT: simple_decoder(CancelCalculateImpliedVolatility, _REQ),
    M.CANCEL_CALC_OPTION_PRICE: simple_decoder(CancelCalculateOptionPrice, _REQ),
    M.REQ_SEC_DEF_OPT_PARAMS: simple_decoder(
        ReqSecDefOptParams,
        _REQ,
        ("underlyingSymbol", "str_"),
        ("futFopExchange", "str_"),
        ("underlyingSecType", "str_"),
        ("underlyingConId", "int_"),
        version=False,
    ),
    M.REQ_MATCHING_SYMBOLS: simple_decoder(ReqMatchingSymbols, _REQ, ("pattern", "str_"), version=False),
    M.REQ_MKT_DEPTH_EXCHANGES: simple_decoder(ReqMktDepthExchanges, version=False),
    M.REQ_SMART_COMPONENTS: simple_decoder(ReqSmartComponents, _REQ, ("bboExchange", "str_"), version=False),
    M.REQ_NEWS_ARTICLE: simple_decoder(
        ReqNewsArticle,
        _REQ,
        ("providerCode", "str_"),
        ("articleId", "str_"),
        ("newsArticleOptions", "str_"),
        version=False,
    ),
    M.REQ_NEWS_PROVIDERS: simple_decoder(ReqNewsProviders, version=False),
    M.REQ_HISTORICAL_NEWS: simple_decoder(
        ReqHistoricalNews,
        _REQ,
        ("conId", "int_"),
        ("providerCodes", "str_"),
        ("startDateTime", "str_"),
        ("endDateTime", "str_"),
        ("totalResults", "int_"),
        ("historicalNewsOptions", "str_"),
        version=False,
    ),
    M.REQ_MARKET_RULE: simple_decoder(ReqMarketRule, ("marketRuleId", "int_"), version=False),
}
