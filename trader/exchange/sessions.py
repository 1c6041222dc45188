"""Trading calendars: weekly session templates expanded to concrete sessions in the exchange's zone.

A template window reads ``"mon-fri 09:30-16:00"`` or, for a session that closes the next day,
``"sun-thu 17:00-16:00+1"``; the days are the days the window *opens*. A session belongs to the
trade date it closes on, and holidays remove the sessions of their trade date. All instants are
integer nanoseconds since the Unix epoch (UTC); nothing here reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NS = 1_000_000_000
DAY_NS = 86_400 * NS
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*([a-z,\-]+)\s+(\d\d):(\d\d)-(\d\d):(\d\d)(\+1)?\s*$")
_SEARCH_DAYS = 20
"""How far :meth:`Calendar.next_session` / :meth:`Calendar.previous_session` look (holiday runs)."""


@dataclass(frozen=True, slots=True)
class Window:
    """One line of a weekly template: opens on ``days`` at ``open_min``, closes at ``close_min``."""

    days: frozenset[int]
    """Weekdays (0 = Monday) on which the window opens."""
    open_min: int
    close_min: int
    overnight: bool
    """The window closes on the day after it opens."""


@dataclass(frozen=True, slots=True)
class Session:
    """A concrete session: [open_ns, close_ns), belonging to the trade date it closes on."""

    open_ns: int
    close_ns: int
    trade_date: date

    def contains(self, t_ns: int) -> bool:
        return self.open_ns <= t_ns < self.close_ns


def parse_window(text: str) -> Window:
    """``"mon-fri 09:30-16:00"`` or ``"sun-thu 17:00-16:00+1"``; ValueError says what is wrong."""
    match = _WINDOW.match(text.lower()) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"expected a window like 'mon-fri 09:30-16:00' or 'sun-thu 17:00-16:00+1', got {text!r}"
        )
    days_text, oh, om, ch, cm, plus = match.groups()
    days: set[int] = set()
    for part in days_text.split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"unknown weekday in {text!r} (use {', '.join(WEEKDAYS)})")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    open_min, close_min = int(oh) * 60 + int(om), int(ch) * 60 + int(cm)
    if int(oh) > 23 or int(ch) > 24 or int(om) > 59 or int(cm) > 59 or close_min > 1440:
        raise ValueError(f"invalid time of day in {text!r}")
    overnight = plus is not None
    if not overnight and close_min <= open_min:
        raise ValueError(f"the window closes before it opens in {text!r} (add +1 for the next day)")
    if overnight and close_min > open_min:
        raise ValueError(f"an overnight window would last more than 24 hours in {text!r}")
    return Window(frozenset(days), open_min, close_min, overnight)


class Calendar:
    """Trading (``rth=False``) and liquid (``rth=True``, regular trading hours) sessions of a venue."""

    def __init__(
        self,
        name: str,
        time_zone: str,
        trading: Sequence[Window],
        liquid: Sequence[Window],
        holidays: Iterable[date] = (),
    ) -> None:
        try:
            self.tz = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {time_zone!r}") from None
        self.name = name
        self.time_zone = time_zone
        self.trading = tuple(trading)
        self.liquid = tuple(liquid)
        self.holidays = frozenset(holidays)
        self._cache: dict[tuple[date, bool], tuple[Session, ...]] = {}

    def __repr__(self) -> str:
        return f"Calendar({self.name!r}, {self.time_zone!r})"

    # -- conversions ---------------------------------------------------------------------------

    def local(self, t_ns: int) -> datetime:
        """The instant as an aware datetime in the calendar's zone (second resolution)."""
        return datetime.fromtimestamp(t_ns // NS, tz=self.tz)

    def local_date(self, t_ns: int) -> date:
        return self.local(t_ns).date()

    def at(self, day: date, minute: int) -> int:
        """Nanoseconds of local wall time ``minute`` minutes after midnight of ``day``."""
        # Wall-clock arithmetic across a DST change: build the wall time, then attach the zone.
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        dt = wall.replace(tzinfo=self.tz)
        return int(dt.timestamp()) * NS

    def midnight(self, day: date) -> int:
        return self.at(day, 0)

    def utc_offset_ns(self, t_ns: int) -> int:
        offset = self.local(t_ns).utcoffset()
        return int(offset.total_seconds()) * NS if offset is not None else 0

    # -- sessions ------------------------------------------------------------------------------

    def sessions_for(self, trade_date: date, rth: bool) -> tuple[Session, ...]:
        """The sessions closing on ``trade_date`` (none on weekends and holidays)."""
        key = (trade_date, rth)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found: list[Session] = []
        if trade_date not in self.holidays:
            for window in self.liquid if rth else self.trading:
                open_day = trade_date - timedelta(days=1) if window.overnight else trade_date
                if open_day.weekday() in window.days:
                    found.append(
                        Session(
                            self.at(open_day, window.open_min),
                            self.at(trade_date, window.close_min),
                            trade_date,
                        )
                    )
        result = tuple(sorted(found, key=lambda s: s.open_ns))
        if len(self._cache) > 20_000:
            self._cache.clear()
        self._cache[key] = result
        return result

    def session_at(self, t_ns: int, rth: bool) -> Session | None:
        """The session containing ``t_ns``, if any."""
        day = self.local_date(t_ns)
        for offset in (0, 1):
            for session in self.sessions_for(day + timedelta(days=offset), rth):
                if session.contains(t_ns):
                    return session
        return None

    def is_open(self, t_ns: int, rth: bool) -> bool:
        return self.session_at(t_ns, rth) is not None

    def next_session(self, t_ns: int, rth: bool) -> Session | None:
        """The session containing ``t_ns`` or, if closed, the next one to open."""
        day = self.local_date(t_ns)
        for offset in range(_SEARCH_DAYS):
            for session in self.sessions_for(day + timedelta(days=offset), rth):
                if session.close_ns > t_ns:
                    return session
        return None

    def previous_session(self, t_ns: int, rth: bool) -> Session | None:
        """The last session that closed at or before ``t_ns``."""
        day = self.local_date(t_ns)
        for offset in range(-1, _SEARCH_DAYS):
            for session in reversed(self.sessions_for(day - timedelta(days=offset), rth)):
                if session.close_ns <= t_ns:
                    return session
        return None

    def sessions_between(self, start_ns: int, end_ns: int, rth: bool) -> list[Session]:
        """Sessions overlapping [start_ns, end_ns), oldest first."""
        if end_ns <= start_ns:
            return []
        first, last = self.local_date(start_ns), self.local_date(end_ns) + timedelta(days=1)
        result: list[Session] = []
        day = first
        while day <= last:
            result.extend(
                s for s in self.sessions_for(day, rth) if s.close_ns > start_ns and s.open_ns < end_ns
            )
            day += timedelta(days=1)
        return result

    def last_sessions(self, end_ns: int, count: int, rth: bool) -> list[Session]:
        """The ``count`` sessions ending with the one containing ``end_ns`` (or the last before it)."""
        result: list[Session] = []
        day = self.local_date(end_ns) + timedelta(days=1)
        misses = 0
        while len(result) < count and misses < _SEARCH_DAYS:
            found = [s for s in self.sessions_for(day, rth) if s.open_ns < end_ns]
            misses = 0 if found else misses + 1
            result.extend(reversed(found))
            day -= timedelta(days=1)
        return list(reversed(result[:count]))

    def state(self, t_ns: int, rth: bool) -> tuple[bool, int]:
        """(open now?, the instant that changes); cache the answer until then."""
        session = self.next_session(t_ns, rth)
        if session is None:
            return False, t_ns + DAY_NS
        if session.open_ns <= t_ns:
            return True, session.close_ns
        return False, session.open_ns

    def hours(self, first: date, days: int, rth: bool) -> str:
        """TWS ``tradingHours`` / ``liquidHours``: ``20261123:0930-20261123:1600;20261122:CLOSED``."""
        parts: list[str] = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            sessions = self.sessions_for(day, rth)
            if not sessions:
                parts.append(f"{day:%Y%m%d}:CLOSED")
            for s in sessions:
                parts.append(f"{self.local(s.open_ns):%Y%m%d:%H%M}-{self.local(s.close_ns):%Y%m%d:%H%M}")
        return ";".join(parts)


ALWAYS_OPEN_WINDOW = "mon-sun 00:00-24:00"
"""The weekly template of an always-open calendar: one session per local calendar day."""


def always_open_calendar(time_zone: str, name: str = "always_open") -> Calendar:
    """A 24/7 calendar in ``time_zone``: trading and liquid hours both cover every instant, one
    session per local day ``[00:00, 24:00)`` (trade date = that day), no holidays. Sessions are
    back to back, so the market never stops quoting, every instant is inside regular trading
    hours, daily bars have 24 hours and intraday bars have no session gaps. A session still ends at
    local midnight: DAY orders expire and MOC/LOC orders execute then."""
    window = parse_window(ALWAYS_OPEN_WINDOW)
    return Calendar(name, time_zone, [window], [window])


class OpenState:
    """Caches :meth:`Calendar.state` per (rth) until the next open/close: O(1) per query."""

    __slots__ = ("_calendar", "_since", "_until", "_value")

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self._value = [False, False]
        self._until = [-1, -1]
        self._since = [0, 0]

    def is_open(self, t_ns: int, rth: bool) -> bool:
        i = int(rth)
        if not (self._since[i] <= t_ns < self._until[i]):
            value, until = self._calendar.state(t_ns, rth)
            self._value[i], self._until[i], self._since[i] = value, until, t_ns
        return self._value[i]
