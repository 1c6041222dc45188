"""Cheap quotes and session statistics for market-data subscriptions, exchange-wide.

:meth:`Market.last_quote`, :meth:`Market.quote_at` and :meth:`Market.session_stats` aggregate the
whole trading session on every call (volume, open/high/low) — tens of milliseconds at fine steps,
paid for every new subscription. :class:`QuoteCache` gives the same values (tested equal) from
running per-session aggregates that only ever add the steps since the previous query, so a burst of
subscriptions costs microseconds each. Queries at moving times (live "now", delayed "now - 15 min")
each extend their own aggregate; a query further back than every aggregate builds a new one.
Uncommon cases (a halted instrument, several sessions on one trade date, history start inside the
last sessions) are delegated to the :class:`Market` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from trader.exchange.instruments import Instrument
from trader.exchange.market import Market, Quote, SessionStats
from trader.exchange.process import spreads, trade_at_ask, trade_sizes
from trader.exchange.sessions import Session

EXTENSION_KEY: Final = "market.quotes"
AGGREGATES_PER_INSTRUMENT: Final = 3


@dataclass(slots=True)
class _Aggregate:
    """Last-trade open/high/low (in price units) and volume of steps [k0, k) of one session."""

    session: Session
    k0: int
    k: int
    open: int = 0
    high: int = 0
    low: int = 0
    volume: int = 0


class QuoteCache:
    """Quotes at any step and running session statistics (see the module docstring)."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.step_ns = market.step_ns
        self._aggregates: dict[int, list[_Aggregate]] = {}

    # -- prices ---------------------------------------------------------------------------------

    @staticmethod
    def price(inst: Instrument, units: int, denominator: int = 1) -> float:
        """Price of ``units`` ticks (half ticks with ``denominator`` 2), exactly as the market."""
        per_unit = inst.ticks_per_unit
        if per_unit:
            return units / (per_unit * denominator)
        return round(units * inst.minTick / denominator, inst.decimals + 1)

    def quote(self, con_id: int, t_ns: int, *, volume: bool = True) -> Quote:
        """:meth:`Market.quote_at` (``volume=False``: volume 0, no aggregation at all)."""
        inst = self.market.universe[con_id]
        k = t_ns // self.step_ns
        s = self.market.process.step(con_id, k)
        session_volume = 0
        if volume:
            session = inst.calendar.session_at(t_ns, rth=False)
            if session is not None:
                session_volume = self._aggregate(inst, session, k + 1).volume
        return Quote(
            con_id,
            t_ns,
            self.price(inst, s.bid_ticks),
            self.price(inst, s.ask_ticks),
            float(s.bid_size),
            float(s.ask_size),
            self.price(inst, s.last_ticks),
            float(s.trade_size),
            float(session_volume),
            self.price(inst, 2 * s.bid_ticks + s.spread, 2),
            k,
        )

    def last_quote(self, con_id: int, now_ns: int) -> Quote:
        """:meth:`Market.last_quote`."""
        market = self.market
        if market.is_halted(con_id):
            return market.last_quote(con_id, now_ns)
        cal = market.universe[con_id].calendar
        t = now_ns
        if not cal.is_open(now_ns, rth=False):
            previous = cal.previous_session(now_ns, rth=False)
            if previous is not None:
                t = previous.close_ns - 1
        return self.quote(con_id, t)

    def session_stats(self, con_id: int, t_ns: int) -> SessionStats:
        """:meth:`Market.session_stats` at ``t_ns``."""
        market = self.market
        inst = market.universe[con_id]
        sessions = inst.calendar.last_sessions(t_ns + 1, 2, rth=False)
        if (
            not sessions
            or sessions[0].open_ns < market.history_start_ns
            or (len(sessions) == 2 and sessions[0].trade_date == sessions[1].trade_date)
        ):
            return market.session_stats(con_id, t_ns)
        last = sessions[-1]
        k_end = -(-min(last.close_ns, t_ns + 1) // self.step_ns)
        agg = self._aggregate(inst, last, k_end)
        if agg.k <= agg.k0:
            return market.session_stats(con_id, t_ns)
        op, hi, lo = (self.price(inst, u) for u in (agg.open, agg.high, agg.low))
        close = market.close_price(con_id, sessions[0]) if len(sessions) == 2 else op
        return SessionStats(op, hi, lo, close, float(agg.volume))

    # -- aggregates -----------------------------------------------------------------------------

    def _aggregate(self, inst: Instrument, session: Session, k_end: int) -> _Aggregate:
        """The aggregate of ``session`` up to step ``k_end`` (exclusive), extended or built."""
        k0 = -(-session.open_ns // self.step_ns)
        k_end = max(k_end, k0)
        aggregates = self._aggregates.setdefault(inst.conId, [])
        best: _Aggregate | None = None
        for agg in aggregates:
            if agg.session == session and agg.k <= k_end and (best is None or agg.k > best.k):
                best = agg
        if best is None:
            best = _Aggregate(session, k0, k0)
            if len(aggregates) >= AGGREGATES_PER_INSTRUMENT:
                aggregates.pop(0)  # the least recently used
        else:
            aggregates.remove(best)
        aggregates.append(best)
        if best.k < k_end:
            self._extend(inst, best, k_end)
        return best

    def _extend(self, inst: Instrument, agg: _Aggregate, k_end: int) -> None:
        bid, bits = self.market.process.steps(inst.conId, agg.k, k_end)
        units = bid + spreads(bits, inst.spreadTicks) * trade_at_ask(bits)
        high, low = int(units.max()), int(units.min())
        if agg.k == agg.k0:
            agg.open, agg.high, agg.low = int(units[0]), high, low
        else:
            agg.high, agg.low = max(agg.high, high), min(agg.low, low)
        agg.volume += int(trade_sizes(bits, inst.displaySize).sum())
        agg.k = k_end


def quote_cache_of(extensions: dict[str, object], market: Market) -> QuoteCache:
    """The exchange-wide cache in ``core.extensions`` (created on first use)."""
    cache = extensions.get(EXTENSION_KEY)
    if not isinstance(cache, QuoteCache) or cache.market is not market:
        cache = QuoteCache(market)
        extensions[EXTENSION_KEY] = cache
    return cache
