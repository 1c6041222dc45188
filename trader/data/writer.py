"""AsyncStoreWriter: the trader service's store writes, batched, on one dedicated thread.

ArcticDB calls block, so none runs on the event loop. Coroutines hand writes to the writer; ONE
worker thread ("store-writer") performs them in batches:

* Input is validated in the caller (``trader.data.prepare``): bad input raises ``ValueError`` at
  once in the producing coroutine, never later in the worker.
* **Durable** writes (``write_fill(s)``, ``write_order(s)`` with ``durable=True``, ``call``,
  ``flush``) return only once the write is done: after ``await writer.write_fill(...)`` the fill is
  stored (readable by any process), so the trader writes a fill BEFORE acknowledging it. A failed
  durable write raises ``StoreError`` to its awaiting caller. They go to a priority queue served
  before bulk writes and end the batching window at once. They are never dropped.
* **Fire-and-forget** writes (bars, ticks, order events, snapshots, P&L) return once queued. The
  bulk queue is bounded (``max_pending`` writes): when full, the producer coroutine WAITS for
  room (backpressure; nothing is ever dropped). Their failures are logged, counted, passed to
  ``on_error``, and raised (as ``StoreWriteError``) by the next ``flush()`` / ``close()``.
* Batching: the worker waits up to ``linger_s`` after the oldest queued bulk write (or until
  ``max_batch`` writes are queued, or a durable write arrives), then takes everything queued.
  Writes to the same library/symbol are coalesced into one ArcticDB call (ticks and order events
  appended together, bars upserted together with later bars winning, fills deduplicated); snapshot
  upserts run one by one. If a coalesced write fails, its parts are retried one by one so one bad
  part fails alone.
* Ordering: writes to one symbol are applied in the order they were made; durable writes may
  overtake queued bulk writes to other symbols. ``flush()`` waits for everything queued before it.
* ``close()`` flushes, stops the thread and surfaces unreported failures. Cancelling a coroutine
  awaiting a durable write does not cancel the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import pandas as pd

from trader.data import prepare as pp
from trader.data.layout import TICKS_LIB, con_id_symbol
from trader.data.store import Store, StoreError, TimeLike

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreWriteError(StoreError):
    """Fire-and-forget writes failed; ``errors`` holds (description, exception) pairs."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        self.errors = errors
        first = f"{errors[0][0]}: {errors[0][1]}" if errors else ""
        super().__init__(f"{len(errors)} store write(s) failed; first: {first}")


@dataclass(slots=True)
class _Item:
    write: pp.Prepared | None = None
    """A store write; None with ``tick`` and ``call`` None: a barrier (flush)."""
    tick: tuple[str, pp.TickRow] | None = None
    """(symbol, row) of one tick from ``append_tick``."""
    call: Callable[[Store], Any] | None = None
    future: asyncio.Future[Any] | None = None
    bulk_token: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    finished: bool = False

    @property
    def key(self) -> tuple[str, str, str] | None:
        """Coalescing key, None if the item runs alone."""
        if self.write is not None:
            return self.write.key
        if self.tick is not None:
            return ("append", TICKS_LIB, self.tick[0])
        return None

    def prepared(self) -> pp.Prepared:
        if self.write is not None:
            return self.write
        assert self.tick is not None
        return pp.prepare_tick_rows(self.tick[0], [self.tick[1]])

    def describe(self) -> str:
        if self.write is not None or self.tick is not None:
            w = self.prepared() if self.write is None else self.write
            return f"{w.mode} {w.library}/{w.symbol} ({len(w.frame)} rows)"
        return "call" if self.call is not None else "flush"


@dataclass(slots=True)
class WriterStats:
    writes: int = 0
    """Prepared writes performed (before coalescing)."""
    store_calls: int = 0
    """ArcticDB-level write operations (after coalescing)."""
    batches: int = 0
    failures: int = 0


class AsyncStoreWriter:
    """Batched store writes off the event loop; see the module docstring for the semantics."""

    def __init__(
        self,
        store: Store,
        *,
        max_pending: int = 100_000,
        max_batch: int = 10_000,
        linger_s: float = 0.05,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if max_pending < 1 or max_batch < 1 or linger_s < 0:
            raise ValueError("max_pending and max_batch must be >= 1, linger_s >= 0")
        self.store = store
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.on_error = on_error
        self.stats = WriterStats()
        self._cond = threading.Condition()
        self._urgent: deque[_Item] = deque()
        self._bulk: deque[_Item] = deque()
        self._stopping = False
        self._bulk_barriers = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._space: asyncio.Semaphore | None = None
        self._unreported: list[tuple[str, BaseException]] = []
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread; call from the event loop the writer will serve."""
        if self._thread is not None:
            return
        if self._closed:
            raise RuntimeError("AsyncStoreWriter is closed")
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Semaphore(self.max_pending)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def __aenter__(self) -> AsyncStoreWriter:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:  # do not mask the exception that ended the block
            await self.close()
        except StoreWriteError as write_error:
            log.error("store writer: closed after %r with failed writes: %s", exc, write_error)

    @property
    def pending(self) -> int:
        """Writes queued and not yet taken by the worker."""
        with self._cond:
            return len(self._urgent) + len(self._bulk)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def flush(self) -> None:
        """Wait until every write queued before this call is done; raise ``StoreWriteError`` for
        fire-and-forget failures not yet reported."""
        await self._submit(_Item(), durable=True, urgent=False)
        self._raise_unreported()

    async def close(self) -> None:
        """Flush, stop the worker thread, and raise any unreported failure. Idempotent."""
        if self._closed:
            return
        if self._thread is None:
            self._closed = True
            return
        try:
            await self._submit(_Item(), durable=True, urgent=False)
        finally:
            self._closed = True
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            thread = self._thread
            await asyncio.to_thread(thread.join)
        self._raise_unreported()

    def _raise_unreported(self) -> None:
        if self._unreported:
            errors, self._unreported = self._unreported, []
            raise StoreWriteError(errors)

    # ---- durable writes ----------------------------------------------------------------------------

    async def write_fill(self, strategy: str, fill: Mapping[str, Any]) -> None:
        """Store one fill (idempotent by exec_id); returns once it is durably stored."""
        await self.write_fills(strategy, [fill])

    async def write_fills(self, strategy: str, fills: Iterable[Mapping[str, Any]]) -> None:
        """Store fills (idempotent by exec_id); returns once they are durably stored."""
        await self._submit(_Item(pp.prepare_fills(strategy, fills)), durable=True, urgent=True)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the writer thread (e.g. ``lambda s: s.put_contract(k, c)``) and
        return its result; its exception is raised here. Runs ahead of queued bulk writes."""
        result: T = await self._submit(_Item(call=fn), durable=True, urgent=True)
        return result

    # ---- writes that are durable on request --------------------------------------------------------

    async def write_order(self, strategy: str, event: Mapping[str, Any], *, durable: bool = False) -> None:
        """Log one order state change; ``durable``: return once stored (else once queued)."""
        await self.write_orders(strategy, [event], durable=durable)

    async def write_orders(
        self, strategy: str, events: Iterable[Mapping[str, Any]], *, durable: bool = False
    ) -> None:
        await self._submit(_Item(pp.prepare_orders(strategy, events)), durable=durable, urgent=durable)

    # ---- fire-and-forget writes --------------------------------------------------------------------

    async def write_bars(self, con_id: int, bar_size: str, df: pd.DataFrame) -> None:
        await self._enqueue(pp.prepare_bars(con_id, bar_size, df))

    async def append_ticks(self, con_id: int, df: pd.DataFrame) -> None:
        await self._enqueue(pp.prepare_ticks(con_id, df))

    async def append_tick(self, con_id: int, time: TimeLike, **fields: float) -> None:
        """One tick (``bid``, ``bid_size``, ``ask``, ``ask_size``, ``last``, ``last_size``; absent
        ones NaN): the cheap path for ticks arriving one by one (validated without building a
        frame; the worker frames a symbol's queued ticks in one go)."""
        row = pp.tick_row(time, fields)
        await self._submit(_Item(tick=(con_id_symbol(con_id), row)), durable=False, urgent=False)

    async def write_positions_snapshot(self, strategy: str, df: pd.DataFrame, time: TimeLike) -> None:
        await self._enqueue(pp.prepare_positions_snapshot(strategy, df, time))

    async def write_portfolio_snapshot(self, account: str, values: Mapping[str, Any], time: TimeLike) -> None:
        await self._enqueue(pp.prepare_portfolio_snapshot(account, values, time))

    async def write_daily_pnl(self, name: str, date: Any, values: Mapping[str, Any]) -> None:
        await self._enqueue(pp.prepare_daily_pnl(name, date, values))

    async def _enqueue(self, write: pp.Prepared) -> None:
        if write.frame.empty:
            return
        await self._submit(_Item(write), durable=False, urgent=False)

    # ---- hand-off ----------------------------------------------------------------------------------

    async def _submit(self, item: _Item, *, durable: bool, urgent: bool) -> Any:
        if self._closed:
            raise RuntimeError("AsyncStoreWriter is closed")
        if self._thread is None:
            self.start()
        assert self._loop is not None and self._space is not None
        if durable:
            item.future = self._loop.create_future()
        else:
            await self._space.acquire()  # backpressure: wait for room, never drop
            item.bulk_token = True
        item.queued_at = time.monotonic()
        with self._cond:
            if self._stopping:
                raise RuntimeError("AsyncStoreWriter is stopping")
            (self._urgent if urgent else self._bulk).append(item)
            if not urgent and durable:
                self._bulk_barriers += 1
            if urgent or durable or len(self._bulk) >= self.max_batch or len(self._bulk) == 1:
                self._cond.notify()
        if item.future is None:
            return None
        return await item.future

    # ---- worker thread -----------------------------------------------------------------------------

    def _take(self) -> list[_Item] | None:
        """The next batch (urgent writes first), or None when stopping with nothing left."""
        with self._cond:
            while True:
                if self._urgent:
                    break
                if self._bulk:
                    if self._stopping or len(self._bulk) >= self.max_batch:
                        break
                    if self._bulk_barriers:  # a flush waits
                        break
                    wait = self._bulk[0].queued_at + self.linger_s - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                    continue
                if self._stopping:
                    return None
                self._cond.wait()
            batch = list(self._urgent)
            self._urgent.clear()
            for _ in range(min(len(self._bulk), self.max_batch)):
                item = self._bulk.popleft()
                if item.future is not None:
                    self._bulk_barriers -= 1
                batch.append(item)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._process(batch)
            except BaseException as exc:  # never let the worker die with callers waiting
                log.exception("store writer: batch failed unexpectedly")
                for item in batch:
                    self._finish(item, None, exc)

    def _process(self, batch: list[_Item], *, serve_urgent: bool = True) -> None:
        self.stats.batches += serve_urgent
        groups: dict[tuple[str, str, str], list[_Item]] = {}
        singles: list[_Item] = []

        def apply(items: list[_Item]) -> None:
            if serve_urgent:
                self._serve_urgent()  # durable writes that arrived meanwhile go first
            self._apply_group(items)

        def run_groups() -> None:
            for items in groups.values():
                apply(items)
            groups.clear()

        for item in batch:
            key = item.key
            if key is not None and (item.write is None or item.write.coalesce):
                groups.setdefault(key, []).append(item)
                continue
            if key is not None:
                # Not coalescible (snapshot upserts): keep its order relative to its symbol's writes.
                same = groups.pop(key, None)
                if same:
                    apply(same)
                apply([item])
                continue
            singles.append(item)
            if item.call is None:  # a barrier: everything before it first
                run_groups()
                if serve_urgent:
                    self._serve_urgent()
                for single in singles:
                    self._run_single(single)
                singles.clear()
        run_groups()
        for single in singles:
            self._run_single(single)

    def _serve_urgent(self) -> None:
        with self._cond:
            if not self._urgent:
                return
            urgent = list(self._urgent)
            self._urgent.clear()
        self._process(urgent, serve_urgent=False)

    def _run_single(self, item: _Item) -> None:
        if item.call is None:
            self._finish(item, None, None)
            return
        try:
            result = item.call(self.store)
        except Exception as exc:
            log.exception("store writer: call failed")
            self._finish(item, None, exc)
        else:
            self._finish(item, result, None)

    def _group_writes(self, items: list[_Item]) -> list[pp.Prepared]:
        """The items' writes in order, runs of single ticks framed together (one symbol: one key)."""
        writes: list[pp.Prepared] = []
        rows: list[pp.TickRow] = []
        for item in items:
            if item.tick is not None:
                sym, row = item.tick
                rows.append(row)
                continue
            if rows:
                writes.append(pp.prepare_tick_rows(sym, rows))
                rows = []
            assert item.write is not None
            writes.append(item.write)
        if rows:
            writes.append(pp.prepare_tick_rows(sym, rows))
        return writes

    def _apply_group(self, items: list[_Item]) -> None:
        self.stats.writes += len(items)
        try:
            merged = pp.merge(self._group_writes(items))
            self.stats.store_calls += 1
            self.store.apply(merged)
        except Exception as exc:
            if len(items) == 1:
                self._fail(items[0], exc)
                return
            what = items[0].describe()
            log.warning("store writer: coalesced %s failed (%s); retrying one by one", what, exc)
            for item in items:
                try:
                    self.stats.store_calls += 1
                    self.store.apply(item.prepared())
                except Exception as part_exc:
                    self._fail(item, part_exc)
                else:
                    self._finish(item, None, None)
            return
        for item in items:
            self._finish(item, None, None)

    def _fail(self, item: _Item, exc: Exception) -> None:
        what = item.describe()
        self.stats.failures += 1
        err: BaseException = exc if isinstance(exc, StoreError | ValueError) else StoreError(f"{what}: {exc}")
        if err is not exc:
            err.__cause__ = exc
        if item.future is not None:
            log.error("store writer: durable %s failed: %s", what, exc)
            self._finish(item, None, err)
            return
        log.error("store writer: %s failed: %s", what, exc, exc_info=exc)
        self._finish(item, None, None, failure=(what, err))

    def _finish(
        self,
        item: _Item,
        result: Any,
        exc: BaseException | None,
        failure: tuple[str, BaseException] | None = None,
    ) -> None:
        loop = self._loop
        if loop is None or item.finished:
            return
        item.finished = True

        def done() -> None:
            if item.bulk_token and self._space is not None:
                self._space.release()
            if failure is not None:
                self._unreported.append(failure)
                if self.on_error is not None:
                    try:
                        self.on_error(*failure)
                    except Exception:
                        log.exception("store writer: on_error callback failed")
            fut = item.future
            if fut is not None and not fut.done():
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(done)
