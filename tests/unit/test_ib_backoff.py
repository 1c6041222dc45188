"""Exponential backoff with full jitter: bounds, cap, distribution, give-up rules (seeded RNG, fake clock)."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader.ib.backoff import Backoff, BackoffState


class FixedRandom:
    """A RandomSource that returns the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_ceiling_when_attempts_grow_then_doubles_until_the_cap() -> None:
    policy = Backoff(base_s=0.5, cap_s=10.0)
    assert [policy.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_ceiling_when_attempt_is_huge_then_cap_without_overflow() -> None:
    policy = Backoff(base_s=0.001, cap_s=60.0, factor=3.0)
    assert policy.ceiling(10_000) == 60.0
    assert policy.delay(10**9, FixedRandom(0.999999)) <= 60.0


def test_delay_when_rng_at_extremes_then_floor_and_ceiling() -> None:
    policy = Backoff(base_s=1.0, cap_s=8.0, floor_s=0.25)
    assert policy.delay(2, FixedRandom(0.0)) == 0.25
    assert policy.delay(2, FixedRandom(1.0)) == pytest.approx(4.0)
    assert policy.delay(20, FixedRandom(1.0)) == pytest.approx(8.0)


@given(
    base=st.floats(0.001, 10.0),
    ratio=st.floats(1.0, 1000.0),
    factor=st.floats(1.0, 4.0),
    attempt=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_when_any_policy_then_within_floor_and_capped_ceiling(
    base: float, ratio: float, factor: float, attempt: int, seed: int
) -> None:
    policy = Backoff(base_s=base, cap_s=base * ratio, factor=factor)
    rng = random.Random(seed)
    for _ in range(20):
        delay = policy.delay(attempt, rng)
        assert 0.0 <= delay <= policy.ceiling(attempt) <= policy.cap_s * (1 + 1e-12)


def test_delay_when_seeded_then_full_jitter_is_uniform_over_the_ceiling() -> None:
    policy = Backoff(base_s=0.5, cap_s=30.0)
    rng = random.Random(1234)
    samples = [policy.delay(3, rng) for _ in range(20_000)]  # ceiling 4.0
    assert min(samples) >= 0.0
    assert max(samples) <= 4.0
    assert statistics.fmean(samples) == pytest.approx(2.0, abs=0.05)
    assert statistics.pstdev(samples) == pytest.approx(4.0 / 12**0.5, abs=0.05)
    deciles = [0] * 10
    for s in samples:
        deciles[min(9, int(s / 0.4))] += 1
    assert all(abs(count - 2000) < 200 for count in deciles), deciles


def test_delay_when_same_seed_then_same_schedule() -> None:
    policy = Backoff()
    first = [policy.delay(n, random.Random(7)) for n in range(10)]
    again = [policy.delay(n, random.Random(7)) for n in range(10)]
    assert first == again


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0.0},
        {"base_s": -1.0},
        {"base_s": 2.0, "cap_s": 1.0},
        {"factor": 0.5},
        {"floor_s": 1.0, "base_s": 0.5},
        {"cap_s": float("inf")},
    ],
)
def test_backoff_when_invalid_parameters_then_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_state_when_max_attempts_reached_then_gives_up_and_reset_starts_over() -> None:
    state = BackoffState(Backoff(base_s=1.0, cap_s=100.0), rng=FixedRandom(*[1.0] * 10), max_attempts=3)
    assert [state.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, None]
    assert state.exhausted
    state.reset()
    assert state.next_delay() == 1.0
    assert state.attempt == 1


def test_state_when_max_elapsed_passes_on_the_injected_clock_then_gives_up() -> None:
    now = [100.0]
    state = BackoffState(Backoff(), rng=random.Random(3), clock=lambda: now[0], max_elapsed_s=10.0)
    assert state.next_delay() is not None
    now[0] += 9.9
    assert state.next_delay() is not None
    now[0] += 0.1
    assert state.next_delay() is None


def test_state_when_unbounded_then_delays_stay_under_the_cap_forever() -> None:
    state = BackoffState(Backoff(base_s=0.1, cap_s=2.0), rng=random.Random(5))
    delays = [state.next_delay() for _ in range(500)]
    assert all(d is not None and 0 <= d <= 2.0 for d in delays)
    assert max(d for d in delays if d is not None) > 1.5  # the cap is reached, not just approached


def test_state_when_negative_limits_then_value_error() -> None:
    with pytest.raises(ValueError):
        BackoffState(max_attempts=-1)
    with pytest.raises(ValueError):
        BackoffState(max_elapsed_s=-1.0)
