"""Replay mode end to end: stored AAPL ticks and bars, the exchange process with
``BOURSE_MARKET_SOURCE=replay``, stock ib_async streaming, trading and asking for history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from ib_async import IB, Contract, MarketOrder, Stock, TickByTickBidAsk, Ticker

from tests.integration.exchange_fixtures import (
    ExchangeProcess,
    IbLogGuard,
    connected,
    run,
    start_exchange,
    wait_until,
)
from tests.support import Processes
from trader.data.store import Store

pytestmark = pytest.mark.integration

START = pd.Timestamp("2026-01-05T15:00:00Z")
SPEED = 10.0
TICKS = 300
"""One stored tick per second: 30 s of replay at speed 10."""
AAPL_CON_ID = 265598


def stored_ticks() -> pd.DataFrame:
    bid = np.round(150 + np.arange(TICKS) / 100, 2)
    return pd.DataFrame(
        {
            "bid": bid,
            "bid_size": 500.0,
            "ask": np.round(bid + 0.02, 2),
            "ask_size": 700.0,
            "last": np.round(bid + 0.01, 2),
            "last_size": 5.0,
        },
        index=pd.DatetimeIndex(pd.date_range(START, periods=TICKS, freq="1s"), name="time"),
    )


def stored_bars() -> pd.DataFrame:
    """1-min bars from START - 30 min to START + 30 min (the later ones are the future)."""
    o = 140.0 + np.arange(60)
    times = pd.date_range(START - pd.Timedelta(minutes=30), periods=60, freq="1min")
    return pd.DataFrame(
        {
            "open": o,
            "high": o + 0.5,
            "low": o - 0.5,
            "close": o + 0.25,
            "volume": 1000.0,
            "wap": o,
            "count": 9,
        },
        index=pd.DatetimeIndex(times, name="time"),
    )


async def qualified(ib: IB, symbol: str) -> Contract:
    (result,) = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    assert isinstance(result, Contract)
    return result


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExchangeProcess, float]]:
    """The exchange replaying the store of its data dir, and the wall time before it started."""
    data_dir = tmp_path_factory.mktemp("replay")
    store = Store(f"lmdb://{data_dir / 'arctic'}")
    store.append_ticks(AAPL_CON_ID, stored_ticks())
    store.write_bars(AAPL_CON_ID, "1 min", stored_bars())
    env = {
        "BOURSE_MARKET_SOURCE": "replay",
        "BOURSE_MARKET_REPLAY": f'{{start: "{START.isoformat()}", speed: {SPEED}, kind: ticks}}',
    }
    procs = Processes()
    try:
        spawned = time.time()
        process = start_exchange(procs, data_dir, env=env)
        yield process, spawned
        process.assert_healthy()
    finally:
        procs.stop_all()


def test_replay_when_streaming_then_stored_quotes_in_order_at_speed(
    replay: tuple[ExchangeProcess, float], ib_log_guard: IbLogGuard
) -> None:
    exchange, _ = replay
    ticks = stored_ticks()
    bids, asks = list(ticks["bid"]), list(ticks["ask"])

    async def body() -> None:
        async with connected(exchange) as ib:
            aapl = await qualified(ib, "AAPL")
            ticker = ib.reqTickByTickData(aapl, "BidAsk")
            got: list[tuple[float, float, float]] = []
            arrivals: list[float] = []

            def collect(t: Ticker) -> None:  # tickByTicks holds the ticks since the last update only
                for tick in t.tickByTicks:
                    assert isinstance(tick, TickByTickBidAsk)
                    got.append((tick.bidPrice, tick.askPrice, tick.bidSize))
                    arrivals.append(time.monotonic())

            ticker.updateEvent += collect
            await wait_until(lambda: len(got) >= 20, ib, within=10, what="20 bid/ask ticks")
            first = bids.index(got[0][0])
            assert [(b, a) for b, a, _ in got] == list(zip(bids, asks, strict=True))[first : first + len(got)]
            assert {size for _, _, size in got} == {500.0}
            span = arrivals[-1] - arrivals[0]  # len(got) - 1 stored seconds at SPEED
            expected = (len(got) - 1) / SPEED
            assert expected * 0.5 < span < expected * 2 + 0.5, (span, expected)
            msft = ib.reqMktData(Stock("MSFT", "SMART", "USD", conId=272093, primaryExchange="NASDAQ"))
            await asyncio.sleep(0.5)
            assert not msft.bid > 0  # no stored data: quiet
            ib.cancelTickByTickData(aapl, "BidAsk")

    run(body())


def test_replay_when_buying_at_market_then_filled_at_a_replayed_ask(
    replay: tuple[ExchangeProcess, float], ib_log_guard: IbLogGuard
) -> None:
    exchange, _ = replay
    asks = set(stored_ticks()["ask"])

    async def body() -> None:
        async with connected(exchange) as ib:
            aapl = await qualified(ib, "AAPL")
            trade = ib.placeOrder(aapl, MarketOrder("BUY", 10))
            await wait_until(trade.isDone, ib, within=10, what="the market order filled")
            assert trade.orderStatus.status == "Filled"
            (fill,) = trade.fills
            assert fill.execution.price in asks and fill.execution.shares == 10

    run(body())


def test_replay_when_history_requested_then_stored_bars_up_to_replay_time_only(
    replay: tuple[ExchangeProcess, float], ib_log_guard: IbLogGuard
) -> None:
    exchange, spawned = replay
    stored = stored_bars()

    async def body() -> None:
        async with connected(exchange) as ib:
            aapl = await qualified(ib, "AAPL")
            bars = await ib.reqHistoricalDataAsync(
                aapl, "", "7200 S", "1 min", "TRADES", useRTH=False, formatDate=2
            )
            replay_bound = START + pd.Timedelta(seconds=(time.time() - spawned) * SPEED)
            assert len(bars) >= 30  # every bar completed before START
            times = [pd.Timestamp(b.date).tz_convert("UTC") for b in bars]
            assert times == list(stored.index[: len(bars)])
            assert [b.close for b in bars] == list(stored["close"][: len(bars)])
            assert times[-1] + pd.Timedelta(minutes=1) <= replay_bound  # no look-ahead
            assert len(bars) < len(stored)

    run(body())


def test_replay_when_instrument_has_nothing_stored_then_162(
    replay: tuple[ExchangeProcess, float], ib_log_guard: IbLogGuard
) -> None:
    exchange, _ = replay

    async def body() -> None:
        async with connected(exchange) as ib:
            ib_log_guard.allow(r"Error 162, reqId \d+: Historical Market Data Service error message:HMDS")
            msft = await qualified(ib, "MSFT")
            bars = await ib.reqHistoricalDataAsync(msft, "", "3600 S", "1 min", "TRADES", useRTH=False)
            assert list(bars) == []

    run(body())
