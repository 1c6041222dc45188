"""IB error codes by meaning: what a TWS ``error`` message is and what Bourse does about it. Pure.

TWS sends everything through one ``error(reqId, code, text)`` callback: real errors, warnings and
system notices. :func:`classify` turns one into an :class:`IbError` with a :class:`Category` (what
it is about), an :class:`Action` (what the handler does) and whether it is only informational.
The session (:mod:`trader.ib.session`), market data and history act on the action:

======================  =====================================================================
code                    meaning -> action
======================  =====================================================================
1100                    IB <-> TWS connectivity lost -> WAIT (session DEGRADED, orders refused)
1101                    restored, data lost -> RESUBSCRIBE market data, then reconcile
1102                    restored, data maintained -> VERIFY (reconcile orders/positions)
1300                    TWS socket port reset -> RECONNECT
2110                    TWS <-> server connectivity broken (reqId -1) -> WAIT (DEGRADED)
2103/2105/2157          data farm broken (market / HMDS / sec-def) -> FARM (tracked)
2104/2106/2158          data farm OK -> FARM
2107/2108               farm inactive, available on demand -> FARM (not an outage)
2119                    market data farm connecting -> FARM
326                     client id in use -> NEXT_CLIENT_ID
162 "pacing violation"  historical pacing -> RETRY_LATER (backoff)
162 "no data"           HMDS query returned no data -> NO_DATA (empty result, no retry)
162 "cancelled" / 366   historical query cancelled / not found -> CANCELLED
100                     max message rate exceeded -> RETRY_LATER
420 "pacing"            real-time query pacing -> RETRY_LATER (other 420: FAIL)
200                     no security definition / ambiguous contract -> CONTRACT (fail request)
201                     order rejected -> ORDER_REJECTED
202                     order cancelled -> ORDER_CANCELLED
103                     duplicate order id -> NEXT_ORDER_ID (reqIds, resubmit with a fresh id)
10197                   no market data during a competing live session -> COMPETING_SESSION
354/10089               live market data not subscribed -> FALLBACK_DELAYED
10090                   part of the market data not subscribed -> FALLBACK_DELAYED
10167                   displaying delayed market data -> DELAYED (mark the subscription)
10168/10186             not subscribed, delayed not enabled -> NO_MARKET_DATA
2109                    order event warning ("outside RTH" ignored) -> LOG
other 21xx              warnings -> LOG
======================  =====================================================================
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final


class Category(enum.StrEnum):
    CONNECTIVITY = "connectivity"
    FARM = "farm"
    CLIENT_ID = "client_id"
    PACING = "pacing"
    HISTORY = "history"
    CONTRACT = "contract"
    ORDER = "order"
    MARKET_DATA = "market_data"
    SESSION = "session"
    REQUEST = "request"
    OTHER = "other"


class Action(enum.StrEnum):
    """What the code means for whoever handles it."""

    WAIT = "wait"
    """Connectivity is gone (1100/2110): stay DEGRADED, refuse orders, wait for 1101/1102."""
    RESUBSCRIBE = "resubscribe"
    """1101: connectivity back but subscriptions lost: re-request market data, then reconcile."""
    VERIFY = "verify"
    """1102: connectivity back with data kept: reconcile orders and positions."""
    RECONNECT = "reconnect"
    """The API connection must be made again (1300, 504 not connected)."""
    NEXT_CLIENT_ID = "next_client_id"
    """326: connect again with another client id."""
    NEXT_ORDER_ID = "next_order_id"
    """103: the order id was used: ask reqIds and submit with a fresh id."""
    RETRY_LATER = "retry_later"
    """Pacing (162 pacing violation, 100, 420 "pacing"): retry after a backoff."""
    NO_DATA = "no_data"
    """The request is valid but there is nothing (162 "HMDS query returned no data")."""
    CANCELLED = "cancelled"
    """The request was cancelled (162 "query cancelled", 366)."""
    CONTRACT = "contract"
    """200 / 203: the contract is unknown, ambiguous or not available: fail the request."""
    ORDER_REJECTED = "order_rejected"
    ORDER_CANCELLED = "order_cancelled"
    FALLBACK_DELAYED = "fallback_delayed"
    """Live market data not permitted: switch the subscription to delayed (reqMarketDataType 3)."""
    DELAYED = "delayed"
    """The subscription is served delayed data (10167): mark it so."""
    NO_MARKET_DATA = "no_market_data"
    """Neither live nor delayed data (10168, 10186): the subscription gets nothing."""
    COMPETING_SESSION = "competing_session"
    """10197: another session of the same user takes the market data."""
    FARM = "farm"
    """A data farm changed state (tracked; an outage of data, not of the connection)."""
    FAIL = "fail"
    """The request failed (validation and other request errors)."""
    LOG = "log"
    """Nothing to do but log."""


class FarmState(enum.StrEnum):
    OK = "ok"
    BROKEN = "broken"
    INACTIVE = "inactive"
    CONNECTING = "connecting"


class FarmKind(enum.StrEnum):
    MARKET = "market"
    HMDS = "hmds"
    SECDEF = "secdef"


@dataclass(frozen=True, slots=True)
class FarmStatus:
    """A farm notice: which farm (``usfarm``, ``ushmds`` ...), its kind and its new state."""

    name: str
    kind: FarmKind
    state: FarmState


@dataclass(frozen=True, slots=True)
class IbError:
    """One classified TWS error message."""

    code: int
    text: str
    req_id: int
    category: Category
    action: Action
    informational: bool
    """A notice or warning, not a failure (farm OK, 1102, 2109 ...)."""
    farm: FarmStatus | None = None

    @property
    def system(self) -> bool:
        """Not about one request or order (reqId -1)."""
        return self.req_id == -1

    def __str__(self) -> str:
        target = "" if self.system else f" (reqId {self.req_id})"
        return f"IB {self.code}{target}: {self.text}"


_FARM_CODES: Final[dict[int, tuple[FarmKind, FarmState]]] = {
    2103: (FarmKind.MARKET, FarmState.BROKEN),
    2104: (FarmKind.MARKET, FarmState.OK),
    2105: (FarmKind.HMDS, FarmState.BROKEN),
    2106: (FarmKind.HMDS, FarmState.OK),
    2107: (FarmKind.HMDS, FarmState.INACTIVE),
    2108: (FarmKind.MARKET, FarmState.INACTIVE),
    2119: (FarmKind.MARKET, FarmState.CONNECTING),
    2157: (FarmKind.SECDEF, FarmState.BROKEN),
    2158: (FarmKind.SECDEF, FarmState.OK),
}

CONNECTIVITY_LOST: Final = 1100
RESTORED_DATA_LOST: Final = 1101
RESTORED_DATA_MAINTAINED: Final = 1102
SOCKET_PORT_RESET: Final = 1300
SERVER_CONNECTIVITY_BROKEN: Final = 2110
CLIENT_ID_IN_USE: Final = 326
HISTORICAL_DATA_ERROR: Final = 162
COMPETING_SESSION: Final = 10197
INVALID_REAL_TIME_QUERY: Final = 420

# code -> (category, action, informational); codes whose meaning depends on the text are below.
_TABLE: Final[dict[int, tuple[Category, Action, bool]]] = {
    CONNECTIVITY_LOST: (Category.CONNECTIVITY, Action.WAIT, False),
    RESTORED_DATA_LOST: (Category.CONNECTIVITY, Action.RESUBSCRIBE, True),
    RESTORED_DATA_MAINTAINED: (Category.CONNECTIVITY, Action.VERIFY, True),
    SOCKET_PORT_RESET: (Category.CONNECTIVITY, Action.RECONNECT, False),
    502: (Category.CONNECTIVITY, Action.RECONNECT, False),
    504: (Category.CONNECTIVITY, Action.RECONNECT, False),
    CLIENT_ID_IN_USE: (Category.CLIENT_ID, Action.NEXT_CLIENT_ID, False),
    100: (Category.PACING, Action.RETRY_LATER, False),
    366: (Category.HISTORY, Action.CANCELLED, True),
    165: (Category.HISTORY, Action.LOG, True),
    10314: (Category.HISTORY, Action.FAIL, False),
    200: (Category.CONTRACT, Action.CONTRACT, False),
    203: (Category.CONTRACT, Action.CONTRACT, False),
    201: (Category.ORDER, Action.ORDER_REJECTED, False),
    202: (Category.ORDER, Action.ORDER_CANCELLED, False),
    103: (Category.ORDER, Action.NEXT_ORDER_ID, False),
    104: (Category.ORDER, Action.FAIL, False),
    105: (Category.ORDER, Action.FAIL, False),
    110: (Category.ORDER, Action.FAIL, False),
    135: (Category.ORDER, Action.FAIL, False),
    161: (Category.ORDER, Action.FAIL, False),
    10147: (Category.ORDER, Action.FAIL, False),
    10148: (Category.ORDER, Action.FAIL, False),
    2109: (Category.ORDER, Action.LOG, True),
    354: (Category.MARKET_DATA, Action.FALLBACK_DELAYED, False),
    10089: (Category.MARKET_DATA, Action.FALLBACK_DELAYED, False),
    10090: (Category.MARKET_DATA, Action.FALLBACK_DELAYED, True),
    10167: (Category.MARKET_DATA, Action.DELAYED, True),
    10168: (Category.MARKET_DATA, Action.NO_MARKET_DATA, False),
    10186: (Category.MARKET_DATA, Action.NO_MARKET_DATA, False),
    101: (Category.MARKET_DATA, Action.FAIL, False),
    102: (Category.MARKET_DATA, Action.FAIL, False),
    300: (Category.MARKET_DATA, Action.LOG, True),
    COMPETING_SESSION: (Category.SESSION, Action.COMPETING_SESSION, False),
    2100: (Category.SESSION, Action.LOG, True),
    320: (Category.REQUEST, Action.FAIL, False),
    321: (Category.REQUEST, Action.FAIL, False),
    322: (Category.REQUEST, Action.FAIL, False),
    503: (Category.REQUEST, Action.FAIL, False),
}

_FARM_NAME = re.compile(r"(?:demand\.|:)\s*([\w.\-]+)\s*$")


def farm_status(code: int, text: str) -> FarmStatus | None:
    """The farm notice of a 2103-2108 / 2119 / 2157 / 2158 message; None for other codes."""
    found = _FARM_CODES.get(code)
    if found is None:
        return None
    match = _FARM_NAME.search(text)
    return FarmStatus(match.group(1) if match else "", *found)


def _historical(text: str) -> tuple[Category, Action, bool]:
    """162 covers several HMDS answers; the text tells them apart."""
    lowered = text.lower()
    if "pacing violation" in lowered:
        return Category.PACING, Action.RETRY_LATER, False
    if "no data" in lowered or "returned no data" in lowered:
        return Category.HISTORY, Action.NO_DATA, True
    if "cancel" in lowered:
        return Category.HISTORY, Action.CANCELLED, True
    return Category.HISTORY, Action.FAIL, False


def classify(code: int, text: str = "", req_id: int = -1) -> IbError:
    """What TWS error ``code`` (with its ``text``, for ``req_id``) means and what to do."""
    farm = farm_status(code, text)
    if farm is not None:
        category, action, info = Category.FARM, Action.FARM, farm.state is not FarmState.BROKEN
    elif code == HISTORICAL_DATA_ERROR:
        category, action, info = _historical(text)
    elif code == INVALID_REAL_TIME_QUERY:
        if "pacing" in text.lower():
            category, action, info = Category.PACING, Action.RETRY_LATER, False
        else:
            category, action, info = Category.REQUEST, Action.FAIL, False
    elif code == SERVER_CONNECTIVITY_BROKEN:
        # A system notice (reqId -1) says TWS lost its servers; on an order id it is the answer to
        # a modification refused while connectivity is lost (the order is untouched).
        if req_id == -1:
            category, action, info = Category.CONNECTIVITY, Action.WAIT, False
        else:
            category, action, info = Category.ORDER, Action.FAIL, False
    elif code in _TABLE:
        category, action, info = _TABLE[code]
    elif 2100 <= code < 2200:
        category, action, info = Category.OTHER, Action.LOG, True
    else:
        category, action, info = Category.OTHER, Action.FAIL, False
    return IbError(code, text, req_id, category, action, info, farm)


def is_pacing(code: int, text: str = "") -> bool:
    """True for an error that asks to slow down and retry (162 pacing violation, 100, 420 "pacing")."""
    return classify(code, text).action is Action.RETRY_LATER


class NotConnected(RuntimeError):
    """The IB session cannot take requests now (raised at once, nothing is queued)."""

    def __init__(self, state: str, since: float, reason: str, what: str = "request") -> None:
        self.state = state
        self.since = since
        self.reason = reason
        self.what = what
        at = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(f"IB not connected: {what} refused; session {state} since {at} ({reason})")


class ClientIdInUse(ConnectionError):
    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        super().__init__(f"client id {client_id} is already in use (326)")
