"""AsyncStoreWriter: batching, durability ordering, backpressure, errors, flush on close (real LMDB)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support import ROOT
from trader.data.prepare import Prepared
from trader.data.store import Store, StoreError
from trader.data.writer import AsyncStoreWriter, StoreWriteError

# ArcticDB 6.28 builds frames through a pandas internal that pandas 2.3 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Passing a BlockManagerUnconsolidated:DeprecationWarning")

AAPL = 265598
UTC = "UTC"


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=15))


class RecordingStore(Store):
    """A real store that records (thread, write) for every apply and can fail or block on demand."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.applied: list[tuple[str, Prepared]] = []
        self.fail_if: Callable[[Prepared], bool] = lambda w: False
        self.gate = threading.Event()
        self.gate.set()

    def apply(self, write: Prepared) -> int:
        self.gate.wait(10)
        self.applied.append((threading.current_thread().name, write))
        if self.fail_if(write):
            raise StoreError(f"injected failure on {write.library}/{write.symbol}")
        return super().apply(write)


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(f"lmdb://{tmp_path / 'arctic'}")


def ticks(second: int, n: int = 1, bid: float = 100.0) -> pd.DataFrame:
    idx = pd.date_range(
        pd.Timestamp("2024-01-02 14:30", tz=UTC) + pd.Timedelta(seconds=second), periods=n, freq="ms"
    )
    return pd.DataFrame({"bid": bid + np.arange(n, dtype=float)}, index=idx)


def bars(n: int, close: float) -> pd.DataFrame:
    idx = pd.date_range("2024-01-02 14:30", periods=n, freq="min", tz=UTC)
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=idx
    )


def fill(exec_id: str) -> dict[str, Any]:
    return {
        "time": pd.Timestamp("2024-03-01 14:30", tz=UTC),
        "exec_id": exec_id,
        "order_id": 7,
        "con_id": AAPL,
        "side": "SLD",
        "shares": 5,
        "price": 170.0,
    }


READ_FILLS = textwrap.dedent(
    """
    import sys
    from trader.data.store import Store
    print(",".join(Store(sys.argv[1]).read_fills("mom")["exec_id"]), flush=True)
    """
)


def test_writer_when_fill_awaited_then_readable_from_fresh_store_in_other_process(
    store: RecordingStore,
) -> None:
    async def main() -> str:
        async with AsyncStoreWriter(store, linger_s=5.0) as writer:  # a long window must not delay fills
            for i in range(20):
                await writer.append_ticks(AAPL, ticks(i))
            await writer.write_fill("mom", fill("e1"))
            # Awaited: stored now. Check from another process before anything else happens.
            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", READ_FILLS, store.uri],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr[-2000:]
            return out.stdout.strip()

    assert run(main()) == "e1"


def test_writer_when_many_small_writes_then_coalesced_per_symbol(store: RecordingStore) -> None:
    async def main() -> AsyncStoreWriter:
        async with AsyncStoreWriter(store, linger_s=0.2) as writer:
            for i in range(100):
                await writer.append_ticks(AAPL, ticks(i))
                await writer.append_ticks(8314, ticks(i))
            await writer.flush()
            return writer

    writer = run(main())
    assert len(store.read_ticks(AAPL)) == 100 and len(store.read_ticks(8314)) == 100
    assert writer.stats.writes == 200
    assert writer.stats.store_calls <= 10  # 2 symbols x a few batches, not 200 calls
    assert {thread for thread, _ in store.applied} == {"store-writer"}  # never on the event loop


def test_writer_when_single_ticks_then_framed_together_with_exact_values(store: RecordingStore) -> None:
    t0 = pd.Timestamp("2024-01-02 09:30", tz="America/New_York")

    async def main() -> None:
        async with AsyncStoreWriter(store, linger_s=0.2) as writer:
            for i in range(50):
                await writer.append_tick(AAPL, t0 + pd.Timedelta(milliseconds=i), bid=100.0 + i, bid_size=3)
            await writer.append_ticks(AAPL, ticks(60, 2, bid=7.0))  # frames and single ticks mix in order
            await writer.append_tick(AAPL, "2024-01-02T14:31:01Z", last=99.5, last_size=100)
            with pytest.raises(ValueError, match="unknown column 'price'"):
                await writer.append_tick(AAPL, t0, price=1.0)
            with pytest.raises(ValueError, match="tz-naive"):
                await writer.append_tick(AAPL, "2024-01-02 14:30", bid=1.0)
            with pytest.raises(ValueError, match="'bid' must be numeric"):
                await writer.append_tick(AAPL, t0, bid="1.0")  # type: ignore[arg-type]

    run(main())
    out = store.read_ticks(AAPL)
    assert len(out) == 53 and len(store.applied) == 1
    assert out["bid"].iloc[:50].tolist() == [100.0 + i for i in range(50)]
    assert out.index[0] == pd.Timestamp("2024-01-02 14:30", tz=UTC)
    assert out["bid"].iloc[50:52].tolist() == [7.0, 8.0]
    assert out.iloc[-1]["last_size"] == 100.0 and np.isnan(out.iloc[-1]["bid"])


def test_writer_when_bars_overlap_in_one_batch_then_later_write_wins(store: RecordingStore) -> None:
    async def main() -> None:
        async with AsyncStoreWriter(store, linger_s=0.2) as writer:
            await writer.write_bars(AAPL, "1 min", bars(5, 1.0))
            await writer.write_bars(AAPL, "1 min", bars(3, 2.0))

    run(main())
    assert store.read_bars(AAPL, "1 min")["close"].tolist() == [2.0, 2.0, 2.0, 1.0, 1.0]
    assert len(store.applied) == 1  # coalesced into one upsert


def test_writer_when_closed_then_pending_writes_flushed(store: RecordingStore) -> None:
    async def main() -> None:
        writer = AsyncStoreWriter(store, linger_s=10.0)
        writer.start()
        await writer.append_ticks(AAPL, ticks(0, 3))
        await writer.write_bars(AAPL, "1 min", bars(2, 1.0))
        await writer.write_positions_snapshot(
            "mom", pd.DataFrame({"con_id": [AAPL], "quantity": [5]}), "2024-03-01T15:00Z"
        )
        await writer.write_portfolio_snapshot("DU1", {"net_liquidation": 1e6}, "2024-03-01T15:00Z")
        await writer.write_daily_pnl("mom", "2024-03-01", {"realized_pnl": 3.0})
        await writer.write_order(
            "mom", {"time": pd.Timestamp("2024-03-01 15:00", tz=UTC), "order_id": 1, "status": "Submitted"}
        )
        assert store.read_ticks(AAPL).empty  # still inside the batching window
        await writer.close()
        assert not writer.running
        await writer.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await writer.append_ticks(AAPL, ticks(9))

    run(main())
    assert len(store.read_ticks(AAPL)) == 3
    assert len(store.read_bars(AAPL, "1 min")) == 2
    assert store.read_positions("mom")["quantity"].tolist() == [5.0]
    assert store.read_portfolio("DU1")["net_liquidation"].tolist() == [1e6]
    assert store.read_daily_pnl("mom")["realized_pnl"].tolist() == [3.0]
    assert store.read_orders("mom")["status"].tolist() == ["Submitted"]


def test_writer_when_bad_input_then_producer_gets_value_error_at_once(store: RecordingStore) -> None:
    async def main() -> None:
        async with AsyncStoreWriter(store) as writer:
            naive = ticks(0)
            naive.index = pd.DatetimeIndex(naive.index).tz_localize(None)
            with pytest.raises(ValueError, match=r"index 'time'.*tz-naive"):
                await writer.append_ticks(AAPL, naive)
            with pytest.raises(ValueError, match=r"unknown column\(s\) \['price'\]"):
                await writer.append_ticks(AAPL, ticks(0).assign(price=1.0))
            with pytest.raises(ValueError, match="exec_id"):
                await writer.write_fill("mom", {**fill("e1"), "exec_id": ""})
            assert writer.pending == 0

    run(main())
    assert store.applied == []


def test_writer_when_same_fill_written_twice_then_stored_once(store: RecordingStore) -> None:
    async def main() -> None:
        async with AsyncStoreWriter(store) as writer:
            await asyncio.gather(*(writer.write_fill("mom", fill("e1")) for _ in range(5)))
            await writer.write_fills("mom", [fill("e1"), fill("e2")])

    run(main())
    assert store.read_fills("mom")["exec_id"].tolist() == ["e1", "e2"]


def test_writer_when_fill_write_fails_then_awaiting_caller_raises(store: RecordingStore) -> None:
    store.fail_if = lambda w: w.library == "fills"

    async def main() -> None:
        async with AsyncStoreWriter(store) as writer:
            with pytest.raises(StoreError, match="injected failure on fills/mom"):
                await writer.write_fill("mom", fill("e1"))
            await writer.append_ticks(AAPL, ticks(0))  # the writer keeps working

    run(main())
    assert len(store.read_ticks(AAPL)) == 1


def test_writer_when_bulk_write_fails_then_others_written_and_flush_raises(store: RecordingStore) -> None:
    bad = pd.Timestamp("2024-01-02 14:30:05", tz=UTC)
    store.fail_if = lambda w: w.library == "ticks" and bad in w.frame.index
    errors: list[str] = []

    async def main() -> None:
        writer = AsyncStoreWriter(store, linger_s=0.2, on_error=lambda what, exc: errors.append(what))
        async with writer:
            for i in range(10):
                await writer.append_ticks(AAPL, ticks(i))
            with pytest.raises(StoreWriteError, match="1 store write"):
                await writer.flush()
            await writer.flush()  # reported once
            assert writer.stats.failures == 1

    run(main())
    assert len(store.read_ticks(AAPL)) == 9  # the coalesced write failed; parts retried alone
    assert errors == ["append ticks/265598 (1 rows)"]


def test_writer_when_queue_full_then_producer_waits_and_nothing_dropped(store: RecordingStore) -> None:
    store.gate.clear()  # the worker blocks inside its first write

    async def main() -> None:
        async with AsyncStoreWriter(store, max_pending=3, linger_s=0) as writer:
            for i in range(3):
                await writer.append_ticks(AAPL, ticks(i))
            blocked = asyncio.create_task(writer.append_ticks(AAPL, ticks(3)))
            await asyncio.sleep(0.2)
            assert not blocked.done()  # backpressure: waits for room
            store.gate.set()
            await asyncio.wait_for(blocked, 5)

    run(main())
    assert len(store.read_ticks(AAPL)) == 4


def test_writer_when_fill_queued_behind_bulk_then_written_first(store: RecordingStore) -> None:
    async def main() -> None:
        async with AsyncStoreWriter(store, linger_s=5.0) as writer:
            for i in range(5):
                await writer.write_bars(AAPL, "1 min", bars(1, float(i)))
            await writer.write_fill("mom", fill("e1"))

    run(main())
    assert [w.library for _, w in store.applied] == ["fills", "bars_1min"]


def test_writer_when_call_then_runs_on_worker_and_returns_or_raises(store: RecordingStore) -> None:
    def boom(s: Store) -> None:
        raise KeyError("missing")

    async def main() -> None:
        async with AsyncStoreWriter(store) as writer:
            await writer.call(lambda s: s.put_contract("STK:AAPL:SMART:USD", {"conId": AAPL}))
            name = await writer.call(lambda s: threading.current_thread().name)
            assert name == "store-writer"
            assert await writer.call(lambda s: s.get_contract("STK:AAPL:SMART:USD")) == {"conId": AAPL}
            with pytest.raises(KeyError):
                await writer.call(boom)

    run(main())
