"""The fill journal: append + fsync with group commit, replay into a real LMDB store, torn tails,
rotation and deletion once confirmed, journal-then-store-behind."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from trader.data.journal import JOURNAL_NAME, FillJournal, Groups, JournaledFills, encode, read_segment
from trader.data.store import Store

pytestmark = pytest.mark.filterwarnings("ignore:Passing a BlockManagerUnconsolidated:DeprecationWarning")

AAPL = 265598


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=15))


def fill(exec_id: str, minute: int = 0, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "time": pd.Timestamp("2024-03-01 14:30:00.123456789", tz="UTC") + pd.Timedelta(minutes=minute),
        "exec_id": exec_id,
        "order_id": 7,
        "perm_id": 99,
        "con_id": AAPL,
        "side": "BOT",
        "shares": 10.0,
        "price": 170.25,
        "commission": None,
        "order_ref": "mom:c1",
    }
    rec.update(kw)
    return rec


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"lmdb://{tmp_path / 'arctic'}")


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(JOURNAL_NAME))


def test_encode_then_read_round_trips_rows_with_nanosecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(encode("mom", fill("e1")) + encode("rev", fill("e2", price=float("nan"))))
    entries = read_segment(path)
    assert [s for s, _ in entries] == ["mom", "rev"]
    assert entries[0][1] == fill("e1")
    assert entries[0][1]["time"].value == fill("e1")["time"].value
    assert pd.isna(entries[1][1]["price"])


def test_append_returns_once_synced_then_lines_on_disk_and_replayed_after_a_crash(
    tmp_path: Path, store: Store
) -> None:
    journal = FillJournal(tmp_path)

    async def body() -> None:
        assert journal.recover(store) == 0
        journal.start()
        await journal.append([("mom", fill("e1"))])
        await journal.append([("mom", fill("e2", 1)), ("rev", fill("e3", 2))])
        # no close: as if killed here (the bytes are in the file, fsynced)

    run(body())
    assert [row["exec_id"] for _, row in FillJournal(tmp_path).read_all()] == ["e1", "e2", "e3"]
    assert journal.stats.appends == 3 and journal.stats.syncs == 2

    again = FillJournal(tmp_path)
    assert again.recover(store) == 3
    assert sorted(store.read_fills()["exec_id"]) == ["e1", "e2", "e3"]
    assert files(tmp_path) == []  # replayed into the store: deleted


def test_replay_is_idempotent_with_fills_already_in_the_store(tmp_path: Path, store: Store) -> None:
    store.append_fills("mom", [fill("e1")])
    (tmp_path / JOURNAL_NAME).write_bytes(encode("mom", fill("e1")) + encode("mom", fill("e2", 1)))
    assert FillJournal(tmp_path).recover(store) == 1
    (tmp_path / JOURNAL_NAME).write_bytes(encode("mom", fill("e1")) + encode("mom", fill("e2", 1)))
    assert FillJournal(tmp_path).recover(store) == 0
    assert sorted(store.read_fills("mom")["exec_id"]) == ["e1", "e2"]


def test_torn_last_line_ignored_with_a_warning(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    whole = encode("mom", fill("e1")) + encode("mom", fill("e2", 1))
    torn = encode("mom", fill("e3", 2))[:-9]  # killed mid-write: never acknowledged
    (tmp_path / JOURNAL_NAME).write_bytes(whole + torn)
    with caplog.at_level(logging.WARNING, logger="trader.data.journal"):
        assert FillJournal(tmp_path).recover(store) == 2
    assert "torn last line ignored" in caplog.text
    assert sorted(store.read_fills("mom")["exec_id"]) == ["e1", "e2"]


def test_unreadable_line_in_the_middle_skipped_the_rest_replayed(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    data = encode("mom", fill("e1")) + b'{"s":"mom","r":{\n' + encode("mom", fill("e2", 1))
    (tmp_path / JOURNAL_NAME).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="trader.data.journal"):
        assert FillJournal(tmp_path).recover(store) == 2
    assert "line 2 unreadable" in caplog.text


def test_recover_failing_store_keeps_the_segments_for_the_next_start(tmp_path: Path, store: Store) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(encode("mom", fill("e1")))

    class Down:
        def append_fills(self, strategy: str, rows: Any) -> int:
            raise OSError("store down")

    with pytest.raises(OSError, match="store down"):
        FillJournal(tmp_path).recover(Down())  # type: ignore[arg-type]
    assert files(tmp_path) == [f"{JOURNAL_NAME}.00000001"]  # sealed, kept
    assert FillJournal(tmp_path).recover(store) == 1
    assert files(tmp_path) == []


def test_schema_refusal_at_replay_logged_and_the_segment_dropped(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(encode("mom", fill("e1", side="BUY")))
    with caplog.at_level(logging.ERROR, logger="trader.data.journal"):
        assert FillJournal(tmp_path).recover(store) == 0
    assert "refused by the store" in caplog.text
    assert files(tmp_path) == []


def test_group_commit_concurrent_appends_share_fsyncs(tmp_path: Path, store: Store) -> None:
    journal = FillJournal(tmp_path)

    async def body() -> None:
        journal.recover(store)
        journal.start()
        await asyncio.gather(*(journal.append([("mom", fill(f"e{i}", i))]) for i in range(200)))
        await journal.close()

    run(body())
    assert journal.stats.appends == 200
    assert journal.stats.syncs < 200  # appends queued during a sync went out together
    assert len(FillJournal(tmp_path).read_all()) == 200  # not confirmed: kept at close


def test_rotation_then_segments_deleted_only_once_confirmed(tmp_path: Path, store: Store) -> None:
    journal = FillJournal(tmp_path, rotate_bytes=1)  # every commit seals its segment

    async def body() -> None:
        journal.recover(store)
        journal.start()
        t1 = await journal.append([("mom", fill("e1"))])
        t2 = await journal.append([("mom", fill("e2", 1)), ("mom", fill("e3", 2))])
        assert t1 != t2
        sealed = [JOURNAL_NAME, f"{JOURNAL_NAME}.00000001", f"{JOURNAL_NAME}.00000002"]
        await wait_for(lambda: files(tmp_path) == sealed)  # sealed just after the commit
        assert journal.unconfirmed == 3
        journal.confirm(t2, 1)  # partly stored: kept
        journal.confirm(t1, 1)
        await wait_for(lambda: files(tmp_path) == [JOURNAL_NAME, f"{JOURNAL_NAME}.00000002"])
        journal.confirm(t2, 1)
        await wait_for(lambda: files(tmp_path) == [JOURNAL_NAME])
        assert journal.unconfirmed == 0
        await journal.close()

    run(body())
    assert journal.stats.rotations == 2
    assert files(tmp_path) == []  # a clean close with everything confirmed leaves nothing


def test_close_with_unconfirmed_fills_keeps_them_for_replay(tmp_path: Path, store: Store) -> None:
    journal = FillJournal(tmp_path, rotate_bytes=300)

    async def body() -> None:
        journal.recover(store)
        journal.start()
        for i in range(5):
            ticket = await journal.append([("mom", fill(f"e{i}", i))])
            if i < 3:
                journal.confirm(ticket, 1)
        await journal.close()

    run(body())
    left = [row["exec_id"] for _, row in FillJournal(tmp_path).read_all()]
    assert {"e3", "e4"} <= set(left)
    assert FillJournal(tmp_path).recover(store) == len(left)
    assert sorted(store.read_fills("mom")["exec_id"]) == sorted(left)


def test_append_before_start_refused(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(RuntimeError, match="not started"):
            await FillJournal(tmp_path).append([("mom", fill("e1"))])

    run(body())
    with pytest.raises(RuntimeError, match="recover"):
        asyncio.run(_start_unrecovered(tmp_path))


async def _start_unrecovered(tmp_path: Path) -> None:
    FillJournal(tmp_path).start()


def test_failed_write_raises_to_the_caller_then_journal_continues_in_a_new_segment(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = FillJournal(tmp_path)
    calls = {"n": 0}
    real = os.fdatasync if hasattr(os, "fdatasync") else os.fsync

    def flaky(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr("trader.data.journal._sync", flaky)

    async def body() -> None:
        journal.recover(store)
        journal.start()
        await journal.append([("mom", fill("e1"))])
        with pytest.raises(OSError, match="No space"):
            await journal.append([("mom", fill("e2", 1))])
        await journal.append([("mom", fill("e3", 2))])

    run(body())
    assert f"{JOURNAL_NAME}.00000001" in files(tmp_path)  # the failed file sealed, not appended to
    ids = [row["exec_id"] for _, row in FillJournal(tmp_path).read_all()]
    assert ids[0] == "e1" and ids[-1] == "e3"


def test_journaled_fills_durable_first_then_stored_behind_and_confirmed(tmp_path: Path, store: Store) -> None:
    journal = FillJournal(tmp_path)
    stored: list[Groups] = []

    async def body() -> None:
        release = asyncio.Event()

        async def store_rows(groups: Groups) -> None:
            await release.wait()
            await asyncio.to_thread(lambda: [store.append_fills(s, rows) for s, rows in groups.items()])
            stored.append(groups)

        journal.recover(store)
        journal.start()
        fills = JournaledFills(journal, store_rows)
        pump = asyncio.create_task(fills.run())
        await fills.record([("mom", fill("e1")), ("rev", fill("e2", 1))])
        await fills.record([("mom", fill("e3", 2))])
        assert fills.behind == 3  # journaled; the store write waits
        assert len(FillJournal(tmp_path).read_all()) == 3
        release.set()
        await fills.drain()
        assert fills.behind == 0
        assert sorted(store.read_fills()["exec_id"]) == ["e1", "e2", "e3"]
        pump.cancel()
        await journal.close()

    run(body())
    assert files(tmp_path) == []  # everything stored: nothing left to replay
    assert sum(len(rows) for groups in stored for rows in groups.values()) == 3


def test_journaled_fills_retries_a_failed_journal_write(tmp_path: Path, store: Store) -> None:
    journal = FillJournal(tmp_path)
    errors: list[OSError] = []
    real_append = journal.append
    failures = {"left": 1}

    async def append(entries: Any) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk hiccup")
        return await real_append(entries)

    journal.append = append  # type: ignore[method-assign]

    async def body() -> None:
        journal.recover(store)
        journal.start()

        async def store_rows(groups: Groups) -> None:
            return None

        fills = JournaledFills(journal, store_rows, errors.append)
        await fills.record([("mom", fill("e1"))])
        await journal.close()

    run(body())
    assert [str(e) for e in errors] == ["disk hiccup"]
    assert [row["exec_id"] for _, row in FillJournal(tmp_path).read_all()] == ["e1"]


async def wait_for(predicate: Any, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
