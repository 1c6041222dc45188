"""The policy inputs of a job's state machine: restart, backoff, crash loop, stop and readiness.

Small frozen dataclasses the config layer (``pycron.config``) builds from a job's YAML; the state
machine (:mod:`pycron.state`) only reads them. Each validates itself on construction (``ValueError``).

* :class:`RestartPolicy` - ``never`` / ``on-failure`` / ``always``; an exit is a *success* when it
  has an exit code listed in ``success_codes`` (a death by signal is always a failure, and so is a
  failed spawn).
* :class:`BackoffPolicy` - the delay before automatic restart ``n`` (0-based) is
  ``min(max_s, initial_s * factor**n)`` shortened by up to ``jitter`` of itself:
  uniform in ``[c * (1 - jitter), c]``, so it never exceeds ``max_s`` and ``jitter=0`` gives the
  plain sequence 1, 2, 4, 8, ... capped at ``max_s``. The attempt count starts over once the job
  stayed READY for ``reset_after_s`` without interruption.
* :class:`CrashLoopPolicy` - more than ``max_restarts`` automatic restarts within ``window_s``
  seconds make the job FATAL (no more restarts until an operator Reset or Start).
* :class:`StopPolicy` - the stop signal, and how long to wait before killing the process group.
* :class:`ReadinessPolicy` - whether the job has a readiness probe (without one it is READY as
  soon as it is spawned) and the optional deadline for it to pass.
"""

from __future__ import annotations

import math
import signal
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class RandomSource(Protocol):
    """What the backoff needs of a RNG (``random.Random`` fits): a float in [0, 1)."""

    def random(self) -> float: ...


class RestartMode(StrEnum):
    """When an exited job is started again (values as spelled in the YAML)."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Whether an exit (or a failed spawn) is followed by an automatic restart."""

    mode: RestartMode = RestartMode.ON_FAILURE
    success_codes: frozenset[int] = frozenset({0})

    def is_success(self, code: int | None) -> bool:
        """An exit with ``code`` (``None``: killed by a signal, or never spawned) is a success."""
        return code is not None and code in self.success_codes

    def should_restart(self, code: int | None) -> bool:
        """Restart after an exit with ``code`` (``None`` for a signal or a failed spawn)?"""
        if self.mode is RestartMode.ALWAYS:
            return True
        if self.mode is RestartMode.ON_FAILURE:
            return not self.is_success(code)
        return False


def _finite(value: float, name: str, *, minimum: float = 0.0, strict: bool = False) -> None:
    ok = math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {bound} {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Capped exponential backoff with downward jitter and a reset after stable uptime."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.0
    """Fraction in [0, 1]: the delay is uniform in ``[c * (1 - jitter), c]``."""
    reset_after_s: float = 60.0
    """Uninterrupted READY time after which the next restart starts over from ``initial_s``."""

    def __post_init__(self) -> None:
        _finite(self.initial_s, "initial_s", strict=True)
        _finite(self.max_s, "max_s", minimum=self.initial_s)
        _finite(self.factor, "factor", minimum=1.0)
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        _finite(self.reset_after_s, "reset_after_s")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay of restart ``attempt`` (0-based): ``min(max_s, initial_s * factor**n)``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # factor**attempt overflows for huge attempts; past the cap it no longer matters.
        if self.factor > 1 and attempt > math.log(self.max_s / self.initial_s, self.factor) + 1:
            return self.max_s
        return min(self.max_s, self.initial_s * self.factor**attempt)

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """The jittered delay of restart ``attempt``: uniform in ``[c * (1 - jitter), c]``."""
        high = self.ceiling(attempt)
        if self.jitter == 0.0:
            return high
        return high * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class CrashLoopPolicy:
    """More than ``max_restarts`` automatic restarts within ``window_s`` seconds is a crash loop."""

    max_restarts: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts!r}")
        _finite(self.window_s, "window_s", strict=True)


@dataclass(frozen=True, slots=True)
class StopPolicy:
    """How a job is stopped: ``signal`` to its process, then after ``timeout_s`` a kill."""

    signal: int = signal.SIGTERM
    timeout_s: float = 10.0
    kill_group: bool = True
    """Kill the whole process group (children included), not only the process."""

    def __post_init__(self) -> None:
        _finite(self.timeout_s, "timeout_s", strict=True)


@dataclass(frozen=True, slots=True)
class ReadinessPolicy:
    """Whether a readiness probe gates READY, and how long it may take (``None``: no deadline)."""

    probe: bool = False
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            _finite(self.timeout_s, "timeout_s", strict=True)


class CrashLoopCounter:
    """The times of a job's recent automatic restarts, judged against a :class:`CrashLoopPolicy`."""

    def __init__(self, policy: CrashLoopPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.policy.window_s:
            self._times.popleft()

    def recent(self, now: float) -> int:
        """How many restarts happened within the window ending at ``now``."""
        self._prune(now)
        return len(self._times)

    def would_loop(self, now: float) -> bool:
        """Would one more restart at ``now`` exceed ``max_restarts`` within the window?"""
        return self.recent(now) + 1 > self.policy.max_restarts

    def record(self, now: float) -> None:
        """Count a restart at ``now``."""
        self._prune(now)
        self._times.append(now)

    def clear(self) -> None:
        """Forget every restart (operator Reset or Start)."""
        self._times.clear()
