"""The contract between the exchange's client sessions and its feature modules.

The server (``trader/exchange/server.py``) owns one :class:`ExchangeCore` and one session per TWS
API connection. Requests are decoded by the protocol layer and dispatched to *features*: small
modules (connect, orders, account, market data, ...) that each register handlers for request types
and may react to every market step. A feature keeps its per-session state in
``session.extensions[<feature name>]`` and never reaches into another feature's state.

Handlers are plain synchronous functions ``handler(session, request) -> None`` that answer by
calling ``session.send(frame)`` / ``session.send_error(...)`` with frames built by
``trader.exchange.protocol`` encoders (which need ``session.server_version``).

Plugging a feature in: pass it to ``ExchangeServer(core, [ConnectFeature(...), ..., feature])``.
Each request type may be handled by one feature only (the server refuses duplicates); request
types no feature handles get a TWS error 503 naming the request. Handlers run only after the
client's startApi, so ``session.client_id`` is set. An exception in a handler is logged with its
traceback and answered with error 322; the connection carries on.

Engine events: a handler that changes the engine (``core.engine.place`` ...) hands the events it
got to ``core.publish(events)``; the server does the same with the events of every market step.
The server then calls ``on_events(session, events)`` of every feature that defines it (see
:class:`EventListener`), for every session that completed startApi, and saves the engine state when
orders or fills changed. Features decide what each session sees (the orders feature: a client's
own orders, all of them for the master client; the account feature: subscribers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trader.exchange.events import Event
from trader.exchange.instruments import Universe
from trader.exchange.market import Market, Quote
from trader.exchange.matching import MatchingEngine
from trader.exchange.protocol import ApiRequest

Clock = Callable[[], int]
"""Wall-clock time in ns since the epoch (injected, so tests can drive time)."""

Publish = Callable[[Sequence[Event]], None]


def _unrouted(events: Sequence[Event]) -> None:
    """``ExchangeCore.publish`` until a server is attached: events go nowhere."""


@dataclass(slots=True)
class ExchangeCore:
    """What every session shares: the instruments, the market, the matching engine, the clock."""

    universe: Universe
    market: Market
    engine: MatchingEngine
    account_id: str
    clock: Clock
    extensions: dict[str, Any] = field(default_factory=dict)
    """Exchange-wide state of features (e.g. historical-data pacing), keyed by feature name."""
    publish: Publish = _unrouted
    """Route engine events to the sessions (set by the server); see the module docstring."""


class Session(Protocol):
    """One TWS API client connection, as features see it."""

    core: ExchangeCore
    client_id: int
    """The client id of startApi (-1 before it)."""
    server_version: int
    extensions: dict[str, Any]

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame to this client (never blocks; order is preserved)."""

    def send_error(self, req_id: int, code: int, text: str, advanced_order_reject_json: str = "") -> None:
        """A TWS ``error`` message (reqId -1 for notices that concern no request)."""


Handler = Callable[[Session, Any], None]


class Feature(Protocol):
    """A group of request handlers plus hooks the server calls."""

    name: str
    handlers: Mapping[type[ApiRequest], Handler]

    def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
        """Called for every session after each market step with the quotes it produced."""

    def on_close(self, session: Session) -> None:
        """The connection ended: drop this session's subscriptions."""


class EventListener(Protocol):
    """Optional hook of a feature: engine events (order statuses, fills, positions, account values,
    errors), called once per batch for every started session, in engine order."""

    def on_events(self, session: Session, events: Sequence[Event]) -> None: ...
