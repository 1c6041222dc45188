"""The paper exchange as stock ib_async sees it: connect, orders of every kind, fills, commissions,
executions, several clients, and clients that misbehave. One exchange process for the module;
every test uses fresh client ids and its own symbols, and any ib_async ERROR log fails it."""

from __future__ import annotations

import asyncio
import time

import pytest
from ib_async import (
    IB,
    ExecutionFilter,
    LimitOrder,
    MarketOrder,
    Order,
    Stock,
    StopLimitOrder,
    StopOrder,
    Trade,
)

from tests.integration.exchange_fixtures import (
    ACCOUNT,
    ExchangeProcess,
    IbLogGuard,
    RawClient,
    anchor_price,
    connect,
    connected,
    next_client_id,
    next_event,
    run,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ib_log_guard")]


def stock(symbol: str) -> Stock:
    return Stock(symbol, "SMART", "USD")


def far_below(symbol: str) -> float:
    return round(anchor_price(symbol) * 0.2, 2)


def far_above(symbol: str) -> float:
    return round(anchor_price(symbol) * 5, 2)


def commissions_in(trade: Trade) -> bool:
    return bool(trade.fills) and all(f.commissionReport.execId for f in trade.fills)


async def until_status(ib: IB, trade: Trade, *statuses: str, within: float = 5.0) -> None:
    await wait_until(
        lambda: trade.orderStatus.status in statuses, ib, within, f"{trade.order.orderType} in {statuses}"
    )


async def until_filled(ib: IB, trade: Trade, within: float = 10.0) -> None:
    """Filled, with every fill's commission report in."""
    await wait_until(
        lambda: trade.orderStatus.status == "Filled" and commissions_in(trade),
        ib,
        within,
        "fill + commission",
    )


def test_connect_when_exchange_runs_then_ready_fast_with_managed_account(exchange: ExchangeProcess) -> None:
    async def body() -> list[float]:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            ib = await connect(exchange)
            times.append((time.perf_counter() - started) * 1000)
            assert ib.isConnected()
            assert ib.managedAccounts() == [ACCOUNT]
            assert ib.client.getReqId() >= 1
            ib.disconnect()
        return times

    times = run(body())
    print(f"\nib_async connect (full startup sync): {', '.join(f'{t:.1f}' for t in times)} ms")


def test_market_buy_when_placed_then_filled_with_commission_position_and_executions(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> float:
        async with connected(exchange) as ib:
            started = time.perf_counter()
            trade = ib.placeOrder(stock("AAPL"), MarketOrder("BUY", 100))
            await until_filled(ib, trade)
            round_trip = (time.perf_counter() - started) * 1000
            assert trade.orderStatus.filled == 100
            assert trade.orderStatus.remaining == 0
            assert sum(f.execution.shares for f in trade.fills) == 100
            assert trade.fills[-1].execution.cumQty == 100
            assert sum(f.commissionReport.commission for f in trade.fills) == pytest.approx(1.00)
            assert {f.commissionReport.currency for f in trade.fills} == {"USD"}
            assert all(f.execution.side == "BOT" and f.execution.acctNumber == ACCOUNT for f in trade.fills)
            await wait_until(
                lambda: any(p.contract.symbol == "AAPL" and p.position == 100 for p in ib.positions()),
                ib,
                what="position 100 AAPL",
            )
            await wait_until(
                lambda: any(p.contract.symbol == "AAPL" and p.position == 100 for p in ib.portfolio()),
                ib,
                what="portfolio row",
            )
            item = next(p for p in ib.portfolio() if p.contract.symbol == "AAPL")
            value = sum(f.execution.shares * f.execution.price for f in trade.fills) + 1.00
            assert item.averageCost == pytest.approx(value / 100)
            assert item.unrealizedPNL == pytest.approx(item.marketValue - 100 * item.averageCost, abs=0.01)
            executions = await ib.reqExecutionsAsync(ExecutionFilter(symbol="AAPL", side="BUY"))
            assert {f.execution.execId for f in executions} == {f.execution.execId for f in trade.fills}
            assert await ib.reqExecutionsAsync(ExecutionFilter(symbol="AAPL", side="SELL")) == []
            return round_trip

    print(f"\nMKT order -> Filled + commission: {run(body()):.1f} ms")


def test_limit_when_far_then_submitted_and_when_modified_marketable_then_filled(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            trade = ib.placeOrder(stock("MSFT"), LimitOrder("BUY", 10, far_below("MSFT")))
            await until_status(ib, trade, "Submitted")
            assert trade.orderStatus.filled == 0
            trade.order.lmtPrice = far_above("MSFT")
            ib.placeOrder(stock("MSFT"), trade.order)
            await until_filled(ib, trade)
            assert all(f.execution.price < far_above("MSFT") for f in trade.fills)
            assert trade not in ib.openTrades()

    run(body())


def test_cancel_when_limit_rests_then_cancelled(exchange: ExchangeProcess, ib_log_guard: IbLogGuard) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as ib:
            trade = ib.placeOrder(stock("AMZN"), LimitOrder("SELL", 5, far_above("AMZN")))
            await until_status(ib, trade, "Submitted")
            ib.cancelOrder(trade.order)
            await next_event(trade.cancelledEvent)
            assert trade.orderStatus.status == "Cancelled"
            assert not ib.openTrades()

    run(body())


def test_stop_orders_when_far_then_presubmitted_and_when_crossed_then_filled(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as ib:
            nvda = stock("NVDA")
            resting = ib.placeOrder(nvda, StopOrder("BUY", 10, far_above("NVDA")))
            resting_limit = ib.placeOrder(
                nvda, StopLimitOrder("BUY", 10, far_above("NVDA"), far_above("NVDA"))
            )
            crossed = ib.placeOrder(nvda, StopOrder("BUY", 10, far_below("NVDA")))
            crossed_limit = ib.placeOrder(
                nvda, StopLimitOrder("BUY", 10, far_above("NVDA"), far_below("NVDA"))
            )
            await until_status(ib, resting, "PreSubmitted")
            await until_status(ib, resting_limit, "PreSubmitted")
            await until_filled(ib, crossed)
            await until_filled(ib, crossed_limit)
            for trade in (resting, resting_limit):
                ib.cancelOrder(trade.order)
                await until_status(ib, trade, "Cancelled")

    run(body())


def test_trailing_stops_when_placed_then_accepted_and_tight_trail_triggers(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as ib:
            tsla = stock("TSLA")
            by_amount = ib.placeOrder(
                tsla, Order(action="SELL", totalQuantity=5, orderType="TRAIL", auxPrice=100.0)
            )
            by_percent = ib.placeOrder(
                tsla, Order(action="SELL", totalQuantity=5, orderType="TRAIL", trailingPercent=30.0)
            )
            tight = ib.placeOrder(
                tsla, Order(action="BUY", totalQuantity=5, orderType="TRAIL", auxPrice=0.01)
            )
            await until_status(ib, by_amount, "PreSubmitted")
            await until_status(ib, by_percent, "PreSubmitted")
            await until_filled(ib, tight, within=20)
            for trade in (by_amount, by_percent):
                ib.cancelOrder(trade.order)
                await until_status(ib, trade, "Cancelled")

    run(body())


def test_bracket_when_parent_fills_then_take_profit_and_stop_become_active(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as ib:
            goog = stock("GOOGL")
            parent, take_profit, stop_loss = ib.bracketOrder(
                "BUY", 20, far_above("GOOGL"), far_above("GOOGL"), far_below("GOOGL")
            )
            trades = [ib.placeOrder(goog, order) for order in (parent, take_profit, stop_loss)]
            await until_filled(ib, trades[0])
            await until_status(ib, trades[1], "Submitted")
            await until_status(ib, trades[2], "PreSubmitted")
            assert trades[1].order.parentId == trades[2].order.parentId == trades[0].order.orderId
            for trade in trades[1:]:
                ib.cancelOrder(trade.order)
                await until_status(ib, trade, "Cancelled")

    run(body())


def test_oca_group_when_one_order_fills_then_the_other_is_cancelled(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            meta = stock("META")
            orders = ib.oneCancelsAll(
                [LimitOrder("BUY", 3, far_below("META")), LimitOrder("BUY", 3, far_above("META"))],
                f"oca-{ib.client.clientId}",
                1,
            )
            resting = ib.placeOrder(meta, orders[0])
            await until_status(ib, resting, "Submitted")
            marketable = ib.placeOrder(meta, orders[1])
            await until_filled(ib, marketable)
            await until_status(ib, resting, "Cancelled")

    run(body())


def test_partial_fills_when_order_exceeds_displayed_size_then_several_executions(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            trade = ib.placeOrder(stock("F"), MarketOrder("BUY", 1000))
            await until_filled(ib, trade, within=20)
            executions = [f.execution for f in trade.fills]
            assert len(executions) >= 2
            assert [e.cumQty for e in executions] == sorted(e.cumQty for e in executions)
            assert executions[-1].cumQty == 1000
            assert sum(e.shares for e in executions) == 1000
            assert sum(f.commissionReport.commission for f in trade.fills) == pytest.approx(5.0)
            assert trade.orderStatus.avgFillPrice == pytest.approx(
                sum(e.shares * e.price for e in executions) / 1000
            )

    run(body())


def test_what_if_when_requested_then_margin_figures_and_no_order(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            state = await asyncio.wait_for(ib.whatIfOrderAsync(stock("AMD"), MarketOrder("BUY", 100)), 5)
            change = float(state.initMarginChange)
            assert change == pytest.approx(100 * anchor_price("AMD") * 0.5, rel=0.9)
            assert float(state.maintMarginChange) == pytest.approx(change / 2, rel=1e-3)
            assert float(state.equityWithLoanAfter) < float(state.equityWithLoanBefore)
            assert state.commission == pytest.approx(1.0)
            assert not ib.openTrades()

    run(body())


def test_two_clients_when_both_trade_then_each_sees_only_its_own_orders(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as first, connected(exchange) as second:
            a = first.placeOrder(stock("NFLX"), MarketOrder("BUY", 10))
            b = second.placeOrder(stock("PYPL"), MarketOrder("BUY", 10))
            await until_filled(first, a)
            await until_filled(second, b)
            # live updates and executions are per client (completed orders are account-wide)
            assert {f.contract.symbol for f in first.fills()} == {"NFLX"}
            assert {f.contract.symbol for f in second.fills()} == {"PYPL"}
            assert not [t for t in first.trades() if t.order.clientId == second.client.clientId]

    run(body())


def test_master_client_when_other_client_trades_then_sees_its_orders_and_executions(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as trader:
            filled = trader.placeOrder(stock("WMT"), MarketOrder("BUY", 10))
            await until_filled(trader, filled)
            async with connected(exchange, client_id=0) as master:
                fills = [f for f in master.fills() if f.execution.permId == filled.order.permId]
                assert fills, "the master's startup reqExecutions includes other clients' executions"
                assert sum(f.commissionReport.commission for f in fills) == pytest.approx(1.0)
                resting = trader.placeOrder(stock("WMT"), LimitOrder("BUY", 10, far_below("WMT")))
                seen = await next_event(master.openOrderEvent)
                assert (seen.order.clientId, seen.order.orderId) == (
                    trader.client.clientId,
                    resting.order.orderId,
                )
                await wait_until(lambda: seen.orderStatus.status == "Submitted", master)
                only_buys = await master.reqExecutionsAsync(
                    ExecutionFilter(clientId=trader.client.clientId, symbol="WMT", side="BUY")
                )
                assert {f.execution.execId for f in only_buys} == {f.execution.execId for f in fills}
                trader.reqGlobalCancel()  # type: ignore[no-untyped-call]
                await until_status(trader, resting, "Cancelled")
                await wait_until(lambda: seen.orderStatus.status == "Cancelled", master)

    run(body())


def test_all_open_orders_when_requested_by_another_client_then_listed(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 202, reqId \d+: Order Canceled")

    async def body() -> None:
        async with connected(exchange) as owner, connected(exchange) as other:
            resting = owner.placeOrder(stock("ADBE"), LimitOrder("BUY", 7, far_below("ADBE")))
            await until_status(owner, resting, "Submitted")
            assert await other.reqOpenOrdersAsync() == []
            listed = await other.reqAllOpenOrdersAsync()
            mine = [t for t in listed if t.order.permId == resting.order.permId]
            assert len(mine) == 1
            assert mine[0].order.clientId == owner.client.clientId
            assert mine[0].contract.symbol == "ADBE"
            assert mine[0].order.totalQuantity == 7
            owner.cancelOrder(resting.order)
            await until_status(owner, resting, "Cancelled")

    run(body())


def test_client_id_in_use_when_second_connection_then_326_and_first_keeps_working(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 326, reqId -1: Unable to connect as the client id is already in use")
    ib_log_guard.allow(r"Peer closed connection|API connection failed|Disconnected")

    async def body() -> None:
        client_id = next_client_id()
        async with connected(exchange, client_id) as first:
            second = IB()
            errors: list[int] = []
            second.errorEvent += lambda req_id, code, text, contract: errors.append(code)
            connecting = asyncio.ensure_future(
                second.connectAsync(exchange.host, exchange.port, clientId=client_id, timeout=5)
            )
            await next_event(second.client.apiError)
            connecting.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionError)):
                await connecting
            assert errors == [326]
            assert not second.isConnected()
            assert first.isConnected()
            assert (await first.reqCurrentTimeAsync()).year >= 2025

    run(body())


def test_garbage_bytes_when_sent_then_only_that_connection_ends(exchange: ExchangeProcess) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            before_handshake = await RawClient.open(exchange)
            before_handshake.send_raw(b"GET / HTTP/1.1\r\nHost: exchange\r\n\r\n")
            assert await before_handshake.closed_by_peer()

            broken_frame = await RawClient.open(exchange)
            await broken_frame.start(next_client_id())
            broken_frame.send_raw(b"\x00\x00\x00\x00garbage")
            assert await broken_frame.closed_by_peer()

            half_sent = await RawClient.open(exchange)
            await half_sent.start(next_client_id())
            half_sent.send_raw(b"\x00\x00\x00\x40" + b"49\x001\x00")
            await half_sent.close()

            trade = ib.placeOrder(stock("BAC"), MarketOrder("BUY", 10))
            await until_filled(ib, trade)
            assert (await ib.reqCurrentTimeAsync()).year >= 2025
        for raw in (before_handshake, broken_frame):
            await raw.close()

    run(body())
    assert "closed by the client in the middle of a frame" in exchange.log_text()


def test_undecodable_request_when_sent_then_error_320_naming_it_and_connection_continues(
    exchange: ExchangeProcess,
) -> None:
    async def body() -> None:
        raw = await RawClient.open(exchange)
        try:
            await raw.start(next_client_id())
            raw.send(49, 1, "unexpected", "fields")  # REQ_CURRENT_TIME takes only its version
            error = await raw.read_until(lambda f: f[0] == "4" and int(f[3]) < 2100)
            assert (error[2], error[3]) == ("-1", "320")
            assert "REQ_CURRENT_TIME" in error[4]
            raw.send(49, 1)
            answer = await raw.read_until(lambda f: f[0] == "49" or (f[0] == "4" and f[3] == "320"))
            assert answer[0] == "49"
            assert int(answer[2]) > 1_700_000_000
        finally:
            await raw.close()

    run(body())


def test_unknown_contract_and_unsupported_request_when_sent_then_tws_errors(
    exchange: ExchangeProcess, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 200, reqId \d+: No security definition")
    ib_log_guard.allow(r"Error 503, reqId \d+: The paper exchange does not support REQ_FUNDAMENTAL_DATA")
    ib_log_guard.allow(r"Canceled order")

    async def body() -> None:
        async with connected(exchange) as ib:
            errors: list[tuple[int, int, str]] = []
            ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
            trade = ib.placeOrder(Stock("NOPE", "SMART", "USD"), MarketOrder("BUY", 1))
            await until_status(ib, trade, "Cancelled")
            assert (trade.order.orderId, 200) in [(r, c) for r, c, _ in errors]
            report = await asyncio.wait_for(ib.reqFundamentalDataAsync(stock("AAPL"), "ReportSnapshot"), 5)
            assert not report
            assert any(c == 503 and "REQ_FUNDAMENTAL_DATA" in t for _, c, t in errors)
            assert (await ib.reqCurrentTimeAsync()).year >= 2025

    run(body())
