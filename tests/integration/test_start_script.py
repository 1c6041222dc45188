"""``./start.sh``, the one command that starts the system: pycron brings the paper exchange and the
trader service to READY in order, restarts a killed service, and Ctrl+C / SIGTERM leaves nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import ib_async

from tests.integration.test_pycron_supervisor import wait_gone
from tests.support import ROOT, Processes, free_endpoint, free_port
from trader.messaging.rpc import RpcClient


def free_port_pair() -> int:
    """A port p with p and p + 1 both free (the two strategy shards' RPC: base_port + K)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_start_script_when_run_then_every_process_is_ready_restarted_when_killed_and_stopped_on_sigterm(
    procs: Processes, tmp_path: Path
) -> None:
    port, rpc, web = free_port(), free_endpoint(), free_port()
    env = {
        "BOURSE_EXCHANGE_PORT": str(port),
        "BOURSE_EXCHANGE_CONTROL_RPC": free_endpoint(),
        "BOURSE_IB_PORT": str(port),
        "BOURSE_ZMQ_RPC": rpc,
        "BOURSE_ZMQ_TICKS": free_endpoint(),
        "BOURSE_ZMQ_EVENTS": free_endpoint(),
        "BOURSE_WEB_PORT": str(web),
        "BOURSE_SHARDS_BASE_PORT": str(free_port_pair()),
        "BOURSE_LOGGING_CONSOLE": "false",
    }
    system = procs.spawn(["bash", str(ROOT / "start.sh"), "--data-dir", str(tmp_path)], env=env)
    system.wait_for_line(r"pycron: all jobs ready in", timeout=120)
    system.wait_for_line(r"Ctrl\+C stops everything")

    url = f"http://127.0.0.1:{web}"
    jobs = {job["name"]: job for job in get_json(f"{url}/processes")}
    assert {name: job["state"] for name, job in jobs.items()} == {
        "exchange": "ready",
        "trader": "ready",
        "history": "stopped",  # scheduled on weekday evenings only
        "strategies-0": "ready",
        "strategies-1": "ready",
    }
    with RpcClient(rpc, timeout=5) as client:
        assert client.call("status")["data_dir"] == str(tmp_path)
        # the example strategies of configs/strategies.yaml trade within a minute of start
        deadline = time.monotonic() + 60
        traded: set[str] = set()
        while time.monotonic() < deadline and traded != {"sma_fast", "meanrev", "momentum"}:
            rows = client.call("get_positions", include_flat=True)  # a strategy may be flat again
            traded = {row["strategy"] for row in rows if row["fills"]}
            if traded != {"sma_fast", "meanrev", "momentum"}:
                time.sleep(0.5)  # polling the trader's book for an outcome (no event carries "all three")
        assert traded == {"sma_fast", "meanrev", "momentum"}

    async def managed_accounts() -> list[str]:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", port, clientId=7, timeout=10)
        try:
            return ib.managedAccounts()
        finally:
            ib.disconnect()

    assert asyncio.run(managed_accounts()) == ["DU1234567"]

    killed = jobs["trader"]["pid"]
    with urllib.request.urlopen(f"{url}/events", timeout=60) as stream:  # live events from now on
        os.kill(killed, signal.SIGKILL)
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:") and '"trader: ready' in line:
                break
    trader = get_json(f"{url}/processes/trader")
    assert trader["state"] == "ready" and trader["pid"] != killed and trader["restarts"] == 1
    assert trader["last_exit"]["signal"] == signal.SIGKILL
    pids = [job["pid"] for job in get_json(f"{url}/processes") if job["pid"]]
    assert len(pids) == 4

    os.kill(system.pid, signal.SIGTERM)  # start.sh execs pycron: this is pycron, not its group
    assert system.popen.wait(60) == 0
    assert wait_gone(pids) == []
    assert "trader service stopped" in (tmp_path / "logs" / "trader.service.log").read_text()
    assert "exchange stopped" in (tmp_path / "logs" / "exchange.service.log").read_text()
    assert "exchange ready on" in (tmp_path / "logs" / "exchange.log").read_text()


def test_start_script_when_argument_unknown_then_usage_error(procs: Processes) -> None:
    child = procs.spawn(["bash", str(ROOT / "start.sh"), "--bogus"])
    assert child.popen.wait(30) == 2
    assert "error: unknown argument '--bogus'" in child.read_rest()
