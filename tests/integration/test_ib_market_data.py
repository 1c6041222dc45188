"""Contract resolution (trader.ib.contracts) and reference-counted market data (trader.ib.market_data)
against the paper exchange process with the real ib_async.

The paper exchange serves live data to everyone, so "live data not permitted" cannot come from it:
the delayed-fallback tests inject IB's 354 / 10168 through ib_async's own error handler
(``ib.wrapper.error``, the path a real TWS message takes) and then check what the exchange really
does with the fallback (reqMarketDataType 3 -> delayed ticks, marketDataType 3).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from ib_async import Contract

from tests.integration.exchange_fixtures import ExchangeProcess, IbLogGuard, run
from tests.integration.test_ib_session import AAPL, Ticks, fast_session
from tests.support import free_endpoint
from trader.data.store import Store
from trader.ib.contracts import AmbiguousContract, ContractResolver, UnknownContract
from trader.ib.errors import NotConnected
from trader.ib.market_data import DELAYED, LIVE, MarketData
from trader.ib.session import IbSession

pytestmark = pytest.mark.integration

MSFT = Contract(
    conId=272093, symbol="MSFT", secType="STK", exchange="SMART", currency="USD", localSymbol="MSFT"
)


@pytest.fixture(scope="module")
def exchange_env() -> dict[str, str]:
    """The control RPC on a free endpoint (not the default port)."""
    return {"BOURSE_EXCHANGE_CONTROL_RPC": free_endpoint()}


async def started(exchange: ExchangeProcess) -> IbSession:
    session = fast_session(exchange.host, exchange.port)
    await session.connect(timeout=10)
    return session


# -- contracts ----------------------------------------------------------------------------------------


def test_resolve_when_aapl_then_con_id_265598_and_cached(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await started(exchange)
        try:
            resolver = ContractResolver(session)
            contract = await resolver.resolve("aapl")
            assert contract.conId == 265598
            assert (contract.symbol, contract.secType, contract.primaryExchange) == ("AAPL", "STK", "NASDAQ")
            assert await resolver.resolve("AAPL") is contract
            assert await resolver.by_con_id(265598) is contract
            assert resolver.requests == 1
            future = await resolver.resolve("ES", "FUT", "CME")
            assert future.secType == "FUT" and future.localSymbol.startswith("ES")
            fx = await resolver.resolve("EUR", "CASH", "IDEALPRO", "USD")
            assert fx.localSymbol == "EUR.USD"
        finally:
            await session.close()

    run(body())


def test_resolve_when_unknown_symbol_then_clear_error(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 200, reqId \d+: No security definition")

    async def body() -> None:
        session = await started(exchange)
        try:
            with pytest.raises(UnknownContract) as caught:
                await ContractResolver(session).resolve("NOSUCH")
            message = str(caught.value)
            assert "unknown contract STK NOSUCH SMART USD" in message
            assert "IB 200" in message and "No security definition" in message
        finally:
            await session.close()

    run(body())


def test_resolve_when_several_instruments_match_then_error_lists_every_candidate(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await started(exchange)
        try:
            with pytest.raises(AmbiguousContract) as caught:
                await ContractResolver(session).resolve_contract(Contract(secType="FUT", currency="USD"))
            error = caught.value
            assert sorted(c.symbol for c in error.candidates) == ["CL", "ES", "GC", "NQ"]
            message = str(error)
            assert "ambiguous contract FUT USD: 4 candidates" in message
            for candidate in error.candidates:
                assert candidate.localSymbol in message
                assert f"conId {candidate.conId}" in message
        finally:
            await session.close()

    run(body())


def test_resolve_when_cached_in_the_store_then_resolved_without_ib(
    exchange: ExchangeProcess, tmp_path: Path, ib_log_guard: IbLogGuard
) -> None:
    store = Store(f"lmdb://{tmp_path / 'arctic'}")

    async def body() -> None:
        session = await started(exchange)
        try:
            first = await ContractResolver(session, store).resolve("MSFT")
        finally:
            await session.close()
        assert store.get_contract("STK:MSFT:SMART:USD") is not None
        assert store.get_contract("conid:272093") is not None
        offline = ContractResolver(fast_session(exchange.host, exchange.port), store)  # never connected
        again = await offline.resolve("MSFT")
        assert offline.requests == 0
        assert (again.conId, again.primaryExchange, again.localSymbol) == (first.conId, "NASDAQ", "MSFT")
        assert (await offline.by_con_id(272093)).symbol == "MSFT"
        with pytest.raises(NotConnected):
            await offline.resolve("IBM")

    run(body())


# -- market data --------------------------------------------------------------------------------------


def test_subscribe_when_two_owners_then_one_stream_until_both_unsubscribe(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await started(exchange)
        market_data = MarketData(session)
        ticks = Ticks(market_data, con_id=AAPL.conId)
        try:
            first = market_data.subscribe("sma", AAPL)
            assert market_data.subscribe("cli", AAPL) is first
            assert first.requests == 1
            tick = await ticks.after(0)
            assert tick.topic == "AAPL" and tick.con_id == 265598 and not tick.delayed
            assert tick.bid > 0 and tick.ask >= tick.bid
            assert set(tick.as_row()) >= {"time", "bid", "ask", "last", "volume", "delayed"}

            assert market_data.unsubscribe("sma", AAPL)
            assert not market_data.unsubscribe("sma", AAPL)
            assert market_data.owners(AAPL) == {"cli"}
            await ticks.after(len(ticks.items))  # still streaming for the other owner

            assert market_data.unsubscribe("cli", AAPL)
            assert market_data.get(AAPL) is None
            assert session.ib.wrapper.ticker2ReqId["mktData"] == {}
            await asyncio.sleep(0.3)  # ticks already on the wire may still land
            count = len(ticks.items)
            await asyncio.sleep(1.0)  # the fast market quotes 4 times a second: none may come
            assert len(ticks.items) == count
        finally:
            market_data.close()
            await session.close()

    run(body())


def test_unsubscribe_owner_when_owner_stops_then_only_its_streams_end(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = await started(exchange)
        market_data = MarketData(session)
        msft = Ticks(market_data, con_id=MSFT.conId)
        try:
            market_data.subscribe("a", AAPL)
            market_data.subscribe("a", MSFT)
            market_data.subscribe("b", MSFT)
            assert market_data.unsubscribe_owner("a") == 2
            assert market_data.get(AAPL) is None
            assert market_data.owners(MSFT) == {"b"}
            await msft.after(0)
            assert [s.topic for s in market_data.subscriptions()] == ["MSFT"]
        finally:
            market_data.close()
            await session.close()

    run(body())


def test_subscribe_when_session_not_yet_connected_then_requested_on_connect(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        session = fast_session(exchange.host, exchange.port)
        market_data = MarketData(session)
        ticks = Ticks(market_data)
        sub = market_data.subscribe("warmup", AAPL)
        assert sub.requests == 0 and sub.ticker is None
        with pytest.raises(ValueError, match="qualified"):
            market_data.subscribe("x", Contract(symbol="AAPL", secType="STK"))
        try:
            await session.connect(timeout=10)
            assert (await ticks.after(0)).con_id == AAPL.conId
            assert sub.requests == 1
            snapshot = await market_data.snapshot(MSFT)
            assert snapshot.topic == "MSFT" and snapshot.bid > 0
        finally:
            market_data.close()
            await session.close()

    run(body())


def test_subscribe_when_live_data_not_permitted_then_delayed_fallback_is_marked_and_streams(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 354, reqId \d+: Requested market data is not subscribed")

    async def body() -> None:
        session = await started(exchange)
        market_data = MarketData(session)
        ticks = Ticks(market_data)
        try:
            sub = market_data.subscribe("s", AAPL)
            first = await ticks.after(0)
            assert first.market_data_type == LIVE and not sub.info()["delayed"]
            # what ib_async does when TWS answers the request with 354
            session.ib.wrapper.error(sub.req_id, 354, "Requested market data is not subscribed.", "")
            assert sub.delayed_fallback and sub.requests == 2
            assert sub.error is not None and sub.error.code == 354
            deadline = time.monotonic() + 5
            tick = await ticks.after(len(ticks.items))
            while not tick.delayed and time.monotonic() < deadline:
                tick = await ticks.after(len(ticks.items))
            assert tick.market_data_type == DELAYED and tick.delayed and tick.as_row()["delayed"]
            assert sub.delayed and sub.info()["delayed_fallback"]
        finally:
            market_data.close()
            await session.close()

    run(body())


def test_subscribe_when_no_data_at_all_then_marked_failed_with_the_error(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 10168, reqId \d+")

    async def body() -> None:
        session = await started(exchange)
        market_data = MarketData(session, delayed_fallback=False)
        try:
            sub = market_data.subscribe("s", MSFT)
            text = "Requested market data is not subscribed. Delayed market data is not enabled."
            session.ib.wrapper.error(sub.req_id, 10168, text, "")
            assert sub.failed and not sub.delayed_fallback
            assert sub.info()["error"] == f"IB 10168 (reqId {sub.req_id}): {text}"
        finally:
            market_data.close()
            await session.close()

    run(body())
