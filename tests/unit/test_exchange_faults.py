"""Faults of the paper exchange without sockets: the pure fault state (notices, order gate,
rejection queue, delay, greeting), instrument lookup, the orders feature's refusals, the server's
holding of reports while connectivity is lost, and the control methods over a built server."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.config.exchange import ExchangeConfig
from trader.exchange.control import ExchangeControl, build_registry
from trader.exchange.events import OrderStatusEvent
from trader.exchange.faults import (
    CONNECTIVITY_LOST,
    FARMS,
    REJECTED_WHILE_LOST,
    RESTORED_DATA_LOST,
    RESTORED_DATA_MAINTAINED,
    SERVER_BROKEN,
    FaultError,
    FaultState,
    Refusal,
    check_percent,
    farm_notice,
    faults_of,
    find_instrument,
)
from trader.exchange.feature_orders import OrdersFeature
from trader.exchange.instruments import load_universe
from trader.exchange.pacing import pacing_of
from trader.exchange.protocol import CancelOrder, ContractFields, FrameParser, OrderFields, PlaceOrder
from trader.exchange.server import ExchangeServer, build_server
from trader.exchange.session_api import ExchangeCore
from trader.messaging.rpc import RpcError

NS = 1_000_000_000
NOW = int(datetime(2026, 11, 18, 15, 0, tzinfo=UTC).timestamp()) * NS
UNIVERSE = load_universe()
INACTIVE = "inactive but should be available upon demand."
AAPL = ContractFields(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")


# -- notices ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state", "code", "text"),
    [
        ("usfarm", "broken", 2103, "Market data farm connection is broken:usfarm"),
        ("usfarm", "ok", 2104, "Market data farm connection is OK:usfarm"),
        ("usfarm", "inactive", 2108, f"Market data farm connection is {INACTIVE}usfarm"),
        ("ushmds", "broken", 2105, "HMDS data farm connection is broken:ushmds"),
        ("ushmds", "ok", 2106, "HMDS data farm connection is OK:ushmds"),
        ("ushmds", "inactive", 2107, f"HMDS data farm connection is {INACTIVE}ushmds"),
        ("secdefnj", "ok", 2158, "Sec-def data farm connection is OK:secdefnj"),
        ("secdefnj", "broken", 2157, "Sec-def data farm connection is broken:secdefnj"),
        ("cashfarm", "broken", 2103, "Market data farm connection is broken:cashfarm"),
    ],
)
def test_farm_notice_when_state_changes_then_tws_code_and_wording(
    name: str, state: str, code: int, text: str
) -> None:
    assert farm_notice(name, state) == (code, text)


@pytest.mark.parametrize(
    ("name", "state", "message"),
    [
        ("nofarm", "ok", "unknown farm"),
        ("usfarm", "down", "unknown farm state"),
        ("secdefnj", "inactive", "no"),
    ],
)
def test_farm_notice_when_unknown_farm_or_state_then_fault_error(name: str, state: str, message: str) -> None:
    with pytest.raises(FaultError, match=message):
        farm_notice(name, state)


def test_connectivity_when_lost_and_restored_then_tws_notices_and_state() -> None:
    faults = FaultState()

    def state() -> tuple[bool, int | None]:
        return faults.connectivity_lost, faults.lost_since_ns

    assert faults.set_connectivity("lost", NOW) == CONNECTIVITY_LOST == (1100, CONNECTIVITY_LOST[1])
    assert state() == (True, NOW)
    assert faults.set_connectivity("lost", NOW + 5 * NS) == CONNECTIVITY_LOST
    assert state() == (True, NOW), "a repeated loss keeps the time it started"
    assert faults.snapshot(NOW + 2 * NS)["lost_for_s"] == 2.0
    assert faults.set_connectivity("restored", NOW) == RESTORED_DATA_MAINTAINED
    assert RESTORED_DATA_MAINTAINED[0] == 1102 and RESTORED_DATA_MAINTAINED[1].endswith("data maintained.")
    assert state() == (False, None)
    faults.set_connectivity("lost", NOW)
    assert faults.set_connectivity("restored-data-lost", NOW) == RESTORED_DATA_LOST
    assert RESTORED_DATA_LOST[0] == 1101 and RESTORED_DATA_LOST[1].endswith("restored - data lost.")
    with pytest.raises(FaultError, match="unknown connectivity change"):
        faults.set_connectivity("flaky", NOW)


# -- the order gate -----------------------------------------------------------------------------------


def test_order_gate_when_rejects_queued_then_only_new_orders_take_them_in_order() -> None:
    faults = FaultState()
    assert faults.queue_rejects(1, 201, "first", "Inactive") == 1
    assert faults.queue_rejects(2, 202, "then", "Cancelled") == 3
    for request in ("modify", "cancel", "what_if"):
        assert faults.order_gate(request) is None
    assert faults.order_gate("new") == Refusal(201, "first", "Inactive")
    assert faults.order_gate("new") == Refusal(202, "then", "Cancelled")
    assert faults.order_gate("new") == Refusal(202, "then", "Cancelled")
    assert faults.order_gate("new") is None


def test_order_gate_when_connectivity_lost_then_orders_refused_and_queue_kept() -> None:
    faults = FaultState()
    faults.queue_rejects(1)
    faults.set_connectivity("lost", NOW)
    assert faults.order_gate("new") == Refusal(*REJECTED_WHILE_LOST, status="Inactive")
    assert REJECTED_WHILE_LOST[1] == f"Order rejected - reason:{CONNECTIVITY_LOST[1]}"
    assert faults.order_gate("what_if") == Refusal(*REJECTED_WHILE_LOST)
    assert faults.order_gate("modify") == faults.order_gate("cancel") == Refusal(*SERVER_BROKEN)
    assert SERVER_BROKEN[0] == 2110
    assert len(faults.rejects) == 1, "the rejections wait for the connectivity to come back"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"count": -1}, "count"),
        ({"count": 10_001}, "count"),
        ({"count": 1, "code": 0}, "code"),
        ({"count": 1, "text": "  "}, "text"),
        ({"count": 1, "text": "a\0b"}, "text"),
        ({"count": 1, "status": "Filled"}, "status"),
    ],
)
def test_queue_rejects_when_params_invalid_then_fault_error_naming_them(
    params: dict[str, Any], message: str
) -> None:
    faults = FaultState()
    with pytest.raises(FaultError, match=message):
        faults.queue_rejects(**params)
    assert not faults.rejects


@given(
    st.lists(
        st.one_of(st.integers(1, 5), st.sampled_from(["new", "modify", "cancel", "what_if", "lost", "up"]))
    )
)
def test_order_gate_when_any_sequence_then_queue_is_fifo_and_counts_hold(ops: list[int | str]) -> None:
    faults, model = FaultState(), deque[int]()
    codes = iter(range(1000, 100_000))
    for op in ops:
        if isinstance(op, int):
            code = next(codes)
            faults.queue_rejects(op, code, "x")
            model.extend([code] * op)
        elif op == "lost":
            faults.set_connectivity("lost", NOW)
        elif op == "up":
            faults.set_connectivity("restored", NOW)
        else:
            refusal = faults.order_gate(op)  # type: ignore[arg-type]
            if faults.connectivity_lost:
                assert refusal is not None and refusal.code in (201, 2110)
            elif op == "new" and model:
                assert refusal is not None and refusal.code == model.popleft()
            else:
                assert refusal is None
        assert len(faults.rejects) == len(model)


# -- delay, greeting, restart, reporting ---------------------------------------------------------------


def test_set_delay_when_in_range_then_seconds_else_fault_error() -> None:
    faults = FaultState()
    assert faults.set_delay(250) == 0.25 and faults.delay_ms == 250
    assert faults.set_delay(0) == 0.0
    for bad in (-1, 60_001):
        with pytest.raises(FaultError, match="ms must be"):
            faults.set_delay(bad)


def test_greeting_when_faults_active_then_new_clients_learn_them() -> None:
    faults = FaultState()
    assert faults.greeting() == []
    faults.set_farm("usfarm", "broken")
    faults.set_farm("ushmds", "inactive")
    faults.set_connectivity("lost", NOW)
    assert faults.greeting() == [
        farm_notice("usfarm", "broken"),
        farm_notice("ushmds", "inactive"),
        CONNECTIVITY_LOST,
    ]


def test_restart_when_faults_active_then_fresh_tws_but_rejects_and_delay_stay() -> None:
    faults = FaultState()
    faults.set_farm("secdefnj", "broken")
    faults.set_connectivity("lost", NOW)
    faults.queue_rejects(2)
    faults.set_delay(100)
    assert faults.active() == [
        "connectivity lost",
        "farm secdefnj broken",
        "next 2 new orders rejected",
        "messages delayed by 100 ms",
    ]
    faults.restart()
    assert (
        not faults.connectivity_lost
        and set(faults.farms.values()) == {"ok"}
        and set(faults.farms) == set(FARMS)
    )
    assert faults.active() == ["next 2 new orders rejected", "messages delayed by 100 ms"]
    assert faults.clear_rejects() == 2 and faults.snapshot(NOW)["next_reject"] is None
    faults.queue_rejects(3)
    assert faults.queue_rejects(0) == 0 and not faults.rejects, "count 0 clears"


def test_faults_of_when_called_twice_then_one_shared_state() -> None:
    extensions: dict[str, Any] = {}
    assert faults_of(extensions) is faults_of(extensions) is extensions["faults"]


# -- instruments and shock sizes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local"), [("AAPL", "AAPL"), (" spy ", "SPY"), ("ESZ6", "ESZ6"), ("eur.usd", "EUR.USD")]
)
def test_find_instrument_when_symbol_or_local_symbol_then_found(text: str, local: str) -> None:
    assert find_instrument(UNIVERSE, text).localSymbol == local


def test_find_instrument_when_unknown_then_fault_error_with_hint() -> None:
    with pytest.raises(FaultError, match="unknown symbol 'AAPX'; similar: AAPL"):
        find_instrument(UNIVERSE, "AAPX")
    with pytest.raises(FaultError, match="must not be empty"):
        find_instrument(UNIVERSE, " ")


@pytest.mark.parametrize("percent", [-100.0, 0.0, 1000.5, float("nan")])
def test_check_percent_when_out_of_range_then_fault_error(percent: float) -> None:
    with pytest.raises(FaultError, match="percent"):
        check_percent(percent)


# -- the orders feature's refusals and the server's held reports --------------------------------------


class RecordingSession:
    """A started client: what the features send, decoded to frames; errors as tuples."""

    def __init__(self, core: ExchangeCore, client_id: int) -> None:
        self.core = core
        self.client_id = client_id
        self.server_version = 178
        self.extensions: dict[str, Any] = {}
        self.closed = False
        self.started = True
        self.frames: list[list[str]] = []
        self.errors: list[tuple[int, int, str]] = []
        self._parser = FrameParser()

    def send(self, frame: bytes) -> None:
        self.frames += self._parser.feed(frame)

    def send_error(self, req_id: int, code: int, text: str, advanced_order_reject_json: str = "") -> None:
        self.errors.append((req_id, code, text))

    def message_ids(self) -> list[str]:
        return [f[0] for f in self.frames]


def exchange(tmp_path: Path) -> tuple[ExchangeServer, ExchangeControl, OrdersFeature]:
    server = build_server(ExchangeConfig(), tmp_path, reset=True, clock=lambda: NOW, port=0)
    orders = next(f for f in server.features if isinstance(f, OrdersFeature))
    return server, ExchangeControl(server, initial_cash=250_000.0), orders


def attach(server: ExchangeServer, client_id: int) -> RecordingSession:
    session = RecordingSession(server.core, client_id)
    server.clients[client_id] = session  # type: ignore[assignment]
    return session


def place(orders: OrdersFeature, session: RecordingSession, order_id: int, **fields: Any) -> None:
    spec = OrderFields(action="BUY", totalQuantity=Decimal(10), orderType="MKT", **fields)
    orders.place_order(session, PlaceOrder(orderId=order_id, contract=AAPL, order=spec))


OPEN_ORDER, ORDER_STATUS = "5", "3"


def test_place_order_when_reject_queued_then_status_then_error_and_id_used(tmp_path: Path) -> None:
    server, control, orders = exchange(tmp_path)
    client = attach(server, 7)
    control.reject_next(count=1, code=203, text="The security is not available.", status="Cancelled")
    place(orders, client, 41)
    assert client.message_ids() == [OPEN_ORDER, ORDER_STATUS]
    assert client.frames[1][1:3] == ["41", "Cancelled"]
    assert client.errors == [(41, 203, "The security is not available.")]
    assert server.core.engine.next_order_id(7) == 42, "a rejected order's id is used"
    assert server.core.engine.order(7, 41) is None, "the engine never saw it"
    client.frames.clear()
    place(orders, client, 42)
    assert ORDER_STATUS in client.message_ids() and client.errors[1:] == [], "the next order goes through"


def test_place_order_when_connectivity_lost_then_refused_and_fills_held_until_restored(
    tmp_path: Path,
) -> None:
    server, control, orders = exchange(tmp_path)
    client = attach(server, 8)
    spec = OrderFields(action="BUY", totalQuantity=Decimal(1), orderType="LMT", lmtPrice=1000.0)
    orders.place_order(client, PlaceOrder(orderId=1, contract=AAPL, order=spec))
    assert server.core.engine.order(8, 1) is not None
    client.frames.clear()
    control.connectivity("lost")
    assert client.errors[-1] == (-1, *CONNECTIVITY_LOST)
    place(orders, client, 2)
    assert client.frames[1][1:3] == ["2", "Inactive"] and client.errors[-1] == (2, *REJECTED_WHILE_LOST)
    orders.cancel_order(client, CancelOrder(orderId=1, manualCancelOrderTime=""))
    assert client.errors[-1] == (1, *SERVER_BROKEN)
    working = server.core.engine.order(8, 1)
    assert working is not None
    server.publish([OrderStatusEvent(working.order, "Submitted", 0, 1, 0, 0, "", NOW)])
    assert server.status()["held_events"] == 1
    client.frames.clear()
    result = control.connectivity("restored")
    assert result["released"] == 1 and client.message_ids() == [OPEN_ORDER, ORDER_STATUS]
    assert client.errors[-1] == (-1, *RESTORED_DATA_MAINTAINED)


def test_step_when_client_new_then_greeted_once_with_faults_in_effect(tmp_path: Path) -> None:
    server, control, _ = exchange(tmp_path)
    control.farm("usfarm", "broken")
    client = attach(server, 9)
    server.step(NOW)
    server.step(NOW)
    assert client.errors == [(-1, *farm_notice("usfarm", "broken"))]


# -- the control methods over a built server ------------------------------------------------------------


def test_control_when_shock_then_price_moves_and_state_saved(tmp_path: Path) -> None:
    _, control, _ = exchange(tmp_path)
    result = control.shock("AAPL", -10.0)
    assert result["after"] == pytest.approx(result["before"] * 0.9, rel=0.002)
    assert control.status()["market"]["shocked"] == ["AAPL"]
    assert '"shocks"' in (tmp_path / "exchange" / "state.json").read_text()


def test_control_when_halt_and_resume_then_market_follows(tmp_path: Path) -> None:
    server, control, _ = exchange(tmp_path)
    control.halt("SPY")
    assert server.core.market.is_halted(756733) and control.status()["market"]["halted"] == ["SPY"]
    assert control.resume("SPY")["was_halted"] is True
    assert not server.core.market.is_halted(756733)


def test_control_when_pacing_and_delay_then_switched(tmp_path: Path) -> None:
    server, control, _ = exchange(tmp_path)
    assert control.pacing(False) == {"pacing": False} and not pacing_of(server.core.extensions).enabled
    control.delay(120)
    assert server.send_delay_s == 0.12 and control.status()["faults"]["delay_ms"] == 120


def test_control_when_reset_without_confirm_then_refused_else_account_fresh(tmp_path: Path) -> None:
    server, control, orders = exchange(tmp_path)
    place(orders, attach(server, 10), 5)
    with pytest.raises(RpcError) as refused:
        control.reset()
    assert refused.value.code == "confirmation_required"
    assert control.reset(confirm=True) == {"dropped": 0, "cash": 250_000.0}
    assert server.core.engine.open_orders() == [] and server.core.engine.account.cash == 250_000.0


def test_registry_when_bad_params_then_bad_params_naming_them(tmp_path: Path) -> None:
    _, control, _ = exchange(tmp_path)
    registry = build_registry(control)
    assert registry.names() == sorted(
        [
            *("status", "drop", "restart", "connectivity", "farm", "reject_next", "delay", "pacing"),
            *("shock", "halt", "resume", "reset"),
        ]
    )
    spec = registry.get("shock")
    assert spec is not None
    with pytest.raises(RpcError, match="percent"):
        spec.bind({"symbol": "AAPL", "percent": "ten"})
    with pytest.raises(RpcError, match="unknown symbol") as caught:
        spec.handler(symbol="NOPE", percent=5.0)
    assert caught.value.code == "bad_params"
    restart = registry.get("restart")
    assert restart is not None
    with pytest.raises(RpcError, match="seconds"):
        restart.handler(seconds=0.0)
