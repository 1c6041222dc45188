"""The connect feature: what TWS does right after startApi, ids, time, and unsupported requests.

After startApi (the session has bound the client id by then) TWS sends the managed accounts, the
next valid order id and its farm-status notices (codes 2104/2106/2158, reqId -1: warnings that
ib_async logs at INFO). ib_async reports "connected" once it has both the accounts and the id.

:func:`reply_unsupported` is the server's fallback for every request no feature handles: a TWS
error naming the request (code 503, which ib_async treats as an error, so an awaiting call ends
at once instead of timing out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trader.exchange.market import Quote
from trader.exchange.protocol import (
    ApiRequest,
    ReqCurrentTime,
    ReqFamilyCodes,
    ReqIds,
    ReqManagedAccts,
    ReqSoftDollarTiers,
    ReqUserInfo,
    SetServerLogLevel,
    StartApi,
    UnsupportedRequest,
    encode_current_time,
    encode_family_codes,
    encode_managed_accounts,
    encode_next_valid_id,
    encode_soft_dollar_tiers,
    encode_user_info,
    incoming_name,
)
from trader.exchange.session_api import Handler, Session

NS = 1_000_000_000

FARM_NOTICES: tuple[tuple[int, str], ...] = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2104, "Market data farm connection is OK:usopt"),
    (2104, "Market data farm connection is OK:cashfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
"""What TWS sends after startApi (reqId -1), in its order."""

NOT_SUPPORTED = 503
"""Error code for requests the paper exchange does not implement (TWS: "The TWS is out of date and
must be upgraded", i.e. the server does not know the request)."""

_REQUEST_ID_FIELDS = ("reqId", "orderId", "tickerId")


def request_id(request: object) -> int:
    """The request's id (reqId / order id) for error replies, -1 when it carries none."""
    for name in _REQUEST_ID_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return -1


def request_name(request: object) -> str:
    """TWS's name of a request (``REQ_SCANNER_SUBSCRIPTION``), from its message id."""
    if isinstance(request, UnsupportedRequest):
        return request.name
    msg_id = getattr(request, "msgId", None)
    return incoming_name(int(msg_id)) if msg_id is not None else type(request).__name__


def reply_unsupported(session: Session, request: Any) -> None:
    """The fallback handler: error 503 naming the request, addressed to its reqId if it has one."""
    msg_id = getattr(request, "msgId", "?")
    session.send_error(
        request_id(request),
        NOT_SUPPORTED,
        f"The paper exchange does not support {request_name(request)} (message id {msg_id}).",
    )


class ConnectFeature:
    """startApi greeting, reqIds, reqCurrentTime, reqManagedAccts and a few empty reference lists."""

    name = "connect"

    def __init__(self, notices: Sequence[tuple[int, str]] = FARM_NOTICES) -> None:
        self.notices = tuple(notices)
        self.handlers: Mapping[type[ApiRequest], Handler] = {
            StartApi: self.start_api,
            ReqIds: self.req_ids,
            ReqCurrentTime: self.req_current_time,
            ReqManagedAccts: self.req_managed_accounts,
            SetServerLogLevel: self.ignore,
            ReqFamilyCodes: self.req_family_codes,
            ReqUserInfo: self.req_user_info,
            ReqSoftDollarTiers: self.req_soft_dollar_tiers,
        }

    def start_api(self, session: Session, request: StartApi) -> None:
        core = session.core
        session.send(encode_managed_accounts([core.account_id]))
        session.send(encode_next_valid_id(core.engine.next_order_id(session.client_id)))
        for code, text in self.notices:
            session.send_error(-1, code, text)

    def req_ids(self, session: Session, request: ReqIds) -> None:
        session.send(encode_next_valid_id(session.core.engine.next_order_id(session.client_id)))

    def req_current_time(self, session: Session, request: ReqCurrentTime) -> None:
        session.send(encode_current_time(session.core.clock() // NS))

    def req_managed_accounts(self, session: Session, request: ReqManagedAccts) -> None:
        session.send(encode_managed_accounts([session.core.account_id]))

    def req_family_codes(self, session: Session, request: ReqFamilyCodes) -> None:
        session.send(encode_family_codes([]))

    def req_user_info(self, session: Session, request: ReqUserInfo) -> None:
        session.send(encode_user_info(request.reqId, ""))

    def req_soft_dollar_tiers(self, session: Session, request: ReqSoftDollarTiers) -> None:
        session.send(encode_soft_dollar_tiers(request.reqId, []))

    def ignore(self, session: Session, request: object) -> None:
        """Accepted without a reply, as TWS does (setServerLogLevel)."""

    def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass
