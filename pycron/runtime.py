"""What the supervisor keeps for each job beside its state machine: process, timers, probes, log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pycron.config import JobConfig
from pycron.events import TimerKind
from pycron.joblog import JobLog, LogWatch
from pycron.process import ChildProcess
from pycron.scheduler import Entry, iso
from pycron.state import Job, JobState

SETTLED_AFTER_START = frozenset({JobState.READY, JobState.EXITED, JobState.FATAL, JobState.BACKOFF})
SETTLED_AFTER_STOP = frozenset({JobState.STOPPED, JobState.EXITED, JobState.FATAL})
DOWN = frozenset({JobState.STOPPED, JobState.EXITED, JobState.FATAL})


@dataclass(eq=False)
class JobRuntime:
    """One job: config, state machine, log, and the live parts (process, timers, probe tasks)."""

    name: str
    config: JobConfig
    job: Job
    log: JobLog
    log_file: Path
    entries: tuple[Entry, ...] = ()
    child: ChildProcess | None = None
    generation: int = 0
    """Incremented at each spawn; probe tasks and run timeouts of an older process stand down."""
    wanted: bool = False
    """Should be running (autostart, an operator start or a schedule); dependency gating reads it."""
    timers: dict[TimerKind, asyncio.TimerHandle] = field(default_factory=dict)
    probes: list[asyncio.Task[None]] = field(default_factory=list)
    watch: LogWatch | None = None
    scheduled_run: bool = False
    """The current process is a scheduled ``run``: a non-success exit is a ``run_failed`` event."""
    queued_run: bool = False
    """A ``run`` fired while the previous run was going (``overlap: queue``)."""
    waiting_for: tuple[str, ...] = ()
    """Dependencies not READY yet that hold the start back."""

    def cancel_probes(self) -> None:
        for task in self.probes:
            task.cancel()
        self.probes.clear()
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def describe(self, now: float, wall: datetime, argv: tuple[str, ...]) -> dict[str, object]:
        """The job document of :mod:`pycron.api` (monotonic times turned into wall-clock ISO)."""

        def at(moment: float | None) -> str | None:
            return None if moment is None else iso(wall + timedelta(seconds=moment - now))

        snap = self.job.snapshot(now)
        reason = snap.reason
        if self.waiting_for and snap.state is JobState.STOPPED and self.wanted:
            reason = f"waiting for {', '.join(self.waiting_for)} to be ready"
        last_exit = None
        if snap.last_exit is not None:
            last_exit = {
                "code": snap.last_exit.code,
                "signal": snap.last_exit.signal,
                "at": at(snap.last_exit.at),
            }
        return {
            "name": self.name,
            "state": snap.state.value,
            "pid": snap.pid,
            "uptime_s": None if snap.uptime_s is None else round(snap.uptime_s, 3),
            "restarts": snap.restarts,
            "last_exit": last_exit,
            "started_at": at(snap.started_at),
            "next_retry_at": at(snap.next_retry_at),
            "reason": reason,
            "maintenance": snap.maintenance,
            "command": list(argv),
            "depends_on": list(self.config.depends_on),
            "autostart": self.config.autostart,
            "schedules": [entry.describe(wall) for entry in self.entries],
            "log_file": str(self.log_file),
        }


def child_environment(base: Mapping[str, str], data_dir: Path, job: JobConfig) -> dict[str, str]:
    """A job's environment: pycron's, unbuffered Python output, the shared data dir, then the job's own."""
    return {**base, "PYTHONUNBUFFERED": "1", "BOURSE_DATA_DIR": str(data_dir), **job.env}


def working_dir(job: JobConfig) -> Path | None:
    return None if job.cwd is None else Path(job.cwd).expanduser().resolve()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
