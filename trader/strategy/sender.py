"""Sending a strategy's intents to the trader, each exactly once.

One worker per strategy sends its intents in order (a cancel never overtakes the place it
cancels; a slow strategy never delays another's orders):

* :class:`~trader.strategy.runtime.PlaceOrder` -> ``place_order`` (``wait_s`` 0). When no reply
  comes (timeout, trader restarting) the SAME request - same client order id - is sent again until
  one does: the trader places an order once per client order id, so a resend never doubles it.
  A refusal (``not_connected``, ``bad_order`` ...) is reported back (``intent_failed``), so the
  runtime stops counting the order as working and can plan again.
* :class:`~trader.strategy.runtime.CancelOrder` -> ``cancel_order``; ``unknown_order`` and
  ``too_late`` (already done) are fine.

A client order id is never sent for a second intent: a repeat is dropped and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from trader.messaging.rpc import AsyncRpcClient, RpcRemoteError, RpcTimeout, RpcUnavailable
from trader.strategy.runtime import CancelOrder, Intent, PlaceOrder

log = logging.getLogger("trader.strategy.sender")

RETRY_MIN_S: Final = 0.2
RETRY_MAX_S: Final = 5.0
FINE_CANCEL_CODES: Final = frozenset({"unknown_order", "too_late"})

OrderSink = Callable[[dict[str, Any]], None]
"""Receives the order records of the trader's replies."""
FailureSink = Callable[[Intent, str], None]
"""Told of an intent the trader refused before booking it (``code: message``)."""


@dataclass(slots=True)
class SenderStats:
    placed: int = 0
    cancels: int = 0
    resends: int = 0
    refused: int = 0
    duplicates: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "placed": self.placed,
            "cancels": self.cancels,
            "resends": self.resends,
            "refused": self.refused,
            "duplicates": self.duplicates,
            "last_error": self.last_error,
        }


class IntentSender:
    """Per-strategy ordered queues of intents, sent to the trader over ``rpc``."""

    def __init__(
        self, rpc: AsyncRpcClient, on_order: OrderSink, on_failed: FailureSink, *, timeout: float = 5.0
    ) -> None:
        self.rpc = rpc
        self.on_order = on_order
        self.on_failed = on_failed
        self.timeout = timeout
        self._queues: dict[str, asyncio.Queue[Intent]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._sent_places: set[str] = set()
        self._sent_cancels: set[str] = set()
        self._stopping = False
        self.stats: dict[str, SenderStats] = {}

    def submit(self, intents: list[Intent]) -> None:
        for intent in intents:
            coid = intent.client_order_id
            stats = self.stats.setdefault(intent.strategy, SenderStats())
            seen = self._sent_places if isinstance(intent, PlaceOrder) else self._sent_cancels
            if coid in seen:
                stats.duplicates += 1
                log.warning("%s: intent for %s already sent; not sending it again", intent.strategy, coid)
                continue
            seen.add(coid)
            self._queue(intent.strategy).put_nowait(intent)

    def pending(self, strategy: str | None = None) -> int:
        """Intents queued and not yet taken by a worker."""
        queues = self._queues.values() if strategy is None else [self._queues.get(strategy)]
        return sum(q.qsize() for q in queues if q is not None)

    async def drain(self, within: float) -> bool:
        """Wait until every queued intent was sent (or ``within`` seconds); True when all were."""
        try:
            async with asyncio.timeout(within):
                for queue in list(self._queues.values()):
                    await queue.join()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._stopping = True
        workers, self._workers = list(self._workers.values()), {}
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _queue(self, strategy: str) -> asyncio.Queue[Intent]:
        queue = self._queues.get(strategy)
        if queue is None:
            queue = self._queues[strategy] = asyncio.Queue()
            self._workers[strategy] = asyncio.get_running_loop().create_task(
                self._work(strategy, queue), name=f"intents {strategy}"
            )
        return queue

    async def _work(self, strategy: str, queue: asyncio.Queue[Intent]) -> None:
        while True:
            intent = await queue.get()
            try:
                if isinstance(intent, PlaceOrder):
                    await self._place(intent)
                elif isinstance(intent, CancelOrder):
                    await self._cancel(intent)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: sending %r failed", strategy, intent)
            finally:
                queue.task_done()

    async def _call(self, intent: Intent, method: str, params: dict[str, Any]) -> Any:
        """``method(params)`` until the trader answers (same params, so the same client order id)."""
        stats = self.stats.setdefault(intent.strategy, SenderStats())
        delay = RETRY_MIN_S
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.rpc.call(method, params, timeout=self.timeout)
            except (RpcTimeout, RpcUnavailable) as exc:
                if self._stopping:
                    raise
                stats.resends += 1
                stats.last_error = f"{method} {intent.client_order_id}: {type(exc).__name__}: {exc}"
                log.warning(
                    "%s: %s %s got no answer (%s); sending it again (attempt %d)",
                    intent.strategy, method, intent.client_order_id, exc, attempt + 1,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _place(self, intent: PlaceOrder) -> None:
        stats = self.stats.setdefault(intent.strategy, SenderStats())
        params = {**intent.params(), "wait_s": 0.0}
        try:
            result = await self._call(intent, "place_order", params)
        except RpcRemoteError as exc:
            stats.refused += 1
            stats.last_error = f"place_order {intent.client_order_id}: {exc.code}: {exc.message}"
            log.warning(
                "%s: order %s not placed: %s: %s",
                intent.strategy,
                intent.client_order_id,
                exc.code,
                exc.message,
            )
            # not_connected, bad_order ... leave no order at the trader (a risk refusal is booked
            # Rejected and published too): the runtime stops counting it as working
            self.on_failed(intent, f"{exc.code}: {exc.message}")
            return
        stats.placed += 1
        order = result.get("order") if isinstance(result, dict) else None
        log.info(
            "%s: %s %s %g %s -> %s%s",
            intent.strategy, intent.action, intent.symbol, intent.quantity, intent.client_order_id,
            order.get("state") if order else "?", "" if result.get("created", True) else " (already placed)",
        )  # fmt: skip
        if order:
            self.on_order(order)

    async def _cancel(self, intent: CancelOrder) -> None:
        stats = self.stats.setdefault(intent.strategy, SenderStats())
        params = {"client_order_id": intent.client_order_id, "strategy": intent.strategy, "wait_s": 0.0}
        try:
            result = await self._call(intent, "cancel_order", params)
        except RpcRemoteError as exc:
            if exc.code in FINE_CANCEL_CODES:
                log.info("%s: cancel %s: %s", intent.strategy, intent.client_order_id, exc.message)
            else:
                stats.last_error = f"cancel_order {intent.client_order_id}: {exc.code}: {exc.message}"
                log.warning(
                    "%s: cancel %s failed: %s: %s",
                    intent.strategy,
                    intent.client_order_id,
                    exc.code,
                    exc.message,
                )
            return
        stats.cancels += 1
        order = result.get("order") if isinstance(result, dict) else None
        log.info(
            "%s: cancel %s -> %s",
            intent.strategy,
            intent.client_order_id,
            order.get("state") if order else "?",
        )
        if order:
            self.on_order(order)
