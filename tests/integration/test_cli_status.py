"""``cli.py status``, ``reconnect``, ``info``, ``strategy``, ``risk`` and the REPL, as a user runs them:
real processes (exchange + trader), a fake pycron web API, and a pseudo-terminal for the REPL."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.cli_fixtures import CliSystem
from tests.support import ROOT, free_endpoint, free_port

pytestmark = pytest.mark.integration

JOBS = [{"name": "exchange", "state": "ready", "pid": 4242, "uptime_s": 61.0, "restarts": 0, "reason": None}]


class _Pycron(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(JOBS if self.path == "/processes" else {"error": {}}).encode()
        self.send_response(200 if self.path == "/processes" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pycron_port() -> Iterator[int]:
    """A stand-in for pycron's web API answering GET /processes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pycron)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def no_pycron() -> dict[str, str]:
    return {"BOURSE_WEB_PORT": str(free_port())}


def test_status_when_system_runs_then_ib_subscriptions_and_endpoints_are_shown(
    cli_system: CliSystem, pycron_port: int
) -> None:
    result = cli_system.cli("status", env={"BOURSE_WEB_PORT": str(pycron_port)})

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "processes (pycron)" in out and "exchange" in out and "4242" in out
    for expected in ("IB", "client id", "account", "subscriptions", "last tick", "store", "data dir"):
        assert expected in out
    assert "trading" in out and "active" in out
    assert cli_system.trader.rpc in out
    assert str(cli_system.data_dir) in out


def test_status_when_json_before_or_after_then_the_same_document(cli_system: CliSystem) -> None:
    after = cli_system.cli("status", "--json", env=no_pycron())
    before = cli_system.cli("--json", "status", env=no_pycron())

    assert after.returncode == 0 and before.returncode == 0, after.stderr + before.stderr
    first, second = after.json(), before.json()
    assert first["ok"] is True and second["ok"] is True
    assert first.keys() == second.keys() and first["result"].keys() == second["result"].keys()
    for doc in (first, second):
        result = doc["result"]
        assert result["processes"]["running"] is False
        assert "pycron is not running" in result["processes"]["error"]
        assert result["trader"]["endpoints"]["rpc"] == cli_system.trader.rpc
        assert result["trader"]["ib"]["client_id"] == 0
        assert result["trading"]["state"] == "active" and result["trading"]["kill_switch"] is False
        assert result["subscriptions"]["count"] == len(result["subscriptions"]["symbols"])
    assert first["result"]["trader"]["pid"] == second["result"]["trader"]["pid"]


def test_status_when_trader_is_down_then_one_line_and_exit_two(cli_system: CliSystem) -> None:
    endpoint = free_endpoint()
    result = cli_system.cli("status", env=no_pycron() | {"BOURSE_ZMQ_RPC": endpoint})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: the trader service is not answering at {endpoint} (start it with ./start.sh)"
    ]
    assert "Traceback" not in result.stderr + result.stdout
    as_json = cli_system.cli("status", "--json", env=no_pycron() | {"BOURSE_ZMQ_RPC": endpoint})
    assert as_json.returncode == 2 and as_json.json()["error"]["code"] == "unavailable"


def test_status_when_bad_option_or_debug_then_usage_error_or_accepted(cli_system: CliSystem) -> None:
    bad = cli_system.cli("status", "--bogus", env=no_pycron())
    assert bad.returncode == 2 and "No such option" in bad.stderr and "Traceback" not in bad.stderr

    for args in (("--debug", "status"), ("status", "--debug")):
        result = cli_system.cli(*args, env=no_pycron())
        assert result.returncode == 0, result.stderr
        assert "active" in result.stdout


def test_strategy_when_no_strategy_service_answers_then_one_line_and_no_traceback(
    cli_system: CliSystem,
) -> None:
    result = cli_system.cli("strategy", "list", env={"BOURSE_SHARDS_BASE_PORT": str(free_port())})

    assert result.returncode == 2  # a service down
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "strategy" in lines[0]
    assert "Traceback" not in result.stderr


def test_strategy_and_risk_when_help_then_every_subcommand_is_described(cli_system: CliSystem) -> None:
    strategy = cli_system.cli("strategy", "--help")
    risk = cli_system.cli("risk", "--help")

    assert strategy.returncode == 0 and risk.returncode == 0
    for name in ("list", "enable", "disable", "status"):
        assert name in strategy.stdout
    for name in ("show", "set", "halt", "reduce", "resume"):
        assert name in risk.stdout


def test_info_once_when_system_runs_then_one_frame_and_a_json_state(cli_system: CliSystem) -> None:
    result = cli_system.cli("info", "--once", env=no_pycron())

    assert result.returncode == 0, result.stderr
    for section in ("positions", "open orders", "last fills", "P&L", "prices", "processes:"):
        assert section in result.stdout
    assert "IB: connected" in result.stdout
    doc = cli_system.cli("info", "--json", env=no_pycron()).json()
    assert doc["ok"] is True and doc["result"]["connection"]["state"] == "connected"


def test_reconnect_when_asked_then_a_new_session_is_connected(cli_system: CliSystem) -> None:
    before = cli_system.cli("status", "--json", env=no_pycron()).json()["result"]["trader"]["ib"]
    result = cli_system.cli("reconnect", "--json")

    assert result.returncode == 0, result.stderr
    session = result.json()["result"]
    assert session["state"] == "connected"
    assert session["connects"] > before["connects"]
    human = cli_system.cli("reconnect")
    assert human.returncode == 0 and human.stdout.startswith("IB: connected since")


# --- through a pseudo-terminal --------------------------------------------------------------------


TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
"""Run in a new session: make the pty (stdin) the controlling terminal, so that Ctrl+C typed on it
is a SIGINT to the CLI, then become ``python cli.py ...``."""


class Pty:
    """A ``cli.py`` child on a pseudo-terminal; :meth:`expect` reads with a deadline."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.slave = slave
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TAKE_TERMINAL, "cli.py", *args],
            cwd=ROOT,
            env=env | {"TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        self.seen = ""

    def expect(self, needle: str, within: float = 20.0) -> str:
        """Read until ``needle`` has been seen (after what earlier calls consumed); the text read."""
        deadline = time.monotonic() + within
        while needle not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {within}s; got {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    data = b""
                if not data:
                    raise AssertionError(f"EOF before {needle!r}; got {self.seen[-2000:]!r}")
                self.seen += data.decode("utf-8", errors="replace")
        head, _, self.seen = self.seen.partition(needle)
        return head + needle

    def wait(self, within: float = 20.0) -> int:
        """The child's exit status, reading its output meanwhile (so that it never blocks)."""
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {within}s; got {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 65536).decode("utf-8", errors="replace")
        return self.proc.returncode

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        try:
            code = self.wait()
        except AssertionError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=5)
        finally:
            os.close(self.master)
            os.close(self.slave)
        return code


def test_repl_when_driven_through_a_terminal_then_commands_run_complete_and_are_remembered(
    cli_system: CliSystem,
) -> None:
    history = cli_system.data_dir / "cli_history"
    history.unlink(missing_ok=True)
    repl = Pty([], cli_system.env | no_pycron())
    try:
        repl.expect("bourse> ")
        repl.send("ping\r")
        assert "round_trip_ms" in repl.expect("bourse> ")
        repl.send("status --json\r")
        document = repl.expect("bourse> ")
        assert '"ok": true' in document and '"last_tick_age_s"' in document
        repl.send("sta\t")
        repl.expect("status")
        repl.send("\r")
        assert "active" in repl.expect("bourse> ")
        repl.send("exit\r")
    finally:
        code = repl.close()
    assert code == 0
    lines = [line.strip() for line in history.read_text().splitlines()]
    assert lines[-4:] == ["ping", "status --json", "status", "exit"]  # "sta" + Tab became "status"


def test_info_when_live_on_a_terminal_then_q_quits_and_the_terminal_is_restored(
    cli_system: CliSystem,
) -> None:
    info = Pty(["info"], cli_system.env | no_pycron())
    try:
        info.expect("q quits")
        info.expect("prices")
        info.send("q")
    finally:
        code = info.close()
    assert code == 0
    assert "Traceback" not in info.seen


def test_info_when_live_and_ctrl_c_then_it_quits_cleanly(cli_system: CliSystem) -> None:
    info = Pty(["info"], cli_system.env | no_pycron())
    try:
        info.expect("q quits")
        mode = termios.tcgetattr(info.slave)
        assert not mode[3] & termios.ICANON  # cbreak while it runs
        info.send("\x03")
        code = info.wait()
        restored = termios.tcgetattr(info.slave)
    finally:
        info.close()
    assert code == 0
    assert restored[3] & termios.ICANON and restored[3] & termios.ECHO
