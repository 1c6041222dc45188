"""CurveZMQ on real sockets (127.0.0.1, free ports): RPC and pub/sub admit only authorized keys; the
trader refuses a bind beyond loopback without curve; a trader with curve serves the CLI and a
strategy service that have their keys. Nothing here binds beyond loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.exchange_fixtures import start_exchange
from tests.integration.test_trader_orders import start_trader
from tests.support import ROOT, Processes, free_endpoint, free_port, processes_fixture
from trader.messaging.curve import CurveKeys, generate_keypair, load_keys
from trader.messaging.pubsub import TickBatch, TickPublisher, TickSubscriber
from trader.messaging.rpc import (
    AsyncRpcClient,
    MethodRegistry,
    RpcClient,
    RpcServer,
    RpcTimeout,
    RpcUnavailable,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def procs() -> Iterator[Processes]:
    yield from processes_fixture()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A keys directory: server ``trader``, clients ``good`` (authorized) and ``intruder`` (not)."""
    folder = tmp_path / "keys"
    for name in ("trader", "good", "intruder"):
        generate_keypair(folder, name)
    (folder / "clients").mkdir()
    shutil.copy(folder / "good.key", folder / "clients" / "good.key")
    return folder


def server_keys(folder: Path) -> CurveKeys:
    return load_keys(folder, "trader", authorized_dir=folder / "clients")


def client_keys(folder: Path, name: str) -> CurveKeys:
    return load_keys(folder, name, server_key=folder / "trader.key")


def registry() -> MethodRegistry:
    methods = MethodRegistry()

    @methods.method("add")
    def add(a: int, b: int) -> int:
        return a + b

    return methods


# -- RPC ----------------------------------------------------------------------------------------------


def test_rpc_when_client_key_is_authorized_then_calls_succeed(keys: Path) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with RpcServer(endpoint, registry(), curve=server_keys(keys)) as server:
            serving = asyncio.create_task(server.serve_forever())
            async with AsyncRpcClient(endpoint, curve=client_keys(keys, "good"), timeout=5.0) as rpc:
                assert await rpc.call("add", a=2, b=3) == 5
                assert (await rpc.ping())["pong"] is True
            serving.cancel()

    asyncio.run(scenario())


def test_rpc_when_blocking_client_is_authorized_then_calls_succeed(keys: Path) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with RpcServer(endpoint, registry(), curve=server_keys(keys)) as server:
            serving = asyncio.create_task(server.serve_forever())
            with RpcClient(endpoint, curve=client_keys(keys, "good"), timeout=5.0) as rpc:
                assert await asyncio.to_thread(rpc.call, "add", a=20, b=22) == 42
            serving.cancel()

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["intruder", "plain"])
def test_rpc_when_client_key_unknown_or_no_curve_then_no_answer_quickly(keys: Path, who: str) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        curve = client_keys(keys, "intruder") if who == "intruder" else None
        async with RpcServer(endpoint, registry(), curve=server_keys(keys)) as server:
            serving = asyncio.create_task(server.serve_forever())
            started = time.monotonic()
            async with AsyncRpcClient(
                endpoint, curve=curve, timeout=1.0, heartbeat_interval=0.1, max_retries=1
            ) as rpc:
                with pytest.raises((RpcTimeout, RpcUnavailable)):
                    await rpc.call("add", a=1, b=1)
            assert time.monotonic() - started < 3.0
            assert server.stats()["requests"] == 0  # nothing reached the server
            # and an authorized client on the same server is still served
            async with AsyncRpcClient(endpoint, curve=client_keys(keys, "good"), timeout=5.0) as rpc:
                assert await rpc.call("add", a=1, b=1) == 2
            serving.cancel()

    asyncio.run(scenario())


def test_rpc_when_key_is_authorized_while_serving_then_next_connection_is_admitted(keys: Path) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with RpcServer(endpoint, registry(), curve=server_keys(keys)) as server:
            serving = asyncio.create_task(server.serve_forever())
            intruder = client_keys(keys, "intruder")
            async with AsyncRpcClient(
                endpoint, curve=intruder, timeout=0.5, heartbeat_interval=0.1, max_retries=0
            ) as rpc:
                with pytest.raises((RpcTimeout, RpcUnavailable)):
                    await rpc.call("add", a=1, b=1)
            shutil.copy(keys / "intruder.key", keys / "clients" / "intruder.key")
            async with AsyncRpcClient(endpoint, curve=intruder, timeout=5.0) as rpc:
                assert await rpc.call("add", a=1, b=2) == 3
            serving.cancel()

    asyncio.run(scenario())


# -- pub/sub ------------------------------------------------------------------------------------------


async def first_batch(sub: TickSubscriber, pub: TickPublisher, within: float) -> TickBatch | None:
    """Publish a row every 20 ms until ``sub`` yields a batch (None when ``within`` passes)."""
    sub.subscribe("AAPL")

    async def consume() -> TickBatch:
        async for msg in sub:
            if isinstance(msg, TickBatch):
                return msg
        raise AssertionError("subscriber closed")

    consumer = asyncio.ensure_future(consume())
    deadline = time.monotonic() + within
    i = 0
    while time.monotonic() < deadline and not consumer.done():
        pub.publish("AAPL", {"time": time.time_ns(), "last": 100.0 + i})
        i += 1
        await asyncio.wait([consumer], timeout=0.02)
    if consumer.done():
        return consumer.result()
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    return None


def test_pubsub_when_subscriber_key_is_authorized_then_it_receives_ticks(keys: Path) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with (
            TickPublisher(endpoint, heartbeat_s=0.05, curve=server_keys(keys)) as pub,
            TickSubscriber(endpoint, curve=client_keys(keys, "good")) as sub,
        ):
            batch = await first_batch(sub, pub, within=10.0)
        assert batch is not None and batch.topic == "AAPL" and len(batch.frame) >= 1

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["intruder", "plain"])
def test_pubsub_when_subscriber_key_unknown_or_no_curve_then_nothing_arrives(keys: Path, who: str) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        curve = client_keys(keys, "intruder") if who == "intruder" else None
        async with (
            TickPublisher(endpoint, heartbeat_s=0.05, curve=server_keys(keys)) as pub,
            TickSubscriber(endpoint, curve=curve) as outsider,
            TickSubscriber(endpoint, curve=client_keys(keys, "good")) as insider,
        ):
            assert await first_batch(insider, pub, within=10.0) is not None  # the publisher works
            assert await first_batch(outsider, pub, within=1.0) is None
            assert outsider.stats.heartbeats == 0 and outsider.stats.messages == 0

    asyncio.run(scenario())


# -- the trader service -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5"])
def test_trader_when_rpc_binds_beyond_loopback_without_curve_then_refuses_with_exit_2(
    procs: Processes, tmp_path: Path, host: str
) -> None:
    env = {
        "BOURSE_DATA_DIR": str(tmp_path),
        "BOURSE_ZMQ_RPC": f"tcp://{host}:{free_port()}",
        "BOURSE_ZMQ_TICKS": free_endpoint(),
        "BOURSE_ZMQ_EVENTS": free_endpoint(),
        "BOURSE_IB_PORT": str(free_port()),
        "BOURSE_LOGGING_CONSOLE": "false",
    }
    child = procs.python("services/trader_service.py", env=env)
    output = child.read_rest(timeout=30)
    assert child.popen.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"zmq.rpc = tcp://{host}:" in errors[0] and "without CurveZMQ" in errors[0]
    assert "zmq.curve.enabled" in errors[0]


def test_trader_when_curve_enabled_and_its_key_missing_then_refuses_naming_the_file(
    procs: Processes, tmp_path: Path
) -> None:
    env = {
        "BOURSE_DATA_DIR": str(tmp_path),
        "BOURSE_ZMQ_CURVE_ENABLED": "true",
        "BOURSE_ZMQ_RPC": free_endpoint(),
        "BOURSE_ZMQ_TICKS": free_endpoint(),
        "BOURSE_ZMQ_EVENTS": free_endpoint(),
        "BOURSE_IB_PORT": str(free_port()),
        "BOURSE_LOGGING_CONSOLE": "false",
    }
    child = procs.python("services/trader_service.py", env=env)
    output = child.read_rest(timeout=30)
    assert child.popen.returncode == 2, output
    assert f"error: zmq.curve: {tmp_path / 'keys' / 'trader.key_secret'}: key file not found" in output


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


STRATEGIES = """
shards: {{count: 1, host: 127.0.0.1, base_port: {port}}}
logging: {{level: INFO, console: false}}
strategies: {{}}
"""


def test_trader_when_curve_enabled_then_cli_and_strategy_service_with_keys_work_and_others_do_not(
    procs: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    base = {"BOURSE_DATA_DIR": str(data)}
    for name, authorize in (("trader", False), ("cli", True), ("strategies", True), ("intruder", False)):
        made = cli(base, "--json", "keys", "generate", name, *(["--authorize"] if authorize else []))
        assert made.returncode == 0, made.stderr + made.stdout
    listed = cli(base, "--json", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert '"name": "strategies"' in listed.stdout
    assert (data / "keys" / "trader.key_secret").stat().st_mode & 0o777 == 0o600

    exchange = start_exchange(procs, tmp_path / "exchange")
    trader = start_trader(procs, data, exchange.port, env={"BOURSE_ZMQ_CURVE_ENABLED": "true"})
    assert "curve" in trader.child.lines[-1]

    ok = cli(trader.env, "--json", "ping")
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert '"pong": true' in ok.stdout
    refused = cli({**trader.env, "BOURSE_ZMQ_CURVE_CLIENT_KEY": "intruder"}, "ping", "--timeout", "1")
    assert refused.returncode == 2, refused.stderr + refused.stdout
    assert "not answering" in refused.stderr
    plain = cli({**trader.env, "BOURSE_ZMQ_CURVE_ENABLED": "false"}, "ping", "--timeout", "1")
    assert plain.returncode == 2, plain.stderr + plain.stdout

    config = tmp_path / "strategies.yaml"
    config.write_text(STRATEGIES.format(port=free_port()), encoding="utf-8")
    shard_env = {**trader.env, "BOURSE_STRATEGIES_CONFIG": str(config)}
    shard = procs.python("services/strategy_service.py", "--shard", "0", env=shard_env)
    # ready = the trader's RPC answered and its events PUB sent a heartbeat, both over curve
    shard.wait_for_line(r"strategy service ready: shard 0", timeout=60)
    assert shard.stop() == 0
