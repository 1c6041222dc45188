"""A shared limiter for IB's historical-data pacing rules (error 162), pure at its core.

TWS refuses a historical request ("Historical data request pacing violation") that makes

1. an **identical** request (same contract, exchange, tick type, end, duration, bar size, RTH ...)
   within 15 seconds of the previous one;
2. **six or more** requests for the same contract, exchange and tick type within 2 seconds;
3. **more than 60** requests within any 10 minutes.

:class:`PacingLimiter` keeps the times of the requests it let go and computes how long a new one
must wait (:meth:`PacingLimiter.wait_time`, pure: the time is passed in). :meth:`acquire` waits as
needed (clock and sleep are injected) and records the request; :meth:`cached_call` serves an
identical request made within 15 seconds from the result of the first (and joins one that is still
running) instead of asking IB again. Each window gets ``margin_s`` on top, as TWS counts arrival
times and ours are send times. One limiter is shared by every user of one IB login (all clients of
one TWS count against the same pacing)::

    limiter = PacingLimiter()
    key = PacingKey(265598, "SMART", "TRADES", ("", "1 D", "1 min", False, 1, False))
    bars = await limiter.call(key, lambda: ib.reqHistoricalDataAsync(...))
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PacingRules:
    """IB's limits (defaults) and the safety margin added to every window."""

    identical_window_s: float = 15.0
    burst_max: int = 5
    """At most this many requests per contract/exchange/tick type within ``burst_window_s``
    (IB: fewer than 6)."""
    burst_window_s: float = 2.0
    window_max: int = 60
    """At most this many requests within ``window_s`` (IB: more than 60 violate)."""
    window_s: float = 600.0
    margin_s: float = 0.2
    """Added to each window: TWS measures arrival times, we measure send times."""

    def __post_init__(self) -> None:
        if self.burst_max < 1 or self.window_max < 1:
            raise ValueError("burst_max and window_max must be >= 1")
        if min(self.identical_window_s, self.burst_window_s, self.window_s, self.margin_s) < 0:
            raise ValueError("windows and margin must be >= 0")


@dataclass(frozen=True, slots=True)
class PacingKey:
    """What the rules look at: the series (contract, exchange, tick type) and everything else that
    makes two requests identical (``params``: end, duration, bar size, RTH flag, date format ...)."""

    con_id: int
    exchange: str
    what_to_show: str
    params: tuple[Hashable, ...] = ()
    series: tuple[int, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", (self.con_id, self.exchange.upper(), self.what_to_show.upper()))

    @property
    def identity(self) -> tuple[Hashable, ...]:
        return (*self.series, self.params)


@dataclass(slots=True)
class PacingStats:
    sent: int = 0
    """Requests let through (recorded)."""
    cache_hits: int = 0
    """Identical requests served from the cache or joined to one in flight."""
    waits: int = 0
    """Acquires that had to wait."""
    waited_s: float = 0.0
    refused: int = 0
    """Requests IB refused anyway (reported with :meth:`PacingLimiter.refused`)."""


class PacingLimiter:
    """IB historical-data pacing for every request of one IB login (see the module docstring)."""

    def __init__(
        self,
        rules: PacingRules | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        cache_ttl_s: float | None = None,
        cache_size: int = 512,
    ) -> None:
        self.rules = rules or PacingRules()
        self.clock = clock
        self.sleep = sleep
        self.cache_ttl_s = self.rules.identical_window_s if cache_ttl_s is None else cache_ttl_s
        self.cache_size = cache_size
        self.stats = PacingStats()
        self._all: list[float] = []
        self._series: dict[tuple[int, str, str], list[float]] = {}
        self._identical: dict[tuple[Hashable, ...], float] = {}
        self._cache: OrderedDict[tuple[Hashable, ...], tuple[float, object]] = OrderedDict()
        self._inflight: dict[tuple[Hashable, ...], asyncio.Future[object]] = {}
        self._last_prune = float("-inf")

    # -- the pure core ------------------------------------------------------------------------------

    def ready_at(self, key: PacingKey, now: float) -> float:
        """The earliest time (>= ``now``) at which ``key`` may be sent without breaking a rule."""
        r = self.rules
        at = now
        last = self._identical.get(key.identity)
        if last is not None:
            at = max(at, last + r.identical_window_s + r.margin_s)
        times = self._series.get(key.series)
        if times is not None and len(times) >= r.burst_max:
            at = max(at, times[-r.burst_max] + r.burst_window_s + r.margin_s)
        if len(self._all) >= r.window_max:
            at = max(at, self._all[-r.window_max] + r.window_s + r.margin_s)
        return at

    def wait_time(self, key: PacingKey, now: float) -> float:
        """How long ``key`` must wait at ``now`` (0: it may go now)."""
        return self.ready_at(key, now) - now

    def record(self, key: PacingKey, now: float) -> None:
        """Count a request sent at ``now``."""
        bisect.insort(self._all, now)
        bisect.insort(self._series.setdefault(key.series, []), now)
        self._identical[key.identity] = max(now, self._identical.get(key.identity, now))
        self.stats.sent += 1
        if now - self._last_prune > self.rules.burst_window_s:
            self._prune(now)

    def refused(self, key: PacingKey) -> None:
        """IB refused ``key`` (162) after all, e.g. because another client used the pacing budget.
        TWS does not count a refused request as made, so an identical retry need not wait 15 s;
        the burst and 10-minute counts keep it (conservative)."""
        self._identical.pop(key.identity, None)
        self.stats.refused += 1

    def _prune(self, now: float) -> None:
        """Forget what no rule looks at any more (bounded memory)."""
        self._last_prune = now
        r = self.rules
        # ready_at looks at the last window_max / burst_max times only, and only at those inside
        # their window
        start = bisect.bisect_right(self._all, now - r.window_s - r.margin_s)
        del self._all[: max(start, len(self._all) - r.window_max)]
        burst_cutoff = now - r.burst_window_s - r.margin_s
        for series in [s for s, t in self._series.items() if t[-1] <= burst_cutoff]:
            del self._series[series]
        for times in self._series.values():
            if len(times) > r.burst_max:
                del times[: len(times) - r.burst_max]
        identical_cutoff = now - r.identical_window_s - r.margin_s
        self._identical = {k: t for k, t in self._identical.items() if t > identical_cutoff}

    # -- waiting ------------------------------------------------------------------------------------

    async def acquire(self, key: PacingKey) -> float:
        """Wait until ``key`` may be sent, then count it as sent; returns the seconds waited."""
        waited = 0.0
        while True:
            now = self.clock()
            delay = self.wait_time(key, now)
            if delay <= 0:
                self.record(key, now)
                if waited:
                    self.stats.waits += 1
                    self.stats.waited_s += waited
                return waited
            await self.sleep(delay)
            waited += delay

    # -- identical requests: the cache ----------------------------------------------------------------

    def cached(self, key: PacingKey) -> object:
        """The cached result of an identical request younger than ``cache_ttl_s``, else :data:`MISSING`."""
        entry = self._cache.get(key.identity)
        if entry is None:
            return MISSING
        at, value = entry
        if self.clock() - at > self.cache_ttl_s:
            del self._cache[key.identity]
            return MISSING
        return value

    def remember(self, key: PacingKey, value: object) -> None:
        self._cache[key.identity] = (self.clock(), value)
        self._cache.move_to_end(key.identity)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def cached_call(self, key: PacingKey, fetch: Callable[[], Awaitable[T]]) -> T:
        """``fetch()`` unless an identical request was answered within ``cache_ttl_s`` (its result is
        returned) or is running (its result is awaited). ``fetch`` itself must :meth:`acquire`."""
        while True:
            value = self.cached(key)
            if value is not MISSING:
                self.stats.cache_hits += 1
                return cast(T, value)
            running = self._inflight.get(key.identity)
            if running is None:
                break
            try:
                value = await asyncio.shield(running)
            except asyncio.CancelledError:
                if running.cancelled() and not _current_task_cancelling():
                    continue  # the first caller was cancelled, not us: fetch it ourselves
                raise
            self.stats.cache_hits += 1
            return cast(T, value)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._inflight[key.identity] = future
        try:
            result = await fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody joined
            raise
        else:
            self.remember(key, result)
            future.set_result(result)
            return result
        finally:
            self._inflight.pop(key.identity, None)

    async def call(self, key: PacingKey, fetch: Callable[[], Awaitable[T]]) -> T:
        """:meth:`cached_call` with :meth:`acquire` before ``fetch``."""

        async def paced() -> T:
            await self.acquire(key)
            return await fetch()

        return await self.cached_call(key, paced)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: object = _Missing()
""":meth:`PacingLimiter.cached` found nothing."""
