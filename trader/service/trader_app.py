"""The trader service's heart: the one IB session, the book, the risk gate, the store, the PUBs.

:class:`TraderApp` composes :class:`~trader.ib.session.IbSession` (with
:class:`~trader.ib.contracts.ContractResolver`, :class:`~trader.ib.market_data.MarketData` and
:class:`~trader.ib.history.History`), the pure :class:`~trader.book.Book`, the
:class:`~trader.risk.RiskGate`, the ArcticDB :class:`~trader.data.store.Store` behind an
:class:`~trader.data.writer.AsyncStoreWriter`, and the ticks and events publishers.

* **IB -> book.** ib_async's openOrder / orderStatus / execDetails / commissionReport / error
  events become book events (:mod:`trader.service.mapping`); every change is published on the
  events PUB (``order.<strategy>``, ``fill.<strategy>``, ``position.<strategy>``; also
  ``account``, ``connection``, ``reconcile``, ``error``: docs/rpc.md), logged to the store's order
  log (batched, on the writer's thread) and marks the book for saving.
* **Fills are journaled before they are published**: a booked execution waits (briefly) for its
  commission, is appended and fsynced to ``<data-dir>/book/fills.journal``
  (:mod:`trader.data.journal`), only then goes out as a ``fill`` event, and is stored behind
  (idempotent by exec id, retried). At start the journal is replayed into the store.
* **Persistence.** ``<data-dir>/book/book.json`` holds ``Book.to_records()``, written atomically
  (temp file, fsync, rename) at most every ``save_interval_s`` after a change and at shutdown.
* **Recovery.** At start the book is read from that file, then reconciled with the store (fills
  stored after the last save are booked; booked fills missing from the store are stored and
  published), then, at every (re)connection, with IB: open orders of every client, the day's
  executions with commissions, positions and completed orders (:func:`trader.book.reconcile`).
  The session is CONNECTED, and orders accepted, only after that. Nothing is ever resubmitted.
* **Orders** (:class:`~trader.service.orders.OrderDesk`) pass the gate (refused at once with
  ``not_connected`` while IB is down), are registered in the book (idempotent on the client order
  id) and placed with ``orderRef = <strategy>:<client order id>``; execution algorithms
  (:class:`~trader.service.algo_runner.AlgoRunner`) place their children through it.
* **Risk** (:class:`~trader.service.risk_runtime.RiskRuntime`): the engine behind the gate, the
  kill switch, the breaker fed with the book's P&L, the live-trading guard at every sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from ib_async import IB, Contract, Trade
from ib_async import Fill as IbFill

from trader.book import (
    Book,
    BookConflict,
    BookEvent,
    Execution,
    Fill,
    Finding,
    InvalidTransition,
    OrderError,
    OrderState,
    Outcome,
    PositionResidual,
    UnknownOrder,
    reconcile,
)
from trader.book import Order as BookOrder
from trader.data.journal import FillJournal, Groups, JournaledFills
from trader.data.store import Store, StoreError
from trader.data.writer import AsyncStoreWriter
from trader.ib.backoff import Backoff
from trader.ib.contracts import ContractResolver
from trader.ib.errors import IbError
from trader.ib.history import History
from trader.ib.market_data import MarketData, Tick
from trader.ib.session import ConnectionState, IbSession, StateChange, SyncContext
from trader.messaging.pubsub import TickPublisher
from trader.risk import GateContext, RiskGate
from trader.service import mapping as mp
from trader.service.algo_runner import AlgoRunner
from trader.service.book_file import BookFile
from trader.service.market_api import MarketFeeds
from trader.service.orders import OrderDesk
from trader.service.risk_runtime import RiskRuntime

if TYPE_CHECKING:
    from trader.service.trader_api import TraderState

log = logging.getLogger("trader.service.app")

RECONNECT_BACKOFF: Final = Backoff(base_s=0.25, cap_s=2.0)
"""Retry a lost TWS every 0.25..2 s (full jitter): a local TWS / gateway costs nothing to knock on."""
COMMISSION_WAIT_S: Final = 0.25
LOST_ORDER_GRACE_NS: Final = 2_000_000_000
RESIDUAL_RECHECK_S: Final = 0.5
RECONCILE_TIMEOUT_S: Final = 30.0
ORDER_LOG_INTERVAL_S: Final = 1.0


class TraderApp:
    """See the module docstring. ``start()`` returns at once; IB is connected in the background."""

    def __init__(
        self,
        state: TraderState,
        ticks: TickPublisher,
        events: TickPublisher,
        *,
        gate: RiskGate | None = None,
        backoff: Backoff | None = None,
        reconcile_interval_s: float = 60.0,
        save_interval_s: float = 1.0,
    ) -> None:
        self.state = state
        config = state.config
        self.ticks, self.events = ticks, events
        self.risk = RiskRuntime(self, config.risk, state.data_dir)  # limits, states, kill switch, breaker
        self.gate = gate or self.risk.gate
        self.reconcile_interval_s = reconcile_interval_s
        self.save_interval_s = save_interval_s
        self.store_uri = config.store.resolved_uri(state.data_dir)
        self.book_file = BookFile(state.data_dir / "book")
        self.journal = FillJournal(state.data_dir / "book")
        self.fill_log = JournaledFills(self.journal, self._store_fills, self._on_journal_error)
        self.session = IbSession(config.ib, backoff=backoff or RECONNECT_BACKOFF)
        self.contracts = ContractResolver(self.session)
        self.md = MarketData(self.session)
        self.history = History(self.session)
        self.book = Book()
        self.store: Store | None = None
        self.writer: AsyncStoreWriter | None = None
        self.marks: dict[int, float] = {}
        self.last_tick_at: float | None = None
        self.reconciles: dict[str, Any] = {"runs": 0, "last": None, "findings": 0, "failures": 0}
        self._fills: asyncio.Queue[Fill] = asyncio.Queue()
        self._order_rows: list[tuple[str, dict[str, Any]]] = []
        self._commission_seen = asyncio.Event()
        self._dirty = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self.desk = OrderDesk(self)
        self.algos = AlgoRunner(self)  # TWAP / iceberg parents: children through the desk
        self.market = MarketFeeds(self)  # bar streams; subscriptions.json, restored at start
        self._account_changes: dict[tuple[str, str, str], str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._detach: list[Callable[[], None]] = []
        self._restoring = False
        self._unpublished: set[str] = set()
        """Exec ids booked and not yet stored and published."""

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self.store = await asyncio.to_thread(Store.open, self.store_uri)
        self.contracts.store = self.store
        self.history.store = self.store
        self.writer = AsyncStoreWriter(self.store, on_error=self._on_store_error)
        self.writer.start()
        await self.writer.call(self.journal.recover)  # journaled fills stored before the book syncs
        self.journal.start()
        await self._restore()
        self.risk.restore()
        ib = self.session.ib
        ib.openOrderEvent += self._on_open_order
        ib.orderStatusEvent += self._on_order_status
        ib.execDetailsEvent += self._on_execution
        ib.commissionReportEvent += self._on_commission
        ib.accountValueEvent += self._on_account_value
        self._detach += [
            self.session.add_state_listener(self._on_state),
            self.session.add_error_listener(self._on_ib_error),
            self.session.add_reconcile_hook(self._on_sync),
            self.md.add_tick_listener(self._on_tick),
            self.md.add_tick_listener(self.market.on_tick),
            self.md.add_tick_listener(self.algos.on_tick),
        ]
        self.market.restore()
        for job, name in (
            (self._fill_pump, "fills"),
            (self.fill_log.run, "fills-store"),
            (self._order_log_pump, "order-log"),
            (self._saver, "book-saver"),
            (self._periodic_reconcile, "reconcile"),
            (self._account_pump, "account"),
            (self.market.run, "bars"),
            *self.risk.tasks(),
        ):
            self._tasks.append(asyncio.get_running_loop().create_task(job(), name=f"trader-{name}"))
        self.session.start()

    async def close(self) -> None:
        for detach in self._detach:
            detach()
        self.algos.close()
        self.md.close()
        await self.session.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._fills.join(), 5.0)  # every booked fill journaled and published
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fill_log.drain(), 5.0)  # and stored
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.risk.close()
        await self._save_book()
        await self._flush_order_log()
        await self.journal.close()
        if self.writer is not None:
            try:
                await self.writer.close()
            except StoreError:
                log.exception("store writer: failed writes at shutdown")

    # -- the book: apply and publish ------------------------------------------------------------------

    def apply(self, event: BookEvent, source: str = "ib") -> Outcome | None:
        """Apply ``event``; publish/persist what changed. Contradictions are logged and published
        as ``error`` events, never raised (IB's messages are never refused)."""
        try:
            outcome = self.book.apply(event)
        except (InvalidTransition, BookConflict, UnknownOrder, ValueError) as exc:
            log.error("book refused %s from %s: %s", type(event).__name__, source, exc)
            self.publish(
                "error", {"source": f"book/{source}", "code": type(exc).__name__, "message": str(exc)}
            )
            return None
        if outcome.client_order_id is not None and outcome.changed:
            self.order_changed(self.book.order(outcome.client_order_id), outcome.previous)
        if outcome.fill is not None and outcome.changed:
            self._fill_booked(outcome.fill)
            self.risk.on_fill(outcome.fill)
        if outcome.overfill and outcome.client_order_id is not None:
            message = f"order {outcome.client_order_id} is overfilled"
            log.error(message)
            self.publish("error", {"source": "book", "code": "overfill", "message": message})
        if outcome.changed:
            self._dirty.set()
        return outcome

    def order_changed(self, order: BookOrder, previous: OrderState | None) -> None:
        """Publish the order's new state, log it to the store, wake its waiters."""
        body = mp.order_record(order)
        body["previous"] = None if previous is None else str(previous)
        self.publish(f"order.{order.strategy}", body)
        self._order_rows.append((order.strategy, mp.order_log_row(order)))
        self.desk.notify(order.client_order_id)
        self.algos.on_order(order)

    def _fill_booked(self, fill: Fill) -> None:
        if fill.client_order_id is None:  # a reconciliation adjustment: not an execution
            self._publish_position(fill)
        elif not self._restoring:  # fills read back from the store were stored (and published)
            self._unpublished.add(fill.exec_id)
            self._fills.put_nowait(fill)

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        body.setdefault("time_ns", time.time_ns())
        try:
            self.events.publish_event(topic, body)
        except Exception:
            log.exception("publishing %s failed", topic)

    def _publish_position(self, fill: Fill) -> None:
        position = self.book.positions.position(fill.key)
        body = mp.position_record(position, self.marks.get(fill.con_id))
        body["net_quantity"] = self.book.positions.net_quantity(fill.account, fill.con_id)
        self.publish(f"position.{fill.strategy}", body)

    # -- fills: journaled, published, stored behind ----------------------------------------------------

    async def _fill_pump(self) -> None:
        """Booked fills, in order and in batches: wait briefly for their commissions, journal them
        durably, publish each (``fill``, then ``position``), and queue their store write."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._fills.get()]
            while not self._fills.empty():
                batch.append(self._fills.get_nowait())
            try:
                deadline = loop.time() + COMMISSION_WAIT_S
                while any(self._current(f).commission is None for f in batch):
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._commission_seen.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._commission_seen.wait(), remaining)
                fills = [self._current(f) for f in batch]
                await self.fill_log.record([(f.strategy, mp.fill_row(f, self.book)) for f in fills])
                for fill in fills:
                    self.publish(f"fill.{fill.strategy}", mp.fill_record(fill, self.book))
                    self._unpublished.discard(fill.exec_id)
                    self._publish_position(fill)
            finally:
                for _ in batch:
                    self._fills.task_done()

    def _current(self, fill: Fill) -> Fill:
        return self.book.positions.fill(fill.exec_id) or fill

    async def _store_fills(self, groups: Groups) -> None:
        """Journaled fill rows, on the writer's thread (checked there, off the event loop); a failed
        write is retried (fills are idempotent by exec id), schema refusals are logged."""
        assert self.writer is not None
        fills = [row for rows in groups.values() for row in rows]
        delay = 0.2
        while True:
            try:
                refused = await self.writer.call(functools.partial(_append, Store.append_fills, groups))
                break
            except Exception as exc:  # the store is down, full, closing...: the journal keeps them
                log.error("storing %d fills failed (%s): retrying in %.1f s", len(fills), exc, delay)
                self.publish("error", {"source": "store", "code": "fill_write_failed", "message": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for strategy, problem in refused.items():
            log.error("fills of %s refused by the store: %s", strategy, problem)

    async def _order_log_pump(self) -> None:
        while True:
            await asyncio.sleep(ORDER_LOG_INTERVAL_S)
            await self._flush_order_log()

    async def _flush_order_log(self) -> None:
        """The order log (audit) in batches on the writer's thread, so the loop never frames it."""
        if not self._order_rows or self.writer is None:
            return
        rows, self._order_rows = self._order_rows, []
        groups: dict[str, list[dict[str, Any]]] = {}
        for strategy, row in rows:
            groups.setdefault(strategy, []).append(row)
        try:
            refused = await self.writer.call(functools.partial(_append, Store.append_orders, groups))
        except (StoreError, OSError, RuntimeError):
            log.exception("order log: %d rows not written", len(rows))
            return
        for strategy, problem in refused.items():
            log.error("order log of %s refused by the store: %s", strategy, problem)

    def _on_journal_error(self, exc: OSError) -> None:
        self.publish("error", {"source": "journal", "code": "fill_journal_failed", "message": str(exc)})

    def _on_store_error(self, what: str, exc: BaseException) -> None:
        self.publish("error", {"source": "store", "code": "write_failed", "message": f"{what}: {exc}"})

    # -- persistence and restart ----------------------------------------------------------------------

    async def _saver(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._save_book()
            await asyncio.sleep(max(self.save_interval_s, 5 * self.book_file.last_save_s))

    async def _save_book(self) -> None:
        try:
            await asyncio.to_thread(self.book_file.save, self.book.to_records(), time.time_ns())
        except (OSError, ValueError, TypeError):
            log.exception("saving the book to %s failed", self.book_file.path)

    async def _restore(self) -> None:
        """The book from its file, then caught up with the store (both ways)."""
        data = await asyncio.to_thread(self.book_file.load)
        since: pd.Timestamp | None = None
        if data is not None:
            try:
                self.book = Book.from_records(data["book"])
                since = pd.Timestamp(int(data["saved_ns"]), tz="UTC") - pd.Timedelta(hours=1)
            except (KeyError, TypeError, ValueError) as exc:
                self.book_file.move_aside(repr(exc))
                self.book = Book()
        assert self.writer is not None
        stored = await self.writer.call(lambda s: s.read_fills(since=since))
        booked = 0
        self._restoring = True
        try:
            for row in stored.reset_index().itertuples(index=False):
                if not self.book.has_execution(str(row.exec_id)):
                    booked += self.apply(await self._stored_execution(row), "store") is not None
        finally:
            self._restoring = False
        missing: list[Fill] = []
        for strategy in self.book.positions.strategies():
            known = await self.writer.call(functools.partial(Store.fill_exec_ids, strategy=strategy))
            missing += [
                f
                for f in self.book.positions.fills(strategy=strategy)
                if f.client_order_id is not None and f.exec_id not in known
            ]
        for fill in missing:
            self._fills.put_nowait(fill)
        log.info(
            "book restored: %d orders (%d working), %d fills; %d fills booked from the store, %d to store",
            len(self.book.orders),
            len(self.book.working_orders()),
            len(self.book.positions),
            booked,
            len(missing),
        )

    async def _stored_execution(self, row: Any) -> Execution:
        order = self.book.find(perm_id=int(row.perm_id), order_ref=str(row.order_ref))
        cached = None if order else await asyncio.to_thread(self._cached_contract, int(row.con_id))
        return mp.stored_execution(row, order, mp.multiplier_of(cached))

    def _cached_contract(self, con_id: int) -> Contract | None:
        assert self.store is not None
        data = self.store.get_contract(f"conid:{con_id}")
        return Contract(multiplier=str(data.get("multiplier") or "")) if data else None

    # -- ib_async events ------------------------------------------------------------------------------

    def _on_open_order(self, trade: Trade) -> None:
        self.apply(mp.open_order_event(trade, time.time_ns()))

    def _on_order_status(self, trade: Trade) -> None:
        event = mp.status_event(trade, time.time_ns())
        if event is not None:
            self.apply(event)

    def _on_execution(self, trade: Trade, fill: IbFill) -> None:
        self.apply(mp.execution_event(fill))

    def _on_commission(self, trade: Trade, fill: IbFill, report: Any) -> None:
        outcome = self.apply(mp.commission_event(report))
        self._commission_seen.set()
        booked = None if outcome is None or not outcome.changed else outcome.fill
        if booked is not None and booked.exec_id not in self._unpublished:  # its fill event went out
            body = mp.fill_record(booked, self.book)
            body["kind"] = "commission"
            self.publish(f"fill.{booked.strategy}", body)

    def _on_ib_error(self, error: IbError) -> None:
        order = None
        if error.req_id > 0:
            order = self.book.by_order_id(error.req_id, self.session.client_id)
            if order is not None:
                now, client_id = time.time_ns(), self.session.client_id
                self.apply(OrderError(error.req_id, error.code, error.text, now, client_id))
        if error.informational:
            return
        body: dict[str, Any] = {
            "source": "ib",
            "code": error.code,
            "message": error.text,
            "req_id": error.req_id,
            "category": str(error.category),
            "action": str(error.action),
        }
        if order is not None:
            body.update(client_order_id=order.client_order_id, strategy=order.strategy)
        self.publish("error", body)

    def _on_state(self, change: StateChange) -> None:
        self.publish(
            "connection",
            {
                "state": str(change.state),
                "previous": str(change.previous),
                "since": change.since,
                "reason": change.reason,
                "code": change.code,
                "client_id": self.session.client_id,
            },
        )
        if change.state is ConnectionState.CONNECTED:
            self.risk.on_connected()

    def _on_tick(self, tick: Tick) -> None:
        self.last_tick_at = time.time()
        self.ticks.publish(tick.topic, tick.as_row())
        if tick.bid > 0 and tick.ask > 0:
            self.marks[tick.con_id] = (tick.bid + tick.ask) / 2
        elif tick.last > 0:
            self.marks[tick.con_id] = tick.last

    def _on_account_value(self, value: Any) -> None:
        self._account_changes[(str(value.account), str(value.tag), str(value.currency))] = str(value.value)

    async def _account_pump(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._account_changes:
                changes, self._account_changes = self._account_changes, {}
                for account in sorted({a for a, _, _ in changes}):
                    values = {f"{t}:{c}" if c else t: v for (a, t, c), v in changes.items() if a == account}
                    self.publish("account", {"account": account, "values": values})

    # -- reconciliation -------------------------------------------------------------------------------

    async def _on_sync(self, context: SyncContext) -> None:
        self.risk.guard_connected(context.account)  # GuardRefused: never CONNECTED; the service stops
        await self.reconcile(f"sync: {context.reason}", grace_ns=0)

    async def _periodic_reconcile(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval_s)
            if self.session.connected:
                try:
                    await self.reconcile("periodic")
                except Exception:
                    log.exception("periodic reconciliation failed")

    async def reconcile(self, reason: str, *, grace_ns: int = LOST_ORDER_GRACE_NS) -> list[Finding]:
        """Compare IB with the book, apply the findings, publish them (``reconcile`` event)."""
        async with self._reconcile_lock:
            ib = self.session.ib
            try:
                async with asyncio.timeout(RECONCILE_TIMEOUT_S):
                    findings = self._assess(ib, *await self._fetch(ib), grace_ns)
                    residuals = {
                        (f.account, f.con_id, f.residual) for f in findings if isinstance(f, PositionResidual)
                    }
                    if residuals:  # positions may trail executions: book only residuals that persist
                        await asyncio.sleep(RESIDUAL_RECHECK_S)
                        findings = [
                            f
                            for f in self._assess(ib, *await self._fetch(ib), grace_ns)
                            if not isinstance(f, PositionResidual)
                            or (f.account, f.con_id, f.residual) in residuals
                        ]
            except Exception:
                self.reconciles["failures"] += 1
                raise
            for finding in findings:
                for event in mp.finding_events(finding):
                    self.apply(event, "reconcile")
            self.reconciles.update(runs=self.reconciles["runs"] + 1, last=time.time(), findings=len(findings))
            self.publish("reconcile", mp.findings_record(reason, findings))
            for finding in findings:
                level = logging.INFO if finding.severity == "action" else logging.WARNING
                log.log(level, "reconcile (%s): %s", reason, finding.message)
            self._dirty.set()
            return findings

    async def _fetch(self, ib: IB) -> tuple[list[Trade], list[IbFill], list[Trade]]:
        open_trades = list(await ib.reqAllOpenOrdersAsync())
        ib_fills = list(await ib.reqExecutionsAsync())
        try:
            completed = list(await ib.reqCompletedOrdersAsync(apiOnly=True))
        except Exception:
            log.warning("reqCompletedOrders failed: orders lost while down stay Unknown", exc_info=True)
            completed = []
        return open_trades, ib_fills, completed

    def _assess(
        self, ib: IB, open_trades: list[Trade], ib_fills: list[IbFill], completed: list[Trade], grace_ns: int
    ) -> list[Finding]:
        """Settle the orders IB reports done (completed orders), then the findings of the rest."""
        now = time.time_ns()
        for event in mp.completed_events(self.book, completed, now):
            self.apply(event, "completed")
        snapshot = mp.ib_snapshot(ib.managedAccounts(), ib.positions(), open_trades, ib_fills, now)
        return reconcile(snapshot, self.book, now, grace_ns=grace_ns)

    # -- orders ---------------------------------------------------------------------------------------

    def gate_context(self, extra_marks: dict[int, float] | None = None) -> GateContext:
        """What the gate reads: the session, the book, marks, NetLiquidation, currencies, FX."""
        session = self.session
        return GateContext(
            connected=session.connected,
            connection_state=str(session.state),
            connection_reason=session.reason,
            book=self.book,
            now_ns=time.time_ns(),
            **self.risk.context_fields(extra_marks),
        )


def _append(
    append: Callable[[Store, str, list[dict[str, Any]]], int],
    groups: dict[str, list[dict[str, Any]]],
    store: Store,
) -> dict[str, str]:
    """On the writer's thread: ``append(store, strategy, rows)`` per strategy; the schema's refusals
    (ValueError) are returned by strategy, store failures raised."""
    refused: dict[str, str] = {}
    for strategy, rows in groups.items():
        try:
            append(store, strategy, rows)
        except ValueError as exc:
            refused[strategy] = str(exc)
    return refused
