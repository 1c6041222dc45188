"""Replay mode's stored data: settings, and the per-instrument streams of quotes built from the
store's ticks or bars (see :mod:`trader.exchange.replay` for the semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from trader.exchange.bars import BAR_SECONDS, check_bar_size
from trader.exchange.instruments import Instrument
from trader.exchange.sessions import NS

ReplayKind = Literal["ticks", "bars"]
_TICK_COLUMNS: Final = ("bid", "bid_size", "ask", "ask_size", "last", "last_size")


def parse_time(text: str) -> int:
    """ISO time -> ns since epoch (naive times are UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(pd.Timestamp(moment).value)


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What to replay: ``start_ns`` None starts at the first stored event of the universe."""

    start_ns: int | None = None
    speed: float = 60.0
    kind: ReplayKind = "ticks"
    bar_size: str = "1 min"
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.kind not in ("ticks", "bars"):
            raise ValueError(f"kind must be 'ticks' or 'bars', got {self.kind!r}")
        check_bar_size(self.bar_size)


F64 = NDArray[np.float64]


@dataclass(slots=True, eq=False)
class _Stream:
    """The stored events of one instrument, as quote columns, and what was published."""

    inst: Instrument
    t: NDArray[np.int64]
    bid: F64
    ask: F64
    bid_size: F64
    ask_size: F64
    last: F64
    last_size: F64
    volume: F64
    """Cumulative over the (local) trade date of the event."""
    open: F64
    high: F64
    low: F64
    prev_close: F64
    first: int
    """Index of the state at ``start`` (the latest event at or before it, else the first one)."""
    published: tuple[int, int] = (-1, -1)
    """(cycle, index) of the last quote published."""
    factor: float = 1.0
    halted_at: int | None = None
    """Replay time of the halt."""
    skip: bool = False
    """Resumed: the next step publishes only the latest event (the halt's ticks are skipped)."""


def _bar_ns(bar_size: str) -> int:
    seconds = BAR_SECONDS.get(bar_size)
    return seconds * NS if seconds is not None else 86_400 * NS


def _bars_to_ticks(bars: pd.DataFrame, inst: Instrument, bar_size: str) -> pd.DataFrame:
    """Four quotes per bar: O, then H/L (L first when the bar closes up), then C."""
    if bars.empty:
        return pd.DataFrame(columns=list(_TICK_COLUMNS), index=pd.DatetimeIndex([], tz=UTC, name="time"))
    size = _bar_ns(bar_size)
    t0 = _ns(bars.index)
    up = bars["close"].to_numpy() >= bars["open"].to_numpy()
    second = np.where(up, bars["low"].to_numpy(), bars["high"].to_numpy())
    third = np.where(up, bars["high"].to_numpy(), bars["low"].to_numpy())
    prices = np.column_stack([bars["open"].to_numpy(), second, third, bars["close"].to_numpy()]).ravel()
    times = (t0[:, None] + np.arange(4)[None, :] * (size // 4)).ravel()
    quarter = np.repeat(np.nan_to_num(bars["volume"].to_numpy(dtype=np.float64)) / 4.0, 4)
    frame = pd.DataFrame(
        {
            "bid": prices,
            "bid_size": float(inst.displaySize),
            "ask": prices + inst.minTick,
            "ask_size": float(inst.displaySize),
            "last": prices,
            "last_size": quarter,
        },
        index=pd.DatetimeIndex(pd.to_datetime(times, unit="ns", utc=True), name="time"),
    )
    return frame


def _stream(inst: Instrument, ticks: pd.DataFrame, start_ns: int) -> _Stream | None:
    """Quote columns from stored ticks (values carried forward, daily statistics precomputed)."""
    frame = ticks.reindex(columns=list(_TICK_COLUMNS)).astype(np.float64).sort_index(kind="stable")
    traded = frame["last"].notna() & (frame["last_size"].fillna(0.0) > 0)
    raw_size = frame["last_size"].where(traded, 0.0).fillna(0.0)
    frame = frame.ffill()
    tick = inst.minTick
    frame["last"] = frame["last"].fillna((frame["bid"] + frame["ask"]) / 2.0)
    frame["bid"] = frame["bid"].fillna(frame["last"])
    frame["ask"] = frame["ask"].fillna(frame["last"] + tick)
    keep = frame["last"].notna().to_numpy()
    if not keep.any():
        return None
    frame, raw_size = frame[keep], raw_size[keep]
    display = float(inst.displaySize)
    frame["bid_size"] = frame["bid_size"].fillna(display)
    frame["ask_size"] = frame["ask_size"].fillna(display)
    frame["last_size"] = frame["last_size"].fillna(0.0)
    index = pd.DatetimeIndex(frame.index)
    day = pd.Series(index.tz_convert(inst.timeZone).date, index=frame.index)
    last = frame["last"]
    volume = raw_size.groupby(day.to_numpy()).cumsum()
    high = last.groupby(day.to_numpy()).cummax()
    low = last.groupby(day.to_numpy()).cummin()
    open_ = last.groupby(day.to_numpy()).transform("first")
    closes = last.groupby(day.to_numpy()).last()
    previous = closes.shift(1)
    prev_close = day.map(previous).astype(np.float64).fillna(open_)
    t = _ns(index)
    first = max(int(np.searchsorted(t, start_ns, side="right")) - 1, 0)

    def col(series: pd.Series[Any]) -> F64:
        return series.to_numpy(dtype=np.float64)

    return _Stream(
        inst,
        t,
        col(frame["bid"]),
        col(frame["ask"]),
        col(frame["bid_size"]),
        col(frame["ask_size"]),
        col(last),
        col(frame["last_size"]),
        col(volume),
        col(open_),
        col(high),
        col(low),
        col(prev_close),
        first,
    )


def _ns(index: Any) -> NDArray[np.int64]:
    """ns since epoch of a DatetimeIndex."""
    values: Any = pd.DatetimeIndex(index)
    return np.asarray(values.asi8, dtype=np.int64)
