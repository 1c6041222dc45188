"""What happens to a pycron job (events the runner feeds in) and what the state machine asks the
runner to do (actions); see :mod:`pycron.state`."""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from enum import StrEnum

# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a job (base class)."""


@dataclass(frozen=True, slots=True)
class StartRequested(Event):
    """Operator (or the runner at boot, or a schedule) wants the job running."""


@dataclass(frozen=True, slots=True)
class Spawned(Event):
    pid: int


@dataclass(frozen=True, slots=True)
class SpawnFailed(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class ReadinessPassed(Event):
    pass


@dataclass(frozen=True, slots=True)
class ReadinessFailed(Event):
    """The readiness probe failed past its threshold."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReadinessTimeout(Event):
    """The ``READINESS_TIMEOUT`` timer fired."""


@dataclass(frozen=True, slots=True)
class HealthFailed(Event):
    """The health probe failed ``threshold`` times in a row."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class HealthRecovered(Event):
    pass


@dataclass(frozen=True, slots=True)
class Exited(Event):
    """The process ended: with an exit ``code`` or killed by ``signal`` (exactly one is set)."""

    code: int | None = None
    signal: int | None = None

    def __post_init__(self) -> None:
        if (self.code is None) == (self.signal is None):
            raise ValueError(f"Exited needs exactly one of code and signal, got {self.code}, {self.signal}")

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by signal {self.signal} ({_signal_name(self.signal)})"
        return f"exited with code {self.code}"


@dataclass(frozen=True, slots=True)
class StopRequested(Event):
    pass


@dataclass(frozen=True, slots=True)
class StopTimeout(Event):
    """The ``STOP_TIMEOUT`` timer fired: the process ignored the stop signal."""


@dataclass(frozen=True, slots=True)
class BackoffElapsed(Event):
    """The ``RETRY`` timer fired."""


@dataclass(frozen=True, slots=True)
class MaintenanceStarted(Event):
    pass


@dataclass(frozen=True, slots=True)
class MaintenanceEnded(Event):
    pass


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """Operator acknowledges a FATAL (or EXITED) job: back to STOPPED, history forgotten."""


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return "unknown"


# --- actions --------------------------------------------------------------------------------------


class TimerKind(StrEnum):
    RETRY = "retry"
    STOP_TIMEOUT = "stop_timeout"
    READINESS_TIMEOUT = "readiness_timeout"


class EventKind(StrEnum):
    """Kinds of :class:`EmitEvent` (the runner logs them, publishes them, alerts on some)."""

    READY = "ready"
    UNHEALTHY = "unhealthy"
    READINESS_FAILED = "readiness_failed"
    EXITED = "exited"
    BACKOFF = "backoff"
    FATAL = "fatal"
    STOPPED = "stopped"
    STOP_TIMEOUT = "stop_timeout"


@dataclass(frozen=True, slots=True)
class Action:
    """Something the runner must do for a job (base class)."""


@dataclass(frozen=True, slots=True)
class Spawn(Action):
    """Start the job's process; report ``Spawned(pid)`` or ``SpawnFailed(reason)``."""


@dataclass(frozen=True, slots=True)
class Signal(Action):
    pid: int
    signal: int


@dataclass(frozen=True, slots=True)
class Kill(Action):
    """SIGKILL the process (its whole process group when ``group``)."""

    pid: int
    group: bool = True


@dataclass(frozen=True, slots=True)
class ScheduleTimer(Action):
    """Report the timer's event at monotonic time ``at`` (replaces a pending timer of that kind)."""

    kind: TimerKind
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer(Action):
    kind: TimerKind


@dataclass(frozen=True, slots=True)
class EmitEvent(Action):
    kind: EventKind
    message: str


# --- the table ------------------------------------------------------------------------------------
