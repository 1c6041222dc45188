"""pycron job logs: timestamps, the file format, size rotation, the ring buffer, log watches and
the fan-out to followers (no processes; an injected clock)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pycron.joblog import JobLog, LogLine

T0 = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
LINE_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (stdout|stderr|pycron) \| .*")


def ticking(start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> Callable[[], datetime]:
    """A clock that advances ``step`` on every read."""
    times: Iterator[datetime] = (start + i * step for i in range(10**9))
    return lambda: next(times)


def make_log(path: Path | None, **kwargs: Any) -> JobLog:
    options: dict[str, Any] = {"max_bytes": 0, "backup_count": 0, "clock": ticking()}
    options.update(kwargs)
    return JobLog("trader", path, **options)


def test_line_when_serialised_then_iso_utc_with_milliseconds_and_z() -> None:
    paris = timezone(timedelta(hours=1))
    line = LogLine(7, T0.astimezone(paris), "stderr", "boom")

    assert line.as_dict() == {"seq": 7, "at": "2026-01-02T03:04:05.678Z", "stream": "stderr", "text": "boom"}
    assert line.format() == "2026-01-02T03:04:05.678Z stderr | boom"


def test_write_when_lines_written_then_sequence_and_clock_timestamps(tmp_path: Path) -> None:
    log = make_log(tmp_path / "trader.log")
    try:
        first = log.write("hello")
        second = log.write("started pid 123", "pycron")
    finally:
        log.close()

    assert (first.seq, first.at, first.stream, first.text) == (1, T0, "stdout", "hello")
    assert (second.seq, second.at, second.stream) == (2, T0 + timedelta(seconds=1), "pycron")
    assert second.at.tzinfo is not None
    assert log.seq == 2


def test_write_when_no_directory_then_creates_it_and_writes_formatted_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "nested" / "trader.log"
    log = make_log(path)
    try:
        log.write("hello")
        log.write("oops", "stderr")
        # flushed per line: readable while the log is still open
        lines = path.read_text(encoding="utf-8").splitlines()
    finally:
        log.close()

    assert lines == [
        "2026-01-02T03:04:05.678Z stdout | hello",
        "2026-01-02T03:04:06.678Z stderr | oops",
    ]
    assert all(LINE_RE.fullmatch(line) for line in lines)


def test_write_when_text_has_newlines_then_one_record_per_line(tmp_path: Path) -> None:
    path = tmp_path / "trader.log"
    log = make_log(path)
    try:
        line = log.write("Traceback:\n  boom\r\n")
    finally:
        log.close()

    assert line.text == "Traceback:\\n  boom\\n"
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1


def test_write_when_file_exceeds_max_bytes_then_rotates_keeping_backup_count(tmp_path: Path) -> None:
    path = tmp_path / "trader.log"
    record = len(make_log(None).write("x" * 10).format()) + 1
    log = make_log(path, max_bytes=record * 3 + 1, backup_count=2)
    try:
        for index in range(20):
            log.write(f"{index:010d}")
    finally:
        log.close()

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["trader.log", "trader.log.1", "trader.log.2"]
    files_newest_first = (path, *_backups(path))
    texts = [[line.rsplit("| ", 1)[1] for line in p.read_text().splitlines()] for p in files_newest_first]
    assert texts == [
        [f"{i:010d}" for i in (18, 19)],
        [f"{i:010d}" for i in (15, 16, 17)],
        [f"{i:010d}" for i in (12, 13, 14)],
    ]
    assert all(p.stat().st_size < record * 3 + 1 for p in (path, *_backups(path)))


def _backups(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".1"), path.with_name(path.name + ".2")


def test_write_when_backup_count_zero_then_file_restarts_within_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "trader.log"
    log = make_log(path, max_bytes=200, backup_count=0)
    try:
        for index in range(50):
            log.write(f"line {index}")
    finally:
        log.close()

    assert [p.name for p in tmp_path.iterdir()] == ["trader.log"]
    assert 0 < path.stat().st_size < 200
    assert path.read_text().splitlines()[-1].endswith("| line 49")


def test_write_when_file_exists_then_appends(tmp_path: Path) -> None:
    path = tmp_path / "trader.log"
    path.write_text("earlier\n")
    log = make_log(path)
    try:
        log.write("later")
    finally:
        log.close()

    assert path.read_text().splitlines()[0] == "earlier"
    assert path.read_text().splitlines()[1].endswith("stdout | later")


def test_write_when_disk_write_fails_then_counts_and_reports_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    log = make_log(blocker / "trader.log")
    root_handlers = list(logging.getLogger().handlers)
    with caplog.at_level(logging.WARNING, logger="pycron.joblog"):
        lines = [log.write(f"line {i}") for i in range(3)]
    log.close()

    assert log.write_errors == 3
    assert [line.text for line in log.tail(10)] == ["line 0", "line 1", "line 2"]
    records = [r for r in caplog.records if r.name == "pycron.joblog"]
    assert len(records) == 1
    assert "trader" in records[0].getMessage()
    assert lines[-1].seq == 3
    assert logging.getLogger().handlers == root_handlers


def test_tail_when_more_lines_than_ring_then_keeps_the_newest_oldest_first() -> None:
    log = make_log(None, ring=5)
    for index in range(12):
        log.write(f"line {index}")

    assert [line.text for line in log.tail(3)] == ["line 9", "line 10", "line 11"]
    assert [line.seq for line in log.tail(100)] == [8, 9, 10, 11, 12]
    assert log.tail(0) == []


def test_watch_when_matching_line_written_later_then_matched_with_first_match() -> None:
    log = make_log(None)
    log.write("Login has completed (before the watch)")
    watch = log.watch(re.compile(r"Login has completed"))
    assert (watch.matched, watch.line) == (False, None)

    log.write("connecting")
    log.write("Login has completed", "stderr")
    log.write("Login has completed again")

    assert watch.matched
    assert watch.line is not None
    assert (watch.line.seq, watch.line.stream, watch.line.text) == (3, "stderr", "Login has completed")


def test_watch_when_pycron_note_matches_then_ignored_unless_all_streams() -> None:
    log = make_log(None)
    output_only = log.watch(re.compile(r"started"))
    every_stream = log.watch(re.compile(r"started"), streams=None)

    log.write("started pid 123", "pycron")

    assert not output_only.matched
    assert every_stream.matched


def test_watch_when_closed_then_stops_matching() -> None:
    log = make_log(None)
    watch = log.watch(re.compile(r"ready"))
    watch.close()
    log.write("ready")

    assert not watch.matched


def test_stream_when_lines_written_then_every_subscriber_receives_docs() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        log = make_log(None)
        first = log.stream.subscribe()
        second = log.stream.subscribe()
        log.write("one")
        log.write("two", "stderr")
        log.stream.close()
        return [doc async for doc in first], [doc async for doc in second]

    first, second = asyncio.run(asyncio.wait_for(scenario(), timeout=10))

    expected = [
        {"seq": 1, "at": "2026-01-02T03:04:05.678Z", "stream": "stdout", "text": "one"},
        {"seq": 2, "at": "2026-01-02T03:04:06.678Z", "stream": "stderr", "text": "two"},
    ]
    assert first == expected
    assert second == expected


def test_stream_when_follower_waits_then_wakes_on_next_line() -> None:
    async def scenario() -> dict[str, Any] | None:
        log = make_log(None)
        sub = log.stream.subscribe()
        reader = asyncio.create_task(sub.get(timeout=5))
        await asyncio.sleep(0)  # let the reader block first
        log.write("late")
        return await reader

    doc = asyncio.run(asyncio.wait_for(scenario(), timeout=10))

    assert doc is not None
    assert doc["text"] == "late"
