"""The IB session (trader.ib.session) against the paper exchange process with the real ib_async.

The module's exchange runs its control RPC on a free endpoint; faults (1100/1101/1102, farms, a
gateway restart) come from it. Tests that kill the exchange or start it late run their own on a
free port. Every wait is on an event (state changes, ticks) with a deadline. The helpers here are
shared by test_ib_market_data.py and test_ib_history.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from ib_async import Contract

from tests.integration.exchange_fixtures import (
    ExchangeProcess,
    IbLogGuard,
    connected,
    next_client_id,
    run,
    start_exchange,
)
from tests.support import Processes, free_endpoint, free_port
from trader.config.trader import IbConfig
from trader.ib.backoff import Backoff
from trader.ib.errors import FarmState, IbError, NotConnected
from trader.ib.market_data import MarketData, Tick
from trader.ib.session import ConnectionState, IbSession, StateChange, SyncContext, SyncReason
from trader.messaging.rpc import AsyncRpcClient

pytestmark = pytest.mark.integration

S = ConnectionState
AAPL = Contract(
    conId=265598, symbol="AAPL", secType="STK", exchange="SMART", currency="USD", localSymbol="AAPL"
)
DISCONNECT_LOGS = (
    r"Peer closed connection|API connection failed|Make sure API port|reset by peer|"
    r"Socket disconnect|Disconnected|Connection lost"
)


# -- shared helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_endpoint() -> str:
    return free_endpoint()


@pytest.fixture(scope="module")
def exchange_env(control_endpoint: str) -> dict[str, str]:
    return {"BOURSE_EXCHANGE_CONTROL_RPC": control_endpoint}


def fast_session(host: str, port: int, client_id: int | None = None, **kwargs: object) -> IbSession:
    """A session that retries fast (50 ms base, 0.5 s cap) with a 1 s heartbeat."""
    config = IbConfig(
        host=host,
        port=port,
        client_id=next_client_id() if client_id is None else client_id,
        connect_timeout_s=5.0,
    )
    options: dict[str, object] = {"backoff": Backoff(base_s=0.05, cap_s=0.5), "heartbeat_s": 1.0}
    options.update(kwargs)
    return IbSession(config, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def control(endpoint: str) -> AsyncIterator[AsyncRpcClient]:
    async with AsyncRpcClient(endpoint, timeout=5.0) as rpc:
        yield rpc


class States:
    """Every state change of a session, awaitable."""

    def __init__(self, session: IbSession) -> None:
        self.changes: list[StateChange] = []
        self._event = asyncio.Event()
        session.add_state_listener(self._on_change)

    def _on_change(self, change: StateChange) -> None:
        self.changes.append(change)
        self._event.set()

    def states(self) -> list[ConnectionState]:
        return [c.state for c in self.changes]

    async def reached(self, state: ConnectionState, after: int = 0, within: float = 10.0) -> StateChange:
        """The first change to ``state`` at index >= ``after``, waiting up to ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            for change in self.changes[after:]:
                if change.state is state:
                    return change
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {state} within {within}s; saw {self.states()[after:]}")
            self._event.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)

    def mark(self) -> int:
        return len(self.changes)


class Reconciles:
    """A reconcile hook that records its calls."""

    def __init__(self, session: IbSession) -> None:
        self.contexts: list[SyncContext] = []
        self.failures_left = 0
        self._event = asyncio.Event()
        session.add_reconcile_hook(self)

    async def __call__(self, context: SyncContext) -> None:
        self.contexts.append(context)
        self._event.set()
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("reconcile failed on purpose")

    def reasons(self) -> list[SyncReason]:
        return [c.reason for c in self.contexts]


class Ticks:
    """Ticks of a MarketData, awaitable."""

    def __init__(self, market_data: MarketData, con_id: int | None = None) -> None:
        self.items: list[Tick] = []
        self._event = asyncio.Event()
        market_data.add_tick_listener(self._on_tick, con_id)

    def _on_tick(self, tick: Tick) -> None:
        self.items.append(tick)
        self._event.set()

    async def after(self, count: int, within: float = 5.0) -> Tick:
        """The first tick with index >= ``count`` (waits for it)."""
        deadline = time.monotonic() + within
        while len(self.items) <= count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no tick after #{count} within {within}s")
            self._event.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
        return self.items[count]


def farm_state(session: IbSession, name: str) -> FarmState:
    return session.farms[name].status.state


def assert_refused_at_once(session: IbSession, state: ConnectionState | None = None) -> NotConnected:
    started = time.perf_counter()
    with pytest.raises(NotConnected) as caught:
        session.require_connected("order")
    assert time.perf_counter() - started < 0.01
    if state is not None:
        assert caught.value.state is state
        assert str(state) in str(caught.value)
    assert "order refused" in str(caught.value)
    return caught.value


# -- tests --------------------------------------------------------------------------------------------


def test_connect_when_exchange_running_then_connected_synced_and_reconciled_once(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        states = States(session)
        reconciles = Reconciles(session)
        assert_refused_at_once(session, S.DISCONNECTED)
        ib = await session.connect(timeout=10)
        try:
            assert session.require_connected() is ib
            assert ib.isConnected()
            assert states.states() == [S.CONNECTING, S.SYNCING, S.CONNECTED]
            assert reconciles.reasons() == [SyncReason.CONNECT]
            assert reconciles.contexts[0].down_since is None
            status = session.status()
            assert status["state"] == "connected"
            assert status["account"] == "DU1234567"
            assert status["farms"]["usfarm"] == "ok"
            assert session.farms["ushmds"].status.state is FarmState.OK
        finally:
            await session.close()
        assert session.state is S.CLOSED
        assert not ib.isConnected()
        assert_refused_at_once(session, S.CLOSED)

    run(body())


def test_connect_when_exchange_not_yet_running_then_backoff_retries_until_it_starts(
    procs: Processes, exchange_dir: Path, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)
    port = free_port()

    async def body() -> None:
        session = fast_session("127.0.0.1", port)
        states = States(session)
        reconciles = Reconciles(session)
        session.start()
        try:
            await states.reached(S.DISCONNECTED)
            while session.stats.attempts < 3:
                await states.reached(S.CONNECTING, after=states.mark())
            refused = assert_refused_at_once(session)
            assert refused.state in (S.DISCONNECTED, S.CONNECTING)
            assert "Connect call failed" in session.reason or "connect" in session.reason
            delays = [c.reason for c in states.changes if c.state is S.DISCONNECTED]
            assert all("retrying in" in reason for reason in delays)
            await asyncio.to_thread(start_exchange, procs, exchange_dir, port=port, args=("--control", "off"))
            await states.reached(S.CONNECTED, within=15)
            assert session.stats.connects == 1
            assert session.stats.attempts >= 3
            assert reconciles.reasons() == [SyncReason.CONNECT]
            session.require_connected()
        finally:
            await session.close()

    run(body(), timeout=40)


def test_reconnect_when_exchange_killed_and_restarted_then_resubscribed_and_reconciled(
    procs: Processes, exchange_dir: Path, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        first = await asyncio.to_thread(start_exchange, procs, exchange_dir, args=("--control", "off"))
        session = fast_session(first.host, first.port)
        states = States(session)
        reconciles = Reconciles(session)
        market_data = MarketData(session)
        ticks = Ticks(market_data)
        market_data.subscribe("strategy-a", AAPL)
        await session.connect(timeout=10)
        try:
            await ticks.after(0)
            mark = states.mark()
            first.child.kill()
            lost = await states.reached(S.DISCONNECTED, after=mark)
            assert "connection lost" in lost.reason
            assert_refused_at_once(session)
            assert market_data.owners(AAPL) == {"strategy-a"}  # kept while down
            await asyncio.to_thread(
                start_exchange, procs, exchange_dir, port=first.port, args=("--control", "off")
            )
            await states.reached(S.CONNECTED, after=mark, within=15)
            assert reconciles.reasons() == [SyncReason.CONNECT, SyncReason.RECONNECT]
            assert reconciles.contexts[-1].down_since == pytest.approx(lost.since, abs=0.5)
            seen = len(ticks.items)
            tick = await ticks.after(seen)  # the stream resumed on the new connection
            assert tick.con_id == 265598
            sub = market_data.get(AAPL)
            assert sub is not None and sub.requests == 2
            session.require_connected()
        finally:
            await session.close()

    run(body(), timeout=45)


def test_reconnect_when_gateway_restart_via_control_rpc_then_reconnects_with_the_same_client_id(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        states = States(session)
        reconciles = Reconciles(session)
        market_data = MarketData(session)
        ticks = Ticks(market_data, con_id=265598)
        market_data.subscribe("cli", AAPL)
        await session.connect(timeout=10)
        client_id = session.client_id
        try:
            await ticks.after(0)
            mark = states.mark()
            async with control(control_endpoint) as rpc:
                result = await rpc.call("restart", seconds=0.5)
            assert result["dropped"] >= 1
            await states.reached(S.DISCONNECTED, after=mark)
            assert_refused_at_once(session)
            await states.reached(S.CONNECTED, after=mark, within=15)
            assert session.client_id == client_id
            assert reconciles.reasons()[-1] is SyncReason.RECONNECT
            await ticks.after(len(ticks.items))
        finally:
            await session.close()

    run(body())


def test_heartbeat_when_tws_stops_answering_then_the_connection_is_dropped_and_made_again(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        session = fast_session(exchange.host, exchange.port, heartbeat_s=0.2, heartbeat_timeout_s=0.4)
        states = States(session)
        await session.connect(timeout=10)
        try:
            mark = states.mark()
            async with control(control_endpoint) as rpc:
                await rpc.call("delay", ms=3000)  # a TWS that hangs: every message 3 s late
                try:
                    lost = await states.reached(S.DISCONNECTED, after=mark, within=5)
                finally:
                    await rpc.call("delay", ms=0)
            assert "heartbeat" in lost.reason
            assert session.stats.heartbeat_failures == 1
            await states.reached(S.CONNECTED, after=mark, within=10)
        finally:
            await session.close()

    run(body())


def test_connect_when_client_id_in_use_then_the_next_id_is_taken(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 326, reqId -1: Unable to connect as the client id is already in use")
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        taken = next_client_id()
        next_client_id()  # keep taken + 1 free for the session
        async with connected(exchange, taken) as holder:
            session = fast_session(exchange.host, exchange.port, client_id=taken)
            try:
                await session.connect(timeout=10)
                assert session.client_id == taken + 1
                assert session.stats.client_id_bumps == 1
                assert holder.isConnected()
                assert session.ib.client.clientId == taken + 1
            finally:
                await session.close()

    run(body())


def test_connectivity_when_1100_then_degraded_and_1102_then_verified_connected(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 110[012], reqId -1: Connectivity between IB")

    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        states = States(session)
        reconciles = Reconciles(session)
        market_data = MarketData(session)
        market_data.subscribe("s", AAPL)
        await session.connect(timeout=10)
        try:
            mark = states.mark()
            async with control(control_endpoint) as rpc:
                await rpc.call("connectivity", change="lost")
                degraded = await states.reached(S.DEGRADED, after=mark)
                assert degraded.code == 1100
                refused = assert_refused_at_once(session, S.DEGRADED)
                assert "1100" in refused.reason
                assert session.ib.isConnected()  # the API socket stays up
                await rpc.call("connectivity", change="restored")
            await states.reached(S.CONNECTED, after=mark)
            assert states.states()[mark:] == [S.DEGRADED, S.SYNCING, S.CONNECTED]
            assert reconciles.reasons() == [SyncReason.CONNECT, SyncReason.VERIFY]
            assert reconciles.contexts[-1].down_since == pytest.approx(degraded.since)
            sub = market_data.get(AAPL)
            assert sub is not None and sub.requests == 1  # data maintained: not requested again
            session.require_connected()
        finally:
            await session.close()

    run(body())


def test_connectivity_when_1101_then_market_data_requested_again_and_ticks_resume(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 110[012], reqId -1: Connectivity between IB")

    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        reconciles = Reconciles(session)
        market_data = MarketData(session)
        ticks = Ticks(market_data)
        market_data.subscribe("s", AAPL)
        await session.connect(timeout=10)
        try:
            await ticks.after(0)
            async with control(control_endpoint) as rpc:
                await rpc.call("connectivity", change="lost")
                result = await rpc.call("connectivity", change="restored-data-lost")
            assert result["market_data_dropped"] >= 1
            await session.wait_for(S.CONNECTED, timeout=10)
            while SyncReason.DATA_LOST not in reconciles.reasons():
                await session.wait_for(S.SYNCING, timeout=5)
                await session.wait_for(S.CONNECTED, timeout=5)
            sub = market_data.get(AAPL)
            assert sub is not None and sub.requests == 2
            await ticks.after(len(ticks.items))
        finally:
            await session.close()

    run(body())


def test_farm_when_broken_then_tracked_while_the_session_stays_connected(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        errors: list[int] = []
        got = asyncio.Event()

        def on_error(error: IbError) -> None:
            errors.append(error.code)
            got.set()

        session.add_error_listener(on_error)
        await session.connect(timeout=10)
        try:
            async with control(control_endpoint) as rpc:
                await rpc.call("farm", name="usfarm", state="broken")
                while 2103 not in errors:
                    got.clear()
                    await asyncio.wait_for(got.wait(), 5)
                assert farm_state(session, "usfarm") is FarmState.BROKEN
                assert session.state is S.CONNECTED
                await rpc.call("farm", name="usfarm", state="ok")
                while errors.count(2104) < 4:  # 3 in the greeting (usfarm, usopt, cashfarm) + this one
                    got.clear()
                    await asyncio.wait_for(got.wait(), 5)
            assert farm_state(session, "usfarm") is FarmState.OK
        finally:
            await session.close()

    run(body())


def test_reconcile_when_hook_fails_then_the_connection_is_made_again(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        states = States(session)
        reconciles = Reconciles(session)
        reconciles.failures_left = 1
        await session.connect(timeout=10)
        try:
            assert reconciles.reasons() == [SyncReason.CONNECT, SyncReason.RECONNECT]
            assert session.stats.sync_failures == 1
            assert session.stats.connects == 2
            assert S.CONNECTED not in states.states()[:-1]  # never CONNECTED before the book was reconciled
        finally:
            await session.close()

    run(body())
