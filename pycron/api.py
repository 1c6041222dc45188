"""What the commands (web API, ``cli.py pycron``) need of the supervisor, and the documents they return.

The supervisor (:mod:`pycron.supervisor`) implements :class:`SupervisorApi`; the command registry
(:mod:`pycron.commands`) is written against this protocol only.

Documents (JSON-ready dicts):

* a **job** (``describe``): ``name``, ``state`` (``stopped|starting|ready|unhealthy|backoff|
  stopping|exited|fatal``), ``pid`` (int or null), ``uptime_s`` (float or null), ``restarts``
  (automatic restarts so far), ``last_exit`` (null or ``{"code", "signal", "at"}`` with ``at`` an
  ISO-8601 UTC time), ``started_at`` (ISO or null), ``next_retry_at`` (ISO or null), ``reason``
  (why it is in that state, or null), ``maintenance`` (bool), ``command`` (argv list),
  ``depends_on``, ``autostart``, ``schedules`` (list of ``{"cron", "tz", "action", "missed", "next"}``),
  ``log_file``.
* an **event**: ``seq`` (int, increasing), ``at`` (ISO UTC), ``job`` (name or null for pycron
  itself), ``kind`` (one of :data:`EVENT_KINDS`), ``state`` (the job's state after it, or null),
  ``message``.
* a **log line**: ``seq`` (int per job), ``at`` (ISO UTC), ``stream`` (``stdout|stderr|pycron``),
  ``text``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pycron.bus import Fanout
from pycron.config import PycronConfig

EVENT_KINDS: tuple[str, ...] = (
    "ready",  # the job passed readiness (or started, without a probe)
    "state",  # any other change of state (starting, stopping, ...)
    "unhealthy",  # a health probe failed: being restarted
    "readiness_failed",  # never became ready: being stopped, then the restart policy
    "exited",  # ended and not restarted (restart policy)
    "backoff",  # ended; restart scheduled after a delay
    "fatal",  # crash loop: no more restarts until an operator start
    "stopped",
    "stop_timeout",  # ignored the stop signal: its group was SIGKILLed
    "stop_command_failed",
    "maintenance",  # a maintenance window opened or closed
    "scheduled",  # a schedule fired (start, stop, restart, run, catch-up, queued)
    "run_skipped",  # a scheduled run was dropped: the previous run still going (overlap: skip)
    "run_failed",  # a scheduled run ended badly or timed out
    "pycron",  # pycron itself: starting, all ready, stopping, stopped
)
"""Every ``kind`` an event may have (the web page listens for each)."""

JobDoc = dict[str, Any]
EventDoc = dict[str, Any]
LogDoc = dict[str, Any]


class UnknownJob(KeyError):
    """No job of that name; the message lists the jobs there are."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown job {self.name!r} (jobs: {', '.join(self.known) or 'none'})"


class SupervisorApi(Protocol):
    config: PycronConfig
    data_dir: Path

    @property
    def events(self) -> Fanout[EventDoc]:
        """Every event, as published (``recent(n)`` for history, ``subscribe()`` to follow)."""
        ...

    def names(self) -> tuple[str, ...]:
        """Job names in start order."""
        ...

    def describe(self, name: str) -> JobDoc:
        """One job's document; raises :class:`UnknownJob`."""
        ...

    def describe_all(self) -> list[JobDoc]:
        """Every job's document, in start order."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "pid", "uptime_s", "jobs": {name: state}, "failing": [names]}``; ok means
        every autostart job is READY (a run-once job that is not running counts as fine)."""
        ...

    async def start(self, name: str, wait_s: float = 0.0) -> JobDoc:
        """Ask the job to run (a FATAL/EXITED job too); with ``wait_s`` > 0, wait up to that long for
        it to settle (READY, EXITED, FATAL or BACKOFF). Returns its document. Raises UnknownJob."""
        ...

    async def stop(self, name: str, wait_s: float = 0.0) -> JobDoc:
        """Stop the job (stop command/signal, then SIGKILL to its group after the timeout); with
        ``wait_s``, wait up to that long for STOPPED/EXITED/FATAL. Raises UnknownJob."""
        ...

    async def restart(self, name: str, wait_s: float = 0.0) -> JobDoc:
        """Stop (waiting for the process to be gone) then start; ``wait_s`` as for start."""
        ...

    def logs(self, name: str, tail: int) -> list[LogDoc]:
        """The last ``tail`` lines of the job's output (ring buffer). Raises UnknownJob."""
        ...

    def log_stream(self, name: str) -> Fanout[LogDoc]:
        """The job's live log lines (``subscribe()`` to follow). Raises UnknownJob."""
        ...
