"""Historical data for the market-data feature: reqHistoricalData (with keepUpToDate and the
SCHEDULE pseudo-type), reqHistoricalTicks, reqHeadTimeStamp and reqRealTimeBars, answered from the
same deterministic process as the live quotes (:meth:`trader.exchange.market.Market.bars`).

Dates (as TWS sends them): intraday bars ``"YYYYMMDD HH:MM:SS <zone>"`` in the instrument's zone
(formatDate 1) or epoch seconds (formatDate 2); daily, weekly and monthly bars ``"YYYYMMDD"`` (the
first trade date of the bar) whatever the format. ``endDateTime`` is ``""`` (now),
``"YYYYMMDD HH:MM:SS <zone>"`` (IANA zone, UTC/GMT or a US abbreviation such as EST), the same
without a zone (read in the instrument's zone: the exchange has no "TWS login zone") or
``"YYYYMMDD-HH:MM:SS"`` (UTC); anything else gets TWS's error 10314.

Requests are paced exchange-wide by :mod:`trader.exchange.pacing` (error 162). keepUpToDate sends
``historicalDataUpdate`` with the bar containing "now" whenever a quote of the instrument arrived
and at most once per :data:`KEEP_UP_TO_DATE_INTERVAL_NS`, only when the bar changed. Real-time bars
are the 5-second bars of the process, sent as each 5-second window (aligned to the clock) completes;
no bars while the instrument is closed or halted.
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from trader.exchange.bars import (
    BAR_SECONDS,
    PERIOD_BARS,
    WHAT_TO_SHOW,
    BarSeries,
    HistoricalDataError,
    duration_start,
    parse_duration,
)
from trader.exchange.feature_contracts import NO_SECURITY, resolve_one
from trader.exchange.instruments import Instrument
from trader.exchange.pacing import PACING_CODE, PACING_TEXT, HistoricalRequest, pacing_of
from trader.exchange.protocol import (
    BarFields,
    CancelHeadTimeStamp,
    CancelHistoricalData,
    CancelRealTimeBars,
    HistoricalTickBidAskFields,
    HistoricalTickFields,
    HistoricalTickLastFields,
    ReqHeadTimeStamp,
    ReqHistoricalData,
    ReqHistoricalTicks,
    ReqRealTimeBars,
    encode_frame,
    encode_head_timestamp,
    encode_historical_data_update,
    encode_historical_schedule,
    encode_historical_ticks,
    encode_historical_ticks_bid_ask,
    encode_historical_ticks_last,
    encode_real_time_bar,
    format_tws_time,
)
from trader.exchange.protocol.ids import OutgoingMessageId as O
from trader.exchange.quote_cache import quote_cache_of
from trader.exchange.session_api import Session

NS: Final = 1_000_000_000
REAL_TIME_BAR_NS: Final = 5 * NS
KEEP_UP_TO_DATE_INTERVAL_NS: Final = NS
MAX_REAL_TIME_CATCH_UP: Final = 2
"""Real-time bars sent per subscription per step at most (after a stall, older windows are skipped)."""
BAD_END: Final = (
    10314,
    "End Date/Time: The date, time, or time-zone entered is invalid. The correct format is "
    "yyyymmdd hh:mm:ss xx/xxxx where yyyymmdd and xx/xxxx are optional. E.g.: 20031126 15:59:00 "
    "US/Eastern  Note that there is a space between the date and time, and between the time and "
    "time-zone.  You can also provide yyyymmddd-hh:mm:ss time is in UTC. Note that there is a dash "
    "between the date and time in UTC notation.",
)
_ABBREVIATIONS: Final = {
    "EST": "US/Eastern",
    "EDT": "US/Eastern",
    "CST": "US/Central",
    "CDT": "US/Central",
    "MST": "US/Mountain",
    "MDT": "US/Mountain",
    "PST": "US/Pacific",
    "PDT": "US/Pacific",
    "GMT": "UTC",
}
_END = re.compile(r"^(\d{8})(?:([ -])(\d\d):(\d\d):(\d\d))?(?:\s+(\S+))?$")
SCHEDULE: Final = "SCHEDULE"
MAX_HISTORICAL_TICKS: Final = 1000
HISTORICAL_TICK_TYPES: Final = ("TRADES", "BID_ASK", "MIDPOINT")


@dataclass(slots=True, eq=False)
class _KeepUpToDate:
    req_id: int
    inst: Instrument
    bar_size: str
    what: str
    use_rth: bool
    format_date: int
    last_ns: int = 0
    last_bar: BarFields | None = None


@dataclass(slots=True, eq=False)
class _RealTimeBars:
    req_id: int
    inst: Instrument
    what: str
    use_rth: bool
    next_window: int


@dataclass(slots=True)
class HistoryState:
    """Per-session subscriptions of this module (inside the market feature's session state)."""

    keep_up: dict[int, _KeepUpToDate] = field(default_factory=dict)
    real_time: dict[int, _RealTimeBars] = field(default_factory=dict)

    def active_ids(self) -> Set[int]:
        return self.keep_up.keys() | self.real_time.keys()


# -- parsing and formatting -------------------------------------------------------------------------


def parse_end(text: str, inst: Instrument, now_ns: int) -> int:
    """``endDateTime`` as ns since the epoch; HistoricalDataError(10314) when malformed."""
    text = text.strip()
    if not text:
        return now_ns
    match = _END.match(text)
    if match is None:
        raise HistoricalDataError(*BAD_END)
    day, sep, hh, mm, ss, zone_text = match.groups()
    if sep == "-" and zone_text:
        raise HistoricalDataError(*BAD_END)
    zone: tzinfo = inst.calendar.tz
    if sep == "-":
        zone = UTC
    elif zone_text:
        name = _ABBREVIATIONS.get(zone_text.upper(), zone_text)
        try:
            zone = UTC if name.upper() == "UTC" else ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise HistoricalDataError(*BAD_END) from None
    try:
        if hh is None:
            when = datetime.strptime(day + "235959", "%Y%m%d%H%M%S")
        else:
            when = datetime.strptime(f"{day}{hh}{mm}{ss}", "%Y%m%d%H%M%S")
    except ValueError:
        raise HistoricalDataError(*BAD_END) from None
    return int(when.replace(tzinfo=zone).timestamp()) * NS


def _num(value: float) -> str:
    """A size or volume as TWS writes it: whole numbers without a fraction."""
    return str(int(value)) if value == int(value) else repr(value)


def bar_dates(series: BarSeries, inst: Instrument, format_date: int) -> list[str]:
    """The date field of every bar (see the module docstring)."""
    if series.daily:
        return [f"{d:%Y%m%d}" for d in series.dates]
    if format_date == 2:
        return [str(t // NS) for t in series.time_ns.tolist()]
    index = pd.to_datetime(series.time_ns, unit="ns", utc=True).tz_convert(inst.timeZone)
    return [f"{s} {inst.timeZone}" for s in index.strftime("%Y%m%d %H:%M:%S")]


def bar_fields(series: BarSeries, inst: Instrument, format_date: int) -> list[BarFields]:
    rows = zip(
        bar_dates(series, inst, format_date),
        series.open.tolist(),
        series.high.tolist(),
        series.low.tolist(),
        series.close.tolist(),
        series.volume.tolist(),
        series.wap.tolist(),
        series.count.tolist(),
        strict=True,
    )
    return [BarFields(d, o, h, lo, c, v, w, n) for d, o, h, lo, c, v, w, n in rows]


def encode_bars(
    req_id: int, series: BarSeries, inst: Instrument, format_date: int, *, start: str, end: str
) -> bytes:
    """HISTORICAL_DATA for a whole series, built column-wise (the same fields as
    ``encode_historical_data`` with :func:`bar_fields`, much faster for 100k bars)."""
    columns = (
        bar_dates(series, inst, format_date),
        [repr(x) for x in series.open.tolist()],
        [repr(x) for x in series.high.tolist()],
        [repr(x) for x in series.low.tolist()],
        [repr(x) for x in series.close.tolist()],
        [_num(x) for x in series.volume.tolist()],
        [repr(x) for x in series.wap.tolist()],
        [str(x) for x in series.count.tolist()],
    )
    head = f"{int(O.HISTORICAL_DATA)}\0{req_id}\0{start}\0{end}\0{len(series)}\0"
    body = "".join(
        f"{d}\0{o}\0{h}\0{lo}\0{c}\0{v}\0{w}\0{n}\0" for d, o, h, lo, c, v, w, n in zip(*columns, strict=True)
    )
    return encode_frame((head + body).encode())


def _tws_time(t_ns: int, inst: Instrument) -> str:
    return format_tws_time(datetime.fromtimestamp(t_ns // NS, tz=inst.calendar.tz))


def _validation(request: str, cause: str) -> tuple[int, str]:
    return 321, f"Error validating request.-'bP' : cause - {request}: {cause}"


# -- handlers ---------------------------------------------------------------------------------------


def on_historical_data(session: Session, req: ReqHistoricalData, state: HistoryState) -> None:
    core = session.core
    now = core.clock()
    inst = resolve_one(core.universe, req.contract)
    if inst is None:
        session.send_error(req.reqId, *NO_SECURITY)
        return
    what = req.whatToShow.upper()
    if what == SCHEDULE:
        _schedule(session, req, inst, now)
        return
    if what not in WHAT_TO_SHOW:
        session.send_error(
            req.reqId,
            *_validation(
                "reqHistoricalData",
                f"whatToShow {req.whatToShow!r} is not supported "
                f"(supported: {', '.join(WHAT_TO_SHOW)}, SCHEDULE)",
            ),
        )
        return
    if req.formatDate not in (1, 2):
        session.send_error(
            req.reqId, *_validation("reqHistoricalData", f"formatDate {req.formatDate} is invalid")
        )
        return
    if req.keepUpToDate and req.endDateTime.strip():
        session.send_error(
            req.reqId, *_validation("reqHistoricalData", "End date not supported with live updates")
        )
        return
    pacing = pacing_of(core.extensions)
    key = HistoricalRequest(
        inst.conId,
        req.contract.exchange or inst.exchange,
        what,
        (
            req.endDateTime.strip(),
            req.durationStr.strip(),
            req.barSizeSetting,
            req.useRTH,
            req.formatDate,
            req.keepUpToDate,
        ),
        BAR_SECONDS.get(req.barSizeSetting, 0),
    )
    if pacing.violation(key, now) is not None:
        session.send_error(req.reqId, PACING_CODE, PACING_TEXT)
        return
    try:
        end = parse_end(req.endDateTime, inst, now)
        series = core.market.bars(
            inst.conId,
            end,
            req.durationStr,
            req.barSizeSetting,
            what_to_show=what,
            use_rth=req.useRTH,
            now_ns=now,
        )
    except HistoricalDataError as exc:
        session.send_error(req.reqId, exc.code, exc.text)
        return
    pacing.record(key, now)
    start_text = _tws_time(int(series.time_ns[0]), inst)
    end_text = _tws_time(min(end, now), inst)
    session.send(encode_bars(req.reqId, series, inst, req.formatDate, start=start_text, end=end_text))
    if req.keepUpToDate:
        last = bar_fields(series, inst, req.formatDate)[-1]
        state.keep_up[req.reqId] = _KeepUpToDate(
            req.reqId, inst, req.barSizeSetting, what, req.useRTH, req.formatDate, now, last
        )


def _schedule(session: Session, req: ReqHistoricalData, inst: Instrument, now: int) -> None:
    """whatToShow=SCHEDULE (ib_async reqHistoricalSchedule): the sessions of the period."""
    try:
        end = min(parse_end(req.endDateTime, inst, now), now)
        amount, unit = parse_duration(req.durationStr)
    except HistoricalDataError as exc:
        session.send_error(req.reqId, exc.code, exc.text)
        return
    start = duration_start(inst, end, amount, unit, req.useRTH)
    cal = inst.calendar
    sessions = cal.sessions_between(start, end, req.useRTH)

    def text(t_ns: int) -> str:
        return f"{cal.local(t_ns):%Y%m%d-%H:%M:%S}"

    rows = [(text(s.open_ns), text(s.close_ns), f"{s.trade_date:%Y%m%d}") for s in sessions]
    session.send(encode_historical_schedule(req.reqId, text(start), text(end), inst.timeZone, rows))


def on_cancel_historical_data(session: Session, req: CancelHistoricalData, state: HistoryState) -> None:
    state.keep_up.pop(req.reqId, None)


def on_head_timestamp(session: Session, req: ReqHeadTimeStamp) -> None:
    core = session.core
    inst = resolve_one(core.universe, req.contract)
    if inst is None:
        session.send_error(req.reqId, *NO_SECURITY)
        return
    if req.whatToShow.upper() not in (*WHAT_TO_SHOW, "BID_ASK"):
        session.send_error(
            req.reqId, *_validation("reqHeadTimeStamp", f"whatToShow {req.whatToShow!r} is not supported")
        )
        return
    head = core.market.head_timestamp(inst.conId, req.useRTH)
    text = str(head // NS) if req.formatDate == 2 else _tws_time(head, inst)
    session.send(encode_head_timestamp(req.reqId, text))


def on_cancel_head_timestamp(session: Session, req: CancelHeadTimeStamp) -> None:
    """ib_async cancels every head timestamp request once answered: nothing to do."""


def on_real_time_bars(session: Session, req: ReqRealTimeBars, state: HistoryState) -> None:
    core = session.core
    inst = resolve_one(core.universe, req.contract)
    if inst is None:
        session.send_error(req.reqId, *NO_SECURITY)
        return
    what = req.whatToShow.upper()
    if what not in WHAT_TO_SHOW:
        session.send_error(
            req.reqId,
            *_validation(
                "reqRealTimeBars",
                f"whatToShow {req.whatToShow!r} is not supported (supported: {', '.join(WHAT_TO_SHOW)})",
            ),
        )
        return
    window = core.clock() // REAL_TIME_BAR_NS
    state.real_time[req.reqId] = _RealTimeBars(req.reqId, inst, what, req.useRTH, window)


def on_cancel_real_time_bars(session: Session, req: CancelRealTimeBars, state: HistoryState) -> None:
    state.real_time.pop(req.reqId, None)


def on_historical_ticks(session: Session, req: ReqHistoricalTicks) -> None:
    """reqHistoricalTicks: the quotes the market published (one per tick interval), at most 1000
    and from one trading session: forward from ``startDateTime`` when given, else back from
    ``endDateTime`` (or now); oldest first, in one message with ``done``."""
    core = session.core
    now = core.clock()
    inst = resolve_one(core.universe, req.contract)
    if inst is None:
        session.send_error(req.reqId, *NO_SECURITY)
        return
    what = req.whatToShow.upper()
    if what not in HISTORICAL_TICK_TYPES:
        cause = (
            f"whatToShow {req.whatToShow!r} is not supported (supported: {', '.join(HISTORICAL_TICK_TYPES)})"
        )
        session.send_error(req.reqId, *_validation("reqHistoricalTicks", cause))
        return
    try:
        forward = bool(req.startDateTime.strip())
        anchor = parse_end(req.startDateTime if forward else req.endDateTime, inst, now)
    except HistoricalDataError as exc:
        session.send_error(req.reqId, exc.code, exc.text)
        return
    times = _tick_times(
        core.market.tick_interval_ns,
        inst,
        min(anchor, now),
        now=now,
        forward=forward,
        use_rth=req.useRth,
        count=min(max(req.numberOfTicks, 1), MAX_HISTORICAL_TICKS),
    )
    cache = quote_cache_of(core.extensions, core.market)
    quotes = [cache.quote(inst.conId, t, volume=False) for t in times]
    exchange = inst.primaryExchange or inst.exchange
    if what == "TRADES":
        last = [HistoricalTickLastFields(q.time_ns // NS, q.last, q.lastSize, exchange) for q in quotes]
        session.send(encode_historical_ticks_last(req.reqId, last, True))
    elif what == "BID_ASK":
        bid_ask = [
            HistoricalTickBidAskFields(q.time_ns // NS, q.bid, q.ask, q.bidSize, q.askSize) for q in quotes
        ]
        session.send(encode_historical_ticks_bid_ask(req.reqId, bid_ask, True))
    else:
        mid = [HistoricalTickFields(q.time_ns // NS, q.mid, 0) for q in quotes]
        session.send(encode_historical_ticks(req.reqId, mid, True))


def _tick_times(
    interval: int, inst: Instrument, anchor: int, *, now: int, forward: bool, use_rth: bool, count: int
) -> list[int]:
    """Up to ``count`` instants on the tick grid inside one session, from ``anchor`` on or back."""
    cal = inst.calendar
    if forward:
        session = cal.next_session(anchor, use_rth)
        if session is None or session.open_ns > now:
            return []
        t = max(-(-anchor // interval), -(-session.open_ns // interval)) * interval
        end = min(session.close_ns, now + 1)
        times: list[int] = []
        while t < end and len(times) < count:
            times.append(t)
            t += interval
        return times
    session = cal.session_at(anchor, use_rth) or cal.previous_session(anchor, use_rth)
    if session is None:
        return []
    t = (min(anchor, session.close_ns - 1) // interval) * interval
    times = []
    while t >= session.open_ns and len(times) < count:
        times.append(t)
        t -= interval
    times.reverse()
    return times


# -- streaming --------------------------------------------------------------------------------------


def history_step(
    session: Session, state: HistoryState, quoted: Set[int], now_ns: int, out: list[bytes]
) -> None:
    """Real-time bars whose window completed and keepUpToDate bars that changed, appended to ``out``.
    ``quoted``: conIds that got a quote in this step."""
    market = session.core.market
    if state.real_time:
        window = now_ns // REAL_TIME_BAR_NS
        for sub in state.real_time.values():
            if sub.next_window >= window:
                continue
            sub.next_window = max(sub.next_window, window - MAX_REAL_TIME_CATCH_UP)
            halted = market.is_halted(sub.inst.conId)
            while sub.next_window < window:
                start = sub.next_window * REAL_TIME_BAR_NS
                sub.next_window += 1
                if not halted:
                    _real_time_bar(session, sub, start, now_ns, out)
    for keep in state.keep_up.values():
        con_id = keep.inst.conId
        if con_id not in quoted or now_ns - keep.last_ns < KEEP_UP_TO_DATE_INTERVAL_NS:
            continue
        keep.last_ns = now_ns
        bar = _current_bar(session, keep, now_ns)
        if bar is not None and bar != keep.last_bar:
            keep.last_bar = bar
            out.append(encode_historical_data_update(keep.req_id, bar))


def _real_time_bar(session: Session, sub: _RealTimeBars, start: int, now_ns: int, out: list[bytes]) -> None:
    try:
        series = session.core.market.bars(
            sub.inst.conId,
            start + REAL_TIME_BAR_NS,
            "5 S",
            "5 secs",
            what_to_show=sub.what,
            use_rth=sub.use_rth,
            now_ns=now_ns,
        )
    except HistoricalDataError:
        return  # closed: no bar
    i = len(series) - 1
    out.append(
        encode_real_time_bar(
            sub.req_id,
            start // NS,
            open_=float(series.open[0]),
            high=float(series.high.max()),
            low=float(series.low.min()),
            close=float(series.close[i]),
            volume=float(series.volume.sum()) if sub.what == "TRADES" else -1.0,
            wap=float(series.wap[i]),
            count=int(series.count.sum()) if sub.what == "TRADES" else -1,
        )
    )


def _current_bar(session: Session, keep: _KeepUpToDate, now_ns: int) -> BarFields | None:
    """The bar containing ``now_ns``, or None when it has no data yet."""
    inst = keep.inst
    seconds = BAR_SECONDS.get(keep.bar_size)
    if seconds is not None:
        bar_ns = seconds * NS
        offset = inst.calendar.utc_offset_ns(now_ns)
        bar_start = (now_ns + offset) // bar_ns * bar_ns - offset
        duration = f"{seconds + 1} S"
    else:
        bar_start = 0
        duration = {"D": "1 D", "W": "2 W", "M": "2 M"}[PERIOD_BARS[keep.bar_size]]
    try:
        series = session.core.market.bars(
            inst.conId,
            now_ns + 1,
            duration,
            keep.bar_size,
            what_to_show=keep.what,
            use_rth=keep.use_rth,
            now_ns=now_ns,
        )
    except HistoricalDataError:
        return None
    if len(series) == 0 or int(series.time_ns[-1]) < bar_start:
        return None
    return bar_fields(series, inst, keep.format_date)[-1]
