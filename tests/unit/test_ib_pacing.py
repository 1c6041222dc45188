"""The historical-data pacing limiter (trader.ib.pacing) with an injected clock.

Schedules the limiter produces are checked twice: by an independent brute-force checker of IB's
three rules, and by the paper exchange's own pacing (trader.exchange.pacing), which answers 162
exactly when TWS would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.exchange.pacing import HistoricalPacing, HistoricalRequest
from trader.ib.pacing import MISSING, PacingKey, PacingLimiter, PacingRules

NS = 1_000_000_000
RULES = PacingRules()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def key(con_id: int = 265598, param: int = 0, what: str = "TRADES") -> PacingKey:
    return PacingKey(con_id, "SMART", what, (f"end-{param}", "1 D", "1 min", False, 2, False))


def schedule(
    limiter: PacingLimiter, arrivals: Sequence[tuple[float, PacingKey]]
) -> list[tuple[float, PacingKey]]:
    """Send each request (in arrival order, one after the other) as soon as the limiter allows."""
    sent: list[tuple[float, PacingKey]] = []
    t = 0.0
    for arrival, k in arrivals:
        t = max(t, arrival)
        t = limiter.ready_at(k, t)
        limiter.record(k, t)
        sent.append((t, k))
    return sent


def violations(sent: Sequence[tuple[float, PacingKey]], rules: PacingRules = RULES) -> list[str]:
    """IB's rules, checked by brute force over a schedule."""
    problems: list[str] = []
    ordered = sorted(sent, key=lambda s: s[0])
    times = [t for t, _ in ordered]
    for i in range(rules.window_max, len(times)):
        if times[i] - times[i - rules.window_max] < rules.window_s:
            problems.append(f"{rules.window_max + 1} requests within {rules.window_s} s at {times[i]}")
    by_series: dict[tuple[int, str, str], list[float]] = {}
    last_identical: dict[object, float] = {}
    for t, k in ordered:
        series = by_series.setdefault(k.series, [])
        series.append(t)
        if len(series) > rules.burst_max and t - series[-rules.burst_max - 1] < rules.burst_window_s:
            problems.append(f"{rules.burst_max + 1} requests for {k.series} within 2 s at {t}")
        previous = last_identical.get(k.identity)
        if previous is not None and t - previous < rules.identical_window_s:
            problems.append(f"identical {k.identity} after {t - previous:.3f} s")
        last_identical[k.identity] = t
    return problems


def exchange_refusals(sent: Sequence[tuple[float, PacingKey]]) -> list[str]:
    """What the paper exchange (TWS's rules) would refuse of the schedule."""
    pacing = HistoricalPacing()
    refused = []
    for t, k in sorted(sent, key=lambda s: s[0]):
        request = HistoricalRequest(k.con_id, k.exchange, k.what_to_show, k.params, 60)
        reason = pacing.check(request, round(t * NS))
        if reason is not None:
            refused.append(f"{t:.3f}: {reason}")
    return refused


# -- the rules one by one ---------------------------------------------------------------------------


def test_ready_at_when_first_request_then_now() -> None:
    assert PacingLimiter().ready_at(key(), 5.0) == 5.0


def test_ready_at_when_identical_within_15_s_then_waits_15_s_plus_margin() -> None:
    limiter = PacingLimiter()
    limiter.record(key(), 100.0)
    assert limiter.ready_at(key(), 101.0) == pytest.approx(115.0 + RULES.margin_s)
    assert limiter.ready_at(key(param=1), 101.0) == 101.0


def test_ready_at_when_five_for_one_series_within_2_s_then_sixth_waits() -> None:
    limiter = PacingLimiter()
    for i in range(5):
        limiter.record(key(param=i), 10.0 + i * 0.1)
    assert limiter.ready_at(key(param=9), 10.5) == pytest.approx(12.0 + RULES.margin_s)
    assert limiter.ready_at(key(con_id=1, param=9), 10.5) == 10.5
    assert limiter.ready_at(key(param=9, what="MIDPOINT"), 10.5) == 10.5


def test_ready_at_when_sixty_within_10_minutes_then_sixty_first_waits_for_the_oldest() -> None:
    limiter = PacingLimiter()
    for i in range(60):
        limiter.record(key(con_id=i + 1), 1000.0 + i)
    assert limiter.ready_at(key(con_id=999), 1060.0) == pytest.approx(1600.0 + RULES.margin_s)


def test_refused_when_ib_refuses_then_identical_retry_need_not_wait_15_s() -> None:
    limiter = PacingLimiter()
    limiter.record(key(), 50.0)
    limiter.refused(key())
    assert limiter.ready_at(key(), 50.5) == 50.5
    assert limiter.stats.refused == 1


def test_record_when_many_old_requests_then_memory_is_bounded() -> None:
    limiter = PacingLimiter()
    t = 0.0
    for i in range(5000):
        t = limiter.ready_at(key(con_id=i % 50 + 1, param=i), t)
        limiter.record(key(con_id=i % 50 + 1, param=i), t)
    assert len(limiter._all) <= RULES.window_max
    assert len(limiter._identical) <= RULES.window_max + 1
    assert all(len(times) <= RULES.burst_max for times in limiter._series.values())


# -- schedules ----------------------------------------------------------------------------------------


def test_schedule_when_100_requests_at_once_then_no_rule_broken_and_the_exchange_accepts_all() -> None:
    limiter = PacingLimiter()
    arrivals = [(0.0, key(con_id=i % 7 + 1, param=i // 7)) for i in range(100)]
    sent = schedule(limiter, arrivals)
    assert violations(sent) == []
    assert exchange_refusals(sent) == []
    times = sorted(t for t, _ in sent)
    assert times[59] < 20.0  # the first 60 go out quickly (7 series, 5 per 2 s each)
    assert times[60] >= 600.0  # the 61st waits for the 10-minute window


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 30.0),  # gap since the previous arrival
            st.integers(1, 4),  # contract
            st.integers(0, 6),  # parameters (same value: identical request)
            st.sampled_from(["TRADES", "MIDPOINT"]),
        ),
        min_size=1,
        max_size=150,
    )
)
def test_schedule_when_any_arrivals_then_never_violates_and_never_waits_needlessly(
    requests: list[tuple[float, int, int, str]],
) -> None:
    limiter = PacingLimiter()
    arrivals: list[tuple[float, PacingKey]] = []
    now = 0.0
    for gap, con_id, param, what in requests:
        now += gap
        arrivals.append((now, key(con_id, param, what)))
    sent = schedule(limiter, arrivals)
    assert violations(sent) == []
    assert exchange_refusals(sent) == []
    # a request is never held longer than the earliest moment all three rules (with margin) allow
    replay = PacingLimiter()
    previous = 0.0
    for (arrival, k), (t, _) in zip(arrivals, sent, strict=True):
        start = max(previous, arrival)
        assert t == pytest.approx(replay.ready_at(k, start))
        replay.record(k, t)
        previous = t


# -- acquire (async, injected clock and sleep) --------------------------------------------------------


def test_acquire_when_100_requests_with_fake_clock_then_schedule_is_legal() -> None:
    clock = FakeClock()
    limiter = PacingLimiter(clock=clock, sleep=clock.sleep)
    keys = [key(con_id=i % 3 + 1, param=i // 3) for i in range(100)] + [key(1, 0)]

    async def body() -> list[tuple[float, PacingKey]]:
        sent = []
        for k in keys:
            await limiter.acquire(k)
            sent.append((clock.now, k))
        return sent

    sent = asyncio.run(body())
    assert violations(sent) == []
    assert exchange_refusals(sent) == []
    assert limiter.stats.sent == 101
    assert limiter.stats.waits == len(clock.sleeps)
    assert clock.now - 1000.0 >= 600.0  # 101 requests cannot fit in one 10-minute window


def test_acquire_when_concurrent_tasks_then_real_time_schedule_is_legal() -> None:
    """Many tasks at once on the real clock, with the windows scaled down 1000x."""
    rules = PacingRules(
        identical_window_s=0.015, burst_window_s=0.02, window_s=0.3, window_max=20, margin_s=0.002
    )
    limiter = PacingLimiter(rules)
    keys = [key(con_id=i % 4 + 1, param=i % 9) for i in range(60)]

    async def body() -> list[tuple[float, PacingKey]]:
        sent: list[tuple[float, PacingKey]] = []

        async def one(k: PacingKey) -> None:
            await limiter.acquire(k)
            sent.append((limiter.clock(), k))

        await asyncio.gather(*(one(k) for k in keys))
        return sent

    sent = asyncio.run(body())
    assert len(sent) == 60
    assert violations(sent, rules) == []


# -- the cache of identical requests ----------------------------------------------------------------


def test_call_when_identical_within_ttl_then_served_from_cache() -> None:
    clock = FakeClock()
    limiter = PacingLimiter(clock=clock, sleep=clock.sleep)
    calls = itertools.count()

    async def fetch() -> int:
        return next(calls)

    async def body() -> list[int]:
        first = await limiter.call(key(), fetch)
        clock.now += 10.0
        second = await limiter.call(key(), fetch)
        clock.now += 6.0
        third = await limiter.call(key(), fetch)  # older than 15 s: asked again
        return [first, second, third]

    assert asyncio.run(body()) == [0, 0, 1]
    assert limiter.stats.cache_hits == 1
    assert limiter.stats.sent == 2
    assert clock.sleeps == []  # the third came 16 s later: no wait


def test_call_when_identical_request_in_flight_then_joined_not_repeated() -> None:
    limiter = PacingLimiter()
    started = 0

    async def body() -> list[str]:
        gate = asyncio.Event()

        async def fetch() -> str:
            nonlocal started
            started += 1
            await gate.wait()
            return "bars"

        tasks = [asyncio.ensure_future(limiter.call(key(), fetch)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(body()) == ["bars"] * 3
    assert started == 1
    assert limiter.stats.cache_hits == 2


def test_call_when_fetch_fails_then_nothing_is_cached() -> None:
    limiter = PacingLimiter()

    async def fail() -> int:
        raise RuntimeError("162")

    async def ok() -> int:
        return 5

    async def body() -> int:
        with pytest.raises(RuntimeError):
            await limiter.cached_call(key(), fail)
        assert limiter.cached(key()) is MISSING
        return await limiter.cached_call(key(), ok)

    assert asyncio.run(body()) == 5


def test_call_when_first_caller_is_cancelled_then_joiner_fetches_itself() -> None:
    limiter = PacingLimiter()

    async def body() -> int:
        gate = asyncio.Event()

        async def slow() -> int:
            await gate.wait()
            return 1

        async def fast() -> int:
            return 2

        first = asyncio.ensure_future(limiter.cached_call(key(), slow))
        await asyncio.sleep(0)
        joiner = asyncio.ensure_future(limiter.cached_call(key(), fast))
        await asyncio.sleep(0)
        first.cancel()
        return await joiner

    assert asyncio.run(body()) == 2


def test_rules_when_invalid_then_value_error() -> None:
    with pytest.raises(ValueError):
        PacingRules(burst_max=0)
    with pytest.raises(ValueError):
        PacingRules(margin_s=-1)
