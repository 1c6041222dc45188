"""The msgpack codec: exact round trips of tick/bar frames and values; garbage never escapes as
anything but CodecError."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal

from trader.messaging.codec import CodecError, decode, encode

TIME_ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney"]
DTYPES = [
    "float64",
    "float32",
    "int64",
    "int32",
    "uint8",
    "bool",
    "datetime64[ns]",
    "datetime64[ns, tz]",
    "timedelta64[ns]",
    "category",
    "object_str",
    "string",
    "Int64",
    "boolean",
    "Float64",
]


def make_column(kind: str, n: int, rng: np.random.Generator, tz: str) -> Any:
    if kind in ("float64", "float32"):
        values = rng.normal(100, 50, n).astype(kind)
        if n:
            values[rng.integers(0, n, max(1, n // 10))] = np.nan
            values[0] = np.inf if n > 1 else values[0]
        return values
    if kind in ("int64", "int32"):
        info = np.iinfo(kind)
        return rng.integers(info.min, info.max, n, dtype=kind, endpoint=True)
    if kind == "uint8":
        return rng.integers(0, 255, n, dtype="uint8", endpoint=True)
    if kind == "bool":
        return rng.random(n) < 0.5
    if kind == "datetime64[ns]":
        return pd.to_datetime(rng.integers(0, 2**62, n), unit="ns")
    if kind == "datetime64[ns, tz]":
        stamps = pd.to_datetime(rng.integers(0, 2**62, n), unit="ns", utc=True).tz_convert(tz)
        return stamps.where(rng.random(n) < 0.9) if n else stamps
    if kind == "timedelta64[ns]":
        return pd.to_timedelta(rng.integers(-(2**40), 2**40, n), unit="ns")
    symbols = np.array(["AAPL", "MSFT", "ESZ6", "EUR.USD", "", "日本"], dtype=object)
    picks = symbols[rng.integers(0, len(symbols), n)] if n else np.array([], dtype=object)
    if kind == "category":
        return pd.Categorical(picks, categories=list(dict.fromkeys(symbols)))
    if kind == "object_str":
        picks = picks.copy()
        if n:
            picks[rng.random(n) < 0.1] = None
        return picks
    if kind == "string":
        return pd.array([None if rng.random() < 0.1 else s for s in picks], dtype="string")
    if kind == "Int64":
        return pd.array(
            [None if rng.random() < 0.1 else int(v) for v in rng.integers(-9, 9, n)], dtype="Int64"
        )
    if kind == "boolean":
        return pd.array(
            [None if rng.random() < 0.1 else bool(v) for v in rng.random(n) < 0.5], dtype="boolean"
        )
    if kind == "Float64":
        return pd.array([None if rng.random() < 0.1 else float(v) for v in rng.random(n)], dtype="Float64")
    raise AssertionError(kind)


def make_index(kind: str, n: int, rng: np.random.Generator, tz: str) -> pd.Index:
    if kind == "range":
        return pd.RangeIndex(n)
    if kind == "datetime_tz":
        return pd.date_range("2024-03-08 09:30", periods=n, freq="s", tz=tz, name="time")
    if kind == "datetime_irregular":
        return pd.DatetimeIndex(np.sort(rng.integers(0, 2**60, n)).astype("datetime64[ns]"), name="t")
    if kind == "str":
        return pd.Index([f"row{i}" for i in range(n)], dtype=object)
    raise AssertionError(kind)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.one_of(st.sampled_from([0, 1, 2, 100_000]), st.integers(0, 5_000)))
    kinds = draw(st.lists(st.sampled_from(DTYPES), min_size=0, max_size=8))
    tz = draw(st.sampled_from(TIME_ZONES))
    index_kind = draw(st.sampled_from(["range", "datetime_tz", "datetime_irregular", "str"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    columns = {f"{kind}_{i}": make_column(kind, n, rng, tz) for i, kind in enumerate(kinds)}
    return pd.DataFrame(columns, index=make_index(index_kind, n, rng, tz))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_codec_when_dataframe_of_mixed_dtypes_then_round_trip_is_exact(frame: pd.DataFrame) -> None:
    decoded = decode(encode(frame))
    assert_frame_equal(decoded, frame, check_exact=True, check_freq=True, check_column_type=True)


@settings(max_examples=30, deadline=None)
@given(frames())
def test_codec_when_series_then_round_trip_is_exact(frame: pd.DataFrame) -> None:
    for name in frame.columns:
        series = frame[name]
        assert_series_equal(decode(encode(series)), series, check_exact=True)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_like)
def test_codec_when_plain_values_then_round_trip_is_exact(value: Any) -> None:
    assert decode(encode(value)) == value


@given(st.binary(max_size=300))
def test_codec_when_random_bytes_then_value_or_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 3, 10, 6, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 10, 1, 30),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
        pd.Timestamp("2024-03-10 01:59:59.123456789", tz="America/New_York"),
        pd.Timestamp("1677-09-22 00:12:43.145224193"),
        pd.Timestamp("2262-04-11 23:47:16.854775807", tz="UTC"),
        dt.date(2024, 2, 29),
        dt.timedelta(days=-1, microseconds=3),
        pd.Timedelta(123_456_789),
        decimal.Decimal("-0.000000001"),
        decimal.Decimal("1234567890.123456789012345"),
        np.int64(-(2**63)),
        np.uint64(2**64 - 1),
        np.float32(1.5),
        np.datetime64("2024-01-01T00:00:00.000000001"),
    ],
)
def test_codec_when_scalar_then_type_and_value_survive(value: Any) -> None:
    decoded = decode(encode(value))
    assert type(decoded) is type(value)
    assert decoded == value
    if isinstance(value, dt.datetime):
        assert decoded.utcoffset() == value.utcoffset()


def test_codec_when_nat_then_nat() -> None:
    assert decode(encode(pd.NaT)) is pd.NaT


def test_codec_when_ndarray_2d_then_shape_and_dtype_survive() -> None:
    arr = np.arange(24, dtype="<i2").reshape(2, 3, 4)
    out = decode(encode(arr))
    assert out.dtype == arr.dtype and out.shape == arr.shape and (out == arr).all()


def test_codec_when_big_endian_array_then_values_survive() -> None:
    arr = np.arange(5, dtype=">f8")
    assert (decode(encode(arr)) == arr).all()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (object(), "cannot encode object of type builtins.object"),
        (pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([("a", "b")])), "MultiIndex columns"),
        (pd.Series([pd.Period("2024-01", "M")]), "cannot encode"),
    ],
)
def test_codec_when_unsupported_object_then_codec_error_names_it(obj: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode(obj)


def _ext(code: int, payload: Any) -> bytes:
    inner: bytes = msgpack.packb(payload, use_bin_type=True)
    outer: bytes = msgpack.packb(msgpack.ExtType(code, inner), use_bin_type=True)
    return outer


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_ext(6, {"kind": "raw", "dtype": "|O", "shape": [1], "buf": b"\0" * 8}), "not allowed on the wire"),
        (_ext(6, {"kind": "raw", "dtype": "<f8", "shape": [3], "buf": b"\0" * 8}), "do not hold shape"),
        (_ext(6, {"kind": "raw", "dtype": "<f8", "shape": [-1], "buf": b""}), "bad shape"),
        (_ext(6, {"kind": "evil"}), "unknown column kind"),
        (_ext(2, [0, "Mars/Olympus"]), "unknown time zone"),
        (_ext(5, "not a number"), "not a decimal"),
        (_ext(99, 1), "unknown msgpack extension type 99"),
        (
            _ext(
                8,
                {"columns": ["a"], "data": [], "index": {"kind": "range", "start": 0, "stop": 1, "step": 1}},
            ),
            "equal length",
        ),
        (b"\xc1", "malformed msgpack"),
    ],
)
def test_codec_when_hostile_frame_then_codec_error_says_why(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(data)
