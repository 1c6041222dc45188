"""RPC over real sockets: the server in another process (tests/integration/rpc_app.py) unless noted."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pandas as pd
import pytest
import zmq
import zmq.asyncio

from tests.support import Child, Processes, free_endpoint, processes_fixture
from trader.messaging.codec import decode, encode
from trader.messaging.rpc import (
    BAD_PARAMS,
    DEADLINE_EXCEEDED,
    DUPLICATE_ID,
    ERROR_CODES,
    INTERNAL,
    MALFORMED,
    UNKNOWN_METHOD,
    AsyncRpcClient,
    MethodRegistry,
    RpcClient,
    RpcError,
    RpcRemoteError,
    RpcServer,
    RpcTimeout,
    RpcUnavailable,
)

pytestmark = pytest.mark.integration

APP = "tests/integration/rpc_app.py"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def start_app(procs: Processes, endpoint: str, *extra: str) -> Child:
    child = procs.python(APP, "--endpoint", endpoint, *extra)
    child.wait_for_line(r"RPC READY")
    return child


@dataclass
class Served:
    endpoint: str
    child: Child


@pytest.fixture(scope="module")
def module_procs() -> Iterator[Processes]:
    yield from processes_fixture()


@pytest.fixture(scope="module")
def server(module_procs: Processes) -> Served:
    """One server process shared by the tests that do not kill it."""
    endpoint = free_endpoint()
    return Served(endpoint, start_app(module_procs, endpoint))


class RawPeer:
    """A plain zmq DEALER or REQ talking to the server, with timeouts so a test never hangs."""

    def __init__(self, endpoint: str, kind: int = zmq.DEALER) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 5000)
        self.sock.setsockopt(zmq.SNDTIMEO, 5000)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self) -> list[bytes]:
        return self.sock.recv_multipart()

    def reply(self) -> dict[str, Any]:
        msg = decode(self.recv()[-1])
        assert isinstance(msg, dict)
        return msg

    def request(self, method: str, params: dict[str, Any], rid: str, deadline_ms: int | None = None) -> bytes:
        deadline = now_ms() + 5000 if deadline_ms is None else deadline_ms
        return encode({"id": rid, "method": method, "params": params, "deadline_ms": deadline})

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def dealer(server: Served) -> Iterator[RawPeer]:
    peer = RawPeer(server.endpoint)
    yield peer
    peer.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{random.getrandbits(48):012x}"


# --------------------------------------------------------------------------- basics


def test_call_when_params_valid_then_result_returned(server: Served) -> None:
    async def scenario() -> None:
        async with AsyncRpcClient(server.endpoint) as client:
            assert await client.call("add", a=2, b=3) == 5
            assert await client.call("add", {"a": 2}, b=4) == 6
            assert await client.call("scale", values=[1, 2.5], factor=2, label=None) == {
                "values": [2.0, 5.0],
                "label": None,
            }
            nested = {"k": [1, {"x": b"\x00\xff", "y": None}], "t": pd.Timestamp("2024-01-02", tz="UTC")}
            assert await client.call("echo", value=nested) == nested

    run(scenario())


def test_call_when_result_is_dataframe_then_same_frame_returned(server: Served) -> None:
    async def scenario() -> pd.DataFrame:
        async with AsyncRpcClient(server.endpoint) as client:
            frame: pd.DataFrame = await client.call("frame", rows=4)
            return frame

    frame = run(scenario())
    index = pd.date_range("2024-01-02 09:30", periods=4, freq="1min", tz="America/New_York")
    expected = pd.DataFrame({"close": [100.0, 101.0, 102.0, 103.0], "volume": [0, 1, 2, 3]}, index=index)
    pd.testing.assert_frame_equal(frame, expected)


def test_request_when_handler_returns_error_then_envelope_has_id_ok_false_code_message(
    dealer: RawPeer,
) -> None:
    dealer.send(dealer.request("refuse", {"reason": "max position"}, "env-1"))
    assert dealer.reply() == {
        "id": "env-1",
        "ok": False,
        "error": {"code": "risk_refused", "message": "order refused: max position"},
    }
    dealer.send(dealer.request("add", {"a": 1, "b": 2}, "env-2"))
    assert dealer.reply() == {"id": "env-2", "ok": True, "result": 3}


def test_call_when_handler_raises_rpc_error_then_code_and_message_as_is(server: Served) -> None:
    async def scenario() -> RpcRemoteError:
        async with AsyncRpcClient(server.endpoint) as client:
            with pytest.raises(RpcRemoteError) as info:
                await client.call("refuse", reason="limit")
            return info.value

    error = run(scenario())
    assert (error.code, error.message, error.method) == ("risk_refused", "order refused: limit", "refuse")


def test_call_when_method_unknown_then_unknown_method_naming_it(server: Served) -> None:
    async def scenario() -> RpcRemoteError:
        async with AsyncRpcClient(server.endpoint) as client:
            with pytest.raises(RpcRemoteError) as info:
                await client.call("no_such_method", x=1)
            return info.value

    error = run(scenario())
    assert error.code == UNKNOWN_METHOD and "'no_such_method'" in error.message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": 1}, "add: missing param 'b' (expected int)"),
        ({"a": 1, "b": 2, "c": 3}, "add: unknown param 'c' (accepted: a, b)"),
        ({"a": 1, "b": "2"}, "add: param 'b' expected int, got str '2'"),
        ({"a": 1.5, "b": 2}, "add: param 'a' expected int, got float 1.5"),
    ],
)
def test_call_when_params_bad_then_bad_params_naming_param(
    server: Served, params: dict[str, Any], message: str
) -> None:
    async def scenario() -> RpcRemoteError:
        async with AsyncRpcClient(server.endpoint) as client:
            with pytest.raises(RpcRemoteError) as info:
                await client.call("add", params)
            return info.value

    error = run(scenario())
    assert (error.code, error.message) == (BAD_PARAMS, message)


def test_call_when_handler_raises_then_internal_with_type_and_message_and_server_keeps_serving(
    server: Served,
) -> None:
    async def scenario() -> RpcRemoteError:
        async with AsyncRpcClient(server.endpoint) as client:
            with pytest.raises(RpcRemoteError) as info:
                await client.call("fail", message="boom 42")
            with pytest.raises(RpcRemoteError, match="result cannot be encoded"):
                await client.call("unencodable")
            assert await client.call("add", a=1, b=1) == 2  # still serving
            return info.value

    error = run(scenario())
    assert error.code == INTERNAL and error.message == "fail raised ValueError: boom 42"


def test_ping_and_methods_when_called_then_server_describes_itself(server: Served) -> None:
    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with AsyncRpcClient(server.endpoint) as client:
            return await client.ping(), await client.call("methods")

    pong, methods = run(scenario())
    assert pong["pong"] is True and isinstance(pong["server_id"], str) and pong["uptime_s"] >= 0
    assert abs(pong["time_ns"] - time.time_ns()) < 5e9
    by_name = {m["name"]: m for m in methods}
    assert {"ping", "methods", "add", "count", "count_shielded"} <= set(by_name)
    assert by_name["add"]["params"] == [
        {"name": "a", "type": "int", "required": True},
        {"name": "b", "type": "int", "required": True},
    ]
    assert by_name["count_shielded"]["shield"] is True and by_name["count"]["shield"] is False


# --------------------------------------------------------------------------- deadlines


def test_request_when_arrives_after_its_deadline_then_refused_and_not_executed(dealer: RawPeer) -> None:
    key = unique("late")
    dealer.send(dealer.request("count", {"key": key}, unique("late-id"), deadline_ms=now_ms() - 1))
    reply = dealer.reply()
    assert reply["ok"] is False and reply["error"]["code"] == DEADLINE_EXCEEDED
    assert "after its deadline; not run" in reply["error"]["message"]
    dealer.send(dealer.request("counted", {"key": key}, unique("check")))
    assert dealer.reply()["result"] == 0


def test_call_when_handler_slower_than_timeout_then_rpc_timeout_and_handler_cancelled(server: Served) -> None:
    key = unique("slow")

    async def scenario() -> tuple[RpcTimeout, float, int]:
        async with AsyncRpcClient(server.endpoint) as client:
            started = time.monotonic()
            with pytest.raises(RpcTimeout) as info:
                await client.call("count", key=key, delay=5.0, timeout=0.3)
            elapsed = time.monotonic() - started
            assert await client.call("wait_event", key=key, event="cancelled") is True
            return info.value, elapsed, await client.call("counted", key=key)

    error, elapsed, counted = run(scenario())
    assert 0.25 < elapsed < 2.0
    # the client's timer and the server's cancellation race: either way it is an RpcTimeout
    assert isinstance(error, RpcTimeout) and "count" in str(error) and server.endpoint in str(error)
    assert counted == 0


def test_raw_request_when_handler_outlives_deadline_then_deadline_exceeded_reply(dealer: RawPeer) -> None:
    key = unique("cut")
    dealer.send(
        dealer.request("count", {"key": key, "delay": 5.0}, unique("cut-id"), deadline_ms=now_ms() + 200)
    )
    reply = dealer.reply()
    assert reply["error"] == {"code": DEADLINE_EXCEEDED, "message": "count: cancelled at its deadline"}
    dealer.send(dealer.request("counted", {"key": key}, unique("check")))
    assert dealer.reply()["result"] == 0


def test_call_when_timeout_message_then_names_method_endpoint_and_seconds(server: Served) -> None:
    async def scenario() -> str:
        async with AsyncRpcClient(server.endpoint) as client:
            # the shielded method runs on: only the client's own timer can end this call
            with pytest.raises(RpcTimeout) as info:
                await client.call("count_shielded", key=unique("msg"), delay=0.6, timeout=0.25)
            return str(info.value)

    assert run(scenario()) == f"count_shielded on {server.endpoint}: no reply within 0.25s"


def test_call_when_shielded_method_passes_its_deadline_then_it_still_completes(server: Served) -> None:
    key = unique("shield")

    async def scenario() -> int:
        async with AsyncRpcClient(server.endpoint) as client:
            with pytest.raises(RpcTimeout):
                await client.call("count_shielded", key=key, delay=0.5, timeout=0.2)
            assert await client.call("wait_event", key=key, event="done") is True
            counted: int = await client.call("counted", key=key)
            return counted

    assert run(scenario()) == 1


def test_slow_handler_when_running_then_ping_and_other_calls_answer_meanwhile(server: Served) -> None:
    async def scenario() -> None:
        async with AsyncRpcClient(server.endpoint) as client:
            slow = asyncio.create_task(client.call("slow", seconds=1.5))
            started = time.monotonic()
            for i in range(20):
                assert (await client.ping())["pong"] is True
                assert await client.call("add", a=i, b=1) == i + 1
                assert await client.call("echo", value=i) == i
            assert time.monotonic() - started < 1.0
            assert not slow.done()
            assert await slow == 1.5

    run(scenario())


# --------------------------------------------------------------------------- dedup


def test_resend_when_same_id_and_bytes_then_executed_once_and_every_asker_replied(server: Served) -> None:
    key, rid = unique("dedup"), unique("dedup-id")
    first, second = RawPeer(server.endpoint), RawPeer(server.endpoint)
    try:
        payload = first.request("count", {"key": key, "delay": 0.3}, rid)
        first.send(payload)
        second.send(second.request("wait_event", {"key": key, "event": "start"}, unique("wait")))
        assert second.reply()["result"] is True
        first.send(payload)  # a resend from the same peer while in flight: one reply, not two
        second.send(payload)  # a resend from a new routing identity (a reconnected client)
        reply_a, reply_b = first.recv(), second.recv()
        assert reply_a == reply_b and decode(reply_a[-1]) == {"id": rid, "ok": True, "result": 1}
        third = RawPeer(server.endpoint)
        third.send(payload)  # after completion: the cached reply, not a second run
        assert third.recv() == reply_a
        third.close()
        first.send(first.request("counted", {"key": key}, unique("check")))
        assert first.reply()["result"] == 1
        assert first.sock.poll(200) == 0  # no second reply for the duplicate from the same peer
    finally:
        first.close()
        second.close()


def test_request_when_id_reused_for_a_different_request_then_duplicate_id_not_run(dealer: RawPeer) -> None:
    key, rid = unique("reuse"), unique("reuse-id")
    dealer.send(dealer.request("count", {"key": key}, rid))
    assert dealer.reply()["result"] == 1
    dealer.send(dealer.request("count", {"key": key, "delay": 0.0}, rid))
    reply = dealer.reply()
    assert reply["id"] == rid and reply["error"]["code"] == DUPLICATE_ID
    dealer.send(dealer.request("counted", {"key": key}, unique("check")))
    assert dealer.reply()["result"] == 1


# --------------------------------------------------------------------------- garbage


def garbage_frames(seed: int, count: int) -> list[tuple[list[bytes], str | None]]:
    """``count`` bad messages (frames, the id the error reply must carry); never a valid call."""
    rng = random.Random(seed)
    deadline = now_ms() + 60_000
    good: dict[str, Any] = {"method": "add", "params": {"a": 1, "b": 2}, "deadline_ms": deadline}

    def rid() -> str:
        return f"g{rng.getrandbits(64):x}"

    def junk(depth: int = 0) -> Any:
        choice = rng.randrange(8 if depth < 3 else 5)
        leaves = [None, rng.random(), rng.randrange(-(2**63), 2**63), "x" * rng.randrange(20), b"\x00" * 3]
        if choice < 5:
            return leaves[choice]
        if choice == 5:
            return [junk(depth + 1) for _ in range(rng.randrange(4))]
        if choice == 6:
            return {
                rng.choice(["id", "method", 3, "params"]): junk(depth + 1) for _ in range(rng.randrange(4))
            }
        return msgpack.ExtType(rng.choice([1, 2, 8, 42, 99]), rng.randbytes(rng.randrange(12)))

    out: list[tuple[list[bytes], str | None]] = []
    for _ in range(count):
        kind = rng.randrange(14)
        i = rid()
        if kind == 0:
            out.append(([rng.randbytes(rng.randrange(1, 300))], None))
        elif kind == 1:
            value = junk()
            out.append(([msgpack.packb([value] if isinstance(value, dict) else value)], None))  # not a map
        elif kind == 2:
            out.append(([msgpack.packb({**good, "id": "h" * rng.randrange(257, 100_000)})], None))
        elif kind == 3:
            out.append(([msgpack.packb({**good, "id": rng.choice([5, None, b"id", [], ""])})], None))
        elif kind == 4:
            method = rng.choice([None, 5, "", ["add"], "m" * 300, b"add", {"add": 1}])
            out.append(([msgpack.packb({**good, "id": i, "method": method})], i))
        elif kind == 5:
            bad_shape = rng.choice([[1, 2], "a=1", None, 7, {1: 2}])
            out.append(([msgpack.packb({**good, "id": i, "params": bad_shape})], i))
        elif kind == 6:
            bad_deadline = rng.choice(["soon", 1.5, None, True, [1]])
            out.append(([msgpack.packb({**good, "id": i, "deadline_ms": bad_deadline})], i))
        elif kind == 7:
            out.append(([b"\x91" * rng.randrange(500, 5000) + b"\xc0"], None))  # nested too deep
        elif kind == 8:
            whole = msgpack.packb({**good, "id": i})
            out.append(([whole[: rng.randrange(1, len(whole))]], None))  # truncated
        elif kind == 9:
            out.append(([msgpack.packb({**good, "id": i, "method": f"nope_{rng.getrandbits(32)}"})], i))
        elif kind == 10:
            params = {"a": "x", "b": rng.choice([None, "y", [1]])}
            out.append(([msgpack.packb({**good, "id": i, "params": params})], i))  # bad_params
        elif kind == 11:
            out.append(([msgpack.packb({**good, "id": i, "method": "ping", "deadline_ms": 1})], i))  # late
        elif kind == 12:
            out.append(([msgpack.packb({**good, "id": i}), rng.randbytes(5)], None))  # two body frames
        else:
            out.append(
                ([msgpack.packb({**good, "id": i, "params": {"a": msgpack.ExtType(8, b"\x01")}})], None)
            )
    return out


def check_error_reply(payload: bytes, expected_id: str | None) -> str:
    msg = decode(payload)
    assert msg["ok"] is False, msg
    assert msg["id"] == expected_id, (msg, expected_id)
    code = msg["error"]["code"]
    assert code in ERROR_CODES and isinstance(msg["error"]["message"], str)
    return str(code)


def test_garbage_when_1000_frames_via_dealer_then_each_gets_error_and_server_still_serves(
    server: Served,
) -> None:
    frames = garbage_frames(seed=20240102, count=1000)
    peer = RawPeer(server.endpoint)
    try:
        for message, _ in frames:
            peer.send(*message)
        codes = [check_error_reply(peer.recv()[-1], expected) for _, expected in frames]
        assert peer.sock.poll(100) == 0  # exactly one reply per garbage message
        assert {MALFORMED, UNKNOWN_METHOD, BAD_PARAMS, DEADLINE_EXCEEDED} <= set(codes)
        peer.send(peer.request("add", {"a": 40, "b": 2}, "after-garbage"))
        assert peer.reply() == {"id": "after-garbage", "ok": True, "result": 42}
    finally:
        peer.close()

    async def scenario() -> int:
        async with AsyncRpcClient(server.endpoint) as client:
            result: int = await client.call("add", a=1, b=2)
            return result

    assert run(scenario()) == 3


def test_garbage_when_1000_frames_via_req_socket_then_each_gets_error_and_server_still_serves(
    server: Served,
) -> None:
    frames = garbage_frames(seed=7, count=1000)
    peer = RawPeer(server.endpoint, zmq.REQ)
    try:
        for message, expected in frames:
            peer.send(*message)
            check_error_reply(peer.recv()[-1], expected)  # REQ would be stuck without a reply
        peer.send(peer.request("add", {"a": 1, "b": 1}, "req-after-garbage"))
        assert peer.reply() == {"id": "req-after-garbage", "ok": True, "result": 2}
    finally:
        peer.close()


# --------------------------------------------------------------------------- interop and concurrency


def test_req_socket_when_plain_request_then_reply_with_same_envelope(server: Served) -> None:
    req = RawPeer(server.endpoint, zmq.REQ)
    dealer = RawPeer(server.endpoint)
    try:
        req.send(req.request("add", {"a": 20, "b": 22}, "req-1"))
        assert req.reply() == {"id": "req-1", "ok": True, "result": 42}
        # what a REQ socket sends, spelled out by hand, and through one extra hop of routing
        dealer.send(b"", dealer.request("add", {"a": 1, "b": 2}, "env-req"))
        frames = dealer.recv()
        assert frames[0] == b"" and decode(frames[1])["result"] == 3 and len(frames) == 2
        dealer.send(b"hop-7", b"", dealer.request("add", {"a": 1, "b": 3}, "env-hop"))
        frames = dealer.recv()
        assert frames[:2] == [b"hop-7", b""] and decode(frames[2])["result"] == 4
    finally:
        req.close()
        dealer.close()


def test_concurrent_calls_when_200_at_once_then_each_reply_matched_to_its_call(server: Served) -> None:
    async def scenario() -> None:
        async with AsyncRpcClient(server.endpoint) as client:
            calls = []
            for i in range(200):
                if i % 3 == 0:
                    calls.append(client.call("add", a=i, b=1000))
                elif i % 3 == 1:
                    calls.append(client.call("echo", value={"i": i}))
                else:
                    calls.append(client.call("slow", seconds=0.001 * (i % 7)))
            results = await asyncio.gather(*calls)
            for i, result in enumerate(results):
                expected = i + 1000 if i % 3 == 0 else {"i": i} if i % 3 == 1 else 0.001 * (i % 7)
                assert result == expected
            assert client.stats()["pending"] == 0

    run(scenario())


def test_blocking_client_when_called_from_threads_then_results_and_errors(server: Served) -> None:
    with RpcClient(server.endpoint) as client:
        assert client.call("add", a=1, b=2) == 3
        assert client.ping()["pong"] is True
        with pytest.raises(RpcRemoteError) as info:
            client.call("add", a="x", b=1)
        assert info.value.code == BAD_PARAMS
        with pytest.raises(RpcTimeout):
            client.call("slow", seconds=2.0, timeout=0.2)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.call("add", a=i, b=i), range(200)))
        assert results == [2 * i for i in range(200)]
        assert threading.current_thread() is threading.main_thread()
    with pytest.raises(RpcUnavailable, match="closed"):
        client.call("add", a=1, b=1)


def test_client_when_closed_then_pending_and_new_calls_unavailable(server: Served) -> None:
    async def scenario() -> None:
        client = AsyncRpcClient(server.endpoint)
        pending = asyncio.create_task(client.call("slow", seconds=2.0))
        await asyncio.sleep(0)  # let the call be sent
        await client.close()
        with pytest.raises(RpcUnavailable, match="closed"):
            await pending
        with pytest.raises(RpcUnavailable, match="closed"):
            await client.call("add", a=1, b=2)

    run(scenario())


# --------------------------------------------------------------------------- server death


def test_server_when_sigkilled_and_restarted_then_same_client_recovers_without_double_execution(
    procs: Processes, tmp_path: Path
) -> None:
    endpoint, state = free_endpoint(), tmp_path / "counts.log"
    first = start_app(procs, endpoint, "--state", str(state))

    async def scenario() -> dict[str, int]:
        async with AsyncRpcClient(endpoint, heartbeat_interval=0.2, max_retries=25) as client:
            assert await client.call("count", key="warm") == 1
            # in flight when the server dies: received (it printed "count start"), not yet executed
            in_flight = asyncio.create_task(client.call("count", key="restart", delay=1.0, timeout=20))
            assert await client.call("wait_event", key="restart", event="start") is True
            first.kill()
            await asyncio.to_thread(first.popen.wait, 5)
            second = procs.python(APP, "--endpoint", endpoint, "--state", str(state))
            await asyncio.to_thread(second.wait_for_line, r"RPC READY", 20)
            # the same client object: the call in flight succeeds after the resend ...
            assert await in_flight == 1
            # ... the next call works, and nothing ran twice (counts survive in the state file)
            assert await client.call("count", key="warm") == 2
            assert await client.call("counted", key="restart") == 1
            return client.stats()

    stats = run(scenario())
    assert stats["resends"] >= 1
    assert state.read_text().splitlines().count("restart") == 1


def test_server_when_down_then_pending_call_unavailable_naming_endpoint_and_next_call_recovers(
    procs: Processes,
) -> None:
    endpoint = free_endpoint()
    first = start_app(procs, endpoint)

    async def scenario() -> tuple[str, float]:
        async with AsyncRpcClient(endpoint, heartbeat_interval=0.1, max_retries=2) as client:
            assert await client.call("add", a=1, b=1) == 2
            first.kill()
            await asyncio.to_thread(first.popen.wait, 5)
            started = time.monotonic()
            with pytest.raises(RpcUnavailable) as info:
                await client.call("add", a=1, b=2, timeout=30)
            elapsed = time.monotonic() - started
            second = procs.python(APP, "--endpoint", endpoint)
            await asyncio.to_thread(second.wait_for_line, r"RPC READY", 20)
            assert await client.call("add", a=2, b=2, timeout=10) == 4
            assert client.stats()["reconnects"] >= 2
            return str(info.value), elapsed

    message, elapsed = run(scenario())
    assert endpoint in message and "2 reconnects" in message
    assert elapsed < 3.0  # ~ (max_retries + 1) * 2 * heartbeat_interval, far below the 30 s timeout


# --------------------------------------------------------------------------- in-process server


def test_server_in_process_when_handler_raises_then_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = MethodRegistry()

    @registry.method("explode")
    async def explode() -> None:
        await asyncio.sleep(0)  # fail inside the task, after the first suspension
        raise KeyError("deep")

    async def scenario() -> None:
        server = RpcServer("tcp://127.0.0.1:*", registry)
        await server.start()
        serving = asyncio.create_task(server.serve_forever())
        async with AsyncRpcClient(server.bound_endpoint) as client:
            with pytest.raises(RpcRemoteError, match="explode raised KeyError: 'deep'"):
                await client.call("explode")
        await server.close()
        await serving

    with caplog.at_level("ERROR", logger="trader.messaging.rpc"):
        run(scenario())
    [record] = [r for r in caplog.records if r.name == "trader.messaging.rpc.server"]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "explode" in record.getMessage()


def test_server_in_process_when_serving_then_stats_count_requests_and_errors() -> None:
    registry = MethodRegistry()

    @registry.method("double")
    async def double(x: int) -> int:
        return 2 * x

    async def scenario() -> dict[str, Any]:
        ctx = zmq.asyncio.Context()  # a zmq.asyncio context is accepted too
        server = RpcServer("tcp://127.0.0.1:*", registry, context=ctx)
        await server.start()
        assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", server.bound_endpoint)
        serving = asyncio.create_task(server.serve_forever())
        async with AsyncRpcClient(server.bound_endpoint, context=ctx) as client:
            assert await client.call("double", x=21) == 42
            with pytest.raises(RpcRemoteError):
                await client.call("double", x="a")
            with pytest.raises(RpcRemoteError):
                await client.call("nothing")
        await server.close()
        await serving
        ctx.destroy(linger=0)
        return server.stats()

    stats = run(scenario())
    assert stats["requests"] == 3 and stats["replies"] == 3 and stats["executed"] == 1
    assert stats["errors"] == {BAD_PARAMS: 1, UNKNOWN_METHOD: 1}


def test_server_in_process_when_handlers_use_task_apis_or_are_sync_then_they_behave() -> None:
    registry = MethodRegistry()

    @registry.method("structured")
    async def structured(n: int) -> list[int]:
        async with asyncio.timeout(2), asyncio.TaskGroup() as group:  # both need a current task
            tasks = [group.create_task(asyncio.sleep(0, result=i)) for i in range(n)]
        return [t.result() for t in tasks]

    @registry.method("sync_refuse")
    def sync_refuse() -> None:
        raise RpcError("risk_refused", "sync says no")

    @registry.method("sync_fail")
    def sync_fail() -> None:
        raise ZeroDivisionError("sync boom")

    async def scenario() -> None:
        async with RpcServer("tcp://127.0.0.1:*", registry) as server:
            serving = asyncio.create_task(server.serve_forever())
            async with AsyncRpcClient(server.bound_endpoint) as client:
                assert await client.call("structured", n=3) == [0, 1, 2]
                with pytest.raises(RpcRemoteError) as refused:
                    await client.call("sync_refuse")
                assert (refused.value.code, refused.value.message) == ("risk_refused", "sync says no")
                with pytest.raises(RpcRemoteError) as failed:
                    await client.call("sync_fail")
                assert failed.value.message == "sync_fail raised ZeroDivisionError: sync boom"
        await serving

    run(scenario())


def test_client_when_thousands_of_calls_then_deadline_bookkeeping_stays_small_and_timeouts_fire() -> None:
    registry = MethodRegistry()
    registry.register("inc", lambda x: x + 1)
    registry.register("hang", asyncio.Event().wait, shield=True)

    async def scenario() -> None:
        async with RpcServer("tcp://127.0.0.1:*", registry) as server:
            serving = asyncio.create_task(server.serve_forever())
            async with AsyncRpcClient(server.bound_endpoint, timeout=30) as client:
                for i in range(3000):  # each leaves a 30 s deadline behind in the client's heap
                    assert await client.call("inc", x=i) == i + 1
                assert len(client._deadlines) <= 1024 + 1
                with pytest.raises(RpcTimeout, match=r"hang on .* within 0\.05s"):
                    await client.call("hang", timeout=0.05)
                assert client.stats()["timeouts"] == 1 and client.stats()["pending"] == 0
        await serving

    run(scenario())


def test_server_in_process_when_loop_too_busy_to_start_handler_before_deadline_then_not_run() -> None:
    registry = MethodRegistry()
    ran: list[str] = []

    @registry.method("record")
    async def record(tag: str) -> None:
        ran.append(tag)

    async def scenario() -> dict[str, Any]:
        async with RpcServer("tcp://127.0.0.1:*", registry) as server:
            late = encode(
                {"id": "r1", "method": "record", "params": {"tag": "late"}, "deadline_ms": now_ms() + 30}
            )
            server._on_frames([b"peer", late])  # accepted in time: its task is created ...
            time.sleep(0.1)  # noqa: ASYNC251  ... but the loop is blocked until after the deadline
            await asyncio.sleep(0)  # the task's first step runs now
            return server.stats()

    stats = run(scenario())
    assert ran == [] and stats["errors"] == {DEADLINE_EXCEEDED: 1} and stats["executed"] == 1


def test_server_in_process_when_closed_with_grace_then_running_handler_finishes() -> None:
    registry = MethodRegistry()
    entered, release = asyncio.Event(), asyncio.Event()

    @registry.method("wait")
    async def wait() -> str:
        entered.set()
        await release.wait()
        return "done"

    async def scenario() -> None:
        server = RpcServer("tcp://127.0.0.1:*", registry)
        await server.start()
        serving = asyncio.create_task(server.serve_forever())
        async with AsyncRpcClient(server.bound_endpoint) as client:
            call = asyncio.create_task(client.call("wait"))
            await entered.wait()
            closing = asyncio.create_task(server.close(grace=5.0))
            await asyncio.sleep(0)
            release.set()
            assert await call == "done"
            await closing
        await serving

    run(scenario())
