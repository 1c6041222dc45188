"""The trader service process as an operator runs it: config from file and environment, state
under the data dir, RPC answering, clean stop on SIGTERM, one-line errors for a broken config."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, Processes, free_endpoint, free_port
from trader.messaging.pubsub import TickSubscriber
from trader.messaging.rpc import RpcClient


def trader_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    endpoints = {"rpc": free_endpoint(), "ticks": free_endpoint(), "events": free_endpoint()}
    env = {f"BOURSE_ZMQ_{name.upper()}": ep for name, ep in endpoints.items()}
    env["BOURSE_DATA_DIR"] = str(tmp_path / "state")
    env["BOURSE_ZMQ_HEARTBEAT_S"] = "0.1"
    env["BOURSE_IB_PORT"] = str(free_port())  # nobody listens: the trader keeps retrying IB meanwhile
    return env, endpoints


def test_trader_service_when_started_then_rpc_answers_and_state_lives_in_data_dir(
    procs: Processes, tmp_path: Path
) -> None:
    env, endpoints = trader_env(tmp_path)
    service = procs.python("services/trader_service.py", env=env)
    service.wait_for_line("trader service ready")

    with RpcClient(endpoints["rpc"], timeout=5) as client:
        assert client.call("ping")["pong"] is True
        status = client.call("status")
        config = client.call("config")
    assert status["data_dir"] == str(tmp_path / "state")
    assert status["store_uri"] == f"lmdb://{tmp_path / 'state' / 'arctic'}"
    assert status["endpoints"] == endpoints
    assert config["config"]["zmq"]["heartbeat_s"] == 0.1
    assert status["ib"]["state"] in ("disconnected", "connecting") and status["ib"]["connected"] is False
    assert "trader service ready" in (tmp_path / "state" / "logs" / "trader.service.log").read_text()

    service.kill(signal.SIGTERM)
    assert service.popen.wait(10) == 0
    assert "trader service stopped" in service.read_rest()


def test_trader_service_when_running_then_events_socket_sends_heartbeats(
    procs: Processes, tmp_path: Path
) -> None:
    env, endpoints = trader_env(tmp_path)
    procs.python("services/trader_service.py", env=env).wait_for_line("trader service ready")

    async def heartbeat_age() -> float:
        async with TickSubscriber(endpoints["events"]) as events:
            events.start()
            await asyncio.wait_for(events.wait_for_heartbeat(), 10)
            return events.last_heartbeat_age

    assert asyncio.run(heartbeat_age()) < 1.0


def test_trader_service_when_config_key_is_wrong_then_exit_2_with_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "trader.yaml"
    bad.write_text("ib:\n  port: seven\n")
    result = subprocess.run(
        [sys.executable, "services/trader_service.py", "--config", str(bad), "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: ib.port: expected an integer, got 'seven'"


def test_cli_ping_when_trader_runs_then_ok_and_when_absent_then_one_line_error(
    procs: Processes, tmp_path: Path
) -> None:
    env, endpoints = trader_env(tmp_path)
    procs.python("services/trader_service.py", env=env).wait_for_line("trader service ready")
    ok = subprocess.run(
        [sys.executable, "cli.py", "ping", "--endpoint", endpoints["rpc"], "--json"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["result"]["pong"] is True

    nobody = free_endpoint()
    down = subprocess.run(
        [sys.executable, "cli.py", "ping", "--endpoint", nobody, "--timeout", "0.5"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert down.returncode == 2  # a service down
    assert down.stderr.count("\n") == 1 and down.stderr.startswith("error: ") and nobody in down.stderr
    assert "start it with ./start.sh" in down.stderr
