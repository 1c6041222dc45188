"""Execution algorithms run by the trader: the executor of :mod:`trader.execution`'s pure plans.

:class:`AlgoRunner` holds a map parent client order id -> :class:`RunningAlgo` (a
:class:`~trader.execution.algos.Plan` with its strategy and instrument) and feeds each plan:

* **quotes**: the instrument is subscribed with owner ``algo:<parent>`` (not persisted: algos do
  not survive a restart) and every tick of it goes to ``on_tick``;
* **timers**: one ``loop.call_at`` per plan at its ``next_timer()`` (rescheduled after every
  event; no polling loop);
* **children**: the book's order-changed path (``TraderApp.order_changed``) calls :meth:`on_order`;
  an order ``<parent>.<n>`` of a running plan goes to ``on_child_update`` (a Filled child counts
  its whole quantity even before its executions are booked: the safe side);
* the **actions** each call returns are executed in order, one at a time per plan, through the
  :class:`~trader.service.orders.OrderDesk`: every child passes the risk gate like any order. A
  child the gate refuses is in the book as Rejected (so the plan hears Rejected through the book);
  a child that could not even be registered is reported Rejected to the plan directly. The reason
  is kept in the parent's ``errors``.

Every change of a parent (its record: :meth:`Plan.status` plus ``strategy``, ``symbol``,
``con_id``, ``errors``) is published on the events PUB as ``algo.<strategy>``. The whole parent is
checked once by the gate when placed (:meth:`AlgoRunner.check_parent`: the trading state, max
order quantity and notional), each child again when it is placed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ib_async import Contract

from trader.book import Order as BookOrder
from trader.book import OrderState
from trader.execution.algos import Action, CancelChild, Done, ModifyChild, PlaceChild, Plan
from trader.execution.builders import OrderSpec
from trader.ib.market_data import Tick
from trader.risk import OrderIntent
from trader.risk.gate import Refusal, refusal_of
from trader.service.mapping import multiplier_of, symbol_of
from trader.service.orders import Modification, PlaceRequest, TraderError, check_spec

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service.algos")

PARENT_RULES: Final = frozenset({"trading_state", "max_order_quantity", "max_order_notional"})
"""The rules the whole parent is checked against at placement (each child passes every rule)."""
ALGO_TOPIC: Final = "algo"


@dataclass(eq=False)
class RunningAlgo:
    """One parent: its plan, owner and instrument, and the executor's state."""

    strategy: str
    plan: Plan
    contract: Contract
    account: str = ""
    created_ns: int = field(default_factory=time.time_ns)
    errors: list[str] = field(default_factory=list)
    queue: collections.deque[Action] = field(default_factory=collections.deque)
    worker: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    last_published: dict[str, Any] | None = None

    @property
    def parent_id(self) -> str:
        return self.plan.parent_id

    @property
    def owner(self) -> str:
        return f"algo:{self.parent_id}"

    def record(self) -> dict[str, Any]:
        return self.plan.status() | {
            "strategy": self.strategy,
            "symbol": symbol_of(self.contract),
            "con_id": int(self.contract.conId),
            "account": self.account,
            "created_ns": self.created_ns,
            "errors": list(self.errors),
        }


class AlgoRunner:
    """See the module docstring. Built by the TraderApp (``app.algos``)."""

    def __init__(self, app: TraderApp) -> None:
        self.app = app
        self.algos: dict[str, RunningAlgo] = {}

    # -- placing ----------------------------------------------------------------------------------

    async def check_parent(self, strategy: str, parent_id: str, contract: Contract, plan: Plan) -> None:
        """The whole parent through the gate's order rules (``refused`` naming them); nothing is
        counted as sent (its children are, one by one)."""
        app = self.app
        if not app.session.connected:
            raise TraderError("not_connected", str(app.gate.connection(app.gate_context())))
        engine = app.gate.engine
        if engine is None:
            return
        con_id = int(contract.conId)
        app.risk.note_contract(con_id, str(contract.currency))
        limit = getattr(plan, "limit_price", None)
        intent = OrderIntent(
            strategy,
            parent_id,
            con_id,
            symbol_of(contract),
            str(contract.secType),
            plan.side,
            plan.quantity,
            "LMT" if limit is not None else "MKT",
            limit,
            None,
            multiplier_of(contract),
            str(contract.currency),
            app.session.account,
        )
        context = app.gate_context(await app.desk.risk_price(contract))
        violations = engine.violations(intent, app.gate.snapshot(context), context.now_ns)
        refusal: Refusal | None = refusal_of([v for v in violations if v.rule in PARENT_RULES])
        if refusal is not None:
            raise TraderError("refused", f"algo {parent_id}: {refusal}")

    def start(self, algo: RunningAlgo) -> None:
        """Run ``algo``: subscribe its instrument, start the plan, execute its first actions."""
        self.algos[algo.parent_id] = algo
        sub = self.app.md.subscribe(algo.owner, algo.contract)
        now = time.time()
        self._feed(algo, algo.plan.start(now))
        ticker = sub.ticker
        if ticker is not None and _usable(ticker.bid) and _usable(ticker.ask):
            self._feed(algo, algo.plan.on_tick(now, float(ticker.bid), float(ticker.ask)))
        log.info("algo %s (%s): %s started", algo.parent_id, algo.strategy, algo.plan.algo)

    async def settled(self, algo: RunningAlgo, within: float) -> None:
        """Wait (at most ``within`` s) until the actions queued so far are carried out."""
        worker = algo.worker
        if worker is not None and not worker.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(worker), within)

    def cancel(self, parent_id: str, strategy: str | None = None) -> RunningAlgo:
        algo = self.get(parent_id, strategy)
        self._feed(algo, algo.plan.cancel())
        return algo

    def get(self, parent_id: str, strategy: str | None = None) -> RunningAlgo:
        algo = self.algos.get(parent_id)
        if algo is None or (strategy is not None and algo.strategy != strategy):
            owner = f" of {strategy}" if strategy else ""
            raise TraderError("unknown_order", f"no algo {parent_id}{owner}")
        return algo

    def records(self, strategy: str | None = None, active_only: bool = False) -> list[dict[str, Any]]:
        return [
            a.record()
            for a in self.algos.values()
            if (strategy is None or a.strategy == strategy) and not (active_only and a.plan.done)
        ]

    # -- events in --------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        now = time.time()
        for algo in list(self.algos.values()):
            if not algo.plan.done and int(algo.contract.conId) == tick.con_id:
                bid = tick.bid if _usable(tick.bid) else None
                ask = tick.ask if _usable(tick.ask) else None
                self._feed(algo, algo.plan.on_tick(now, bid, ask))

    def on_order(self, order: BookOrder) -> None:
        """The book's order changed: a child ``<parent>.<n>`` of a running plan goes to the plan."""
        parent_id, dot, n = order.client_order_id.rpartition(".")
        algo = self.algos.get(parent_id) if dot and n.isdigit() else None
        if algo is None or algo.plan.done or order.strategy != algo.strategy:
            return
        state = str(order.state)
        filled = max(order.filled, order.ib_filled)
        if order.state is OrderState.FILLED and order.quantity is not None:
            filled = max(filled, order.quantity)  # Filled before its executions are booked
        remaining = order.quantity - filled if order.quantity is not None else 0.0
        if order.state is OrderState.REJECTED and order.reason:
            note = f"{order.client_order_id}: {order.reason}"
            if note not in algo.errors:
                algo.errors.append(note)
        avg = order.avg_fill_price if order.avg_fill_price > 0 else None
        self._feed(algo, algo.plan.on_child_update(order.client_order_id, filled, remaining, state, avg))

    def _on_timer(self, algo: RunningAlgo) -> None:
        algo.timer = None
        if not algo.plan.done:
            self._feed(algo, algo.plan.on_timer(time.time()))

    # -- actions out ------------------------------------------------------------------------------

    def _feed(self, algo: RunningAlgo, actions: list[Action]) -> None:
        """Queue ``actions`` (in order), make sure they are being carried out, re-arm the timer,
        publish the parent if it changed."""
        algo.queue.extend(actions)
        if algo.queue and (algo.worker is None or algo.worker.done()):
            loop = asyncio.get_running_loop()
            algo.worker = loop.create_task(self._drain(algo), name=f"algo-{algo.parent_id}")
        self._arm(algo)
        self.publish(algo)

    def _arm(self, algo: RunningAlgo) -> None:
        when = algo.plan.next_timer()
        if algo.timer is not None:
            if when is not None and math.isclose(algo.timer.when() - _offset(), when, abs_tol=1e-3):
                return
            algo.timer.cancel()
            algo.timer = None
        if when is not None and not algo.plan.done:
            loop = asyncio.get_running_loop()
            algo.timer = loop.call_at(when + _offset(), self._on_timer, algo)

    async def _drain(self, algo: RunningAlgo) -> None:
        while algo.queue:
            action = algo.queue.popleft()
            try:
                await self._execute(algo, action)
            except Exception as exc:  # never lose the queue: note it and go on
                log.exception("algo %s: %s failed", algo.parent_id, action)
                algo.errors.append(f"{type(action).__name__}: {exc}")
            self.publish(algo)

    async def _execute(self, algo: RunningAlgo, action: Action) -> None:
        desk = self.app.desk
        match action:
            case PlaceChild():
                await self._place(algo, action)
            case ModifyChild():
                change = Modification(quantity=action.quantity, limit_price=action.limit_price)
                try:
                    desk.modify(action.client_order_id, change, algo.strategy)
                except TraderError as exc:  # done meanwhile: its update tells the plan
                    algo.errors.append(f"{action.client_order_id}: modify {exc.code}: {exc.message}")
            case CancelChild():
                try:
                    desk.cancel(action.client_order_id, algo.strategy)
                except TraderError as exc:
                    if exc.code != "too_late":
                        algo.errors.append(f"{action.client_order_id}: cancel {exc.code}: {exc.message}")
            case Done():
                self._finish(algo, action.reason)

    async def _place(self, algo: RunningAlgo, action: PlaceChild) -> None:
        spec = OrderSpec(action.action, action.quantity, action.order_type, limit_price=action.limit_price)
        try:
            request = PlaceRequest(
                algo.strategy, action.client_order_id, algo.contract, check_spec(spec), account=algo.account
            )
            await self.app.desk.place(request)
        except Exception as exc:  # refused by the gate, not connected, ...
            code = exc.code if isinstance(exc, TraderError) else type(exc).__name__
            message = exc.message if isinstance(exc, TraderError) else str(exc)
            note = f"{action.client_order_id}: {code}: {message}"
            if not any(e.startswith(f"{action.client_order_id}: ") for e in algo.errors):
                algo.errors.append(note)
            log.warning("algo %s: child %s", algo.parent_id, note)
            order = self.app.book.get(action.client_order_id)
            if order is None or not order.state.is_done:  # the book did not tell the plan
                self._feed(algo, algo.plan.on_child_update(action.client_order_id, 0.0, 0.0, "Rejected"))

    def _finish(self, algo: RunningAlgo, reason: str) -> None:
        if algo.timer is not None:
            algo.timer.cancel()
            algo.timer = None
        self.app.md.unsubscribe(algo.owner, algo.contract)
        algo.finished.set()
        log.info("algo %s (%s): done: %s", algo.parent_id, algo.strategy, reason)

    def publish(self, algo: RunningAlgo) -> None:
        record = algo.record()
        if record != algo.last_published:
            algo.last_published = record
            self.app.publish(f"{ALGO_TOPIC}.{algo.strategy}", dict(record))

    def close(self) -> None:
        """At shutdown: stop the timers and workers (working children stay working orders)."""
        for algo in self.algos.values():
            if algo.timer is not None:
                algo.timer.cancel()
            if algo.worker is not None:
                algo.worker.cancel()


def _usable(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1e300


def _offset() -> float:
    """loop.time() - time.time(): plans count in epoch seconds, call_at in the loop's clock."""
    return asyncio.get_running_loop().time() - time.time()
