"""Cron expressions evaluated in a job's time zone: parsing, next fire, missed runs (pure, no clock).

Syntax (``parse_cron``)
    Five fields ``minute hour day-of-month month day-of-week`` or six with ``second`` first.
    Each field is a comma list of ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` or ``N/S`` (= ``N-max/S``).
    Months ``JAN``..``DEC`` and weekdays ``SUN``..``SAT`` may be used by name (any case, also in
    ranges: ``MON-FRI``); weekday ``0`` and ``7`` are both Sunday. Macros: ``@yearly`` (``@annually``),
    ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``.
    Day-of-month / day-of-week follow Vixie cron: a field is *unrestricted* when its text starts
    with ``*`` (so ``*/2`` counts as unrestricted, like Vixie's ``DOM_STAR``/``DOW_STAR``); when
    both are restricted a day matches if **either** matches, otherwise both must match.
    Errors raise ``CronError`` with a one-line message naming the field and the value, e.g.
    ``"day-of-week: 8 out of range 0-7"``. An expression that can never fire (``0 0 30 2 *``) is
    rejected at parse time.

Time zones and DST (``next_fire``)
    Expressions name *wall-clock* times in the job's zone; results are aware UTC datetimes.

    * Spring forward (a wall time that does not exist, e.g. 02:30 on 2026-03-08 in New York):
      the job fires at the first instant after the gap (03:00 EDT = the transition instant).
      Several skipped wall times (``*/15`` between 02:00 and 02:59) collapse into that single
      fire, so a daily job never misses its day and nothing fires twice. (Vixie cron runs
      such jobs "right away" after the change as well; some implementations skip them - we don't.)
    * Fall back (a wall time that occurs twice, e.g. 01:30 on 2026-11-01 in New York): the job
      fires once, at the first occurrence (EDT). During the repeated hour nothing that already
      fired fires again, so an hourly job has one run at 01:xx and the next at 02:xx.

Missed runs (``missed_runs``)
    Runs scheduled in ``(last_run, now]`` while pycron was down: ``"skip"`` returns none,
    ``"run-once"`` returns at most one - the most recent missed scheduled time.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

__all__ = [
    "CronError",
    "CronExpr",
    "MissedPolicy",
    "fires_between",
    "missed_runs",
    "next_fire",
    "parse_cron",
]

MissedPolicy = Literal["skip", "run-once"]

_SECOND = timedelta(seconds=1)
_MAX_YEAR = 9999

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_NUMBER = re.compile(r"[0-9]+")


class CronError(ValueError):
    """An invalid cron expression or window spec (one-line message naming the field and value)."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = {
    "second": _Field("second", 0, 59, {}),
    "minute": _Field("minute", 0, 59, {}),
    "hour": _Field("hour", 0, 23, {}),
    "day-of-month": _Field("day-of-month", 1, 31, {}),
    "month": _Field("month", 1, 12, _MONTH_NAMES),
    "day-of-week": _Field("day-of-week", 0, 7, _DAY_NAMES),
}


@dataclass(frozen=True)
class CronExpr:
    """A parsed cron expression: the allowed values of each field (weekday 0 = Sunday, no 7)."""

    source: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock time (naive or aware, read as wall time) is a fire time."""
        return (
            wall.month in self.months
            and self.day_matches(wall)
            and wall.hour in self.hours
            and wall.minute in self.minutes
            and wall.second in self.seconds
        )

    def day_matches(self, day: datetime) -> bool:
        """Day-of-month / day-of-week with Vixie semantics (either, when both are restricted)."""
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow


def _parse_value(text: str, field: _Field) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names[upper]
    if not _NUMBER.fullmatch(text):
        raise CronError(f"{field.name}: invalid value {text!r}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name}: {value} out of range {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name}: empty item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise CronError(f"{field.name}: invalid step {step_text!r} in {item!r}")
            step = int(step_text)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _parse_value(first, field), _parse_value(last, field)
            if low > high:
                raise CronError(f"{field.name}: range {base} is reversed")
        else:
            low = _parse_value(base, field)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    if field.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def parse_cron(expr: str) -> CronExpr:
    """Parse a 5-field (or 6-field, seconds first) cron expression or an ``@`` macro."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise CronError(f"macro: unknown {text!r} (known: {', '.join(sorted(_MACROS))})")
        text = _MACROS[text.lower()]
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CronError(f"expression: expected 5 or 6 fields, got {len(parts)} in {expr!r}")
    sets = [_parse_field(part, field) for part, field in zip(parts, _FIELDS.values(), strict=True)]
    cron = CronExpr(
        source=expr,
        seconds=sets[0],
        minutes=sets[1],
        hours=sets[2],
        days=sets[3],
        months=sets[4],
        weekdays=sets[5],
        days_star=parts[3].startswith("*"),
        weekdays_star=parts[5].startswith("*"),
    )
    if not cron.weekdays_star:
        return cron  # day-of-week alone (or either, Vixie) always finds a day
    longest = max(29 if month == 2 else calendar.monthrange(2001, month)[1] for month in cron.months)
    if min(cron.days) > longest:
        raise CronError(f"day-of-month: {min(cron.days)} never occurs in the given month(s)")
    return cron


def _coerce(expr: CronExpr | str) -> CronExpr:
    return expr if isinstance(expr, CronExpr) else parse_cron(expr)


def _first_at_least(values: Iterable[int], value: int) -> int | None:
    candidates = [v for v in values if v >= value]
    return min(candidates) if candidates else None


def _next_wall(cron: CronExpr, t: datetime) -> datetime:
    """The first naive wall time >= ``t`` (whole seconds) that matches, advancing field by field."""
    while True:
        if t.year > _MAX_YEAR:
            raise CronError(f"expression: {cron.source!r} has no fire time before year {_MAX_YEAR + 1}")
        month = _first_at_least(cron.months, t.month)
        if month is None:
            if t.year == _MAX_YEAR:
                raise CronError(f"expression: {cron.source!r} has no fire time before year {_MAX_YEAR + 1}")
            t = datetime(t.year + 1, 1, 1)
            continue
        if month != t.month:
            t = datetime(t.year, month, 1)
        if not cron.day_matches(t):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        hour = _first_at_least(cron.hours, t.hour)
        if hour is None:
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if hour != t.hour:
            t = t.replace(hour=hour, minute=0, second=0)
        minute = _first_at_least(cron.minutes, t.minute)
        if minute is None:
            t = t.replace(minute=0, second=0) + timedelta(hours=1)
            continue
        if minute != t.minute:
            t = t.replace(minute=minute, second=0)
        second = _first_at_least(cron.seconds, t.second)
        if second is None:
            t = t.replace(second=0) + timedelta(minutes=1)
            continue
        return t.replace(second=second)


def _to_utc(wall: datetime, tz: ZoneInfo, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def _exists(wall: datetime, tz: ZoneInfo) -> bool:
    return _to_utc(wall, tz).astimezone(tz).replace(tzinfo=None) == wall


def _ambiguous(wall: datetime, tz: ZoneInfo) -> bool:
    return _to_utc(wall, tz, 0) != _to_utc(wall, tz, 1)


def _first_wall_where(wall: datetime, limit: datetime, predicate: Callable[[datetime], bool]) -> datetime:
    """Binary search (whole seconds) for the first wall time in (wall, limit] where predicate holds.

    The predicate is false at ``wall`` and true from some point up to ``limit``.
    """
    low, high = 0, int((limit - wall).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(wall + timedelta(seconds=middle)):
            high = middle
        else:
            low = middle
    return wall + timedelta(seconds=high)


def _transition_span(wall: datetime, tz: ZoneInfo) -> timedelta:
    """The size of the DST jump around ``wall`` (difference of the fold=0 and fold=1 offsets)."""
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert first is not None and second is not None
    return abs(first - second)


def next_fire(expr: CronExpr | str, after: datetime, tz: ZoneInfo) -> datetime:
    """The first fire strictly after ``after`` (aware), as aware UTC; see the module doc for DST."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_fire: 'after' must be timezone-aware")
    cron = _coerce(expr)
    try:
        return _next_fire(cron, after.astimezone(UTC), tz)
    except OverflowError:
        raise CronError(f"expression: {cron.source!r} has no fire time before year {_MAX_YEAR + 1}") from None


def _next_fire(cron: CronExpr, after_utc: datetime, tz: ZoneInfo) -> datetime:
    wall = after_utc.astimezone(tz).replace(tzinfo=None, fold=0, microsecond=0)
    candidate = wall + _SECOND
    while True:
        match = _next_wall(cron, candidate)
        if not _exists(match, tz):
            # Spring-forward gap: fire at the first existing wall time (the transition instant).
            gap_end = _first_wall_where(match, match + _transition_span(match, tz), lambda w: _exists(w, tz))
            fire = _to_utc(gap_end, tz)
            if fire > after_utc:
                return fire
            candidate = gap_end
            continue
        fire = _to_utc(match, tz, fold=0)
        if fire > after_utc:
            return fire
        if _ambiguous(match, tz):
            # Already past the first occurrence of a repeated wall time: skip the repeated range.
            span = _transition_span(match, tz)
            candidate = _first_wall_where(match, match + span, lambda w: not _ambiguous(w, tz))
            continue
        candidate = match + _SECOND


def fires_between(
    expr: CronExpr | str, tz: ZoneInfo, start: datetime, end: datetime, *, limit: int | None = None
) -> list[datetime]:
    """Every fire in the half-open interval ``(start, end]``, ascending, as aware UTC.

    ``limit`` caps the number returned (the earliest ones), for expressions that fire often.
    """
    cron = _coerce(expr)
    fires: list[datetime] = []
    cursor = start
    while limit is None or len(fires) < limit:
        fire = next_fire(cron, cursor, tz)
        if fire > end:
            break
        fires.append(fire)
        cursor = fire
    return fires


def missed_runs(
    expr: CronExpr | str, tz: ZoneInfo, last_run: datetime | None, now: datetime, policy: MissedPolicy
) -> list[datetime]:
    """Runs scheduled in ``(last_run, now]`` that should be caught up, per ``policy``.

    ``"skip"``: none. ``"run-once"``: at most one, the most recent missed scheduled time (found by
    binary search, so a long outage with a frequent job stays cheap). ``last_run=None`` (never
    ran) means nothing was missed.
    """
    if policy not in get_args(MissedPolicy):
        raise ValueError(f"missed_runs: unknown policy {policy!r} (expected 'skip' or 'run-once')")
    cron = _coerce(expr)
    if policy == "skip" or last_run is None or next_fire(cron, last_run, tz) > now:
        return []
    # P(x) = next_fire(x) <= now is true for x < latest missed fire and false from it on.
    low, high = 0, max(1, int((now - last_run).total_seconds()) + 1)
    while high - low > 1:
        middle = (low + high) // 2
        if next_fire(cron, last_run + timedelta(seconds=middle), tz) <= now:
            low = middle
        else:
            high = middle
    return [next_fire(cron, last_run + timedelta(seconds=low), tz)]
