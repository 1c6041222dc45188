"""Historical bars: the past of the very process the live stream comes from, vectorised with numpy.

A bar aggregates the steps of :mod:`trader.exchange.process` whose start time lies in it. Intraday
bars are aligned on the local clock of the instrument (``5 mins`` bars start at :00, :05 ...) and
clipped to sessions (the first hourly bar of a 09:30 session is labelled 09:30); ``1 day`` bars are
one per session (labelled with the trade date), ``1 week`` / ``1 month`` group those by ISO week /
calendar month. ``useRTH`` picks the liquid (regular) sessions instead of the trading sessions.

TRADES prices are the last trades (at the bid or the ask), with volume, WAP and trade count;
MIDPOINT, BID and ASK have no volume (-1), as TWS sends them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from trader.exchange.instruments import Instrument
from trader.exchange.process import PriceProcess, spreads, trade_at_ask, trade_sizes
from trader.exchange.sessions import NS, Session

BAR_SECONDS: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
}
PERIOD_BARS: dict[str, str] = {"1 day": "D", "1 week": "W", "1 month": "M"}
BAR_SIZES: tuple[str, ...] = (*BAR_SECONDS, *PERIOD_BARS)
WHAT_TO_SHOW: tuple[str, ...] = ("TRADES", "MIDPOINT", "BID", "ASK")
_DURATION = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$")

DailyKey = tuple[int, date, str, bool]
_I64 = NDArray[np.int64]
_Columns = tuple[_I64, _I64, _I64, _I64, _I64, _I64, NDArray[np.float64], _I64, tuple[date, ...]]
"""time (or first index), open, high, low, close, volume, sum(units*volume), count, dates."""
Daily = tuple[int, int, int, int, int, float, int]
"""Per-session aggregate in price units: open, high, low, close, volume, sum(units*volume), count."""


class HistoricalDataError(ValueError):
    """A request TWS would answer with an error: ``code`` and ``text`` go to the client as is."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar. ``time_ns`` is the bar start; for daily and longer bars it is local midnight of
    ``date``, the (first) trade date, which is what TWS prints for them (``20261120``)."""

    time_ns: int
    date: date | None
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


@dataclass(frozen=True, slots=True)
class BarSeries:
    """Bars as numpy columns (fast to produce); :meth:`rows` and :meth:`to_frame` convert."""

    con_id: int
    bar_size: str
    what_to_show: str
    daily: bool
    time_ns: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    wap: NDArray[np.float64]
    count: NDArray[np.int64]
    dates: tuple[date, ...] = ()

    def __len__(self) -> int:
        return len(self.time_ns)

    def rows(self) -> list[Bar]:
        dates: list[date | None] = list(self.dates) if self.daily else [None] * len(self)
        return [
            Bar(int(t), d, float(o), float(h), float(lo), float(c), float(v), float(w), int(n))
            for t, d, o, h, lo, c, v, w, n in zip(
                self.time_ns,
                dates,
                self.open,
                self.high,
                self.low,
                self.close,
                self.volume,
                self.wap,
                self.count,
                strict=True,
            )
        ]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame indexed by bar start (UTC), columns open/high/low/close/volume/wap/count."""
        index = pd.to_datetime(self.time_ns, unit="ns", utc=True)
        return pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "wap": self.wap,
                "count": self.count,
            },
            index=index,
        )


def parse_duration(text: str) -> tuple[int, str]:
    """``"3 D"`` -> (3, "D"); units S, D, W, M, Y as TWS takes them."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or int(match.group(1)) <= 0:
        raise HistoricalDataError(
            321,
            f"Error validating request.-'bP' : cause - Historical data query duration {text!r} is invalid",
        )
    return int(match.group(1)), match.group(2)


def check_bar_size(text: str) -> str:
    if text not in BAR_SECONDS and text not in PERIOD_BARS:
        raise HistoricalDataError(
            321,
            f"Error validating request.-'bP' : cause - Historical data bar size setting {text!r} is invalid",
        )
    return text


def duration_start(inst: Instrument, end_ns: int, amount: int, unit: str, use_rth: bool) -> int:
    """Where a request of ``amount unit`` ending at ``end_ns`` starts. ``D`` counts sessions."""
    cal = inst.calendar
    if unit == "S":
        return end_ns - amount * NS
    if unit == "D":
        sessions = cal.last_sessions(end_ns, amount, use_rth)
        return sessions[0].open_ns if sessions else end_ns - amount * 86_400 * NS
    if unit == "W":
        return end_ns - amount * 7 * 86_400 * NS
    local = cal.local(end_ns)
    months = amount if unit == "M" else 12 * amount
    total = local.year * 12 + local.month - 1 - months
    year, month = divmod(total, 12)
    day = min(local.day, _days_in_month(year, month + 1))
    back = datetime(year, month + 1, day, local.hour, local.minute, local.second)
    return int(back.replace(tzinfo=cal.tz).timestamp()) * NS


def _days_in_month(year: int, month: int) -> int:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).day


def _series(
    process: PriceProcess, inst: Instrument, k0: int, k1: int, what: str
) -> tuple[NDArray[np.int64], NDArray[np.int64] | None]:
    """Per-step prices in units (ticks; half ticks for MIDPOINT) and, for TRADES, volumes."""
    bid, bits = process.steps(inst.conId, k0, k1)
    if what == "BID":
        return bid, None
    spread = spreads(bits, inst.spreadTicks)
    if what == "ASK":
        return bid + spread, None
    if what == "MIDPOINT":
        return 2 * bid + spread, None
    return bid + spread * trade_at_ask(bits), trade_sizes(bits, inst.displaySize)


def _reduce(units: NDArray[np.int64], volume: NDArray[np.int64] | None, keys: NDArray[np.int64]) -> _Columns:
    """Group consecutive equal keys: (first index, open, high, low, close, volume, pv, count)."""
    n = len(units)
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate(([0], cuts)).astype(np.int64)
    ends = np.concatenate((cuts, [n])).astype(np.int64)
    opens, closes = units[starts], units[ends - 1]
    highs = np.maximum.reduceat(units, starts)
    lows = np.minimum.reduceat(units, starts)
    counts = ends - starts
    if volume is None:
        vols = np.full(len(starts), -1, dtype=np.int64)
        pv = np.zeros(len(starts), dtype=np.float64)
    else:
        vols = np.add.reduceat(volume, starts)
        pv = np.add.reduceat(units.astype(np.float64) * volume, starts)
    return starts, opens, highs, lows, closes, vols, pv, counts, ()


def historical_bars(
    process: PriceProcess,
    inst: Instrument,
    end_ns: int,
    duration: str,
    bar_size: str,
    *,
    what_to_show: str,
    use_rth: bool,
    head_ns: int,
    max_bars: int,
    daily_cache: MutableMapping[DailyKey, Daily],
) -> BarSeries:
    """The bars of a reqHistoricalData request (see :meth:`trader.exchange.market.Market.bars`)."""
    what = what_to_show.upper()
    if what not in WHAT_TO_SHOW:
        raise HistoricalDataError(
            321, f"Error validating request.-'bP' : cause - whatToShow {what_to_show!r} is not supported"
        )
    check_bar_size(bar_size)
    amount, unit = parse_duration(duration)
    start_ns = max(duration_start(inst, end_ns, amount, unit, use_rth), head_ns)
    if end_ns <= start_ns:
        raise _no_data(inst, what)
    step = process.step_ns
    sessions = inst.calendar.sessions_between(start_ns, end_ns, use_rth)
    if bar_size in BAR_SECONDS:
        bar_ns = BAR_SECONDS[bar_size] * NS
        if (end_ns - start_ns) // max(bar_ns, step) > max_bars:
            raise HistoricalDataError(
                162, "Historical Market Data Service error message:Time length exceed max."
            )
        result = _intraday(
            process, inst, sessions, start_ns=start_ns, end_ns=end_ns, bar_ns=bar_ns, what=what
        )
    else:
        if len(sessions) > 40 * 366:
            raise HistoricalDataError(
                162, "Historical Market Data Service error message:Time length exceed max."
            )
        result = _periodic(
            process,
            inst,
            sessions,
            end_ns=end_ns,
            period=PERIOD_BARS[bar_size],
            what=what,
            use_rth=use_rth,
            cache=daily_cache,
        )
    time_ns, o, h, lo, c, v, pv, n, dates = result
    if len(time_ns) == 0:
        raise _no_data(inst, what)
    denominator = 2 if what == "MIDPOINT" else 1
    to_price = _pricer(inst, denominator)
    volume = v.astype(np.float64)
    if what == "TRADES":
        wap = to_price(pv / np.maximum(v, 1))
        count = n
    else:
        wap = np.full(len(time_ns), -1.0)
        count = np.full(len(time_ns), -1, dtype=np.int64)
    return BarSeries(
        inst.conId,
        bar_size,
        what,
        bar_size in PERIOD_BARS,
        time_ns,
        to_price(o),
        to_price(h),
        to_price(lo),
        to_price(c),
        volume,
        wap,
        count,
        dates,
    )


_ToPrice = Callable[[NDArray[Any]], NDArray[np.float64]]


def _pricer(inst: Instrument, denominator: int) -> _ToPrice:
    per_unit = inst.ticks_per_unit
    if per_unit:
        scale = per_unit * denominator
        return lambda units: np.asarray(units, dtype=np.float64) / scale
    tick, decimals = inst.minTick / denominator, inst.decimals + 1
    return lambda units: np.round(np.asarray(units, dtype=np.float64) * tick, decimals)


def _no_data(inst: Instrument, what: str) -> HistoricalDataError:
    return HistoricalDataError(
        162,
        f"Historical Market Data Service error message:HMDS query returned no data: "
        f"{inst.localSymbol}@{inst.exchange} {what.capitalize()}",
    )


def _intraday(
    process: PriceProcess,
    inst: Instrument,
    sessions: list[Session],
    *,
    start_ns: int,
    end_ns: int,
    bar_ns: int,
    what: str,
) -> _Columns:
    step = process.step_ns
    parts: list[_Columns] = []
    for session in sessions:
        lo, hi = max(session.open_ns, start_ns), min(session.close_ns, end_ns)
        k0, k1 = -(-lo // step), -(-hi // step)
        if k1 <= k0:
            continue
        units, volume = _series(process, inst, k0, k1, what)
        times = np.arange(k0, k1, dtype=np.int64) * step
        offset = inst.calendar.utc_offset_ns(session.open_ns)
        keys = (times + offset) // bar_ns
        starts, o, h, low, c, v, pv, n, _ = _reduce(units, volume, keys)
        parts.append((times[starts], o, h, low, c, v, pv, n, ()))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, empty, empty, empty, np.empty(0), empty, ()

    def cat(i: int) -> Any:
        return np.concatenate([p[i] for p in parts])

    return cat(0), cat(1), cat(2), cat(3), cat(4), cat(5), cat(6), cat(7), ()


def _daily(
    process: PriceProcess,
    inst: Instrument,
    session: Session,
    *,
    end_ns: int,
    what: str,
    use_rth: bool,
    cache: MutableMapping[DailyKey, Daily],
) -> Daily | None:
    complete = session.close_ns <= end_ns
    key = (inst.conId, session.trade_date, what, use_rth)
    if complete and key in cache:
        return cache[key]
    step = process.step_ns
    k0, k1 = -(-session.open_ns // step), -(-min(session.close_ns, end_ns) // step)
    if k1 <= k0:
        return None
    units, volume = _series(process, inst, k0, k1, what)
    vol = int(volume.sum()) if volume is not None else -1
    pv = float(np.dot(units.astype(np.float64), volume)) if volume is not None else 0.0
    result: Daily = (
        int(units[0]),
        int(units.max()),
        int(units.min()),
        int(units[-1]),
        vol,
        pv,
        k1 - k0,
    )
    if complete:
        if len(cache) > 200_000:
            cache.clear()
        cache[key] = result
    return result


def _periodic(
    process: PriceProcess,
    inst: Instrument,
    sessions: list[Session],
    *,
    end_ns: int,
    period: str,
    what: str,
    use_rth: bool,
    cache: MutableMapping[DailyKey, Daily],
) -> _Columns:
    rows: list[tuple[date, Daily]] = []
    for session in sessions:
        daily = _daily(process, inst, session, end_ns=end_ns, what=what, use_rth=use_rth, cache=cache)
        if daily is not None:
            rows.append((session.trade_date, daily))
    # Several sessions on one trade date (a venue with a midday break) make one daily bar.
    groups: list[tuple[tuple[int, int, int], list[tuple[date, Daily]]]] = []
    for trade_date, daily in rows:
        if period == "D":
            key = (trade_date.year, trade_date.month, trade_date.day)
        elif period == "W":
            iso = trade_date.isocalendar()
            key = (iso.year, iso.week, 0)
        else:
            key = (trade_date.year, trade_date.month, 0)
        if groups and groups[-1][0] == key:
            groups[-1][1].append((trade_date, daily))
        else:
            groups.append((key, [(trade_date, daily)]))
    cal = inst.calendar
    cols: list[list[int]] = [[] for _ in range(7)]
    pvs: list[float] = []
    dates: list[date] = []
    for _, members in groups:
        first = members[0][0]
        aggs = [m[1] for m in members]
        volume = sum(a[4] for a in aggs) if what == "TRADES" else -1
        values = (
            cal.midnight(first),
            aggs[0][0],
            max(a[1] for a in aggs),
            min(a[2] for a in aggs),
            aggs[-1][3],
            volume,
            sum(a[6] for a in aggs),
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
        pvs.append(sum(a[5] for a in aggs))
        dates.append(first)
    t, o, h, lo, c, v, n = (np.asarray(col, dtype=np.int64) for col in cols)
    return t, o, h, lo, c, v, np.asarray(pvs, dtype=np.float64), n, tuple(dates)


def head_timestamp(inst: Instrument, history_start_ns: int, use_rth: bool) -> int:
    """The earliest instant with data: the first session opening at or after the history start."""
    session = inst.calendar.next_session(history_start_ns, use_rth)
    if session is None:
        return history_start_ns
    return max(session.open_ns, history_start_ns)
