"""The IB session: one ``ib_async.IB``, kept connected.

:class:`IbSession` owns the ``IB`` object for the life of the process (its events survive every
reconnect, so listeners attach once) and runs a connect loop:

* while TWS / the gateway is down or restarting it retries with exponential backoff and full
  jitter (:mod:`trader.ib.backoff`);
* a client id in use (326) makes it take the next id at once (the id that worked is kept for
  later reconnects, so the orders it placed stay its own);
* once the API connection is up it runs the **sync**: the resubscribers (market data) when the
  subscriptions were lost, then the reconcile hooks; only then is the session CONNECTED;
* IB's own notices move it: 1100 (and a system 2110) -> DEGRADED; 1101 -> sync with resubscribe;
  1102 -> sync (verify) -> CONNECTED; 1300 -> reconnect. Farm notices are tracked in ``farms``;
* a heartbeat (reqCurrentTime) detects a silent TWS and forces a reconnect.

State machine (:class:`ConnectionState`)::

    DISCONNECTED -> CONNECTING -> SYNCING -> CONNECTED      start(); API up; hooks done
    CONNECTING   -> CONNECTING                              326: the next client id, at once
    CONNECTING   -> DISCONNECTED -> CONNECTING              connect failed: after a backoff
    SYNCING | CONNECTED -> DEGRADED                         1100, or 2110 (reqId -1)
    DEGRADED -> SYNCING -> CONNECTED                        1101 (resubscribe) / 1102 (verify)
    SYNCING | CONNECTED | DEGRADED -> DISCONNECTED          socket lost, heartbeat timeout,
                                                            1300, a reconcile hook failed
    any -> CLOSED                                           close()

:meth:`IbSession.require_connected` raises :class:`NotConnected` at once unless the state is
CONNECTED: orders are refused while the session is down, degraded or re-syncing, never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ib_async import IB, Contract

from trader.config.trader import IbConfig
from trader.ib.backoff import Backoff, BackoffState, RandomSource
from trader.ib.errors import (
    CLIENT_ID_IN_USE,
    SERVER_CONNECTIVITY_BROKEN,
    Action,
    ClientIdInUse,
    FarmState,
    IbError,
    NotConnected,
    classify,
)
from trader.ib.states import (
    UP_STATES,
    ConnectionState,
    FarmInfo,
    SessionStats,
    StateChange,
    SyncContext,
    SyncHook,
    SyncReason,
)

__all__ = [
    "UP_STATES",
    "ConnectionState",
    "FarmInfo",
    "IbSession",
    "SessionStats",
    "StateChange",
    "SyncContext",
    "SyncHook",
    "SyncReason",
]

log = logging.getLogger("trader.ib.session")

T = TypeVar("T")
MAX_CLIENT_ID = 2**31 - 1


class IbSession:
    """One ib_async ``IB`` kept connected to TWS (see the module docstring)."""

    def __init__(
        self,
        config: IbConfig,
        *,
        ib: IB | None = None,
        backoff: Backoff | None = None,
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.time,
        max_client_id_tries: int = 10,
        heartbeat_s: float = 10.0,
        heartbeat_timeout_s: float = 5.0,
        sync_timeout_s: float = 60.0,
    ) -> None:
        self.config = config
        self.ib = ib if ib is not None else IB()
        self.clock = clock
        self.backoff = BackoffState(backoff or Backoff(base_s=0.5, cap_s=30.0), rng=rng)
        self.max_client_id_tries = max_client_id_tries
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.sync_timeout_s = sync_timeout_s
        self.stats = SessionStats()
        self.client_id = config.client_id
        """The client id of the current (or next) connection."""
        self.account = config.account
        self.farms: dict[str, FarmInfo] = {}
        self.last_error: IbError | None = None
        self._state = ConnectionState.DISCONNECTED
        self._since = clock()
        self._reason = "not started"
        self._code: int | None = None
        self._down_since: float | None = None
        self._link_ok = True
        self._resubscribe_pending = False
        self._state_listeners: list[Callable[[StateChange], None]] = []
        self._error_listeners: list[Callable[[IbError], None]] = []
        self._resubscribers: list[SyncHook] = []
        self._reconcilers: list[SyncHook] = []
        self._waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[ConnectionState]]] = []
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""
        self._closing = False
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.client.apiError += self._on_api_error

    # -- reading ------------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def since(self) -> float:
        """When the current state was entered (epoch seconds)."""
        return self._since

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def closing(self) -> bool:
        """:meth:`close` was called."""
        return self._closing

    @property
    def connected(self) -> bool:
        """True when orders may be sent (state CONNECTED)."""
        return self._state is ConnectionState.CONNECTED

    @property
    def down_since(self) -> float | None:
        """When the session last stopped being CONNECTED (None while CONNECTED or never connected)."""
        return None if self.connected else self._down_since

    def status(self) -> dict[str, Any]:
        """A plain dict for RPC / CLI status."""
        return {
            "state": str(self._state),
            "since": self._since,
            "reason": self._reason,
            "code": self._code,
            "host": self.config.host,
            "port": self.config.port,
            "client_id": self.client_id,
            "account": self.account,
            "farms": {name: str(info.status.state) for name, info in self.farms.items()},
            "connects": self.stats.connects,
            "attempts": self.stats.attempts,
        }

    def require_connected(self, what: str = "request") -> IB:
        """The ``IB`` when the session is CONNECTED; else :class:`NotConnected` at once."""
        if self._state is not ConnectionState.CONNECTED:
            raise NotConnected(self._state, self._since, self._reason, what)
        return self.ib

    # -- hooks --------------------------------------------------------------------------------------

    def add_state_listener(self, listener: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``listener`` on every state change; returns a function that removes it."""
        self._state_listeners.append(listener)
        return lambda: _remove(self._state_listeners, listener)

    def add_error_listener(self, listener: Callable[[IbError], None]) -> Callable[[], None]:
        """Call ``listener`` with every classified IB error message; returns its remover."""
        self._error_listeners.append(listener)
        return lambda: _remove(self._error_listeners, listener)

    def add_resubscriber(self, hook: SyncHook) -> Callable[[], None]:
        """Run ``hook`` in every sync whose subscriptions were lost (new connection, 1101), before
        the reconcile hooks (market data registers :meth:`MarketData.resubscribe_all` here)."""
        self._resubscribers.append(hook)
        return lambda: _remove(self._resubscribers, hook)

    def add_reconcile_hook(self, hook: SyncHook) -> Callable[[], None]:
        """Run ``hook`` in every sync (first connect, reconnect, 1101, 1102) after resubscribing;
        the session is CONNECTED only once every hook returned. A hook that raises (or outlasts
        ``sync_timeout_s``) drops the connection: it is made again with backoff."""
        self._reconcilers.append(hook)
        return lambda: _remove(self._reconcilers, hook)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the connect loop (in the running event loop); returns at once."""
        if self._state is ConnectionState.CLOSED:
            raise RuntimeError("the session is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ib-session")

    async def connect(self, timeout: float | None = None) -> IB:  # noqa: ASYNC109
        """:meth:`start` and wait until CONNECTED (``TimeoutError`` after ``timeout`` seconds)."""
        self.start()
        await self.wait_for(ConnectionState.CONNECTED, timeout=timeout)
        return self.ib

    async def wait_for(self, *states: ConnectionState, timeout: float | None = None) -> ConnectionState:  # noqa: ASYNC109
        """Wait until the session is in one of ``states``; returns it."""
        if self._state in states:
            return self._state
        future: asyncio.Future[ConnectionState] = asyncio.get_running_loop().create_future()
        waiter = (frozenset(states), future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            _remove(self._waiters, waiter)

    async def reconnect(self, reason: str = "reconnect requested") -> None:
        """Drop the API connection now and make a new one (the backoff starts over)."""
        self.backoff.reset()
        if self._state in UP_STATES:
            self._drop(reason)

    async def close(self) -> None:
        """Disconnect and stop reconnecting (state CLOSED)."""
        self._closing = True
        for task in (self._sync_task, self._heartbeat_task, self._task):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._sync_task, self._heartbeat_task, self._task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._sync_task = self._heartbeat_task = None
        if _socket_open(self.ib):
            self.ib.disconnect()
        self._set(ConnectionState.CLOSED, "closed")

    async def __aenter__(self) -> IbSession:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the connect loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        tries_with_other_ids = 0
        while not self._closing:
            self._lost = asyncio.Event()
            self._lost_reason = ""
            self._link_ok = True  # a 1100 in the greeting of the new connection clears it
            self.stats.attempts += 1
            self._set(
                ConnectionState.CONNECTING,
                f"connecting to {self.config.host}:{self.config.port} as client {self.client_id}",
            )
            try:
                await self._connect_once(self.client_id)
            except ClientIdInUse:
                self.stats.client_id_bumps += 1
                tries_with_other_ids += 1
                if tries_with_other_ids < self.max_client_id_tries:
                    taken = self.client_id
                    self.client_id = self.client_id + 1 if self.client_id < MAX_CLIENT_ID else 1
                    log.warning("IB client id %d in use (326): trying %d", taken, self.client_id)
                    continue
                tries_with_other_ids = 0
                failure = f"client ids {self.config.client_id}..{self.client_id} all in use (326)"
                self.client_id = self.config.client_id
                await self._wait_before_retry(failure, code=CLIENT_ID_IN_USE)
                continue
            except (OSError, TimeoutError, ConnectionError) as exc:
                await self._wait_before_retry(f"connect failed: {_describe(exc)}")
                continue
            tries_with_other_ids = 0
            self.stats.connects += 1
            log.info(
                "IB API connected to %s:%d as client %d", self.config.host, self.config.port, self.client_id
            )
            self._resubscribe_pending = True
            reason = SyncReason.CONNECT if self.stats.connects == 1 else SyncReason.RECONNECT
            self._start_sync(reason)
            self._heartbeat_task = asyncio.get_running_loop().create_task(
                self._heartbeat(self._lost), name="ib-heartbeat"
            )
            await self._lost.wait()
            for task in (self._sync_task, self._heartbeat_task):
                if task is not None:
                    task.cancel()
            self._sync_task = self._heartbeat_task = None
            if self.closing:
                break
            log.warning("IB API connection lost: %s", self._lost_reason)
            if _socket_open(self.ib):
                self.ib.disconnect()
            await self._wait_before_retry(f"connection lost: {self._lost_reason}")

    async def _connect_once(self, client_id: int) -> None:
        """One attempt; raises :class:`ClientIdInUse`, ConnectionError, OSError or TimeoutError."""
        ib = self.ib
        in_use = asyncio.Event()
        failed: list[str] = []
        api_failed = asyncio.Event()

        def on_error(req_id: int, code: int, text: str, contract: Contract | None) -> None:
            if code == CLIENT_ID_IN_USE:
                in_use.set()

        def on_api_error(message: str) -> None:
            failed.append(message)
            api_failed.set()
            if "already in use" in message:
                in_use.set()

        ib.errorEvent += on_error
        ib.client.apiError += on_api_error
        connecting = asyncio.ensure_future(
            ib.connectAsync(
                self.config.host,
                self.config.port,
                clientId=client_id,
                timeout=self.config.connect_timeout_s,
                readonly=self.config.readonly,
                account=self.config.account,
                raiseSyncErrors=True,
            )
        )
        signals = [asyncio.ensure_future(in_use.wait()), asyncio.ensure_future(api_failed.wait())]
        try:
            await asyncio.wait([connecting, *signals], return_when=asyncio.FIRST_COMPLETED)
            if in_use.is_set():
                raise ClientIdInUse(client_id)
            if not connecting.done():
                raise ConnectionError(failed[-1] if failed else "API connection failed")
            connecting.result()
            if in_use.is_set():
                raise ClientIdInUse(client_id)
            if not ib.isConnected() or (self._lost is not None and self._lost.is_set()):
                raise ConnectionError("socket closed right after connecting")
        except BaseException:
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
            elif not connecting.cancelled():
                connecting.exception()  # retrieved
            if _socket_open(ib):
                ib.disconnect()
            raise
        finally:
            for signal in signals:
                signal.cancel()
            ib.errorEvent -= on_error
            ib.client.apiError -= on_api_error
        accounts = ib.managedAccounts()
        self.account = self.config.account or (accounts[0] if accounts else "")

    async def _wait_before_retry(self, reason: str, code: int | None = None) -> None:
        delay = self.backoff.next_delay()
        if delay is None:
            delay = self.backoff.policy.cap_s
        self._set(ConnectionState.DISCONNECTED, f"{reason}; retrying in {delay:.2f} s", code)
        await asyncio.sleep(delay)

    # -- sync: resubscribe, reconcile ----------------------------------------------------------------

    def _start_sync(self, reason: SyncReason) -> None:
        """(Re)start the sync; a pending resubscribe is kept when a newer sync replaces one."""
        if reason.resubscribe:
            self._resubscribe_pending = True
        if self._sync_task is not None and not self._sync_task.done():
            self._sync_task.cancel()
        lost = self._lost
        self._sync_task = asyncio.get_running_loop().create_task(self._sync(reason, lost), name="ib-sync")

    async def _sync(self, reason: SyncReason, lost: asyncio.Event | None) -> None:
        if self._link_ok:
            self._set(ConnectionState.SYNCING, f"sync after {reason}")
        else:
            self._set(ConnectionState.DEGRADED, f"API connected ({reason}) but IB connectivity is lost")
        context = SyncContext(
            reason=reason,
            ib=self.ib,
            client_id=self.client_id,
            account=self.account,
            down_since=self._down_since,
            connects=self.stats.connects,
        )
        self.stats.syncs += 1
        try:
            async with asyncio.timeout(self.sync_timeout_s):
                if reason is SyncReason.DATA_LOST and self.account:
                    await self.ib.reqAccountUpdatesAsync(self.account)
                if self._resubscribe_pending:
                    for hook in list(self._resubscribers):
                        await hook(context)
                    self._resubscribe_pending = False
                for hook in list(self._reconcilers):
                    await hook(context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.sync_failures += 1
            log.exception("IB sync (%s) failed: dropping the connection to start over", reason)
            if lost is self._lost:
                self._drop(f"sync ({reason}) failed: {_describe(exc)}")
            return
        if lost is not self._lost or self._closing:
            return
        if self._link_ok:
            self.backoff.reset()
            self._set(ConnectionState.CONNECTED, f"synced ({reason})")
        else:
            log.warning("IB sync (%s) done while connectivity is lost: staying degraded", reason)

    # -- IB events ----------------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, text: str, contract: Contract | None) -> None:
        error = classify(code, text, req_id)
        if not error.informational:
            self.last_error = error
        action = error.action
        if action is Action.FARM and error.farm is not None:
            self._on_farm(error)
        elif action is Action.WAIT:
            self._link_ok = False
            if self._state in UP_STATES:
                self._set(ConnectionState.DEGRADED, f"{code}: {text}", code)
        elif action in (Action.RESUBSCRIBE, Action.VERIFY) and req_id == -1:
            self._link_ok = True
            if self._state in UP_STATES:
                reason = SyncReason.DATA_LOST if action is Action.RESUBSCRIBE else SyncReason.VERIFY
                self._start_sync(reason)
        elif action is Action.RECONNECT and req_id == -1 and self._state in UP_STATES:
            self._drop(f"{code}: {text}")
        elif action is Action.COMPETING_SESSION:
            log.warning("IB: %s", error)
        for listener in list(self._error_listeners):
            try:
                listener(error)
            except Exception:
                log.exception("IB error listener failed on %s", error)

    def _on_farm(self, error: IbError) -> None:
        assert error.farm is not None
        farm = error.farm
        previous = self.farms.get(farm.name)
        self.farms[farm.name] = FarmInfo(farm, self.clock())
        if previous is None or previous.status.state != farm.state:
            level = logging.WARNING if farm.state is FarmState.BROKEN else logging.INFO
            log.log(level, "IB %s farm %s: %s (%d)", farm.kind, farm.name, farm.state, error.code)
        if (
            farm.state is FarmState.OK
            and self._state is ConnectionState.DEGRADED
            and self._code == SERVER_CONNECTIVITY_BROKEN
        ):
            self._link_ok = True
            self._start_sync(SyncReason.VERIFY)

    def _on_disconnected(self) -> None:
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = self._lost_reason or "socket closed"
            self._lost.set()

    def _on_api_error(self, message: str) -> None:
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = message

    def _drop(self, reason: str) -> None:
        """End the current API connection; the loop makes a new one."""
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _heartbeat(self, lost: asyncio.Event) -> None:
        """reqCurrentTime every ``heartbeat_s``; no answer within ``heartbeat_timeout_s`` and nothing
        else received meanwhile drops the connection (a TWS that hangs with the socket open)."""
        if self.heartbeat_s <= 0:
            return
        while not lost.is_set():
            await asyncio.sleep(self.heartbeat_s)
            before = _received(self.ib)
            try:
                await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.heartbeat_timeout_s)
            except (TimeoutError, ConnectionError) as exc:
                if isinstance(exc, TimeoutError) and _received(self.ib) > before:
                    continue  # TWS talks (our answer went to a concurrent reqCurrentTime)
                self.stats.heartbeat_failures += 1
                if lost is self._lost:
                    self._drop(f"heartbeat: no answer to reqCurrentTime ({_describe(exc)})")
                return

    # -- state --------------------------------------------------------------------------------------

    def _set(self, state: ConnectionState, reason: str, code: int | None = None) -> None:
        previous = self._state
        if previous is ConnectionState.CLOSED:
            return
        self._reason, self._code = reason, code
        if state is previous:
            return
        now = self.clock()
        self._state, self._since = state, now
        if previous is ConnectionState.CONNECTED:
            self._down_since = now
        change = StateChange(state, previous, now, reason, code)
        quiet = state not in (ConnectionState.DISCONNECTED, ConnectionState.DEGRADED)
        log.log(
            logging.INFO if quiet else logging.WARNING, "IB session %s -> %s: %s", previous, state, reason
        )
        for states, future in list(self._waiters):
            if future.done():
                continue
            if state in states:
                future.set_result(state)
            elif state is ConnectionState.CLOSED:
                future.set_exception(NotConnected(state, now, reason, "wait"))
        for listener in list(self._state_listeners):
            try:
                listener(change)
            except Exception:
                log.exception("IB state listener failed on %s", change)


def _remove(items: list[T], item: T) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)


def _socket_open(ib: IB) -> bool:
    """The API socket is open (possibly still handshaking)."""
    return bool(ib.client.isConnected())  # type: ignore[no-untyped-call]


def _received(ib: IB) -> int:
    """Bytes received on the current connection (-1 when there is none)."""
    try:
        return int(ib.client.connectionStats().numBytesRecv)
    except ConnectionError:
        return -1


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
