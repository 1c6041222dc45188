"""Live OHLCV bars from a stream of ticks: pure (the caller passes the time in), one per
(instrument, bar size).

* **Bar sizes** are IB's strings for sizes that divide a day: ``'5 secs'``, ``'1 min'``,
  ``'5 mins'``, ``'1 hour'``, ``'1 day'`` ... (:func:`parse_bar_size`); weeks and months are refused.
* **Boundaries** are aligned to the clock in UTC: a bar of ``n`` seconds covers
  ``[k*n, (k+1)*n)`` seconds since the epoch (a ``'1 day'`` bar starts at midnight UTC). A bar is
  stamped with its start.
* **Closing.** A bar is closed, and returned once, by the first update stamped at or after its end
  (:meth:`BarAggregator.update`) or by the timer (:meth:`BarAggregator.close_due`, called at the
  boundary). An update stamped before the open bar's start (a bar already closed) is dropped and
  counted in ``late``.
* **Empty intervals are skipped**: an interval without any update yields no bar (no carried-forward
  flat bars); the next bar opens at the next update.
* **Prices and volume**: each update is one price (the caller's choice: the last trade, else the
  quote's mid) and a volume (the traded size since the previous update, 0 for a quote).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

import pandas as pd

NS: Final = 1_000_000_000
DAY_S: Final = 86_400
_UNIT_S: Final = {
    "sec": 1, "secs": 1, "second": 1, "seconds": 1, "s": 1,
    "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "hour": 3600, "hours": 3600, "h": 3600,
    "day": DAY_S, "days": DAY_S, "d": DAY_S,
}  # fmt: skip
_SLUG_UNITS: Final = ((DAY_S, "day"), (3600, "h"), (60, "min"), (1, "s"))
COLUMNS: Final = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class BarSize:
    """A bar size: IB's name (normalised, e.g. ``'5 secs'``), its length, and its topic slug."""

    name: str
    seconds: int

    @property
    def slug(self) -> str:
        """The topic part: ``5s``, ``1min``, ``5min``, ``1h``, ``1day`` (as the store's libraries)."""
        for unit, suffix in _SLUG_UNITS:
            if self.seconds % unit == 0:
                return f"{self.seconds // unit}{suffix}"
        raise AssertionError("unreachable: every size is whole seconds")


def parse_bar_size(text: str) -> BarSize:
    """``'5 secs'`` -> BarSize('5 secs', 5); ValueError for anything else (weeks, months, sizes
    that do not divide a day, zero)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]+)\s*", str(text))
    unit = _UNIT_S.get(match[2].lower()) if match else None
    if match is None or unit is None or int(match[1]) <= 0:
        raise ValueError(f"unknown bar size {text!r} (e.g. '5 secs', '1 min', '5 mins', '1 hour', '1 day')")
    count = int(match[1])
    seconds = count * unit
    if seconds > DAY_S or DAY_S % seconds:
        raise ValueError(f"bar size {text!r} does not divide a day")
    word = {1: "sec", 60: "min", 3600: "hour", DAY_S: "day"}[unit]
    name = f"{count} {word}" if count == 1 and unit != 1 else f"{count} {word}s"
    return BarSize(name, seconds)


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed bar; ``start_ns`` is its start (UTC, aligned to the bar size)."""

    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    updates: int

    def frame(self) -> pd.DataFrame:
        """A one-row DataFrame: index ``time`` (UTC, the bar's start), columns open high low close
        volume."""
        index = pd.DatetimeIndex([pd.Timestamp(self.start_ns, unit="ns", tz="UTC")], name="time")
        row = {"open": self.open, "high": self.high, "low": self.low, "close": self.close}
        return pd.DataFrame({**row, "volume": self.volume}, index=index, columns=list(COLUMNS))


class BarAggregator:
    """Aggregates updates ``(time_ns, price, volume)`` into bars of ``size`` (see the module)."""

    def __init__(self, size: BarSize) -> None:
        self.size = size
        self._len_ns = size.seconds * NS
        self._start_ns: int | None = None
        self._open = self._high = self._low = self._close = math.nan
        self._volume = 0.0
        self._updates = 0
        self._closed_until_ns = 0
        """The end of the last closed bar: updates before it are late."""
        self.late = 0
        """Updates dropped because their bar had already closed."""
        self.bars = 0
        """Bars closed so far."""

    def bar_start(self, time_ns: int) -> int:
        return time_ns - time_ns % self._len_ns

    @property
    def open_bar_end_ns(self) -> int | None:
        """When the bar being built ends (None: no bar open)."""
        return None if self._start_ns is None else self._start_ns + self._len_ns

    def update(self, time_ns: int, price: float, volume: float = 0.0) -> Bar | None:
        """Add one update; returns the bar it closed (the open bar when ``time_ns`` is past its end),
        if any. NaN or non-positive prices are ignored (their volume too)."""
        if not math.isfinite(price) or price <= 0:
            return None
        start = self.bar_start(time_ns)
        closed: Bar | None = None
        if time_ns < self._closed_until_ns or (self._start_ns is not None and start < self._start_ns):
            self.late += 1
            return None
        if self._start_ns is not None and start > self._start_ns:
            closed = self._close_bar()
        volume = volume if math.isfinite(volume) and volume > 0 else 0.0
        if self._start_ns is None:
            self._start_ns = start
            self._open = self._high = self._low = price
            self._volume, self._updates = 0.0, 0
        self._high = max(self._high, price)
        self._low = min(self._low, price)
        self._close = price
        self._volume += volume
        self._updates += 1
        return closed

    def close_due(self, now_ns: int) -> Bar | None:
        """The timer: close the open bar when ``now_ns`` is at or past its end."""
        end = self.open_bar_end_ns
        if end is None or now_ns < end:
            return None
        return self._close_bar()

    def _close_bar(self) -> Bar:
        assert self._start_ns is not None
        bar = Bar(self._start_ns, self._open, self._high, self._low, self._close, self._volume, self._updates)
        self._start_ns = None
        self._closed_until_ns = bar.start_ns + self._len_ns
        self.bars += 1
        return bar


class VolumeCounter:
    """The traded volume between updates, from a cumulative (day) volume: the first reading and a
    reading that went down (a new session) give 0."""

    def __init__(self) -> None:
        self._last = math.nan

    def delta(self, cumulative: float) -> float:
        if not math.isfinite(cumulative):
            return 0.0
        previous, self._last = self._last, cumulative
        if not math.isfinite(previous) or cumulative < previous:
            return 0.0
        return cumulative - previous
