"""Decoding of every request ib_async 2.1.0's ``Client`` sends, at server versions 157..178.

Entry point::

    req = decode_request(fields, server_version)   # fields: one frame from FrameParser.feed

``req`` is a frozen dataclass subclassing :class:`ApiRequest` (``req.msgId`` is its
:class:`IncomingMessageId`, ``req.msgId.name`` e.g. ``"PLACE_ORDER"``); ids ib_async never sends
decode to :class:`UnsupportedRequest` (``msgId``, ``name``, raw ``fields``) so the session can
answer a TWS-style error naming the request. Malformed requests (missing, extra or
unparsable fields) raise :class:`RequestDecodeError` (a :class:`ProtocolError`) naming the message
and the field position; the frame boundary is intact, so the session may reply and continue.

Version-dependent requests (all others are identical across 157..178):

* PLACE_ORDER: ``faProfile`` < 177; ``duration`` >= 158; ``postToAts`` >= 160;
  ``autoCancelParent`` >= 162; ``advancedErrorOverride`` >= 166; ``manualOrderTime`` >= 169;
  IBKRATS ``minTradeQty`` and PEG BEST / PEG MID offsets >= 170.
* CANCEL_ORDER: ``manualCancelOrderTime`` >= 169.
* REQ_CONTRACT_DATA: ``contract.issuerId`` >= 176.
* REQ_WSH_EVENT_DATA: filter fields >= 171, dates and limit >= 173.

Field names are camelCase as in ib_async (see :mod:`trader.exchange.protocol.fields`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from trader.exchange.protocol.ids import IncomingMessageId as M
from trader.exchange.protocol.ids import incoming_name
from trader.exchange.protocol.reader import (
    ApiRequest,
    FieldReader,
    RequestDecodeError,
    RequestDecoder,
    simple_decoder,
)
from trader.exchange.protocol.requests_market import MARKET_DECODERS
from trader.exchange.protocol.requests_orders import decode_cancel_order, decode_place_order
from trader.exchange.protocol.requests_reference import REFERENCE_DECODERS

__all__ = [
    "DECODERS",
    "CancelAccountSummary",
    "CancelAccountUpdatesMulti",
    "CancelPnL",
    "CancelPnLSingle",
    "CancelPositions",
    "CancelPositionsMulti",
    "CancelWshEventData",
    "CancelWshMetaData",
    "ExecutionFilterFields",
    "QueryDisplayGroups",
    "ReplaceFA",
    "ReqAccountSummary",
    "ReqAccountUpdates",
    "ReqAccountUpdatesMulti",
    "ReqAllOpenOrders",
    "ReqAutoOpenOrders",
    "ReqCompletedOrders",
    "ReqCurrentTime",
    "ReqExecutions",
    "ReqFamilyCodes",
    "ReqGlobalCancel",
    "ReqIds",
    "ReqManagedAccts",
    "ReqOpenOrders",
    "ReqPnL",
    "ReqPnLSingle",
    "ReqPositions",
    "ReqPositionsMulti",
    "ReqSoftDollarTiers",
    "ReqUserInfo",
    "ReqWshEventData",
    "ReqWshMetaData",
    "RequestFA",
    "SetServerLogLevel",
    "StartApi",
    "SubscribeToGroupEvents",
    "UnsubscribeFromGroupEvents",
    "UnsupportedRequest",
    "UpdateDisplayGroup",
    "VerifyAndAuthMessage",
    "VerifyAndAuthRequest",
    "VerifyMessage",
    "VerifyRequest",
    "decode_request",
]


@dataclass(frozen=True, slots=True)
class UnsupportedRequest:
    """A message id ib_async 2.1.0 never sends (or no TWS message at all); fields kept raw.

    Not an :class:`ApiRequest`: ``msgId`` is a plain int here and ``name`` is the TWS name
    (``"UNKNOWN_<id>"`` for ids TWS does not define)."""

    msgId: int
    name: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReqOpenOrders(ApiRequest):
    msgId: ClassVar[M] = M.REQ_OPEN_ORDERS


@dataclass(frozen=True, slots=True)
class ReqAccountUpdates(ApiRequest):
    msgId: ClassVar[M] = M.REQ_ACCT_DATA
    subscribe: bool
    acctCode: str


@dataclass(frozen=True, slots=True)
class ExecutionFilterFields:
    clientId: int = 0
    acctCode: str = ""
    time: str = ""
    symbol: str = ""
    secType: str = ""
    exchange: str = ""
    side: str = ""


@dataclass(frozen=True, slots=True)
class ReqExecutions(ApiRequest):
    msgId: ClassVar[M] = M.REQ_EXECUTIONS
    reqId: int
    execFilter: ExecutionFilterFields


def _req_executions(r: FieldReader, _v: int) -> ReqExecutions:
    r.skip("version")
    req_id = r.int_("reqId")
    flt = ExecutionFilterFields(
        clientId=r.int_("execFilter.clientId"),
        acctCode=r.str_("execFilter.acctCode"),
        time=r.str_("execFilter.time"),
        symbol=r.str_("execFilter.symbol"),
        secType=r.str_("execFilter.secType"),
        exchange=r.str_("execFilter.exchange"),
        side=r.str_("execFilter.side"),
    )
    return ReqExecutions(req_id, flt)


@dataclass(frozen=True, slots=True)
class ReqIds(ApiRequest):
    msgId: ClassVar[M] = M.REQ_IDS
    numIds: int


@dataclass(frozen=True, slots=True)
class SetServerLogLevel(ApiRequest):
    msgId: ClassVar[M] = M.SET_SERVER_LOGLEVEL
    logLevel: int


@dataclass(frozen=True, slots=True)
class ReqAutoOpenOrders(ApiRequest):
    msgId: ClassVar[M] = M.REQ_AUTO_OPEN_ORDERS
    bAutoBind: bool


@dataclass(frozen=True, slots=True)
class ReqAllOpenOrders(ApiRequest):
    msgId: ClassVar[M] = M.REQ_ALL_OPEN_ORDERS


@dataclass(frozen=True, slots=True)
class ReqManagedAccts(ApiRequest):
    msgId: ClassVar[M] = M.REQ_MANAGED_ACCTS


@dataclass(frozen=True, slots=True)
class RequestFA(ApiRequest):
    msgId: ClassVar[M] = M.REQ_FA
    faData: int


@dataclass(frozen=True, slots=True)
class ReplaceFA(ApiRequest):
    msgId: ClassVar[M] = M.REPLACE_FA
    faData: int
    cxml: str
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqCurrentTime(ApiRequest):
    msgId: ClassVar[M] = M.REQ_CURRENT_TIME


@dataclass(frozen=True, slots=True)
class ReqGlobalCancel(ApiRequest):
    msgId: ClassVar[M] = M.REQ_GLOBAL_CANCEL


@dataclass(frozen=True, slots=True)
class ReqPositions(ApiRequest):
    msgId: ClassVar[M] = M.REQ_POSITIONS


@dataclass(frozen=True, slots=True)
class ReqAccountSummary(ApiRequest):
    msgId: ClassVar[M] = M.REQ_ACCOUNT_SUMMARY
    reqId: int
    groupName: str
    tags: str  # comma-separated, e.g. "NetLiquidation,BuyingPower,..."


@dataclass(frozen=True, slots=True)
class CancelAccountSummary(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_ACCOUNT_SUMMARY
    reqId: int


@dataclass(frozen=True, slots=True)
class CancelPositions(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_POSITIONS


@dataclass(frozen=True, slots=True)
class VerifyRequest(ApiRequest):
    msgId: ClassVar[M] = M.VERIFY_REQUEST
    apiName: str
    apiVersion: str


@dataclass(frozen=True, slots=True)
class VerifyMessage(ApiRequest):
    msgId: ClassVar[M] = M.VERIFY_MESSAGE
    apiData: str


@dataclass(frozen=True, slots=True)
class QueryDisplayGroups(ApiRequest):
    msgId: ClassVar[M] = M.QUERY_DISPLAY_GROUPS
    reqId: int


@dataclass(frozen=True, slots=True)
class SubscribeToGroupEvents(ApiRequest):
    msgId: ClassVar[M] = M.SUBSCRIBE_TO_GROUP_EVENTS
    reqId: int
    groupId: int


@dataclass(frozen=True, slots=True)
class UpdateDisplayGroup(ApiRequest):
    msgId: ClassVar[M] = M.UPDATE_DISPLAY_GROUP
    reqId: int
    contractInfo: str


@dataclass(frozen=True, slots=True)
class UnsubscribeFromGroupEvents(ApiRequest):
    msgId: ClassVar[M] = M.UNSUBSCRIBE_FROM_GROUP_EVENTS
    reqId: int


@dataclass(frozen=True, slots=True)
class StartApi(ApiRequest):
    """Sent by ib_async right after the handshake reply; the session answers with NEXT_VALID_ID
    and MANAGED_ACCTS (ib_async is "connected" once it has both)."""

    msgId: ClassVar[M] = M.START_API
    clientId: int
    optCapab: str


@dataclass(frozen=True, slots=True)
class VerifyAndAuthRequest(ApiRequest):
    msgId: ClassVar[M] = M.VERIFY_AND_AUTH_REQUEST
    apiName: str
    apiVersion: str
    opaqueIsvKey: str


@dataclass(frozen=True, slots=True)
class VerifyAndAuthMessage(ApiRequest):
    msgId: ClassVar[M] = M.VERIFY_AND_AUTH_MESSAGE
    apiData: str
    xyzResponse: str


@dataclass(frozen=True, slots=True)
class ReqPositionsMulti(ApiRequest):
    msgId: ClassVar[M] = M.REQ_POSITIONS_MULTI
    reqId: int
    account: str
    modelCode: str


@dataclass(frozen=True, slots=True)
class CancelPositionsMulti(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_POSITIONS_MULTI
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqAccountUpdatesMulti(ApiRequest):
    msgId: ClassVar[M] = M.REQ_ACCOUNT_UPDATES_MULTI
    reqId: int
    account: str
    modelCode: str
    ledgerAndNLV: bool


@dataclass(frozen=True, slots=True)
class CancelAccountUpdatesMulti(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_ACCOUNT_UPDATES_MULTI
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqSoftDollarTiers(ApiRequest):
    msgId: ClassVar[M] = M.REQ_SOFT_DOLLAR_TIERS
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqFamilyCodes(ApiRequest):
    msgId: ClassVar[M] = M.REQ_FAMILY_CODES


@dataclass(frozen=True, slots=True)
class ReqPnL(ApiRequest):
    msgId: ClassVar[M] = M.REQ_PNL
    reqId: int
    account: str
    modelCode: str


@dataclass(frozen=True, slots=True)
class CancelPnL(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_PNL
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqPnLSingle(ApiRequest):
    msgId: ClassVar[M] = M.REQ_PNL_SINGLE
    reqId: int
    account: str
    modelCode: str
    conId: int


@dataclass(frozen=True, slots=True)
class CancelPnLSingle(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_PNL_SINGLE
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqCompletedOrders(ApiRequest):
    msgId: ClassVar[M] = M.REQ_COMPLETED_ORDERS
    apiOnly: bool


@dataclass(frozen=True, slots=True)
class ReqWshMetaData(ApiRequest):
    msgId: ClassVar[M] = M.REQ_WSH_META_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class CancelWshMetaData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_WSH_META_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqWshEventData(ApiRequest):
    """ib_async sends this one with UNSET numbers as numbers (makeEmpty=False); they read as None."""

    msgId: ClassVar[M] = M.REQ_WSH_EVENT_DATA
    reqId: int
    conId: int | None
    filter: str = ""  # >= 171
    fillWatchlist: bool = False  # >= 171
    fillPortfolio: bool = False  # >= 171
    fillCompetitors: bool = False  # >= 171
    startDate: str = ""  # >= 173
    endDate: str = ""  # >= 173
    totalLimit: int | None = None  # >= 173


def _req_wsh_event_data(r: FieldReader, v: int) -> ReqWshEventData:
    req_id, con_id = r.int_("reqId"), r.int_opt("conId")
    req = ReqWshEventData(req_id, con_id)
    if v >= 171:
        req = ReqWshEventData(
            req_id,
            con_id,
            r.str_("filter"),
            r.bool_("fillWatchlist"),
            r.bool_("fillPortfolio"),
            r.bool_("fillCompetitors"),
        )
    if v >= 173:
        req = ReqWshEventData(
            req.reqId,
            req.conId,
            req.filter,
            req.fillWatchlist,
            req.fillPortfolio,
            req.fillCompetitors,
            r.str_("startDate"),
            r.str_("endDate"),
            r.int_opt("totalLimit"),
        )
    return req


@dataclass(frozen=True, slots=True)
class CancelWshEventData(ApiRequest):
    msgId: ClassVar[M] = M.CANCEL_WSH_EVENT_DATA
    reqId: int


@dataclass(frozen=True, slots=True)
class ReqUserInfo(ApiRequest):
    msgId: ClassVar[M] = M.REQ_USER_INFO
    reqId: int


_REQ = ("reqId", "int_")

#: Every message id ib_async 2.1.0 can send -> its decoder.
DECODERS: dict[int, RequestDecoder] = {
    **MARKET_DECODERS,
    **REFERENCE_DECODERS,
    M.PLACE_ORDER: decode_place_order,
    M.CANCEL_ORDER: decode_cancel_order,
    M.REQ_OPEN_ORDERS: simple_decoder(ReqOpenOrders),
    M.REQ_ACCT_DATA: simple_decoder(ReqAccountUpdates, ("subscribe", "bool_"), ("acctCode", "str_")),
    M.REQ_EXECUTIONS: _req_executions,
    M.REQ_IDS: simple_decoder(ReqIds, ("numIds", "int_")),
    M.SET_SERVER_LOGLEVEL: simple_decoder(SetServerLogLevel, ("logLevel", "int_")),
    M.REQ_AUTO_OPEN_ORDERS: simple_decoder(ReqAutoOpenOrders, ("bAutoBind", "bool_")),
    M.REQ_ALL_OPEN_ORDERS: simple_decoder(ReqAllOpenOrders),
    M.REQ_MANAGED_ACCTS: simple_decoder(ReqManagedAccts),
    M.REQ_FA: simple_decoder(RequestFA, ("faData", "int_")),
    M.REPLACE_FA: simple_decoder(ReplaceFA, ("faData", "int_"), ("cxml", "str_"), _REQ),
    M.REQ_CURRENT_TIME: simple_decoder(ReqCurrentTime),
    M.REQ_GLOBAL_CANCEL: simple_decoder(ReqGlobalCancel),
    M.REQ_POSITIONS: simple_decoder(ReqPositions),
    M.REQ_ACCOUNT_SUMMARY: simple_decoder(ReqAccountSummary, _REQ, ("groupName", "str_"), ("tags", "str_")),
    M.CANCEL_ACCOUNT_SUMMARY: simple_decoder(CancelAccountSummary, _REQ),
    M.CANCEL_POSITIONS: simple_decoder(CancelPositions),
    M.VERIFY_REQUEST: simple_decoder(VerifyRequest, ("apiName", "str_"), ("apiVersion", "str_")),
    M.VERIFY_MESSAGE: simple_decoder(VerifyMessage, ("apiData", "str_")),
    M.QUERY_DISPLAY_GROUPS: simple_decoder(QueryDisplayGroups, _REQ),
    M.SUBSCRIBE_TO_GROUP_EVENTS: simple_decoder(SubscribeToGroupEvents, _REQ, ("groupId", "int_")),
    M.UPDATE_DISPLAY_GROUP: simple_decoder(UpdateDisplayGroup, _REQ, ("contractInfo", "str_")),
    M.UNSUBSCRIBE_FROM_GROUP_EVENTS: simple_decoder(UnsubscribeFromGroupEvents, _REQ),
    M.START_API: simple_decoder(StartApi, ("clientId", "int_"), ("optCapab", "str_")),
    M.VERIFY_AND_AUTH_REQUEST: simple_decoder(
        VerifyAndAuthRequest, ("apiName", "str_"), ("apiVersion", "str_"), ("opaqueIsvKey", "str_")
    ),
    M.VERIFY_AND_AUTH_MESSAGE: simple_decoder(
        VerifyAndAuthMessage, ("apiData", "str_"), ("xyzResponse", "str_")
    ),
    M.REQ_POSITIONS_MULTI: simple_decoder(
        ReqPositionsMulti, _REQ, ("account", "str_"), ("modelCode", "str_")
    ),
    M.CANCEL_POSITIONS_MULTI: simple_decoder(CancelPositionsMulti, _REQ),
    M.REQ_ACCOUNT_UPDATES_MULTI: simple_decoder(
        ReqAccountUpdatesMulti,
        _REQ,
        ("account", "str_"),
        ("modelCode", "str_"),
        ("ledgerAndNLV", "bool_"),
    ),
    M.CANCEL_ACCOUNT_UPDATES_MULTI: simple_decoder(CancelAccountUpdatesMulti, _REQ),
    M.REQ_SOFT_DOLLAR_TIERS: simple_decoder(ReqSoftDollarTiers, _REQ, version=False),
    M.REQ_FAMILY_CODES: simple_decoder(ReqFamilyCodes, version=False),
    M.REQ_PNL: simple_decoder(ReqPnL, _REQ, ("account", "str_"), ("modelCode", "str_"), version=False),
    M.CANCEL_PNL: simple_decoder(CancelPnL, _REQ, version=False),
    M.REQ_PNL_SINGLE: simple_decoder(
        ReqPnLSingle,
        _REQ,
        ("account", "str_"),
        ("modelCode", "str_"),
        ("conId", "int_"),
        version=False,
    ),
    M.CANCEL_PNL_SINGLE: simple_decoder(CancelPnLSingle, _REQ, version=False),
    M.REQ_COMPLETED_ORDERS: simple_decoder(ReqCompletedOrders, ("apiOnly", "bool_"), version=False),
    M.REQ_WSH_META_DATA: simple_decoder(ReqWshMetaData, _REQ, version=False),
    M.CANCEL_WSH_META_DATA: simple_decoder(CancelWshMetaData, _REQ, version=False),
    M.REQ_WSH_EVENT_DATA: _req_wsh_event_data,
    M.CANCEL_WSH_EVENT_DATA: simple_decoder(CancelWshEventData, _REQ, version=False),
    M.REQ_USER_INFO: simple_decoder(ReqUserInfo, _REQ, version=False),
}


def decode_request(fields: Sequence[str], server_version: int) -> ApiRequest | UnsupportedRequest:
    """Decode one client frame (its fields, message id first) at the negotiated server version."""
    if not fields:
        raise RequestDecodeError("empty request", msg_id=-1, name="UNKNOWN", position=0)
    try:
        msg_id = int(fields[0])
    except ValueError:
        raise RequestDecodeError(
            f"request message id is not an integer: {fields[0][:40]!r}",
            msg_id=-1,
            name="UNKNOWN",
            position=0,
        ) from None
    name = incoming_name(msg_id)
    decoder = DECODERS.get(msg_id)
    if decoder is None:
        return UnsupportedRequest(msg_id, name, tuple(fields[1:]))
    reader = FieldReader(fields, msg_id, name)
    request = decoder(reader, server_version)
    reader.finish()
    return request
