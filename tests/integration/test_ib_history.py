"""Historical bars (trader.ib.history) through the pacing limiter against the paper exchange, which
enforces IB's historical pacing (error 162) exchange-wide, like TWS for one login.

Each test first switches the exchange's pacing on through its control RPC, which also resets its
counters, so a test starts with IB's whole budget (60 requests per 10 minutes).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from ib_async import IB, Contract

from tests.integration.exchange_fixtures import ExchangeProcess, IbLogGuard, connected, run
from tests.integration.test_ib_session import AAPL, control, fast_session
from tests.support import free_endpoint
from trader.data.store import Store
from trader.exchange.instruments import load_universe
from trader.ib.backoff import Backoff
from trader.ib.errors import NotConnected
from trader.ib.history import History, HistoryError
from trader.ib.pacing import PacingLimiter
from trader.ib.session import IbSession

pytestmark = pytest.mark.integration

PACING = r"Error 162, reqId \d+: Historical Market Data Service error message:Historical data request pacing"


@pytest.fixture(scope="module")
def control_endpoint() -> str:
    return free_endpoint()


@pytest.fixture(scope="module")
def exchange_env(control_endpoint: str) -> dict[str, str]:
    return {"BOURSE_EXCHANGE_CONTROL_RPC": control_endpoint}


def stocks(count: int) -> list[Contract]:
    found = [i for i in load_universe() if i.secType == "STK"][:count]
    return [
        Contract(conId=i.conId, symbol=i.symbol, secType="STK", exchange="SMART", currency="USD")
        for i in found
    ]


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class Codes:
    """Every error code the session's IB receives."""

    def __init__(self, ib: IB) -> None:
        self.codes: list[int] = []
        ib.errorEvent += lambda req_id, code, text, contract: self.codes.append(code)


async def ready(exchange: ExchangeProcess, control_endpoint: str) -> IbSession:
    async with control(control_endpoint) as rpc:
        await rpc.call("pacing", enabled=True)
    session = fast_session(exchange.host, exchange.port)
    await session.connect(timeout=10)
    return session


def test_bars_when_100_requests_at_once_then_paced_cached_and_never_refused(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await ready(exchange, control_endpoint)
        codes = Codes(session.ib)
        history = History(session)
        end = minute(datetime.now(UTC) - timedelta(hours=2))
        distinct = [
            (contract, f"{600 + 60 * k} S")
            for contract in stocks(11)
            for k in range(7 if contract.conId == AAPL.conId else 5)
        ]
        assert len(distinct) == 57  # within IB's 60 per 10 minutes; AAPL's 6th and 7th must wait 2 s
        requests = distinct + distinct[:43]
        started = time.monotonic()
        try:
            frames = await asyncio.gather(
                *(history.bars(c, end=end, duration=d, bar_size="1 min") for c, d in requests)
            )
        finally:
            history.close()
            await session.close()
        elapsed = time.monotonic() - started
        assert 162 not in codes.codes
        assert history.stats.requests == 57 and history.stats.retries == 0
        stats = history.limiter.stats
        assert (stats.sent, stats.cache_hits, stats.refused) == (57, 43, 0)
        assert stats.waits >= 2 and 2.0 <= elapsed < 10.0
        for (contract, duration), frame in zip(requests, frames, strict=True):
            seconds = int(duration.split()[0])
            assert abs(len(frame) - seconds // 60) <= 1, (contract.symbol, duration, len(frame))
            assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is not None
            assert frame.index.max() < pd.Timestamp(end)
        for i in range(43):  # identical: served from the first answer, each caller its own copy
            assert frames[57 + i] is not frames[i]
            pd.testing.assert_frame_equal(frames[57 + i], frames[i])

    run(body())


def test_bars_when_pacing_violation_injected_then_retried_with_backoff_and_served(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(PACING)

    async def body() -> None:
        session = await ready(exchange, control_endpoint)
        codes = Codes(session.ib)
        history = History(session, backoff=Backoff(base_s=0.5, cap_s=1.0, floor_s=0.25))
        end = minute(datetime.now(UTC) - timedelta(hours=3))
        try:
            # another client of the same login spends AAPL's burst budget (5 per 2 s) first
            async with connected(exchange) as other:
                for seconds in range(60, 360, 60):
                    bars = await other.reqHistoricalDataAsync(
                        AAPL, end, f"{seconds} S", "1 min", "TRADES", False
                    )
                    assert bars
            started = time.monotonic()
            frame = await history.bars(AAPL, end=end, duration="1800 S", bar_size="1 min")
            elapsed = time.monotonic() - started
        finally:
            history.close()
            await session.close()
        assert 162 in codes.codes
        assert history.stats.retries >= 1 and history.limiter.stats.refused >= 1
        assert len(frame) == 30 and elapsed < 5.0

    run(body())


def test_bars_when_range_in_the_store_then_served_from_it_and_only_the_tail_asked(
    exchange: ExchangeProcess, control_endpoint: str, tmp_path: Path, ib_log_guard: IbLogGuard
) -> None:
    store = Store(f"lmdb://{tmp_path / 'arctic'}")
    msft = stocks(2)[1]

    async def body() -> None:
        session = await ready(exchange, control_endpoint)
        limiter = PacingLimiter()
        cached = History(session, store=store, limiter=limiter)
        direct = History(session, limiter=limiter)
        end = minute(datetime.now(UTC) - timedelta(minutes=10))
        try:
            first = await cached.bars(msft, end=end, duration="1800 S")
            assert len(first) == 30 and cached.stats.requests == 1
            stored = store.read_bars(msft.conId, "1 min")
            assert len(stored) == 30
            pd.testing.assert_frame_equal(stored, first, check_freq=False)

            inside = await cached.bars(msft, end=end - timedelta(minutes=5), duration="600 S")
            assert (cached.stats.from_store, cached.stats.requests) == (1, 1)
            from_ib = await direct.bars(msft, end=end - timedelta(minutes=5), duration="600 S")
            pd.testing.assert_frame_equal(inside, from_ib, check_freq=False)

            recent = await cached.bars(msft, duration="1200 S")  # 20 minutes up to now
            assert (cached.stats.tails, cached.stats.requests) == (1, 2)
            fresh = await direct.bars(msft, duration="1200 S")
            common = recent.index.intersection(fresh.index)[:-1]  # the forming bar moves
            assert len(common) >= 18
            pd.testing.assert_frame_equal(recent.loc[common], fresh.loc[common], check_freq=False)
            assert recent.index.is_monotonic_increasing and not recent.index.has_duplicates
            assert store.bars_range(msft.conId, "1 min") is not None
        finally:
            cached.close()
            direct.close()
            await session.close()

    run(body())


def test_bars_when_ib_refuses_the_request_then_history_error_with_the_code(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await ready(exchange, control_endpoint)
        history = History(session)
        try:
            with pytest.raises(HistoryError) as caught:
                await history.bars(AAPL, duration="600 S", what_to_show="NOSUCH")
            assert caught.value.code == 321
            assert "whatToShow" in str(caught.value)
        finally:
            history.close()
            await session.close()
        with pytest.raises(NotConnected):
            await history.bars(AAPL, duration="60 S")  # the session is closed: refused at once

    run(body())
