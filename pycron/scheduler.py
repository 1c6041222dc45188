"""Cron schedules of pycron jobs: when each entry fires next, what was missed, and the record of it.

Pure apart from :class:`ScheduleBook`, which persists to ``<data-dir>/pycron.schedules.json``
when each entry last fired and until when pycron was watching it, so a restart of pycron neither
fires an entry twice nor forgets one it missed while down (``missed: run-once``).

The async side (sleeping until the fire time on a timer, then acting) is in
:mod:`pycron.supervisor`; everything here takes the time as an argument.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pycron.config import ScheduleConfig
from pycron.cron import CronExpr, missed_runs, next_fire, parse_cron
from trader.jsonfile import write_json_atomic

log = logging.getLogger("pycron.scheduler")

BOOK_FILE = "pycron.schedules.json"


@dataclass(frozen=True, slots=True)
class Entry:
    """One schedule of one job, parsed."""

    job: str
    index: int
    config: ScheduleConfig
    cron: CronExpr
    tz: ZoneInfo

    @classmethod
    def of(cls, job: str, index: int, config: ScheduleConfig) -> Entry:
        return cls(job, index, config, parse_cron(config.cron), ZoneInfo(config.tz))

    @property
    def key(self) -> str:
        """Stable across restarts while the entry is unchanged (an edited entry starts afresh)."""
        return f"{self.job}#{self.index} {self.config.cron} {self.config.tz} {self.config.action}"

    def next_fire(self, after: datetime) -> datetime:
        """The first fire strictly after ``after`` (aware UTC)."""
        return next_fire(self.cron, after, self.tz)

    def catch_up(self, covered_until: datetime | None, now: datetime) -> datetime | None:
        """The missed fire to run at boot, per ``missed`` (``skip``: none; ``run-once``: the latest
        fire in ``(covered_until, now]``); ``None`` when nothing was missed or never watched."""
        runs = missed_runs(self.cron, self.tz, covered_until, now, self.config.missed)
        return runs[-1] if runs else None

    def describe(self, now: datetime) -> dict[str, object]:
        return {
            "cron": self.config.cron,
            "tz": self.config.tz,
            "action": self.config.action,
            "missed": self.config.missed,
            "next": iso(self.next_fire(now)),
        }


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ScheduleBook:
    """When each entry last fired and until when it was watched, kept in a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fired: dict[str, str] = {}
        self._watched: dict[str, str] = {}
        try:
            data = json.loads(path.read_text())
            self._fired = {str(k): str(v) for k, v in data.get("fired", {}).items()}
            self._watched = {str(k): str(v) for k, v in data.get("watched", {}).items()}
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, OSError) as exc:
            log.warning("%s: unreadable (%s); schedules start afresh", path, exc)

    def covered_until(self, key: str) -> datetime | None:
        """The later of the last fire and the last time pycron watched the entry."""
        times = [datetime.fromisoformat(t) for t in (self._fired.get(key), self._watched.get(key)) if t]
        return max(times) if times else None

    def last_fired(self, key: str) -> datetime | None:
        text = self._fired.get(key)
        return datetime.fromisoformat(text) if text else None

    def fired(self, key: str, at: datetime) -> None:
        self._fired[key] = at.astimezone(UTC).isoformat()
        self._watched[key] = self._fired[key]
        self.save()

    def watched(self, keys: list[str], until: datetime) -> None:
        """Mark ``keys`` as watched up to ``until`` (at boot and at shutdown)."""
        for key in keys:
            self._watched[key] = until.astimezone(UTC).isoformat()
        self.save()

    def save(self) -> None:
        """Atomic replace, so a crash never leaves half a file."""
        try:
            write_json_atomic(self.path, {"fired": self._fired, "watched": self._watched})
        except OSError as exc:
            log.warning("%s: cannot save (%s)", self.path, exc)
