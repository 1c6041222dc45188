"""msgpack codec for every Bourse frame: plain msgpack plus a few extension types.

Nothing is ever pickled. Extension types (documented byte by byte in docs/wire.md):

====  ===================  =========================================================
code  Python type          payload (itself msgpack)
====  ===================  =========================================================
1     datetime.datetime    [epoch_ns:int, tz:str|nil]   (naive when tz is nil)
2     pandas.Timestamp     [epoch_ns:int, tz:str|nil]   (NaT is epoch_ns nil)
3     datetime.date        "YYYY-MM-DD"
4     datetime.timedelta   ns:int
5     decimal.Decimal      str
6     numpy.ndarray        column  (see below)
7     pandas.Series        {"name", "index": column, "values": column}
8     pandas.DataFrame     {"columns": [name...], "data": [column...], "index": column|[column...]}
9     numpy scalar         column of one element
====  ===================  =========================================================

A *column* is a map ``{"kind": ..., ...}``:

* ``"raw"``: ``{"dtype": "<f8", "shape": [n], "buf": bytes}``; numeric, bool, datetime64 and
  timedelta64 arrays as their raw little-endian buffer.
* ``"tz"``: ``{"tz": "America/New_York", "buf": <i8 bytes}``; tz-aware datetime64[ns, tz].
* ``"cat"``: ``{"codes": column, "categories": column, "ordered": bool}``.
* ``"list"``: ``{"dtype": "object"|"string", "items": [...]}``; strings and other objects, each
  item itself encoded with this codec.
* ``"masked"``: ``{"dtype": "Int64", "data": column, "mask": column}``; pandas nullable dtypes.
* ``"range"``: ``{"start", "stop", "step"}``; a RangeIndex (indexes only).
* ``"multi"``: ``{"levels": [column...], "names": [...]}``; a MultiIndex (indexes only).

Every column and index carries ``"name"``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sys
from collections.abc import Callable
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import pandas as pd

EXT_DATETIME: Final = 1
EXT_TIMESTAMP: Final = 2
EXT_DATE: Final = 3
EXT_TIMEDELTA: Final = 4
EXT_DECIMAL: Final = 5
EXT_NDARRAY: Final = 6
EXT_SERIES: Final = 7
EXT_DATAFRAME: Final = 8
EXT_NPSCALAR: Final = 9

# dtype kinds whose raw buffer can be sent as is: bool, ints, floats, complex, timedelta, datetime.
_RAW_KINDS: Final = frozenset("biufcmM")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE: Final = dt.datetime(1970, 1, 1)
_MAX_DIMS: Final = 32


class CodecError(ValueError):
    """A value cannot be encoded, or bytes cannot be decoded; the message says what and where."""


# --------------------------------------------------------------------------- time zones


def _tz_name(tz: dt.tzinfo | None) -> str | None:
    """A name from which :func:`_tz_from_name` rebuilds an equal time zone."""
    if tz is None:
        return None
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)  # zoneinfo, pytz
    if isinstance(key, str):
        return key
    if tz is dt.UTC or tz == dt.UTC:
        return "UTC"
    offset = tz.utcoffset(None)
    if isinstance(tz, dt.timezone) and offset is not None:
        total = int(offset.total_seconds())
        sign = "+" if total >= 0 else "-"
        hours, rest = divmod(abs(total), 3600)
        return f"{sign}{hours:02d}:{rest // 60:02d}"
    name = str(tz)
    if name in ("UTC", "utc"):
        return "UTC"
    raise CodecError(f"cannot encode time zone {tz!r}: use a zoneinfo/pytz zone or a fixed offset")


def _pandas_tz(name: Any) -> str | dt.tzinfo:
    """The time zone as pandas wants it: IANA names as strings (pandas picks its own tz type)."""
    tz = _tz_from_name(name)
    if tz is None:
        raise CodecError("tz column without a time zone")
    return name if isinstance(tz, ZoneInfo) else tz


def _tz_from_name(name: str | None) -> dt.tzinfo | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise CodecError(f"time zone must be a string, got {type(name).__name__}")
    if name == "UTC":
        return dt.UTC
    if name[:1] in "+-" and len(name) == 6 and name[3] == ":":
        sign = 1 if name[0] == "+" else -1
        minutes = int(name[1:3]) * 60 + int(name[4:6])
        return dt.timezone(sign * dt.timedelta(minutes=minutes))
    try:
        return ZoneInfo(name)
    except Exception as exc:
        raise CodecError(f"unknown time zone {name!r}") from exc


# --------------------------------------------------------------------------- columns


def _check_dtype(dtype: np.dtype[Any], where: str) -> None:
    if dtype.kind not in _RAW_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise CodecError(f"{where}: dtype {dtype.str!r} is not allowed on the wire")


def _encode_column(values: Any, name: Any = None) -> dict[str, Any]:
    """One column (array, Series values, Index) as a msgpack-friendly map."""
    if isinstance(values, pd.RangeIndex):
        return {
            "kind": "range",
            "name": values.name,
            "start": values.start,
            "stop": values.stop,
            "step": values.step,
        }
    if isinstance(values, pd.MultiIndex):
        return {
            "kind": "multi",
            "name": None,
            "names": list(values.names),
            "levels": [_encode_column(values.get_level_values(i)) for i in range(values.nlevels)],
        }
    if isinstance(values, pd.DatetimeIndex | pd.TimedeltaIndex) and values.freq is not None:
        return {**_encode_column(values.array, values.name), "freq": values.freqstr}
    if isinstance(values, pd.Index | pd.Series):
        name = values.name if name is None else name
        values = values.array
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.DatetimeTZDtype):
        arr = np.asarray(values.asi8 if hasattr(values, "asi8") else values.view("i8"), dtype="<i8")
        return {
            "kind": "tz",
            "name": name,
            "tz": _tz_name(dtype.tz),
            "unit": dtype.unit,
            "buf": arr.tobytes(),
        }
    if isinstance(dtype, pd.CategoricalDtype):
        return {
            "kind": "cat",
            "name": name,
            "ordered": bool(dtype.ordered),
            "codes": _encode_column(np.asarray(values.codes)),
            "categories": _encode_column(dtype.categories),
        }
    if isinstance(values, pd.arrays.BooleanArray | pd.arrays.IntegerArray | pd.arrays.FloatingArray):
        return {
            "kind": "masked",
            "name": name,
            "dtype": str(dtype),
            "data": _encode_column(np.asarray(values._data)),  # type: ignore[union-attr]
            "mask": _encode_column(np.asarray(values._mask)),  # type: ignore[union-attr]
        }
    if isinstance(dtype, pd.StringDtype):
        return {
            "kind": "list",
            "name": name,
            "dtype": f"string[{dtype.storage}]",
            "items": [None if v is pd.NA else v for v in values],
        }
    arr = np.asarray(values)
    if arr.dtype.kind in _RAW_KINDS and arr.dtype.fields is None and arr.dtype.subdtype is None:
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return {
            "kind": "raw",
            "name": name,
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "buf": np.ascontiguousarray(arr).tobytes(),
        }
    if arr.dtype.kind in "OUS":
        if arr.ndim != 1:
            raise CodecError(f"cannot encode a {arr.ndim}-d object array; only 1-d object columns")
        return {"kind": "list", "name": name, "dtype": "object", "items": arr.tolist()}
    raise CodecError(f"cannot encode column {name!r} of dtype {arr.dtype}")


def _decode_raw(col: dict[str, Any], where: str) -> Any:
    dtype = np.dtype(_as_str(col.get("dtype"), where + ".dtype"))
    _check_dtype(dtype, where)
    shape = col.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_DIMS
        or not all(isinstance(n, int) and n >= 0 for n in shape)
    ):
        raise CodecError(f"{where}: bad shape {shape!r}")
    buf = col.get("buf")
    if not isinstance(buf, bytes):
        raise CodecError(f"{where}: buf must be bytes")
    count = int(np.prod(shape)) if shape else 1
    if count * dtype.itemsize != len(buf):
        raise CodecError(f"{where}: {len(buf)} bytes do not hold shape {shape} of {dtype.str}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape).copy()


def _decode_tz(col: dict[str, Any], where: str) -> Any:
    buf = col.get("buf")
    if not isinstance(buf, bytes) or len(buf) % 8:
        raise CodecError(f"{where}: tz column buf must be int64 bytes")
    unit = col.get("unit", "ns")
    if unit not in ("s", "ms", "us", "ns"):
        raise CodecError(f"{where}: bad datetime unit {unit!r}")
    tz = _pandas_tz(col.get("tz"))
    ints = np.frombuffer(buf, dtype="<i8").astype(f"datetime64[{unit}]")
    return pd.DatetimeIndex(ints).tz_localize("UTC").tz_convert(tz).array


def _decode_cat(col: dict[str, Any], where: str) -> Any:
    codes = _decode_column(col.get("codes"), where + ".codes")
    categories = _decode_column(col.get("categories"), where + ".categories")
    if not isinstance(codes, np.ndarray) or codes.dtype.kind != "i":
        raise CodecError(f"{where}: category codes must be integers")
    try:
        return pd.Categorical.from_codes(
            codes,  # type: ignore[arg-type]
            categories=pd.Index(categories),
            ordered=bool(col.get("ordered")),
        )
    except ValueError as exc:
        raise CodecError(f"{where}: {exc}") from exc


def _decode_masked(col: dict[str, Any], where: str) -> Any:
    data = _decode_column(col.get("data"), where + ".data")
    mask = _decode_column(col.get("mask"), where + ".mask")
    dtype_name = _as_str(col.get("dtype"), where + ".dtype")
    if dtype_name not in _MASKED_DTYPES:
        raise CodecError(f"{where}: masked dtype {dtype_name!r} is not allowed")
    if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != getattr(data, "shape", None):
        raise CodecError(f"{where}: mask must be a bool array as long as the data")
    array_class, numpy_dtype = _MASKED_DTYPES[dtype_name]
    if data.dtype != numpy_dtype:
        raise CodecError(f"{where}: {dtype_name} data must be {numpy_dtype}, got {data.dtype}")
    return array_class(data, mask)


def _decode_list(col: dict[str, Any], where: str) -> Any:
    items = col.get("items")
    if not isinstance(items, list):
        raise CodecError(f"{where}: items must be a list")
    dtype_name = col.get("dtype")
    if dtype_name in _STRING_DTYPES:
        try:
            return pd.array(items, dtype=_STRING_DTYPES[dtype_name])
        except ImportError as exc:
            raise CodecError(f"{where}: {exc}") from exc
    if dtype_name != "object":
        raise CodecError(f"{where}: list dtype {dtype_name!r} is not allowed")
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _decode_range(col: dict[str, Any], where: str) -> Any:
    try:
        return pd.RangeIndex(int(col["start"]), int(col["stop"]), int(col["step"]), name=col.get("name"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"{where}: bad range index: {exc}") from exc


def _decode_multi(col: dict[str, Any], where: str) -> Any:
    levels = col.get("levels")
    if not isinstance(levels, list) or not levels:
        raise CodecError(f"{where}: multi index needs levels")
    arrays = [_decode_column(level, f"{where}.levels[{i}]") for i, level in enumerate(levels)]
    return pd.MultiIndex.from_arrays(arrays, names=col.get("names"))


_DECODERS: Final[dict[str, Callable[[dict[str, Any], str], Any]]] = {
    "raw": _decode_raw,
    "tz": _decode_tz,
    "cat": _decode_cat,
    "masked": _decode_masked,
    "list": _decode_list,
    "range": _decode_range,
    "multi": _decode_multi,
}


def _decode_column(col: Any, where: str) -> Any:
    """The inverse of :func:`_encode_column`; returns a numpy array or a pandas array/Index."""
    if not isinstance(col, dict):
        raise CodecError(f"{where}: column must be a map, got {type(col).__name__}")
    decoder = _DECODERS.get(col.get("kind"))  # type: ignore[arg-type]
    if decoder is None:
        raise CodecError(f"{where}: unknown column kind {col.get('kind')!r}")
    return decoder(col, where)


_STRING_DTYPES: Final[dict[str, Any]] = {
    "string[python]": "string[python]",
    "string[pyarrow]": "string[pyarrow]",  # needs pyarrow installed on the receiving side
}

_MASKED_DTYPES: Final[dict[str, tuple[Any, np.dtype[Any]]]] = {
    "boolean": (pd.arrays.BooleanArray, np.dtype(bool)),
    **{f"Int{n}": (pd.arrays.IntegerArray, np.dtype(f"int{n}")) for n in (8, 16, 32, 64)},
    **{f"UInt{n}": (pd.arrays.IntegerArray, np.dtype(f"uint{n}")) for n in (8, 16, 32, 64)},
    **{f"Float{n}": (pd.arrays.FloatingArray, np.dtype(f"float{n}")) for n in (32, 64)},
}


def _as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _to_index(col: Any, where: str) -> pd.Index:
    decoded = _decode_column(col, where)
    if isinstance(decoded, pd.Index):
        return decoded
    index: pd.Index = pd.Index(decoded, name=col.get("name"), tupleize_cols=False)
    freq = col.get("freq")
    if freq is not None and isinstance(index, pd.DatetimeIndex | pd.TimedeltaIndex):
        try:
            index = type(index)(index, freq=_as_str(freq, where + ".freq"))
        except ValueError as exc:
            raise CodecError(f"{where}: frequency {freq!r} does not fit the index: {exc}") from exc
    return index


# --------------------------------------------------------------------------- ext types


def _ns_since_epoch(value: dt.datetime) -> int:
    base = _EPOCH if value.tzinfo is not None else _EPOCH_NAIVE
    delta = value - base
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _default(obj: Any) -> Any:
    packb = _pack_inner
    if obj is pd.NaT:
        return msgpack.ExtType(EXT_TIMESTAMP, packb([None, None]))
    if isinstance(obj, pd.Timestamp):
        return msgpack.ExtType(EXT_TIMESTAMP, packb([obj.as_unit("ns").value, _tz_name(obj.tzinfo)]))
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(EXT_DATETIME, packb([_ns_since_epoch(obj), _tz_name(obj.tzinfo)]))
    if isinstance(obj, dt.date):
        return msgpack.ExtType(EXT_DATE, packb(obj.isoformat()))
    if isinstance(obj, pd.Timedelta):
        return msgpack.ExtType(EXT_NPSCALAR, packb(_encode_column(np.array([obj.to_timedelta64()]))))
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(EXT_TIMEDELTA, packb((obj // dt.timedelta(microseconds=1)) * 1000))
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(EXT_DECIMAL, packb(str(obj)))
    if isinstance(obj, pd.DataFrame):
        if isinstance(obj.columns, pd.MultiIndex):
            raise CodecError("cannot encode a DataFrame with MultiIndex columns; flatten the column names")
        names = list(obj.columns)
        data = [_encode_column(obj.iloc[:, i].array, names[i]) for i in range(obj.shape[1])]
        payload = {
            "columns": names,
            "data": data,
            "index": _encode_column(obj.index),
            "column_index": _encode_column(obj.columns),
        }
        return msgpack.ExtType(EXT_DATAFRAME, packb(payload))
    if isinstance(obj, pd.Series):
        payload = {"name": obj.name, "values": _encode_column(obj.array), "index": _encode_column(obj.index)}
        return msgpack.ExtType(EXT_SERIES, packb(payload))
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, packb(_encode_column(obj)))
    if isinstance(obj, np.bool_):
        return obj.item()
    if isinstance(obj, np.generic):
        if obj.dtype.kind in _RAW_KINDS:
            return msgpack.ExtType(EXT_NPSCALAR, packb(_encode_column(np.array([obj]))))
        return obj.item()
    if obj is pd.NA:
        return None
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise CodecError(f"cannot encode object of type {type(obj).__module__}.{type(obj).__qualname__}")


def _ext_hook(code: int, data: bytes) -> Any:
    payload = _unpack_inner(data)
    if code in (EXT_DATETIME, EXT_TIMESTAMP):
        if not isinstance(payload, list) or len(payload) != 2:
            raise CodecError(f"ext {code}: expected [epoch_ns, tz]")
        ns, tz_name = payload
        if code == EXT_TIMESTAMP and ns is None:
            return pd.NaT
        if not isinstance(ns, int):
            raise CodecError(f"ext {code}: epoch_ns must be an int")
        tz = _tz_from_name(tz_name)
        if code == EXT_TIMESTAMP:
            if tz is None:
                return pd.Timestamp(ns, unit="ns")
            return pd.Timestamp(ns, unit="ns", tz="UTC").tz_convert(_pandas_tz(tz_name))
        micros = dt.timedelta(microseconds=ns // 1000)
        return (_EPOCH + micros).astimezone(tz) if tz else _EPOCH_NAIVE + micros
    if code == EXT_DATE:
        return dt.date.fromisoformat(_as_str(payload, "ext date"))
    if code == EXT_TIMEDELTA:
        if not isinstance(payload, int):
            raise CodecError("ext timedelta: expected ns as an int")
        return dt.timedelta(microseconds=payload // 1000)
    if code == EXT_DECIMAL:
        try:
            return decimal.Decimal(_as_str(payload, "ext decimal"))
        except decimal.InvalidOperation as exc:
            raise CodecError(f"ext decimal: {payload!r} is not a decimal") from exc
    if code == EXT_NDARRAY:
        arr = _decode_column(payload, "ndarray")
        return np.asarray(arr)
    if code == EXT_NPSCALAR:
        arr = _decode_column(payload, "scalar")
        if not isinstance(arr, np.ndarray) or arr.shape != (1,):
            raise CodecError("ext scalar: expected one element")
        value = arr[0]
        return pd.Timedelta(value) if arr.dtype.kind == "m" else value
    if code == EXT_SERIES:
        if not isinstance(payload, dict):
            raise CodecError("ext series: expected a map")
        index = _to_index(payload.get("index"), "series.index")
        values = _decode_column(payload.get("values"), "series.values")
        if len(values) != len(index):
            raise CodecError(f"series: {len(values)} values for an index of {len(index)}")
        return pd.Series(values, index=index, name=payload.get("name"), copy=False)
    if code == EXT_DATAFRAME:
        return _decode_frame(payload)
    raise CodecError(f"unknown msgpack extension type {code}")


def _decode_frame(payload: Any) -> pd.DataFrame:
    if not isinstance(payload, dict):
        raise CodecError("ext dataframe: expected a map")
    names, data = payload.get("columns"), payload.get("data")
    if not isinstance(names, list) or not isinstance(data, list) or len(names) != len(data):
        raise CodecError("dataframe: columns and data must be lists of equal length")
    index = _to_index(payload.get("index"), "dataframe.index")
    columns = {}
    for i, col in enumerate(data):
        values = _decode_column(col, f"dataframe.data[{i}]")
        if len(values) != len(index):
            raise CodecError(f"dataframe: column {names[i]!r} has {len(values)} rows, index has {len(index)}")
        columns[i] = values
    frame = pd.DataFrame(columns, index=index, copy=False) if columns else pd.DataFrame(index=index)
    if "column_index" in payload:
        column_index = _to_index(payload["column_index"], "dataframe.column_index")
        if len(column_index) != len(names):
            raise CodecError("dataframe: column_index and columns differ in length")
        frame.columns = column_index
    else:
        frame.columns = pd.Index(names, dtype=object)
    return frame


# --------------------------------------------------------------------------- API


def _pack_inner(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]


def _unpack_inner(data: bytes) -> Any:
    return msgpack.unpackb(
        data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True, timestamp=0
    )


class Packer:
    """:func:`encode` with one reused msgpack packer (about 1 µs less per frame on hot paths).

    Produces the same bytes as :func:`encode`. Not thread-safe: one per thread or event loop.
    """

    __slots__ = ("_pack",)

    def __init__(self) -> None:
        self._pack = msgpack.Packer(default=_default, use_bin_type=True, datetime=False).pack

    def __call__(self, obj: Any) -> bytes:
        return _guarded(self._pack, obj)


def _guarded(pack: Callable[[Any], bytes], obj: Any) -> bytes:
    try:
        return pack(obj)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {type(obj).__name__}: {exc}") from exc


def encode(obj: Any) -> bytes:
    """Encode ``obj`` to msgpack bytes; raises :class:`CodecError` naming what cannot be sent."""
    return _guarded(_pack_inner, obj)


def decode(data: bytes) -> Any:
    """Decode msgpack bytes; any malformed input raises :class:`CodecError`, never anything else."""
    try:
        return _unpack_inner(data)
    except CodecError:
        raise
    except RecursionError as exc:
        raise CodecError("frame nested too deeply") from exc
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"malformed msgpack frame: {type(exc).__name__}: {exc}") from exc


Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], Any]
