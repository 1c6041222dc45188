"""Readiness and health probes: run one probe (:func:`probe_once`) and judge a series of results
(:class:`ProbeTracker`).

The supervisor probes every ``interval_s``: it awaits :func:`probe_once` (never raises for a
failing probe; ``None`` means it passed, else a one-line reason naming what was probed) and feeds
the outcome to the job's tracker, which says when something happened: the readiness probe
``passed`` or ``failed``, a health probe ``failed`` or ``recovered``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from pycron.config import ProbeConfig, resolve_python
from pycron.joblog import LogWatch
from pycron.process import run_command

ProbeOutcome = Literal["passed", "failed", "recovered"]
MAX_REASON_OUTPUT = 200
"""Characters of a failing command's last output line kept in the reason."""


class ProbeTracker:
    """Consecutive results of one probe of one run of a job (pure: no I/O, ``now`` is passed in).

    * readiness: the first success is ``"passed"`` (after that, records return None);
      ``failure_threshold`` consecutive failures are ``"failed"``, once per streak.
    * health: ``failure_threshold`` consecutive failures are ``"failed"``, once per streak; the
      first success after that is ``"recovered"``.

    Failures before ``started_at + start_period_s`` do not count (the job is still starting).
    """

    def __init__(self, probe: ProbeConfig, started_at: float, *, readiness: bool) -> None:
        self.probe = probe
        self.started_at = started_at
        self.readiness = readiness
        self.consecutive_failures = 0
        """Counted failures since the last success."""
        self.last_reason: str | None = None
        """Why the last probe failed; None after a success."""
        self.passed = False
        """Readiness: it has passed (final)."""
        self.failing = False
        """A failure was reported and no success has come since."""

    @property
    def grace_ends_at(self) -> float:
        """Failures before this time do not count."""
        return self.started_at + self.probe.start_period_s

    def record(self, ok: bool, reason: str | None, now: float) -> ProbeOutcome | None:
        """One probe result at ``now`` (same clock as ``started_at``); what it changed, if anything."""
        if self.readiness and self.passed:
            return None
        if ok:
            self.consecutive_failures = 0
            self.last_reason = None
            if self.readiness:
                self.passed = True
                self.failing = False
                return "passed"
            if self.failing:
                self.failing = False
                return "recovered"
            return None
        self.last_reason = reason or "failed"
        if now < self.grace_ends_at:
            return None
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.probe.failure_threshold and not self.failing:
            self.failing = True
            return "failed"
        return None


def describe_probe(probe: ProbeConfig) -> str:
    """What a probe checks, as its failure reasons name it: ``tcp 127.0.0.1:7497`` ..."""
    if probe.type == "tcp":
        return f"tcp {probe.host}:{probe.port}"
    if probe.type == "http":
        return f"http GET {probe.url}"
    if probe.type == "command":
        return f"command {' '.join(probe.argv)!r}"
    if probe.type == "log":
        return f"log {probe.pattern!r}"
    return probe.type


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _error_text(exc: BaseException) -> str:
    """A short, one-line description of an exception."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def probe_once(
    probe: ProbeConfig,
    *,
    python: str,
    cwd: Path | None,
    env: Mapping[str, str],
    log_watch: LogWatch | None = None,
) -> str | None:
    """Run ``probe`` once, bounded by ``probe.timeout_s``: None when it passes, else why not.

    Any exception of the probe becomes the reason; only cancellation propagates.
    """
    try:
        if probe.type == "started":
            return None
        if probe.type == "tcp":
            return await _tcp(probe)
        if probe.type == "http":
            return await _http(probe)
        if probe.type == "command":
            return await _command(probe, python=python, cwd=cwd, env=env)
        return _log_probe(probe, log_watch)
    except Exception as exc:
        return f"{describe_probe(probe)}: {_error_text(exc)}"


async def _tcp(probe: ProbeConfig) -> str | None:
    what = describe_probe(probe)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(probe.host, probe.port), probe.timeout_s)
    except TimeoutError:
        return f"{what}: timed out after {_seconds(probe.timeout_s)}"
    except OSError as exc:
        return f"{what}: {_error_text(exc)}"
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), probe.timeout_s)
    return None


async def _http(probe: ProbeConfig) -> str | None:
    what = describe_probe(probe)
    assert probe.url is not None
    client = AsyncHTTPClient()
    try:
        response = await asyncio.wait_for(
            client.fetch(
                probe.url,
                method="GET",
                raise_error=False,
                follow_redirects=False,
                connect_timeout=probe.timeout_s,
                request_timeout=probe.timeout_s,
            ),
            probe.timeout_s,
        )
    except TimeoutError:
        return f"{what}: timed out after {_seconds(probe.timeout_s)}"
    except HTTPClientError as exc:  # 599: no HTTP answer (timeout, connection closed)
        if exc.code == 599 and "timeout" in (exc.message or "").lower():
            return f"{what}: timed out after {_seconds(probe.timeout_s)}"
        return f"{what}: {exc.message or exc}"
    except OSError as exc:
        return f"{what}: {_error_text(exc)}"
    if response.code == probe.expect_status:
        return None
    return f"{what}: status {response.code} (expected {probe.expect_status})"


async def _command(
    probe: ProbeConfig, *, python: str, cwd: Path | None, env: Mapping[str, str]
) -> str | None:
    what = describe_probe(probe)
    result = await run_command(
        resolve_python(probe.argv, python), cwd=cwd, env=env, timeout_s=probe.timeout_s
    )
    if result.timed_out:
        return f"{what}: timed out after {_seconds(probe.timeout_s)}"
    if result.code == 0:
        return None
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    status = "killed" if result.code is None else f"exit {result.code}"
    if lines:
        return f"{what}: {status}: {lines[-1][:MAX_REASON_OUTPUT]}"
    return f"{what}: {status}"


def _log_probe(probe: ProbeConfig, log_watch: LogWatch | None) -> str | None:
    if log_watch is None:
        return f"log: no log watch for pattern {probe.pattern!r}"
    if log_watch.matched:
        return None
    return f"log: no line matching {probe.pattern!r} yet"
