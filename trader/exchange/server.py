"""The exchange server: TCP listener, one :class:`ClientSession` per connection, the client-id
registry, the market clock, and the routing of engine events to sessions through the features.

Assembly (``services/exchange_service.py`` does this via :func:`build_server`)::

    core = ExchangeCore(universe, market, engine, account_id, clock=time.time_ns)
    server = ExchangeServer(core, [ConnectFeature(), OrdersFeature(), AccountFeature(), ...],
                            host="127.0.0.1", port=7497, store=StateStore(path))
    host, port = await server.start()
    ...
    await server.close()

Every ``clock_interval_ms`` the server calls ``engine.advance(clock())``, publishes the events
(see :meth:`publish`) and calls each feature's ``on_step(session, quotes, now)`` for every started
session. The features own the TWS messages; the server only routes and survives: an exception in
a hook is logged and the loop carries on.

Fault hooks for the control RPC (:mod:`trader.exchange.control`; all synchronous, return what
they did): :meth:`disconnect_all`, :meth:`refuse_connections`, :meth:`broadcast_error`,
:meth:`delay_sends`, :meth:`step`, :meth:`release_held`, :meth:`drop_market_data`. The fault
state (:class:`~trader.exchange.faults.FaultState`, ``core.extensions["faults"]``) changes what
the server does: while connectivity is lost, engine events are held (delivered by
:meth:`release_held`) and the features' ``on_step`` do not run (no data reaches clients); every
started client gets the notices of the faults in effect (farms not OK, connectivity lost) at the
first step after its startApi.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trader.config.exchange import ExchangeConfig
from trader.exchange.commissions import CommissionSchedule
from trader.exchange.events import Event, ExecutionEvent, OrderStatusEvent
from trader.exchange.faults import faults_of
from trader.exchange.feature_account import AccountFeature
from trader.exchange.feature_connect import ConnectFeature, reply_unsupported
from trader.exchange.feature_orders import OrdersFeature
from trader.exchange.instruments import Universe, load_universe
from trader.exchange.market import Market, MarketConfig
from trader.exchange.matching import EngineConfig
from trader.exchange.persistence import StateStore, open_engine, state_path
from trader.exchange.protocol import ApiRequest
from trader.exchange.replay import ReplayMarket, open_replay_market
from trader.exchange.session import ClientSession
from trader.exchange.session_api import Clock, ExchangeCore, Feature, Handler

log = logging.getLogger("trader.exchange.server")

NS = 1_000_000_000
MARKET_DATA_FEATURES = frozenset({"market"})
"""Features whose per-session state is market data subscriptions (dropped on "data lost")."""
_GREETED = "faults.greeted"


class ExchangeServer:
    """The TWS API server of the paper exchange (one per process)."""

    def __init__(
        self,
        core: ExchangeCore,
        features: Sequence[Feature],
        *,
        host: str = "127.0.0.1",
        port: int = 7497,
        clock_interval_ms: int = 50,
        send_limit_bytes: int = 16 * 1024 * 1024,
        store: StateStore | None = None,
        save_interval_s: float = 0.25,
        fallback: Handler = reply_unsupported,
    ) -> None:
        self.core = core
        self.features = tuple(features)
        self.host = host
        self.port = port
        self.clock_interval_s = clock_interval_ms / 1000.0
        self.send_limit_bytes = send_limit_bytes
        self.store = store
        self.save_interval_s = save_interval_s
        self.fallback = fallback
        self.send_delay_s = 0.0
        self._handlers = self._handler_table(self.features)
        self._listeners = [hook for f in self.features if callable(hook := getattr(f, "on_events", None))]
        self.sessions: set[ClientSession] = set()
        self.clients: dict[int, ClientSession] = {}
        self._conn_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self._save_handle: asyncio.Handle | None = None
        self._last_save = float("-inf")
        self.refusing_until = 0.0
        self.steps = 0
        self.started_at = time.monotonic()
        self.faults = faults_of(core.extensions)
        self._held: list[Event] = []
        core.publish = self.publish

    @staticmethod
    def _handler_table(features: Sequence[Feature]) -> dict[type[ApiRequest], Handler]:
        table: dict[type[ApiRequest], Handler] = {}
        owner: dict[type[ApiRequest], str] = {}
        for feature in features:
            for request_type, handler in feature.handlers.items():
                if request_type in table:
                    name, first = request_type.__name__, owner[request_type]
                    raise ValueError(f"{name} is handled by both {first!r} and {feature.name!r}")
                table[request_type] = handler
                owner[request_type] = feature.name
        return table

    def handler_for(self, request_type: type[Any]) -> Handler | None:
        return self._handlers.get(request_type)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """One market step (the first builds the price blocks, which may take a moment), then bind
        and start the clock; returns the bound (host, port) (``port=0`` picks a free one)."""
        started = time.perf_counter()
        self.step()
        log.info("market warmed up in %.0f ms", (time.perf_counter() - started) * 1000)
        self.started_at = time.monotonic()
        await self._listen()
        self._clock_task = asyncio.create_task(self._clock_loop(), name="exchange-clock")
        return self.host, self.port

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientSession(self, next(self._conn_ids)), self.host, self.port, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and the clock, close every connection, save the state durably."""
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            self._reopen_task = None
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._server is not None:
            self._server.close()
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
            self._clock_task = None
        for session in list(self.sessions):
            session.close("exchange shutting down")
        await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        self.save(durable=True)

    # -- sessions -----------------------------------------------------------------------------------

    def session_opened(self, session: ClientSession) -> None:
        self.sessions.add(session)
        log.info("%s: connected", session.label)

    def session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)
        if session.started and self.clients.get(session.client_id) is session:
            del self.clients[session.client_id]
            for feature in self.features:
                try:
                    feature.on_close(session)
                except Exception:
                    log.exception("%s: on_close of feature %r failed", session.label, feature.name)
        log.info("%s: disconnected (%s)", session.label, session.close_reason or "closed")

    def bind_client(self, session: ClientSession, client_id: int) -> bool:
        """Register ``client_id`` for ``session``; False when another connection holds it."""
        holder = self.clients.get(client_id)
        if holder is not None and holder is not session and not holder.closed:
            return False
        self.clients[client_id] = session
        log.info(
            "%s: client id %d started (server version %d)", session.label, client_id, session.server_version
        )
        return True

    def started_sessions(self) -> list[ClientSession]:
        return [s for s in self.clients.values() if not s.closed]

    # -- the market clock and event routing ----------------------------------------------------------

    async def _clock_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.clock_interval_s
        next_at = loop.time()
        while True:
            next_at += interval
            try:
                self.step()
            except Exception:
                log.exception("market step failed")
            delay = next_at - loop.time()
            if delay < 0:  # running late: skip the missed turns instead of bursting
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def step(self, now_ns: int | None = None) -> int:
        """One turn: advance the engine to ``now_ns`` (default: the clock), publish its events, run
        the features' ``on_step``. Returns the number of quotes."""
        now = self.core.clock() if now_ns is None else now_ns
        quotes, events = self.core.engine.advance(now)
        self.steps += 1
        self.publish(events)
        for session in self.started_sessions():
            if _GREETED not in session.extensions:
                session.extensions[_GREETED] = True
                for code, text in self.faults.greeting():
                    session.send_error(-1, code, text)
            if self.faults.connectivity_lost:
                continue
            for feature in self.features:
                try:
                    feature.on_step(session, quotes, now)
                except Exception:
                    log.exception("%s: on_step of feature %r failed", session.label, feature.name)
        return len(quotes)

    def publish(self, events: Sequence[Event]) -> None:
        """Route engine events to every started session through the features' ``on_events``; save
        the state when orders or fills changed (see :meth:`_schedule_save`). While connectivity
        is lost the events are held for :meth:`release_held`."""
        if not events:
            return
        if self.store is not None and any(isinstance(e, OrderStatusEvent | ExecutionEvent) for e in events):
            self._schedule_save()
        if self.faults.connectivity_lost:
            self._held.extend(events)
            return
        for session in self.started_sessions():
            for listener in self._listeners:
                try:
                    listener(session, events)
                except Exception:
                    log.exception("%s: on_events of a feature failed", session.label)

    def _schedule_save(self) -> None:
        """Save at the next loop turn (after this turn's sends) when the last save is older than
        ``save_interval_s``, else once that interval is over: bursts of fills cost one save per
        interval, and the latest state is on disk at most ``save_interval_s`` after it changed."""
        if self._save_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        delay = self._last_save + self.save_interval_s - loop.time()
        if delay > 0:
            self._save_handle = loop.call_later(delay, self._save_now)
        else:
            self._save_handle = loop.call_soon(self._save_now)

    def _save_now(self) -> None:
        self._save_handle = None
        self._last_save = asyncio.get_running_loop().time()
        self.save()

    def save(self, *, durable: bool = False) -> None:
        """Write the engine state now (no-op without a store); errors are logged, not raised."""
        if self.store is None:
            return
        try:
            self.store.save(self.core.engine.to_dict(), durable=durable)
        except (OSError, TypeError, ValueError):
            log.exception("saving the exchange state to %s failed", self.store.path)

    # -- faults (for the control RPC) ---------------------------------------------------------------

    def disconnect_all(self, reason: str = "fault: disconnect all") -> int:
        """Drop every connection at once (as when TWS dies); returns how many."""
        sessions = list(self.sessions)
        for session in sessions:
            session.abort(reason)
        log.warning("%s: dropped %d connections", reason, len(sessions))
        return len(sessions)

    def refuse_connections(self, seconds: float) -> None:
        """Close the listening socket for ``seconds`` (clients get "connection refused"), then
        listen again on the same port. Existing connections are not touched."""
        loop = asyncio.get_running_loop()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._reopen is not None:
            self._reopen.cancel()
        self.refusing_until = loop.time() + seconds
        log.warning("refusing connections for %.1f s", seconds)
        self._reopen = loop.call_later(seconds, self._start_reopen)

    def _start_reopen(self) -> None:
        self._reopen = None
        self._reopen_task = asyncio.get_running_loop().create_task(self._reopen_listener())

    async def _reopen_listener(self) -> None:
        for attempt in itertools.count(1):
            try:
                await self._listen()
            except OSError as exc:
                log.error(
                    "listening again on %s:%d failed (attempt %d): %s", self.host, self.port, attempt, exc
                )
                await asyncio.sleep(1.0)
            else:
                log.warning("accepting connections again on %s:%d", self.host, self.port)
                self._reopen_task = None
                return

    def broadcast_error(self, code: int, text: str, req_id: int = -1) -> int:
        """Send a TWS error / notice (e.g. 1100 connectivity lost, 2103 farm broken) to every
        started client; returns how many got it."""
        sessions = self.started_sessions()
        for session in sessions:
            session.send_error(req_id, code, text)
        log.warning("broadcast error %d to %d clients: %s", code, len(sessions), text)
        return len(sessions)

    def delay_sends(self, seconds: float) -> None:
        """Delay every outgoing frame by ``seconds`` from now on (0 restores immediate sends)."""
        self.send_delay_s = max(0.0, seconds)
        log.warning("outgoing messages delayed by %.3f s", self.send_delay_s)

    def release_held(self) -> int:
        """Deliver the events held while connectivity was lost; returns how many."""
        held, self._held = self._held, []
        self.publish(held)
        return len(held)

    def discard_held(self) -> int:
        """Forget the held events (the account was reset); returns how many."""
        count = len(self._held)
        self._held.clear()
        return count

    def drop_market_data(self) -> int:
        """Forget every client's market data subscriptions (TWS's "data lost"): the market
        features' ``on_close`` for each started session; returns how many sessions."""
        sessions = self.started_sessions()
        for session in sessions:
            for feature in self.features:
                if feature.name in MARKET_DATA_FEATURES:
                    feature.on_close(session)
        return len(sessions)

    def status(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "listening": self._server is not None,
            "refusing_for_s": max(0.0, self.refusing_until - _loop_time()) if self._server is None else 0.0,
            "connections": len(self.sessions),
            "clients": sorted(self.clients),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "steps": self.steps,
            "send_delay_s": self.send_delay_s,
            "held_events": len(self._held),
            "saves": self.store.saves if self.store is not None else 0,
        }


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


# -- assembly -----------------------------------------------------------------------------------------


def build_universe(hours: str) -> Universe:
    """The shipped universe; ``hours="always"``: every instrument trades around the clock (24/7
    calendars in the instruments' own zones), ``"real"``: the venues' calendars."""
    return load_universe(always_open=hours == "always")


def build_server(
    config: ExchangeConfig,
    data_dir: Path,
    *,
    reset: bool = False,
    clock: Clock = time.time_ns,
    extra_features: Sequence[Feature] = (),
    port: int | None = None,
) -> ExchangeServer:
    """The whole exchange from its configuration: universe, market, engine (restored from
    ``<data-dir>/exchange/state.json`` unless ``reset``), the features, the server."""
    m = config.market
    universe = build_universe(m.hours)
    market_config = MarketConfig(
        seed=m.seed, step_ms=m.step_ms, tick_rate=m.tick_rate, volatility_multiplier=m.volatility_multiplier
    )
    market = (
        open_replay_market(universe, market_config, m.replay, data_dir)
        if m.source == "replay"
        else Market(universe, market_config)
    )
    store = StateStore(state_path(data_dir))
    engine = open_engine(
        store,
        universe,
        market,
        account_id=config.account.id,
        initial_cash=config.account.initial_cash,
        config=EngineConfig(
            partial_fills=config.engine.partial_fills, check_margin=config.engine.check_margin
        ),
        reset=reset,
        commissions=CommissionSchedule(),
    )
    core = ExchangeCore(universe, market, engine, engine.account.account_id, clock)
    if isinstance(market, ReplayMarket):
        market.install(core.extensions)
    features: list[Feature] = [
        ConnectFeature(),
        OrdersFeature(master_client_id=config.exchange.master_client_id),
        AccountFeature(
            update_interval_s=config.account.update_interval_s, pnl_interval_s=config.account.pnl_interval_s
        ),
        *extra_features,
    ]
    server = ExchangeServer(
        core,
        features,
        host=config.exchange.host,
        port=config.exchange.port if port is None else port,
        clock_interval_ms=config.exchange.clock_interval_ms,
        send_limit_bytes=config.exchange.send_limit_bytes,
        store=store,
    )
    if reset:
        server.save(durable=True)
    return server


def feature_names(server: ExchangeServer) -> Mapping[str, Feature]:
    return {f.name: f for f in server.features}
