"""pycron job state machine: the transition table, restart / backoff / crash-loop policies,
stops and kills, maintenance, snapshots, and random event sequences (no processes, fake time)."""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycron.backoff import (
    BackoffPolicy,
    CrashLoopPolicy,
    ReadinessPolicy,
    RestartMode,
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
from pycron.state import (
    EVENT_TYPES,
    RUNNING_STATES,
    TRANSITIONS,
    ExitInfo,
    InvalidTransition,
    Job,
    JobState,
)

S = JobState
T0 = 1000.0
PID = 4242
NO_JITTER = BackoffPolicy(initial_s=1.0, max_s=30.0, factor=2.0, jitter=0.0, reset_after_s=60.0)
LOOSE = CrashLoopPolicy(max_restarts=1000, window_s=60.0)


class FixedRandom:
    """A RandomSource returning the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def make(
    *,
    probe: bool = True,
    mode: RestartMode = RestartMode.ON_FAILURE,
    success: frozenset[int] = frozenset({0}),
    backoff: BackoffPolicy = NO_JITTER,
    crash_loop: CrashLoopPolicy = LOOSE,
    readiness_timeout_s: float | None = 5.0,
) -> Job:
    return Job(
        "web",
        restart=RestartPolicy(mode, success),
        backoff=backoff,
        crash_loop=crash_loop,
        stop=StopPolicy(signal=signal.SIGTERM, timeout_s=10.0),
        readiness=ReadinessPolicy(probe=probe, timeout_s=readiness_timeout_s if probe else None),
        rng=random.Random(0),
    )


class Clock:
    """Fake monotonic time: each step is one second later."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def step(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


def drive(job: Job, clock: Clock, *events: Event) -> list[Action]:
    actions: list[Action] = []
    for event in events:
        actions = job.apply(event, clock.step())
    return actions


SPAWN = (StartRequested(), Spawned(PID))
UP = (*SPAWN, ReadinessPassed())
"""Events that bring a probed job to READY."""

SETUPS: dict[str, tuple[Event, ...]] = {
    "stopped": (),
    "starting": (StartRequested(),),
    "starting_spawned": SPAWN,
    "ready": UP,
    "unhealthy": (*UP, HealthFailed("http 500")),
    "unhealthy_maintenance": (MaintenanceStarted(), *UP, HealthFailed("http 500")),
    "backoff": (*UP, Exited(code=1)),
    "stopping": (*UP, StopRequested()),
    "stopping_unspawned": (StartRequested(), StopRequested()),
    "stopping_spawned_probe": (*SPAWN, StopRequested()),
    "stopping_readiness_failed": (*SPAWN, ReadinessFailed("no port")),
    "starting_maintenance": (MaintenanceStarted(), StartRequested()),
    "starting_deferred_failure": (MaintenanceStarted(), *SPAWN, ReadinessFailed("no port")),
    "exited": (*UP, StopRequested(), Exited(code=0), StartRequested(), Spawned(PID), Exited(code=0)),
    "fatal": (*UP, Exited(code=1), BackoffElapsed(), Spawned(PID), Exited(code=1)),
}
"""How to reach each (sub)state; ``fatal`` and ``exited`` rely on the policies of :func:`setup`."""

SETUP_STATE = {
    "stopped": S.STOPPED,
    "starting": S.STARTING,
    "starting_spawned": S.STARTING,
    "ready": S.READY,
    "unhealthy": S.UNHEALTHY,
    "unhealthy_maintenance": S.UNHEALTHY,
    "backoff": S.BACKOFF,
    "stopping": S.STOPPING,
    "stopping_unspawned": S.STOPPING,
    "stopping_spawned_probe": S.STOPPING,
    "stopping_readiness_failed": S.STOPPING,
    "starting_maintenance": S.STARTING,
    "starting_deferred_failure": S.STARTING,
    "exited": S.EXITED,
    "fatal": S.FATAL,
}


def setup(name: str, **policies: object) -> tuple[Job, Clock]:
    if name == "exited":
        policies.setdefault("mode", RestartMode.ON_FAILURE)
    if name == "fatal":
        policies.setdefault("crash_loop", CrashLoopPolicy(max_restarts=1, window_s=60.0))
    job = make(**policies)  # type: ignore[arg-type]
    clock = Clock()
    drive(job, clock, *SETUPS[name])
    assert job.state is SETUP_STATE[name], (name, job)
    return job, clock


def state_of(job: Job) -> JobState:
    """The job's state, unnarrowed (mypy keeps ``job.state`` narrowed across ``apply`` calls)."""
    return job.state


def kinds(actions: list[Action]) -> list[str]:
    """Compact action names: ``Spawn``, ``Signal``, ``Schedule:retry``, ``Emit:ready``, ..."""
    out: list[str] = []
    for action in actions:
        if isinstance(action, ScheduleTimer):
            out.append(f"Schedule:{action.kind}")
        elif isinstance(action, CancelTimer):
            out.append(f"Cancel:{action.kind}")
        elif isinstance(action, EmitEvent):
            out.append(f"Emit:{action.kind}")
        else:
            out.append(type(action).__name__)
    return out


# --- every transition of the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    setup: str
    event: Event
    expected: JobState
    actions: list[str]
    policies: dict[str, object] = field(default_factory=dict)


NEVER: dict[str, object] = {"mode": RestartMode.NEVER}
ONE_SHOT: dict[str, object] = {"crash_loop": CrashLoopPolicy(max_restarts=0, window_s=60.0)}

CASES = [
    # StartRequested
    Case("stopped", StartRequested(), S.STARTING, ["Spawn"]),
    Case("exited", StartRequested(), S.STARTING, ["Spawn"]),
    Case("fatal", StartRequested(), S.STARTING, ["Spawn"]),
    Case("backoff", StartRequested(), S.STARTING, ["Cancel:retry", "Spawn"]),
    Case("starting", StartRequested(), S.STARTING, []),
    Case("ready", StartRequested(), S.READY, []),
    Case("unhealthy", StartRequested(), S.UNHEALTHY, []),
    # Spawned
    Case("starting", Spawned(PID), S.STARTING, ["Schedule:readiness_timeout"]),
    Case("starting", Spawned(PID), S.READY, ["Emit:ready"], {"probe": False}),
    Case("stopping_unspawned", Spawned(PID), S.STOPPING, ["Signal", "Schedule:stop_timeout"]),
    # SpawnFailed
    Case("starting", SpawnFailed("ENOENT"), S.BACKOFF, ["Emit:backoff", "Schedule:retry"]),
    Case("starting", SpawnFailed("ENOENT"), S.EXITED, ["Emit:exited"], NEVER),
    Case("starting", SpawnFailed("ENOENT"), S.FATAL, ["Emit:fatal"], ONE_SHOT),
    Case("stopping_unspawned", SpawnFailed("ENOENT"), S.STOPPED, ["Emit:stopped"]),
    # ReadinessPassed
    Case("starting_spawned", ReadinessPassed(), S.READY, ["Cancel:readiness_timeout", "Emit:ready"]),
    Case("stopping_spawned_probe", ReadinessPassed(), S.STOPPING, []),
    # ReadinessFailed / ReadinessTimeout
    *(
        case
        for event in (ReadinessFailed("no port"), ReadinessTimeout())
        for case in (
            Case(
                "starting_spawned",
                event,
                S.STOPPING,
                [
                    *(["Cancel:readiness_timeout"] if isinstance(event, ReadinessFailed) else []),
                    "Emit:readiness_failed",
                    "Signal",
                    "Schedule:stop_timeout",
                ],
            ),
            Case("starting_deferred_failure", event, S.STARTING, []),
        )
    ),
    Case("stopping_spawned_probe", ReadinessFailed(), S.STOPPING, []),
    # HealthFailed
    Case(
        "ready", HealthFailed("http 500"), S.UNHEALTHY, ["Emit:unhealthy", "Signal", "Schedule:stop_timeout"]
    ),
    Case("unhealthy", HealthFailed(), S.UNHEALTHY, []),
    Case("stopping", HealthFailed(), S.STOPPING, []),
    # HealthRecovered
    Case("unhealthy", HealthRecovered(), S.UNHEALTHY, []),
    Case("unhealthy_maintenance", HealthRecovered(), S.READY, ["Emit:ready"]),
    Case("ready", HealthRecovered(), S.READY, []),
    Case("stopping", HealthRecovered(), S.STOPPING, []),
    # Exited
    Case(
        "starting_spawned",
        Exited(code=1),
        S.BACKOFF,
        ["Cancel:readiness_timeout", "Emit:backoff", "Schedule:retry"],
    ),
    Case("ready", Exited(code=1), S.BACKOFF, ["Emit:backoff", "Schedule:retry"]),
    Case("ready", Exited(code=1), S.EXITED, ["Emit:exited"], NEVER),
    Case("ready", Exited(signal=9), S.FATAL, ["Emit:fatal"], ONE_SHOT),
    Case("unhealthy", Exited(code=0), S.BACKOFF, ["Cancel:stop_timeout", "Emit:backoff", "Schedule:retry"]),
    Case("stopping", Exited(signal=15), S.STOPPED, ["Cancel:stop_timeout", "Emit:stopped"]),
    Case(
        "stopping_readiness_failed",
        Exited(code=0),
        S.BACKOFF,
        ["Cancel:stop_timeout", "Emit:backoff", "Schedule:retry"],
    ),
    *(
        Case(name, Exited(code=1), target, [cancel, "Emit:" + target.value], policies)
        for name, cancel in (
            ("starting_spawned", "Cancel:readiness_timeout"),
            ("unhealthy", "Cancel:stop_timeout"),
            ("stopping_readiness_failed", "Cancel:stop_timeout"),
        )
        for target, policies in ((S.EXITED, NEVER), (S.FATAL, ONE_SHOT))
    ),
    # StopRequested
    Case("stopped", StopRequested(), S.STOPPED, []),
    Case("exited", StopRequested(), S.EXITED, []),
    Case("fatal", StopRequested(), S.FATAL, []),
    Case("backoff", StopRequested(), S.STOPPED, ["Cancel:retry", "Emit:stopped"]),
    Case("starting", StopRequested(), S.STOPPING, []),
    Case(
        "starting_spawned",
        StopRequested(),
        S.STOPPING,
        ["Cancel:readiness_timeout", "Signal", "Schedule:stop_timeout"],
    ),
    Case("ready", StopRequested(), S.STOPPING, ["Signal", "Schedule:stop_timeout"]),
    Case("unhealthy", StopRequested(), S.STOPPING, []),
    Case("stopping", StopRequested(), S.STOPPING, []),
    # StopTimeout
    Case("stopping", StopTimeout(), S.STOPPING, ["Kill", "Emit:stop_timeout"]),
    Case("unhealthy", StopTimeout(), S.UNHEALTHY, ["Kill", "Emit:stop_timeout"]),
    # BackoffElapsed
    Case("backoff", BackoffElapsed(), S.STARTING, ["Spawn"]),
    # Maintenance
    *(Case(name, MaintenanceStarted(), state, []) for name, state in SETUP_STATE.items()),
    *(
        Case(name, MaintenanceEnded(), state, [])
        for name, state in SETUP_STATE.items()
        if name not in ("unhealthy_maintenance", "starting_deferred_failure")
    ),
    Case(
        "unhealthy_maintenance",
        MaintenanceEnded(),
        S.UNHEALTHY,
        ["Emit:unhealthy", "Signal", "Schedule:stop_timeout"],
    ),
    Case(
        "starting_deferred_failure",
        MaintenanceEnded(),
        S.STOPPING,
        ["Cancel:readiness_timeout", "Emit:readiness_failed", "Signal", "Schedule:stop_timeout"],
    ),
    # Reset
    Case("fatal", Reset(), S.STOPPED, []),
    Case("exited", Reset(), S.STOPPED, []),
]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.setup}-{type(c.event).__name__}-{c.expected}-{i}" for i, c in enumerate(CASES)]
)
def test_apply_when_table_transition_then_expected_state_and_actions(case: Case) -> None:
    job, clock = setup(case.setup, **case.policies)
    source = job.state
    actions = job.apply(case.event, clock.step())
    assert job.state is case.expected
    assert kinds(actions) == case.actions
    assert case.expected in TRANSITIONS[(source, type(case.event))]


def test_cases_when_compared_with_the_table_then_every_entry_and_target_is_exercised() -> None:
    covered = {(SETUP_STATE[c.setup], type(c.event), c.expected) for c in CASES}
    declared = {
        (state, event, target) for (state, event), targets in TRANSITIONS.items() for target in targets
    }
    assert declared == covered


SAMPLES: dict[type[Event], Event] = {
    StartRequested: StartRequested(),
    Spawned: Spawned(PID),
    SpawnFailed: SpawnFailed("ENOENT"),
    ReadinessPassed: ReadinessPassed(),
    ReadinessFailed: ReadinessFailed(),
    ReadinessTimeout: ReadinessTimeout(),
    HealthFailed: HealthFailed(),
    HealthRecovered: HealthRecovered(),
    Exited: Exited(code=1),
    StopRequested: StopRequested(),
    StopTimeout: StopTimeout(),
    BackoffElapsed: BackoffElapsed(),
    MaintenanceStarted: MaintenanceStarted(),
    MaintenanceEnded: MaintenanceEnded(),
    Reset: Reset(),
}

MISSING = [
    (name, event_type)
    for name, state in SETUP_STATE.items()
    for event_type in EVENT_TYPES
    if (state, event_type) not in TRANSITIONS
]


@pytest.mark.parametrize(("setup_name", "event_type"), MISSING, ids=[f"{n}-{e.__name__}" for n, e in MISSING])
def test_apply_when_pair_not_in_table_then_invalid_transition_and_nothing_changes(
    setup_name: str, event_type: type[Event]
) -> None:
    job, clock = setup(setup_name)
    before = (job.snapshot(clock.now), set(job.timers))
    with pytest.raises(InvalidTransition) as raised:
        job.apply(SAMPLES[event_type], clock.step())
    assert str(raised.value) == f"job 'web': {event_type.__name__} is invalid in state {job.state.value}"
    assert raised.value.job == "web" and raised.value.state is job.state
    assert (job.snapshot(clock.now - 1), set(job.timers)) == before


def test_table_when_listed_then_covers_every_event_type_and_state() -> None:
    assert set(EVENT_TYPES) == set(SAMPLES) == {event for _, event in TRANSITIONS}
    assert {state for state, _ in TRANSITIONS} == set(JobState)


@pytest.mark.parametrize(
    ("setup_name", "event"),
    [
        ("starting", Exited(code=1)),
        ("starting", ReadinessPassed()),
        ("starting", ReadinessFailed()),
        ("starting_spawned", Spawned(PID + 1)),
        ("starting_spawned", SpawnFailed("late")),
        ("stopping_unspawned", Exited(code=0)),
        ("stopping_unspawned", StopTimeout()),
        ("unhealthy_maintenance", StopTimeout()),
    ],
)
def test_apply_when_event_contradicts_the_process_then_invalid_and_unchanged(
    setup_name: str, event: Event
) -> None:
    job, clock = setup(setup_name)
    before = job.snapshot(clock.now)
    with pytest.raises(InvalidTransition, match=f"job 'web': {type(event).__name__} is invalid in state"):
        job.apply(event, clock.step())
    assert job.snapshot(clock.now - 1) == before


def test_readiness_events_when_job_has_no_probe_or_no_timer_then_invalid() -> None:
    job, clock = setup("stopping_unspawned", probe=False)
    job.apply(Spawned(PID), clock.step())
    for event in (ReadinessPassed(), ReadinessFailed()):
        with pytest.raises(InvalidTransition, match="has no readiness probe"):
            job.apply(event, clock.step())
    job, clock = setup("starting", readiness_timeout_s=None)
    job.apply(Spawned(PID), clock.step())
    with pytest.raises(InvalidTransition, match="no readiness timer pending"):
        job.apply(ReadinessTimeout(), clock.step())


def test_stop_timeout_when_fired_twice_then_second_is_invalid() -> None:
    job, clock = setup("stopping")
    job.apply(StopTimeout(), clock.step())
    with pytest.raises(InvalidTransition, match="no stop in progress"):
        job.apply(StopTimeout(), clock.step())


def test_apply_when_time_goes_backwards_then_value_error() -> None:
    job, clock = setup("ready")
    with pytest.raises(ValueError, match="time went backwards"):
        job.apply(HealthFailed(), clock.now - 5)
    assert job.state is S.READY


# --- restart policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "success", "exit", "expected"),
    [
        (RestartMode.ON_FAILURE, frozenset({0}), Exited(code=0), S.EXITED),
        (RestartMode.ON_FAILURE, frozenset({0}), Exited(code=1), S.BACKOFF),
        (RestartMode.ON_FAILURE, frozenset({0}), Exited(signal=signal.SIGKILL), S.BACKOFF),
        (RestartMode.ON_FAILURE, frozenset({0, 3}), Exited(code=3), S.EXITED),
        (RestartMode.ON_FAILURE, frozenset({3}), Exited(code=0), S.BACKOFF),
        (RestartMode.ALWAYS, frozenset({0}), Exited(code=0), S.BACKOFF),
        (RestartMode.ALWAYS, frozenset({0}), Exited(code=2), S.BACKOFF),
        (RestartMode.NEVER, frozenset({0}), Exited(code=1), S.EXITED),
        (RestartMode.NEVER, frozenset({0}), Exited(signal=signal.SIGSEGV), S.EXITED),
    ],
)
def test_exit_when_restart_policy_then_backoff_or_exited(
    mode: RestartMode, success: frozenset[int], exit: Exited, expected: JobState
) -> None:
    job, clock = setup("ready", mode=mode, success=success)
    actions = job.apply(exit, clock.step())
    assert job.state is expected
    assert job.last_exit == ExitInfo(exit.code, exit.signal, clock.now)
    assert job.pid is None
    if expected is S.EXITED:
        assert kinds(actions) == ["Emit:exited"]
        assert job.reason == exit.describe()


def test_exit_when_stopping_then_stopped_without_restart_whatever_the_code() -> None:
    for mode in RestartMode:
        job, clock = setup("stopping", mode=mode)
        job.apply(Exited(code=137), clock.step())
        assert job.state is S.STOPPED and job.next_retry_at is None and job.restarts == 0


def test_exit_when_stopped_for_a_failing_probe_then_failure_even_with_code_zero() -> None:
    job, clock = setup("unhealthy", mode=RestartMode.ON_FAILURE)
    job.apply(Exited(code=0), clock.step())
    assert job.state is S.BACKOFF
    assert job.reason == "health probe failed: http 500; exited with code 0"


def test_failing_probe_when_restart_never_then_stopped_and_exited() -> None:
    job, clock = setup("ready", mode=RestartMode.NEVER)
    assert "Signal" in kinds(job.apply(HealthFailed(), clock.step()))
    job.apply(Exited(signal=signal.SIGTERM), clock.step())
    assert job.state is S.EXITED


# --- backoff --------------------------------------------------------------------------------------


def test_ceiling_when_attempts_grow_then_doubles_until_the_cap() -> None:
    assert [NO_JITTER.ceiling(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert NO_JITTER.ceiling(10**9) == 30.0


def test_backoff_when_job_keeps_crashing_then_delays_double_up_to_the_cap() -> None:
    job, clock = setup("ready")
    delays = []
    for _ in range(7):
        actions = job.apply(Exited(code=1), clock.step())
        assert job.next_retry_at is not None
        delays.append(job.next_retry_at - clock.now)
        assert ScheduleTimer(TimerKind.RETRY, job.next_retry_at) in actions
        drive(job, clock, BackoffElapsed(), Spawned(PID), ReadinessPassed())
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert job.restarts == 7


def test_delay_when_rng_at_extremes_then_within_jitter_bounds() -> None:
    policy = BackoffPolicy(initial_s=1.0, max_s=8.0, jitter=0.25)
    assert policy.delay(2, FixedRandom(0.0)) == 4.0
    assert policy.delay(2, FixedRandom(1.0)) == pytest.approx(3.0)
    assert policy.delay(9, FixedRandom(0.999999)) == pytest.approx(6.0, abs=1e-5)


@given(
    initial=st.floats(0.001, 10.0),
    ratio=st.floats(1.0, 1000.0),
    factor=st.floats(1.0, 4.0),
    jitter=st.floats(0.0, 1.0),
    attempt=st.integers(0, 300),
    seed=st.integers(0, 2**32),
)
def test_delay_when_any_policy_then_between_jittered_floor_and_capped_ceiling(
    *, initial: float, ratio: float, factor: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = BackoffPolicy(initial_s=initial, max_s=initial * ratio, factor=factor, jitter=jitter)
    rng = random.Random(seed)
    ceiling = policy.ceiling(attempt)
    assert ceiling <= policy.max_s
    for _ in range(10):
        delay = policy.delay(attempt, rng)
        assert ceiling * (1 - jitter) * (1 - 1e-12) <= delay <= ceiling


def test_backoff_when_ready_for_reset_after_s_then_starts_over_from_initial() -> None:
    job, clock = setup("ready")
    for _ in range(3):
        job.apply(Exited(code=1), clock.step())
        drive(job, clock, BackoffElapsed(), Spawned(PID), ReadinessPassed())
    assert job.attempt == 3
    clock.step(60.0)  # READY for 60 s (reset_after_s) without interruption
    job.apply(Exited(code=1), clock.step(0.0))
    assert job.next_retry_at == clock.now + 1.0


def test_backoff_when_ready_shorter_than_reset_after_s_then_keeps_growing() -> None:
    job, clock = setup("ready")
    for _ in range(3):
        job.apply(Exited(code=1), clock.step())
        drive(job, clock, BackoffElapsed(), Spawned(PID), ReadinessPassed())
    clock.step(58.0)
    job.apply(Exited(code=1), clock.step())  # 59 s of READY
    assert job.next_retry_at == clock.now + 8.0


def test_backoff_when_uptime_was_spent_unhealthy_in_maintenance_then_ready_time_restarts() -> None:
    job, clock = setup("ready")
    job.apply(Exited(code=1), clock.step())
    drive(job, clock, BackoffElapsed(), Spawned(PID), ReadinessPassed(), MaintenanceStarted(), HealthFailed())
    clock.step(100.0)
    job.apply(HealthRecovered(), clock.step())
    job.apply(Exited(code=1), clock.step(30.0))  # only 30 s READY since the recovery
    assert job.next_retry_at == clock.now + 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": math.inf},
        {"initial_s": 2.0, "max_s": 1.0},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"reset_after_s": -1.0},
        {"reset_after_s": math.nan},
    ],
)
def test_backoff_policy_when_invalid_then_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


@pytest.mark.parametrize(
    "build",
    [
        lambda: CrashLoopPolicy(max_restarts=-1),
        lambda: CrashLoopPolicy(window_s=0.0),
        lambda: StopPolicy(timeout_s=0.0),
        lambda: ReadinessPolicy(probe=True, timeout_s=-1.0),
        Exited,
        lambda: Exited(code=0, signal=9),
    ],
)
def test_policies_and_events_when_invalid_then_value_error(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


# --- crash loop -----------------------------------------------------------------------------------


def crash_and_retry(job: Job, clock: Clock, gap: float) -> list[Action]:
    """Crash ``gap`` seconds after the last event; if restarting, bring the job back to READY."""
    actions = job.apply(Exited(code=1), clock.step(gap))
    if job.state is S.BACKOFF:
        drive(job, clock, BackoffElapsed(), Spawned(PID), ReadinessPassed())
    return actions


def test_crash_loop_when_more_than_max_restarts_within_window_then_fatal() -> None:
    job, clock = setup("ready", crash_loop=CrashLoopPolicy(max_restarts=3, window_s=60.0))
    for _ in range(3):
        crash_and_retry(job, clock, 1.0)
        assert job.state is S.READY
    actions = crash_and_retry(job, clock, 1.0)
    assert job.state is S.FATAL
    reason = "crash loop: 4 restarts within 60s (max_restarts=3); last: exited with code 1"
    assert job.reason == reason
    assert actions == [EmitEvent(EventKind.FATAL, f"web: {reason}")]
    assert job.next_retry_at is None and job.pid is None and job.restarts == 3


def test_crash_loop_when_restarts_spread_beyond_the_window_then_never_fatal() -> None:
    job, clock = setup(
        "ready",
        crash_loop=CrashLoopPolicy(max_restarts=3, window_s=60.0),
        backoff=BackoffPolicy(initial_s=1.0, max_s=1.0, reset_after_s=1000.0),
    )
    for _ in range(20):
        crash_and_retry(job, clock, 20.0)  # one restart every ~23 s: at most 3 within 60 s
        assert job.state is S.READY
    assert job.restarts == 20


def test_fatal_when_backoff_elapsed_or_exit_then_invalid_until_operator() -> None:
    job, clock = setup("fatal")
    for event in (BackoffElapsed(), Exited(code=1), Spawned(PID)):
        with pytest.raises(InvalidTransition, match="in state fatal"):
            job.apply(event, clock.step())
    job.apply(Reset(), clock.step())
    assert job.state is S.STOPPED and job.reason is None
    job.apply(StartRequested(), clock.step())
    drive(job, clock, Spawned(PID), ReadinessPassed(), Exited(code=1))
    assert state_of(job) is S.BACKOFF  # history forgotten: one restart is allowed again
    assert job.next_retry_at == clock.now + 1.0


def test_fatal_when_operator_starts_then_history_forgotten() -> None:
    job, clock = setup("fatal")
    assert kinds(job.apply(StartRequested(), clock.step())) == ["Spawn"]
    drive(job, clock, Spawned(PID), ReadinessPassed(), Exited(code=1))
    assert job.state is S.BACKOFF


# --- stop, kill, backoff cancel -------------------------------------------------------------------


def test_stop_when_in_backoff_then_retry_cancelled_and_stopped() -> None:
    job, clock = setup("backoff")
    actions = job.apply(StopRequested(), clock.step())
    assert actions == [
        CancelTimer(TimerKind.RETRY),
        EmitEvent(EventKind.STOPPED, "web: stopped; retry cancelled"),
    ]
    assert job.state is S.STOPPED and job.next_retry_at is None
    with pytest.raises(InvalidTransition):
        job.apply(BackoffElapsed(), clock.step())


def test_stop_when_process_ignores_signal_then_timeout_kills_the_group() -> None:
    job, clock = setup("ready")
    actions = job.apply(StopRequested(), clock.step())
    assert actions == [
        Signal(PID, signal.SIGTERM),
        ScheduleTimer(TimerKind.STOP_TIMEOUT, clock.now + 10.0),
    ]
    actions = job.apply(StopTimeout(), clock.step(10.0))
    assert actions[0] == Kill(PID, group=True)
    assert kinds(actions) == ["Kill", "Emit:stop_timeout"]
    assert job.apply(Exited(signal=signal.SIGKILL), clock.step()) == [
        EmitEvent(EventKind.STOPPED, "web: stopped (killed by signal 9 (SIGKILL))")
    ]
    assert job.state is S.STOPPED


def test_stop_when_spawn_still_pending_then_signal_once_spawned() -> None:
    job, clock = setup("stopping_unspawned")
    assert job.apply(Spawned(PID), clock.step())[0] == Signal(PID, signal.SIGTERM)
    job.apply(Exited(code=0), clock.step())
    assert job.state is S.STOPPED


def test_stop_when_unhealthy_restart_in_progress_then_stopped_not_restarted() -> None:
    job, clock = setup("unhealthy")
    assert job.apply(StopRequested(), clock.step()) == []  # the signal was already sent
    job.apply(Exited(signal=signal.SIGTERM), clock.step())
    assert job.state is S.STOPPED and job.restarts == 0


def test_stop_when_readiness_failure_stop_in_progress_then_operator_stop_wins() -> None:
    job, clock = setup("stopping_readiness_failed")
    job.apply(StopRequested(), clock.step())
    job.apply(Exited(code=1), clock.step())
    assert job.state is S.STOPPED


def test_start_when_in_backoff_then_spawns_now_and_keeps_attempts() -> None:
    job, clock = setup("backoff")
    assert kinds(job.apply(StartRequested(), clock.step())) == ["Cancel:retry", "Spawn"]
    drive(job, clock, Spawned(PID), ReadinessPassed(), Exited(code=1))
    assert job.next_retry_at == clock.now + 2.0


# --- probes and maintenance -----------------------------------------------------------------------


def test_health_failed_when_in_maintenance_then_no_restart_and_no_alert() -> None:
    job, clock = setup("ready")
    job.apply(MaintenanceStarted(), clock.step())
    assert job.apply(HealthFailed("tws down"), clock.step()) == []
    assert job.state is S.UNHEALTHY and job.pid == PID
    assert job.apply(HealthRecovered(), clock.step()) == [
        EmitEvent(EventKind.READY, f"web: ready (pid {PID})")
    ]
    assert state_of(job) is S.READY
    assert job.apply(MaintenanceEnded(), clock.step()) == []


def test_maintenance_when_ended_while_probe_still_failing_then_restart_begins() -> None:
    job, clock = setup("unhealthy_maintenance")
    actions = job.apply(MaintenanceEnded(), clock.step())
    assert actions == [
        EmitEvent(EventKind.UNHEALTHY, "web: health probe failed: http 500; restarting"),
        Signal(PID, signal.SIGTERM),
        ScheduleTimer(TimerKind.STOP_TIMEOUT, clock.now + 10.0),
    ]
    job.apply(Exited(code=0), clock.step())
    assert job.state is S.BACKOFF


def test_readiness_when_failing_in_maintenance_then_waits_and_can_still_pass() -> None:
    job, clock = setup("starting_deferred_failure")
    assert job.apply(ReadinessTimeout(), clock.step()) == []
    assert kinds(job.apply(ReadinessPassed(), clock.step())) == ["Emit:ready"]
    assert job.apply(MaintenanceEnded(), clock.step()) == []
    assert job.state is S.READY


def test_exit_when_in_maintenance_then_restarted_as_usual() -> None:
    job, clock = setup("unhealthy_maintenance")
    job.apply(Exited(code=1), clock.step())
    assert job.state is S.BACKOFF and job.maintenance


def test_health_recovered_when_restart_already_signalled_then_restart_continues() -> None:
    job, clock = setup("unhealthy")
    assert job.apply(HealthRecovered(), clock.step()) == []
    assert job.state is S.UNHEALTHY
    assert kinds(job.apply(StopTimeout(), clock.step())) == ["Kill", "Emit:stop_timeout"]


def test_readiness_timeout_when_fired_then_reason_names_the_deadline() -> None:
    job, clock = setup("starting_spawned")
    actions = job.apply(ReadinessTimeout(), clock.step())
    assert actions[0] == EmitEvent(EventKind.READINESS_FAILED, "web: not ready within 5s; stopping")
    assert TimerKind.READINESS_TIMEOUT not in job.timers


# --- snapshot -------------------------------------------------------------------------------------


def test_describe_when_ready_then_reports_uptime_and_last_exit() -> None:
    job, clock = setup("ready")
    spawned_at = T0 + 2
    job.apply(Exited(code=3), clock.step())
    drive(job, clock, BackoffElapsed(), Spawned(PID + 1), ReadinessPassed())
    now = clock.now + 12.5
    assert job.describe(now) == {
        "name": "web",
        "state": "ready",
        "pid": PID + 1,
        "started_at": T0 + 6,
        "uptime_s": 13.5,
        "restarts": 1,
        "last_exit": {"code": 3, "signal": None, "at": spawned_at + 2},
        "next_retry_at": None,
        "reason": None,
        "maintenance": False,
    }


def test_snapshot_when_in_backoff_then_no_pid_and_next_retry() -> None:
    job, clock = setup("backoff")
    snap = job.snapshot(clock.now)
    assert (snap.state, snap.pid, snap.uptime_s, snap.next_retry_at) == (
        S.BACKOFF,
        None,
        None,
        clock.now + 1.0,
    )
    assert snap.reason == "exited with code 1"


# --- random sequences -----------------------------------------------------------------------------

EVENT_STRATEGIES: dict[type[Event], st.SearchStrategy[Event]] = {
    **{kind: st.just(SAMPLES[kind]) for kind in EVENT_TYPES},
    Spawned: st.builds(Spawned, st.integers(1, 99_999)),
    SpawnFailed: st.builds(SpawnFailed, st.sampled_from(["ENOENT", "EACCES"])),
    ReadinessFailed: st.builds(ReadinessFailed, st.sampled_from(["", "no port"])),
    HealthFailed: st.builds(HealthFailed, st.sampled_from(["", "http 500"])),
    Exited: st.one_of(
        st.builds(Exited, code=st.integers(0, 255)), st.builds(Exited, signal=st.sampled_from([9, 15, 11]))
    ),
}
ANY_EVENT = st.sampled_from(EVENT_TYPES).flatmap(lambda kind: EVENT_STRATEGIES[kind])


def next_event(data: st.DataObject, state: JobState) -> Event:
    """Mostly an event the table accepts in ``state`` (guards may still refuse it), sometimes any."""
    allowed = [kind for kind in EVENT_TYPES if (state, kind) in TRANSITIONS]
    if data.draw(st.integers(0, 9), label="bias") < 8:
        kind = data.draw(st.sampled_from(allowed), label="kind")
        return data.draw(EVENT_STRATEGIES[kind], label="event")
    return data.draw(ANY_EVENT, label="event")


def check_consistent(job: Job, runner_timers: set[TimerKind]) -> None:
    running = job.state in RUNNING_STATES
    if job.pid is not None:
        assert running
        assert job.started_at is not None
    else:
        assert job.started_at is None
    if job.state in (S.READY, S.UNHEALTHY):
        assert job.pid is not None
    assert (job.next_retry_at is not None) == (job.state is S.BACKOFF)
    assert job.timers == runner_timers
    assert (TimerKind.RETRY in job.timers) == (job.state is S.BACKOFF)
    if TimerKind.STOP_TIMEOUT in job.timers:
        assert job.pid is not None and job.state in (S.STOPPING, S.UNHEALTHY)
    if TimerKind.READINESS_TIMEOUT in job.timers:
        assert job.pid is not None and job.state in (S.STARTING, S.STOPPING)
    assert (job.ready_since is not None) == (job.state is S.READY)
    policy = job.crash_loop.policy
    assert job.crash_loop.recent(job._last_now) <= policy.max_restarts


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    length=st.integers(0, 80),
    probe=st.booleans(),
    mode=st.sampled_from(list(RestartMode)),
    max_restarts=st.integers(0, 4),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_apply_when_random_event_sequence_then_job_stays_consistent(
    *,
    data: st.DataObject,
    length: int,
    probe: bool,
    mode: RestartMode,
    max_restarts: int,
    jitter: float,
    seed: int,
) -> None:
    job = Job(
        "fuzz",
        restart=RestartPolicy(mode),
        backoff=BackoffPolicy(initial_s=0.5, max_s=8.0, jitter=jitter, reset_after_s=20.0),
        crash_loop=CrashLoopPolicy(max_restarts=max_restarts, window_s=30.0),
        readiness=ReadinessPolicy(probe=probe, timeout_s=3.0 if probe else None),
        rng=random.Random(seed),
    )
    runner_timers: set[TimerKind] = set()
    now = 0.0
    for _ in range(length):
        event = next_event(data, job.state)
        now += data.draw(st.floats(0.0, 50.0), label="gap")
        before = (job.snapshot(now), set(job.timers))
        try:
            actions = job.apply(event, now)
        except InvalidTransition as error:
            assert error.job == "fuzz" and error.state is job.state
            assert (job.snapshot(now), set(job.timers)) == before
            continue
        fired = {StopTimeout: TimerKind.STOP_TIMEOUT, BackoffElapsed: TimerKind.RETRY}
        if type(event) in fired:
            runner_timers.discard(fired[type(event)])
        if isinstance(event, ReadinessTimeout):
            runner_timers.discard(TimerKind.READINESS_TIMEOUT)
        for action in actions:
            if isinstance(action, ScheduleTimer):
                assert action.at >= now
                runner_timers.add(action.kind)
            elif isinstance(action, CancelTimer):
                assert action.kind in runner_timers
                runner_timers.discard(action.kind)
            elif isinstance(action, Signal | Kill):
                assert action.pid == job.pid is not None
            elif isinstance(action, Spawn):
                assert job.state is S.STARTING and job.pid is None
        check_consistent(job, runner_timers)
