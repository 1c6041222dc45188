"""Pub/sub pure parts: columnar batches, payload parsing, DataFrames, coalescing, seq accounting.

No sockets: rows go through :func:`encode_rows` to bytes and back through :func:`parse_message`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messaging.codec import encode
from trader.messaging.pubsub_receive import (
    MERGED_TOPIC,
    Event,
    SeqTracker,
    TickBatch,
    build_frame,
    build_frame_public,
    coalesce,
    materialize,
)
from trader.messaging.pubsub_wire import (
    ANY,
    F8,
    HEARTBEAT_TOPIC,
    I8,
    NAT_NS,
    TIME,
    PayloadError,
    WireBatch,
    WireEvent,
    WireHeartbeat,
    check_topic,
    columnar,
    encode_rows,
    event_payload,
    frame_columnar,
    heartbeat_payload,
    parse_message,
)

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 14, 14, 30, 0, 123456, tzinfo=UTC)
T0_NS = 1741962600123456000


def wire(
    topic: str,
    rows: Sequence[dict[str, Any]],
    *,
    seq: int = 0,
    row0: int = 0,
    src: int = 7,
    time_columns: frozenset[str] = frozenset(),
) -> WireBatch:
    payload = encode_rows(
        rows, src=src, seq=seq, row0=row0, sent_ns=time.time_ns(), time_columns=time_columns
    )
    msg = parse_message([topic.encode(), payload])
    assert isinstance(msg, WireBatch)
    return msg


def raw(data: bytes | list[Any], code: str) -> list[Any]:
    assert isinstance(data, bytes)
    values: list[Any] = np.frombuffer(data, dtype="<f8" if code == F8 else "<i8").tolist()
    return values


def tick(i: int) -> dict[str, Any]:
    return {
        "time": T0 + dt.timedelta(microseconds=i),
        "bid": 100.0 + i,
        "ask": 100.5 + i,
        "last": 100.25 + i,
        "bid_size": 100 * i,
        "ask_size": 7,
        "halted": i % 2 == 0,
        "exchange": f"X{i % 3}",
    }


def expected_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """What pandas itself makes of the rows (the subscriber must give exactly this)."""
    frame = pd.DataFrame(list(rows))
    frame.columns = pd.Index(list(frame.columns), dtype=object)
    return frame


# --------------------------------------------------------------------------- columnar encoding


def test_columnar_when_tick_rows_then_raw_numeric_and_time_columns() -> None:
    columns, dtypes, data = columnar([tick(0), tick(1)])
    assert columns == ["time", "bid", "ask", "last", "bid_size", "ask_size", "halted", "exchange"]
    assert dtypes == [TIME, F8, F8, F8, I8, I8, ANY, ANY]
    assert data[0] == np.array([T0_NS, T0_NS + 1000], dtype="<i8").tobytes()
    assert data[1] == np.array([100.0, 101.0], dtype="<f8").tobytes()
    assert data[4] == np.array([0, 100], dtype="<i8").tobytes()
    assert data[6] == [True, False]
    assert data[7] == ["X0", "X1"]


@pytest.mark.parametrize(
    ("values", "code", "decoded"),
    [
        ([1, 2.5], F8, [1.0, 2.5]),  # an int column with a float in it is float64
        ([1.5, 2], F8, [1.5, 2.0]),
        ([1.5, None], F8, [1.5, math.nan]),  # None -> NaN, like pandas
        ([None, 3], F8, [math.nan, 3.0]),
        ([np.int32(3), np.int64(4)], I8, [3, 4]),
        ([np.float32(0.5), 2.0], F8, [0.5, 2.0]),
        ([2**63, 1], ANY, [2**63, 1]),  # beyond int64: kept as values
        ([True, False], ANY, [True, False]),
        (["a", None], ANY, ["a", None]),
        ([decimal.Decimal("1.5"), None], ANY, [decimal.Decimal("1.5"), None]),
        ([None, None], ANY, [None, None]),
    ],
)
def test_column_when_mixed_values_then_type_decided_per_column(
    values: list[Any], code: str, decoded: list[Any]
) -> None:
    _, dtypes, data = columnar([{"x": v} for v in values])
    assert dtypes == [code]
    if code == ANY:
        assert data[0] == decoded
    else:
        got = raw(data[0], code)
        assert got == pytest.approx(decoded, nan_ok=True)


@pytest.mark.parametrize(
    "value",
    [
        T0,
        T0.astimezone(dt.timezone(dt.timedelta(hours=-5))),
        T0.replace(tzinfo=None),  # naive: taken as UTC
        pd.Timestamp(T0),
        pd.Timestamp(T0).tz_convert("America/New_York"),
        np.datetime64(T0.replace(tzinfo=None), "us"),
    ],
)
def test_time_column_when_datetime_like_then_utc_epoch_ns(value: Any) -> None:
    one: list[dict[str, Any]] = [{"t": value}]
    for rows in (one, one * 2):  # one-row fast path and the array path
        _, dtypes, data = columnar(rows)
        assert dtypes == [TIME]
        assert raw(data[0], I8) == [T0_NS] * len(rows)


def test_time_column_when_none_or_mixed_kinds_then_nat_and_per_value_conversion() -> None:
    rows: list[dict[str, Any]] = [{"t": T0}, {"t": None}, {"t": pd.Timestamp(T0)}, {"t": pd.NaT}]
    _, dtypes, data = columnar(rows)
    assert dtypes == [TIME]
    assert raw(data[0], I8) == [T0_NS, NAT_NS, T0_NS, NAT_NS]


def test_time_column_when_declared_int_ns_then_time_without_conversion() -> None:
    _, dtypes, data = columnar([{"t": T0_NS, "n": 5}], frozenset({"t"}))
    assert dtypes == [TIME, I8]
    assert raw(data[0], I8) == [T0_NS]


def test_time_column_when_value_is_not_a_time_then_sent_as_values() -> None:
    _, dtypes, data = columnar([{"t": T0}, {"t": "yesterday"}])
    assert dtypes == [ANY]
    assert data[0] == [T0, "yesterday"]


def test_columnar_when_rows_have_other_keys_then_union_and_none() -> None:
    columns, dtypes, data = columnar([{"a": 1.0, "b": 2}, {"a": 3.0, "c": "x"}, {"b": 4}])
    assert columns == ["a", "b", "c"]
    assert dtypes == [F8, F8, ANY]  # b has a None: float64 with NaN
    assert raw(data[1], F8) == pytest.approx([2.0, math.nan, 4.0], nan_ok=True)
    assert data[2] == [None, "x", None]


def test_columnar_when_same_length_but_other_keys_then_union() -> None:
    columns, _, data = columnar([{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert columns == ["a", "b", "c"]
    assert raw(data[0], I8) == [1, 3]


def test_check_topic_when_reserved_or_empty_then_refused() -> None:
    assert check_topic("AAPL") == b"AAPL"
    for bad in ("", "\x00mine", HEARTBEAT_TOPIC):
        with pytest.raises(ValueError, match="topic"):
            check_topic(bad)


# --------------------------------------------------------------------------- DataFrames


def test_frame_when_ticks_round_trip_then_exact_values_and_dtypes() -> None:
    rows = [tick(i) for i in range(5)]
    frame = build_frame([wire("AAPL", rows)])
    pd.testing.assert_frame_equal(frame, expected_frame(rows))
    assert [str(t) for t in frame.dtypes] == [
        "datetime64[ns, UTC]",
        "float64",
        "float64",
        "float64",
        "int64",
        "int64",
        "bool",
        "object",
    ]
    frame.loc[0, "bid"] = -1.0  # the frame owns writable memory
    frame["mid"] = (frame["bid"] + frame["ask"]) / 2


def test_frame_when_several_batches_then_columns_concatenated_in_order() -> None:
    rows = [tick(i) for i in range(7)]
    batches = [wire("AAPL", rows[:3], seq=0), wire("AAPL", rows[3:4], seq=1), wire("AAPL", rows[4:], seq=2)]
    pd.testing.assert_frame_equal(build_frame(batches), expected_frame(rows))


def test_frame_when_fast_builder_then_equal_to_public_builder() -> None:
    rows = [{**tick(i), "maybe": None if i % 2 else 1.5, "obj": [i]} for i in range(4)]
    batches = [wire("X", rows[:2]), wire("X", rows[2:], seq=1)]
    parts = [[b.data[i] for b in batches] for i in range(len(batches[0].schema.columns))]
    public = build_frame_public(batches[0].schema, parts, 4)
    pd.testing.assert_frame_equal(build_frame(batches), public)
    assert public["obj"].tolist() == [[0], [1], [2], [3]]


def test_frame_when_publish_frame_bars_then_index_becomes_column_and_dtypes_kept() -> None:
    index = pd.date_range("2025-01-02 14:30", periods=3, freq="1min", tz="America/New_York", name="date")
    bars = pd.DataFrame(
        {
            "open": [1.0, 2.0, 3.0],
            "volume": np.array([10, 20, 30], dtype="int32"),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "sym": ["A", "B", "C"],
        },
        index=index,
    )
    columns, dtypes, data = frame_columnar(bars)
    assert columns == ["date", "open", "volume", "count", "sym"]
    assert dtypes == [TIME, F8, I8, F8, ANY]
    payload = encode(
        {
            "v": 1,
            "k": "batch",
            "src": 1,
            "seq": 0,
            "row0": 0,
            "sent_ns": 1,
            "n": 3,
            "columns": columns,
            "dtypes": dtypes,
            "data": data,
        }
    )
    msg = parse_message([b"AAPL.bars", payload])
    assert isinstance(msg, WireBatch)
    frame = build_frame([msg])
    assert frame["date"].tolist() == list(index.tz_convert("UTC"))
    assert frame["volume"].dtype == np.int64
    assert frame["count"].tolist() == pytest.approx([1.0, math.nan, 3.0], nan_ok=True)


# --------------------------------------------------------------------------- coalescing


def test_coalesce_when_small_batches_of_one_topic_then_one_frame() -> None:
    rows = [tick(i) for i in range(20)]
    batches = [wire("AAPL", [row], seq=i, row0=i) for i, row in enumerate(rows)]
    out = materialize(coalesce(batches), recv_ns=5)
    assert len(out) == 1
    batch = out[0]
    assert isinstance(batch, TickBatch)
    assert (batch.topic, batch.first_seq, batch.last_seq, len(batch.sent_ns), batch.recv_ns) == (
        "AAPL",
        0,
        19,
        20,
        5,
    )
    pd.testing.assert_frame_equal(batch.frame, expected_frame(rows))


def test_coalesce_when_topics_interleave_then_one_group_per_topic_in_first_seen_order() -> None:
    a0, m0, a1, m1 = (
        wire(t, [tick(i)], seq=s)
        for i, (t, s) in enumerate([("AAPL", 0), ("MSFT", 0), ("AAPL", 1), ("MSFT", 1)])
    )
    assert coalesce([a0, m0, a1, m1]) == [[a0, a1], [m0, m1]]


def test_coalesce_when_event_or_schema_change_then_group_split_and_order_kept() -> None:
    a0, a1 = wire("AAPL", [tick(0)], seq=0), wire("AAPL", [tick(1)], seq=2)
    other = wire("AAPL", [{"bid": 1.0}], seq=3)
    event = WireEvent("AAPL", 7, 1, 1, {"fill": 1})
    assert coalesce([a0, event, a1, other]) == [[a0], event, [a1], [other]]


def test_coalesce_when_merged_topics_then_one_frame_with_topic_column() -> None:
    batches = [wire(t, [tick(i)], seq=i) for i, t in enumerate(["AAPL", "MSFT", "AAPL", "IBM"])]
    out = materialize(coalesce(batches, by_topic=False), recv_ns=1, by_topic=False)
    assert len(out) == 1 and isinstance(out[0], TickBatch)
    assert out[0].topic == MERGED_TOPIC
    assert out[0].frame["topic"].tolist() == ["AAPL", "MSFT", "AAPL", "IBM"]
    pd.testing.assert_frame_equal(
        out[0].frame.drop(columns="topic"), expected_frame([tick(i) for i in range(4)])
    )


def test_materialize_when_event_then_event_with_body() -> None:
    body = {"order_id": 7, "price": decimal.Decimal("1.25"), "at": T0}
    msg = parse_message([b"fills", encode(event_payload(body, src=1, seq=4, sent_ns=9))])
    assert isinstance(msg, WireEvent)
    assert materialize([msg], recv_ns=10) == [Event("fills", body, 4, 9, 10)]


# --------------------------------------------------------------------------- parsing


def _batch_map(**overrides: Any) -> dict[str, Any]:
    good = {
        "v": 1,
        "k": "batch",
        "src": 1,
        "seq": 0,
        "row0": 0,
        "sent_ns": 1,
        "n": 2,
        "columns": ["a", "b"],
        "dtypes": ["f8", "any"],
        "data": [np.zeros(2).tobytes(), ["x", "y"]],
    }
    return {**good, **overrides}


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        ([b"AAPL"], "2 frames"),
        ([b"AAPL", b"x", b"y"], "2 frames"),
        ([b"\xff\xfe", encode(_batch_map())], "UTF-8"),
        ([b"AAPL", b"\xc1"], "msgpack"),
        ([b"AAPL", encode([1, 2])], "pub/sub map"),
        ([b"AAPL", encode(_batch_map(v=2))], "version"),
        ([b"AAPL", encode({"v": 1, "k": "batch"})], "pub/sub map"),
        ([b"AAPL", encode(_batch_map(k="tick"))], "kind"),
        ([b"AAPL", encode(_batch_map(seq=-1))], "seq"),
        ([b"AAPL", encode(_batch_map(seq=True))], "seq"),
        ([b"AAPL", encode(_batch_map(n=0))], "n >= 1"),
        ([b"AAPL", encode(_batch_map(n=3))], "rows"),
        ([b"AAPL", encode(_batch_map(dtypes=["f8", "u2"]))], "unknown dtype"),
        ([b"AAPL", encode(_batch_map(dtypes=["f8"]))], "differ"),
        ([b"AAPL", encode(_batch_map(columns=[1, "b"]))], "string"),
        ([b"AAPL", encode(_batch_map(columns=[["a"], "b"]))], "pub/sub map"),
        ([b"AAPL", encode(_batch_map(data=[["x", "y"], np.zeros(2).tobytes()]))], "rows"),
        ([b"AAPL", encode(_batch_map(data=[np.zeros(2).tobytes()]))], "rows"),
        ([b"\x00hb", encode(_batch_map())], "reserved"),
        ([b"AAPL", encode({"v": 1, "k": "event", "src": 1, "seq": 0, "sent_ns": 1})], "body"),
        (
            [b"AAPL", encode(heartbeat_payload(src=1, seq=0, sent_ns=1, interval_ms=1, topics={}))],
            "heartbeat",
        ),
        (
            [
                b"\x00hb",
                encode(
                    {
                        "v": 1,
                        "k": "hb",
                        "src": 1,
                        "seq": 0,
                        "sent_ns": 1,
                        "interval_ms": 1,
                        "topics": {"A": [1]},
                    }
                ),
            ],
            "topic entry",
        ),
    ],
)
def test_parse_when_malformed_then_payload_error(frames: list[bytes], why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        parse_message(frames)


def test_parse_when_heartbeat_then_marks() -> None:
    payload = encode(heartbeat_payload(src=3, seq=9, sent_ns=5, interval_ms=1000, topics={"AAPL": (4, 100)}))
    assert parse_message([HEARTBEAT_TOPIC.encode(), payload]) == WireHeartbeat(
        3, 9, 5, 1000, {"AAPL": (4, 100)}
    )


def test_parse_when_batch_then_schema_shared_between_batches() -> None:
    assert wire("A", [tick(0)]).schema is wire("B", [tick(1)], seq=1).schema


def test_parse_when_fuzzed_bytes_then_only_payload_errors() -> None:
    rng = np.random.default_rng(5)
    good = encode_rows([tick(0)], src=1, seq=0, row0=0, sent_ns=1)
    for _ in range(2000):
        raw = bytearray(good)
        for pos in rng.integers(0, len(raw), size=3):
            raw[pos] = int(rng.integers(0, 256))
        try:
            msg = parse_message([b"AAPL", bytes(raw)])
        except PayloadError:
            continue
        if isinstance(msg, WireBatch):
            build_frame([msg])  # whatever parses also builds


# --------------------------------------------------------------------------- sequence accounting


def test_seq_when_first_message_then_baseline_not_drop() -> None:
    tracker = SeqTracker()
    assert tracker.on_batch(wire("AAPL", [tick(0)], seq=41, row0=900)) == (0, 0)
    assert tracker.on_batch(wire("AAPL", [tick(1)], seq=42, row0=901)) == (0, 0)
    assert tracker.dropped_messages == tracker.gaps == 0


def test_seq_when_gap_then_dropped_messages_and_exact_rows() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0), tick(1)], seq=0, row0=0))
    # seq 1 (3 rows) and 2 (4 rows) never arrived
    assert tracker.on_batch(wire("AAPL", [tick(9)], seq=3, row0=9)) == (2, 7)
    stats = tracker.topics["AAPL"]
    assert (stats.gaps, stats.dropped_messages, stats.dropped_rows, stats.batches, stats.rows) == (
        1,
        2,
        7,
        2,
        3,
    )
    assert (tracker.gaps, tracker.dropped_messages, tracker.dropped_rows) == (1, 2, 7)


def test_seq_when_event_missing_then_counted_as_message_without_rows() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0)], seq=0, row0=0))
    assert tracker.on_event(WireEvent("AAPL", 7, 2, 1, None)) == (1, 0)
    assert tracker.on_batch(wire("AAPL", [tick(1)], seq=3, row0=1)) == (0, 0)


def test_seq_when_heartbeat_reports_later_seq_then_tail_drop_counted_once() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0)], seq=0, row0=0))
    heartbeat = WireHeartbeat(7, 0, 1, 1000, {"AAPL": (2, 6), "MSFT": (9, 90)})
    assert tracker.on_heartbeat(heartbeat) == (2, 5)  # MSFT never seen: not ours to count
    assert tracker.on_heartbeat(heartbeat) == (0, 0)
    assert tracker.on_batch(wire("AAPL", [tick(1)], seq=3, row0=6)) == (0, 0)
    assert "MSFT" not in tracker.topics


def test_seq_when_new_source_then_separate_stream_and_no_drop() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0)], seq=500, row0=500, src=1))
    assert tracker.on_batch(wire("AAPL", [tick(0)], seq=0, row0=0, src=2)) == (0, 0)
    assert tracker.dropped_messages == 0 and tracker.resets == 0


def test_seq_when_seq_goes_back_then_reset_counted_not_drop() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0)], seq=5, row0=5))
    assert tracker.on_batch(wire("AAPL", [tick(0)], seq=2, row0=2)) == (0, 0)
    assert tracker.resets == 1
    assert tracker.on_batch(wire("AAPL", [tick(0)], seq=3, row0=3)) == (0, 0)


def test_seq_when_forgotten_then_resubscribe_is_not_a_gap() -> None:
    tracker = SeqTracker()
    tracker.on_batch(wire("AAPL", [tick(0)], seq=0))
    tracker.forget(lambda topic: not topic.startswith("AAPL"))
    assert tracker.on_batch(wire("AAPL", [tick(0)], seq=10, row0=10)) == (0, 0)


# --------------------------------------------------------------------------- property: round trip

_FINITE = st.floats(allow_nan=False, width=64)
_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "float": st.floats(width=64) | st.integers(-(2**53), 2**53),  # ints mixed into floats
    "int": st.integers(-(2**63), 2**63 - 1),
    "bool": st.booleans(),
    "str": st.text(max_size=8),
    "time": st.datetimes(
        min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
}


@st.composite
def _tables(draw: st.DrawFn) -> tuple[list[str], list[dict[str, Any]]]:
    kinds = draw(st.lists(st.sampled_from(sorted(_KINDS)), min_size=1, max_size=6))
    names = [f"c{i}_{kind}" for i, kind in enumerate(kinds)]
    n = draw(st.integers(1, 30))
    first_float = {name: draw(_FINITE) for name, kind in zip(names, kinds, strict=True) if kind == "float"}
    rows = []
    for i in range(n):
        row = {name: draw(_KINDS[kind]) for name, kind in zip(names, kinds, strict=True)}
        if i == 0:
            row.update(first_float)  # a float first decides float64
        rows.append(row)
    return kinds, rows


@settings(max_examples=150, deadline=None)
@given(_tables(), st.integers(1, 4))
def test_round_trip_when_random_rows_then_frame_equals_pandas_own(
    table: tuple[list[str], list[dict[str, Any]]], pieces: int
) -> None:
    kinds, rows = table
    cut = max(1, len(rows) // pieces)
    chunks = [rows[i : i + cut] for i in range(0, len(rows), cut)]
    batches = [wire("SYM", chunk, seq=i) for i, chunk in enumerate(chunks)]
    # Types are decided per batch: a chunk whose float column holds only ints is an int64 frame.
    frames = materialize(coalesce(batches), recv_ns=0)
    assert 1 <= len(frames) <= len(batches)
    frame = pd.concat([f.frame for f in frames if isinstance(f, TickBatch)], ignore_index=True)
    want = expected_frame(rows)
    for name, kind in zip(want.columns, kinds, strict=True):
        if kind == "float":
            want[name] = want[name].astype("float64")
        if kind == "time":
            assert str(frame[name].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_frame_equal(frame, want)


def test_payload_when_encoded_then_plain_msgpack_a_foreign_client_reads() -> None:
    payload = encode_rows([tick(0)], src=3, seq=4, row0=5, sent_ns=6)
    raw = msgpack.unpackb(payload, raw=False)
    assert {k: raw[k] for k in ("v", "k", "src", "seq", "row0", "sent_ns", "n")} == {
        "v": 1,
        "k": "batch",
        "src": 3,
        "seq": 4,
        "row0": 5,
        "sent_ns": 6,
        "n": 1,
    }
    assert raw["columns"][:2] == ["time", "bid"] and raw["dtypes"][:2] == ["time", "f8"]
    assert int.from_bytes(raw["data"][0], "little", signed=True) == T0_NS
