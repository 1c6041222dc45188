"""``./start.sh``, the one command that starts the system: services come up in dependency order,
answer, and all stop together on Ctrl+C / SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import ib_async

from tests.support import ROOT, Processes, free_endpoint, free_port
from trader.messaging.rpc import RpcClient


def test_start_script_when_run_then_exchange_and_trader_serve_and_stop_together(
    procs: Processes, tmp_path: Path
) -> None:
    port, rpc = free_port(), free_endpoint()
    env = {
        "BOURSE_EXCHANGE_PORT": str(port),
        "BOURSE_EXCHANGE_CONTROL_RPC": free_endpoint(),
        "BOURSE_IB_PORT": str(port),
        "BOURSE_ZMQ_RPC": rpc,
        "BOURSE_ZMQ_TICKS": free_endpoint(),
        "BOURSE_ZMQ_EVENTS": free_endpoint(),
        "BOURSE_LOGGING_CONSOLE": "false",
    }
    system = procs.spawn(["bash", str(ROOT / "start.sh"), "--data-dir", str(tmp_path)], env=env)
    system.wait_for_line("Bourse is up", timeout=90)

    with RpcClient(rpc, timeout=5) as client:
        assert client.call("status")["data_dir"] == str(tmp_path)

    async def managed_accounts() -> list[str]:
        ib = ib_async.IB()
        await ib.connectAsync("127.0.0.1", port, clientId=7, timeout=10)
        try:
            return ib.managedAccounts()
        finally:
            ib.disconnect()

    assert asyncio.run(managed_accounts()) == ["DU1234567"]
    assert (tmp_path / "logs" / "exchange.log").exists() and (tmp_path / "logs" / "trader.log").exists()

    os.kill(system.pid, signal.SIGTERM)  # the script, not its group: it must stop its children itself
    assert system.popen.wait(30) == 143
    output = system.read_rest()
    assert "trader service stopped" in (tmp_path / "logs" / "trader.log").read_text()
    assert "exchange stopped" in (tmp_path / "logs" / "exchange.log").read_text(), output


def test_start_script_when_argument_unknown_then_usage_error(procs: Processes) -> None:
    child = procs.spawn(["bash", str(ROOT / "start.sh"), "--bogus"])
    assert child.popen.wait(30) == 2
    assert "error: unknown argument '--bogus'" in child.read_rest()
