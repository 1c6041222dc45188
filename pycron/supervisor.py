"""The supervisor: the async shell around each job's pure state machine.

It feeds :meth:`pycron.state.Job.apply` the events that happen (a process spawned or exited, a
probe verdict, a timer, an operator command, a maintenance window) and carries out the actions it
returns (spawn, signal the process group, SIGKILL it, arm or cancel a timer, publish an event).
Dependencies are its business: a job starts only once every job in ``depends_on`` is READY, and
pycron stops everything in reverse dependency order. Schedules and maintenance windows are in
:mod:`pycron.timetable`; processes in :mod:`pycron.process`; probes in :mod:`pycron.probes`.

Every wait is on a timer or an event (``loop.call_at``, a process exit, a probe's interval); there
is no polling loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
from collections.abc import Callable, Collection, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pycron.api import EVENT_KINDS, EventDoc, JobDoc, LogDoc, UnknownJob
from pycron.backoff import RandomSource
from pycron.bus import Fanout
from pycron.config import ProbeConfig, PycronConfig, resolve_python
from pycron.events import (
    Action,
    BackoffElapsed,
    CancelTimer,
    EmitEvent,
    Event,
    Exited,
    HealthFailed,
    HealthRecovered,
    Kill,
    ReadinessFailed,
    ReadinessPassed,
    ReadinessTimeout,
    ScheduleTimer,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    StartRequested,
    StopRequested,
    StopTimeout,
    TimerKind,
)
from pycron.joblog import JobLog
from pycron.policies import job_from_config
from pycron.probes import ProbeTracker, probe_once
from pycron.process import SpawnError, run_command, spawn
from pycron.runtime import (
    DOWN,
    SETTLED_AFTER_START,
    SETTLED_AFTER_STOP,
    JobRuntime,
    child_environment,
    working_dir,
)
from pycron.scheduler import Entry, iso
from pycron.state import RUNNING_STATES, InvalidTransition, JobState
from pycron.timetable import Timetable

log = logging.getLogger("pycron")

_TIMER_EVENTS: Mapping[TimerKind, Callable[[], Event]] = {
    TimerKind.RETRY: BackoffElapsed,
    TimerKind.STOP_TIMEOUT: StopTimeout,
    TimerKind.READINESS_TIMEOUT: ReadinessTimeout,
}
_ALERTS = frozenset({"fatal", "unhealthy", "readiness_failed", "stop_timeout", "run_failed"})
STOP_GRACE_S = 5.0
"""Beyond a job's stop timeout, how long shutdown waits for the SIGKILLed group to be reaped."""


class Supervisor:
    """Runs the jobs of one :class:`PycronConfig`; implements :class:`pycron.api.SupervisorApi`."""

    def __init__(
        self,
        config: PycronConfig,
        data_dir: Path,
        *,
        python: str = sys.executable,
        environ: Mapping[str, str] | None = None,
        rng: RandomSource | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.python = python
        self.environ = dict(os.environ if environ is None else environ)
        self.wall = wall
        self._events: Fanout[EventDoc] = Fanout(history=1000)
        self._seq = 0
        self._tick = asyncio.Event()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._booted_at: float | None = None
        self.all_ready_after_s: float | None = None
        """Seconds from :meth:`start` until every autostart job was READY the first time."""
        logs = data_dir / "logs"
        self._jobs: dict[str, JobRuntime] = {}
        for name in config.start_order():
            job_config = config.jobs[name]
            path = logs / f"{name}.log"
            job_log = JobLog(
                name, path, max_bytes=config.logging.max_bytes, backup_count=config.logging.backup_count
            )
            entries = tuple(Entry.of(name, i, entry) for i, entry in enumerate(job_config.schedules))
            self._jobs[name] = JobRuntime(
                name, job_config, job_from_config(name, job_config, rng), job_log, path, entries
            )
        self.timetable = Timetable(self, data_dir)

    # --- SupervisorApi ----------------------------------------------------------------------------

    @property
    def events(self) -> Fanout[EventDoc]:
        return self._events

    def names(self) -> tuple[str, ...]:
        return tuple(self._jobs)

    def runtime(self, name: str) -> JobRuntime:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(name, self.names()) from None

    def describe(self, name: str) -> JobDoc:
        rt = self.runtime(name)
        return rt.describe(self._now(), self.wall(), rt.config.argv(self.python))

    def describe_all(self) -> list[JobDoc]:
        return [self.describe(name) for name in self._jobs]

    def health(self) -> dict[str, Any]:
        failing = [
            rt.name
            for rt in self._jobs.values()
            if rt.job.state is JobState.FATAL or (rt.config.autostart and rt.job.state is not JobState.READY)
        ]
        now = self._now()
        return {
            "ok": not failing and not self._closing,
            "pid": os.getpid(),
            "uptime_s": None if self._booted_at is None else round(now - self._booted_at, 3),
            "jobs": {rt.name: rt.job.state.value for rt in self._jobs.values()},
            "failing": failing,
        }

    async def start(self, name: str, wait_s: float = 0.0) -> JobDoc:
        rt = self.runtime(name)
        self.want(name)
        if wait_s > 0:
            await self.wait_until(lambda: rt.job.state in SETTLED_AFTER_START and not rt.waiting_for, wait_s)
        return self.describe(name)

    async def stop(self, name: str, wait_s: float = 0.0) -> JobDoc:
        rt = self.runtime(name)
        self.unwant(rt)
        if wait_s > 0:
            await self.wait_until(lambda: rt.job.state in SETTLED_AFTER_STOP, wait_s)
        return self.describe(name)

    async def restart(self, name: str, wait_s: float = 0.0) -> JobDoc:
        rt = self.runtime(name)
        await self.stop(name, rt.config.stop.timeout_s + STOP_GRACE_S)
        return await self.start(name, wait_s)

    def logs(self, name: str, tail: int) -> list[LogDoc]:
        return [line.as_dict() for line in self.runtime(name).log.tail(tail)]

    def log_stream(self, name: str) -> Fanout[LogDoc]:
        return self.runtime(name).log.stream

    # --- lifecycle --------------------------------------------------------------------------------

    async def boot(self) -> None:
        """Start every autostart job (each once its dependencies are READY), schedules and windows."""
        self._booted_at = self._now()
        self.publish(None, "pycron", f"pycron {os.getpid()} starting {len(self._jobs)} jobs", None)
        self.timetable.start()
        for rt in self._jobs.values():
            if rt.config.autostart:
                self.want(rt.name)
        self._check_all_ready()

    async def shutdown(self) -> None:
        """Stop every job in reverse dependency order, each waited for (SIGKILL after its timeout)."""
        if self._closing:
            return
        self._closing = True
        self.timetable.stop()
        self.publish(None, "pycron", "pycron stopping every job in reverse dependency order", None)
        for name in self.config.stop_order():
            rt = self._jobs[name]
            rt.wanted = False
            rt.queued_run = False
            if rt.job.state in DOWN:
                continue
            self._apply(rt, StopRequested())
            limit = rt.config.stop.timeout_s + STOP_GRACE_S
            if not await self.wait_until(lambda rt=rt: rt.job.state in DOWN, limit):  # type: ignore[misc]
                log.error("%s: still %s %gs after the stop; killing its group", name, rt.job.state, limit)
                if rt.child is not None:
                    rt.child.kill_group()
        for rt in self._jobs.values():
            for handle in rt.timers.values():
                handle.cancel()
            rt.cancel_probes()
        self.publish(None, "pycron", "pycron stopped", None)
        self._events.close()
        for rt in self._jobs.values():
            rt.log.close()

    def kill_all(self) -> None:
        """Last resort (a second Ctrl+C): SIGKILL every job's process group now."""
        for rt in self._jobs.values():
            if rt.child is not None:
                rt.child.kill_group()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (on state changes, not by polling) until ``predicate()``; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._tick.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    # --- dependencies -----------------------------------------------------------------------------

    def want(self, name: str) -> None:
        """Mark ``name`` (and its stopped dependencies) wanted, and start what can start."""
        rt = self._jobs[name]
        rt.wanted = True
        for dep in rt.config.depends_on:
            dep_rt = self._jobs[dep]
            if not dep_rt.wanted and dep_rt.job.state in (JobState.STOPPED, JobState.EXITED):
                self.want(dep)
        self._maybe_start(rt)

    def unwant(self, rt: JobRuntime) -> None:
        rt.wanted = False
        rt.queued_run = False
        rt.waiting_for = ()
        self._apply(rt, StopRequested())
        self._notify()

    def _maybe_start(self, rt: JobRuntime) -> None:
        if not rt.wanted or self._closing or rt.job.state in RUNNING_STATES:
            return
        rt.waiting_for = tuple(
            d for d in rt.config.depends_on if self._jobs[d].job.state is not JobState.READY
        )
        if rt.waiting_for:
            self._notify()
            return
        self._apply(rt, StartRequested())

    # --- the state machine's shell ----------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def apply(self, rt: JobRuntime, event: Event) -> None:
        """Public for :mod:`pycron.timetable` (maintenance windows)."""
        self._apply(rt, event)

    def _apply(self, rt: JobRuntime, event: Event) -> None:
        before = rt.job.state
        try:
            actions = rt.job.apply(event, self._now())
        except InvalidTransition as exc:
            log.debug("%s", exc)  # a late report racing a change (a probe result after an exit)
            return
        emitted = False
        for action in actions:
            emitted |= isinstance(action, EmitEvent)
            self._execute(rt, action)
        after = rt.job.state
        if after is not before:
            if not emitted:
                self.publish(rt.name, "state", f"{rt.name}: {before.value} -> {after.value}", after)
            self._on_state_change(rt, before, after)
        self._notify()

    def _execute(self, rt: JobRuntime, action: Action) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(action, Spawn):
            self.background(self._spawn(rt), name=f"spawn {rt.name}")
        elif isinstance(action, Signal):
            self.background(self._signal(rt, action), name=f"stop {rt.name}")
        elif isinstance(action, Kill):
            if rt.child is not None and rt.child.pid == action.pid:
                rt.log.write(f"killing process group {action.pid} (SIGKILL)", "pycron")
                rt.child.kill_group()
        elif isinstance(action, ScheduleTimer):
            if (old := rt.timers.pop(action.kind, None)) is not None:
                old.cancel()
            rt.timers[action.kind] = loop.call_at(action.at, self._timer_fired, rt, action.kind)
        elif isinstance(action, CancelTimer):
            if (handle := rt.timers.pop(action.kind, None)) is not None:
                handle.cancel()
        elif isinstance(action, EmitEvent):
            self.publish(rt.name, action.kind.value, action.message, rt.job.state)

    def background(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task that is kept referenced and whose crash is logged, not lost."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s crashed", task.get_name(), exc_info=exc)

    def _timer_fired(self, rt: JobRuntime, kind: TimerKind) -> None:
        rt.timers.pop(kind, None)
        self._apply(rt, _TIMER_EVENTS[kind]())

    def _on_state_change(self, rt: JobRuntime, before: JobState, after: JobState) -> None:
        if after is JobState.READY:
            self._start_health(rt)
            for dependent in self.config.dependents(rt.name):
                self._maybe_start(self._jobs[dependent])
            self._check_all_ready()
        if after in (JobState.EXITED, JobState.FATAL):
            rt.wanted = False  # it ended for good: a dependency coming back does not revive it
        if after in DOWN or after is JobState.BACKOFF:
            self.timetable.run_ended(rt)

    def _check_all_ready(self) -> None:
        if self.all_ready_after_s is not None or self._booted_at is None:
            return
        autostart = [rt for rt in self._jobs.values() if rt.config.autostart]
        if all(rt.job.state is JobState.READY for rt in autostart):
            self.all_ready_after_s = self._now() - self._booted_at
            names = ", ".join(rt.name for rt in autostart)
            self.publish(None, "pycron", f"all jobs ready in {self.all_ready_after_s:.2f}s ({names})", None)

    def publish(self, job: str | None, kind: str, message: str, state: JobState | None) -> EventDoc:
        """Record an event: the events stream, pycron's log, and the job's log."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not in pycron.api.EVENT_KINDS")
        self._seq += 1
        event: EventDoc = {
            "seq": self._seq,
            "at": iso(self.wall()),
            "job": job,
            "kind": kind,
            "state": None if state is None else state.value,
            "message": message,
        }
        self._events.publish(event)
        log.log(logging.WARNING if kind in _ALERTS else logging.INFO, "%s", message)
        if job is not None and job in self._jobs:
            self._jobs[job].log.write(message, "pycron")
        return event

    # --- processes --------------------------------------------------------------------------------

    def environment(self, rt: JobRuntime) -> dict[str, str]:
        return child_environment(self.environ, self.data_dir, rt.config)

    async def _spawn(self, rt: JobRuntime) -> None:
        rt.generation += 1
        generation = rt.generation
        rt.cancel_probes()
        readiness = rt.config.readiness
        rt.watch = rt.log.watch(readiness.regex) if readiness.type == "log" else None  # every line
        argv = rt.config.argv(self.python)
        rt.log.write(f"starting: {shlex.join(argv)}", "pycron")
        try:
            child = await spawn(
                argv,
                cwd=working_dir(rt.config),
                env=self.environment(rt),
                on_line=lambda stream, text: rt.log.write(text, stream),
            )
        except SpawnError as exc:
            self._apply(rt, SpawnFailed(str(exc)))
            return
        rt.child = child
        self._apply(rt, Spawned(child.pid))
        if rt.job.state is JobState.STARTING and rt.config.readiness.type != "started":
            self._probe(rt, rt.config.readiness, readiness=True, generation=generation)
        self.background(self._reap(rt, generation), name=f"reap {rt.name}")

    async def _reap(self, rt: JobRuntime, generation: int) -> None:
        child = rt.child
        assert child is not None
        status = await child.wait()
        if rt.generation == generation:
            rt.cancel_probes()
            rt.child = None
        if status.signal is not None:
            self._apply(rt, Exited(signal=status.signal))
        else:
            self._apply(rt, Exited(code=status.code))

    async def _signal(self, rt: JobRuntime, action: Signal) -> None:
        child = rt.child
        if child is None or child.pid != action.pid:
            return
        stop = rt.config.stop
        if stop.command:
            argv = resolve_python(stop.command, self.python)
            rt.log.write(f"stop command: {shlex.join(argv)}", "pycron")
            try:
                result = await run_command(
                    argv, cwd=working_dir(rt.config), env=self.environment(rt), timeout_s=stop.timeout_s
                )
                rt.log.write(f"stop command ended: code {result.code} {result.output[-200:]!r}", "pycron")
            except SpawnError as exc:  # the signal still goes out
                self.publish(
                    rt.name, "stop_command_failed", f"{rt.name}: stop command failed: {exc}", rt.job.state
                )
            if not child.running:
                return
        rt.log.write(f"sending {stop.signal} to process group {child.pid}", "pycron")
        child.signal_group(action.signal)

    # --- probes -----------------------------------------------------------------------------------

    def _start_health(self, rt: JobRuntime) -> None:
        for probe in rt.config.health:
            self._probe(rt, probe, readiness=False, generation=rt.generation)

    def _probe(self, rt: JobRuntime, probe: ProbeConfig, *, readiness: bool, generation: int) -> None:
        task = self.background(
            self._probe_loop(rt, probe, readiness, generation), name=f"probe {rt.name} {probe.type}"
        )
        rt.probes.append(task)

    async def _probe_loop(self, rt: JobRuntime, probe: ProbeConfig, readiness: bool, generation: int) -> None:
        """Probe every ``interval_s`` while the job is STARTING (readiness) or READY/UNHEALTHY
        (health). A readiness log probe looks at every line since the spawn; a health log probe
        at the lines since its previous check (a heartbeat that must keep coming)."""
        tracker = ProbeTracker(probe, self._now(), readiness=readiness)
        keep_going: Collection[JobState] = (
            (JobState.STARTING,) if readiness else (JobState.READY, JobState.UNHEALTHY)
        )
        cwd, env = working_dir(rt.config), self.environment(rt)
        heartbeat = not readiness and probe.type == "log"
        watch = rt.log.watch(probe.regex) if heartbeat else rt.watch
        try:
            while rt.generation == generation and rt.job.state in keep_going:
                reason = await probe_once(probe, python=self.python, cwd=cwd, env=env, log_watch=watch)
                if rt.generation != generation or rt.job.state not in keep_going:
                    return
                if heartbeat and watch is not None:
                    watch.close()
                    watch = rt.log.watch(probe.regex)
                verdict = tracker.record(reason is None, reason, self._now())
                if verdict == "passed":
                    self._apply(rt, ReadinessPassed())
                    return
                if verdict == "failed":
                    failed: Event = ReadinessFailed(reason or "") if readiness else HealthFailed(reason or "")
                    self._apply(rt, failed)
                elif verdict == "recovered":
                    self._apply(rt, HealthRecovered())
                await asyncio.sleep(probe.interval_s)
        finally:
            if heartbeat and watch is not None:
                watch.close()
