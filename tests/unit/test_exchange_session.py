"""The exchange's session layer without sockets: the send buffer, a session driven through a fake
transport (handshake, startApi, errors, misbehaving clients), the server's routing, the order and
account mappings, the state file and the configuration."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trader.config.exchange import ExchangeConfig
from trader.config.schema import ConfigError, load
from trader.exchange.account import Account, AccountValue
from trader.exchange.events import CommissionReportEvent, Event, ExecutionEvent
from trader.exchange.feature_account import summary_rows
from trader.exchange.feature_connect import ConnectFeature
from trader.exchange.feature_orders import (
    OrdersFeature,
    engine_order,
    order_fields,
    parse_filter_time,
    resolve_contract,
)
from trader.exchange.instruments import load_universe
from trader.exchange.market import Market, MarketConfig, Quote
from trader.exchange.matching import EngineConfig, MatchingEngine
from trader.exchange.persistence import StateStore, open_engine
from trader.exchange.protocol import (
    UNSET_DOUBLE,
    ApiRequest,
    ContractFields,
    ExecutionFilterFields,
    FrameParser,
    OrderFields,
    PlaceOrder,
    ReqPositions,
    encode_fields,
)
from trader.exchange.server import ExchangeServer, build_server
from trader.exchange.session import ClientSession, SendBuffer
from trader.exchange.session_api import ExchangeCore, Handler, Session

NS = 1_000_000_000
UNIVERSE = load_universe(always_open=True)
NOW = int(datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()) * NS
AAPL = 265598
ROOT = Path(__file__).resolve().parents[2]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.writes = 0
        self.buffer_size = 0
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def frames(self) -> list[list[str]]:
        return FrameParser().feed(bytes(self.data))


def make_core() -> ExchangeCore:
    market = Market(UNIVERSE, MarketConfig(seed=1))
    engine = MatchingEngine(UNIVERSE, market, Account(UNIVERSE, "DU1234567", 1_000_000.0))
    return ExchangeCore(UNIVERSE, market, engine, "DU1234567", clock=lambda: NOW)


def make_server(*extra: Any) -> ExchangeServer:
    return ExchangeServer(make_core(), [ConnectFeature(), OrdersFeature(), *extra], port=0)


def handshake(low: int = 157, high: int = 178) -> bytes:
    payload = f"v{low}..{high}".encode()
    return b"API\0" + struct.pack(">I", len(payload)) + payload


def start_api(client_id: int) -> bytes:
    return encode_fields(71, 2, client_id, "")


async def open_session(
    server: ExchangeServer, client_id: int | None = None
) -> tuple[ClientSession, FakeTransport]:
    session = ClientSession(server, 1)
    transport = FakeTransport()
    session.connection_made(transport)
    data = handshake() + (start_api(client_id) if client_id is not None else b"")
    session.data_received(data)
    await asyncio.sleep(0)
    return session, transport


def errors(transport: FakeTransport) -> list[tuple[int, int, str]]:
    return [(int(f[2]), int(f[3]), f[4]) for f in transport.frames() if f[0] == "4"]


# -- send buffer --------------------------------------------------------------------------------------


def test_send_buffer_when_frames_pushed_then_one_ordered_write_at_the_next_loop_turn() -> None:
    async def body() -> None:
        transport = FakeTransport()
        out = SendBuffer(transport, asyncio.get_running_loop(), 1000, lambda n: None)
        for i in range(5):
            out.push(encode_fields(i))
        assert transport.writes == 0  # never written synchronously
        await asyncio.sleep(0)
        assert transport.writes == 1
        assert [f[0] for f in transport.frames()] == ["0", "1", "2", "3", "4"]

    asyncio.run(body())


def test_send_buffer_when_delayed_then_frames_leave_when_due_in_order() -> None:
    async def body() -> None:
        transport = FakeTransport()
        delay = [0.05]
        out = SendBuffer(transport, asyncio.get_running_loop(), 1000, lambda n: None, lambda: delay[0])
        out.push(encode_fields("late"))
        delay[0] = 0.0
        out.push(encode_fields("after"))
        await asyncio.sleep(0.01)
        assert transport.frames() == []
        await asyncio.sleep(0.08)
        assert transport.frames() == [["late"], ["after"]]

    asyncio.run(body())


def test_send_buffer_when_client_stops_reading_beyond_limit_then_overflow_once() -> None:
    async def body() -> None:
        transport = FakeTransport()
        overflows: list[int] = []
        out = SendBuffer(transport, asyncio.get_running_loop(), 100, overflows.append)
        transport.buffer_size = 90  # the kernel and the transport hold what the client did not read
        out.push(encode_fields("x" * 20))
        assert overflows and overflows[0] > 100
        out.push(encode_fields("more"))
        await asyncio.sleep(0)
        assert len(overflows) == 1
        assert transport.writes == 0

    asyncio.run(body())


# -- sessions over a fake transport ----------------------------------------------------------------------


def test_session_when_handshake_and_start_api_then_hello_accounts_next_id_and_farm_notices() -> None:
    async def body() -> None:
        session, transport = await open_session(make_server(), client_id=7)
        frames = transport.frames()
        assert len(frames[0]) == 2 and frames[0][0] == "178"  # the handshake reply
        assert ["15", "1", "DU1234567"] in frames
        assert ["9", "1", "1"] in frames
        assert [code for _, code, _ in errors(transport)] == [2104, 2104, 2104, 2106, 2158]
        assert session.client_id == 7 and session.started

    asyncio.run(body())


def test_session_when_client_id_in_use_then_326_and_closed_while_first_stays() -> None:
    async def body() -> None:
        server = make_server()
        first, _ = await open_session(server, client_id=3)
        second, transport = await open_session(server, client_id=3)
        assert errors(transport)[-1][:2] == (-1, 326)
        assert transport.closed and second.closed
        assert server.clients[3] is first

    asyncio.run(body())


def test_session_when_garbage_instead_of_handshake_then_connection_closed() -> None:
    async def body() -> None:
        session = ClientSession(make_server(), 1)
        transport = FakeTransport()
        session.connection_made(transport)
        session.data_received(b"GET / HTTP/1.1\r\n\r\n")
        assert transport.closed and session.closed

    asyncio.run(body())


def test_session_when_zero_length_frame_then_connection_closed() -> None:
    async def body() -> None:
        session, transport = await open_session(make_server(), client_id=1)
        session.data_received(b"\0\0\0\0")
        assert transport.closed

    asyncio.run(body())


def test_session_when_request_does_not_decode_then_320_and_next_request_answered() -> None:
    async def body() -> None:
        session, transport = await open_session(make_server(), client_id=1)
        session.data_received(encode_fields(49, 1, "extra") + encode_fields(49, 1))
        await asyncio.sleep(0)
        assert errors(transport)[-1][:2] == (-1, 320)
        assert "REQ_CURRENT_TIME" in errors(transport)[-1][2]
        assert transport.frames()[-1] == ["49", "1", str(NOW // NS)]
        assert not transport.closed

    asyncio.run(body())


def test_session_when_handler_raises_then_322_logged_and_connection_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(session: Session, request: ReqPositions) -> None:
        raise ZeroDivisionError("division by zero")

    class Broken:
        name = "broken"
        handlers: Mapping[type[ApiRequest], Handler] = {ReqPositions: boom}

        def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
            pass

        def on_close(self, session: Session) -> None:
            pass

    async def body() -> None:
        server = ExchangeServer(make_core(), [ConnectFeature(), Broken()], port=0)
        session, transport = await open_session(server, client_id=1)
        session.data_received(encode_fields(61, 1) + encode_fields(8, 1, 1))
        await asyncio.sleep(0)
        assert errors(transport)[-1][:2] == (-1, 322)
        assert "ZeroDivisionError" in errors(transport)[-1][2]
        assert transport.frames()[-1][0] == "9"  # reqIds still answered

    asyncio.run(body())
    assert "handler of REQ_POSITIONS failed" in caplog.text
    assert "Traceback" in caplog.text


def test_session_when_request_unsupported_then_503_naming_it_with_its_req_id() -> None:
    async def body() -> None:
        session, transport = await open_session(make_server(), client_id=1)
        session.data_received(encode_fields(23, 1, 42))  # cancelScannerSubscription(42)
        await asyncio.sleep(0)
        req_id, code, text = errors(transport)[-1]
        assert (req_id, code) == (42, 503)
        assert "CANCEL_SCANNER_SUBSCRIPTION" in text

    asyncio.run(body())


def test_session_when_request_before_start_api_then_refused() -> None:
    async def body() -> None:
        session, transport = await open_session(make_server())
        session.data_received(encode_fields(49, 1))
        await asyncio.sleep(0)
        assert errors(transport)[-1][1] == 322
        assert not session.started

    asyncio.run(body())


def test_server_when_two_features_handle_one_request_then_refused() -> None:
    with pytest.raises(ValueError, match="is handled by both 'connect' and 'connect'"):
        ExchangeServer(make_core(), [ConnectFeature(), ConnectFeature()])


def test_publish_when_a_listener_fails_then_other_sessions_still_get_events() -> None:
    got: list[int] = []

    class Listener:
        name = "listener"
        handlers: dict[type, Any] = {}

        def on_events(self, session: Session, events: Sequence[Event]) -> None:
            if session.client_id == 1:
                raise RuntimeError("boom")
            got.append(session.client_id)

        def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
            pass

        def on_close(self, session: Session) -> None:
            pass

    async def body() -> None:
        server = make_server(Listener())
        await open_session(server, client_id=1)
        await open_session(server, client_id=2)
        await open_session(server)  # not started: gets nothing
        server.core.publish([CommissionReportEvent("e1", 1.0, "USD", UNSET_DOUBLE, 5, 1)])

    asyncio.run(body())
    assert got == [2]


def test_orders_when_placed_through_a_session_then_open_order_status_and_fills_in_tws_order() -> None:
    async def body() -> None:
        server = make_server()
        session, transport = await open_session(server, client_id=4)
        transport.data.clear()
        order = OrderFields(action="BUY", totalQuantity=Decimal(10), orderType="MKT")
        session.dispatch(PlaceOrder(1, ContractFields(symbol="AAPL", secType="STK", exchange="SMART"), order))
        await asyncio.sleep(0)
        kinds = [f[0] for f in transport.frames()]
        assert kinds[:2] == ["5", "3"]  # openOrder before orderStatus
        assert "11" in kinds and "59" in kinds  # execDetails and its commission report
        assert kinds.index("11") < kinds.index("59")

    asyncio.run(body())


# -- mappings -------------------------------------------------------------------------------------------


def test_resolve_contract_when_conid_symbol_unknown_or_ambiguous() -> None:
    assert resolve_contract(UNIVERSE, ContractFields(conId=AAPL)).symbol == "AAPL"  # type: ignore[union-attr]
    assert (
        resolve_contract(UNIVERSE, ContractFields(symbol="AAPL", secType="STK", exchange="SMART")) is not None
    )
    assert resolve_contract(UNIVERSE, ContractFields(symbol="NOPE", secType="STK")) is None
    assert resolve_contract(UNIVERSE, ContractFields(secType="STK")) is None  # many match
    assert resolve_contract(UNIVERSE, ContractFields(conId=1)) is None


def test_engine_order_when_fields_unset_then_tws_defaults_and_back_to_order_fields() -> None:
    spec = OrderFields(
        action="buy", totalQuantity=Decimal(100), orderType="STP  LMT", lmtPrice=101.0, auxPrice=100.0, tif=""
    )
    order = engine_order(9, 2, UNIVERSE[AAPL], spec, "DU1")
    assert (order.action, order.orderType, order.tif, order.account) == ("BUY", "STP LMT", "DAY", "DU1")
    assert order.trailingPercent is None and order.totalQuantity == 100.0
    unset = engine_order(9, 2, UNIVERSE[AAPL], OrderFields(action="SELL", lmtPrice=UNSET_DOUBLE), "DU1")
    assert unset.lmtPrice is None
    echoed = order_fields(order, spec, "DU1")
    assert (echoed.clientId, echoed.totalQuantity, echoed.lmtPrice) == (2, Decimal(100), 101.0)


def test_parse_filter_time_when_local_zoned_or_utc() -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("US/Eastern")
    utc_noon = int(datetime(2026, 11, 18, 12, 0, tzinfo=UTC).timestamp()) * NS
    assert parse_filter_time("20261118-12:00:00", ny) == utc_noon
    assert parse_filter_time("20261118 07:00:00", ny) == utc_noon
    assert parse_filter_time("20261118 12:00:00 UTC", ny) == utc_noon
    assert parse_filter_time("", ny) is None
    with pytest.raises(ValueError):
        parse_filter_time("yesterday", ny)


def test_filter_executions_when_side_symbol_and_client_given() -> None:
    core = make_core()

    def execution(
        exec_id: str, side: str, client: int, con_id: int, venue: str
    ) -> tuple[ExecutionEvent, CommissionReportEvent]:
        ex = ExecutionEvent(exec_id, NOW, "DU1234567", venue, side, 1, 1.0, 1, client, 1, 1, 1.0, "", con_id)
        return ex, CommissionReportEvent(exec_id, 1.0, "USD", UNSET_DOUBLE, client, 1)

    jpm = UNIVERSE.by_symbol("JPM").conId
    pairs = [
        execution("a", "BOT", 1, AAPL, "ISLAND"),
        execution("b", "SLD", 1, AAPL, "ISLAND"),
        execution("c", "BOT", 2, jpm, "NYSE"),
    ]
    feature = OrdersFeature()

    def ids(**kw: Any) -> list[str]:
        return [e.execId for e, _ in feature.filter_executions(core, pairs, ExecutionFilterFields(**kw))]

    assert ids() == ["a", "b", "c"]
    assert ids(side="BUY") == ["a", "c"]
    assert ids(symbol="aapl", side="SELL") == ["b"]
    assert ids(clientId=2) == ["c"]
    assert ids(exchange="NASDAQ", secType="STK") == ["a", "b"]
    assert ids(time="20261119 00:00:00") == []


def test_summary_rows_when_tags_and_ledger_flags_then_tws_rows() -> None:
    values = [
        AccountValue("NetLiquidation", "100.00", "USD", "DU1"),
        AccountValue("GrossPositionValue", "50.00", "USD", "DU1"),
        AccountValue("AccountType", "INDIVIDUAL", "", "DU1"),
        AccountValue("CashBalance", "50.00", "BASE", "DU1"),
        AccountValue("CashBalance", "50.00", "USD", "DU1"),
        AccountValue("Currency", "USD", "USD", "DU1"),
        AccountValue("EquityWithLoanValue", "100.00", "USD", "DU1"),
    ]

    def rows(*tags: str) -> list[tuple[str, str, str]]:
        return [(r.key, r.value, r.currency) for r in summary_rows(tags, values, "USD")]

    assert rows("NetLiquidation", "AccountType", "Unknown") == [
        ("NetLiquidation", "100.00", "USD"),
        ("AccountType", "INDIVIDUAL", ""),
    ]
    assert rows("PreviousDayEquityWithLoanValue", "Leverage") == [
        ("PreviousDayEquityWithLoanValue", "100.00", "USD"),
        ("Leverage", "0.50", ""),
    ]
    assert rows("$LEDGER") == [("CashBalance", "50.00", "BASE")]
    assert rows("$LEDGER:USD") == [("CashBalance", "50.00", "USD"), ("Currency", "USD", "USD")]
    assert len(rows("$LEDGER:ALL")) == 3


# -- state and configuration -------------------------------------------------------------------------------


def test_state_store_when_saved_then_loaded_and_broken_file_moved_aside(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "exchange" / "state.json")
    assert store.load() is None
    store.save({"a": 1}, durable=True)
    assert store.load() == {"a": 1}
    assert [p.name for p in store.path.parent.iterdir()] == ["state.json"]  # no temp file left
    store.path.write_text("{not json")
    assert store.load() is None
    assert [p.name.startswith("state.json.broken-") for p in store.path.parent.iterdir()] == [True]


def test_open_engine_when_state_exists_then_restored_unless_reset(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    core = make_core()
    core.engine.account.deposit(123.0)
    core.engine._next_ids[5] = 42
    store.save(core.engine.to_dict())
    config = EngineConfig()
    restored = open_engine(
        store, UNIVERSE, core.market, account_id="DU1234567", initial_cash=1e6, config=config
    )
    assert restored.account.cash == 1_000_123.0 and restored.next_order_id(5) == 42
    fresh = open_engine(
        store, UNIVERSE, core.market, account_id="DU1234567", initial_cash=5e5, config=config, reset=True
    )
    assert fresh.account.cash == 5e5 and fresh.next_order_id(5) == 1
    assert not store.path.exists()


def test_exchange_config_when_shipped_file_and_env_then_loaded_and_checked(tmp_path: Path) -> None:
    config = load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", {})
    assert (config.exchange.port, config.account.id, config.market.hours) == (7497, "DU1234567", "always")
    env = {"BOURSE_EXCHANGE_PORT": "7600", "BOURSE_MARKET_HOURS": "real"}
    overridden = load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", env)
    assert (overridden.exchange.port, overridden.market.hours) == (7600, "real")
    bad = tmp_path / "exchange.yaml"
    bad.write_text("market:\n  step_ms: 7\n")
    with pytest.raises(ConfigError, match=r"market\.step_ms: must divide a day"):
        load(ExchangeConfig, bad, {})


def test_build_server_when_reset_then_fresh_state_written(tmp_path: Path) -> None:
    server = build_server(ExchangeConfig(), tmp_path, reset=True, clock=lambda: NOW, port=0)
    saved = json.loads((tmp_path / "exchange" / "state.json").read_text())
    assert saved["account"]["cash"] == 1_000_000.0
    assert {f.name for f in server.features} == {"connect", "orders", "account"}


# -- fault hooks (in process, loopback) -------------------------------------------------------------------


async def read_until(reader: asyncio.StreamReader, msg_id: str, code: str | None = None) -> list[str]:
    while True:
        (length,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))
        fields = (await reader.readexactly(length)).decode().split("\0")[:-1]
        if fields[0] == msg_id and (code is None or fields[3] == code):
            return fields


def test_server_faults_when_triggered_then_broadcast_delay_refuse_and_disconnect() -> None:
    async def body() -> None:
        server = make_server()
        host, port = await server.start()
        loop = asyncio.get_running_loop()
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(handshake() + start_api(5))
            await read_until(reader, "9")

            lost = "Connectivity between IB and Trader Workstation has been lost."
            assert server.broadcast_error(1100, lost) == 1
            assert (await read_until(reader, "4", "1100"))[2] == "-1"

            server.delay_sends(0.2)
            started = loop.time()
            writer.write(encode_fields(49, 1))
            await read_until(reader, "49")
            assert loop.time() - started >= 0.2
            server.delay_sends(0)

            server.refuse_connections(0.3)
            with pytest.raises(OSError):
                await asyncio.open_connection(host, port)
            await asyncio.sleep(0.5)
            _, other = await asyncio.open_connection(host, port)
            await asyncio.sleep(0.05)
            assert server.disconnect_all() == 2
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await read_until(reader, "never")
            other.close()
            writer.close()
        finally:
            await server.close()

    asyncio.run(body())
