"""Synthetic market data: live quotes and historical bars of one deterministic process.

``Market.advance(now_ns)`` returns the quotes due at ``now_ns`` (one per instrument per step at
most, throttled to ``tick_rate`` per second, only inside trading sessions and not while halted);
``Market.bars(...)`` answers reqHistoricalData from the same arrays, so a strategy warmed up on
history continues seamlessly into the live stream. Same seed and same query times give the same
quotes, whatever the order or the number of queries. Nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from trader.exchange.bars import (
    BarSeries,
    Daily,
    DailyKey,
    HistoricalDataError,
    head_timestamp,
    historical_bars,
)
from trader.exchange.instruments import Instrument, Universe
from trader.exchange.process import PriceProcess
from trader.exchange.sessions import NS, OpenState, Session

__all__ = ["BarSeries", "HistoricalDataError", "Market", "MarketConfig", "Quote", "SessionStats"]


def _date_ns(text: str) -> int:
    day = date.fromisoformat(text)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """Knobs of the synthetic market; (seed, step_ms, volatility_multiplier, anchor) fix the data."""

    seed: int = 1
    step_ms: int = 1000
    """Resolution of the process: one step per this many milliseconds (must divide a day)."""
    tick_rate: float = 1.0
    """Quotes per second per instrument (at most one per step)."""
    volatility_multiplier: float = 1.0
    anchor: str = "2026-01-01"
    """UTC midnight at which every instrument is at its universe price."""
    history_start: str = "2016-01-01"
    """Head timestamp: no bars before this date."""
    cache_blocks: int = 96
    """Day-blocks kept in memory (about 1 MB each at 1 s steps)."""
    max_bars: int = 100_000
    """Intraday requests that would make more bars are refused (162, like TWS)."""

    def __post_init__(self) -> None:
        if self.step_ms <= 0 or 86_400_000 % self.step_ms:
            raise ValueError(f"step_ms must divide a day, got {self.step_ms}")
        if not self.tick_rate > 0:
            raise ValueError(f"tick_rate must be positive, got {self.tick_rate}")
        if not 0 < self.volatility_multiplier <= 100:
            raise ValueError(f"volatility_multiplier must be in (0, 100], got {self.volatility_multiplier}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        _date_ns(self.anchor)
        _date_ns(self.history_start)


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and last trade of one instrument at one step. Sizes are in units (shares,
    contracts, currency units); ``volume`` is cumulative over the current trading session."""

    conId: int
    time_ns: int
    bid: float
    ask: float
    bidSize: float
    askSize: float
    last: float
    lastSize: float
    volume: float
    mid: float
    step: int


@dataclass(frozen=True, slots=True)
class SessionStats:
    open: float
    high: float
    low: float
    close: float
    """The previous session's close (TWS's "close" tick)."""
    volume: float


@dataclass(slots=True)
class _Live:
    """Per-instrument state of the live stream."""

    inst: Instrument
    per_unit: int
    hours: OpenState
    last_step: int = -1
    last_slot: int = -1
    session_close_ns: int = -1
    volume_from: int = 0
    volume_upto: int = 0
    volume: int = 0
    halted_step: int | None = None


class Market:
    """Live quotes, snapshots, marks, historical bars, shocks and halts for a universe."""

    def __init__(self, universe: Universe, config: MarketConfig | None = None) -> None:
        self.universe = universe
        self.config = config or MarketConfig()
        cfg = self.config
        self.step_ns = cfg.step_ms * 1_000_000
        self.tick_interval_ns = max(self.step_ns, int(NS / cfg.tick_rate))
        self.process = PriceProcess(
            universe,
            cfg.seed,
            self.step_ns,
            anchor_ns=_date_ns(cfg.anchor),
            volatility_multiplier=cfg.volatility_multiplier,
            cache_blocks=cfg.cache_blocks,
        )
        self.history_start_ns = _date_ns(cfg.history_start)
        self._live = {i.conId: _Live(i, i.ticks_per_unit, OpenState(i.calendar)) for i in universe}
        self._daily_cache: dict[DailyKey, Daily] = {}

    # -- quotes --------------------------------------------------------------------------------

    def step_of(self, t_ns: int) -> int:
        return t_ns // self.step_ns

    def _price(self, live: _Live, units: int, denominator: int = 1) -> float:
        if live.per_unit:
            return units / (live.per_unit * denominator)
        return round(units * live.inst.minTick / denominator, live.inst.decimals + 1)

    def _quote(self, live: _Live, k: int, time_ns: int, volume: int) -> Quote:
        s = self.process.step(live.inst.conId, k)
        return Quote(
            live.inst.conId,
            time_ns,
            self._price(live, s.bid_ticks),
            self._price(live, s.ask_ticks),
            float(s.bid_size),
            float(s.ask_size),
            self._price(live, s.last_ticks),
            float(s.trade_size),
            float(volume),
            self._price(live, 2 * s.bid_ticks + s.spread, 2),
            k,
        )

    def _session_volume(self, con_id: int, k: int, t_ns: int) -> int:
        session = self.universe[con_id].calendar.session_at(t_ns, rth=False)
        if session is None:
            return 0
        return self.process.volume(con_id, -(-session.open_ns // self.step_ns), k + 1)

    def quote_at(self, con_id: int, t_ns: int) -> Quote:
        """The state of the process at ``t_ns`` (whatever the session or halt), with the volume of
        the trading session containing ``t_ns`` so far (0 outside sessions)."""
        live = self._live[con_id]
        k = self.step_of(t_ns)
        return self._quote(live, k, t_ns, self._session_volume(con_id, k, t_ns))

    def advance(self, now_ns: int, con_ids: Iterable[int] | None = None) -> list[Quote]:
        """Quotes due at ``now_ns``: for each open, non-halted instrument whose step changed and
        whose tick interval elapsed since its last quote."""
        k = now_ns // self.step_ns
        slot = now_ns // self.tick_interval_ns
        lives = self._live.values() if con_ids is None else [self._live[c] for c in con_ids]
        out: list[Quote] = []
        for live in lives:
            if live.last_step == k or live.last_slot == slot or live.halted_step is not None:
                continue
            if not live.hours.is_open(now_ns, False):
                continue
            con_id = live.inst.conId
            if now_ns >= live.session_close_ns or k < live.volume_from or k + 1 < live.volume_upto:
                session = live.inst.calendar.session_at(now_ns, rth=False)
                assert session is not None
                live.session_close_ns = session.close_ns
                live.volume_from = live.volume_upto = -(-session.open_ns // self.step_ns)
                live.volume = 0
            if k + 1 > live.volume_upto:
                live.volume += self.process.volume(con_id, live.volume_upto, k + 1)
                live.volume_upto = k + 1
            out.append(self._quote(live, k, now_ns, live.volume))
            live.last_step, live.last_slot = k, slot
        return out

    def is_open(self, con_id: int, now_ns: int, rth: bool = False) -> bool:
        """In a trading (``rth=False``) or liquid (``rth=True``) session and not halted."""
        live = self._live[con_id]
        return live.halted_step is None and live.hours.is_open(now_ns, rth)

    def last_quote(self, con_id: int, now_ns: int) -> Quote:
        """The latest quote published at or before ``now_ns``: the current step when open, the last
        step of the previous session when closed, the step of the halt while halted."""
        live = self._live[con_id]
        inst = live.inst
        if live.hours.is_open(now_ns, False):
            t = now_ns
        else:
            previous = inst.calendar.previous_session(now_ns, rth=False)
            t = previous.close_ns - 1 if previous is not None else now_ns
        k = self.step_of(t)
        if live.halted_step is not None and live.halted_step < k:
            k = live.halted_step
            t = k * self.step_ns
        return self._quote(live, k, t, self._session_volume(con_id, k, t))

    def mark(self, con_id: int, now_ns: int) -> float:
        """The price positions are valued at: the midpoint of :meth:`last_quote`."""
        return self.last_quote(con_id, now_ns).mid

    def close_price(self, con_id: int, session: Session) -> float:
        """The closing price of a session: the last trade of its last step (MOC / LOC fills)."""
        live = self._live[con_id]
        k = -(-session.close_ns // self.step_ns) - 1
        return self._price(live, self.process.step(con_id, k).last_ticks)

    def session_stats(self, con_id: int, now_ns: int) -> SessionStats:
        """Open, high, low (last trades) and volume of the current or last trading session, and the
        close of the session before it: what TWS sends as ticks 14, 6, 7, 8 and 9."""
        bars = self.bars(con_id, now_ns + 1, "2 D", "1 day", use_rth=False, now_ns=now_ns)
        prev_close = float(bars.close[-2]) if len(bars) > 1 else float(bars.open[-1])
        return SessionStats(
            float(bars.open[-1]),
            float(bars.high[-1]),
            float(bars.low[-1]),
            prev_close,
            float(bars.volume[-1]),
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
        """reqHistoricalData: bars of the steps starting in [end - duration, end).

        ``duration`` is ``'N S'``, ``'N D'`` (N sessions), ``'N W'``, ``'N M'`` or ``'N Y'``;
        ``bar_size`` one of :data:`trader.exchange.bars.BAR_SIZES`; ``what_to_show`` TRADES,
        MIDPOINT, BID or ASK. ``end_ns`` is clamped to ``now_ns`` (the future is not history; pass
        ``now_ns + 1`` to include the step at ``now_ns``). Raises :class:`HistoricalDataError`
        (code + text to send as is) for bad requests or when there is no data.
        """
        inst = self.universe.get(con_id)
        if inst is None:
            raise HistoricalDataError(200, "No security definition has been found for the request")
        if now_ns is not None:
            end_ns = min(end_ns, now_ns + 1)
        head = head_timestamp(inst, self.history_start_ns, use_rth)
        return historical_bars(
            self.process,
            inst,
            end_ns,
            duration,
            bar_size,
            what_to_show=what_to_show,
            use_rth=use_rth,
            head_ns=head,
            max_bars=self.config.max_bars,
            daily_cache=self._daily_cache,
        )

    def head_timestamp(self, con_id: int, use_rth: bool = True) -> int:
        """reqHeadTimeStamp: the earliest instant with bars."""
        return head_timestamp(self.universe[con_id], self.history_start_ns, use_rth)

    # -- scenario controls -----------------------------------------------------------------------

    def shock(self, con_id: int, percent: float, now_ns: int) -> None:
        """Move ``con_id`` by ``percent`` % at once, from the current step on; the process then
        continues from the shocked level. The next :meth:`advance` republishes the quote."""
        self.process.shock(con_id, self.step_of(now_ns), percent / 100.0)
        for key in [k for k in self._daily_cache if k[0] == con_id]:
            del self._daily_cache[key]
        live = self._live[con_id]
        live.last_step = live.last_slot = -1
        live.session_close_ns = -1

    def halt(self, con_id: int, now_ns: int) -> None:
        """Stop quoting ``con_id`` (orders do not fill) until :meth:`resume`."""
        live = self._live[con_id]
        if live.halted_step is None:
            live.halted_step = self.step_of(now_ns)

    def resume(self, con_id: int) -> None:
        live = self._live[con_id]
        live.halted_step = None
        live.last_step = live.last_slot = -1

    def is_halted(self, con_id: int) -> bool:
        return self._live[con_id].halted_step is not None

    def to_dict(self) -> dict[str, Any]:
        """Scenario state (shocks and halts), JSON-able; the rest follows from the config."""
        return {
            "shocks": {str(c): [[s, f] for s, f in v] for c, v in self.process.shocks().items()},
            "halts": {
                str(c): live.halted_step for c, live in self._live.items() if live.halted_step is not None
            },
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        shocks = {int(c): [(int(s), float(f)) for s, f in v] for c, v in data.get("shocks", {}).items()}
        self.process.restore_shocks({c: v for c, v in shocks.items() if c in self.universe})
        self._daily_cache.clear()
        for live in self._live.values():
            live.halted_step = None
            live.last_step = live.last_slot = live.session_close_ns = -1
        for c, step in data.get("halts", {}).items():
            if int(c) in self._live:
                self._live[int(c)].halted_step = int(step)
