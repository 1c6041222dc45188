"""The MARKET DATA feature: contract data, streaming quotes, tick-by-tick, bars and history.

``MarketDataFeature()`` (``name = "market"``) answers reqContractDetails, reqMatchingSymbols,
reqMarketRule, reqSmartComponents (:mod:`trader.exchange.feature_contracts`), reqMarketDataType,
reqMktData (streaming and snapshot) / cancelMktData, reqTickByTickData / cancel, and through
:mod:`trader.exchange.feature_history` reqHistoricalData (keepUpToDate, SCHEDULE) / cancel,
reqHistoricalTicks, reqHeadTimeStamp / cancel, reqRealTimeBars / cancel. Per-session state lives in
``session.extensions["market"]`` (:class:`MarketSessionState`); historical pacing is exchange-wide in
``core.extensions["pacing"]``.

Streaming (reqMktData): ``marketDataType`` first, then ``tickReqParams``, then the current values
(bid/ask/last with sizes, volume, open/high/low/close, last timestamp), then on every market step
the values that changed: bid/ask when price or size changed, last + size on every quote (each
quote carries a trade), volume, tick 45 when the second changes, high/low when exceeded. Generic
ticks: 49 (halted: sent as its initial state; halts and resumes are sent in any case), 233
(RTVolume, tick 48), 236 (shortable 46 / shortable shares 89), 221 (mark price 37); others are
ignored. A snapshot sends the same initial values and then ``tickSnapshotEnd``.

Market data types (reqMarketDataType, applied to later requests and re-applied to running ones):

* 1 live: live ticks. On a closed market only last, the session statistics and the timestamp
  (no bid/ask), like TWS outside hours.
* 2 frozen: on an open market the same as live (``marketDataType`` 1); on a closed one the last
  quote of the previous session incl. bid/ask with ``marketDataType`` 2, switching to 1 when
  quotes resume.
* 3 delayed: the same process :data:`DELAY_NS` (15 minutes) behind, with the delayed tick types
  66..76, 88 (timestamp) and 90 (halted); quotes only while the instrument was open 15 minutes ago.
* 4 delayed-frozen: delayed when the delayed market is open (``marketDataType`` 3), else the last
  delayed quote with ``marketDataType`` 4. A halt shows at once in delayed data too.

Throughput: frames of a subscription are built from per-subscription prefixes precomputed at
subscribe time and all frames of one step go to the session in one ``send``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from trader.exchange import feature_contracts as contracts
from trader.exchange import feature_history as history
from trader.exchange.instruments import Instrument
from trader.exchange.market import Market, Quote
from trader.exchange.protocol import (
    ApiRequest,
    CancelHeadTimeStamp,
    CancelHistoricalData,
    CancelMktData,
    CancelRealTimeBars,
    CancelTickByTickData,
    ReqContractDetails,
    ReqHeadTimeStamp,
    ReqHistoricalData,
    ReqHistoricalTicks,
    ReqMarketDataType,
    ReqMarketRule,
    ReqMatchingSymbols,
    ReqMktData,
    ReqRealTimeBars,
    ReqSmartComponents,
    ReqTickByTickData,
    encode_market_data_type,
    encode_tick_req_params,
    encode_tick_snapshot_end,
)
from trader.exchange.protocol.ids import OutgoingMessageId as O
from trader.exchange.quote_cache import QuoteCache, quote_cache_of
from trader.exchange.session_api import Handler, Session
from trader.exchange.sessions import OpenState

NS: Final = 1_000_000_000
LIVE, FROZEN, DELAYED, DELAYED_FROZEN = 1, 2, 3, 4
DELAY_NS: Final = 15 * 60 * NS
"""How far delayed market data (types 3 and 4) lags the live market."""
MAX_HISTORY_TICKS: Final = 1000
"""reqTickByTickData numberOfTicks is capped to this many historical ticks (one session at most)."""
TICK_BY_TICK_TYPES: Final = {"Last": 1, "AllLast": 2, "BidAsk": 3, "MidPoint": 4}
EXTENSION_KEY: Final = "market"
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class TickIds:
    """The tick type numbers of one market data family (live or delayed)."""

    bid: int
    ask: int
    last: int
    bid_size: int
    ask_size: int
    last_size: int
    high: int
    low: int
    volume: int
    close: int
    open: int
    timestamp: int
    halted: int


LIVE_TICKS: Final = TickIds(1, 2, 4, 0, 3, 5, 6, 7, 8, 9, 14, 45, 49)
DELAYED_TICKS: Final = TickIds(66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 88, 90)


def _frame(payload: str) -> bytes:
    data = payload.encode()
    return _LEN.pack(len(data)) + data


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


@dataclass(slots=True, eq=False)
class _Ticker:
    """One reqMktData streaming subscription (also used, unregistered, for a snapshot)."""

    req_id: int
    inst: Instrument
    requested: int
    generic: frozenset[str]
    delayed: bool = False
    waiting: bool = False
    """Frozen values were sent; the next quote switches ``marketDataType`` to the streaming type."""
    ids: TickIds = LIVE_TICKS
    hours: OpenState | None = None
    p_bid: str = ""
    p_ask: str = ""
    p_last: str = ""
    p_high: str = ""
    p_low: str = ""
    p_volume: str = ""
    p_timestamp: str = ""
    bid: float = math.nan
    ask: float = math.nan
    bid_size: float = math.nan
    ask_size: float = math.nan
    high: float = math.nan
    low: float = math.nan
    volume: float = -1.0
    second: int = -1
    halted: bool | None = None
    slot: int = -1
    cache: QuoteCache | None = None

    def configure(self, requested: int) -> None:
        """Set the requested type and precompute the frame prefixes of its tick family."""
        self.requested = requested
        self.delayed = requested in (DELAYED, DELAYED_FROZEN)
        self.ids = ids = DELAYED_TICKS if self.delayed else LIVE_TICKS
        r = self.req_id
        self.p_bid = f"{int(O.TICK_PRICE)}\x006\x00{r}\x00{ids.bid}\x00"
        self.p_ask = f"{int(O.TICK_PRICE)}\x006\x00{r}\x00{ids.ask}\x00"
        self.p_last = f"{int(O.TICK_PRICE)}\x006\x00{r}\x00{ids.last}\x00"
        self.p_high = f"{int(O.TICK_PRICE)}\x006\x00{r}\x00{ids.high}\x00"
        self.p_low = f"{int(O.TICK_PRICE)}\x006\x00{r}\x00{ids.low}\x00"
        self.p_volume = f"{int(O.TICK_SIZE)}\x006\x00{r}\x00{ids.volume}\x00"
        self.p_timestamp = f"{int(O.TICK_STRING)}\x006\x00{r}\x00{ids.timestamp}\x00"
        self.bid = self.ask = self.bid_size = self.ask_size = self.high = self.low = math.nan
        self.volume, self.second, self.halted, self.slot, self.waiting = -1.0, -1, None, -1, False

    def new_session(self, q: Quote, out: list[bytes]) -> None:
        """The volume went back: a new session started. Its open, the previous close, and the
        high/low so far (from the quote cache; from this trade without one)."""
        if self.cache is None:
            self.high = self.low = math.nan
            return
        stats = self.cache.session_stats(self.inst.conId, q.time_ns)
        ids = self.ids
        out.append(self.price(ids.close, stats.close))
        out.append(self.price(ids.open, stats.open))
        out.append(self.price(ids.high, stats.high))
        out.append(self.price(ids.low, stats.low))
        self.high, self.low = stats.high, stats.low

    # -- frames ------------------------------------------------------------------------------

    def price(self, tick_type: int, price: float, size: float = 0.0) -> bytes:
        return _frame(
            f"{int(O.TICK_PRICE)}\x006\x00{self.req_id}\x00{tick_type}\x00{price!r}\x00{_num(size)}\x000\x00"
        )

    def generic_tick(self, tick_type: int, value: float) -> bytes:
        return _frame(f"{int(O.TICK_GENERIC)}\x006\x00{self.req_id}\x00{tick_type}\x00{_num(value)}\x00")

    def string_tick(self, tick_type: int, value: str) -> bytes:
        return _frame(f"{int(O.TICK_STRING)}\x006\x00{self.req_id}\x00{tick_type}\x00{value}\x00")

    def quote(self, q: Quote, out: list[bytes], *, bid_ask: bool = True) -> None:
        """The frames of the values of ``q`` that changed since the last quote."""
        if bid_ask:
            if q.bid != self.bid or q.bidSize != self.bid_size:
                self.bid, self.bid_size = q.bid, q.bidSize
                out.append(_frame(f"{self.p_bid}{q.bid!r}\x00{_num(q.bidSize)}\x001\x00"))
            if q.ask != self.ask or q.askSize != self.ask_size:
                self.ask, self.ask_size = q.ask, q.askSize
                out.append(_frame(f"{self.p_ask}{q.ask!r}\x00{_num(q.askSize)}\x001\x00"))
        last = q.last
        out.append(_frame(f"{self.p_last}{last!r}\x00{_num(q.lastSize)}\x000\x00"))
        if q.volume != self.volume:
            if q.volume < self.volume:
                self.new_session(q, out)
            self.volume = q.volume
            out.append(_frame(f"{self.p_volume}{_num(q.volume)}\x00"))
        if not last <= self.high:  # also when high is NaN
            self.high = last
            out.append(_frame(f"{self.p_high}{last!r}\x000\x000\x00"))
        if not last >= self.low:
            self.low = last
            out.append(_frame(f"{self.p_low}{last!r}\x000\x000\x00"))
        second = q.time_ns // NS
        if second != self.second:
            self.second = second
            out.append(_frame(f"{self.p_timestamp}{second}\x00"))
        if "233" in self.generic:
            ms = q.time_ns // 1_000_000
            out.append(self.string_tick(48, f"{last!r};{_num(q.lastSize)};{ms};{_num(q.volume)};;false"))
        if "221" in self.generic:
            out.append(self.price(37, q.mid))


@dataclass(slots=True, eq=False)
class _TickByTick:
    req_id: int
    inst: Instrument
    kind: int
    ignore_size: bool
    prefix: str
    exchange: str
    last: tuple[float, ...] = ()

    def quote(self, q: Quote, out: list[bytes]) -> None:
        second = q.time_ns // NS
        if self.kind in (1, 2):
            out.append(
                _frame(
                    f"{self.prefix}{second}\x00{q.last!r}\x00{_num(q.lastSize)}\x000\x00{self.exchange}\x00\x00"
                )
            )
        elif self.kind == 3:
            key = (q.bid, q.ask) if self.ignore_size else (q.bid, q.ask, q.bidSize, q.askSize)
            if key != self.last:
                self.last = key
                out.append(
                    _frame(
                        f"{self.prefix}{second}\x00{q.bid!r}\x00{q.ask!r}\x00"
                        f"{_num(q.bidSize)}\x00{_num(q.askSize)}\x000\x00"
                    )
                )
        elif (q.mid,) != self.last:
            self.last = (q.mid,)
            out.append(_frame(f"{self.prefix}{second}\x00{q.mid!r}\x00"))


@dataclass(slots=True)
class MarketSessionState:
    """Everything the market feature keeps for one session."""

    market_data_type: int = LIVE
    tickers: dict[int, _Ticker] = field(default_factory=dict)
    live_by_con: dict[int, list[_Ticker]] = field(default_factory=dict)
    tick_by_tick: dict[int, _TickByTick] = field(default_factory=dict)
    tbt_by_con: dict[int, list[_TickByTick]] = field(default_factory=dict)
    delayed_count: int = 0
    history: history.HistoryState = field(default_factory=history.HistoryState)

    def active_ids(self) -> set[int]:
        return {*self.tickers, *self.tick_by_tick, *self.history.active_ids()}

    def index(self) -> None:
        """Rebuild the conId indexes used by the streaming hot path."""
        self.live_by_con = {}
        for t in self.tickers.values():
            if not t.delayed:
                self.live_by_con.setdefault(t.inst.conId, []).append(t)
        self.delayed_count = sum(t.delayed for t in self.tickers.values())
        self.tbt_by_con = {}
        for b in self.tick_by_tick.values():
            self.tbt_by_con.setdefault(b.inst.conId, []).append(b)


def state_of(session: Session) -> MarketSessionState:
    state = session.extensions.get(EXTENSION_KEY)
    if not isinstance(state, MarketSessionState):
        state = MarketSessionState()
        session.extensions[EXTENSION_KEY] = state
    return state


def _instrument(session: Session, req_id: int, contract: Any) -> Instrument | None:
    found = contracts.resolve(session.core.universe, contract)
    if len(found) == 1:
        return found[0]
    if found:
        session.send_error(
            req_id, 200, f"The contract description specified for {contract.symbol} is ambiguous."
        )
    else:
        session.send_error(req_id, *contracts.NO_SECURITY)
    return None


def _cache(session: Session) -> QuoteCache:
    return quote_cache_of(session.core.extensions, session.core.market)


def _duplicate(session: Session, state: MarketSessionState, req_id: int) -> bool:
    if req_id in state.active_ids():
        session.send_error(
            req_id, 322, f"Error processing request.-'bW' : cause - Duplicate ticker id {req_id}"
        )
        return True
    return False


# -- initial values -------------------------------------------------------------------------------


def _initial(cache: QuoteCache, t: _Ticker, now: int, out: list[bytes]) -> None:
    """marketDataType, tickReqParams and the current values of a new (or re-typed) subscription."""
    market = cache.market
    con_id, ids = t.inst.conId, t.ids
    halted = market.is_halted(con_id)
    at = now - DELAY_NS if t.delayed else now
    cal = t.inst.calendar
    open_ = cal.is_open(at, rth=False)
    frozen = t.requested in (FROZEN, DELAYED_FROZEN)
    if t.delayed:
        effective = DELAYED if open_ or not frozen else DELAYED_FROZEN
    else:
        effective = LIVE if open_ or halted or not frozen else FROZEN
    t.waiting = effective in (FROZEN, DELAYED_FROZEN)
    out.append(encode_market_data_type(t.req_id, effective))
    out.append(encode_tick_req_params(t.req_id, t.inst.minTick, contracts.BBO_EXCHANGE, 3))
    quote: Quote | None = None
    if t.delayed:
        if open_:
            quote = cache.quote(con_id, at)
        elif frozen:
            previous = cal.previous_session(at, rth=False)
            quote = cache.quote(con_id, previous.close_ns - 1) if previous is not None else None
    else:
        quote = cache.last_quote(con_id, now)
    stats = cache.session_stats(con_id, at)
    out.append(t.price(ids.close, stats.close))
    out.append(t.price(ids.open, stats.open))
    out.append(t.price(ids.high, stats.high))
    out.append(t.price(ids.low, stats.low))
    t.high, t.low = stats.high, stats.low
    if quote is not None:
        t.quote(quote, out, bid_ask=open_ or halted or frozen)
    else:
        t.volume = stats.volume
        out.append(_frame(f"{t.p_volume}{_num(stats.volume)}\x00"))
    if "49" in t.generic or halted:
        t.halted = halted
        out.append(t.generic_tick(ids.halted, float(halted)))
    if "236" in t.generic:
        out.append(t.generic_tick(46, 3.0))
        out.append(_frame(f"{int(O.TICK_SIZE)}\x006\x00{t.req_id}\x0089\x00{100_000_000}\x00"))
    t.slot = at // market.tick_interval_ns if quote is not None and open_ else -1


# -- handlers -------------------------------------------------------------------------------------


def on_market_data_type(session: Session, req: ReqMarketDataType) -> None:
    if req.marketDataType not in (LIVE, FROZEN, DELAYED, DELAYED_FROZEN):
        session.send_error(
            -1,
            321,
            f"Error validating request.-'bZ' : cause - reqMarketDataType: invalid type {req.marketDataType}",
        )
        return
    state = state_of(session)
    state.market_data_type = req.marketDataType
    out: list[bytes] = []
    now = session.core.clock()
    for t in state.tickers.values():
        if t.requested != req.marketDataType:
            t.configure(req.marketDataType)
            _initial(_cache(session), t, now, out)
    state.index()
    if out:
        session.send(b"".join(out))


def on_mkt_data(session: Session, req: ReqMktData) -> None:
    state = state_of(session)
    if _duplicate(session, state, req.reqId):
        return
    inst = _instrument(session, req.reqId, req.contract)
    if inst is None:
        return
    generic = frozenset(g.strip() for g in req.genericTickList.split(",") if g.strip())
    t = _Ticker(req.reqId, inst, state.market_data_type, generic)
    t.configure(state.market_data_type)
    t.hours = OpenState(inst.calendar)
    t.cache = _cache(session)
    out: list[bytes] = []
    _initial(_cache(session), t, session.core.clock(), out)
    if req.snapshot or req.regulatorySnapshot:
        out.append(encode_tick_snapshot_end(req.reqId))
    else:
        state.tickers[req.reqId] = t
        state.index()
    session.send(b"".join(out))


def on_cancel_mkt_data(session: Session, req: CancelMktData) -> None:
    state = state_of(session)
    if state.tickers.pop(req.reqId, None) is not None:
        state.index()


def on_tick_by_tick(session: Session, req: ReqTickByTickData) -> None:
    state = state_of(session)
    if _duplicate(session, state, req.reqId):
        return
    inst = _instrument(session, req.reqId, req.contract)
    if inst is None:
        return
    kind = TICK_BY_TICK_TYPES.get(req.tickType)
    if kind is None:
        session.send_error(
            req.reqId,
            321,
            f"Error validating request.-'cm' : cause - reqTickByTickData: tickType {req.tickType!r} is not "
            f"supported (supported: {', '.join(TICK_BY_TICK_TYPES)})",
        )
        return
    prefix = f"{int(O.TICK_BY_TICK)}\x00{req.reqId}\x00{kind}\x00"
    sub = _TickByTick(req.reqId, inst, kind, req.ignoreSize, prefix, inst.primaryExchange or inst.exchange)
    out: list[bytes] = []
    if req.numberOfTicks > 0:
        for q in _recent_quotes(_cache(session), inst, session.core.clock(), req.numberOfTicks):
            sub.quote(q, out)
    state.tick_by_tick[req.reqId] = sub
    state.index()
    if out:
        session.send(b"".join(out))


def _recent_quotes(cache: QuoteCache, inst: Instrument, now: int, count: int) -> list[Quote]:
    """The last ``count`` quotes the market published (this or the last session), oldest first
    (volume 0: tick-by-tick does not carry it)."""
    market = cache.market
    cal, step = inst.calendar, market.tick_interval_ns
    t = now
    if market.is_halted(inst.conId) or not cal.is_open(now, rth=False):
        t = market.last_quote(inst.conId, now).time_ns
    session = cal.session_at(t, rth=False)
    if session is None:
        return []
    quotes: list[Quote] = []
    t = t // step * step
    while len(quotes) < min(count, MAX_HISTORY_TICKS) and t >= session.open_ns:
        quotes.append(cache.quote(inst.conId, t, volume=False))
        t -= step
    quotes.reverse()
    return quotes


def on_cancel_tick_by_tick(session: Session, req: CancelTickByTickData) -> None:
    state = state_of(session)
    if state.tick_by_tick.pop(req.reqId, None) is not None:
        state.index()


# -- the feature ----------------------------------------------------------------------------------


class MarketDataFeature:
    """Market data for every session; see the module docstring."""

    name = EXTENSION_KEY

    def __init__(self) -> None:
        def with_history(fn: Callable[[Session, Any, history.HistoryState], None]) -> Handler:
            return lambda session, req: fn(session, req, state_of(session).history)

        self.handlers: Mapping[type[ApiRequest], Handler] = {
            ReqContractDetails: contracts.on_contract_details,
            ReqMatchingSymbols: contracts.on_matching_symbols,
            ReqMarketRule: contracts.on_market_rule,
            ReqSmartComponents: contracts.on_smart_components,
            ReqMarketDataType: on_market_data_type,
            ReqMktData: on_mkt_data,
            CancelMktData: on_cancel_mkt_data,
            ReqTickByTickData: on_tick_by_tick,
            CancelTickByTickData: on_cancel_tick_by_tick,
            ReqHistoricalData: with_history(history.on_historical_data),
            CancelHistoricalData: with_history(history.on_cancel_historical_data),
            ReqHistoricalTicks: history.on_historical_ticks,
            ReqHeadTimeStamp: history.on_head_timestamp,
            CancelHeadTimeStamp: history.on_cancel_head_timestamp,
            ReqRealTimeBars: with_history(history.on_real_time_bars),
            CancelRealTimeBars: with_history(history.on_cancel_real_time_bars),
        }

    def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
        state = session.extensions.get(EXTENSION_KEY)
        if not isinstance(state, MarketSessionState):
            return
        out: list[bytes] = []
        market = session.core.market
        if state.tickers:
            self._halts(market, state, out)
        live, tbt = state.live_by_con, state.tbt_by_con
        if live or tbt:
            for q in quotes:
                for t in live.get(q.conId, ()):
                    if t.waiting:
                        t.waiting = False
                        out.append(encode_market_data_type(t.req_id, LIVE))
                    t.quote(q, out)
                for b in tbt.get(q.conId, ()):
                    b.quote(q, out)
        if state.delayed_count:
            self._delayed(_cache(session), state, now_ns, out)
        h = state.history
        if h.real_time or h.keep_up:
            history.history_step(session, h, {q.conId for q in quotes}, now_ns, out)
        if out:
            session.send(b"".join(out))

    @staticmethod
    def _halts(market: Market, state: MarketSessionState, out: list[bytes]) -> None:
        for t in state.tickers.values():
            halted = market.is_halted(t.inst.conId)
            if halted != bool(t.halted) and (halted or t.halted is not None):
                t.halted = halted
                out.append(t.generic_tick(t.ids.halted, float(halted)))

    @staticmethod
    def _delayed(cache: QuoteCache, state: MarketSessionState, now_ns: int, out: list[bytes]) -> None:
        at = now_ns - DELAY_NS
        market = cache.market
        slot = at // market.tick_interval_ns
        for t in state.tickers.values():
            if not t.delayed or t.slot == slot or t.halted:
                continue
            assert t.hours is not None
            if not t.hours.is_open(at, rth=False):
                continue
            t.slot = slot
            if t.waiting:
                t.waiting = False
                out.append(encode_market_data_type(t.req_id, DELAYED))
            t.quote(cache.quote(t.inst.conId, at), out)

    def on_close(self, session: Session) -> None:
        session.extensions.pop(EXTENSION_KEY, None)
