"""Replay mode: the exchange's live quotes and history come from the ArcticDB store.

:class:`ReplayMarket` has the interface the matching engine and the market-data features use
from :class:`~trader.exchange.market.Market` (it is a subclass, so the rest of the exchange does
not know the difference). Time mapping: the *replay time* of wall time ``now`` is
``start + (now - t0) * speed``, ``t0`` being the first market step (or the ``t0_ns`` given); with
``loop`` it wraps to ``start`` after the last stored event of the universe.

* ``kind="ticks"``: every stored tick (``bid/bid_size/ask/ask_size/last/last_size``, missing values
  carried forward; a missing bid/ask becomes last / last + one minTick) becomes a :class:`Quote`
  when the replay time passes it.
* ``kind="bars"``: every stored bar of ``bar_size`` becomes four quotes: open at the bar start,
  then high and low (low first when the bar closes up) and close at 1/4, 2/4 and 3/4 of the bar;
  each with bid = the price, ask = the price + one minTick and lastSize = a quarter of the volume.

The quotes of one instrument are published in stored order, each stamped with the wall time its
stored time maps to (at most :data:`MAX_QUOTES_PER_STEP` per step and instrument: the older ones of
a burst are skipped). The tick rate of the config does not apply. Instruments without stored data
publish nothing; their :meth:`ReplayMarket.last_quote` has price -1 and sizes 0 (no fills).

History (reqHistoricalData, real-time bars, keepUpToDate) is answered from the store up to the
replay time (no look-ahead): stored bars of the requested size when there are any (only bars
completed by then), else the stored ticks aggregated (TRADES from the ticks with a last, MIDPOINT,
BID and ASK from the quotes); nothing stored: error 162 "HMDS query returned no data". An explicit
``endDateTime`` earlier than the wall clock is read as a replay time (then clamped to the replay
time); the bar times are stored (replay) times. ``useRTH`` does not filter stored data.

Scenario controls: :meth:`ReplayMarket.shock` scales the replayed prices of an instrument from then
on (cumulative; history is not shocked); halt / resume stop and restart its quotes (the ticks of
the halt are skipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from trader.exchange.bars import (
    BAR_SECONDS,
    PERIOD_BARS,
    WHAT_TO_SHOW,
    BarSeries,
    HistoricalDataError,
    check_bar_size,
    duration_start,
    parse_duration,
)
from trader.exchange.faults import FaultError
from trader.exchange.instruments import Instrument, Universe
from trader.exchange.market import Market, MarketConfig, Quote, SessionStats
from trader.exchange.quote_cache import EXTENSION_KEY as QUOTE_CACHE_KEY
from trader.exchange.quote_cache import QuoteCache
from trader.exchange.replay_data import (
    ReplaySettings,
    _bar_ns,
    _bars_to_ticks,
    _ns,
    _Stream,
    _stream,
    parse_time,
)
from trader.exchange.sessions import NS, Session

__all__ = ["MAX_QUOTES_PER_STEP", "ReplayMarket", "ReplayQuoteCache", "ReplaySettings", "parse_time"]

MAX_QUOTES_PER_STEP: Final = 200
LOOKBACK_NS: Final = 7 * 86_400 * NS
"""Ticks (or bars) this long before ``start`` are loaded to know the state at ``start``."""
_PERIOD_OFFSETS: Final = {
    "D": pd.DateOffset(days=1),
    "W": pd.DateOffset(days=7),
    "M": pd.DateOffset(months=1),
}


class ReplayMarket(Market):
    """A :class:`Market` whose quotes and history are replayed from a store (module docstring).

    ``store`` is a :class:`trader.data.store.Store` (anything with its read methods); ``t0_ns``
    pins the wall time of ``start`` (default: the first call that passes a time).
    """

    def __init__(
        self,
        universe: Universe,
        config: MarketConfig | None,
        store: Any,
        settings: ReplaySettings,
        *,
        t0_ns: int | None = None,
    ) -> None:
        super().__init__(universe, config)
        self.store = store
        self.settings = settings
        self.t0_ns = t0_ns
        start = settings.start_ns if settings.start_ns is not None else self._first_stored()
        self.start_ns: int = start if start is not None else 0
        self._streams: dict[int, _Stream] = {}
        self._shock_log: dict[int, list[tuple[int, float]]] = {}
        lookback = self.start_ns - LOOKBACK_NS
        for inst in universe:
            if settings.kind == "ticks":
                frame = store.read_ticks(inst.conId, _ts(lookback), None)
            else:
                bars = store.read_bars(inst.conId, settings.bar_size, _ts(lookback), None)
                frame = _bars_to_ticks(bars, inst, settings.bar_size)
            if frame is None or frame.empty:
                continue
            stream = _stream(inst, frame, self.start_ns)
            if stream is not None and stream.t[-1] >= self.start_ns - LOOKBACK_NS:
                self._streams[inst.conId] = stream
        ends = [int(s.t[-1]) for s in self._streams.values()]
        tail = _bar_ns(settings.bar_size) if settings.kind == "bars" else NS
        self.cycle_ns = max((max(ends) - self.start_ns + tail) if ends else 0, NS)
        """Length of one replay cycle (``loop``): start to the last stored event, plus a bar or 1 s."""

    @classmethod
    def open(
        cls,
        universe: Universe,
        config: MarketConfig,
        uri: str,
        settings: ReplaySettings,
        *,
        t0_ns: int | None = None,
    ) -> ReplayMarket:
        from trader.data.store import Store  # noqa: PLC0415 (ArcticDB loads only in replay mode)

        return cls(universe, config, Store(uri), settings, t0_ns=t0_ns)

    def _first_stored(self) -> int | None:
        firsts: list[int] = []
        for inst in self.universe:
            if self.settings.kind == "ticks":
                found = self.store.ticks_range(inst.conId)
            else:
                found = self.store.bars_range(inst.conId, self.settings.bar_size)
            if found is not None:
                firsts.append(int(pd.Timestamp(found[0]).value))
        return min(firsts) if firsts else None

    @property
    def con_ids(self) -> list[int]:
        """The instruments with stored data (the others stay quiet)."""
        return sorted(self._streams)

    def install(self, extensions: dict[str, object]) -> None:
        """Make the market-data features use :class:`ReplayQuoteCache` (call once the core exists)."""
        extensions[QUOTE_CACHE_KEY] = ReplayQuoteCache(self)

    # -- time ----------------------------------------------------------------------------------

    def _cycle_time(self, now_ns: int) -> tuple[int, int]:
        """(cycle, replay time) of wall time ``now_ns``."""
        if self.t0_ns is None:
            self.t0_ns = now_ns
        elapsed = max(now_ns - self.t0_ns, 0)
        offset = round(elapsed * self.settings.speed)
        if not self.settings.loop:
            return 0, self.start_ns + offset
        cycle, within = divmod(offset, self.cycle_ns)
        return cycle, self.start_ns + within

    def replay_time(self, now_ns: int) -> int:
        """The stored time that wall time ``now_ns`` replays."""
        return self._cycle_time(now_ns)[1]

    def wall_time(self, cycle: int, t_ns: int) -> int:
        """The wall time at which stored time ``t_ns`` of ``cycle`` is (or was) replayed."""
        t0 = self.t0_ns if self.t0_ns is not None else 0
        return t0 + int((cycle * self.cycle_ns + t_ns - self.start_ns) / self.settings.speed)

    # -- quotes --------------------------------------------------------------------------------

    def _index(self, s: _Stream, replay_ns: int) -> int:
        """The latest event at or before ``replay_ns`` (-1: none yet)."""
        return int(np.searchsorted(s.t, replay_ns, side="right")) - 1

    def _make(self, s: _Stream, cycle: int, i: int) -> Quote:
        f, inst = s.factor, s.inst
        bid, ask, last = float(s.bid[i]), float(s.ask[i]), float(s.last[i])
        if f != 1.0:
            bid, ask, last = (inst.round_price(x * f) for x in (bid, ask, last))
        return Quote(
            inst.conId,
            self.wall_time(cycle, int(s.t[i])),
            bid,
            ask,
            float(s.bid_size[i]),
            float(s.ask_size[i]),
            last,
            float(s.last_size[i]),
            float(s.volume[i]),
            round((bid + ask) / 2.0, inst.decimals + 1),
            cycle * len(s.t) + i,
        )

    def _quiet(self, con_id: int, now_ns: int) -> Quote:
        return Quote(con_id, now_ns, -1.0, -1.0, 0.0, 0.0, -1.0, 0.0, 0.0, -1.0, -1)

    def advance(self, now_ns: int, con_ids: Iterable[int] | None = None) -> list[Quote]:
        """The stored events the replay time passed since the last call, in stored order."""
        cycle, replay = self._cycle_time(now_ns)
        wanted = self._streams.keys() if con_ids is None else [c for c in con_ids if c in self._streams]
        out: list[Quote] = []
        for con_id in wanted:
            s = self._streams[con_id]
            if s.halted_at is not None or not self.universe[con_id].calendar.is_open(now_ns, rth=False):
                continue
            i = self._index(s, replay)
            if i < s.first:
                continue
            done_cycle, done = s.published
            begin = done + 1 if done_cycle == cycle else s.first
            if done_cycle > cycle or begin > i:
                continue
            begin = i if s.skip else max(begin, i + 1 - MAX_QUOTES_PER_STEP)
            s.skip = False
            out.extend(self._make(s, cycle, k) for k in range(begin, i + 1))
            s.published = (cycle, i)
        return out

    def is_open(self, con_id: int, now_ns: int, rth: bool = False) -> bool:
        s = self._streams.get(con_id)
        halted = s is not None and s.halted_at is not None
        return not halted and self.universe[con_id].calendar.is_open(now_ns, rth)

    def _at(self, con_id: int, now_ns: int) -> Quote:
        s = self._streams.get(con_id)
        if s is None:
            return self._quiet(con_id, now_ns)
        cycle, replay = self._cycle_time(now_ns)
        if s.halted_at is not None:
            replay = min(replay, s.halted_at)
        i = self._index(s, replay)
        if i < 0:
            return self._quiet(con_id, now_ns)
        return self._make(s, cycle, i)

    def quote_at(self, con_id: int, t_ns: int) -> Quote:
        """The replayed state at wall time ``t_ns`` (price -1 and sizes 0 before any data)."""
        return self._at(con_id, t_ns)

    def last_quote(self, con_id: int, now_ns: int) -> Quote:
        """The latest replayed quote (frozen at the halt while halted)."""
        return self._at(con_id, now_ns)

    def mark(self, con_id: int, now_ns: int) -> float:
        mid = self.last_quote(con_id, now_ns).mid
        return mid if mid > 0 else self.universe[con_id].price

    def close_price(self, con_id: int, session: Session) -> float:
        """The replayed last trade at the close of ``session`` (MOC / LOC fills)."""
        return self.last_quote(con_id, session.close_ns - 1).last

    def session_stats(self, con_id: int, now_ns: int) -> SessionStats:
        """Open, high, low and volume of the replayed trade date so far, and the previous close."""
        s = self._streams.get(con_id)
        if s is None:
            return SessionStats(-1.0, -1.0, -1.0, -1.0, 0.0)
        replay = self.replay_time(now_ns)
        if s.halted_at is not None:
            replay = min(replay, s.halted_at)
        i = self._index(s, replay)
        if i < 0:
            return SessionStats(-1.0, -1.0, -1.0, -1.0, 0.0)
        f = s.factor
        return SessionStats(
            float(s.open[i]) * f,
            float(s.high[i]) * f,
            float(s.low[i]) * f,
            float(s.prev_close[i]) * f,
            float(s.volume[i]),
        )

    # -- history -------------------------------------------------------------------------------

    def bars(
        self,
        con_id: int,
        end_ns: int,
        duration: str,
        bar_size: str,
        *,
        what_to_show: str = "TRADES",
        use_rth: bool = True,
        now_ns: int | None = None,
    ) -> BarSeries:
        """reqHistoricalData from the store, up to the replay time of ``now_ns`` (no look-ahead).

        ``end_ns`` at or after ``now_ns`` means "now"; an earlier one is read as a replay time.
        """
        inst = self.universe.get(con_id)
        if inst is None:
            raise HistoricalDataError(200, "No security definition has been found for the request")
        what = what_to_show.upper()
        if what not in WHAT_TO_SHOW:
            raise HistoricalDataError(
                321, f"Error validating request.-'bP' : cause - whatToShow {what_to_show!r} is not supported"
            )
        check_bar_size(bar_size)
        amount, unit = parse_duration(duration)
        now = end_ns if now_ns is None else now_ns
        replay_now = self.replay_time(now)
        end = replay_now if end_ns >= now else min(end_ns, replay_now)
        start = duration_start(inst, end, amount, unit, use_rth)
        seconds = BAR_SECONDS.get(bar_size)
        if seconds is not None and (end - start) // (seconds * NS) > self.config.max_bars:
            raise HistoricalDataError(
                162, "Historical Market Data Service error message:Time length exceed max."
            )
        frame: pd.DataFrame | None = None
        if self.store.bars_range(con_id, bar_size) is not None:
            frame = self._stored_bars(con_id, bar_size, start, end)
        elif self.store.ticks_range(con_id) is not None:
            frame = self._tick_bars(inst, bar_size, what, start, end)
        if frame is None or frame.empty:
            raise HistoricalDataError(
                162,
                f"Historical Market Data Service error message:HMDS query returned no data: "
                f"{inst.localSymbol}@{inst.exchange} {what.capitalize()}",
            )
        return self._series(inst, frame, bar_size, what)

    def _stored_bars(self, con_id: int, bar_size: str, start: int, end: int) -> pd.DataFrame:
        frame: pd.DataFrame = self.store.read_bars(con_id, bar_size, _ts(start), _ts(end))
        index = pd.DatetimeIndex(frame.index)
        if bar_size in PERIOD_BARS:
            ends = index + _PERIOD_OFFSETS[PERIOD_BARS[bar_size]]
        else:
            ends = index + pd.Timedelta(_bar_ns(bar_size), unit="ns")
        complete = (_ns(index) >= start) & (_ns(ends) <= end)
        return frame[complete]

    def _tick_bars(self, inst: Instrument, bar_size: str, what: str, start: int, end: int) -> pd.DataFrame:
        ticks: pd.DataFrame = self.store.read_ticks(inst.conId, _ts(start), _ts(end))
        times = _ns(ticks.index)
        ticks = ticks[(times >= start) & (times <= end)]
        if what == "TRADES":
            ticks = ticks[ticks["last"].notna()]
            price = ticks["last"]
            size = ticks["last_size"].fillna(0.0)
        else:
            bid, ask = ticks["bid"].ffill(), ticks["ask"].ffill()
            price = {"MIDPOINT": (bid + ask) / 2.0, "BID": bid, "ASK": ask}[what].dropna()
            size = pd.Series(0.0, index=price.index)
        if price.empty:
            return pd.DataFrame()
        index = pd.DatetimeIndex(price.index)
        if bar_size in PERIOD_BARS:
            local = index.tz_convert(inst.timeZone)
            period = {"D": "D", "W": "W", "M": "M"}[PERIOD_BARS[bar_size]]
            start_local = local.tz_localize(None).to_period(period).start_time
            keys = _ns(pd.DatetimeIndex(start_local).tz_localize(inst.timeZone, nonexistent="shift_forward"))
        else:
            bar_ns = _bar_ns(bar_size)
            keys = _ns(index) // bar_ns * bar_ns
        grouped = pd.DataFrame({"p": price.to_numpy(), "v": size.to_numpy(), "pv": (price * size).to_numpy()})
        groups = grouped.groupby(keys, sort=True)
        out = pd.DataFrame(
            {
                "open": groups["p"].first(),
                "high": groups["p"].max(),
                "low": groups["p"].min(),
                "close": groups["p"].last(),
                "volume": groups["v"].sum(),
                "wap": groups["pv"].sum() / groups["v"].sum().where(lambda v: v > 0),
                "count": groups["p"].count(),
            }
        )
        out.index = pd.DatetimeIndex(pd.to_datetime(out.index.to_numpy(dtype=np.int64), unit="ns", utc=True))
        return out

    @staticmethod
    def _series(inst: Instrument, frame: pd.DataFrame, bar_size: str, what: str) -> BarSeries:
        n = len(frame)
        time_ns = _ns(frame.index)
        trades = what == "TRADES"
        volume = frame["volume"].to_numpy(dtype=np.float64) if trades else np.full(n, -1.0)
        wap_raw = frame["wap"].to_numpy(dtype=np.float64) if "wap" in frame else np.full(n, math.nan)
        close = frame["close"].to_numpy(dtype=np.float64)
        wap = np.where(np.isnan(wap_raw), close, wap_raw) if trades else np.full(n, -1.0)
        count = frame["count"].to_numpy(dtype=np.int64) if trades else np.full(n, -1, dtype=np.int64)
        daily = bar_size in PERIOD_BARS
        dates = tuple(
            pd.DatetimeIndex(pd.to_datetime(time_ns + 12 * 3600 * NS, unit="ns", utc=True))
            .tz_convert(inst.timeZone)
            .date
        )
        return BarSeries(
            inst.conId,
            bar_size,
            what,
            daily,
            time_ns,
            frame["open"].to_numpy(dtype=np.float64),
            frame["high"].to_numpy(dtype=np.float64),
            frame["low"].to_numpy(dtype=np.float64),
            close,
            volume,
            wap,
            count,
            dates if daily else (),
        )

    def head_timestamp(self, con_id: int, use_rth: bool = True) -> int:
        """The first stored time of ``con_id`` (bars of ``bar_size`` or ticks); else the start."""
        found = (
            self.store.bars_range(con_id, self.settings.bar_size)
            if self.settings.kind == "bars"
            else self.store.ticks_range(con_id)
        )
        return int(pd.Timestamp(found[0]).value) if found is not None else self.start_ns

    # -- scenario controls ---------------------------------------------------------------------

    def _stream_of(self, con_id: int, action: str) -> _Stream:
        s = self._streams.get(con_id)
        if s is None:
            raise FaultError(
                f"replay mode: {self.universe[con_id].localSymbol} has no stored data to {action}"
            )
        return s

    def shock(self, con_id: int, percent: float, now_ns: int) -> None:
        """Scale the replayed prices of ``con_id`` by ``1 + percent / 100`` from now on (cumulative);
        the next :meth:`advance` republishes the current quote."""
        if percent <= -100:
            raise ValueError("a shock cannot take the price to zero or below")
        s = self._stream_of(con_id, "shock")
        s.factor *= 1.0 + percent / 100.0
        self._shock_log.setdefault(con_id, []).append((self.step_of(now_ns), math.log1p(percent / 100.0)))
        cycle, done = s.published
        s.published = (cycle, done - 1) if done > s.first else (-1, -1)

    def halt(self, con_id: int, now_ns: int) -> None:
        s = self._stream_of(con_id, "halt")
        if s.halted_at is None:
            s.halted_at = self.replay_time(now_ns)

    def resume(self, con_id: int) -> None:
        s = self._streams.get(con_id)
        if s is not None and s.halted_at is not None:
            s.halted_at = None
            s.skip = True

    def is_halted(self, con_id: int) -> bool:
        s = self._streams.get(con_id)
        return s is not None and s.halted_at is not None

    def to_dict(self) -> dict[str, Any]:
        """Shocks and halts in :meth:`Market.to_dict`'s shape (so either mode can load the state)."""
        return {
            "shocks": {str(c): [[k, f] for k, f in v] for c, v in self._shock_log.items()},
            "halts": {
                str(c): self.step_of(s.halted_at) for c, s in self._streams.items() if s.halted_at is not None
            },
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        """Shocks (their log factors, whatever their step) and halts (frozen at ``start``) of a
        saved state."""
        self._shock_log.clear()
        for s in self._streams.values():
            s.factor, s.halted_at = 1.0, None
            s.published = (-1, -1)
        for c, entries in data.get("shocks", {}).items():
            shocked = self._streams.get(int(c))
            if shocked is None:
                continue
            for k, f in entries:
                shocked.factor *= math.exp(float(f))
                self._shock_log.setdefault(int(c), []).append((int(k), float(f)))
        for c in data.get("halts", {}):
            halted = self._streams.get(int(c))
            if halted is not None:
                halted.halted_at = self.start_ns


def _ts(t_ns: int) -> pd.Timestamp:
    return pd.Timestamp(t_ns, unit="ns", tz=UTC)


class ReplayQuoteCache(QuoteCache):
    """The market-data features' quote cache over a :class:`ReplayMarket` (no price process)."""

    market: ReplayMarket

    def __init__(self, market: ReplayMarket) -> None:
        super().__init__(market)
        self.market = market

    def quote(self, con_id: int, t_ns: int, *, volume: bool = True) -> Quote:
        q = self.market.quote_at(con_id, t_ns)
        if not volume and q.volume:
            return Quote(
                q.conId, q.time_ns, q.bid, q.ask, q.bidSize, q.askSize, q.last, q.lastSize, 0.0, q.mid, q.step
            )
        return q

    def last_quote(self, con_id: int, now_ns: int) -> Quote:
        return self.market.last_quote(con_id, now_ns)

    def session_stats(self, con_id: int, t_ns: int) -> SessionStats:
        return self.market.session_stats(con_id, t_ns)


def resolved_uri(uri: str, data_dir: Path) -> str:
    """``lmdb://<relative>`` under ``data_dir`` (like the trader's ``StoreConfig.resolved_uri``)."""
    scheme, sep, rest = uri.partition("://")
    if scheme == "lmdb" and sep and not rest.startswith("/"):
        return f"lmdb://{(data_dir / rest).as_posix()}"
    return uri


def open_replay_market(
    universe: Universe, config: MarketConfig, section: Any, data_dir: Path
) -> ReplayMarket:
    """The market of ``market.source: replay`` (``section``: the config's ``market.replay``)."""
    settings = ReplaySettings(
        start_ns=parse_time(section.start) if section.start else None,
        speed=section.speed,
        kind=section.kind,
        bar_size=section.bar_size,
        loop=section.loop,
    )
    return ReplayMarket.open(universe, config, resolved_uri(section.uri, data_dir), settings)
