"""The paper account as stock ib_async sees it: account values, portfolio, positions, account
summary, P&L, multi subscriptions, periodic updates, and the state surviving a restart (or not,
with --reset). Any ib_async ERROR log fails a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock, Trade

from tests.integration.exchange_fixtures import (
    ACCOUNT,
    ExchangeProcess,
    IbLogGuard,
    RawClient,
    anchor_price,
    con_id,
    connect,
    connected,
    next_client_id,
    next_event,
    run,
    start_exchange,
    wait_until,
)
from tests.support import Processes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ib_log_guard")]


@pytest.fixture(scope="module")
def exchange_env() -> dict[str, str]:
    return {
        "BOURSE_ACCOUNT_UPDATE_INTERVAL_S": "0.2",
        "BOURSE_ACCOUNT_PNL_INTERVAL_S": "0.2",
        "BOURSE_EXCHANGE_SEND_LIMIT_BYTES": "1000000",
    }


def stock(symbol: str) -> Stock:
    return Stock(symbol, "SMART", "USD")


def value(ib: IB, tag: str, currency: str = "USD") -> float:
    found = [v for v in ib.accountValues() if v.tag == tag and v.currency == currency]
    assert found, f"no account value {tag} {currency}"
    return float(found[0].value)


async def buy(ib: IB, symbol: str, shares: int, action: str = "BUY") -> Trade:
    trade = ib.placeOrder(stock(symbol), MarketOrder(action, shares))
    await wait_until(
        lambda: trade.orderStatus.status == "Filled" and all(f.commissionReport.execId for f in trade.fills),
        ib,
        10,
        "fill with commission",
    )
    return trade


def holding(ib: IB, symbol: str) -> float:
    return sum(p.position for p in ib.portfolio() if p.contract.symbol == symbol)


def test_account_values_when_market_buy_then_nlv_moves_by_mark_minus_price_minus_commission(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            assert value(ib, "NetLiquidation") == pytest.approx(1_000_000.0)
            cash_before = value(ib, "TotalCashValue")
            trade = await buy(ib, "AAPL", 100)
            await wait_until(lambda: holding(ib, "AAPL") == 100, ib, what="portfolio row")
            cost = sum(f.execution.shares * f.execution.price for f in trade.fills)
            commission = sum(f.commissionReport.commission for f in trade.fills)
            assert commission == pytest.approx(1.00)
            await wait_until(
                lambda: (
                    value(ib, "TotalCashValue") == pytest.approx(cash_before - cost - commission, abs=0.01)
                ),
                ib,
                what="cash after the fill",
            )
            # one consistent snapshot: read everything without yielding to the loop
            row = next(p for p in ib.portfolio() if p.contract.symbol == "AAPL")
            nlv, cash = value(ib, "NetLiquidation"), value(ib, "TotalCashValue")
            assert nlv == pytest.approx(cash + row.marketValue, abs=0.02)
            assert nlv - 1_000_000.0 == pytest.approx(row.marketValue - cost - commission, abs=0.02)
            assert value(ib, "GrossPositionValue") == pytest.approx(row.marketValue, abs=0.02)
            assert value(ib, "InitMarginReq") == pytest.approx(row.marketValue * 0.5, abs=0.02)
            assert row.averageCost == pytest.approx((cost + commission) / 100)

    run(body())


def test_positions_when_requested_then_match_the_portfolio(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            await buy(ib, "XOM", 30)
            await wait_until(lambda: holding(ib, "XOM") == 30, ib)
            positions = {p.contract.conId: p for p in await ib.reqPositionsAsync()}
            xom = positions[con_id("XOM")]
            assert xom.account == ACCOUNT
            assert xom.position == 30
            row = next(p for p in ib.portfolio() if p.contract.symbol == "XOM")
            assert xom.avgCost == pytest.approx(row.averageCost)

    run(body())


def test_periodic_updates_when_prices_move_then_portfolio_and_values_refresh(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            await buy(ib, "TSLA", 10)
            await wait_until(lambda: holding(ib, "TSLA") == 10, ib)
            first = next(p for p in ib.portfolio() if p.contract.symbol == "TSLA").marketPrice
            await wait_until(
                lambda: next(p for p in ib.portfolio() if p.contract.symbol == "TSLA").marketPrice != first,
                ib,
                10,
                "a portfolio row at a new mark",
            )
            row = next(p for p in ib.portfolio() if p.contract.symbol == "TSLA")
            assert row.marketValue == pytest.approx(10 * row.marketPrice)
            assert row.unrealizedPNL == pytest.approx(row.marketValue - 10 * row.averageCost, abs=0.01)

    run(body())


def test_account_summary_when_requested_then_tws_tags_and_ledger(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            summary = await asyncio.wait_for(ib.accountSummaryAsync(ACCOUNT), 5)
            tags = {(v.tag, v.currency): v.value for v in summary}
            for tag in (
                "NetLiquidation",
                "BuyingPower",
                "AvailableFunds",
                "ExcessLiquidity",
                "InitMarginReq",
            ):
                assert (tag, "USD") in tags, tag
            assert tags[("AccountType", "")] == "INDIVIDUAL"
            assert ("CashBalance", "BASE") in tags and ("CashBalance", "USD") in tags  # $LEDGER:ALL
            assert float(tags[("NetLiquidation", "USD")]) == pytest.approx(
                value(ib, "NetLiquidation"), rel=1e-3
            )
            assert float(tags[("Leverage", "")]) >= 0

    run(body())


def test_pnl_when_subscribed_then_periodic_account_and_single_updates(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            await buy(ib, "NVDA", 40)
            await wait_until(lambda: holding(ib, "NVDA") == 40, ib)
            pnl = ib.reqPnL(ACCOUNT)
            single = ib.reqPnLSingle(ACCOUNT, "", con_id("NVDA"))
            updates: list[float] = []
            ib.pnlEvent += lambda p: updates.append(p.unrealizedPnL)
            await wait_until(lambda: len(updates) >= 2, ib, 5, "two pnl updates")
            await wait_until(lambda: single.position == 40, ib, what="pnlSingle")
            row = next(p for p in ib.portfolio() if p.contract.symbol == "NVDA")
            assert single.value == pytest.approx(row.marketValue, rel=0.05)
            assert single.unrealizedPnL == pytest.approx(single.value - 40 * row.averageCost, abs=0.5)
            assert pnl.dailyPnL == pnl.dailyPnL  # a number, not NaN
            ib.cancelPnL(ACCOUNT)
            ib.cancelPnLSingle(ACCOUNT, "", con_id("NVDA"))
            assert (await ib.reqCurrentTimeAsync()).year >= 2025

    run(body())


def test_multi_subscriptions_when_requested_then_values_and_positions_with_end(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            await buy(ib, "IBM", 5)
            await wait_until(lambda: holding(ib, "IBM") == 5, ib)
            rows: list[tuple[int, float]] = []
            ended = asyncio.Event()
            # ib_async ignores positionMulti; listen on its wrapper
            setattr(  # noqa: B010
                ib.wrapper,
                "positionMulti",
                lambda req_id, account, model, contract, pos, cost: rows.append((contract.conId, pos)),
            )
            setattr(ib.wrapper, "positionMultiEnd", lambda req_id: ended.set())  # noqa: B010
            ib.client.reqPositionsMulti(ib.client.getReqId(), ACCOUNT, "")  # type: ignore[no-untyped-call]
            await asyncio.wait_for(ended.wait(), 5)
            assert (con_id("IBM"), 5) in rows
            await asyncio.wait_for(ib.reqAccountUpdatesMultiAsync(ACCOUNT), 5)
            assert value(ib, "NetLiquidation") > 0

    run(body())


def test_sell_when_position_closed_then_realized_pnl_and_position_gone(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            opened = await buy(ib, "WFC", 50)
            await wait_until(lambda: holding(ib, "WFC") == 50, ib)
            closed = await buy(ib, "WFC", 50, "SELL")
            await wait_until(lambda: all(p.contract.symbol != "WFC" for p in ib.positions()), ib)
            bought = sum(f.execution.shares * f.execution.price for f in opened.fills) + 1.0
            sold = sum(f.execution.shares * f.execution.price for f in closed.fills) - 1.0
            realized = sum(f.commissionReport.realizedPNL for f in closed.fills)
            assert realized == pytest.approx(sold - bought, abs=0.01)

    run(body())


def test_slow_reader_when_backlog_exceeds_limit_then_only_it_is_disconnected(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            raw = await RawClient.open(exchange)
            await raw.start(next_client_id())
            # ~5 KB of account values per request, never read: far beyond the 1 MB limit plus
            # what the kernel buffers on loopback
            for _ in range(8000):
                raw.send(6, 2, 1, ACCOUNT)
            await raw.writer.drain()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while "stopped reading" not in exchange.log_text():  # no event to await: poll its log
                assert loop.time() < deadline, "the exchange never dropped the slow reader"
                await asyncio.sleep(0.05)
            assert await raw.closed_by_peer()
            await raw.close()
            assert (await ib.reqCurrentTimeAsync()).year >= 2025
            trade = await buy(ib, "SLV", 10)
            assert trade.orderStatus.status == "Filled"

    run(body())


async def saved_state_has(exchange: ExchangeProcess, predicate: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the exchange's state file satisfies ``predicate`` (written at most 0.25 s after a
    change; there is no event to await, so poll the file)."""
    path = exchange.data_dir / "exchange" / "state.json"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if predicate(json.loads(path.read_text())):
                return
        assert loop.time() < deadline, f"{path} never reached the expected state"
        await asyncio.sleep(0.02)


def test_restart_when_state_saved_then_positions_orders_and_ids_continue_and_reset_clears(
    procs: Processes, exchange_dir: Path, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Peer closed connection")
    client_id = next_client_id()
    first = start_exchange(procs, exchange_dir)

    async def trade_then_crash() -> tuple[int, int, set[str]]:
        ib = await connect(first, client_id)
        filled = await buy(ib, "MSFT", 100)
        resting = ib.placeOrder(stock("MSFT"), LimitOrder("BUY", 10, round(anchor_price("MSFT") * 0.2, 2)))
        await wait_until(lambda: resting.orderStatus.status == "Submitted", ib)
        await saved_state_has(
            first, lambda state: any(o["order"]["permId"] == resting.order.permId for o in state["orders"])
        )
        first.child.kill(signal.SIGKILL)  # no graceful save: the per-event save must have happened
        await next_event(ib.disconnectedEvent)
        return resting.order.orderId, resting.order.permId, {f.execution.execId for f in filled.fills}

    resting_id, resting_perm, exec_ids = run(trade_then_crash())
    first.child.popen.wait(5)
    second = start_exchange(procs, exchange_dir, port=first.port)

    async def after_restart() -> None:
        async with connected(second, client_id) as ib:
            assert {p.contract.symbol: p.position for p in ib.positions()} == {"MSFT": 100}
            assert [(t.order.orderId, t.order.permId) for t in ib.openTrades()] == [
                (resting_id, resting_perm)
            ]
            assert ib.client.getReqId() > resting_id
            fills = [f for f in ib.fills() if f.execution.execId in exec_ids]
            assert len(fills) == len(exec_ids)
            assert sum(f.commissionReport.commission for f in fills) == pytest.approx(1.0)

    run(after_restart())
    assert second.child.stop() == 0  # SIGTERM: clean shutdown
    third = start_exchange(procs, exchange_dir, port=first.port, args=("--reset",))

    async def after_reset() -> None:
        async with connected(third, client_id) as ib:
            assert ib.positions() == []
            assert ib.openTrades() == []
            assert value(ib, "NetLiquidation") == pytest.approx(1_000_000.0)

    run(after_reset())
    third.assert_healthy()
