"""A bounded rolling window of prices (bars or ticks) for one instrument.

Rows live in a numpy ring (an int64 nanosecond index and a float64 block), so memory is bounded
(at most ``2 * maxlen`` rows allocated) and appending a bar costs no DataFrame concat. The frame
handed to strategies is built on demand and cached until the next append.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

BAR_COLUMNS: Final = ("open", "high", "low", "close", "volume")
TICK_COLUMNS: Final = ("bid", "ask", "last", "bid_size", "ask_size", "last_size")
TICKS: Final = "ticks"
"""The bar size of strategies that take ticks."""


def columns_for(bar_size: str) -> tuple[str, ...]:
    return TICK_COLUMNS if bar_size == TICKS else BAR_COLUMNS


def time_index(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The UTC times of ``frame``'s rows: its ``time`` column (pub/sub frames) or its index."""
    raw: Any = frame["time"] if "time" in frame.columns else frame.index
    index = pd.DatetimeIndex(raw)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


class RollingWindow:
    """The last ``maxlen`` rows of ``columns``, indexed by time (UTC).

    :meth:`append` adds rows; a row whose time is already in the window replaces it (an updated
    last bar does not duplicate). Columns missing from an appended frame are NaN; extra ones are
    ignored. ``symbol`` goes to the frame's ``attrs["symbol"]``."""

    def __init__(self, columns: Sequence[str], maxlen: int, *, symbol: str = "") -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self.columns: tuple[str, ...] = tuple(columns)
        self.maxlen = maxlen
        self.symbol = symbol
        self._cap = 2 * maxlen
        self._times = np.empty(self._cap, dtype=np.int64)
        self._values = np.empty((self._cap, len(self.columns)), dtype=np.float64)
        self._start = 0
        self._end = 0
        self._frame: pd.DataFrame | None = None
        self.version = 0
        """Incremented by every append that changed something (cache key of indicators)."""

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def last_time_ns(self) -> int | None:
        return int(self._times[self._end - 1]) if self._end > self._start else None

    def append(self, frame: pd.DataFrame) -> None:
        """Add ``frame``'s rows (indexed by time, or with a ``time`` column)."""
        if len(frame) == 0:
            return
        times = time_index(frame).as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
        values = np.full((len(frame), len(self.columns)), np.nan)
        for i, column in enumerate(self.columns):
            if column in frame.columns:
                values[:, i] = pd.to_numeric(frame[column], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        if len(times) > 1 and not bool(np.all(np.diff(times) > 0)):
            times, values = _sorted_last(times, values)
        last = self.last_time_ns
        if last is None or times[0] > last:
            self._append_sorted(times, values)
        elif len(times) == 1 and times[0] == last:  # the updated last bar: the common case
            self._values[self._end - 1] = values[0]
        else:
            self._merge(times, values)
        self.version += 1
        self._frame = None

    def _append_sorted(self, times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> None:
        n = len(times)
        if n >= self.maxlen:
            times, values = times[-self.maxlen :], values[-self.maxlen :]
            self._times[: self.maxlen] = times
            self._values[: self.maxlen] = values
            self._start, self._end = 0, self.maxlen
            return
        if self._end + n > self._cap:  # compact: keep the rows that stay in the window
            keep = min(self.maxlen - n, len(self))
            lo = self._end - keep
            self._times[:keep] = self._times[lo : self._end]
            self._values[:keep] = self._values[lo : self._end]
            self._start, self._end = 0, keep
        self._times[self._end : self._end + n] = times
        self._values[self._end : self._end + n] = values
        self._end += n
        self._start = max(self._start, self._end - self.maxlen)

    def _merge(self, times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> None:
        """Rows out of order or replacing earlier ones: merge (new rows win), keep the newest."""
        all_times = np.concatenate([self._times[self._start : self._end], times])
        all_values = np.concatenate([self._values[self._start : self._end], values])
        all_times, all_values = _sorted_last(all_times, all_values)
        self._start = self._end = 0
        self._append_sorted(all_times, all_values)

    def frame(self) -> pd.DataFrame:
        """The window as a DataFrame (index ``time``, UTC); the same object until the next append.
        A copy: changing it does not change the window."""
        if self._frame is None:
            index = pd.DatetimeIndex(
                self._times[self._start : self._end].copy().view("datetime64[ns]"), name="time"
            ).tz_localize("UTC")
            frame = pd.DataFrame(
                self._values[self._start : self._end].copy(), index=index, columns=list(self.columns)
            )
            frame.attrs["symbol"] = self.symbol
            self._frame = frame
        return self._frame

    def __repr__(self) -> str:
        return f"RollingWindow({self.symbol!r}, {len(self)}/{self.maxlen} rows, version {self.version})"


def _sorted_last(
    times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Sorted by time, one row per time (the last given wins)."""
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    last_of_each = np.ones(len(times), dtype=bool)
    last_of_each[:-1] = times[1:] != times[:-1]
    return times[last_of_each], values[last_of_each]
