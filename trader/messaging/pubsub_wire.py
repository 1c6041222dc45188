"""Pub/sub wire format, pure: rows/frames -> columnar payloads, and received bytes -> parsed messages.

No sockets and no event loop here; :mod:`~trader.messaging.pubsub_publisher` and
:mod:`~trader.messaging.pubsub_subscriber` are thin shells around these functions and those of
:mod:`~trader.messaging.pubsub_receive` (DataFrames, coalescing, sequence accounting). The byte-level
contract is in docs/wire.md ("Pub/sub").

A message is two ZeroMQ frames: ``[topic (UTF-8), payload (msgpack map)]``. Payload kinds:

* ``"batch"``: ticks of one topic, columnar. Each column is either a raw little-endian buffer
  (``"f8"`` float64, ``"i8"`` int64, ``"time"`` int64 ns since the Unix epoch, UTC) or a msgpack
  array of values (``"any"``). The publisher builds it from dict rows without pandas.
* ``"event"``: one msgpack value (order/fill/position events), codec extensions allowed.
* ``"hb"``: a heartbeat on the reserved topic :data:`HEARTBEAT_TOPIC`.

Every batch/event carries the publisher instance id ``src`` and a per ``(src, topic)`` sequence
number ``seq`` starting at 0; batches also carry ``row0``, the number of rows sent on the topic
before this batch, so gaps are counted both in messages and in rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import struct
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd

from trader.messaging.codec import CodecError, decode, encode

log = logging.getLogger("trader.messaging.pubsub")

VERSION: Final = 1
HEARTBEAT_TOPIC: Final = "\x00hb"
"""Reserved topic of heartbeats; every topic starting with NUL is reserved for control messages."""
HEARTBEAT_TOPIC_BYTES: Final = HEARTBEAT_TOPIC.encode()
RESERVED_PREFIX: Final = "\x00"
KIND_BATCH: Final = "batch"
KIND_EVENT: Final = "event"
KIND_HEARTBEAT: Final = "hb"
F8: Final = "f8"
I8: Final = "i8"
TIME: Final = "time"
ANY: Final = "any"
RAW_DTYPES: Final = {F8: np.dtype("<f8"), I8: np.dtype("<i8"), TIME: np.dtype("<i8")}
DTYPES: Final = frozenset((F8, I8, TIME, ANY))
NAT_NS: Final = -(2**63)
"""int64 minimum: NaT in a ``"time"`` column (what numpy and pandas use)."""

_BIG_ENDIAN: Final = sys.byteorder == "big"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE: Final = dt.datetime(1970, 1, 1)
_US: Final = dt.timedelta(microseconds=1)
_TS_VALUE: Final = attrgetter("value")
_PACK_F8: Final = struct.Struct("<d").pack
_PACK_I8: Final = struct.Struct("<q").pack
_NAN: Final = math.nan


class PayloadError(ValueError):
    """A received message does not follow the pub/sub wire format (the message says why)."""


# --------------------------------------------------------------------------- encoding (publisher)


def _swapped(values: array[Any]) -> bytes:  # pragma: no cover - the wire is little-endian
    values.byteswap()
    return values.tobytes()


_le: Final[Callable[[array[Any]], bytes]] = _swapped if _BIG_ENDIAN else array.tobytes


def _one_ns(value: Any) -> int:
    """One datetime-like value as int ns since the epoch (naive values are taken as UTC)."""
    if value is None or value is pd.NaT:
        return NAT_NS
    if isinstance(value, pd.Timestamp):
        return int(value.value)
    if isinstance(value, dt.datetime):
        return (value - (_EPOCH if value.tzinfo is not None else _EPOCH_NAIVE)) // _US * 1000
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"not a time: {type(value).__name__}")


def time_column_ns(values: Sequence[Any], first: Any) -> bytes | None:
    """A time column as little-endian int64 ns, or None when a value is not datetime-like.

    The conversion is chosen once per column from ``first`` (the first non-None value): int ns,
    pandas Timestamps, aware or naive datetimes (naive taken as UTC), numpy datetime64. A column
    that mixes kinds or holds None/NaT falls back to a per-value conversion (NaT -> int64 min).
    """
    try:
        if isinstance(first, int) and not isinstance(first, bool):
            return _le(array("q", values))
        if isinstance(first, pd.Timestamp):
            return _le(array("q", map(_TS_VALUE, values)))
        if isinstance(first, dt.datetime):
            base = _EPOCH if first.tzinfo is not None else _EPOCH_NAIVE
            return _le(array("q", [(v - base) // _US * 1000 for v in values]))
        if isinstance(first, np.datetime64):
            return np.asarray(values, dtype="datetime64[ns]").astype("<i8").tobytes()
    except (TypeError, AttributeError, ValueError, OverflowError):
        pass
    try:
        return _le(array("q", [_one_ns(v) for v in values]))
    except (TypeError, ValueError, OverflowError):
        return None


_TIME_TYPES: Final = (dt.datetime, np.datetime64)
_BOOL_TYPES: Final = (bool, np.bool_)
_INT_TYPES: Final = (int, np.integer)
_NUMBER_TYPES: Final = (float, int, np.floating, np.integer)
_KIND_OF_TYPE: Final[dict[type, str]] = {
    float: F8,
    int: I8,
    str: ANY,
    bool: ANY,
    dt.datetime: TIME,
    pd.Timestamp: TIME,
    type(None): ANY,
}


def _kind_of(value: Any) -> str:
    """``F8``, ``I8``, ``TIME`` or ``ANY`` for one value: by exact type first, then isinstance."""
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, _TIME_TYPES):
        return TIME
    if isinstance(value, _BOOL_TYPES):
        return ANY
    if isinstance(value, _INT_TYPES):
        return I8
    if isinstance(value, _NUMBER_TYPES):
        return F8
    return ANY


def _one_value(name: str, value: Any, time_columns: frozenset[str]) -> tuple[str, bytes] | None:
    kind = type(value)
    try:
        if kind is float and name not in time_columns:
            return F8, _PACK_F8(value)
        if kind is int:
            return (TIME if name in time_columns else I8), _PACK_I8(value)
        if kind is dt.datetime:
            base = _EPOCH if value.tzinfo is not None else _EPOCH_NAIVE
            return TIME, _PACK_I8((value - base) // _US * 1000)
    except struct.error:  # an int beyond int64
        pass
    return None


def encode_column(
    name: str, values: Sequence[Any], time_columns: frozenset[str]
) -> tuple[str, bytes | list[Any]]:
    """(dtype code, wire data) of one column; the type is decided from its first non-None value.

    float -> ``"f8"`` (ints mixed in become floats; None becomes NaN), int -> ``"i8"`` (a float or
    None in the column makes it ``"f8"``), datetime-like or a name in ``time_columns`` -> ``"time"``;
    anything else (str, bool, Decimal, mixed) -> ``"any"``, the values as they are.
    """
    first = values[0]
    if len(values) == 1:  # the latency path (a row per batch): struct, no array
        kind_of_one = _one_value(name, first, time_columns)
        if kind_of_one is not None:
            return kind_of_one
    elif first is None:
        first = next((v for v in values if v is not None), None)
    kind = TIME if name in time_columns else _kind_of(first)
    if kind == F8:
        try:
            return F8, _le(array("d", values))
        except TypeError:
            pass
    elif kind == I8:
        try:
            return I8, _le(array("q", values))
        except TypeError:
            kind = F8  # a float (or None) in an int column: float64 like pandas
            try:
                return F8, _le(array("d", values))
            except TypeError:
                pass
        except OverflowError:
            return ANY, list(values)
    elif kind == TIME:
        ns = time_column_ns(values, first)
        if ns is not None:
            return TIME, ns
        return ANY, list(values)
    if kind == F8:
        try:
            return F8, _le(array("d", [_NAN if v is None else v for v in values]))
        except (TypeError, ValueError):
            pass
    return ANY, list(values)


def columnar(
    rows: Sequence[Mapping[str, Any]], time_columns: frozenset[str] = frozenset()
) -> tuple[list[str], list[str], list[bytes | list[Any]]]:
    """Rows (flat dicts) to ``(columns, dtypes, data)``; no pandas involved.

    The columns are the keys of the first row in order. Rows with other keys are allowed: the
    columns are then the union in first-seen order and a missing value is None.
    """
    names = list(rows[0])
    transposed: list[Sequence[Any]] = []
    if len(rows) == 1:
        transposed = [(value,) for value in rows[0].values()]
        uniform = True
    else:
        # Same length as the first row and every key of the first row present: the same key set.
        uniform = len(set(map(len, rows))) == 1
    if uniform and names and not transposed:
        try:
            if len(names) == 1:
                transposed = [list(map(itemgetter(names[0]), rows))]
            else:
                transposed = list(zip(*map(itemgetter(*names), rows), strict=False))
        except KeyError:
            uniform = False
    if not uniform:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        names = list(seen)
        transposed = [[row.get(key) for row in rows] for key in names]
    if not all(type(name) is str for name in names):
        names = [str(name) for name in names]
    dtypes: list[str] = []
    data: list[bytes | list[Any]] = []
    for name, values in zip(names, transposed, strict=True):
        code, wire = encode_column(name, values, time_columns)
        dtypes.append(code)
        data.append(wire)
    return names, dtypes, data


def frame_columnar(frame: pd.DataFrame) -> tuple[list[str], list[str], list[bytes | list[Any]]]:
    """A ready DataFrame (e.g. bars) to ``(columns, dtypes, data)``, vectorised per column.

    A default RangeIndex is dropped; any other index is sent as leading column(s), as
    ``reset_index()`` makes them. Datetime columns (naive taken as UTC, or tz-aware) become
    ``"time"``, numeric ones ``"f8"``/``"i8"`` (nullable ints with NA become float64 with NaN),
    everything else ``"any"``.
    """
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        frame = frame.reset_index()
    names: list[str] = []
    dtypes: list[str] = []
    data: list[bytes | list[Any]] = []
    for position in range(frame.shape[1]):
        series = frame.iloc[:, position]
        names.append(str(frame.columns[position]))
        dtype = series.dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
            as_ns = pd.DatetimeIndex(series).as_unit("ns")
            if as_ns.tz is not None:
                as_ns = as_ns.tz_convert("UTC").tz_localize(None)
            dtypes.append(TIME)
            data.append(as_ns.to_numpy().view("<i8").tobytes())
        elif isinstance(dtype, np.dtype) and dtype.kind == "f":
            dtypes.append(F8)
            data.append(np.ascontiguousarray(series.to_numpy(), dtype="<f8").tobytes())
        elif (
            isinstance(dtype, np.dtype)
            and dtype.kind in "iu"
            and (dtype.itemsize < 8 or dtype.kind == "i" or len(series) == 0 or int(series.max()) < 2**63)
        ):
            dtypes.append(I8)
            data.append(np.ascontiguousarray(series.to_numpy(), dtype="<i8").tobytes())
        elif isinstance(dtype, pd.Float64Dtype | pd.Float32Dtype) or (
            isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iuf" and series.hasnans
        ):
            dtypes.append(F8)
            data.append(series.to_numpy(dtype="<f8", na_value=np.nan).tobytes())
        elif isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iu":
            dtypes.append(I8)
            data.append(series.to_numpy(dtype="<i8").tobytes())
        else:
            dtypes.append(ANY)
            data.append([None if value is pd.NA else value for value in series.tolist()])
    return names, dtypes, data


def batch_payload(
    columns: list[str],
    dtypes: list[str],
    data: list[bytes | list[Any]],
    n: int,
    *,
    src: int,
    seq: int,
    row0: int,
    sent_ns: int,
) -> dict[str, Any]:
    """The msgpack map of one batch (see docs/wire.md)."""
    return {
        "v": VERSION,
        "k": KIND_BATCH,
        "src": src,
        "seq": seq,
        "row0": row0,
        "sent_ns": sent_ns,
        "n": n,
        "columns": columns,
        "dtypes": dtypes,
        "data": data,
    }


def encode_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    src: int,
    seq: int,
    row0: int,
    sent_ns: int,
    time_columns: frozenset[str] = frozenset(),
) -> bytes:
    """Rows to the payload bytes of one batch; raises CodecError for values msgpack cannot carry."""
    columns, dtypes, data = columnar(rows, time_columns)
    return encode(
        batch_payload(columns, dtypes, data, len(rows), src=src, seq=seq, row0=row0, sent_ns=sent_ns)
    )


def event_payload(body: Any, *, src: int, seq: int, sent_ns: int) -> dict[str, Any]:
    return {"v": VERSION, "k": KIND_EVENT, "src": src, "seq": seq, "sent_ns": sent_ns, "body": body}


def heartbeat_payload(
    *, src: int, seq: int, sent_ns: int, interval_ms: int, topics: Mapping[str, tuple[int, int]]
) -> dict[str, Any]:
    """``topics``: for each topic sent on since the previous heartbeat, ``(last seq, rows sent)``."""
    return {
        "v": VERSION,
        "k": KIND_HEARTBEAT,
        "src": src,
        "seq": seq,
        "sent_ns": sent_ns,
        "interval_ms": interval_ms,
        "topics": {t: list(v) for t, v in topics.items()},
    }


def check_topic(topic: str) -> bytes:
    """The topic frame; refuses empty, non-string and reserved (NUL-prefixed) topics."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if topic.startswith(RESERVED_PREFIX):
        raise ValueError(f"topics starting with NUL are reserved, got {topic!r}")
    return topic.encode()


# --------------------------------------------------------------------------- parsing (subscriber)


class Schema:
    """The validated shape of batches: column names and dtype codes (interned, cached).

    ``plan`` and ``with_topic`` are slots for the receiving side's cached frame-building plan and
    merged-topics schema.
    """

    __slots__ = ("_lengths", "columns", "dtypes", "plan", "types", "widths", "with_topic")

    def __init__(self, columns: tuple[str, ...], dtypes: tuple[str, ...]) -> None:
        self.columns = columns
        self.dtypes = dtypes
        self.widths = tuple(0 if code == ANY else 8 for code in dtypes)
        self.types: tuple[type, ...] = tuple(list if code == ANY else bytes for code in dtypes)
        self.plan: Any = None
        self.with_topic: Schema | None = None
        self._lengths: dict[int, list[int]] = {}

    def lengths(self, n: int) -> list[int]:
        """The length of each column's wire data for ``n`` rows (bytes or values; cached)."""
        lengths = self._lengths.get(n)
        if lengths is None:
            if len(self._lengths) >= 256:
                self._lengths.clear()
            lengths = self._lengths[n] = [w * n if w else n for w in self.widths]
        return lengths

    def __repr__(self) -> str:
        return f"Schema({list(zip(self.columns, self.dtypes, strict=True))})"


_SCHEMAS: dict[tuple[tuple[Any, ...], tuple[Any, ...]], Schema] = {}
_MAX_SCHEMAS: Final = 4096


def schema_for(columns: list[Any], dtypes: list[Any]) -> Schema:
    """The cached :class:`Schema` of these lists; raises :class:`PayloadError` if they are invalid."""
    key = (tuple(columns), tuple(dtypes))
    schema = _SCHEMAS.get(key)
    if schema is None:
        if len(columns) != len(dtypes):
            raise PayloadError("columns and dtypes differ in length")
        for name, code in zip(columns, dtypes, strict=True):
            if type(name) is not str:
                raise PayloadError(f"column name must be a string, got {name!r}")
            if code not in DTYPES:
                raise PayloadError(f"column {name!r}: unknown dtype {code!r}")
        if len(_SCHEMAS) >= _MAX_SCHEMAS:
            _SCHEMAS.clear()
        schema = _SCHEMAS[key] = Schema(key[0], key[1])
    return schema


class WireBatch(NamedTuple):
    topic: str
    src: int
    seq: int
    row0: int
    sent_ns: int
    n: int
    schema: Schema
    data: list[Any]  # per column: bytes (raw dtypes) or a list of n values ("any")


class WireEvent(NamedTuple):
    topic: str
    src: int
    seq: int
    sent_ns: int
    body: Any


class WireHeartbeat(NamedTuple):
    src: int
    seq: int
    sent_ns: int
    interval_ms: int
    topics: dict[str, tuple[int, int]]


WireMessage = WireBatch | WireEvent | WireHeartbeat


def _ints(*values: Any) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


_TOPICS: dict[bytes, str] = {}
_MAX_TOPICS: Final = 65536


def _topic(frame: bytes) -> str:
    """The topic frame as a str (cached; raises UnicodeDecodeError)."""
    if type(frame) is not bytes:
        return bytes(frame).decode()
    topic = _TOPICS.get(frame)
    if topic is None:
        topic = frame.decode()
        if len(_TOPICS) >= _MAX_TOPICS:
            _TOPICS.clear()
        _TOPICS[frame] = topic
    return topic


def parse_message(frames: Sequence[bytes]) -> WireMessage:
    """Validate and decode one received message; anything malformed raises :class:`PayloadError`."""
    if len(frames) != 2:
        raise PayloadError(f"expected 2 frames [topic, payload], got {len(frames)}")
    try:
        topic = _topic(frames[0])
        payload = decode(bytes(frames[1]))
        kind = payload["k"]
        src, seq, sent_ns = payload["src"], payload["seq"], payload["sent_ns"]
        if payload["v"] != VERSION:
            raise PayloadError(f"unsupported payload version {payload['v']!r}")
        if kind == KIND_BATCH:
            n, row0, data = payload["n"], payload["row0"], payload["data"]
            schema = schema_for(payload["columns"], payload["dtypes"])
    except UnicodeDecodeError as exc:
        raise PayloadError("topic is not UTF-8") from exc
    except CodecError as exc:
        raise PayloadError(str(exc)) from exc
    except (KeyError, TypeError, IndexError) as exc:  # not a map, a missing key, unhashable names
        raise PayloadError(f"payload is not a pub/sub map: {type(exc).__name__}: {exc}") from exc
    if not (type(src) is int and type(seq) is int and type(sent_ns) is int and min(src, seq, sent_ns) >= 0):
        raise PayloadError("src, seq and sent_ns must be ints >= 0")
    if kind == KIND_BATCH:
        if not (type(n) is int and n >= 1 and type(row0) is int and row0 >= 0 and type(data) is list):
            raise PayloadError("batch needs n >= 1, row0 >= 0 and a data list")
        if topic.startswith(RESERVED_PREFIX) or not topic:
            raise PayloadError(f"batch on reserved or empty topic {topic!r}")
        if (
            len(data) != len(schema.widths)
            or not all(map(isinstance, data, schema.types))
            or list(map(len, data)) != schema.lengths(n)
        ):
            raise PayloadError(f"batch data does not hold {n} rows of {schema}")
        return WireBatch(topic, src, seq, row0, sent_ns, n, schema, data)
    if kind == KIND_EVENT:
        if topic.startswith(RESERVED_PREFIX) or not topic:
            raise PayloadError(f"event on reserved or empty topic {topic!r}")
        if "body" not in payload:
            raise PayloadError("event without body")
        return WireEvent(topic, src, seq, sent_ns, payload["body"])
    if kind == KIND_HEARTBEAT:
        if topic != HEARTBEAT_TOPIC:
            raise PayloadError(f"heartbeat on topic {topic!r}")
        topics, interval_ms = payload.get("topics"), payload.get("interval_ms")
        if not isinstance(topics, dict) or not _ints(interval_ms):
            raise PayloadError("heartbeat needs a topics map and interval_ms")
        marks: dict[str, tuple[int, int]] = {}
        for name, mark in topics.items():
            if not (isinstance(name, str) and isinstance(mark, list) and len(mark) == 2 and _ints(*mark)):
                raise PayloadError(f"heartbeat topic entry {name!r}: {mark!r}")
            marks[name] = (mark[0], mark[1])
        return WireHeartbeat(src, seq, sent_ns, interval_ms, marks)
    raise PayloadError(f"unknown payload kind {kind!r}")
