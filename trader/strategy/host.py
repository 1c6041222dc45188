"""The async shell of one strategy service (one shard): the trader's RPC, its two PUB sockets and
the pure :class:`~trader.strategy.runtime.StrategyRuntime` in between.

Start (:meth:`StrategyHost.start`), for the shard's strategies:

1. wait until the trader answers;
2. ``subscribe`` (owner ``strategy:<name>``) the instruments with the bar size, so the trader
   publishes ``<topic>.bars.<slug>`` (or ticks) on its ticks PUB; the SUB sockets connect;
3. listen to ``order.<name>`` and ``fill.<name>`` on the events PUB (before the snapshot below, so
   nothing falls between the two: events already in the snapshot are recognised and skipped);
4. restore each strategy from one ``get_trades`` snapshot (atomic at the trader): its position per
   instrument (the sum of its fills) and its open orders;
5. warm up from ``get_history`` (the trader reads its store first) for ``warmup_bars`` bars;
6. start the strategies (``on_start``) and feed them: bars/ticks, order updates, fills, in arrival
   order, one at a time. Intents go to the :class:`~trader.strategy.sender.IntentSender`.

Every ``RESYNC_S`` the host compares with the trader (open orders, fills since the start) and feeds
what the events PUB may have lost; exec ids and order update times keep everything applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pandas as pd

from trader.ib.history import duration_for
from trader.messaging.pubsub import TickSubscriber
from trader.messaging.rpc import AsyncRpcClient, RpcRemoteError, RpcTimeout, RpcUnavailable
from trader.service.bars import parse_bar_size
from trader.strategy.config import TICKS, ResolvedEndpoints
from trader.strategy.feeds import (
    BAR_COLUMNS,
    HISTORY_PATIENCE_S,
    RECENT_EVENTS,
    RESYNC_S,
    RETRY_CODES,
    TERMINAL,
    StartupError,
    Stream,
    frame_of,
)
from trader.strategy.hosting import Loaded, make_runtime
from trader.strategy.runtime import Intent, RuntimeEvent
from trader.strategy.sender import IntentSender

log = logging.getLogger("trader.strategy.host")
T = TypeVar("T")


class StrategyHost:
    def __init__(
        self, shard: int, loaded: list[Loaded], endpoints: ResolvedEndpoints, slow_hook_s: float
    ) -> None:
        self.shard = shard
        self.loaded = {spec.name: spec for spec in loaded}
        self.endpoints = endpoints
        self.runtime = make_runtime(loaded, slow_hook_s)
        self.rpc = AsyncRpcClient(endpoints.rpc, timeout=endpoints.rpc_timeout_s, curve=endpoints.curve)
        self.sender = IntentSender(
            self.rpc, self._order_from_sender, self._failed_from_sender, timeout=endpoints.rpc_timeout_s
        )
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self.event_counts: dict[str, dict[str, int]] = {}
        self.started_ns = time.time_ns()
        self.running = False
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._streams: dict[str, Stream] = {}  # PUB topic -> what it is
        self._con_symbols: dict[int, str] = {}
        self._order_seen: dict[str, int] = {}  # client order id -> latest updated_ns applied
        self._working: dict[str, str] = {}  # client order id -> strategy, while not terminal
        self._exec_ids: set[str] = set()
        self._parked: dict[str, dict[str, Any]] = {}  # order records waiting for their fills
        self._ticks: TickSubscriber | None = None
        self._events: TickSubscriber | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ start

    async def start(self, stop: asyncio.Event) -> bool:
        """Connect, restore, warm up, start every strategy; False when ``stop`` came first."""
        steps: list[Callable[[asyncio.Event], Awaitable[None]]] = [
            self._wait_for_trader, self._subscribe_market, self._open_events, self._restore, self._warm_up,
        ]  # fmt: skip
        for step in steps:
            if stop.is_set():
                return False
            await step(stop)
        for name in self.runtime.names():
            self._apply(self.runtime.start(name))
        self.running = True
        self._tasks.append(asyncio.create_task(self._dispatch(), name="strategy dispatch"))
        self._tasks.append(asyncio.create_task(self._resync_forever(), name="strategy resync"))
        return not stop.is_set()

    async def _retrying(self, what: str, stop: asyncio.Event, call: Callable[[], Awaitable[T]]) -> T | None:
        """``call()`` until it succeeds; None when ``stop`` is set first. A remote error outside
        RETRY_CODES is a StartupError."""
        delay, told = 0.25, 0.0
        while not stop.is_set():
            try:
                return await call()
            except RpcRemoteError as exc:
                if exc.code not in RETRY_CODES:
                    raise StartupError(f"{what}: {exc.code}: {exc.message}") from None
                problem = f"{exc.code}: {exc.message}"
            except (RpcTimeout, RpcUnavailable) as exc:
                problem = f"the trader at {self.endpoints.rpc} does not answer ({type(exc).__name__})"
            if time.monotonic() - told > 10:
                log.warning("%s: %s; trying again", what, problem)
                told = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(2.0, delay * 2)
        return None

    async def _wait_for_trader(self, stop: asyncio.Event) -> None:
        await self._retrying("waiting for the trader", stop, lambda: self.rpc.call("ping", timeout=2.0))

    async def _subscribe_market(self, stop: asyncio.Event) -> None:
        self._ticks = TickSubscriber(
            self.endpoints.ticks, on_batch=self._on_batch, curve=self.endpoints.curve
        )
        for spec in self.loaded.values():
            entry = spec.entry
            params: dict[str, Any] = {"owner": f"strategy:{spec.name}", "symbols": list(entry.instruments)}
            if entry.bar_size != TICKS:
                params["bar_size"] = entry.bar_size

            def call(p: dict[str, Any] = params) -> Awaitable[Any]:
                return self.rpc.call("subscribe", p, timeout=30.0)

            infos = await self._retrying(f"{spec.name}: subscribe {', '.join(entry.instruments)}", stop, call)
            if infos is None:
                return
            for symbol, info in zip(entry.instruments, infos, strict=True):
                if info.get("failed"):
                    log.warning("%s: market data of %s: %s", spec.name, symbol, info.get("error"))
                self._con_symbols[int(info["con_id"])] = symbol
                topic = str(info["topic"])
                if entry.bar_size != TICKS:
                    topic = f"{topic}.bars.{parse_bar_size(entry.bar_size).slug}"
                stream = self._streams.setdefault(topic, Stream(symbol, entry.bar_size))
                stream.strategies.add(spec.name)
                self._ticks.subscribe_exact(topic)
        await self._ticks.__aenter__()
        self._ticks.start()

    async def _open_events(self, stop: asyncio.Event) -> None:
        events = self._events = TickSubscriber(
            self.endpoints.events, on_event=self._on_event, curve=self.endpoints.curve
        )
        for name in self.loaded:
            events.subscribe_exact(f"order.{name}")
            events.subscribe_exact(f"fill.{name}")
        await events.__aenter__()
        events.start()
        while not stop.is_set():  # subscribed once a heartbeat came: nothing later is missed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await events.wait_for_heartbeat()
                    return
            log.warning("no heartbeat from the trader's events PUB at %s yet", self.endpoints.events)

    async def _restore(self, stop: asyncio.Event) -> None:
        for name in self.loaded:

            def call(n: str = name) -> Awaitable[Any]:
                return self.rpc.call("get_trades", strategy=n, timeout=30.0)

            trades = await self._retrying(f"{name}: restoring its orders and fills", stop, call)
            if trades is None:
                return
            positions: dict[str, float] = {}
            open_orders: list[dict[str, Any]] = []
            for trade in trades:
                order = self._symbolised(trade["order"])
                self._order_seen[order["client_order_id"]] = int(order.get("updated_ns") or 0)
                if order.get("working"):
                    open_orders.append(order)
                    self._working[order["client_order_id"]] = name
                for raw in trade["fills"]:
                    fill = self._symbolised(raw)
                    self._exec_ids.add(str(fill["exec_id"]))
                    positions[fill["symbol"]] = positions.get(fill["symbol"], 0.0) + float(fill["quantity"])
            positions = {s: q for s, q in positions.items() if abs(q) > 1e-9}
            self.runtime.restore(name, positions, open_orders, self._exec_ids)
            self._drain_events()
            log.info("%s: restored position %s, %d open orders", name, positions or "flat", len(open_orders))

    async def _warm_up(self, stop: asyncio.Event) -> None:
        cache: dict[tuple[str, str, int], pd.DataFrame] = {}
        for spec in self.loaded.values():
            entry = spec.entry
            if entry.bar_size == TICKS or entry.warmup_bars <= 0:
                continue
            for symbol in entry.instruments:
                key = (symbol, entry.bar_size, entry.warmup_bars)
                if key not in cache:
                    cache[key] = await self._history(symbol, entry.bar_size, entry.warmup_bars, stop)
                frame = cache[key]
                self.runtime.warm_up(spec.name, symbol, frame)
                self._drain_events()
                for stream in self._streams.values():
                    if stream.symbol == symbol and stream.bar_size == entry.bar_size and len(frame):
                        stream.last = (
                            frame.index[-1] if stream.last is None else max(stream.last, frame.index[-1])
                        )
                log.info(
                    "%s: warmed up %s with %d of %d %s bars",
                    spec.name,
                    symbol,
                    len(frame),
                    entry.warmup_bars,
                    entry.bar_size,
                )

    async def _history(self, symbol: str, bar_size: str, bars: int, stop: asyncio.Event) -> pd.DataFrame:
        seconds = parse_bar_size(bar_size).seconds
        duration = duration_for(seconds * (bars * 2 + 2))  # gaps (no ticks, no trading) are skipped bars
        deadline = time.monotonic() + HISTORY_PATIENCE_S
        delay = 0.5
        while not stop.is_set():
            try:
                raw = await self.rpc.call(
                    "get_history", symbol=symbol, bar_size=bar_size, duration=duration, timeout=60.0
                )
                return frame_of(raw, bar_size).tail(bars)
            except RpcRemoteError as exc:
                problem = f"{exc.code}: {exc.message}"
                if exc.code not in RETRY_CODES:
                    break
            except (RpcTimeout, RpcUnavailable) as exc:
                problem = f"no answer ({type(exc).__name__})"
            if time.monotonic() > deadline:
                break
            log.info("history of %s (%s) not available yet: %s", symbol, bar_size, problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(5.0, delay * 2)
        log.warning("no warm-up history for %s (%s): %s; starting without", symbol, bar_size, problem)
        return frame_of(
            pd.DataFrame({c: [] for c in BAR_COLUMNS}, index=pd.DatetimeIndex([], tz="UTC")), bar_size
        )

    # ------------------------------------------------------------------ inputs

    def _on_batch(self, topic: str, frame: pd.DataFrame) -> None:
        stream = self._streams.get(topic)
        if stream is not None:
            self._inbox.put_nowait(("prices", (stream, frame)))

    def _on_event(self, topic: str, body: Any) -> None:
        if isinstance(body, dict):
            self._inbox.put_nowait(("order" if topic.startswith("order.") else "fill", body))

    def _order_from_sender(self, record: dict[str, Any]) -> None:
        self._inbox.put_nowait(("order", record))

    def _failed_from_sender(self, intent: Intent, reason: str) -> None:
        self._inbox.put_nowait(("failed", (intent, reason)))

    def _symbolised(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with ``symbol`` as the strategy names the instrument (by conId)."""
        con_id = record.get("con_id")
        symbol = self._con_symbols.get(int(con_id)) if isinstance(con_id, int) else None
        return record if symbol is None or symbol == record.get("symbol") else {**record, "symbol": symbol}

    async def _dispatch(self) -> None:
        while True:
            kind, item = await self._inbox.get()
            try:
                if kind == "prices":
                    self._prices(*item)
                elif kind == "order":
                    self._order(item)
                elif kind == "failed":
                    self._apply(self.runtime.intent_failed(*item))
                else:
                    self._fill(item)
            except Exception:
                log.exception("handling %s failed", kind)

    def _prices(self, stream: Stream, batch: pd.DataFrame) -> None:
        frame = frame_of(batch, stream.bar_size)
        if stream.last is not None:
            frame = frame[frame.index >= stream.last]  # older than the warm-up or the last bar
        if frame.empty:
            return
        stream.last = frame.index[-1]
        self._apply(self.runtime.on_prices(stream.symbol, stream.bar_size, frame))

    def _order(self, record: dict[str, Any]) -> None:
        coid, strategy = record.get("client_order_id"), record.get("strategy")
        if not isinstance(coid, str) or strategy not in self.loaded:
            return
        updated = int(record.get("updated_ns") or 0)
        if updated < self._order_seen.get(coid, -1):
            return  # older than what was applied (a reply overtaken by events, a restored order)
        self._order_seen[coid] = updated
        if any(str(e) not in self._exec_ids for e in record.get("exec_ids") or ()):
            # its fills are still on their way (a fill event follows its journaling): the runtime
            # would see the order done (or less remaining) without the position - and buy again
            self._parked[coid] = record
            return
        self._parked.pop(coid, None)
        self._feed_order(coid, str(strategy), record)

    def _feed_order(self, coid: str, strategy: str, record: dict[str, Any]) -> None:
        if record.get("working") or (record.get("working") is None and record.get("state") not in TERMINAL):
            self._working[coid] = strategy
        else:
            self._working.pop(coid, None)
        record = {k: v for k, v in record.items() if k != "previous"}
        self._apply(self.runtime.on_order(self._symbolised(record)))

    def _fill(self, record: dict[str, Any]) -> None:
        if record.get("kind", "fill") != "fill" or record.get("strategy") not in self.loaded:
            return  # a commission report of a fill already applied
        exec_id = str(record.get("exec_id"))
        if exec_id in self._exec_ids:
            return
        self._exec_ids.add(exec_id)
        self._apply(self.runtime.on_fill(self._symbolised(record)))
        coid = record.get("client_order_id")
        parked = self._parked.get(coid) if isinstance(coid, str) else None
        if parked is not None and all(str(e) in self._exec_ids for e in parked.get("exec_ids") or ()):
            del self._parked[str(coid)]
            self._feed_order(str(coid), str(parked["strategy"]), parked)

    def _apply(self, intents: list[Intent]) -> None:
        if intents:
            self.sender.submit(intents)
        self._drain_events()

    def _drain_events(self) -> None:
        for event in self.runtime.drain_events():
            self._record(event)

    def _record(self, event: RuntimeEvent) -> None:
        counts = self.event_counts.setdefault(event.strategy, {})
        counts[event.kind] = counts.get(event.kind, 0) + 1
        entry = {
            "time_ns": time.time_ns(),
            "strategy": event.strategy,
            "kind": event.kind,
            "message": event.message,
        }
        if event.traceback:
            entry["traceback"] = event.traceback
        self.recent.append(entry)
        if event.kind == "error":
            log.error("strategy %s: %s (traceback in its status)", event.strategy, event.message)
        elif event.kind == "slow_hook":
            log.warning("strategy %s: %s", event.strategy, event.message)
        else:
            log.info("strategy %s: %s", event.strategy, event.message)

    def apply(self, intents: list[Intent]) -> None:
        """Send intents from outside the feed (the RPC's enable/disable)."""
        self._apply(intents)

    # ------------------------------------------------------------------ resync

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            try:
                await self.resync()
            except (RpcTimeout, RpcUnavailable, RpcRemoteError) as exc:
                log.info("resync skipped: %s", exc)
            except Exception:
                log.exception("resync failed")

    async def resync(self) -> None:
        """Feed order updates and fills the events PUB may have lost (they are applied once)."""
        since = self.started_ns - 60 * 1_000_000_000
        for name in self.loaded:
            for fill in await self.rpc.call("get_fills", strategy=name, since_ns=since):
                if str(fill.get("exec_id")) not in self._exec_ids:
                    log.warning(
                        "%s: fill %s came by resync (lost on the events PUB?)", name, fill.get("exec_id")
                    )
                    self._inbox.put_nowait(("fill", fill))
            open_orders = await self.rpc.call("get_orders", strategy=name, open_only=True)
            open_ids = set()
            for order in open_orders:
                open_ids.add(order["client_order_id"])
                if int(order.get("updated_ns") or 0) > self._order_seen.get(order["client_order_id"], -1):
                    self._inbox.put_nowait(("order", order))
            for coid in [c for c, s in self._working.items() if s == name and c not in open_ids]:
                for order in await self.rpc.call("get_orders", strategy=name, client_order_id=coid):
                    if int(order.get("updated_ns") or 0) > self._order_seen.get(coid, -1):
                        self._inbox.put_nowait(("order", order))

    # ------------------------------------------------------------------ stop

    async def close(self, cancel: list[str], within: float = 5.0) -> None:
        """Stop: cancel the working orders of the strategies in ``cancel``, run every ``on_stop``,
        send what is queued (up to ``within`` seconds), close the sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.running:
            for name in cancel:
                self._apply(self.runtime.disable(name, cancel_orders=True))
            for name in self.runtime.names():
                self._apply(self.runtime.stop(name))
            if not await self.sender.drain(within):
                log.warning("%d intents not sent before stopping", self.sender.pending())
        self.running = False
        await self.sender.close()
        for sub in (self._ticks, self._events):
            if sub is not None:
                await sub.aclose()
        await self.rpc.close()
