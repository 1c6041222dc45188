"""Exponential backoff with full jitter and a cap, pure (randomness and time are injected).

The delay before retry ``n`` (0-based) is drawn uniformly from ``[floor, ceiling(n)]`` where
``ceiling(n) = min(cap, base * factor**n)`` ("full jitter", AWS architecture blog): many clients
retrying at once spread out instead of hammering TWS together after a restart. ``floor`` keeps a
retry from firing immediately (0 gives the classic full jitter).

:class:`Backoff` is the policy (immutable, shareable); :class:`BackoffState` counts the attempts of
one retry loop and says when to give up (``max_attempts`` / ``max_elapsed_s``), resetting on
success::

    state = BackoffState(Backoff(base_s=0.5, cap_s=30), rng=random.Random(7))
    while (delay := state.next_delay()) is not None:
        await asyncio.sleep(delay)
        if try_once():
            state.reset()
            break
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class RandomSource(Protocol):
    """What the backoff needs of a RNG (``random.Random`` fits): a float in [0, 1)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``delay(n)`` is uniform in ``[floor_s, min(cap_s, base_s * factor**n)]``."""

    base_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    floor_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and math.isfinite(self.base_s)):
            raise ValueError(f"base_s must be a positive finite number, got {self.base_s!r}")
        if not (self.cap_s >= self.base_s and math.isfinite(self.cap_s)):
            raise ValueError(f"cap_s must be finite and >= base_s ({self.base_s}), got {self.cap_s!r}")
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise ValueError(f"factor must be a finite number >= 1, got {self.factor!r}")
        if not 0 <= self.floor_s <= self.base_s:
            raise ValueError(f"floor_s must be between 0 and base_s ({self.base_s}), got {self.floor_s!r}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay of retry ``attempt`` (0-based): ``min(cap, base * factor**attempt)``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # factor**attempt overflows for large attempts: past the cap it no longer matters.
        if self.factor > 1 and attempt > math.log(self.cap_s / self.base_s, self.factor) + 1:
            return self.cap_s
        return min(self.cap_s, self.base_s * self.factor**attempt)

    def delay(self, attempt: int, rng: RandomSource) -> float:
        """A jittered delay for retry ``attempt``: uniform in ``[floor_s, ceiling(attempt)]``."""
        high = self.ceiling(attempt)
        return self.floor_s + (high - self.floor_s) * rng.random()


class BackoffState:
    """The attempts of one retry loop under a :class:`Backoff` policy.

    ``next_delay()`` returns the delay before the next attempt, or ``None`` once ``max_attempts``
    delays were handed out or ``max_elapsed_s`` passed since the first failure (by ``clock``).
    ``reset()`` after a success starts over from the base delay.
    """

    def __init__(
        self,
        policy: Backoff | None = None,
        *,
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int | None = None,
        max_elapsed_s: float | None = None,
    ) -> None:
        if max_attempts is not None and max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
        if max_elapsed_s is not None and max_elapsed_s < 0:
            raise ValueError(f"max_elapsed_s must be >= 0, got {max_elapsed_s}")
        self.policy = policy or Backoff()
        self.rng: RandomSource = rng if rng is not None else random.Random()
        self.clock = clock
        self.max_attempts = max_attempts
        self.max_elapsed_s = max_elapsed_s
        self.attempt = 0
        """How many delays were handed out since the last reset."""
        self.started_at: float | None = None
        """Clock reading at the first ``next_delay()`` since the last reset."""

    @property
    def exhausted(self) -> bool:
        """True when the next ``next_delay()`` would give up."""
        if self.max_attempts is not None and self.attempt >= self.max_attempts:
            return True
        return (
            self.max_elapsed_s is not None
            and self.started_at is not None
            and self.clock() - self.started_at >= self.max_elapsed_s
        )

    def next_delay(self) -> float | None:
        """The delay before the next attempt; ``None``: give up."""
        if self.started_at is None:
            self.started_at = self.clock()
        if self.exhausted:
            return None
        delay = self.policy.delay(self.attempt, self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Success: the next failure starts again from the base delay."""
        self.attempt = 0
        self.started_at = None
