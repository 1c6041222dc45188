"""IB's historical-data pacing rules, pure (time is passed in).

TWS refuses a historical data request with error 162 "Historical data request pacing violation"
when it would make

1. an **identical** request (same contract, end, duration, bar size, what to show, RTH flag ...)
   within 15 seconds of the previous one;
2. **six or more** requests for the same contract, exchange and tick type (whatToShow) within
   2 seconds;
3. **more than 60** requests within any 10-minute window.

IB states the rules for bars of 30 seconds or less (the pacing of larger bars is "soft"); this
module applies them to every request unless ``small_bars_only`` is set. Only accepted requests are
counted: a refused request does not extend the window it violated. One :class:`HistoricalPacing`
is shared by the whole exchange (every client counts against the same account), kept in
``ExchangeCore.extensions["pacing"]`` (see :func:`pacing_of`); ``enabled = False`` turns the
check off (a fault switch for tests and demos).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

NS: Final = 1_000_000_000
PACING_CODE: Final = 162
PACING_TEXT: Final = "Historical Market Data Service error message:Historical data request pacing violation"
EXTENSION_KEY: Final = "pacing"
SMALL_BAR_SECONDS: Final = 30


@dataclass(frozen=True, slots=True)
class PacingRules:
    """The limits (IB's defaults)."""

    identical_window_ns: int = 15 * NS
    burst_limit: int = 6
    """This many requests for one contract/exchange/tick type within ``burst_window_ns`` violate."""
    burst_window_ns: int = 2 * NS
    window_limit: int = 60
    """More than this many requests within ``window_ns`` violate."""
    window_ns: int = 600 * NS


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """What the rules look at. ``params`` holds everything else that makes two requests identical
    (end, duration, bar size, RTH flag, date format, keepUpToDate ...)."""

    conId: int
    exchange: str
    whatToShow: str
    params: tuple[Hashable, ...] = ()
    bar_seconds: int = 0
    """Bar length in seconds (0 = unknown or a day or more); see ``small_bars_only``."""

    @property
    def identity(self) -> tuple[Hashable, ...]:
        return (self.conId, self.exchange.upper(), self.whatToShow.upper(), self.params)

    @property
    def series(self) -> tuple[int, str, str]:
        return (self.conId, self.exchange.upper(), self.whatToShow.upper())


class HistoricalPacing:
    """Counts historical data requests and says when one violates the pacing rules."""

    def __init__(
        self, rules: PacingRules | None = None, *, enabled: bool = True, small_bars_only: bool = False
    ) -> None:
        self.rules = rules or PacingRules()
        self.enabled = enabled
        """False: every request is accepted (and not counted)."""
        self.small_bars_only = small_bars_only
        """True: only requests with bars of 30 seconds or less are paced (IB's current rule)."""
        self._all: deque[int] = deque()
        self._series: dict[tuple[int, str, str], deque[int]] = {}
        self._identical: dict[tuple[Hashable, ...], int] = {}
        self._last_prune = 0

    def violation(self, request: HistoricalRequest, now_ns: int) -> str | None:
        """Which rule ``request`` would break at ``now_ns`` (``None``: it may go). Does not count it."""
        if not self.enabled or not self._paced(request):
            return None
        r = self.rules
        last = self._identical.get(request.identity)
        if last is not None and now_ns - last < r.identical_window_ns:
            return "identical request within 15 seconds"
        times = self._series.get(request.series)
        if times is not None:
            _drop_before(times, now_ns - r.burst_window_ns)
            if len(times) >= r.burst_limit - 1:
                return f"{r.burst_limit} or more requests for the same contract, exchange and tick type"
        _drop_before(self._all, now_ns - r.window_ns)
        if len(self._all) >= r.window_limit:
            return f"more than {r.window_limit} requests within 10 minutes"
        return None

    def record(self, request: HistoricalRequest, now_ns: int) -> None:
        """Count an accepted request."""
        if not self.enabled or not self._paced(request):
            return
        self._all.append(now_ns)
        self._series.setdefault(request.series, deque()).append(now_ns)
        self._identical[request.identity] = now_ns
        if now_ns - self._last_prune > self.rules.window_ns:
            self._prune(now_ns)

    def check(self, request: HistoricalRequest, now_ns: int) -> str | None:
        """:meth:`violation`, and :meth:`record` the request when it is accepted."""
        reason = self.violation(request, now_ns)
        if reason is None:
            self.record(request, now_ns)
        return reason

    def reset(self) -> None:
        self._all.clear()
        self._series.clear()
        self._identical.clear()

    def _paced(self, request: HistoricalRequest) -> bool:
        return not self.small_bars_only or 0 < request.bar_seconds <= SMALL_BAR_SECONDS

    def _prune(self, now_ns: int) -> None:
        """Forget what no rule can look at any more (bounded memory)."""
        self._last_prune = now_ns
        r = self.rules
        self._identical = {k: t for k, t in self._identical.items() if now_ns - t < r.identical_window_ns}
        for key in [k for k, v in self._series.items() if not v or now_ns - v[-1] >= r.burst_window_ns]:
            del self._series[key]


def _drop_before(times: deque[int], cutoff: int) -> None:
    while times and times[0] <= cutoff:
        times.popleft()


def pacing_of(extensions: MutableMapping[str, Any]) -> HistoricalPacing:
    """The exchange-wide pacing state in ``core.extensions`` (created on first use)."""
    pacing = extensions.get(EXTENSION_KEY)
    if not isinstance(pacing, HistoricalPacing):
        pacing = HistoricalPacing()
        extensions[EXTENSION_KEY] = pacing
    return pacing
