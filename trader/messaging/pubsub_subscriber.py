"""The receiving side of pub/sub: :class:`TickSubscriber` (a SUB socket connected to publishers).

Each wake-up drains what the socket has (non-blocking receives, up to ``max_drain`` messages),
accounts sequence numbers in arrival order, coalesces consecutive batches of a topic into one
DataFrame and hands the results over as callbacks, an async iterator or a reactivex Observable.
See docs/wire.md ("Pub/sub").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, cast

import pandas as pd
import reactivex
import reactivex.operators as ops
import zmq
from reactivex.subject import Subject

from trader.messaging.curve import CurveKeys, configure_client
from trader.messaging.pubsub_receive import (
    Event,
    Message,
    SeqTracker,
    TickBatch,
    TopicStats,
    coalesce,
    materialize,
)
from trader.messaging.pubsub_wire import (
    HEARTBEAT_TOPIC,
    PayloadError,
    WireBatch,
    WireEvent,
    WireHeartbeat,
    parse_message,
)

log = logging.getLogger("trader.messaging.pubsub")

DEFAULT_RCVHWM: Final = 10_000
DEFAULT_MAX_DRAIN: Final = 4_096
DEFAULT_MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
_LOG_FIRST_MALFORMED: Final = 10
_LOG_EVERY_MALFORMED: Final = 1_000

BatchCallback = Callable[[str, pd.DataFrame], Awaitable[None] | None]
EventCallback = Callable[[str, Any], Awaitable[None] | None]


@dataclass(slots=True)
class SubscriberStats:
    """Receive counters. ``dropped_messages`` are batches+events that seq gaps say never arrived;
    ``dropped_rows`` the rows in them (exact: batches carry the topic's running row count)."""

    messages: int = 0
    batches: int = 0
    rows: int = 0
    events: int = 0
    frames: int = 0
    heartbeats: int = 0
    malformed: int = 0
    filtered: int = 0
    drains: int = 0
    gaps: int = 0
    dropped_messages: int = 0
    dropped_rows: int = 0
    resets: int = 0
    callback_errors: int = 0
    topics: dict[str, TopicStats] = field(default_factory=dict)


class TickSubscriber:
    """Receives batches and events from one or more :class:`TickPublisher` endpoints.

    Prefix semantics are ZeroMQ's: ``subscribe("AAPL")`` receives every topic whose UTF-8 bytes
    start with ``AAPL`` ("AAPL", "AAPL.X", "AAPLE"...); ``""`` receives everything;
    ``subscribe_exact("AAPL")`` receives "AAPL" only (a ZeroMQ prefix plus a local filter).

    Consume in one of two ways (not both):

    * ``await sub.run()`` / ``sub.start()``: calls ``on_batch(topic, df)`` / ``on_event(topic,
      body)`` (plain or async functions) and feeds every :meth:`observable`;
    * ``async for msg in sub``: yields :class:`TickBatch` / :class:`Event` items.

    ``merge_topics=True`` delivers one DataFrame per drain (per run of same-schema batches)
    with a leading ``topic`` column and topic ``"*"``, instead of one per topic: the cheap choice
    for many low-rate topics (50 symbols at 20k ticks/s are ~1 row per topic per drain).

    Socket options: RCVHWM ``rcvhwm`` (messages), LINGER 0, MAXMSGSIZE ``max_message_bytes``
    (a bigger message drops the connection), TCP keepalive, RCVBUF ``rcvbuf`` when given,
    RECONNECT_IVL_MAX 2 s (a restarted publisher is found again quickly).

    ``curve``: connect with CurveZMQ as ``curve.public`` to publishers whose public key is
    ``curve.server_public`` (:mod:`trader.messaging.curve`); every endpoint is that one server's.
    """

    def __init__(
        self,
        endpoints: str | Iterable[str],
        *,
        prefixes: Iterable[str] = (),
        on_batch: BatchCallback | None = None,
        on_event: EventCallback | None = None,
        rcvhwm: int = DEFAULT_RCVHWM,
        rcvbuf: int | None = None,
        max_drain: int = DEFAULT_MAX_DRAIN,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        merge_topics: bool = False,
        tcp_keepalive: bool = True,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        if max_drain < 1:
            raise ValueError("max_drain must be >= 1")
        if curve is not None and curve.server_public is None:
            raise ValueError("curve keys of a subscriber need server_public (the publisher's public key)")
        self.merge_topics = merge_topics
        self.on_batch = on_batch
        self.on_event = on_event
        self.max_drain = max_drain
        self.stats = SubscriberStats()
        self._tracker = SeqTracker(topics=self.stats.topics)
        self._prefixes: set[str] = set()
        self._exact: set[str] = set()
        self._zmq_prefixes: set[str] = set()
        self._subject: Subject[Message] = Subject()
        self._observed = False  # on_next only once someone asked for an observable
        self._last_hb: float | None = None
        self._hb_event = asyncio.Event()
        self._buffer: deque[Message] = deque()
        self._task: asyncio.Task[None] | None = None
        self._consumer: str | None = None
        self._closed = False
        # A plain socket: waits are loop.add_reader on ZMQ_FD (as zmq.asyncio does, without a
        # poller and futures per wait) and drains are non-blocking receives. Any context works.
        ctx = context if context is not None else zmq.Context.instance()
        self._sock: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.SUB)
        self._waiter: asyncio.Future[None] | None = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
            self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            if rcvbuf is not None:
                self._sock.setsockopt(zmq.RCVBUF, rcvbuf)
            if tcp_keepalive:
                self._sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
                self._sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
                self._sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
            if curve is not None:
                configure_client(self._sock, curve)
            self._sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
            for prefix in prefixes:
                self.subscribe(prefix)
            for endpoint in [endpoints] if isinstance(endpoints, str) else endpoints:
                self.connect(endpoint)
        except BaseException:
            self._sock.close(0)
            raise

    # ----------------------------------------------------------------- subscriptions

    def connect(self, endpoint: str) -> None:
        self._sock.connect(endpoint)

    def _zmq_subscribe(self, prefix: str) -> None:
        if prefix not in self._zmq_prefixes:
            self._zmq_prefixes.add(prefix)
            self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())

    def subscribe(self, prefix: str) -> None:
        """Receive every topic starting with ``prefix`` ("" = all). Idempotent."""
        self._prefixes.add(prefix)
        self._zmq_subscribe(prefix)

    def subscribe_exact(self, topic: str) -> None:
        """Receive ``topic`` itself, not the longer topics it is a prefix of."""
        self._exact.add(topic)
        self._zmq_subscribe(topic)

    def unsubscribe(self, prefix: str) -> None:
        """Undo :meth:`subscribe` or :meth:`subscribe_exact` of this string."""
        self._prefixes.discard(prefix)
        self._exact.discard(prefix)
        if prefix in self._zmq_prefixes:
            self._zmq_prefixes.discard(prefix)
            self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
        self._tracker.forget(self.wants)

    def wants(self, topic: str) -> bool:
        """Whether a message on ``topic`` is delivered under the current subscriptions."""
        return topic in self._exact or any(topic.startswith(p) for p in self._prefixes)

    # ----------------------------------------------------------------- observables, health

    def observable(self, prefix: str | None = None) -> reactivex.Observable[Message]:
        """Every :class:`TickBatch` / :class:`Event` delivered by :meth:`run`, optionally only
        topics starting with ``prefix`` (which is also subscribed to). Hot: items are pushed from
        the run loop, on the event loop thread; completes when the subscriber closes."""
        self._observed = True
        if prefix is None:
            return self._subject
        if self.merge_topics:
            raise ValueError("with merge_topics=True batches have topic '*': filter on the topic column")
        self.subscribe(prefix)

        def matches(msg: Message) -> bool:
            return msg.topic.startswith(prefix)

        return self._subject.pipe(ops.filter(matches))

    @property
    def last_heartbeat_age(self) -> float:
        """Seconds since the last heartbeat was received (``math.inf`` before the first).

        Heartbeats are read by the consuming loop, so a consumer that stops reading also sees
        this grow: a stall watcher should treat ``age > 3 * heartbeat_s`` as "no data".
        """
        if self._last_hb is None:
            return math.inf
        return time.monotonic() - self._last_hb

    async def wait_for_heartbeat(self) -> None:
        """Wait until the next heartbeat arrives (needs :meth:`run`/:meth:`start` or iteration).

        Bound it with ``asyncio.timeout``.
        """
        self._hb_event.clear()
        await self._hb_event.wait()

    # ----------------------------------------------------------------- receiving

    def _claim(self, consumer: str) -> None:
        if self._consumer not in (None, consumer):
            raise RuntimeError(f"subscriber already consumed by {self._consumer}; use one way only")
        self._consumer = consumer

    async def receive(self) -> list[Message]:
        """Wait for messages and return one drain's worth (bound it with ``asyncio.timeout``).

        May return an empty list: only heartbeats or malformed messages arrived, or the
        subscriber was closed while waiting.
        """
        if self._buffer:
            items = list(self._buffer)
            self._buffer.clear()
            return items
        if self._is_closed():
            raise RuntimeError("subscriber is closed")
        await self._readable()
        if self._is_closed():
            return []
        return self.drain()

    async def _readable(self) -> None:
        """Wait until a message can be read, or the subscriber is closed.

        ZMQ_FD is edge-like: it signals when the socket's state may have changed and is reset by
        reading ZMQ_EVENTS, so EVENTS is checked before every wait and read on every wake-up.
        """
        sock = self._sock
        loop = asyncio.get_running_loop()
        if self._reader_loop is not loop:
            if self._reader_loop is not None:
                self._reader_loop.remove_reader(sock.FD)
            loop.add_reader(sock.FD, self._wake)
            self._reader_loop = loop
        while not self._is_closed() and not cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif not self._closed:
            self._sock.getsockopt(zmq.EVENTS)  # nobody waits: reset the FD so it stops firing

    def drain(self) -> list[Message]:
        """Read what is available now (up to ``max_drain`` messages) without waiting."""
        recv_ns = time.time_ns()
        recv = self._sock.recv
        stats = self.stats
        tracker = self._tracker
        filtering = bool(self._exact)
        messages: list[WireBatch | WireEvent] = []
        batches = rows = 0
        for _ in range(self.max_drain):
            try:
                # copy=False and Frame.more: half the cost of recv_multipart (no sockopt call).
                part = recv(zmq.NOBLOCK, copy=False)
                frames = [part.bytes]
                while part.more:
                    part = recv(zmq.NOBLOCK, copy=False)
                    frames.append(part.bytes)
            except zmq.Again:
                break
            stats.messages += 1
            try:
                msg = parse_message(frames)
            except PayloadError as exc:
                self._malformed(frames, exc)
                continue
            kind = type(msg)
            if kind is WireHeartbeat:
                self._on_heartbeat(msg)  # type: ignore[arg-type]
                continue
            if filtering and not self.wants(msg.topic):  # type: ignore[union-attr]
                stats.filtered += 1
                continue
            if kind is WireBatch:
                tracker.on_batch(msg)  # type: ignore[arg-type]
                batches += 1
                rows += msg.n  # type: ignore[union-attr]
            else:
                tracker.on_event(msg)  # type: ignore[arg-type]
                stats.events += 1
            messages.append(msg)  # type: ignore[arg-type]
        stats.batches += batches
        stats.rows += rows
        stats.drains += 1
        stats.gaps, stats.resets = tracker.gaps, tracker.resets
        stats.dropped_messages, stats.dropped_rows = tracker.dropped_messages, tracker.dropped_rows
        if not messages:
            return []
        by_topic = not self.merge_topics
        items = materialize(coalesce(messages, by_topic), recv_ns, by_topic)
        stats.frames += sum(1 for item in items if isinstance(item, TickBatch))
        return items

    def _on_heartbeat(self, heartbeat: WireHeartbeat) -> None:
        self.stats.heartbeats += 1
        self._last_hb = time.monotonic()
        self._hb_event.set()
        self._tracker.on_heartbeat(heartbeat)

    def _malformed(self, frames: list[bytes], exc: PayloadError) -> None:
        self.stats.malformed += 1
        count = self.stats.malformed
        if count <= _LOG_FIRST_MALFORMED or count % _LOG_EVERY_MALFORMED == 0:
            head = frames[0][:40] if frames else b""
            log.warning(
                "pubsub: malformed message #%d (%d frames, first %r): %s", count, len(frames), head, exc
            )

    def __aiter__(self) -> AsyncIterator[Message]:
        self._claim("async iteration")
        return self

    async def __anext__(self) -> Message:
        while not self._buffer:
            if self._is_closed():
                raise StopAsyncIteration
            try:
                items = await self.receive()
            except (zmq.ZMQError, RuntimeError):
                if self._is_closed():
                    raise StopAsyncIteration from None
                raise
            self._buffer.extend(items)
        return self._buffer.popleft()

    async def run(self) -> None:
        """Receive and dispatch until :meth:`close` (callbacks, then observers, per message).

        A callback that raises is logged and counted (``stats.callback_errors``); it does not
        stop the loop.
        """
        self._claim("run()")
        while not self._is_closed():
            try:
                items = await self.receive()
            except (zmq.ZMQError, RuntimeError):
                if self._is_closed():
                    break
                raise
            for item in items:
                try:
                    if isinstance(item, TickBatch):
                        result = self.on_batch(item.topic, item.frame) if self.on_batch else None
                    else:
                        result = self.on_event(item.topic, item.body) if self.on_event else None
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception:
                    self.stats.callback_errors += 1
                    log.exception("pubsub: callback failed on %r", item.topic)
                if self._observed:
                    try:
                        self._subject.on_next(item)
                    except Exception:
                        self.stats.callback_errors += 1
                        log.exception("pubsub: observer failed on %r", item.topic)

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task (cancelled by :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="TickSubscriber.run")
        return self._task

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Stop the run task, complete observables, close the socket (LINGER 0). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._reader_loop is not None:
            if not self._reader_loop.is_closed():
                self._reader_loop.remove_reader(self._sock.FD)
            self._reader_loop = None
        self._sock.close(0)
        self._subject.on_completed()

    async def aclose(self) -> None:
        """:meth:`close` and wait for the run task to finish."""
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def _is_closed(self) -> bool:  # a call, so that mypy does not narrow across awaits
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


__all__ = ["Event", "Message", "SubscriberStats", "TickBatch", "TickSubscriber"]
