"""Sliding windows of admitted orders per scope; time is passed in (nanoseconds), never read."""

from __future__ import annotations

import bisect
from collections import deque
from typing import Final

SECOND_NS: Final = 1_000_000_000
MINUTE_NS: Final = 60 * SECOND_NS


class SlidingWindow:
    """Timestamps of events within the last ``span_ns`` (older ones are dropped as time moves)."""

    def __init__(self, span_ns: int = MINUTE_NS) -> None:
        self.span_ns = span_ns
        self._times: deque[int] = deque()

    def record(self, now_ns: int) -> None:
        self._prune(now_ns)
        if self._times and now_ns < self._times[-1]:  # a clock step back: keep the deque sorted
            bisect.insort(self._times, now_ns)
        else:
            self._times.append(now_ns)

    def count(self, now_ns: int, within_ns: int | None = None) -> int:
        """Events in ``(now - within, now]`` (``within`` at most the span; the span by default)."""
        self._prune(now_ns)
        within = self.span_ns if within_ns is None else min(within_ns, self.span_ns)
        return len(self._times) - bisect.bisect_right(self._times, now_ns - within)

    def _prune(self, now_ns: int) -> None:
        while self._times and self._times[0] <= now_ns - self.span_ns:
            self._times.popleft()

    def __len__(self) -> int:
        return len(self._times)


class RateWindows:
    """One :class:`SlidingWindow` (a minute long) per scope."""

    def __init__(self) -> None:
        self._windows: dict[str, SlidingWindow] = {}

    def record(self, scopes: tuple[str, ...], now_ns: int) -> None:
        for scope in scopes:
            self._windows.setdefault(scope, SlidingWindow()).record(now_ns)

    def counts(self, scope: str, now_ns: int) -> tuple[int, int]:
        """(orders in the last second, orders in the last minute) of ``scope``."""
        window = self._windows.get(scope)
        if window is None:
            return 0, 0
        return window.count(now_ns, SECOND_NS), window.count(now_ns, MINUTE_NS)
