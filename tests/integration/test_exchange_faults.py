"""Faults on command, seen from stock ib_async: the exchange process runs its control RPC on a free
endpoint; faults are triggered through ``cli.py exchange ...`` (a real process) or the RPC, and
observed on real ``ib_async.IB`` clients through their events. Any ib_async ERROR record fails a
test unless it is what the fault is meant to produce (``ib_log_guard.allow``). Every test puts the
exchange back as it found it (farms OK, no delay, pacing on, connectivity up); the account reset
runs last.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Stock, StopOrder, Ticker, Trade

from tests.integration.exchange_fixtures import (
    ExchangeProcess,
    IbLogGuard,
    connect,
    connected,
    next_client_id,
    run,
    wait_until,
)
from tests.support import ROOT, free_endpoint
from trader.messaging.rpc import AsyncRpcClient

pytestmark = pytest.mark.integration

CONNECTIVITY = "Connectivity between IB and Trader Workstation has been"
DISCONNECT_LOGS = r"Peer closed connection|reset by peer|Connection lost|Socket disconnected|Disconnected"


@pytest.fixture(scope="module")
def exchange_env() -> dict[str, str]:
    return {"BOURSE_MARKET_STEP_MS": "100", "BOURSE_MARKET_TICK_RATE": "10"}


@pytest.fixture(scope="module")
def control_endpoint(exchange: ExchangeProcess) -> str:
    """The module exchange's control RPC (a free port)."""
    assert exchange.control.startswith("tcp://127.0.0.1:")
    return exchange.control


# -- helpers ------------------------------------------------------------------------------------------


async def cli(endpoint: str, *args: str) -> tuple[int, str, str]:
    """``cli.py exchange <args> --endpoint <endpoint>`` as a real process: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "cli.py",
        "exchange",
        *args,
        "--endpoint",
        endpoint,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_json(endpoint: str, *args: str) -> Any:
    code, out, err = await cli(endpoint, *args, "--json")
    assert code == 0, f"cli.py exchange {' '.join(args)} failed ({code}):\n{out}\n{err}"
    envelope = json.loads(out)
    assert envelope["ok"] is True
    return envelope["result"]


@asynccontextmanager
async def control(endpoint: str) -> AsyncIterator[AsyncRpcClient]:
    async with AsyncRpcClient(endpoint, timeout=5.0) as rpc:
        yield rpc


class Errors:
    """Every ``errorEvent`` of one IB as (reqId, code, text)."""

    def __init__(self, ib: IB) -> None:
        self.items: list[tuple[int, int, str]] = []
        ib.errorEvent += self.on_error

    def on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        self.items.append((req_id, code, text))

    def codes(self) -> list[int]:
        return [code for _, code, _ in self.items]

    def has(self, code: int, req_id: int | None = None) -> bool:
        return any(c == code and (req_id is None or r == req_id) for r, c, _ in self.items)


async def until_error(ib: IB, errors: Errors, code: int, req_id: int | None = None) -> tuple[int, int, str]:
    await wait_until(lambda: errors.has(code, req_id), ib, 5.0, f"error {code}")
    return next(e for e in errors.items if e[1] == code and (req_id is None or e[0] == req_id))


async def until_status(ib: IB, trade: Trade, *statuses: str, within: float = 5.0) -> None:
    await wait_until(lambda: trade.orderStatus.status in statuses, ib, within, f"status in {statuses}")


async def filled(ib: IB, trade: Trade, within: float = 5.0) -> None:
    """Filled, with every fill's commission report in."""

    def done() -> bool:
        fills = trade.fills
        return (
            trade.orderStatus.status == "Filled"
            and bool(fills)
            and all(f.commissionReport.execId for f in fills)
        )

    await wait_until(done, ib, within, "fill + commission")


async def quoting(ib: IB, symbol: str, generic: str = "") -> Ticker:
    """A streaming ticker with a first two-sided quote."""
    (contract,) = await ib.qualifyContractsAsync(Stock(symbol, "SMART", "USD"))
    assert isinstance(contract, Contract)
    ticker = ib.reqMktData(contract, generic)
    await wait_until(lambda: ticker.bid > 0 and ticker.ask > 0, ib, 5.0, f"{symbol} quote")
    return ticker


async def updates(ib: IB, ticker: Ticker, count: int) -> None:
    """Wait for ``count`` more updates of ``ticker`` (a market clock for "nothing else came")."""
    seen = 0

    def on_update(_: Ticker) -> None:
        nonlocal seen
        seen += 1

    ticker.updateEvent += on_update
    try:
        await wait_until(lambda: seen >= count, ib, 5.0, f"{count} updates of {ticker.contract}")
    finally:
        ticker.updateEvent -= on_update


def contract_of(ticker: Ticker) -> Contract:
    assert ticker.contract is not None
    return ticker.contract


class Counter:
    """Counts the updates of a ticker from now on."""

    def __init__(self, ticker: Ticker) -> None:
        self.count = 0
        ticker.updateEvent += self.on_update

    def on_update(self, _: Ticker) -> None:
        self.count += 1


async def disconnected(ib: IB, within: float = 5.0) -> None:
    if ib.isConnected():
        await asyncio.wait_for(_next(ib.disconnectedEvent), within)


async def _next(event: Any) -> Any:
    return await event


# -- status, drop, restart ----------------------------------------------------------------------------


def test_status_when_client_connected_then_cli_json_lists_it_with_market_and_faults(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            status = await cli_json(control_endpoint, "status")
            assert ib.client.clientId in status["clients"]
            assert status["listening"] is True and status["port"] == exchange.port
            assert status["market"]["hours"] == "always" and status["market"]["step_ms"] == 100
            assert status["pacing"] is True and status["active"] == []
            assert status["uptime_s"] > 0 and status["faults"]["connectivity"] == "ok"
            code, out, _ = await cli(control_endpoint, "status")
            assert code == 0 and "paper exchange" in out and "faults active" in out

    run(body())


def test_drop_when_commanded_then_every_client_sees_disconnected_event(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)

    async def body() -> None:
        first, second = await connect(exchange), await connect(exchange)
        try:
            result = await cli_json(control_endpoint, "drop")
            assert result["dropped"] >= 2
            await asyncio.gather(disconnected(first), disconnected(second))
            assert not first.isConnected() and not second.isConnected()
        finally:
            first.disconnect()
            second.disconnect()

    run(body())


def test_restart_when_commanded_then_refused_for_n_seconds_then_order_ids_continue(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)
    ib_log_guard.allow(r"API connection failed: ConnectionRefusedError|Make sure API port")
    client_id = next_client_id()
    downtime = 1.5

    async def body() -> None:
        ib = await connect(exchange, client_id)
        trade = ib.placeOrder(Stock("WMT", "SMART", "USD"), MarketOrder("BUY", 5))
        await filled(ib, trade)
        used = trade.order.orderId
        started = time.monotonic()
        result = await cli_json(control_endpoint, "restart", "--seconds", str(downtime))
        assert result == {"dropped": result["dropped"], "refusing_for_s": downtime} and result["dropped"] >= 1
        await disconnected(ib)
        with pytest.raises(ConnectionRefusedError):
            await IB().connectAsync(exchange.host, exchange.port, clientId=client_id, timeout=2)
        while True:  # no event tells when a port listens again: probe it
            try:
                _, writer = await asyncio.open_connection(exchange.host, exchange.port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            break
        assert time.monotonic() - started >= downtime - 0.05
        again = await connect(exchange, client_id)
        try:
            order = again.placeOrder(Stock("WMT", "SMART", "USD"), MarketOrder("SELL", 5))
            assert order.order.orderId > used
            await filled(again, order)
        finally:
            again.disconnect()

    run(body())


# -- connectivity and farms ---------------------------------------------------------------------------


def test_connectivity_when_lost_then_1100_orders_refused_reports_held_until_1102(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(rf"Error 1100, reqId -1: {CONNECTIVITY} lost\.")
    ib_log_guard.allow(rf"Error 1102, reqId -1: {CONNECTIVITY} restored - data maintained\.")
    ib_log_guard.allow(rf"Error 201, reqId \d+: Order rejected - reason:{CONNECTIVITY} lost\.")

    async def body() -> None:
        async with connected(exchange) as ib, control(control_endpoint) as rpc:
            errors = Errors(ib)
            ticker = await quoting(ib, "MSFT")
            resting = ib.placeOrder(contract_of(ticker), LimitOrder("BUY", 1, round(ticker.ask * 0.97, 2)))
            await until_status(ib, resting, "Submitted")
            try:
                await rpc.call("connectivity", change="lost")
                assert (await until_error(ib, errors, 1100))[2] == f"{CONNECTIVITY} lost."
                refused = ib.placeOrder(contract_of(ticker), MarketOrder("BUY", 1))
                await until_status(ib, refused, "Inactive")
                assert (await until_error(ib, errors, 201, refused.order.orderId))[2].endswith(
                    f"{CONNECTIVITY} lost."
                )
                ib.cancelOrder(resting.order)
                await until_error(ib, errors, 2110, resting.order.orderId)  # a warning: the order works on
                await rpc.call(
                    "shock", symbol="MSFT", percent=-8.0
                )  # fills the resting order at the exchange
                status = await rpc.call("status")
                assert status["held_events"] > 0 and status["active"] == ["connectivity lost"]
                assert resting.orderStatus.status != "Filled"
            finally:
                result = await rpc.call("connectivity", change="restored")
            assert result["released"] > 0
            assert (await until_error(ib, errors, 1102))[2] == f"{CONNECTIVITY} restored - data maintained."
            await filled(ib, resting)
            await updates(ib, ticker, 2)  # data maintained: the stream carries on

    run(body())


def test_connectivity_when_restored_with_data_lost_then_1101_and_subscriptions_dropped(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(rf"Error 110[01], reqId -1: {CONNECTIVITY} (lost|restored - data lost)\.")

    async def body() -> None:
        async with connected(exchange) as ib, control(control_endpoint) as rpc:
            errors = Errors(ib)
            old = await quoting(ib, "NVDA")
            try:
                await rpc.call("connectivity", change="lost")
                await until_error(ib, errors, 1100)
            finally:
                result = await rpc.call("connectivity", change="restored-data-lost")
            assert result["market_data_dropped"] >= 1
            assert (await until_error(ib, errors, 1101))[2] == f"{CONNECTIVITY} restored - data lost."
            old_updates = Counter(old)
            clock = await quoting(ib, "TSLA")  # a new subscription streams...
            await updates(ib, clock, 4)
            assert old_updates.count == 0, "...the old one was dropped"

    run(body())


def test_farm_when_state_changes_then_tws_notices_reach_clients_and_new_clients(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib, control(control_endpoint) as rpc:
            errors = Errors(ib)
            try:
                result = await cli_json(control_endpoint, "farm", "--name", "usfarm", "--state", "broken")
                assert result["code"] == 2103 and result["clients"] >= 1
                notice = await until_error(ib, errors, 2103)
                assert notice == (-1, 2103, "Market data farm connection is broken:usfarm")
                await rpc.call("farm", name="ushmds", state="broken")
                assert (await until_error(ib, errors, 2105))[
                    2
                ] == "HMDS data farm connection is broken:ushmds"
                late = IB()
                late_errors = Errors(late)
                await late.connectAsync(exchange.host, exchange.port, clientId=next_client_id(), timeout=5)
                try:
                    await until_error(late, late_errors, 2105)
                    assert late_errors.has(2103), "a new client learns the farms that are not OK"
                finally:
                    late.disconnect()
                for name, state, code, text in [
                    ("usfarm", "inactive", 2108, "inactive but should be available upon demand.usfarm"),
                    ("secdefnj", "broken", 2157, "Sec-def data farm connection is broken:secdefnj"),
                ]:
                    await rpc.call("farm", name=name, state=state)
                    assert (await until_error(ib, errors, code))[2].endswith(text)
            finally:
                for name in ("usfarm", "ushmds", "secdefnj"):
                    await rpc.call("farm", name=name, state="ok")
            for code, text in [
                (2104, "Market data farm connection is OK:usfarm"),
                (2106, "HMDS data farm connection is OK:ushmds"),
                (2158, "Sec-def data farm connection is OK:secdefnj"),
            ]:
                await until_error(ib, errors, code)
                assert (-1, code, text) in errors.items

    run(body())


# -- orders: rejections and delays --------------------------------------------------------------------


def test_reject_next_when_queued_via_cli_then_orders_end_with_status_and_code(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    text = "The security is not available or allowed for this account."
    ib_log_guard.allow(rf"Error 203, reqId \d+: {text}")
    ib_log_guard.allow(r"Error 201, reqId \d+: Order rejected - reason:Rejected by the paper exchange")

    async def body() -> None:
        async with connected(exchange) as ib:
            errors = Errors(ib)
            contract = Stock("BA", "SMART", "USD")
            result = await cli_json(
                control_endpoint,
                "reject-next",
                "--count",
                "1",
                "--code",
                "203",
                "--text",
                text,
                "--status",
                "Cancelled",
            )
            assert result["queued"] == 1
            first = ib.placeOrder(contract, MarketOrder("BUY", 1))
            await until_status(ib, first, "Cancelled")
            assert (await until_error(ib, errors, 203, first.order.orderId))[2] == text
            await cli_json(control_endpoint, "reject-next", "--count", "1")
            second = ib.placeOrder(contract, MarketOrder("BUY", 1))
            await until_status(ib, second, "Inactive")
            await until_error(ib, errors, 201, second.order.orderId)
            third = ib.placeOrder(contract, MarketOrder("BUY", 1))
            await filled(ib, third)
            assert third.order.orderId > second.order.orderId > first.order.orderId

    run(body())


def test_delay_when_set_then_acknowledgement_and_fill_arrive_no_earlier_than_delay(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    delay_ms = 400

    async def body() -> None:
        async with connected(exchange) as ib, control(control_endpoint) as rpc:
            acked: list[float] = []
            try:
                assert await rpc.call("delay", ms=delay_ms) == {"delay_ms": delay_ms}
                started = time.perf_counter()
                trade = ib.placeOrder(Stock("XOM", "SMART", "USD"), MarketOrder("BUY", 1))
                trade.statusEvent += lambda t: acked.append(time.perf_counter()) if not acked else None
                await filled(ib, trade)
                fill_ms = (time.perf_counter() - started) * 1000
            finally:
                await rpc.call("delay", ms=0)
            assert acked and (acked[0] - started) * 1000 >= delay_ms
            assert fill_ms >= delay_ms, f"fill after {fill_ms:.0f} ms"

    run(body())


# -- market: shock, halt, pacing ----------------------------------------------------------------------


def test_shock_when_down_10_percent_then_next_quote_moves_and_stop_triggers(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            ticker = await quoting(ib, "AMZN")
            before = ticker.midpoint()
            stop = ib.placeOrder(contract_of(ticker), StopOrder("SELL", 1, round(before * 0.95, 2)))
            await until_status(ib, stop, "PreSubmitted", "Submitted")
            result = await cli_json(control_endpoint, "shock", "--symbol", "AMZN", "--percent", "-10")
            assert result["after"] == pytest.approx(result["before"] * 0.9, rel=0.003)
            await wait_until(lambda: ticker.midpoint() < before * 0.93, ib, 5.0, "the shocked quote")
            assert ticker.midpoint() == pytest.approx(before * 0.9, rel=0.02)
            await filled(ib, stop)
            assert stop.orderStatus.avgFillPrice < before * 0.95

    run(body())


def test_halt_when_halted_then_tick_49_quotes_stop_orders_held_until_resume(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            ticker = await quoting(ib, "GOOGL", "49")
            try:
                await cli_json(control_endpoint, "halt", "--symbol", "GOOGL")
                await wait_until(lambda: ticker.halted == 1.0, ib, 5.0, "halted tick")
                halted = Counter(ticker)
                order = ib.placeOrder(contract_of(ticker), MarketOrder("BUY", 1))
                await until_status(ib, order, "PreSubmitted")
                await updates(ib, await quoting(ib, "META"), 4)
                assert halted.count == 0, "no quotes while halted"
                assert order.orderStatus.status == "PreSubmitted"
            finally:
                await cli_json(control_endpoint, "resume", "--symbol", "GOOGL")
            await wait_until(lambda: ticker.halted == 0.0, ib, 5.0, "resumed tick")
            await filled(ib, order)

    run(body())


def test_pacing_when_on_then_identical_history_request_within_15_s_gets_162(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(r"Error 162, reqId \d+: Historical Market Data Service error message:Historical data")

    async def body() -> None:
        async with connected(exchange) as ib:
            errors = Errors(ib)
            assert await cli_json(control_endpoint, "pacing", "on") == {"pacing": True}
            contract = Stock("IBM", "SMART", "USD")
            first = await ib.reqHistoricalDataAsync(contract, "", "1800 S", "1 min", "TRADES", useRTH=False)
            second = await ib.reqHistoricalDataAsync(contract, "", "1800 S", "1 min", "TRADES", useRTH=False)
            assert first and not second
            assert errors.codes() == [162]

    run(body())


def test_pacing_when_off_then_identical_history_requests_are_served(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    async def body() -> None:
        async with connected(exchange) as ib:
            errors = Errors(ib)
            try:
                assert await cli_json(control_endpoint, "pacing", "off") == {"pacing": False}
                contract = Stock("DIS", "SMART", "USD")
                for _ in range(3):
                    bars = await ib.reqHistoricalDataAsync(
                        contract, "", "1800 S", "1 min", "TRADES", useRTH=False
                    )
                    assert len(bars) >= 29
            finally:
                await cli_json(control_endpoint, "pacing", "on")
            assert 162 not in errors.codes()

    run(body())


# -- the CLI's errors, and the account reset (last: it forgets every order) ---------------------------


def test_cli_when_unreachable_bad_params_or_unconfirmed_then_one_error_line_and_exit_1(
    control_endpoint: str,
) -> None:
    async def body() -> None:
        nobody = free_endpoint()
        results = await asyncio.gather(
            cli(nobody, "status", "--timeout", "1"),
            cli(control_endpoint, "shock", "--symbol", "NOPE", "--percent", "5"),
            cli(control_endpoint, "reset"),
            cli(control_endpoint, "restart", "--seconds", "0"),
        )
        unreachable, unknown, unconfirmed, bad_option = results
        for code, out, err in (unreachable, unknown, unconfirmed):
            assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
        assert f"at {nobody} did not answer" in unreachable[2]
        assert "bad_params" in unknown[2] and "unknown symbol 'NOPE'" in unknown[2]
        assert "pass --yes" in unconfirmed[2]
        assert bad_option[0] == 2 and "--seconds" in bad_option[2]

    run(body())


def test_reset_when_confirmed_then_clients_dropped_and_account_fresh(
    exchange: ExchangeProcess, control_endpoint: str, ib_log_guard: IbLogGuard
) -> None:
    ib_log_guard.allow(DISCONNECT_LOGS)
    client_id = next_client_id()

    async def body() -> None:
        ib = await connect(exchange, client_id)
        trade = ib.placeOrder(Stock("JPM", "SMART", "USD"), MarketOrder("BUY", 10))
        await filled(ib, trade)
        assert ib.positions()
        result = await cli_json(control_endpoint, "reset", "--yes", "--cash", "500000")
        assert result["dropped"] >= 1 and result["cash"] == 500_000
        await disconnected(ib)
        async with connected(exchange, client_id) as again:
            assert again.positions() == [] and again.openTrades() == []
            values = {v.tag: v.value for v in again.accountValues() if v.currency == "USD"}
            assert float(values["TotalCashValue"]) == 500_000
            order = again.placeOrder(Stock("JPM", "SMART", "USD"), MarketOrder("BUY", 1))
            assert order.order.orderId > trade.order.orderId, "order ids keep increasing"
            await filled(again, order)

    run(body())
