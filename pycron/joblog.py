"""Each job's output: a rotated log file, an in-memory ring of recent lines, and a live fan-out.

Every line a job prints (and every note pycron makes about it, stream ``pycron``) becomes a
:class:`LogLine` with a per-job sequence number and a UTC timestamp. :class:`JobLog` appends it to
``<data-dir>/logs/<job>.log`` (flushed per line, for ``tail -f``; rotated by size like
``logging.handlers.RotatingFileHandler``, but without touching the ``logging`` module's state),
keeps the last ``ring`` lines for ``logs --tail``, publishes it on :attr:`JobLog.stream` for
followers, and checks it against the patterns of live :class:`LogWatch` es (log probes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pycron.bus import Fanout

OUTPUT_STREAMS = ("stdout", "stderr")
"""What the job itself wrote; ``pycron`` is pycron's notes about the job."""

_log = logging.getLogger("pycron.joblog")

RING_LINES = 2000
"""Lines of each job's output kept in memory (``GET /processes/<name>/logs?tail=N`` reads them)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(at: datetime) -> str:
    """``2026-01-02T03:04:05.678Z``: ISO-8601 in UTC with milliseconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a job's log; ``stream`` is ``stdout``, ``stderr`` or ``pycron``."""

    seq: int
    at: datetime
    stream: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        """The log-line document of the API (:mod:`pycron.api`)."""
        return {"seq": self.seq, "at": iso_utc(self.at), "stream": self.stream, "text": self.text}

    def format(self) -> str:
        """The line as written to the file: ``<at> <stream> | <text>``."""
        return f"{iso_utc(self.at)} {self.stream} | {self.text}"


class LogWatch:
    """Waits for the first line matching ``pattern`` written after the watch was created.

    Created by :meth:`JobLog.watch`; ``matched`` and ``line`` tell whether and where it matched.
    """

    def __init__(self, owner: JobLog, pattern: re.Pattern[str], streams: Collection[str] | None) -> None:
        self._owner = owner
        self.pattern = pattern
        self.streams = None if streams is None else frozenset(streams)
        self.line: LogLine | None = None
        self.closed = False

    @property
    def matched(self) -> bool:
        return self.line is not None

    def _offer(self, line: LogLine) -> bool:
        """Check ``line``; True once this watch is done (matched)."""
        if self.streams is not None and line.stream not in self.streams:
            return False
        if self.pattern.search(line.text):
            self.line = line
            return True
        return False

    def close(self) -> None:
        """Stop watching (a matched watch keeps its ``line``)."""
        self.closed = True
        self._owner._forget(self)


class JobLog:
    """The output of the job ``name``: file ``path`` (None: no file), ring buffer and fan-out.

    ``max_bytes`` / ``backup_count`` rotate the file as ``RotatingFileHandler`` does: before a line
    would take it to ``max_bytes``, ``path`` becomes ``path.1`` (``path.1`` becomes ``path.2`` ...,
    keeping ``backup_count``). With ``backup_count`` 0 the file is started afresh instead, so the
    disk used stays bounded; ``max_bytes`` 0 never rotates.

    A failing write (disk full, permissions) never raises: it is counted in ``write_errors`` and
    logged once per run of failures; the next write tries to reopen the file.
    """

    def __init__(
        self,
        name: str,
        path: Path | None,
        *,
        max_bytes: int,
        backup_count: int,
        ring: int = RING_LINES,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = name
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._clock = clock
        self._ring: deque[LogLine] = deque(maxlen=max(ring, 1))
        self.stream: Fanout[dict[str, Any]] = Fanout(history=max(ring, 1))
        """Every line's :meth:`LogLine.as_dict`, as written (``subscribe()`` to follow)."""
        self._watches: list[LogWatch] = []
        self._seq = 0
        self._file: BinaryIO | None = None
        self._size = 0
        self.write_errors = 0
        """Lines that could not be written to the file (they are still in the ring and stream)."""
        self._failing = False

    @property
    def seq(self) -> int:
        """The sequence number of the last line written (0 before the first)."""
        return self._seq

    def write(self, text: str, stream: str = "stdout") -> LogLine:
        """Record one line: file, ring, watches, fan-out. Embedded newlines become ``\\n`` so every
        record stays one line everywhere."""
        if "\n" in text or "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
        self._seq += 1
        line = LogLine(self._seq, self._clock().astimezone(UTC), stream, text)
        if self.path is not None:
            self._append(line)
        self._ring.append(line)
        if self._watches:
            self._watches = [watch for watch in self._watches if not watch._offer(line)]
        self.stream.publish(line.as_dict())
        return line

    def tail(self, n: int) -> list[LogLine]:
        """The last ``n`` lines kept in memory, oldest first."""
        if n <= 0:
            return []
        lines = list(self._ring)
        return lines[-n:]

    def watch(self, pattern: re.Pattern[str], streams: Collection[str] | None = OUTPUT_STREAMS) -> LogWatch:
        """A watch for the first line written from now on whose text matches ``pattern``
        (``re.search``). By default only the job's own output counts (not pycron's notes about
        it, which could match by accident); ``streams=None`` watches every stream."""
        watch = LogWatch(self, pattern, streams)
        self._watches.append(watch)
        return watch

    def close(self) -> None:
        """Close the file (a later write reopens it)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _forget(self, watch: LogWatch) -> None:
        with contextlib.suppress(ValueError):
            self._watches.remove(watch)

    # --- the file ---------------------------------------------------------------------------------

    def _append(self, line: LogLine) -> None:
        data = (line.format() + "\n").encode("utf-8", errors="replace")
        try:
            if self._file is None:
                self._open()
            if self.max_bytes > 0 and self._size > 0 and self._size + len(data) >= self.max_bytes:
                self._rotate()
            file = self._file
            assert file is not None
            file.write(data)
            file.flush()
            self._size += len(data)
        except (OSError, ValueError) as exc:
            self.write_errors += 1
            self.close()
            if not self._failing:
                self._failing = True
                _log.warning("job %s: cannot write its log %s: %s", self.name, self.path, exc)
            return
        if self._failing:
            self._failing = False
            _log.warning(
                "job %s: writing its log %s again (%d lines lost)", self.name, self.path, self.write_errors
            )

    def _open(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across writes
        self._size = os.fstat(self._file.fileno()).st_size

    def _rotate(self) -> None:
        """``path.N-1`` -> ``path.N`` ... ``path`` -> ``path.1``, then a fresh ``path``."""
        assert self.path is not None
        self.close()
        if self.backup_count > 0:
            for index in range(self.backup_count - 1, 0, -1):
                source = self._backup(index)
                if source.exists():
                    os.replace(source, self._backup(index + 1))
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def _backup(self, index: int) -> Path:
        assert self.path is not None
        return self.path.with_name(f"{self.path.name}.{index}")
