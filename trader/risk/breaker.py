"""The circuit breaker: from P&L samples over time and the limits to halt / cancel / flatten.

Pure: the engine feeds it each scope's cumulative P&L (:class:`~trader.risk.snapshot.PnLSnapshot`)
with the time; it keeps, per scope and trading day, the baseline (the cumulative P&L at the day's
first sample), the day's peak and whether the breaker tripped.

* **Day P&L** = cumulative now - baseline (realized and unrealized apart), so it covers every
  fill and mark move since the trading day started, commissions included.
* **Peak** = the highest day P&L seen (0 at the start: the day's opening equity counts as a peak).
* **Breach**: day loss ``>= max_daily_loss``, or ``peak - day P&L >= max_drawdown``. Once per scope
  and day it returns ``Halt(scope, why, until=next day's start)``, ``CancelScope``,
  ``FlattenScope``. A P&L with missing marks decides nothing (it is not known).
* **Trading day**: :class:`TradingDay` — it starts at ``start`` local time in ``tz`` (17:00 New York
  by default); the day starting Monday 17:00 is labelled Tuesday. DST is zoneinfo's: the day
  spanning a change is 23 or 25 hours long and still starts at 17:00 local.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from trader.risk.actions import Action, CancelScope, FlattenScope, Halt
from trader.risk.checks import fmt
from trader.risk.limits import RiskLimits
from trader.risk.snapshot import EPS, PnLSnapshot

NS = 1_000_000_000


class TradingDay:
    """Trading-day arithmetic in a time zone; instants are UTC nanoseconds."""

    def __init__(self, tz: str = "America/New_York", start: str = "17:00") -> None:
        self.tz = ZoneInfo(tz)
        hours, minutes = (int(x) for x in start.split(":"))
        self.start = dt.time(hours, minutes)
        self._last: tuple[int, ZoneInfo, dt.time, dt.date] | None = None
        """The last label asked for (one order's checks ask once per scope at the same instant)."""

    def _local(self, now_ns: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(now_ns / NS, tz=dt.UTC).astimezone(self.tz)

    def label(self, now_ns: int) -> dt.date:
        """The trading day ``now`` belongs to (a day starting at 17:00 is the next date's)."""
        last = self._last
        if last is not None and last[0] == now_ns and last[1] is self.tz and last[2] is self.start:
            return last[3]
        local = self._local(now_ns)
        if self.start == dt.time(0, 0):
            label = local.date()
        else:
            label = local.date() + dt.timedelta(days=1) if local.time() >= self.start else local.date()
        self._last = (now_ns, self.tz, self.start, label)
        return label

    def start_ns(self, label: dt.date) -> int:
        """The instant trading day ``label`` starts."""
        date = label if self.start == dt.time(0, 0) else label - dt.timedelta(days=1)
        local = dt.datetime.combine(date, self.start, tzinfo=self.tz)
        utc = local.astimezone(dt.UTC)
        return int(utc.timestamp()) * NS + utc.microsecond * 1000

    def next_start_ns(self, now_ns: int) -> int:
        """The instant the next trading day starts (strictly after ``now``)."""
        return self.start_ns(self.label(now_ns) + dt.timedelta(days=1))


@dataclass(frozen=True, slots=True)
class DayTrack:
    """One scope's trading day: the baseline, the day P&L's peak and last value, a breach."""

    day: dt.date
    base_realized: float
    base_unrealized: float
    peak: float = 0.0
    last: PnLSnapshot = field(default_factory=PnLSnapshot)
    tripped: str = ""
    """Why the breaker tripped this day (empty: it has not)."""

    def day_pnl(self, cumulative: PnLSnapshot) -> PnLSnapshot:
        return PnLSnapshot(
            cumulative.realized - self.base_realized,
            cumulative.unrealized - self.base_unrealized,
            cumulative.missing_marks,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "base_realized": self.base_realized,
            "base_unrealized": self.base_unrealized,
            "peak": self.peak,
            "last": [self.last.realized, self.last.unrealized, list(self.last.missing_marks)],
            "tripped": self.tripped,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DayTrack:
        realized, unrealized, missing = record.get("last", [0.0, 0.0, []])
        return cls(
            dt.date.fromisoformat(record["day"]),
            float(record["base_realized"]),
            float(record["base_unrealized"]),
            float(record.get("peak", 0.0)),
            PnLSnapshot(float(realized), float(unrealized), tuple(int(m) for m in missing)),
            str(record.get("tripped", "")),
        )


class Breaker:
    def __init__(self, day: TradingDay, tracks: Mapping[str, DayTrack] | None = None) -> None:
        self.day = day
        self.tracks: dict[str, DayTrack] = dict(tracks or {})

    def track(self, scope: str, cumulative: PnLSnapshot, now_ns: int) -> DayTrack:
        """``scope``'s track for the trading day of ``now`` (a new day starts at ``cumulative``);
        not stored."""
        label = self.day.label(now_ns)
        track = self.tracks.get(scope)
        if track is None or track.day != label:
            return DayTrack(label, cumulative.realized, cumulative.unrealized)
        return track

    def view(self, scope: str, cumulative: PnLSnapshot, now_ns: int) -> tuple[PnLSnapshot, float]:
        """(day P&L, the day's peak including now) of ``scope``, without recording anything."""
        track = self.track(scope, cumulative, now_ns)
        day = track.day_pnl(cumulative)
        return day, max(track.peak, day.total) if day.known else track.peak

    def observe(self, scope: str, cumulative: PnLSnapshot, limits: RiskLimits, now_ns: int) -> list[Action]:
        """Record a sample of ``scope``'s cumulative P&L; the actions of a breach (once a day)."""
        track = self.track(scope, cumulative, now_ns)
        day = track.day_pnl(cumulative)
        if not day.known:  # decides nothing, and a new day's baseline waits for a known P&L
            return []
        track = replace(track, peak=max(track.peak, day.total), last=day)
        why = "" if track.tripped else breach(day, track.peak, limits)
        if why:
            track = replace(track, tripped=why)
        self.tracks[scope] = track
        if not why:
            return []
        rule, _, _ = why.partition(":")
        reason = f"circuit breaker {scope}: {why}"
        until = self.day.next_start_ns(now_ns)
        return [
            Halt(scope, reason, now_ns, until, rule),
            CancelScope(scope, reason, now_ns),
            FlattenScope(scope, reason, now_ns),
        ]

    def to_record(self) -> dict[str, Any]:
        return {scope: track.to_record() for scope, track in sorted(self.tracks.items())}

    @staticmethod
    def tracks_from_record(record: Mapping[str, Any]) -> dict[str, DayTrack]:
        return {str(scope): DayTrack.from_record(value) for scope, value in record.items()}


def breach(day: PnLSnapshot, peak: float, limits: RiskLimits) -> str:
    """Why ``day`` (with the day's ``peak``) breaches ``limits``, or "" (the first rule wins)."""
    loss = -day.total
    if limits.max_daily_loss is not None and loss >= limits.max_daily_loss - EPS:
        return (
            f"max_daily_loss: day loss {fmt(loss)} >= limit {fmt(limits.max_daily_loss)} "
            f"(realized {fmt(day.realized)}, unrealized {fmt(day.unrealized)})"
        )
    drawdown = peak - day.total
    if limits.max_drawdown is not None and drawdown >= limits.max_drawdown - EPS:
        return (
            f"max_drawdown: drawdown {fmt(drawdown)} from the day's peak {fmt(peak)} "
            f">= limit {fmt(limits.max_drawdown)} (day P&L {fmt(day.total)})"
        )
    return ""
