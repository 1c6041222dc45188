"""The fill journal: the trader's durability point for fills, ahead of the store.

A fill is appended to ``<dir>/fills.journal`` (JSON lines, one ``{"s": strategy, "r": row}`` per
fill, ``row`` as for :meth:`~trader.data.store.Store.append_fills`) and ``fdatasync``-ed BEFORE it
is published; the ArcticDB write follows behind (:class:`JournaledFills`). An fsync costs a
fraction of an ArcticDB append, so this keeps the "written before acknowledged" guarantee off the
store's latency.

* **Group commit.** One dedicated thread ("fill-journal") writes: every append queued while it is
  syncing goes out with the next write and shares one fsync. ``await append(...)`` returns once
  the lines are on disk; a failed write or sync raises ``OSError`` to every waiting caller (the
  file is then reopened: the lines may or may not be there, replay is idempotent).
* **Segments.** The active file is ``fills.journal``; past ``rotate_bytes`` it is sealed (renamed
  ``fills.journal.<n>``) and a new one started. A sealed segment is deleted once every fill in it
  is confirmed stored (:meth:`FillJournal.confirm`). A clean :meth:`FillJournal.close` with
  everything confirmed leaves no file.
* **Recovery** (:meth:`FillJournal.recover`, before any append): the active file left by the last
  run is sealed, every segment is read and appended to the store (idempotent by exec id), and the
  segments are deleted only once the store returned. A torn last line (a crash mid-write; never
  acknowledged) is ignored with a warning; so is an unreadable line elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from trader.data.store import Store

log = logging.getLogger(__name__)

JOURNAL_NAME = "fills.journal"
ROTATE_BYTES = 1 << 20

Entry = tuple[str, dict[str, Any]]
"""(strategy, fill row)."""
Groups = dict[str, list[dict[str, Any]]]
"""Fill rows by strategy."""

_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


# ---- encoding ---------------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # pd.Timestamp too; isoformat keeps nanoseconds and zone
        return {"$ts": value.isoformat()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not journalable: {type(value).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$ts" in obj:
        return pd.Timestamp(obj["$ts"])
    return obj


def encode(strategy: str, row: dict[str, Any]) -> bytes:
    """One journal line (with its newline)."""
    return json.dumps({"s": strategy, "r": row}, default=_default, separators=(",", ":")).encode() + b"\n"


def read_segment(path: Path) -> list[Entry]:
    """The entries of one journal file; a torn last line or an unreadable line is skipped (warned)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail:
        log.warning("fill journal %s: torn last line ignored (%d bytes)", path, len(tail))
    entries: list[Entry] = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            obj = json.loads(line, object_hook=_hook)
            entries.append((str(obj["s"]), dict(obj["r"])))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("fill journal %s: line %d unreadable, ignored (%s)", path, number, exc)
    return entries


def group(entries: Iterable[Entry]) -> Groups:
    groups: Groups = {}
    for strategy, row in entries:
        groups.setdefault(strategy, []).append(row)
    return groups


# ---- the journal ------------------------------------------------------------------------------------


@dataclass(slots=True)
class JournalStats:
    appends: int = 0
    """Entries appended."""
    syncs: int = 0
    """Group commits (one write + one fsync each)."""
    sync_s: float = 0.0
    """Total time in write + fsync."""
    max_sync_s: float = 0.0
    rotations: int = 0
    deleted: int = 0


@dataclass(slots=True)
class _Append:
    data: bytes
    count: int
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Segment:
    appended: int = 0
    confirmed: int = 0
    sealed: bool = False


@dataclass(slots=True)
class _State:
    segments: dict[int, _Segment] = field(default_factory=dict)
    active: int = 0


class FillJournal:
    """``<directory>/fills.journal[.<n>]``; see the module docstring."""

    def __init__(self, directory: Path, *, rotate_bytes: int = ROTATE_BYTES, sync: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / JOURNAL_NAME
        self.rotate_bytes = rotate_bytes
        self.sync = sync
        self.stats = JournalStats()
        self._cond = threading.Condition()
        self._queue: deque[_Append] = deque()
        self._state = _State()
        self._file: Any = None
        self._size = 0
        self._stopping = False
        self._recovered = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- recovery (before start) ---------------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        """Sealed segments on disk, oldest first."""
        found: list[tuple[int, Path]] = []
        for path in self.directory.glob(JOURNAL_NAME + ".*"):
            suffix = path.name[len(JOURNAL_NAME) + 1 :]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def _seal_path(self, number: int) -> Path:
        return self.directory / f"{JOURNAL_NAME}.{number:08d}"

    def read_all(self) -> list[Entry]:
        """Every entry on disk (sealed segments, then the active file), without changing anything."""
        entries: list[Entry] = []
        for _, path in self.segments():
            entries += read_segment(path)
        if self.path.exists():
            entries += read_segment(self.path)
        return entries

    def recover(self, store: Store) -> int:
        """Blocking: seal the last run's active file, append every journaled fill to ``store``
        (idempotent), delete the segments once it returned. Returns the fills NEWLY stored. A store
        failure propagates (the segments stay for the next start); schema refusals are logged."""
        self.directory.mkdir(parents=True, exist_ok=True)
        sealed = self.segments()
        number = sealed[-1][0] + 1 if sealed else 1
        if self.path.exists():
            self.path.rename(self._seal_path(number))
            self._sync_dir()
            number += 1
            sealed = self.segments()
        entries = [entry for _, path in sealed for entry in read_segment(path)]
        stored = 0
        for strategy, rows in group(entries).items():
            try:
                stored += store.append_fills(strategy, rows)
            except ValueError as exc:
                log.error("fill journal: fills of %s refused by the store: %s", strategy, exc)
        for _, path in sealed:
            path.unlink()
        if sealed:
            self._sync_dir()
            log.info("fill journal: %d fills replayed, %d newly stored", len(entries), stored)
        self._state.active = number
        self._recovered = True
        return stored

    # ---- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the active file and start the thread; call from the loop the journal serves."""
        if self._thread is not None:
            return
        if not self._recovered:
            raise RuntimeError("FillJournal.recover() must run before start()")
        self._loop = asyncio.get_running_loop()
        self._open_active()
        self._thread = threading.Thread(target=self._run, name="fill-journal", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Write what is queued, stop the thread; delete every file if every fill is confirmed."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        await asyncio.to_thread(thread.join)
        self._thread = None

    @property
    def unconfirmed(self) -> int:
        """Fills journaled and not yet confirmed stored."""
        with self._cond:
            return sum(s.appended - s.confirmed for s in self._state.segments.values())

    # ---- appending -----------------------------------------------------------------------------------

    async def append(self, entries: Sequence[Entry]) -> int:
        """Append and sync ``entries``; returns a ticket for :meth:`confirm` once they are on disk.
        Encoding happens here (a bad row raises ``TypeError`` at once); I/O on the journal thread."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("FillJournal is not started")
        data = b"".join(encode(strategy, row) for strategy, row in entries)
        future: asyncio.Future[int] = self._loop.create_future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("FillJournal is closing")
            self._queue.append(_Append(data, len(entries), future))
            self._cond.notify()
        return await future

    def confirm(self, ticket: int, count: int) -> None:
        """``count`` fills of the append that returned ``ticket`` are stored (or refused for good)."""
        with self._cond:
            segment = self._state.segments.get(ticket)
            if segment is None:
                return
            segment.confirmed += count
            if segment.sealed and segment.confirmed >= segment.appended:
                self._cond.notify()

    # ---- journal thread ------------------------------------------------------------------------------

    def _open_active(self) -> None:
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the journal
        self._size = self._file.tell()
        self._state.segments.setdefault(self._state.active, _Segment())
        self._sync_dir()

    def _sync_dir(self) -> None:
        if not self.sync:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._deletable():
                    self._cond.wait()
                batch = list(self._queue)
                self._queue.clear()
                stopping = self._stopping
                deletable = self._deletable()
            for number in deletable:
                self._delete(number)
            if batch:
                self._commit(batch)
            if stopping and not batch:
                self._shutdown()
                return

    def _deletable(self) -> list[int]:
        return [n for n, s in self._state.segments.items() if s.sealed and s.confirmed >= s.appended]

    def _commit(self, batch: list[_Append]) -> None:
        started = time.perf_counter()
        error: OSError | None = None
        ticket = self._state.active
        try:
            if self._file is None:  # after a failure: seal what may end with a partial line first
                self._rotate()
                ticket = self._state.active
            self._file.write(b"".join(a.data for a in batch))
            if self.sync:
                _sync(self._file.fileno())
        except OSError as exc:
            error = exc
            log.error("fill journal: write to %s failed: %s", self.path, exc)
            self._close_file()
        else:
            count = sum(a.count for a in batch)
            self._size += sum(len(a.data) for a in batch)
            with self._cond:
                self._state.segments[ticket].appended += count
            self.stats.appends += count
        elapsed = time.perf_counter() - started
        self.stats.syncs += 1
        self.stats.sync_s += elapsed
        self.stats.max_sync_s = max(self.stats.max_sync_s, elapsed)
        for item in batch:
            self._resolve(item.future, ticket, error)
        if self._file is not None and self._size >= self.rotate_bytes:
            try:
                self._rotate()
            except OSError as exc:
                log.error("fill journal: rotating %s failed: %s", self.path, exc)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _rotate(self) -> None:
        """Seal the active file (renamed ``fills.journal.<n>``) and open a new one."""
        self._close_file()
        number = self._state.active
        if self.path.exists():
            self.path.rename(self._seal_path(number))
        with self._cond:
            self._state.segments.setdefault(number, _Segment()).sealed = True
            self._state.active = number + 1
        self.stats.rotations += 1
        self._open_active()

    def _delete(self, number: int) -> None:
        try:
            self._seal_path(number).unlink(missing_ok=True)
        except OSError as exc:
            log.error("fill journal: deleting segment %d failed: %s", number, exc)
            return
        with self._cond:
            self._state.segments.pop(number, None)
        self.stats.deleted += 1

    def _shutdown(self) -> None:
        self._close_file()
        with self._cond:
            done = all(s.confirmed >= s.appended for s in self._state.segments.values())
        if not done:
            log.warning("fill journal: closed with %d fills not confirmed stored", self.unconfirmed)
            return
        for number, segment in list(self._state.segments.items()):
            if segment.sealed:
                self._delete(number)
        with contextlib.suppress(OSError):
            self.path.unlink()
            self._sync_dir()

    def _resolve(self, future: asyncio.Future[int], ticket: int, error: OSError | None) -> None:
        def done() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(ticket)

        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(done)


# ---- journal first, store behind --------------------------------------------------------------------


class JournaledFills:
    """Fills journaled (durable, awaited) then stored behind, in order, by ``store_rows`` (which
    retries until the store took them); stored fills are confirmed to the journal."""

    def __init__(
        self,
        journal: FillJournal,
        store_rows: Callable[[Groups], Awaitable[None]],
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.journal = journal
        self.store_rows = store_rows
        self.on_error = on_error
        self._behind: asyncio.Queue[tuple[int, list[Entry]]] = asyncio.Queue()

    async def record(self, entries: list[Entry]) -> None:
        """Durable once this returns (journaled; a failed journal write is retried, reported to
        ``on_error``, and never skipped); the store write is queued."""
        delay = 0.2
        while True:
            try:
                ticket = await self.journal.append(entries)
                break
            except OSError as exc:
                log.error("journaling %d fills failed (%s): retrying in %.1f s", len(entries), exc, delay)
                if self.on_error is not None:
                    self.on_error(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._behind.put_nowait((ticket, entries))

    @property
    def behind(self) -> int:
        """Journaled fills not yet stored."""
        return self.journal.unconfirmed

    async def run(self) -> None:
        """The store-behind pump: everything queued in one store call per strategy."""
        while True:
            batch = [await self._behind.get()]
            while not self._behind.empty():
                batch.append(self._behind.get_nowait())
            try:
                await self.store_rows(group(e for _, entries in batch for e in entries))
                for ticket, entries in batch:
                    self.journal.confirm(ticket, len(entries))
            finally:
                for _ in batch:
                    self._behind.task_done()

    async def drain(self) -> None:
        """Wait until every queued fill is stored."""
        await self._behind.join()
