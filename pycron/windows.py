"""Maintenance windows: periods in which a failing probe neither restarts nor alerts (pure, no clock).

Spec (``parse_window``) - a dict, as written in pycron's YAML config; one of two opening forms::

    {"cron": "45 23 * * *", "duration": "1h", "tz": "US/Eastern"}           # IB nightly restart
    {"days": ["SUN"], "start": "00:30", "duration": "2h", "tz": "US/Eastern"}  # weekday set + time

``cron`` is any ``parse_cron`` expression; ``days`` is a weekday name/number or a list of them
(``"MON-FRI"`` and ``"*"`` also work) and ``start`` is ``HH:MM`` or ``HH:MM:SS``. ``duration`` is
``"90s"``, ``"45m"``, ``"1h"``, ``"1h30m"``, ``"2d"`` or a number of seconds; ``tz`` is an IANA zone.

Semantics: the window opens at every fire of its cron (same DST rules as ``next_fire``: an
opening inside a spring-forward gap opens at the end of the gap, a repeated wall time opens once)
and stays open for ``duration`` of *elapsed* time, i.e. ``[open, open + duration)``. A window that
crosses midnight is simply an opening late in the day with a duration reaching the next day; a
window spanning a DST change lasts its elapsed duration (a 2h window opening at 00:30 on the
fall-back night closes at 01:30 standard time, wall clock). Overlapping openings merge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pycron.cron import CronError, CronExpr, fires_between, next_fire, parse_cron

__all__ = ["Window", "in_window", "next_window_change", "parse_duration", "parse_window"]

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_START = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MAX_MERGED_OPENINGS = 10_000


@dataclass(frozen=True)
class Window:
    """A recurring maintenance window: opens at each fire of ``opens`` and lasts ``duration``."""

    opens: CronExpr
    duration: timedelta
    tz: ZoneInfo


def parse_duration(value: object) -> timedelta:
    """``"1h30m"``-style text (d/h/m/s) or a number of seconds; must be positive."""
    if isinstance(value, bool):
        raise CronError(f"duration: invalid value {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() and (match := _DURATION.fullmatch(value.strip())):
        days, hours, minutes, secs = (int(part) if part else 0 for part in match.groups())
        seconds = float(((days * 24 + hours) * 60 + minutes) * 60 + secs)
    else:
        raise CronError(f"duration: invalid value {value!r} (e.g. '1h', '45m', '1h30m')")
    if seconds <= 0:
        raise CronError(f"duration: {value!r} must be positive")
    return timedelta(seconds=seconds)


def _days_field(days: object) -> str:
    items = [days] if isinstance(days, str | int) else days
    if not isinstance(items, list | tuple) or not items:
        raise CronError(f"days: invalid value {days!r}")
    return ",".join(str(item) for item in items)


def parse_window(spec: Mapping[str, object]) -> Window:
    """Build a ``Window`` from its config dict (see the module doc); raises ``CronError``."""
    keys = set(spec)
    allowed = {"cron", "days", "start", "duration", "tz"}
    if unknown := keys - allowed:
        raise CronError(f"window: unknown key(s) {', '.join(sorted(unknown))}")
    tz_name = spec.get("tz")
    if not isinstance(tz_name, str):
        raise CronError(f"tz: missing or invalid value {tz_name!r}")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"tz: unknown time zone {tz_name!r}") from None
    if "duration" not in spec:
        raise CronError("duration: missing")
    duration = parse_duration(spec["duration"])
    if "cron" in spec:
        if "days" in spec or "start" in spec:
            raise CronError("window: give either 'cron' or 'days' + 'start', not both")
        cron_text = spec["cron"]
        if not isinstance(cron_text, str):
            raise CronError(f"cron: invalid value {cron_text!r}")
        return Window(parse_cron(cron_text), duration, tz)
    start = spec.get("start")
    if not isinstance(start, str) or not (match := _START.fullmatch(start.strip())):
        raise CronError(f"start: invalid value {start!r} (expected HH:MM or HH:MM:SS)")
    hour, minute, second = match.group(1), match.group(2), match.group(3) or "0"
    days = _days_field(spec.get("days", "*"))
    return Window(parse_cron(f"{int(second)} {int(minute)} {int(hour)} * * {days}"), duration, tz)


def _check_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("window: 'now' must be timezone-aware")
    return now.astimezone(UTC)


def in_window(window: Window, now: datetime) -> bool:
    """Whether ``now`` (aware) is inside the window: some opening lies in ``(now - duration, now]``."""
    now_utc = _check_aware(now)
    return next_fire(window.opens, now_utc - window.duration, window.tz) <= now_utc


def next_window_change(window: Window, now: datetime) -> datetime:
    """The next instant (aware UTC, strictly after ``now``) at which ``in_window`` flips.

    Outside: the next opening. Inside: the close of the current (merged) window. Raises
    ``CronError`` if the window never closes (openings closer together than its duration).
    """
    now_utc = _check_aware(now)
    if not in_window(window, now_utc):
        return next_fire(window.opens, now_utc, window.tz)
    openings = fires_between(window.opens, window.tz, now_utc - window.duration, now_utc)
    close = openings[-1] + window.duration
    cursor = now_utc
    for _ in range(_MAX_MERGED_OPENINGS):
        opening = next_fire(window.opens, cursor, window.tz)
        if opening > close:
            return close
        close = max(close, opening + window.duration)
        cursor = opening
    raise CronError(f"window: {window.opens.source!r} with duration {window.duration} never closes")
