"""Market data from the paper exchange process to a real ib_async ``IB``.

The module's exchange runs the fast test market (100 ms steps, 10 quotes/s, always-open hours), so
everything streams at any hour. Any ib_async ERROR record fails a test unless it announces it
(``ib_log_guard.allow``). Historical requests use distinct contracts or parameters so the
exchange-wide pacing of one test never refuses another's request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Contract, Forex, Future, Stock, Ticker

from tests.integration.exchange_fixtures import (
    ExchangeProcess,
    IbLogGuard,
    connected,
    run,
    start_exchange,
    wait_until,
)
from tests.support import Processes

pytestmark = pytest.mark.integration

AAPL = Stock("AAPL", "SMART", "USD")
NEW_YORK = ZoneInfo("US/Eastern")


def last_midnight_new_york() -> dt.datetime:
    now = dt.datetime.now(NEW_YORK)
    return dt.datetime(now.year, now.month, now.day, tzinfo=NEW_YORK)


async def qualified(ib: IB, contract: Contract) -> Contract:
    (result,) = await ib.qualifyContractsAsync(contract)
    assert isinstance(result, Contract)
    return result


# -- contracts --------------------------------------------------------------------------------------


def test_qualify_when_aapl_stock_then_real_con_id(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("AAPL", "SMART", "USD"))
            assert contract.conId == 265598
            assert contract.primaryExchange == "NASDAQ"
            (details,) = await ib.reqContractDetailsAsync(contract)
            assert details.longName == "APPLE INC"
            assert details.timeZoneId == "US/Eastern"
            assert details.tradingSessions()  # always open: a session every day

    run(body())


def test_qualify_when_unknown_symbol_then_error_200_and_none(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 200, reqId \d+: No security definition")
    errors: list[int] = []

    async def body() -> None:
        async with connected(exchange) as ib:
            ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
            assert await ib.qualifyContractsAsync(Stock("NOSUCH", "SMART", "USD")) == [None]
            assert await ib.reqContractDetailsAsync(Stock("NOSUCH", "SMART", "USD")) == []

    run(body())
    assert errors == [200, 200]


def test_qualify_when_future_by_month_then_local_symbol_and_multiplier(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            es = await qualified(ib, Future("ES", "202612", "CME"))
            assert (es.localSymbol, es.multiplier) == ("ESZ6", "50")
            eur = await qualified(ib, Forex("EURUSD"))
            assert eur.conId == 12087792

    run(body())


def test_matching_symbols_when_prefix_then_descriptions(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            found = await ib.reqMatchingSymbolsAsync("AAP")
            assert found
            first = found[0].contract
            assert first is not None
            assert (first.symbol, first.conId) == ("AAPL", 265598)

    run(body())


# -- streaming --------------------------------------------------------------------------------------


def test_mkt_data_when_streaming_then_ticker_bid_ask_last_update(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("MSFT", "SMART", "USD"))
            ticker = ib.reqMktData(contract)
            await wait_until(lambda: ticker.bid > 0 and ticker.ask > 0 and ticker.last > 0, ib)
            assert ticker.marketDataType == 1
            assert ticker.bid < ticker.ask
            assert ticker.minTick == 0.01
            assert ticker.close > 0 and ticker.high >= ticker.low > 0 and ticker.volume > 0
            assert ticker.lastTimestamp is not None
            first_time, updates = ticker.lastTimestamp, [0]
            ticker.updateEvent += lambda t: updates.__setitem__(0, updates[0] + 1)
            await wait_until(lambda: updates[0] >= 5 and ticker.lastTimestamp != first_time, ib)
            ib.cancelMktData(contract)

    run(body())


def test_mkt_data_when_snapshot_then_request_completes_with_values(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("NVDA", "SMART", "USD"))
            (ticker,) = await asyncio.wait_for(ib.reqTickersAsync(contract), 5)
            assert ticker.bid > 0 and ticker.ask > 0 and ticker.last > 0
            snapshot = ib.reqMktData(contract, snapshot=True)
            await wait_until(lambda: snapshot.last > 0 and snapshot.close > 0, ib)

    run(body())


def test_mkt_data_when_delayed_type_then_delayed_ticks_15_minutes_old(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            ib.reqMarketDataType(3)
            contract = await qualified(ib, Stock("TSLA", "SMART", "USD"))
            ticker = ib.reqMktData(contract)
            await wait_until(
                lambda: ticker.marketDataType == 3 and ticker.delayedLastTimestamp is not None, ib
            )
            await wait_until(lambda: ticker.bid > 0 and ticker.last > 0, ib)
            assert ticker.delayedLastTimestamp is not None
            age = time.time() - ticker.delayedLastTimestamp.timestamp()
            assert 15 * 60 - 5 < age < 15 * 60 + 5
            ib.reqMarketDataType(1)
            await wait_until(lambda: ticker.marketDataType == 1, ib)

    run(body())


@pytest.mark.parametrize("tick_type", ["Last", "AllLast", "BidAsk", "MidPoint"])
def test_tick_by_tick_when_each_type_then_ticks_arrive(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard, tick_type: str
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("AMZN", "SMART", "USD"))
            ticker = ib.reqTickByTickData(contract, tick_type)
            seen: list[Any] = []
            ticker.updateEvent += lambda t: seen.extend(t.tickByTicks)
            await wait_until(lambda: len(seen) >= 3, ib)
            if tick_type in ("Last", "AllLast"):
                assert seen[-1].price > 0 and seen[-1].size > 0
            elif tick_type == "BidAsk":
                assert 0 < seen[-1].bidPrice < seen[-1].askPrice
            else:
                assert seen[-1].midPoint > 0
            ib.cancelTickByTickData(contract, tick_type)

    run(body())


def test_tick_by_tick_when_number_of_ticks_then_history_first(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("META", "SMART", "USD"))
            ticker = ib.reqTickByTickData(contract, "Last", numberOfTicks=20)
            await wait_until(lambda: len(ticker.tickByTicks) >= 20, ib)

    run(body())


def test_real_time_bars_when_subscribed_then_5_second_bars(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("AMD", "SMART", "USD"))
            bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
            await wait_until(lambda: len(bars) >= 1, ib, 12)
            bar = bars[-1]
            assert bar.time.timestamp() % 5 == 0
            assert bar.low <= bar.open_ <= bar.high and bar.volume > 0
            ib.cancelRealTimeBars(bars)

    run(body(), timeout=30)


# -- history ----------------------------------------------------------------------------------------


def test_historical_when_one_day_of_minutes_always_open_then_1440_bars(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("GOOGL", "SMART", "USD"))
            end = last_midnight_new_york()
            bars = await ib.reqHistoricalDataAsync(contract, end, "1 D", "1 min", "TRADES", useRTH=True)
            assert len(bars) == 1440
            first, last = bars[0].date, bars[-1].date
            assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
            assert first == end - dt.timedelta(days=1)
            assert last == end - dt.timedelta(minutes=1)
            assert all(b.low <= b.close <= b.high for b in bars)

    run(body())


def test_historical_when_daily_bars_then_dates(exchange: ExchangeProcess, ib_log_guard: IbLogGuard) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("NFLX", "SMART", "USD"))
            bars = await ib.reqHistoricalDataAsync(contract, "", "5 D", "1 day", "MIDPOINT", useRTH=True)
            assert len(bars) == 5
            assert all(type(b.date) is dt.date for b in bars)
            assert bars[-1].date == dt.datetime.now(NEW_YORK).date()
            assert all(b.volume == -1 for b in bars)

    run(body())


def test_historical_when_format_date_2_then_utc_datetimes(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("ADBE", "SMART", "USD"))
            bars = await ib.reqHistoricalDataAsync(
                contract, "", "1800 S", "1 min", "TRADES", useRTH=False, formatDate=2
            )
            assert 29 <= len(bars) <= 31
            last = bars[-1].date
            assert isinstance(last, dt.datetime)
            assert last.tzinfo == dt.UTC
            assert abs(last.timestamp() - time.time()) < 120

    run(body())


def test_historical_when_keep_up_to_date_then_bar_updates(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("PYPL", "SMART", "USD"))
            bars = await ib.reqHistoricalDataAsync(
                contract, "", "300 S", "5 secs", "TRADES", useRTH=False, keepUpToDate=True
            )
            assert bars
            count, last = len(bars), bars[-1]
            updates: list[bool] = []
            bars.updateEvent += lambda b, has_new_bar: updates.append(has_new_bar)
            await wait_until(lambda: len(updates) >= 2, ib, 10)
            assert len(bars) > count or bars[-1] != last
            await wait_until(lambda: any(updates), ib, 10)  # a new 5-second bar
            ib.cancelHistoricalData(bars)

    run(body())


def test_head_timestamp_when_requested_then_start_of_history(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("WMT", "SMART", "USD"))
            head = await ib.reqHeadTimeStampAsync(contract, "TRADES", useRTH=True, formatDate=2)
            assert head == dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
            head = await ib.reqHeadTimeStampAsync(contract, "TRADES", useRTH=True, formatDate=1)
            assert head == dt.datetime(2016, 1, 1, tzinfo=dt.UTC).astimezone(NEW_YORK)

    run(body())


@pytest.mark.parametrize("what", ["TRADES", "BID_ASK", "MIDPOINT"])
def test_historical_ticks_when_requested_then_recent_ticks(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard, what: str
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            contract = await qualified(ib, Stock("DIS", "SMART", "USD"))
            end = dt.datetime.now(dt.UTC)
            ticks = await asyncio.wait_for(ib.reqHistoricalTicksAsync(contract, "", end, 50, what, False), 5)
            assert len(ticks) == 50
            assert ticks[0].time <= ticks[-1].time <= end + dt.timedelta(seconds=1)

    run(body())


def test_historical_when_identical_request_within_15_seconds_then_pacing_error_162(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 162, reqId \d+: Historical Market Data Service error message:Historical data")
    errors: list[tuple[int, str]] = []

    async def body() -> None:
        async with connected(exchange) as ib:
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
            contract = await qualified(ib, Stock("BA", "SMART", "USD"))
            first = await ib.reqHistoricalDataAsync(contract, "", "600 S", "1 min", "BID", useRTH=False)
            assert first
            second = await ib.reqHistoricalDataAsync(contract, "", "600 S", "1 min", "BID", useRTH=False)
            assert len(second) == 0

    run(body())
    assert errors == [
        (162, "Historical Market Data Service error message:Historical data request pacing violation")
    ]


def test_historical_when_unknown_contract_then_error_200(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 200, reqId \d+: No security definition")

    async def body() -> None:
        async with connected(exchange) as ib:
            bars = await ib.reqHistoricalDataAsync(
                Stock("NOSUCH", "SMART", "USD"), "", "1 D", "1 hour", "TRADES", useRTH=True
            )
            assert len(bars) == 0

    run(body())


# -- throughput -------------------------------------------------------------------------------------

THROUGHPUT_ENV = {
    "BOURSE_MARKET_STEP_MS": "50",
    "BOURSE_MARKET_TICK_RATE": "20",
    "BOURSE_EXCHANGE_CLOCK_INTERVAL_MS": "50",
    "BOURSE_MARKET_HOURS": "always",
}
SUBSCRIPTIONS_PER_CONTRACT = 12
MEASURE_SECONDS = 4.0


def test_throughput_when_fast_market_then_20000_ticks_per_second_into_tickers(
    tmp_path: Any, ib_log_guard: IbLogGuard
) -> None:
    """Every instrument streamed ``SUBSCRIPTIONS_PER_CONTRACT`` times plus AllLast tick-by-tick,
    counting what ib_async puts into its Tickers (``ticker.ticks`` + ``ticker.tickByTicks`` of
    every update). The market makes at most one quote per instrument per step (37 x 20 quotes/s
    here; finer steps cost memory: a day-block of 8.64e7 / step_ms steps per instrument), so the
    fan-out is what makes 20,000 ticks/s; 16 per contract measured 46,000/s, all delivered."""
    procs = Processes()
    try:
        exchange = start_exchange(procs, tmp_path / "exchange", env=THROUGHPUT_ENV, timeout=60)
        rate = run(_measure(exchange), timeout=120)
        print(f"\nthroughput: {rate:,.0f} ticks/s into ib_async Tickers")
        assert rate >= 20_000
        exchange.assert_healthy()
    finally:
        procs.stop_all()


async def _measure(exchange: ExchangeProcess) -> float:
    async with connected(exchange) as ib:
        ib.client.MaxRequests = 0  # no client-side request throttling: subscribe at once
        matches = await ib.reqContractDetailsAsync(Contract())
        assert len(matches) >= 37
        contracts = [d.contract for d in matches if d.contract is not None]
        count = [0]

        def on_pending(tickers: set[Ticker]) -> None:
            count[0] += sum(len(t.ticks) + len(t.tickByTicks) for t in tickers)

        ib.pendingTickersEvent += on_pending
        for contract in contracts:
            for _ in range(SUBSCRIPTIONS_PER_CONTRACT):
                ib.reqMktData(contract)
            ib.reqTickByTickData(contract, "AllLast")
        await asyncio.sleep(2.0)  # every subscription answered, streams flowing
        start, started = count[0], time.perf_counter()
        await asyncio.sleep(MEASURE_SECONDS)
        return (count[0] - start) / (time.perf_counter() - started)
