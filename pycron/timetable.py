"""The time-driven side of the supervisor: cron schedules and maintenance windows.

Each schedule entry and each job's set of maintenance windows is one task that sleeps on a timer
until its next instant (computed by :mod:`pycron.cron` / :mod:`pycron.windows` in the job's time
zone), checks the wall clock has really reached it (a timer never fires a job early), then acts.
After a fire at ``F`` the next one is computed strictly after ``F``: no double fire, also across a
DST fall-back hour.

Schedule actions: ``start`` / ``stop`` / ``restart`` act as an operator would; ``run`` starts the
job as a one-off run whose non-zero exit is a ``run_failed`` event, with an ``overlap`` policy
(``skip``: the new fire is dropped while the previous run goes on; ``queue``: it runs once the
previous run ends; ``kill``: the previous run is stopped and a new one started) and an optional
``timeout_s`` after which the run is stopped (a ``run_failed`` event).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pycron.events import MaintenanceEnded, MaintenanceStarted
from pycron.runtime import DOWN, JobRuntime
from pycron.scheduler import BOOK_FILE, Entry, ScheduleBook, iso
from pycron.state import RUNNING_STATES, JobState
from pycron.windows import Window, in_window, next_window_change

if TYPE_CHECKING:
    from pycron.supervisor import Supervisor

log = logging.getLogger("pycron.timetable")

MAX_SLEEP_S = 3600.0
"""Sleep at most this long at once, then re-check the wall clock (it may have been set)."""


class Timetable:
    """Schedules and maintenance windows of every job of one supervisor."""

    def __init__(self, supervisor: Supervisor, data_dir: Path) -> None:
        self.supervisor = supervisor
        self.book = ScheduleBook(data_dir / BOOK_FILE)
        self._tasks: list[asyncio.Task[None]] = []
        self._run_timeouts: dict[str, asyncio.TimerHandle] = {}

    def _entries(self) -> list[tuple[JobRuntime, Entry]]:
        return [(rt, entry) for rt in self._runtimes() for entry in rt.entries]

    def _runtimes(self) -> list[JobRuntime]:
        return [self.supervisor.runtime(name) for name in self.supervisor.names()]

    def start(self) -> None:
        now = self.supervisor.wall()
        for rt, entry in self._entries():
            missed = entry.catch_up(self.book.covered_until(entry.key), now)
            self._tasks.append(
                self.supervisor.background(self._schedule_loop(rt, entry, missed), name=f"cron {entry.key}")
            )
        self.book.watched([entry.key for _, entry in self._entries()], now)
        for rt in self._runtimes():
            windows = [window.window() for window in rt.config.maintenance]
            if windows:
                self._tasks.append(
                    self.supervisor.background(self._window_loop(rt, windows), name=f"windows {rt.name}")
                )

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for handle in self._run_timeouts.values():
            handle.cancel()
        self._run_timeouts.clear()
        if self._entries():
            self.book.watched([entry.key for _, entry in self._entries()], self.supervisor.wall())

    async def sleep_until(self, moment: datetime) -> None:
        """Sleep on a timer until the wall clock reaches ``moment`` (never return early)."""
        # A timer until a wall-clock instant, re-checked on waking (the clock may have been set).
        while (remaining := (moment - self.supervisor.wall()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(remaining, MAX_SLEEP_S))

    # --- schedules --------------------------------------------------------------------------------

    async def _schedule_loop(self, rt: JobRuntime, entry: Entry, missed: datetime | None) -> None:
        if missed is not None:
            self.supervisor.publish(
                rt.name,
                "scheduled",
                f"{rt.name}: catching up the {entry.config.action} missed at {iso(missed)}",
                None,
            )
            await self._fire(rt, entry, missed)
        cursor = max(self.supervisor.wall(), self.book.last_fired(entry.key) or self.supervisor.wall())
        while True:
            fire_at = entry.next_fire(cursor)
            await self.sleep_until(fire_at)
            await self._fire(rt, entry, fire_at)
            cursor = fire_at

    async def _fire(self, rt: JobRuntime, entry: Entry, fire_at: datetime) -> None:
        self.book.fired(entry.key, fire_at)
        action = entry.config.action
        sup = self.supervisor
        try:
            if action == "start":
                sup.publish(rt.name, "scheduled", f"{rt.name}: scheduled start ({entry.config.cron})", None)
                await sup.start(rt.name)
            elif action == "stop":
                sup.publish(rt.name, "scheduled", f"{rt.name}: scheduled stop ({entry.config.cron})", None)
                await sup.stop(rt.name)
            elif action == "restart":
                sup.publish(rt.name, "scheduled", f"{rt.name}: scheduled restart ({entry.config.cron})", None)
                await sup.restart(rt.name)
            else:
                await self._run(rt, entry)
        except Exception:  # a schedule must never die; the next fire is still wanted
            log.exception("%s: scheduled %s failed", rt.name, action)

    async def _run(self, rt: JobRuntime, entry: Entry) -> None:
        sup = self.supervisor
        if rt.job.state in RUNNING_STATES:
            overlap = entry.config.overlap
            if overlap == "skip":
                sup.publish(
                    rt.name,
                    "run_skipped",
                    f"{rt.name}: scheduled run skipped, the previous run is still going",
                    None,
                )
                return
            if overlap == "queue":
                rt.queued_run = True
                sup.publish(
                    rt.name, "scheduled", f"{rt.name}: scheduled run queued behind the running one", None
                )
                return
            sup.publish(
                rt.name, "scheduled", f"{rt.name}: stopping the previous run for the scheduled one", None
            )
            await sup.stop(rt.name, rt.config.stop.timeout_s + 5)
        self._begin_run(rt, entry)

    def _begin_run(self, rt: JobRuntime, entry: Entry) -> None:
        sup = self.supervisor
        sup.publish(
            rt.name, "scheduled", f"{rt.name}: scheduled run ({entry.config.cron} {entry.config.tz})", None
        )
        rt.scheduled_run = True
        sup.want(rt.name)
        if entry.config.timeout_s is not None:
            generation = rt.generation + 1  # the run's process once spawned
            loop = asyncio.get_running_loop()
            if (old := self._run_timeouts.pop(rt.name, None)) is not None:
                old.cancel()
            self._run_timeouts[rt.name] = loop.call_later(
                entry.config.timeout_s, self._run_timed_out, rt, entry, generation
            )

    def _run_timed_out(self, rt: JobRuntime, entry: Entry, generation: int) -> None:
        self._run_timeouts.pop(rt.name, None)
        if rt.generation != generation or rt.job.state not in RUNNING_STATES:
            return
        sup = self.supervisor
        rt.scheduled_run = False
        sup.publish(
            rt.name,
            "run_failed",
            f"{rt.name}: run timed out after {entry.config.timeout_s:g}s; stopping it",
            None,
        )
        sup.unwant(rt)

    def run_ended(self, rt: JobRuntime) -> None:
        """The job's process is gone (DOWN or BACKOFF): report a failed run, start a queued one."""
        if rt.scheduled_run and rt.job.state in DOWN | {JobState.BACKOFF}:
            last = rt.job.last_exit
            ok = last is not None and last.signal is None and last.code in rt.config.success_exit_codes
            if not ok and rt.job.state is not JobState.STOPPED:
                what = rt.job.reason or "failed"
                self.supervisor.publish(
                    rt.name, "run_failed", f"{rt.name}: scheduled run failed: {what}", rt.job.state
                )
            if rt.job.state is not JobState.BACKOFF:
                rt.scheduled_run = False
                rt.wanted = False
                if (handle := self._run_timeouts.pop(rt.name, None)) is not None:
                    handle.cancel()
        if rt.queued_run and rt.job.state in DOWN:
            rt.queued_run = False
            entry = next(e for e in rt.entries if e.config.action == "run")
            asyncio.get_running_loop().call_soon(self._begin_run, rt, entry)

    # --- maintenance windows ----------------------------------------------------------------------

    async def _window_loop(self, rt: JobRuntime, windows: list[Window]) -> None:
        sup = self.supervisor
        while True:
            now = sup.wall()
            inside = any(in_window(window, now) for window in windows)
            if inside != rt.job.maintenance:
                sup.apply(rt, MaintenanceStarted() if inside else MaintenanceEnded())
                what = "started: failing probes neither restart nor alert" if inside else "ended"
                sup.publish(rt.name, "maintenance", f"{rt.name}: maintenance window {what}", rt.job.state)
            await self.sleep_until(min(next_window_change(window, now) for window in windows))
