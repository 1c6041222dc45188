"""Pub/sub receiving side, pure: wire batches -> DataFrames, coalescing, sequence accounting.

No sockets here (see :mod:`~trader.messaging.pubsub_subscriber`). Frame building makes the pandas
blocks directly when this pandas version allows it (checked once against the public-API builder,
which is used otherwise).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd

from trader.messaging.pubsub_wire import (
    ANY,
    F8,
    I8,
    NAT_NS,
    RAW_DTYPES,
    TIME,
    Schema,
    WireBatch,
    WireEvent,
    WireHeartbeat,
)

log = logging.getLogger("trader.messaging.pubsub")

_BIG_ENDIAN: Final = sys.byteorder == "big"
_UTC_NS: Final = pd.DatetimeTZDtype("ns", "UTC")
MERGED_TOPIC: Final = "*"
"""The topic of batches delivered with ``merge_topics=True`` (rows carry their topic in a column)."""
TOPIC_COLUMN: Final = "topic"


# --------------------------------------------------------------------------- frames


class TickBatch(NamedTuple):
    """Ticks of one topic as a DataFrame: one or more wire batches received in one drain.

    ``sent_ns`` has the publisher's ``time.time_ns()`` of each coalesced wire batch (oldest
    first); ``recv_ns`` is the subscriber's ``time.time_ns()`` when it read them.
    """

    topic: str
    frame: pd.DataFrame
    first_seq: int
    last_seq: int
    sent_ns: tuple[int, ...]
    recv_ns: int


class Event(NamedTuple):
    """One event (a msgpack value) published with ``publish_event``."""

    topic: str
    body: Any
    seq: int
    sent_ns: int
    recv_ns: int


Message = TickBatch | Event


def _raw(buffer: bytearray, code: str) -> np.ndarray[Any, Any]:
    arr: np.ndarray[Any, Any] = np.frombuffer(buffer, dtype=RAW_DTYPES[code])
    return arr.astype(arr.dtype.newbyteorder("=")) if _BIG_ENDIAN else arr


def any_column(values: list[Any]) -> np.ndarray[Any, Any]:
    """An ``"any"`` column: bool when every value is a bool, else object (str, Decimal, None...)."""
    if values and all(type(v) is bool for v in values):
        return np.array(values, dtype=bool)
    out = np.empty(len(values), dtype=object)
    try:
        out[:] = values
    except ValueError:  # values that are themselves sequences
        for i, value in enumerate(values):
            out[i] = value
    return out


def _time(ints: np.ndarray[Any, Any]) -> pd.api.extensions.ExtensionArray:
    return pd.DatetimeIndex(ints.view("datetime64[ns]")).tz_localize("UTC").array


def build_frame_public(schema: Schema, parts: Sequence[Sequence[Any]], n: int) -> pd.DataFrame:
    """The reference builder (public pandas API only); ``parts[i]`` are column i's wire pieces."""
    arrays: dict[int, Any] = {}
    for i, code in enumerate(schema.dtypes):
        if code == ANY:
            arrays[i] = any_column([v for piece in parts[i] for v in piece])
        else:
            raw = _raw(bytearray().join(parts[i]), code)
            arrays[i] = _time(raw) if code == TIME else raw
    frame = pd.DataFrame(arrays, index=pd.RangeIndex(n))
    frame.columns = pd.Index(list(schema.columns), dtype=object)
    return frame


class _Plan:
    """How to build a schema's blocks: float64 and int64 columns each stacked in one 2-D block,
    one block per time and per "any" column; placements and the column Index made once."""

    __slots__ = ("blklocs", "blknos", "columns", "single", "stacked")

    def __init__(self, schema: Schema, placement: Any) -> None:
        self.columns = pd.Index(list(schema.columns), dtype=object)
        self.stacked: list[tuple[str, list[int], Any]] = []
        # Each column's block number and position in it, as BlockManager computes them lazily on
        # the first column access (about 5 us per frame); set on every frame (a copy: pandas
        # updates them in place when columns are set).
        width = len(schema.columns)
        self.blknos = np.empty(width, dtype=np.intp)
        self.blklocs = np.empty(width, dtype=np.intp)
        for code in (F8, I8):
            positions = [i for i, c in enumerate(schema.dtypes) if c == code]
            if positions:
                self.blknos[positions] = len(self.stacked)
                self.blklocs[positions] = np.arange(len(positions))
                self.stacked.append((code, positions, placement(np.array(positions, dtype=np.intp))))
        self.single: list[tuple[int, str, Any]] = [
            (i, c, placement(slice(i, i + 1))) for i, c in enumerate(schema.dtypes) if c in (TIME, ANY)
        ]
        for blkno, (i, _, _) in enumerate(self.single, start=len(self.stacked)):
            self.blknos[i] = blkno
            self.blklocs[i] = 0


def _fast_builder() -> Callable[[Schema, Sequence[Sequence[Any]], int], pd.DataFrame] | None:
    """A builder that makes the pandas blocks directly (2-3x faster), if this pandas allows it."""
    try:
        blocks_mod: Any = importlib.import_module("pandas.core.internals.blocks")
        manager: Any = importlib.import_module("pandas.core.internals").BlockManager
        placement: Any = importlib.import_module("pandas._libs.internals").BlockPlacement
        simple_new: Any = importlib.import_module("pandas.core.arrays").DatetimeArray._simple_new
        range_index: Any = importlib.import_module("pandas.core.indexes.range").RangeIndex._simple_new
        from_mgr: Any = pd.DataFrame._from_mgr  # type: ignore[attr-defined]
        float_block = blocks_mod.get_block_type(np.dtype("float64"))
        int_block = blocks_mod.get_block_type(np.dtype("int64"))
        time_block = blocks_mod.get_block_type(_UTC_NS)
        object_block = blocks_mod.get_block_type(np.dtype(object))
        bool_block = blocks_mod.get_block_type(np.dtype(bool))
    except (ImportError, AttributeError):  # pragma: no cover - other pandas versions
        return None
    stacked_block = {F8: float_block, I8: int_block}

    def build(schema: Schema, parts: Sequence[Sequence[Any]], n: int) -> pd.DataFrame:
        plan = schema.plan
        if plan is None:
            plan = schema.plan = _Plan(schema, placement)
        blocks = []
        for code, positions, place in plan.stacked:
            buf = bytearray().join([piece for i in positions for piece in parts[i]])
            values = _raw(buf, code).reshape(len(positions), n)
            blocks.append(stacked_block[code](values, ndim=2, placement=place))
        for i, code, place in plan.single:
            if code == TIME:
                ints = _raw(bytearray().join(parts[i]), code).view("datetime64[ns]").reshape(1, n)
                blocks.append(time_block(simple_new(ints, dtype=_UTC_NS), ndim=2, placement=place))
            else:
                values = any_column([v for piece in parts[i] for v in piece])
                klass = bool_block if values.dtype == bool else object_block
                blocks.append(klass(values.reshape(1, n), ndim=2, placement=place))
        mgr = manager(blocks, [plan.columns, range_index(range(n))], verify_integrity=False)
        mgr._blknos = plan.blknos.copy()
        mgr._blklocs = plan.blklocs.copy()
        return from_mgr(mgr, axes=mgr.axes)  # type: ignore[no-any-return]

    sample = Schema(("time", "bid", "size", "x", "ask", "flag"), (TIME, F8, I8, ANY, F8, ANY))
    parts: list[list[Any]] = [
        [np.array([1, NAT_NS], dtype="<i8").tobytes()],
        [np.array([1.5, np.nan]).tobytes()],
        [np.array([3, -4], dtype="<i8").tobytes()],
        [["a", None]],
        [np.array([2.0, 3.0]).tobytes()],
        [[True, False]],
    ]
    try:
        got = build(sample, parts, 2)
        check = manager(list(got._mgr.blocks), got._mgr.axes, verify_integrity=False)
        if not (
            np.array_equal(check.blknos, got._mgr._blknos)
            and np.array_equal(check.blklocs, got._mgr._blklocs)
        ):
            raise AssertionError("block numbers/locations differ from pandas' own")
        pd.testing.assert_frame_equal(got, build_frame_public(sample, parts, 2))
        got.iloc[0, 1] = 0.0  # writable
        got["new"] = 1.0  # and extensible
    except Exception:  # pragma: no cover - a pandas whose internals changed
        log.warning("pubsub: fast DataFrame builder disabled (pandas internals differ)", exc_info=True)
        return None
    return build


_BUILDER: list[Callable[[Schema, Sequence[Sequence[Any]], int], pd.DataFrame]] = []


def build_frame(batches: Sequence[WireBatch], topic_column: bool = False) -> pd.DataFrame:
    """One DataFrame from same-schema wire batches (columns concatenated before building).

    Columns: ``"time"`` -> datetime64[ns, UTC], ``"f8"`` -> float64, ``"i8"`` -> int64, ``"any"`` ->
    bool if all values are bools, else object. Index: RangeIndex(n). The frame owns its memory.
    With ``topic_column``, a first column :data:`TOPIC_COLUMN` holds each row's topic (object).
    """
    if not _BUILDER:
        _BUILDER.append(_fast_builder() or build_frame_public)
    schema = batches[0].schema
    if len(batches) == 1:
        first = batches[0]
        n, parts = first.n, [[piece] for piece in first.data]
    else:
        if any(b.schema is not schema for b in batches):
            raise ValueError("build_frame needs batches of one schema (see coalesce)")
        n = sum(b.n for b in batches)
        parts = [list(column) for column in zip(*(b.data for b in batches), strict=True)]
    if topic_column:
        if schema.with_topic is None:
            name = TOPIC_COLUMN if TOPIC_COLUMN not in schema.columns else "_" + TOPIC_COLUMN
            schema.with_topic = Schema((name, *schema.columns), (ANY, *schema.dtypes))
        schema = schema.with_topic
        parts.insert(0, [[b.topic] * b.n for b in batches])
    if not schema.columns:
        return pd.DataFrame(index=pd.RangeIndex(n))
    return _BUILDER[0](schema, parts, n)


def coalesce(
    messages: Iterable[WireBatch | WireEvent], by_topic: bool = True
) -> list[list[WireBatch] | WireEvent]:
    """Group one drain's messages: consecutive same-schema batches of a topic become one group.

    Order is kept per topic (an event between two batches of its topic splits the group); groups
    of different topics come in the order their first message arrived. With ``by_topic=False``
    consecutive same-schema batches of any topics form one group (events split groups).
    """
    out: list[list[WireBatch] | WireEvent] = []
    open_groups: dict[str, list[WireBatch]] = {}
    current: list[WireBatch] | None = None
    for msg in messages:
        if isinstance(msg, WireEvent):
            open_groups.pop(msg.topic, None)
            current = None
            out.append(msg)
        elif not by_topic:
            if current is not None and current[-1].schema is msg.schema:
                current.append(msg)
            else:
                current = [msg]
                out.append(current)
        else:
            group = open_groups.get(msg.topic)
            if group is not None and group[-1].schema is msg.schema:
                group.append(msg)
            else:
                group = open_groups[msg.topic] = [msg]
                out.append(group)
    return out


def materialize(
    groups: Iterable[list[WireBatch] | WireEvent], recv_ns: int, by_topic: bool = True
) -> list[Message]:
    """Groups from :func:`coalesce` as user messages (DataFrames built here).

    With ``by_topic=False`` every batch has topic :data:`MERGED_TOPIC` and a topic column.
    """
    out: list[Message] = []
    for group in groups:
        if isinstance(group, WireEvent):
            out.append(Event(group.topic, group.body, group.seq, group.sent_ns, recv_ns))
        else:
            first = group[0]
            sent = (first.sent_ns,) if len(group) == 1 else tuple(b.sent_ns for b in group)
            frame = build_frame(group, topic_column=not by_topic)
            topic = first.topic if by_topic else MERGED_TOPIC
            out.append(TickBatch(topic, frame, first.seq, group[-1].seq, sent, recv_ns))
    return out


# --------------------------------------------------------------------------- sequence accounting


@dataclass(slots=True)
class TopicStats:
    """Per-topic receive counters; ``dropped_*`` are what seq/row gaps say never arrived."""

    rows: int = 0
    batches: int = 0
    events: int = 0
    gaps: int = 0
    dropped_messages: int = 0
    dropped_rows: int = 0


@dataclass(slots=True)
class _Stream:
    next_seq: int
    next_row: int


_NONE_MISSED: Final = (0, 0)


@dataclass(slots=True)
class SeqTracker:
    """Per ``(src, topic)`` sequence accounting; pure, fed in receive order.

    The first message of a stream sets the baseline (joining late is not a drop). After that a
    jump of ``seq`` by k > 1 is one gap of k-1 messages, and ``row0`` says how many rows those
    were. Heartbeats list each topic's last seq and total rows, so drops at the end of a burst
    are counted too. A lower seq than expected (a publisher restart keeps its ``src`` only if
    it is the same process) resets the baseline and counts as ``resets``.
    """

    topics: dict[str, TopicStats] = field(default_factory=dict)
    gaps: int = 0
    dropped_messages: int = 0
    dropped_rows: int = 0
    resets: int = 0
    _streams: dict[tuple[int, str], _Stream] = field(default_factory=dict)

    def stats(self, topic: str) -> TopicStats:
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.topics[topic] = TopicStats()
        return stats

    def _gap(self, topic: str, missed_msgs: int, missed_rows: int) -> None:
        stats = self.stats(topic)
        stats.gaps += 1
        stats.dropped_messages += missed_msgs
        stats.dropped_rows += missed_rows
        self.gaps += 1
        self.dropped_messages += missed_msgs
        self.dropped_rows += missed_rows

    def _advance(self, topic: str, stream: _Stream, seq: int, row0: int | None) -> tuple[int, int]:
        missed_msgs = seq - stream.next_seq
        missed_rows = 0 if row0 is None else max(row0 - stream.next_row, 0)
        if missed_msgs > 0:
            self._gap(topic, missed_msgs, missed_rows)
        elif missed_msgs < 0:
            self.resets += 1
            missed_msgs = missed_rows = 0
        return missed_msgs, missed_rows

    def on_batch(self, batch: WireBatch) -> tuple[int, int]:
        """Account one batch; returns (messages, rows) found missing before it."""
        topic, src, seq, row0, _, n = batch[:6]
        stream = self._streams.get((src, topic))
        missed = _NONE_MISSED
        if stream is None:
            stream = self._streams[(src, topic)] = _Stream(seq, row0)
        elif seq != stream.next_seq or row0 != stream.next_row:
            missed = self._advance(topic, stream, seq, row0)
        stream.next_seq = seq + 1
        stream.next_row = row0 + n
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.stats(topic)
        stats.batches += 1
        stats.rows += n
        return missed

    def on_event(self, event: WireEvent) -> tuple[int, int]:
        key = (event.src, event.topic)
        stream = self._streams.get(key)
        missed = (0, 0)
        if stream is None:
            stream = self._streams[key] = _Stream(event.seq, 0)
        else:
            missed = self._advance(event.topic, stream, event.seq, None)
        stream.next_seq = event.seq + 1
        self.stats(event.topic).events += 1
        return missed

    def on_heartbeat(self, heartbeat: WireHeartbeat) -> tuple[int, int]:
        """Tail drops from a heartbeat's marks, for streams this tracker follows."""
        total_msgs = total_rows = 0
        for topic, (last_seq, rows) in heartbeat.topics.items():
            stream = self._streams.get((heartbeat.src, topic))
            if stream is None or last_seq < stream.next_seq:
                continue
            missed_msgs = last_seq + 1 - stream.next_seq
            missed_rows = max(rows - stream.next_row, 0)
            self._gap(topic, missed_msgs, missed_rows)
            stream.next_seq, stream.next_row = last_seq + 1, max(rows, stream.next_row)
            total_msgs += missed_msgs
            total_rows += missed_rows
        return total_msgs, total_rows

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the streams of topics no longer subscribed (a later resubscribe is not a gap)."""
        for key in [k for k in self._streams if not keep(k[1])]:
            del self._streams[key]
