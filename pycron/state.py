"""A job's lifecycle: states, events, actions, one transition table, and :class:`Job`.

Pure: no processes, no clock reads, no asyncio. The runner feeds :meth:`Job.apply` typed
:class:`Event` objects with the monotonic time ``now`` and executes the typed :class:`Action`
objects it returns (spawn, signal, kill, timers, notifications). A pair ``(state, event type)``
absent from :data:`TRANSITIONS` raises :class:`InvalidTransition` (naming the job, the state and
the event) before anything changes; so does an event that contradicts the job's process (``Exited``
before ``Spawned``, a second ``Spawned``). An entry whose targets include its source may be a no-op
(a late probe result racing a stop, a repeated stop or start request).

Semantics (decided here, relied on by the runner):

* **Start**: STOPPED / EXITED / FATAL -> STARTING (``Spawn``); an operator start forgets the
  backoff attempts and the crash-loop history. In BACKOFF it skips the wait (history kept).
* **Spawned**: without a readiness probe the job is READY at once; with one it stays STARTING
  (and a ``READINESS_TIMEOUT`` timer is scheduled when the probe has a deadline).
* **Exit** while STARTING / READY / UNHEALTHY, or a failed spawn, goes to the restart policy:
  no restart -> EXITED; restart -> BACKOFF (``ScheduleTimer(RETRY)``), unless it would be more
  than ``max_restarts`` restarts within ``window_s`` -> FATAL (``EmitEvent(FATAL)``, reason names
  the count and the window). FATAL stays put until an operator Reset (-> STOPPED) or Start.
* **Stop**: an exit while STOPPING is expected -> STOPPED, no restart. A stop during BACKOFF
  cancels the retry (-> STOPPED). ``StopTimeout`` -> ``Kill`` (process group by default).
* **Failing probes** (readiness failed / timed out, health failed after its threshold) stop the
  process (``Signal`` + stop timer, an alert ``EmitEvent``); its exit is then a *failure* whatever
  its code, so the restart policy decides (``never`` -> EXITED). A readiness failure moves
  STARTING -> STOPPING; a health failure READY -> UNHEALTHY, which is "unhealthy, being stopped
  for a restart" (a later ``HealthRecovered`` does not call the restart off).
* **Maintenance** (``MaintenanceStarted`` / ``Ended``, valid in every state): a failing probe
  neither restarts nor alerts. A readiness failure leaves the job STARTING; a health failure
  moves it READY -> UNHEALTHY silently and ``HealthRecovered`` brings it back to READY. If the
  probe is still failing when maintenance ends, the stop happens then (with its alert).
  Maintenance does not hide exits: a process that dies is restarted as usual.
* **Backoff reset**: leaving READY after ``reset_after_s`` of uninterrupted READY time starts the
  backoff over from ``initial_s``.
* **Dependencies** are not events of a job: they are the supervisor's graph, and they gate the
  *start* only (a job is started once every dependency is READY). A dependency that later dies
  or is stopped does not stop its dependents: they are expected to reconnect (the trader does to
  TWS), and restarting them would only add churn. pycron's own shutdown is in reverse order.
* ``BackoffElapsed``, ``StopTimeout`` and ``ReadinessTimeout`` are the runner's reports of the
  timers the job scheduled; the runner cancels timers on ``CancelTimer``, and a timer event with
  no such timer pending (``Job.timers``) is invalid. Readiness events for a job without a
  readiness probe are invalid too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from enum import StrEnum
from types import MappingProxyType

from pycron.backoff import (
    BackoffPolicy,
    CrashLoopCounter,
    CrashLoopPolicy,
    RandomSource,
    ReadinessPolicy,
    RestartPolicy,
    StopPolicy,
)
from pycron.events import (
    Action,
    BackoffElapsed,
    CancelTimer,
    EmitEvent,
    Event,
    EventKind,
    Exited,
    HealthFailed,
    HealthRecovered,
    Kill,
    MaintenanceEnded,
    MaintenanceStarted,
    ReadinessFailed,
    ReadinessPassed,
    ReadinessTimeout,
    Reset,
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


class JobState(StrEnum):
    STOPPED = "stopped"
    """Not running, not wanted (initial state, after a stop or a Reset)."""
    STARTING = "starting"
    """Spawn requested; once spawned (``pid`` set) waiting for readiness."""
    READY = "ready"
    UNHEALTHY = "unhealthy"
    """Health probe failed: being stopped for a restart (or, in maintenance, left alone)."""
    BACKOFF = "backoff"
    """Waiting for ``next_retry_at`` before an automatic restart."""
    STOPPING = "stopping"
    EXITED = "exited"
    """Ended and not restarted (restart policy)."""
    FATAL = "fatal"
    """Crash loop: no restart until an operator Reset or Start."""


RUNNING_STATES = frozenset({JobState.STARTING, JobState.READY, JobState.UNHEALTHY, JobState.STOPPING})
"""The states in which the job may have a process (``pid``); READY and UNHEALTHY always have one."""


_S = JobState
_Row = dict[JobState, AbstractSet[JobState]]
_PROBE_LATE: _Row = {_S.STOPPING: {_S.STOPPING}}
"""A probe result racing a stop is absorbed."""
_EVERYWHERE: _Row = {state: {state} for state in JobState}

_ROWS: dict[type[Event], _Row] = {
    StartRequested: {
        _S.STOPPED: {_S.STARTING},
        _S.EXITED: {_S.STARTING},
        _S.FATAL: {_S.STARTING},
        _S.BACKOFF: {_S.STARTING},
        _S.STARTING: {_S.STARTING},
        _S.READY: {_S.READY},
        _S.UNHEALTHY: {_S.UNHEALTHY},
    },
    Spawned: {_S.STARTING: {_S.STARTING, _S.READY}, _S.STOPPING: {_S.STOPPING}},
    SpawnFailed: {_S.STARTING: {_S.BACKOFF, _S.EXITED, _S.FATAL}, _S.STOPPING: {_S.STOPPED}},
    ReadinessPassed: {_S.STARTING: {_S.READY}, **_PROBE_LATE},
    ReadinessFailed: {_S.STARTING: {_S.STARTING, _S.STOPPING}, **_PROBE_LATE},
    ReadinessTimeout: {_S.STARTING: {_S.STARTING, _S.STOPPING}},  # a stop cancels the timer
    HealthFailed: {_S.READY: {_S.UNHEALTHY}, _S.UNHEALTHY: {_S.UNHEALTHY}, **_PROBE_LATE},
    HealthRecovered: {
        _S.UNHEALTHY: {_S.READY, _S.UNHEALTHY},
        _S.READY: {_S.READY},
        **_PROBE_LATE,
    },
    Exited: {
        _S.STARTING: {_S.BACKOFF, _S.EXITED, _S.FATAL},
        _S.READY: {_S.BACKOFF, _S.EXITED, _S.FATAL},
        _S.UNHEALTHY: {_S.BACKOFF, _S.EXITED, _S.FATAL},
        _S.STOPPING: {_S.STOPPED, _S.BACKOFF, _S.EXITED, _S.FATAL},
    },
    StopRequested: {
        _S.STOPPED: {_S.STOPPED},
        _S.EXITED: {_S.EXITED},
        _S.FATAL: {_S.FATAL},
        _S.BACKOFF: {_S.STOPPED},
        _S.STARTING: {_S.STOPPING},
        _S.READY: {_S.STOPPING},
        _S.UNHEALTHY: {_S.STOPPING},
        _S.STOPPING: {_S.STOPPING},
    },
    StopTimeout: {_S.STOPPING: {_S.STOPPING}, _S.UNHEALTHY: {_S.UNHEALTHY}},
    BackoffElapsed: {_S.BACKOFF: {_S.STARTING}},
    MaintenanceStarted: _EVERYWHERE,
    MaintenanceEnded: {
        **_EVERYWHERE,
        _S.STARTING: {_S.STARTING, _S.STOPPING},
    },
    Reset: {_S.FATAL: {_S.STOPPED}, _S.EXITED: {_S.STOPPED}},
}

TRANSITIONS: Mapping[tuple[JobState, type[Event]], frozenset[JobState]] = MappingProxyType(
    {(state, event): frozenset(targets) for event, row in _ROWS.items() for state, targets in row.items()}
)
"""``(state, event type) -> possible next states``; a missing pair is an :class:`InvalidTransition`."""

EVENT_TYPES: tuple[type[Event], ...] = (
    StartRequested,
    Spawned,
    SpawnFailed,
    ReadinessPassed,
    ReadinessFailed,
    ReadinessTimeout,
    HealthFailed,
    HealthRecovered,
    Exited,
    StopRequested,
    StopTimeout,
    BackoffElapsed,
    MaintenanceStarted,
    MaintenanceEnded,
    Reset,
)


class InvalidTransition(Exception):
    """``event`` is impossible for job ``job`` in ``state`` (nothing was changed)."""

    def __init__(self, job: str, state: JobState, event: Event, detail: str = "") -> None:
        self.job = job
        self.state = state
        self.event = event
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"job {job!r}: {type(event).__name__} is invalid in state {state.value}{suffix}")


# --- snapshot -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExitInfo:
    code: int | None
    signal: int | None
    at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the web API shows of a job at time ``now``."""

    name: str
    state: JobState
    pid: int | None
    started_at: float | None
    uptime_s: float | None
    restarts: int
    last_exit: ExitInfo | None
    next_retry_at: float | None
    reason: str | None
    maintenance: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the state as its string value)."""
        data = asdict(self)
        data["state"] = self.state.value
        return data


# --- the job --------------------------------------------------------------------------------------


class Job:
    """One supervised job: its state, its process, and the policies that move it."""

    def __init__(
        self,
        name: str,
        *,
        restart: RestartPolicy | None = None,
        backoff: BackoffPolicy | None = None,
        crash_loop: CrashLoopPolicy | None = None,
        stop: StopPolicy | None = None,
        readiness: ReadinessPolicy | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self.name = name
        self.restart = restart or RestartPolicy()
        self.backoff = backoff or BackoffPolicy()
        self.stop = stop or StopPolicy()
        self.readiness = readiness or ReadinessPolicy()
        self.rng: RandomSource = rng or random.Random()
        self.crash_loop = CrashLoopCounter(crash_loop or CrashLoopPolicy())
        self.state = JobState.STOPPED
        self.pid: int | None = None
        self.started_at: float | None = None
        """When the current process was spawned."""
        self.ready_since: float | None = None
        self.restarts = 0
        """Automatic restarts scheduled since the job was created."""
        self.attempt = 0
        """Backoff attempt of the next automatic restart (0-based)."""
        self.last_exit: ExitInfo | None = None
        self.next_retry_at: float | None = None
        self.reason: str | None = None
        self.maintenance = False
        self.timers: set[TimerKind] = set()
        """Timers scheduled and neither fired nor cancelled."""
        self._stop_sent = False
        """The current process was sent the stop signal."""
        self._failing_stop = False
        """The stop in progress is for a failing probe: the exit goes to the restart policy."""
        self._probe_failing = False
        """A probe failure held back by maintenance."""
        self._last_now = -math.inf
        self._handlers: dict[type[Event], Callable[[Event, float], list[Action]]] = {
            StartRequested: self._on_start,
            Spawned: self._on_spawned,
            SpawnFailed: self._on_spawn_failed,
            ReadinessPassed: self._on_readiness_passed,
            ReadinessFailed: self._on_readiness_failed,
            ReadinessTimeout: self._on_readiness_failed,
            HealthFailed: self._on_health_failed,
            HealthRecovered: self._on_health_recovered,
            Exited: self._on_exited,
            StopRequested: self._on_stop,
            StopTimeout: self._on_stop_timeout,
            BackoffElapsed: self._on_backoff_elapsed,
            MaintenanceStarted: self._on_maintenance_started,
            MaintenanceEnded: self._on_maintenance_ended,
            Reset: self._on_reset,
        }

    def __repr__(self) -> str:
        return f"Job({self.name!r}, state={self.state.value}, pid={self.pid})"

    # --- public -----------------------------------------------------------------------------------

    def apply(self, event: Event, now: float) -> list[Action]:
        """Move the job on ``event`` at monotonic time ``now``; the actions for the runner, in order.

        Raises :class:`InvalidTransition` (and changes nothing) when the move is impossible, and
        ``ValueError`` when ``now`` goes backwards.
        """
        if now < self._last_now:
            raise ValueError(f"job {self.name!r}: time went backwards ({now} < {self._last_now})")
        targets = TRANSITIONS.get((self.state, type(event)))
        if targets is None:
            raise InvalidTransition(self.name, self.state, event)
        source = self.state
        actions = self._handlers[type(event)](event, now)
        self._last_now = now
        if self.state not in targets:  # pragma: no cover - a handler contradicting the table
            raise RuntimeError(f"job {self.name!r}: {source} --{type(event).__name__}--> {self.state}")
        return actions

    def uptime_s(self, now: float) -> float | None:
        """Seconds since the current process was spawned (``None`` without a process)."""
        return None if self.started_at is None else max(0.0, now - self.started_at)

    def snapshot(self, now: float) -> Snapshot:
        return Snapshot(
            name=self.name,
            state=self.state,
            pid=self.pid,
            started_at=self.started_at,
            uptime_s=self.uptime_s(now),
            restarts=self.restarts,
            last_exit=self.last_exit,
            next_retry_at=self.next_retry_at,
            reason=self.reason,
            maintenance=self.maintenance,
        )

    def describe(self, now: float) -> dict[str, object]:
        """The snapshot as a JSON-ready dict (for the web API)."""
        return self.snapshot(now).as_dict()

    # --- helpers ----------------------------------------------------------------------------------

    def _require_pid(self, event: Event) -> int:
        if self.pid is None:
            raise InvalidTransition(self.name, self.state, event, "no process spawned yet")
        return self.pid

    def _schedule(self, kind: TimerKind, at: float) -> list[Action]:
        self.timers.add(kind)
        return [ScheduleTimer(kind, at)]

    def _cancel(self, kind: TimerKind) -> list[Action]:
        if kind in self.timers:
            self.timers.discard(kind)
            return [CancelTimer(kind)]
        return []

    def _emit(self, kind: EventKind, message: str) -> list[Action]:
        return [EmitEvent(kind, f"{self.name}: {message}")]

    def _spawn(self) -> list[Action]:
        self.state = JobState.STARTING
        self.pid = None
        self.started_at = None
        self.next_retry_at = None
        self.reason = None
        self._stop_sent = self._failing_stop = self._probe_failing = False
        return [Spawn()]

    def _forget_history(self) -> None:
        self.crash_loop.clear()
        self.attempt = 0

    def _enter_ready(self, now: float) -> list[Action]:
        self.state = JobState.READY
        self.ready_since = now
        self._probe_failing = False
        return self._emit(EventKind.READY, f"ready (pid {self.pid})")

    def _leave_ready(self, now: float) -> None:
        """Stable uptime resets the backoff."""
        if self.ready_since is not None and now - self.ready_since >= self.backoff.reset_after_s:
            self.attempt = 0
        self.ready_since = None

    def _send_stop(self, now: float) -> list[Action]:
        """Signal the current process (if any) and arm the stop timeout."""
        if self.pid is None or self._stop_sent:
            return []
        self._stop_sent = True
        return [
            Signal(self.pid, self.stop.signal),
            *self._schedule(TimerKind.STOP_TIMEOUT, now + self.stop.timeout_s),
        ]

    def _process_gone(self) -> None:
        self.pid = None
        self.started_at = None
        self.ready_since = None
        self._stop_sent = self._failing_stop = self._probe_failing = False

    def _after_failure(self, now: float, code: int | None, what: str) -> list[Action]:
        """The process is gone (or never came): EXITED, BACKOFF or FATAL as the policies say."""
        if not self.restart.should_restart(code):
            self.state = JobState.EXITED
            self.reason = what
            return self._emit(EventKind.EXITED, f"{what}; not restarted (restart: {self.restart.mode})")
        if self.crash_loop.would_loop(now):
            policy = self.crash_loop.policy
            count = self.crash_loop.recent(now) + 1
            self.state = JobState.FATAL
            self.reason = (
                f"crash loop: {count} restarts within {policy.window_s:g}s "
                f"(max_restarts={policy.max_restarts}); last: {what}"
            )
            return self._emit(EventKind.FATAL, self.reason)
        delay = self.backoff.delay(self.attempt, self.rng)
        self.attempt += 1
        self.restarts += 1
        self.crash_loop.record(now)
        self.state = JobState.BACKOFF
        self.next_retry_at = now + delay
        self.reason = what
        return [
            *self._emit(EventKind.BACKOFF, f"{what}; restart in {delay:.3g}s"),
            *self._schedule(TimerKind.RETRY, self.next_retry_at),
        ]

    def _fail_readiness(self, now: float, why: str) -> list[Action]:
        self._failing_stop = True
        self.state = JobState.STOPPING
        self.reason = why
        return [
            *self._cancel(TimerKind.READINESS_TIMEOUT),
            *self._emit(EventKind.READINESS_FAILED, f"{why}; stopping"),
            *self._send_stop(now),
        ]

    def _fail_health(self, now: float) -> list[Action]:
        self._failing_stop = True
        return [
            *self._emit(EventKind.UNHEALTHY, f"{self.reason}; restarting"),
            *self._send_stop(now),
        ]

    # --- handlers (guards first: a raise must leave the job unchanged) ----------------------------

    def _on_start(self, event: Event, now: float) -> list[Action]:
        if self.state in (JobState.STARTING, JobState.READY, JobState.UNHEALTHY):
            return []
        if self.state is JobState.BACKOFF:
            return [*self._cancel(TimerKind.RETRY), *self._spawn()]
        self._forget_history()
        return self._spawn()

    def _on_spawned(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, Spawned)
        if self.pid is not None:
            raise InvalidTransition(self.name, self.state, event, f"already spawned as pid {self.pid}")
        self.pid = event.pid
        self.started_at = now
        if self.state is JobState.STOPPING:
            return self._send_stop(now)
        if not self.readiness.probe:
            return self._enter_ready(now)
        if self.readiness.timeout_s is not None:
            return self._schedule(TimerKind.READINESS_TIMEOUT, now + self.readiness.timeout_s)
        return []

    def _on_spawn_failed(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, SpawnFailed)
        if self.pid is not None:
            raise InvalidTransition(self.name, self.state, event, f"already spawned as pid {self.pid}")
        if self.state is JobState.STOPPING:
            self.state = JobState.STOPPED
            self.reason = f"spawn failed: {event.reason}"
            return self._emit(EventKind.STOPPED, f"stopped (spawn failed: {event.reason})")
        return self._after_failure(now, None, f"spawn failed: {event.reason}")

    def _require_probe(self, event: Event) -> None:
        self._require_pid(event)
        if not self.readiness.probe:
            raise InvalidTransition(self.name, self.state, event, "the job has no readiness probe")
        if isinstance(event, ReadinessTimeout) and TimerKind.READINESS_TIMEOUT not in self.timers:
            raise InvalidTransition(self.name, self.state, event, "no readiness timer pending")

    def _on_readiness_passed(self, event: Event, now: float) -> list[Action]:
        self._require_probe(event)
        if self.state is JobState.STOPPING:
            return []
        return [*self._cancel(TimerKind.READINESS_TIMEOUT), *self._enter_ready(now)]

    def _on_readiness_failed(self, event: Event, now: float) -> list[Action]:
        self._require_probe(event)
        if isinstance(event, ReadinessTimeout):
            self.timers.discard(TimerKind.READINESS_TIMEOUT)
            why = f"not ready within {self.readiness.timeout_s:g}s"
        else:
            assert isinstance(event, ReadinessFailed)
            why = f"readiness probe failed{': ' + event.reason if event.reason else ''}"
        if self.state is JobState.STOPPING:
            return []
        if self.maintenance:
            self._probe_failing = True
            self.reason = f"{why} (maintenance)"
            return []
        return self._fail_readiness(now, why)

    def _on_health_failed(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, HealthFailed)
        if self.state is not JobState.READY:
            return []
        self._leave_ready(now)
        self.state = JobState.UNHEALTHY
        self.reason = f"health probe failed{': ' + event.reason if event.reason else ''}"
        if self.maintenance:
            self._probe_failing = True
            return []
        return self._fail_health(now)

    def _on_health_recovered(self, event: Event, now: float) -> list[Action]:
        if self.state is not JobState.UNHEALTHY or self._stop_sent:
            return []  # READY already, or the restart is under way
        self.reason = None
        return self._enter_ready(now)

    def _on_exited(self, event: Event, now: float) -> list[Action]:
        assert isinstance(event, Exited)
        self._require_pid(event)
        self.last_exit = ExitInfo(event.code, event.signal, now)
        what = event.describe()
        # a stop we sent for a failing probe: a failure whatever the exit code
        failing = self._failing_stop or (self.state is JobState.UNHEALTHY and self._stop_sent)
        operator_stop = self.state is JobState.STOPPING and not failing
        if self.state is JobState.READY:
            self._leave_ready(now)
        actions = [*self._cancel(TimerKind.READINESS_TIMEOUT), *self._cancel(TimerKind.STOP_TIMEOUT)]
        self._process_gone()
        if operator_stop:
            self.state = JobState.STOPPED
            self.reason = None
            return [*actions, *self._emit(EventKind.STOPPED, f"stopped ({what})")]
        if failing:
            return [*actions, *self._after_failure(now, None, f"{self.reason}; {what}")]
        return [*actions, *self._after_failure(now, event.code, what)]

    def _on_stop(self, event: Event, now: float) -> list[Action]:
        if self.state in (JobState.STOPPED, JobState.EXITED, JobState.FATAL):
            return []
        if self.state is JobState.BACKOFF:
            self.state = JobState.STOPPED
            self.next_retry_at = None
            self.reason = None
            return [
                *self._cancel(TimerKind.RETRY),
                *self._emit(EventKind.STOPPED, "stopped; retry cancelled"),
            ]
        if self.state is JobState.READY:
            self._leave_ready(now)
        self.state = JobState.STOPPING
        self._failing_stop = False  # the operator's stop wins over a restart in progress
        self._probe_failing = False
        self.reason = "stop requested"
        return [*self._cancel(TimerKind.READINESS_TIMEOUT), *self._send_stop(now)]

    def _on_stop_timeout(self, event: Event, now: float) -> list[Action]:
        pid = self._require_pid(event)
        if not self._stop_sent or TimerKind.STOP_TIMEOUT not in self.timers:
            raise InvalidTransition(self.name, self.state, event, "no stop in progress")
        self.timers.discard(TimerKind.STOP_TIMEOUT)
        return [
            Kill(pid, group=self.stop.kill_group),
            *self._emit(
                EventKind.STOP_TIMEOUT,
                f"pid {pid} still running {self.stop.timeout_s:g}s after the stop signal; killed",
            ),
        ]

    def _on_backoff_elapsed(self, event: Event, now: float) -> list[Action]:
        self.timers.discard(TimerKind.RETRY)
        return self._spawn()

    def _on_maintenance_started(self, event: Event, now: float) -> list[Action]:
        self.maintenance = True
        return []

    def _on_maintenance_ended(self, event: Event, now: float) -> list[Action]:
        self.maintenance = False
        if not self._probe_failing:
            return []
        self._probe_failing = False
        if self.state is JobState.STARTING:
            return self._fail_readiness(
                now, (self.reason or "readiness probe failed").removesuffix(" (maintenance)")
            )
        if self.state is JobState.UNHEALTHY:
            return self._fail_health(now)
        return []  # pragma: no cover - _probe_failing is cleared on leaving STARTING / UNHEALTHY

    def _on_reset(self, event: Event, now: float) -> list[Action]:
        self._forget_history()
        self.state = JobState.STOPPED
        self.reason = None
        return []
