"""pycron probes: the tracker's judgement of result sequences (pure), and ``probe_once`` against a
real TCP listener, a real Tornado HTTP server, real commands and a log watch."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from tornado.httpserver import HTTPServer

from pycron.config import ProbeConfig
from pycron.joblog import JobLog
from pycron.probes import ProbeTracker, probe_once
from tests.support import free_port

T = TypeVar("T")
ENV = dict(os.environ)


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=20)

    return asyncio.run(bounded())


def outcomes(tracker: ProbeTracker, results: Sequence[tuple[bool, float]]) -> list[str | None]:
    return [tracker.record(ok, None if ok else f"failure at {now}", now) for ok, now in results]


def check(probe: ProbeConfig, **kwargs: Any) -> str | None:
    return run(probe_once(probe, python=sys.executable, cwd=None, env=ENV, **kwargs))


# --- ProbeTracker ---------------------------------------------------------------------------------


def test_readiness_when_first_success_then_passed_once() -> None:
    tracker = ProbeTracker(ProbeConfig("tcp", port=1), started_at=100.0, readiness=True)

    assert outcomes(tracker, [(False, 100.0), (True, 101.0), (True, 102.0), (False, 103.0)]) == [
        None,
        "passed",
        None,
        None,
    ]
    assert tracker.passed


def test_readiness_when_failures_reach_threshold_then_failed_once_per_streak() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=3)
    tracker = ProbeTracker(probe, started_at=0.0, readiness=True)

    assert outcomes(tracker, [(False, t) for t in (1.0, 2.0, 3.0, 4.0, 5.0)]) == [
        None,
        None,
        "failed",
        None,
        None,
    ]
    assert tracker.consecutive_failures == 5
    assert tracker.last_reason == "failure at 5.0"


def test_readiness_when_failing_in_start_period_then_not_counted() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=2, start_period_s=10.0)
    tracker = ProbeTracker(probe, started_at=100.0, readiness=True)

    early = outcomes(tracker, [(False, t) for t in (100.0, 105.0, 109.9)])
    assert early == [None, None, None]
    assert tracker.consecutive_failures == 0
    assert tracker.last_reason == "failure at 109.9"
    assert outcomes(tracker, [(False, 110.0), (False, 111.0)]) == [None, "failed"]


def test_readiness_when_success_after_reported_failure_then_passed() -> None:
    tracker = ProbeTracker(ProbeConfig("tcp", port=1, failure_threshold=1), 0.0, readiness=True)

    assert outcomes(tracker, [(False, 1.0), (True, 2.0)]) == ["failed", "passed"]
    assert tracker.last_reason is None


def test_health_when_failures_reach_threshold_then_failed_once_then_recovered() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=2)
    tracker = ProbeTracker(probe, started_at=0.0, readiness=False)

    results = [(True, 1.0), (False, 2.0), (False, 3.0), (False, 4.0), (True, 5.0), (True, 6.0)]
    assert outcomes(tracker, results) == [None, None, "failed", None, "recovered", None]
    assert tracker.consecutive_failures == 0


def test_health_when_success_interrupts_streak_then_count_restarts() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=2)
    tracker = ProbeTracker(probe, started_at=0.0, readiness=False)

    results = [(False, 1.0), (True, 2.0), (False, 3.0), (True, 4.0), (False, 5.0), (False, 6.0)]
    assert outcomes(tracker, results) == [None, None, None, None, None, "failed"]


def test_health_when_second_streak_after_recovery_then_failed_again() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=1)
    tracker = ProbeTracker(probe, started_at=0.0, readiness=False)

    results = [(False, 1.0), (True, 2.0), (False, 3.0), (False, 4.0)]
    assert outcomes(tracker, results) == ["failed", "recovered", "failed", None]


def test_health_when_failing_in_start_period_then_not_counted() -> None:
    probe = ProbeConfig("tcp", port=1, failure_threshold=1, start_period_s=30.0)
    tracker = ProbeTracker(probe, started_at=0.0, readiness=False)

    assert outcomes(tracker, [(False, 29.0), (False, 30.0)]) == [None, "failed"]


# --- probe_once: tcp ------------------------------------------------------------------------------


def test_tcp_probe_when_listening_then_passes() -> None:
    async def scenario() -> str | None:
        port = free_port()
        accepted = asyncio.Event()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", port)
        async with server:
            reason = await probe_once(ProbeConfig("tcp", port=port), python=sys.executable, cwd=None, env=ENV)
            await accepted.wait()
        return reason

    assert run(scenario()) is None


def test_tcp_probe_when_port_closed_then_connection_refused() -> None:
    port = free_port()

    reason = check(ProbeConfig("tcp", port=port))

    assert reason == f"tcp 127.0.0.1:{port}: connection refused"


# --- probe_once: http -----------------------------------------------------------------------------


class StatusHandler(tornado.web.RequestHandler):
    def get(self, status: str) -> None:
        self.set_status(int(status))
        self.finish("status")


def serve_and_probe(path: str, expect_status: int = 200) -> tuple[str | None, str]:
    async def scenario() -> tuple[str | None, str]:
        port = free_port()
        server = HTTPServer(tornado.web.Application([(r"/status/(\d+)", StatusHandler)]))
        server.listen(port, "127.0.0.1")
        url = f"http://127.0.0.1:{port}{path}"
        try:
            probe = ProbeConfig("http", url=url, expect_status=expect_status, timeout_s=5)
            reason = await probe_once(probe, python=sys.executable, cwd=None, env=ENV)
        finally:
            server.stop()
            await server.close_all_connections()
        return reason, url

    return run(scenario())


def test_http_probe_when_status_200_then_passes() -> None:
    reason, _ = serve_and_probe("/status/200")

    assert reason is None


def test_http_probe_when_status_503_then_reason_names_url_and_status() -> None:
    reason, url = serve_and_probe("/status/503")

    assert reason == f"http GET {url}: status 503 (expected 200)"


def test_http_probe_when_expected_status_answered_then_passes() -> None:
    reason, _ = serve_and_probe("/status/202", expect_status=202)

    assert reason is None


def test_http_probe_when_nothing_listens_then_reason_not_exception() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"

    reason = check(ProbeConfig("http", url=url))

    assert reason is not None
    assert reason.startswith(f"http GET {url}: ")
    assert "\n" not in reason


# --- probe_once: command --------------------------------------------------------------------------


def test_command_probe_when_exit_zero_then_passes() -> None:
    assert check(ProbeConfig("command", argv=("python", "-c", "pass"), timeout_s=10)) is None


def test_command_probe_when_exit_nonzero_then_reason_has_code_and_last_output() -> None:
    argv = ("python", "-c", "import sys; print('first'); print('not ready', file=sys.stderr); sys.exit(3)")

    reason = check(ProbeConfig("command", argv=argv, timeout_s=10))

    assert reason == f"command {' '.join(argv)!r}: exit 3: not ready"


def test_command_probe_when_exit_nonzero_silently_then_reason_has_code() -> None:
    argv = ("python", "-c", "import sys; sys.exit(3)")

    assert check(ProbeConfig("command", argv=argv, timeout_s=10)) == f"command {' '.join(argv)!r}: exit 3"


def test_command_probe_when_slower_than_timeout_then_timed_out() -> None:
    argv = ("python", "-c", "import time; time.sleep(30)")

    reason = check(ProbeConfig("command", argv=argv, timeout_s=0.5))

    assert reason == f"command {' '.join(argv)!r}: timed out after 0.5s"


def test_command_probe_when_command_missing_then_reason_not_exception(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-command")

    reason = check(ProbeConfig("command", argv=(missing,)))

    assert reason == f"command {missing!r}: command not found: {missing!r}"


# --- probe_once: log and started ------------------------------------------------------------------


def test_log_probe_when_line_matches_then_passes_else_reason() -> None:
    probe = ProbeConfig("log", pattern="Login has completed")
    log = JobLog("ibc", None, max_bytes=0, backup_count=0)
    watch = log.watch(probe.regex)
    log.write("starting IBC")

    assert check(probe, log_watch=watch) == "log: no line matching 'Login has completed' yet"

    log.write("12:00 Login has completed")

    assert check(probe, log_watch=watch) is None


def test_started_probe_when_run_then_passes() -> None:
    assert check(ProbeConfig("started")) is None


def test_log_probe_when_no_watch_then_reason() -> None:
    reason = check(ProbeConfig("log", pattern="x"))

    assert reason == "log: no log watch for pattern 'x'"
