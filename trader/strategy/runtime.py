"""The strategy runtime, pure and synchronous: the async shell (or the backtester) feeds it prices,
order records and fills, and sends the intents it returns (:class:`PlaceOrder`, :class:`CancelOrder`).

No sockets, no asyncio, no clock reads: time comes from the injected ``clock`` (hook timing and the
client order id prefix only).

Lifecycle of a strategy::

    add -> INSTALLED -- warm_up --> WARMING_UP -- start --> RUNNING    (DISABLED if added disabled)
    RUNNING -- disable --> DISABLED -- enable --> RUNNING
    any hook raising -> ERROR (traceback kept; enable runs it again)

Hooks only run in RUNNING; bookkeeping (windows, positions, working orders) runs in every state.
Targets are re-planned after every hook call of a RUNNING strategy (prices, order updates, fills,
enable), so a repeated ``target()`` never doubles a position, and a restart (positions and open
orders restored) resumes without duplicate orders.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import logging
import math
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from reactivex import operators as ops
from reactivex.subject import Subject

from trader.book.events import check_client_order_id, check_strategy
from trader.strategy.base import Strategy
from trader.strategy.indicators import IndicatorCache
from trader.strategy.intents import (
    ORDER_TYPES,
    RESERVED_SUFFIXES,
    TIFS,
    CancelOrder,
    HookStats,
    Intent,
    PlaceOrder,
    RuntimeEvent,
    StrategyState,
    new_id_prefix,
    normalise_bar_size,
)
from trader.strategy.orders import BoundedSet, TrackedOrder, is_working, signed_fill_quantity
from trader.strategy.params import VALUES_ATTR, apply_params, resolve_params
from trader.strategy.targets import EPS, WorkingOrder, plan_target
from trader.strategy.window import RollingWindow, columns_for

log = logging.getLogger(__name__)


class _Slot:
    """One strategy in the runtime: its state, windows, position, orders and targets. It is the
    :class:`~trader.strategy.base.StrategyContext` its Strategy's calls go to."""

    def __init__(
        self,
        runtime: StrategyRuntime,
        *,
        name: str,
        strategy: Strategy,
        instruments: tuple[str, ...],
        bar_size: str,
        enabled: bool,
        maxlen: int,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.strategy = strategy
        self.instruments = instruments
        self.bar_size = bar_size
        self.enabled = enabled
        self.state = StrategyState.INSTALLED
        self.started = False
        self.stopped = False
        columns = columns_for(bar_size)
        self.windows = {s: RollingWindow(columns, maxlen, symbol=s) for s in instruments}
        self.positions: dict[str, float] = {}
        self.orders: dict[str, TrackedOrder] = {}
        """Working orders, oldest first."""
        self.done_orders = BoundedSet(10_000)
        self.exec_ids = BoundedSet(100_000)
        self.targets: dict[str, float] = {}
        self.outbox: list[Intent] = []
        self.overrides: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.last_error: str | None = None
        self.hooks: dict[str, HookStats] = {}
        self.fills = 0
        self.subject: Subject[pd.DataFrame] = Subject()

    # -- StrategyContext -------------------------------------------------------------------------

    def target(self, symbol: str, quantity: float) -> None:
        if math.isnan(quantity):
            raise ValueError(f"target of {symbol}: NaN")
        self.targets[symbol] = quantity

    def place(
        self,
        symbol: str,
        action: str,
        quantity: float,
        *,
        limit: float | None,
        stop: float | None,
        tif: str,
        take_profit: float | None,
        stop_loss: float | None,
        client_order_id: str | None,
    ) -> str:
        quantity = float(quantity)
        if not quantity > 0:
            raise ValueError(f"{action} {symbol}: quantity must be > 0, got {quantity}")
        tif = tif.upper()
        if tif not in TIFS:
            raise ValueError(f"{action} {symbol}: tif must be one of {', '.join(sorted(TIFS))}, got {tif!r}")
        if client_order_id is not None:
            check_client_order_id(client_order_id)
            if client_order_id.endswith(RESERVED_SUFFIXES):
                raise ValueError(f"client order id {client_order_id!r}: .tp and .sl are reserved suffixes")
            if client_order_id in self.orders or client_order_id in self.done_orders:
                return client_order_id  # already placed (e.g. before a restart): never twice
        else:
            client_order_id = self.runtime.next_client_order_id(self.name)
        intent = PlaceOrder(
            strategy=self.name,
            client_order_id=client_order_id,
            symbol=symbol,
            action=action,
            quantity=quantity,
            order_type=ORDER_TYPES[(limit is not None, stop is not None)],
            limit_price=None if limit is None else float(limit),
            stop_price=None if stop is None else float(stop),
            tif=tif,
            take_profit=None if take_profit is None else float(take_profit),
            stop_loss=None if stop_loss is None else float(stop_loss),
        )
        self.orders[client_order_id] = TrackedOrder(client_order_id, symbol, action, quantity)
        self.outbox.append(intent)
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if order is not None:
            if order.cancel_requested or not order.working:
                return
            order.cancel_requested = True
        elif client_order_id in self.done_orders:
            return
        self.outbox.append(CancelOrder(self.name, client_order_id))

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def working_orders(self, symbol: str | None) -> list[dict[str, Any]]:
        # An order whose fills are all in (remaining 0) is not shown, even before its Filled record
        # arrives (targets still count it until then; authors testing `if not working` must not stall).
        return [
            o.view()
            for o in self.orders.values()
            if o.working and o.remaining > EPS and (symbol is None or o.symbol == symbol)
        ]

    def window(self, symbol: str) -> pd.DataFrame:
        window = self.windows.get(symbol)
        if window is None:
            raise KeyError(f"{symbol!r} is not an instrument of strategy {self.name}")
        return window.frame()

    def indicator(self, symbol: str, name: str, params: dict[str, Any]) -> Any:
        window = self.windows.get(symbol)
        if window is None:
            raise KeyError(f"{symbol!r} is not an instrument of strategy {self.name}")
        return self.runtime.indicators.indicator(window, name, **params)

    # -- bookkeeping -----------------------------------------------------------------------------

    def track_order(self, record: Mapping[str, Any], *, restored: bool = False) -> bool:
        """Update the orders from an order record; False when it is a stale one."""
        client_order_id = str(record.get("client_order_id") or "")
        if not client_order_id:
            return False
        order = self.orders.get(client_order_id)
        if order is None:
            if client_order_id in self.done_orders:
                return False  # a late update of an order already done
            if not is_working(record) and not restored:
                self.done_orders.add(client_order_id)
                return True
            order = self.orders[client_order_id] = TrackedOrder.from_record(record, restored=restored)
        elif (not order.working and is_working(record)) or _older(record, order.record):
            return False  # done is final; an older record (an RPC reply after a newer event) is stale
        else:
            order.update(record)
        self._settle(order)
        return True

    def _settle(self, order: TrackedOrder) -> None:
        if not order.working:
            self.done_orders.add(order.client_order_id)
            if order.pending <= EPS:  # else settling: fills reported by the order still to come
                del self.orders[order.client_order_id]

    def book_fill(self, fill: Mapping[str, Any]) -> bool:
        """Apply a fill to the position (once per exec id); False for a repeat."""
        exec_id = str(fill.get("exec_id") or "")
        if not exec_id or exec_id in self.exec_ids:
            return False
        self.exec_ids.add(exec_id)
        quantity = signed_fill_quantity(fill)
        symbol = str(fill.get("symbol") or "")
        position = self.positions.get(symbol, 0.0) + quantity
        self.positions[symbol] = 0.0 if abs(position) <= EPS else position
        order = self.orders.get(str(fill.get("client_order_id") or ""))
        if order is not None:
            order.own_fills[exec_id] = abs(quantity)
            self._settle(order)
        self.fills += 1
        return True

    def replan(self) -> None:
        """Cancel and place toward every target (RUNNING strategies only)."""
        for symbol, target in self.targets.items():
            working = [
                WorkingOrder(o.client_order_id, o.signed_pending)
                for o in self.orders.values()
                if o.symbol == symbol
            ]
            plan = plan_target(target, self.position(symbol), working)
            for client_order_id in plan.cancel:
                self.cancel(client_order_id)
            if plan.place != 0.0:
                action = "BUY" if plan.place > 0 else "SELL"
                self.place(
                    symbol,
                    action,
                    abs(plan.place),
                    limit=None,
                    stop=None,
                    tif="DAY",
                    take_profit=None,
                    stop_loss=None,
                    client_order_id=None,
                )

    def rollback(self, targets: dict[str, float]) -> None:
        """Forget what a failed hook asked for."""
        for intent in self.outbox:
            if isinstance(intent, PlaceOrder):
                self.orders.pop(intent.client_order_id, None)
            else:
                order = self.orders.get(intent.client_order_id)
                if order is not None:
                    order.cancel_requested = False
        self.outbox.clear()
        self.targets = targets

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self.strategy).__module__}.{type(self.strategy).__qualname__}",
            "state": str(self.state),
            "enabled": self.enabled,
            "instruments": list(self.instruments),
            "bar_size": self.bar_size,
            "params": dict(self.params),
            "position": dict(self.positions),
            "targets": dict(self.targets),
            "working_orders": self.working_orders(None),
            "fills": self.fills,
            "window": {s: len(w) for s, w in self.windows.items()},
            "last_error": self.last_error,
            "hooks": {k: dataclasses.asdict(v) for k, v in self.hooks.items()},
        }


class StrategyRuntime:
    """Hosts strategies: routes prices, orders and fills to them, isolates their failures, and turns
    what they ask for into intents. Synchronous and single-threaded: call it from one thread (or
    one event loop)."""

    def __init__(
        self, *, clock: Callable[[], float], slow_hook_s: float = 0.5, id_prefix: str | None = None
    ) -> None:
        self.clock = clock
        self.slow_hook_s = slow_hook_s
        self.id_prefix = new_id_prefix(clock()) if id_prefix is None else id_prefix
        check_client_order_id(f"x-{self.id_prefix}-1")
        self.indicators = IndicatorCache()
        self._slots: dict[str, _Slot] = {}
        self._seq = itertools.count(1)
        self._events: list[RuntimeEvent] = []

    # -- strategies ------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        strategy: Strategy,
        instruments: Sequence[str],
        bar_size: str,
        enabled: bool = True,
        *,
        warmup_bars: int = 0,
    ) -> None:
        """Install ``strategy`` as ``name`` (INSTALLED) with its default parameters; its windows keep
        ``max(strategy.window_length, warmup_bars)`` rows per instrument."""
        check_strategy(name)
        if name in self._slots:
            raise ValueError(f"strategy {name!r} is already in the runtime")
        if any(s is strategy for s in (slot.strategy for slot in self._slots.values())):
            raise ValueError(f"this {type(strategy).__name__} instance is already in the runtime")
        if not instruments:
            raise ValueError(f"strategy {name!r}: no instruments")
        maxlen = max(int(strategy.window_length), int(warmup_bars), 1)
        slot = _Slot(
            self,
            name=name,
            strategy=strategy,
            instruments=tuple(instruments),
            bar_size=normalise_bar_size(bar_size),
            enabled=enabled,
            maxlen=maxlen,
        )
        applied = strategy.__dict__.get(VALUES_ATTR) or {}  # params applied before add are kept
        slot.params = resolve_params(type(strategy), applied, f"strategies.{name}")
        slot.overrides = dict(applied)
        apply_params(strategy, slot.params)
        strategy.name = name
        strategy.instruments = slot.instruments
        strategy.bar_size = slot.bar_size
        strategy.log = logging.getLogger(f"strategy.{name}")
        strategy._prices_stream = slot.subject.pipe(ops.as_observable())
        strategy._context = slot
        self._slots[name] = slot

    def names(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def next_client_order_id(self, name: str) -> str:
        return f"{name}-{self.id_prefix}-{next(self._seq)}"

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            raise KeyError(f"no strategy {name!r} (known: {', '.join(self._slots) or 'none'})")
        return slot

    def set_params(self, name: str, overrides: Mapping[str, Any], *, source: str | None = None) -> None:
        """Take these overrides of the defaults (validated: ConfigError, nothing changes)."""
        slot = self._slot(name)
        params = resolve_params(type(slot.strategy), overrides, source or f"strategies.{name}")
        slot.overrides, slot.params = dict(overrides), params
        apply_params(slot.strategy, params)

    def restore(
        self,
        name: str,
        positions: Mapping[str, float],
        open_orders: Sequence[Mapping[str, Any]],
        exec_ids: Iterable[str] = (),
    ) -> None:
        """Resume from the trader: the strategy's positions by symbol (get_positions), its open
        orders (get_orders open_only) and the exec ids already counted in those positions
        (get_fills): their fill events are not counted again. The open orders' own exec ids count
        as known too (ask get_orders before get_positions)."""
        slot = self._slot(name)
        slot.positions = {s: float(q) for s, q in positions.items() if abs(float(q)) > EPS}
        for record in open_orders:
            if record.get("strategy", name) != name:
                continue
            slot.track_order(record, restored=True)
            slot.exec_ids.update(str(e) for e in record.get("exec_ids") or ())
        slot.exec_ids.update(exec_ids)

    # -- lifecycle -------------------------------------------------------------------------------

    def _set_state(self, slot: _Slot, state: StrategyState, why: str = "") -> None:
        if slot.state is state:
            return
        before, slot.state = slot.state, state
        message = f"{before} -> {state}" + (f": {why}" if why else "")
        self._events.append(RuntimeEvent(slot.name, "state", message))
        slot.strategy.log.info("state %s", message)

    def warm_up(self, name: str, symbol: str, history: pd.DataFrame) -> None:
        """Fill ``symbol``'s window with history (no hooks); INSTALLED -> WARMING_UP."""
        slot = self._slot(name)
        window = slot.windows.get(symbol)
        if window is None:
            raise KeyError(f"{symbol!r} is not an instrument of strategy {name}")
        window.append(history)
        if slot.state is StrategyState.INSTALLED:
            self._set_state(slot, StrategyState.WARMING_UP)

    def start(self, name: str) -> list[Intent]:
        """RUNNING (``on_start``) unless added disabled (DISABLED)."""
        slot = self._slot(name)
        if slot.state not in (StrategyState.INSTALLED, StrategyState.WARMING_UP):
            return []
        if not slot.enabled:
            self._set_state(slot, StrategyState.DISABLED)
            return []
        return self._run(slot)

    def _run(self, slot: _Slot) -> list[Intent]:
        self._set_state(slot, StrategyState.RUNNING)
        if not slot.started:
            slot.started = True
            self._hook(slot, "on_start", slot.strategy.on_start)
        return self._flush(slot)

    def enable(self, name: str) -> list[Intent]:
        """DISABLED or ERROR -> RUNNING (``on_start`` first if it never ran); before ``start``, only
        remembers to run."""
        slot = self._slot(name)
        slot.enabled = True
        if slot.stopped or slot.state not in (StrategyState.DISABLED, StrategyState.ERROR):
            return []
        return self._run(slot)

    def disable(self, name: str, cancel_orders: bool) -> list[Intent]:
        """-> DISABLED: no more hooks, targets dropped; ``cancel_orders``: cancel its working orders."""
        slot = self._slot(name)
        slot.enabled = False
        slot.targets.clear()
        if slot.state not in (StrategyState.INSTALLED, StrategyState.WARMING_UP):
            self._set_state(slot, StrategyState.DISABLED, "disabled")
        if cancel_orders:
            for client_order_id in list(slot.orders):
                slot.cancel(client_order_id)  # working ones, once
        intents, slot.outbox = slot.outbox, []
        return intents

    def stop(self, name: str | None = None) -> list[Intent]:
        """The service stops (``name``, or every strategy): ``on_stop`` (if it ran), ``prices_stream``
        completes; DISABLED. The intents ``on_stop`` asked for are returned."""
        if name is None:
            return [i for n in self._slots for i in self.stop(n)]
        slot = self._slot(name)
        if slot.stopped:
            return []
        if slot.started and slot.state is StrategyState.RUNNING:
            self._hook(slot, "on_stop", slot.strategy.on_stop)
        intents = self._flush(slot)
        slot.stopped = True
        if slot.state is not StrategyState.ERROR:
            self._set_state(slot, StrategyState.DISABLED, "stopped")
        slot.subject.on_completed()
        return intents

    # -- hooks -----------------------------------------------------------------------------------

    def _hook(self, slot: _Slot, hook: str, fn: Callable[..., None], *args: Any) -> bool:
        """Run one hook of a RUNNING strategy, timed and isolated; False when it raised (ERROR)."""
        targets = dict(slot.targets)
        start = self.clock()
        try:
            fn(*args)
        except Exception as exc:
            slot.rollback(targets)
            slot.last_error = traceback.format_exc()
            message = f"{hook} raised {type(exc).__name__}: {exc}"
            self._events.append(RuntimeEvent(slot.name, "error", message, slot.last_error))
            slot.strategy.log.error("%s\n%s", message, slot.last_error)
            self._set_state(slot, StrategyState.ERROR, message)
            return False
        finally:
            elapsed = self.clock() - start
            slot.hooks.setdefault(hook, HookStats()).record(elapsed * 1000.0)
            if elapsed > self.slow_hook_s:
                message = f"{hook} took {elapsed * 1000.0:.1f} ms (limit {self.slow_hook_s * 1000.0:.0f} ms)"
                self._events.append(RuntimeEvent(slot.name, "slow_hook", message))
                slot.strategy.log.warning("slow hook: %s", message)
        return True

    def _flush(self, slot: _Slot) -> list[Intent]:
        if slot.state is StrategyState.RUNNING:
            slot.replan()
        intents, slot.outbox = slot.outbox, []
        return intents

    def _running(self, slot: _Slot) -> bool:
        return slot.state is StrategyState.RUNNING and not slot.stopped

    # -- inputs ----------------------------------------------------------------------------------

    def on_prices(self, symbol: str, bar_size: str, frame: pd.DataFrame) -> list[Intent]:
        """Bars (or ticks) of ``symbol``: appended to the window of every strategy wanting
        (symbol, bar_size); then each RUNNING one's ``on_prices`` and ``prices_stream``."""
        size = normalise_bar_size(bar_size)
        intents: list[Intent] = []
        for slot in self._slots.values():
            window = slot.windows.get(symbol)
            if window is None or slot.bar_size != size:
                continue
            window.append(frame)
            if self._running(slot):
                prices = window.frame()
                self._hook(slot, "on_prices", _deliver, slot, prices)
                intents += self._flush(slot)
        return intents

    def on_order(self, order: Mapping[str, Any]) -> list[Intent]:
        """An order record (event ``order.<strategy>``, or a result of place/cancel_order)."""
        slot = self._slots.get(str(order.get("strategy") or ""))
        if slot is None or not slot.track_order(order):
            return []
        if self._running(slot):
            self._hook(slot, "on_order", slot.strategy.on_order, dict(order))
        return self._flush(slot)

    def on_fill(self, fill: Mapping[str, Any]) -> list[Intent]:
        """A fill record (event ``fill.<strategy>``): once per exec id; ``kind: "commission"``
        repeats are ignored."""
        if fill.get("kind", "fill") != "fill":
            return []
        slot = self._slots.get(str(fill.get("strategy") or ""))
        if slot is None or not slot.book_fill(fill):
            return []
        if self._running(slot):
            self._hook(slot, "on_fill", slot.strategy.on_fill, dict(fill))
        return self._flush(slot)

    def intent_failed(self, intent: Intent, reason: str = "") -> list[Intent]:
        """The shell could not get ``intent`` to the trader's book (place_order refused before the
        book: not_connected, bad_order, bad_params; cancel_order: not_connected ...). A failed place
        no longer counts as working; a failed cancel will be asked again at the next re-plan. Do not
        call it for a timeout (the outcome is unknown: resend the same intent, it is idempotent)."""
        slot = self._slots.get(intent.strategy)
        if slot is None:
            return []
        order = slot.orders.get(intent.client_order_id)
        if isinstance(intent, PlaceOrder):
            if order is not None and order.record is None:
                del slot.orders[intent.client_order_id]
                slot.done_orders.add(intent.client_order_id)
        elif order is not None:
            order.cancel_requested = False
        slot.strategy.log.warning("intent %s failed: %s", intent, reason)
        return []

    # -- status ----------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        return self._slot(name).status()

    def drain_events(self) -> list[RuntimeEvent]:
        events, self._events = self._events, []
        return events

    def list(self) -> builtins.list[dict[str, Any]]:  # last: it shadows the builtin in the class
        """The status of every strategy."""
        return [slot.status() for slot in self._slots.values()]


def _older(record: Mapping[str, Any], last: Mapping[str, Any] | None) -> bool:
    """Whether ``record`` is older than ``last`` (by ``updated_ns``, when both have one)."""
    new = record.get("updated_ns")
    old = None if last is None else last.get("updated_ns")
    return isinstance(new, int) and isinstance(old, int) and new < old


def _deliver(slot: _Slot, prices: pd.DataFrame) -> None:
    slot.strategy.on_prices(prices)
    slot.subject.on_next(prices)


__all__ = [
    "CancelOrder",
    "Intent",
    "PlaceOrder",
    "RuntimeEvent",
    "StrategyRuntime",
    "StrategyState",
    "normalise_bar_size",
]
