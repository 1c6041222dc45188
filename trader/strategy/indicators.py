"""Technical indicators, vectorised (pandas) and incremental (one value at a time), plus a cache.

Definitions (both forms give the same numbers, within 1e-9, on the same data):

* ``sma(n)``: the mean of the last ``n`` values; NaN before ``n`` values.
* ``ema(n)``: ``alpha = 2 / (n + 1)``, seeded with the first value (``y0 = x0``,
  ``y = alpha * x + (1 - alpha) * y``), NaN before ``n`` values (pandas
  ``ewm(span=n, adjust=False, min_periods=n)``).
* ``rsi(n)``: Wilder's: average gain and loss of the changes, seeded with the simple mean of the
  first ``n`` changes then smoothed with ``alpha = 1 / n``; ``100 * gain / (gain + loss)`` (100
  when nothing fell, 50 when nothing moved); NaN for the first ``n`` values.
* ``bollinger(n, k)``: ``mid = sma(n)``, ``upper/lower = mid +- k * std`` with the population
  standard deviation (``ddof=0``) of the last ``n`` values (computed in two passes).
* ``atr(n)``: Wilder's average of the true range (``high - low`` for the first bar, then
  ``max(high - low, |high - prev close|, |low - prev close|)``), seeded with the mean of the first
  ``n`` true ranges; NaN for the first ``n - 1`` bars.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import pandas as pd

from trader.strategy.window import RollingWindow

NAN = math.nan
T = TypeVar("T")


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"indicator length must be an integer >= 1, got {n!r}")


# -- vectorised ------------------------------------------------------------------------------------


def sma(series: pd.Series, n: int) -> pd.Series:
    _check_n(n)
    return series.astype(float).rolling(n, min_periods=n).mean()


def ema(series: pd.Series, n: int) -> pd.Series:
    _check_n(n)
    return series.astype(float).ewm(span=n, adjust=False, min_periods=n).mean()


def _wilder(values: pd.Series, n: int, first: int) -> pd.Series:
    """Wilder's smoothing of ``values`` seeded at position ``first + n - 1`` with the mean of
    ``values[first : first + n]``; NaN before."""
    out = pd.Series(np.nan, index=values.index, dtype=float)
    seed_at = first + n - 1
    if len(values) <= seed_at:
        return out
    seeded = values.astype(float).copy()
    seeded.iloc[:seed_at] = np.nan
    seeded.iloc[seed_at] = values.iloc[first : seed_at + 1].mean()
    return seeded.ewm(alpha=1.0 / n, adjust=False).mean()


def _rsi_of(gain: Any, loss: Any) -> Any:
    total = gain + loss
    return np.where(total > 0, 100.0 * gain / np.where(total > 0, total, 1.0), 50.0)


def rsi(series: pd.Series, n: int = 14) -> pd.Series:
    _check_n(n)
    delta = series.astype(float).diff()
    gain = _wilder(delta.clip(lower=0.0), n, first=1)
    loss = _wilder((-delta).clip(lower=0.0), n, first=1)
    values = _rsi_of(gain.to_numpy(), loss.to_numpy())
    return pd.Series(np.where(gain.isna(), np.nan, values), index=series.index, name=series.name)


def bollinger(series: pd.Series, n: int = 20, k: float = 2.0) -> pd.DataFrame:
    _check_n(n)
    values = series.to_numpy(dtype=float)
    mid = np.full(len(values), np.nan)
    std = np.full(len(values), np.nan)
    if len(values) >= n:  # two passes per window (exact, unlike running sums of squares)
        windows = np.lib.stride_tricks.sliding_window_view(values, n)
        mid[n - 1 :] = windows.mean(axis=1)
        std[n - 1 :] = np.sqrt(((windows - mid[n - 1 :, None]) ** 2).mean(axis=1))
    width = k * std
    return pd.DataFrame({"mid": mid, "upper": mid + width, "lower": mid - width}, index=series.index)


def true_range(frame: pd.DataFrame) -> pd.Series:
    high, low = frame["high"].astype(float), frame["low"].astype(float)
    prev_close = frame["close"].astype(float).shift(1)
    ranges = pd.concat([high - low, (high - prev_close).abs(), (low - prev_close).abs()], axis=1)
    return ranges.max(axis=1, skipna=True)


def atr(frame: pd.DataFrame, n: int = 14) -> pd.Series:
    _check_n(n)
    return _wilder(true_range(frame), n, first=0)


# -- incremental -----------------------------------------------------------------------------------


class Sma:
    """``update(value) -> sma`` of the last ``n`` values (NaN before ``n``)."""

    def __init__(self, n: int) -> None:
        _check_n(n)
        self.n = n
        self._values: deque[float] = deque(maxlen=n)
        self._sum = 0.0
        self._since_exact = 0
        self.value = NAN

    @property
    def ready(self) -> bool:
        return len(self._values) == self.n

    def update(self, value: float) -> float:
        value = float(value)
        if len(self._values) == self.n:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        self._since_exact += 1
        if self._since_exact >= 1000:  # stop rounding drift of the running sum
            self._sum, self._since_exact = math.fsum(self._values), 0
        self.value = self._sum / self.n if self.ready else NAN
        return self.value


class Ema:
    """``update(value) -> ema`` (``alpha = 2 / (n + 1)``, seeded with the first value)."""

    def __init__(self, n: int) -> None:
        _check_n(n)
        self.n = n
        self.alpha = 2.0 / (n + 1)
        self._ema = NAN
        self._count = 0
        self.value = NAN

    @property
    def ready(self) -> bool:
        return self._count >= self.n

    def update(self, value: float) -> float:
        value = float(value)
        self._count += 1
        self._ema = value if self._count == 1 else (1.0 - self.alpha) * self._ema + self.alpha * value
        self.value = self._ema if self.ready else NAN
        return self.value


class _Wilder:
    """Wilder's smoothing seeded with the simple mean of the first ``n`` values."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._seed: list[float] = []
        self.value = NAN

    def update(self, value: float) -> float:
        if len(self._seed) < self.n:
            self._seed.append(value)
            if len(self._seed) == self.n:
                self.value = sum(self._seed) / self.n
            return self.value
        self.value = (1.0 - 1.0 / self.n) * self.value + (1.0 / self.n) * value
        return self.value


class Rsi:
    """``update(value) -> rsi`` (Wilder's; NaN for the first ``n`` values)."""

    def __init__(self, n: int = 14) -> None:
        _check_n(n)
        self.n = n
        self._gain = _Wilder(n)
        self._loss = _Wilder(n)
        self._prev = NAN
        self.value = NAN

    @property
    def ready(self) -> bool:
        return not math.isnan(self.value)

    def update(self, value: float) -> float:
        value = float(value)
        prev, self._prev = self._prev, value
        if math.isnan(prev):
            return self.value
        change = value - prev
        gain = self._gain.update(max(change, 0.0))
        loss = self._loss.update(max(-change, 0.0))
        if not math.isnan(gain):
            self.value = float(_rsi_of(gain, loss))
        return self.value


class Band(NamedTuple):
    mid: float
    upper: float
    lower: float


class Bollinger:
    """``update(value) -> Band(mid, upper, lower)`` (NaNs before ``n`` values). Exact two-pass
    mean and deviation over the last ``n`` values (O(n) per update, as a running sum of squares
    loses the small deviations of large prices)."""

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        _check_n(n)
        self.n, self.k = n, float(k)
        self._values: deque[float] = deque(maxlen=n)
        self.value = Band(NAN, NAN, NAN)

    @property
    def ready(self) -> bool:
        return len(self._values) == self.n

    def update(self, value: float) -> Band:
        self._values.append(float(value))
        if not self.ready:
            return self.value
        values = np.fromiter(self._values, dtype=float, count=self.n)
        mean = values.mean()
        width = self.k * math.sqrt(((values - mean) ** 2).mean())
        self.value = Band(float(mean), float(mean + width), float(mean - width))
        return self.value


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class Atr:
    """``update(row) -> atr``; ``row`` has ``high``, ``low`` and ``close`` (a dict, a Series ...).
    NaN for the first ``n - 1`` bars."""

    def __init__(self, n: int = 14) -> None:
        _check_n(n)
        self.n = n
        self._avg = _Wilder(n)
        self._prev_close = NAN
        self.value = NAN

    @property
    def ready(self) -> bool:
        return not math.isnan(self.value)

    def update(self, row: Row) -> float:
        high, low, close = float(row["high"]), float(row["low"]), float(row["close"])
        tr = high - low
        if not math.isnan(self._prev_close):
            tr = max(tr, abs(high - self._prev_close), abs(low - self._prev_close))
        self._prev_close = close
        self.value = self._avg.update(tr)
        return self.value


# -- cache -----------------------------------------------------------------------------------------


def _series(frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        column = "close" if "close" in frame.columns else "last"
    return frame[column]


INDICATORS: dict[str, Callable[..., Any]] = {
    "sma": lambda frame, n, column=None: sma(_series(frame, column), n),
    "ema": lambda frame, n, column=None: ema(_series(frame, column), n),
    "rsi": lambda frame, n=14, column=None: rsi(_series(frame, column), n),
    "bollinger": lambda frame, n=20, k=2.0, column=None: bollinger(_series(frame, column), n, k),
    "atr": lambda frame, n=14: atr(frame, n),
}
"""The indicators :meth:`IndicatorCache.indicator` computes by name (column: ``close``, or ``last``
for tick windows, unless given)."""


class IndicatorCache:
    """Indicator results per (window, name, params), valid while the window's version is the same:
    two calls on the same frame compute once. One entry per (window, name, params): bounded by what
    strategies ask for, not by time."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str, Hashable], tuple[RollingWindow, int, Any]] = {}
        self.computed = 0
        """How many times something was computed (not served from the cache)."""

    def get(
        self, window: RollingWindow, name: str, params: Hashable, compute: Callable[[pd.DataFrame], T]
    ) -> T:
        """``compute(window.frame())``, once per window version for this (name, params)."""
        key = (id(window), name, params)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is window and entry[1] == window.version:
            value: T = entry[2]
            return value
        value = compute(window.frame())
        self.computed += 1
        self._entries[key] = (window, window.version, value)
        return value

    def indicator(self, window: RollingWindow, name: str, **params: Any) -> Any:
        """A named indicator of :data:`INDICATORS` on the window (e.g. ``"sma", n=20``)."""
        fn = INDICATORS.get(name)
        if fn is None:
            raise ValueError(f"unknown indicator {name!r} (known: {', '.join(sorted(INDICATORS))})")
        key = tuple(sorted(params.items()))
        return self.get(window, name, key, lambda frame: fn(frame, **params))

    def forget(self, window: RollingWindow) -> None:
        """Drop the entries of ``window``."""
        for key in [k for k, v in self._entries.items() if v[0] is window]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
