"""Faults of the paper exchange, on command: the pure state behind the control RPC.

Pure (time is passed in) and exchange-wide: one :class:`FaultState`, kept in
``ExchangeCore.extensions["faults"]`` (see :func:`faults_of`), read by the server (connectivity:
hold reports, pause data; greeting new clients) and by the orders feature (order refusals).
:mod:`trader.exchange.control` applies the faults to a running server and exposes them as RPC
methods; docs/paper-exchange.md ("Faults") is the user's view.

Semantics (TWS's words and codes):

* **connectivity** ``lost`` (1100): the link between "TWS" and IB is gone but API sockets stay
  up. No market data or account updates reach clients; order reports of working orders (which
  keep working and filling at the exchange) are held; new orders are rejected (status Inactive,
  error 201 with the 1100 wording); modifications, cancels and global cancels are refused with
  the warning 2110 (the order is untouched, ib_async keeps it alive); what-if orders get 201.
  ``restored`` (1102, data maintained): held reports are delivered and streams carry on.
  ``restored-data-lost`` (1101): the same, but every market data subscription is dropped (the
  client must request it again, as with TWS).
* **farms** (usfarm, ushmds, secdefnj, ...): notices only (2103-2108, 2157/2158); new clients
  get the notices of farms that are not OK right after the usual greeting.
* **reject-next**: the next N *new* orders (not modifications, not what-if) end with the given
  status (Inactive or Cancelled) and error code/text; their ids count as used. N = 0 clears.
* **delay**: every message to every client leaves N ms late (order kept), as over a slow link.
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

from trader.exchange.instruments import Instrument, Universe

EXTENSION_KEY: Final = "faults"
NS: Final = 1_000_000_000

Notice = tuple[int, str]
"""A TWS error message: (code, text)."""

CONNECTIVITY_LOST: Final[Notice] = (1100, "Connectivity between IB and Trader Workstation has been lost.")
RESTORED_DATA_LOST: Final[Notice] = (
    1101,
    "Connectivity between IB and Trader Workstation has been restored - data lost.",
)
RESTORED_DATA_MAINTAINED: Final[Notice] = (
    1102,
    "Connectivity between IB and Trader Workstation has been restored - data maintained.",
)
SERVER_BROKEN: Final[Notice] = (
    2110,
    "Connectivity between Trader Workstation and server is broken. It will be restored automatically.",
)
REJECTED_WHILE_LOST: Final[Notice] = (201, f"Order rejected - reason:{CONNECTIVITY_LOST[1]}")
DEFAULT_REJECT: Final[Notice] = (201, "Order rejected - reason:Rejected by the paper exchange (fault).")

Connectivity = Literal["lost", "restored", "restored-data-lost"]
FarmState = Literal["ok", "broken", "inactive"]
FarmKind = Literal["market", "hmds", "secdef"]
RejectStatus = Literal["Inactive", "Cancelled"]
OrderRequest = Literal["new", "modify", "cancel", "what_if"]

CONNECTIVITY_CHANGES: Final = get_args(Connectivity)
FARM_STATES: Final = get_args(FarmState)
REJECT_STATUSES: Final = get_args(RejectStatus)

FARMS: Final[dict[str, FarmKind]] = {
    "usfarm": "market",
    "usopt": "market",
    "cashfarm": "market",
    "ushmds": "hmds",
    "secdefnj": "secdef",
}
"""The farms TWS reports to API clients (the connect greeting names these)."""

_FARM_NOTICES: Final[dict[tuple[FarmKind, FarmState], tuple[int, str]]] = {
    ("market", "broken"): (2103, "Market data farm connection is broken:{name}"),
    ("market", "ok"): (2104, "Market data farm connection is OK:{name}"),
    ("market", "inactive"): (
        2108,
        "Market data farm connection is inactive but should be available upon demand.{name}",
    ),
    ("hmds", "broken"): (2105, "HMDS data farm connection is broken:{name}"),
    ("hmds", "ok"): (2106, "HMDS data farm connection is OK:{name}"),
    ("hmds", "inactive"): (
        2107,
        "HMDS data farm connection is inactive but should be available upon demand.{name}",
    ),
    ("secdef", "broken"): (2157, "Sec-def data farm connection is broken:{name}"),
    ("secdef", "ok"): (2158, "Sec-def data farm connection is OK:{name}"),
}

CONFIRMATION_REQUIRED: Final = "confirmation_required"
"""The control RPC's error code for a destructive command sent without ``confirm``."""
MAX_REJECTS: Final = 10_000
MAX_DELAY_MS: Final = 60_000
MAX_TEXT: Final = 500


class FaultError(ValueError):
    """A fault command with invalid parameters (the message says which and why)."""


def farm_notice(name: str, state: str) -> Notice:
    """TWS's notice for farm ``name`` entering ``state`` (e.g. 2103 "...broken:usfarm")."""
    kind = FARMS.get(name)
    if kind is None:
        raise FaultError(f"unknown farm {name!r}; known: {', '.join(FARMS)}")
    if state not in FARM_STATES:
        raise FaultError(f"unknown farm state {state!r}; expected one of {', '.join(FARM_STATES)}")
    found = _FARM_NOTICES.get((kind, cast(FarmState, state)))
    if found is None:
        raise FaultError(f"TWS has no {state!r} notice for the sec-def farm {name!r} (2157 broken, 2158 OK)")
    code, text = found
    return code, text.format(name=name)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How the orders feature answers a request it must not pass to the engine: error ``code`` /
    ``text`` to the order id, after an openOrder + orderStatus with ``status`` when set."""

    code: int
    text: str
    status: RejectStatus | None = None


@dataclass(slots=True)
class FaultState:
    """Every fault that is switched on (see the module docstring)."""

    connectivity_lost: bool = False
    lost_since_ns: int | None = None
    farms: dict[str, FarmState] = field(default_factory=lambda: dict.fromkeys(FARMS, "ok"))
    rejects: deque[Refusal] = field(default_factory=deque)
    delay_ms: int = 0

    # -- connectivity -------------------------------------------------------------------------------

    def set_connectivity(self, change: str, now_ns: int) -> Notice:
        """``lost`` / ``restored`` / ``restored-data-lost``: the new state and the notice to send
        (sent even when the state does not change, as a repeated notice)."""
        if change == "lost":
            if not self.connectivity_lost:
                self.lost_since_ns = now_ns
            self.connectivity_lost = True
            return CONNECTIVITY_LOST
        if change == "restored":
            self.connectivity_lost, self.lost_since_ns = False, None
            return RESTORED_DATA_MAINTAINED
        if change == "restored-data-lost":
            self.connectivity_lost, self.lost_since_ns = False, None
            return RESTORED_DATA_LOST
        raise FaultError(
            f"unknown connectivity change {change!r}; expected one of {', '.join(CONNECTIVITY_CHANGES)}"
        )

    # -- farms --------------------------------------------------------------------------------------

    def set_farm(self, name: str, state: str) -> Notice:
        notice = farm_notice(name, state)
        self.farms[name] = cast(FarmState, state)  # checked by farm_notice
        return notice

    # -- orders -------------------------------------------------------------------------------------

    def queue_rejects(
        self,
        count: int,
        code: int = DEFAULT_REJECT[0],
        text: str = DEFAULT_REJECT[1],
        status: str = "Inactive",
    ) -> int:
        """Reject the next ``count`` new orders (0: forget the queued ones); returns how many are
        queued now."""
        if not 0 <= count <= MAX_REJECTS:
            raise FaultError(f"count must be between 0 and {MAX_REJECTS}, got {count}")
        if count == 0:
            self.rejects.clear()
            return 0
        if not 1 <= code <= 99_999:
            raise FaultError(f"code must be a TWS error code between 1 and 99999, got {code}")
        text = text.strip()
        if not text or len(text) > MAX_TEXT or "\0" in text:
            raise FaultError(f"text must be 1 to {MAX_TEXT} characters without NUL")
        if status not in REJECT_STATUSES:
            raise FaultError(f"status must be one of {', '.join(REJECT_STATUSES)}, got {status!r}")
        rule = Refusal(code, text, cast(RejectStatus, status))
        self.rejects.extend([rule] * count)
        return len(self.rejects)

    def clear_rejects(self) -> int:
        """Forget the queued rejections; returns how many there were."""
        count = len(self.rejects)
        self.rejects.clear()
        return count

    def order_gate(self, request: OrderRequest) -> Refusal | None:
        """What happens to an order request now: ``None`` (it goes to the engine) or a refusal.
        Takes a queued rejection when it applies (a new order while connectivity is up)."""
        if self.connectivity_lost:
            if request == "new":
                return Refusal(*REJECTED_WHILE_LOST, status="Inactive")
            if request == "what_if":
                return Refusal(*REJECTED_WHILE_LOST)
            return Refusal(*SERVER_BROKEN)
        if request == "new" and self.rejects:
            return self.rejects.popleft()
        return None

    # -- delay --------------------------------------------------------------------------------------

    def set_delay(self, ms: int) -> float:
        """Delay of every outgoing message; returns it in seconds (0 clears it)."""
        if not 0 <= ms <= MAX_DELAY_MS:
            raise FaultError(f"ms must be between 0 and {MAX_DELAY_MS}, got {ms}")
        self.delay_ms = ms
        return ms / 1000.0

    # -- sessions -----------------------------------------------------------------------------------

    def greeting(self) -> list[Notice]:
        """What a client that just connected must learn besides the usual greeting: farms that are
        not OK, and that connectivity is lost."""
        notices = [farm_notice(name, state) for name, state in self.farms.items() if state != "ok"]
        if self.connectivity_lost:
            notices.append(CONNECTIVITY_LOST)
        return notices

    def restart(self) -> None:
        """A gateway restart: a fresh TWS is connected and its farms are OK (rejections queued and
        the delay stay: they describe the exchange and the link, not TWS)."""
        self.connectivity_lost, self.lost_since_ns = False, None
        self.farms = dict.fromkeys(FARMS, "ok")

    # -- reporting ----------------------------------------------------------------------------------

    def active(self) -> list[str]:
        """One line per fault in effect (empty: none)."""
        out = []
        if self.connectivity_lost:
            out.append("connectivity lost")
        out += [f"farm {name} {state}" for name, state in self.farms.items() if state != "ok"]
        if self.rejects:
            out.append(f"next {len(self.rejects)} new orders rejected")
        if self.delay_ms:
            out.append(f"messages delayed by {self.delay_ms} ms")
        return out

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        lost_for = None if self.lost_since_ns is None else (now_ns - self.lost_since_ns) / NS
        return {
            "connectivity": "lost" if self.connectivity_lost else "ok",
            "lost_for_s": lost_for,
            "farms": dict(self.farms),
            "rejects_queued": len(self.rejects),
            "next_reject": None if not self.rejects else _refusal_dict(self.rejects[0]),
            "delay_ms": self.delay_ms,
        }


def _refusal_dict(refusal: Refusal) -> dict[str, Any]:
    return {"code": refusal.code, "text": refusal.text, "status": refusal.status}


def faults_of(extensions: MutableMapping[str, Any]) -> FaultState:
    """The exchange-wide fault state in ``core.extensions`` (created on first use)."""
    state = extensions.get(EXTENSION_KEY)
    if not isinstance(state, FaultState):
        state = FaultState()
        extensions[EXTENSION_KEY] = state
    return state


def check_percent(percent: float) -> float:
    """A shock size: a move to ``(1 + percent/100)`` times the price, in (-100, 1000] and not 0."""
    if not -100.0 < percent <= 1000.0 or percent == 0.0:
        raise FaultError(f"percent must be in (-100, 1000] and not 0, got {percent}")
    return percent


def find_instrument(universe: Universe, symbol: str) -> Instrument:
    """The instrument a fault names: a stock/ETF symbol (AAPL) or a local symbol (ESZ6, EUR.USD),
    case-insensitive."""
    wanted = symbol.strip().upper()
    if not wanted:
        raise FaultError("symbol must not be empty")
    try:
        return universe.by_symbol(wanted)
    except KeyError:
        pass
    found = [i for i in universe if wanted in (i.localSymbol.upper(), i.symbol.upper())]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(f"{i.localSymbol} ({i.secType})" for i in found))
        raise FaultError(f"symbol {symbol!r} is ambiguous: {names}; use the local symbol")
    near = [i.localSymbol for i in universe.matching_symbols(wanted[:3], limit=5)]
    hint = f"; similar: {', '.join(near)}" if near else ""
    raise FaultError(f"unknown symbol {symbol!r}{hint}")
