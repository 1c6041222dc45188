"""The publishing side of pub/sub: :class:`TickPublisher` (a PUB socket bound on an endpoint).

Rows published on a topic are appended to that topic's pending batch; pending batches are sent
when one reaches ``max_batch`` rows, or ``linger_ms`` after the first pending row (0, the default,
means at the next event-loop iteration: a burst published within one iteration leaves as one
batch per topic, and nothing waits). Sends never block: ZeroMQ PUB drops, per subscriber, what
does not fit under that subscriber's high-water mark, and subscribers count those drops from
sequence numbers. See docs/wire.md ("Pub/sub").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import pandas as pd
import zmq

from trader.messaging.codec import CodecError, Packer
from trader.messaging.curve import CurveKeys, configure_server
from trader.messaging.pubsub_wire import (
    HEARTBEAT_TOPIC_BYTES,
    batch_payload,
    check_topic,
    columnar,
    event_payload,
    frame_columnar,
    heartbeat_payload,
)

log = logging.getLogger("trader.messaging.pubsub")

DEFAULT_SNDHWM: Final = 10_000
"""Messages (batches/events) queued per subscriber before ZeroMQ drops for that subscriber."""
DEFAULT_MAX_BATCH: Final = 1_000


@dataclass(slots=True)
class PublisherStats:
    """What the publisher handed to ZeroMQ, and what ZeroMQ refused (EAGAIN) or failed to send.

    A plain PUB socket never refuses: drops for one slow subscriber happen inside ZeroMQ and are
    only visible to that subscriber (seq gaps). ``dropped_*`` count refusals, which happen with
    ``nodrop=True`` (ZMQ_XPUB_NODROP) when any subscriber's queue is full. ``encode_errors``
    counts batches/events that msgpack could not carry (logged, not sent).
    """

    batches: int = 0
    rows: int = 0
    events: int = 0
    heartbeats: int = 0
    bytes: int = 0
    dropped_batches: int = 0
    dropped_rows: int = 0
    dropped_events: int = 0
    encode_errors: int = 0


class _Topic:
    __slots__ = ("frame", "name", "pending", "rows", "seq")

    def __init__(self, name: str) -> None:
        self.name = name
        self.frame = check_topic(name)
        self.pending: list[Mapping[str, Any]] = []
        self.seq = 0  # next sequence number
        self.rows = 0  # rows sent so far (row0 of the next batch)


class TickPublisher:
    """Batched, non-blocking publisher of ticks (rows), ready frames and events.

    Use inside a running event loop (flushes and heartbeats are scheduled on it)::

        async with TickPublisher("tcp://127.0.0.1:42002") as pub:
            pub.publish("AAPL", {"time": now, "bid": 1.0, "ask": 1.1, "last": 1.05})
            pub.publish_frame("AAPL.bars", bars_df)
            pub.publish_event("fills", {"order_id": 7, "qty": 100})

    Socket options: SNDHWM ``sndhwm`` (per subscriber queue, in messages), LINGER 0 (close drops
    what ZeroMQ has not sent yet), TCP keepalive (dead subscribers free their queue), SNDBUF
    ``sndbuf`` bytes when given. ``nodrop=True`` sets ZMQ_XPUB_NODROP: a full subscriber queue
    then makes sends fail with EAGAIN, counted in ``stats.dropped_*`` (for every subscriber),
    instead of ZeroMQ dropping silently for that subscriber only; the default keeps subscribers
    independent. ``curve``: CurveZMQ only, for the subscribers whose public keys are in
    ``curve.authorized_dir`` (:mod:`trader.messaging.curve`); others never receive anything.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_ms: float = 0.0,
        heartbeat_s: float | None = 1.0,
        sndhwm: int = DEFAULT_SNDHWM,
        sndbuf: int | None = None,
        nodrop: bool = False,
        tcp_keepalive: bool = True,
        time_columns: Sequence[str] = (),
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if linger_ms < 0:
            raise ValueError("linger_ms must be >= 0")
        if heartbeat_s is not None and heartbeat_s <= 0:
            raise ValueError("heartbeat_s must be > 0 (or None to disable heartbeats)")
        self.max_batch = max_batch
        self.linger_ms = linger_ms
        self.heartbeat_s = heartbeat_s
        self.time_columns = frozenset(time_columns)
        self.src = secrets.randbits(63)
        """This instance's id on the wire: a restarted publisher is a new stream for subscribers."""
        self.stats = PublisherStats()
        self._encode = Packer()  # encode() with one reused msgpack packer: same bytes, less work
        self._topics: dict[str, _Topic] = {}
        self._dirty: list[_Topic] = []
        self._marks: dict[str, tuple[int, int]] = {}  # topics sent on since the last heartbeat
        self._hb_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._hb_handle: asyncio.Handle | None = None
        self._closed = False
        # A plain (non-asyncio) socket: PUB sends with NOBLOCK never wait, so the asyncio
        # wrapper would only add a future per send. Works with zmq.asyncio contexts too.
        ctx = context if context is not None else zmq.Context.instance()
        self._sock: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.PUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.SNDHWM, sndhwm)
            if sndbuf is not None:
                self._sock.setsockopt(zmq.SNDBUF, sndbuf)
            if nodrop:
                self._sock.setsockopt(zmq.XPUB_NODROP, 1)
            if tcp_keepalive:
                self._sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
                self._sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
                self._sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
            if curve is not None:
                configure_server(self._sock, curve)
            self._sock.bind(endpoint)
        except BaseException:
            self._sock.close(0)
            raise
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        """The bound endpoint (with the actual port when ``endpoint`` used ``*``)."""

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Attach to the running event loop and start heartbeats (publish() does it on first use)."""
        if self._closed:
            raise RuntimeError("publisher is closed")
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("TickPublisher needs a running asyncio event loop") from None
            if self.heartbeat_s is not None:
                self._hb_handle = self._loop.call_soon(self._heartbeat, self._loop.time())

    def close(self, flush: bool = True, linger_ms: int = 0) -> None:
        """Flush pending rows (unless ``flush`` is False), stop timers, close the socket. Idempotent.

        With the default LINGER 0, messages ZeroMQ has queued but not yet written are dropped;
        ``linger_ms`` > 0 lets close wait that long for them (e.g. final events at shutdown).
        """
        if self._closed:
            return
        if flush:
            self.flush()
        self._closed = True
        for handle in (self._flush_handle, self._hb_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._hb_handle = None
        self._sock.close(linger_ms)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- publishing

    def publish(self, topic: str, row: Mapping[str, Any]) -> None:
        """Append one tick (a flat dict: column -> scalar) to ``topic``'s pending batch.

        The row is read when the batch is flushed, not copied now: do not mutate it afterwards.
        """
        state = self._topics.get(topic)
        if state is None or self._closed:
            state = self._new_topic(topic)
        pending = state.pending
        pending.append(row)
        if len(pending) >= self.max_batch:
            self._flush_topic(state)
        elif len(pending) == 1:
            self._dirty.append(state)
            if self._flush_handle is None:
                self._schedule_flush()

    def publish_many(self, topic: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Like :meth:`publish` for each row (split at ``max_batch``)."""
        for row in rows:
            self.publish(topic, row)

    def publish_frame(self, topic: str, frame: pd.DataFrame) -> None:
        """Send a ready DataFrame (e.g. bars) as one batch, after the topic's pending rows."""
        state = self._topics.get(topic) or self._new_topic(topic)
        if self._closed:
            raise RuntimeError("publisher is closed")
        self._flush_topic(state)
        if len(frame) == 0:
            return
        columns, dtypes, data = frame_columnar(frame)
        self._send_batch(state, columns, dtypes, data, len(frame))

    def publish_event(self, topic: str, body: Any) -> None:
        """Send one event (any msgpack/codec value) now, after the topic's pending rows."""
        state = self._topics.get(topic) or self._new_topic(topic)
        if self._closed:
            raise RuntimeError("publisher is closed")
        self._flush_topic(state)
        try:
            payload = self._encode(event_payload(body, src=self.src, seq=state.seq, sent_ns=time.time_ns()))
        except CodecError:
            self.stats.encode_errors += 1
            raise
        if self._send(state.frame, payload):
            self.stats.events += 1
        else:
            self.stats.dropped_events += 1
        state.seq += 1
        self._marks[state.name] = (state.seq - 1, state.rows)

    def flush(self) -> None:
        """Send every pending batch now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for state in dirty:
            if state.pending:
                self._flush_topic(state)

    def pending_rows(self) -> int:
        return sum(len(state.pending) for state in self._topics.values())

    # ----------------------------------------------------------------- internals

    def _new_topic(self, topic: str) -> _Topic:
        if self._closed:
            raise RuntimeError("publisher is closed")
        if self._loop is None:
            self.start()
        state = self._topics[topic] = _Topic(topic)
        return state

    def _schedule_flush(self) -> None:
        loop = self._loop
        if loop is None or self._closed:
            raise RuntimeError("publisher is closed" if self._closed else "publisher is not started")
        if self.linger_ms == 0:
            self._flush_handle = loop.call_soon(self._scheduled_flush)
        else:
            self._flush_handle = loop.call_later(self.linger_ms / 1000.0, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_handle = None
        self.flush()

    def _flush_topic(self, state: _Topic) -> None:
        rows = state.pending
        if not rows:
            return
        state.pending = []
        try:
            columns, dtypes, data = columnar(rows, self.time_columns)
        except Exception:  # rows that are not flat mappings: never let a callback of the loop die
            self._encode_failed(state, len(rows))
            return
        self._send_batch(state, columns, dtypes, data, len(rows))

    def _send_batch(
        self, state: _Topic, columns: list[str], dtypes: list[str], data: list[Any], n: int
    ) -> None:
        try:
            payload = self._encode(
                batch_payload(
                    columns,
                    dtypes,
                    data,
                    n,
                    src=self.src,
                    seq=state.seq,
                    row0=state.rows,
                    sent_ns=time.time_ns(),
                )
            )
        except CodecError:
            self._encode_failed(state, n)
            return
        stats = self.stats
        if self._send(state.frame, payload):
            stats.batches += 1
            stats.rows += n
        else:
            stats.dropped_batches += 1
            stats.dropped_rows += n
        state.seq += 1
        state.rows += n
        self._marks[state.name] = (state.seq - 1, state.rows)

    def _encode_failed(self, state: _Topic, n: int) -> None:
        self.stats.encode_errors += 1
        log.error("pubsub: cannot encode a batch of %d rows on %r; dropped", n, state.name, exc_info=True)

    def _send(self, topic: bytes, payload: bytes) -> bool:
        if self._closed:
            return False
        try:
            self._sock.send_multipart((topic, payload), zmq.NOBLOCK, copy=len(payload) < 65536)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            log.warning("pubsub: send failed: %s", exc)
            return False
        self.stats.bytes += len(payload)
        return True

    def _heartbeat(self, due: float) -> None:
        self._hb_handle = None
        if self._closed or self._loop is None or self.heartbeat_s is None:
            return
        self.flush()
        marks, self._marks = self._marks, {}
        payload = self._encode(
            heartbeat_payload(
                src=self.src,
                seq=self._hb_seq,
                sent_ns=time.time_ns(),
                interval_ms=round(self.heartbeat_s * 1000),
                topics=marks,
            )
        )
        if self._send(HEARTBEAT_TOPIC_BYTES, payload):
            self.stats.heartbeats += 1
        self._hb_seq += 1
        loop = self._loop
        following = due + self.heartbeat_s
        now = loop.time()
        if following <= now:  # the loop was stalled: skip missed beats rather than bursting
            following = now + self.heartbeat_s
        self._hb_handle = loop.call_at(following, self._heartbeat, following)
