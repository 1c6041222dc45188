"""Column schemas of the store's libraries, and the validation/coercion of input to them.

Every stored frame has a fixed column set in a fixed order with fixed dtypes (ArcticDB static
schema), so appends never fail on a dtype drift and readers always get the same frame shape.
Time-series frames are indexed by ``time`` (``datetime64[ns, UTC]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

DType = Literal["float64", "int64", "bool", "str"]
TIME = "time"
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    dtype: DType
    default: Any = _MISSING
    """Value for an omitted column / missing value; no default: the column is required."""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _f(name: str, default: Any = _MISSING) -> Column:
    return Column(name, "float64", default)


def _i(name: str, default: Any = _MISSING) -> Column:
    return Column(name, "int64", default)


def _s(name: str, default: Any = _MISSING) -> Column:
    return Column(name, "str", default)


NAN = math.nan

BARS = Schema(
    "bars",
    (
        _f("open"),
        _f("high"),
        _f("low"),
        _f("close"),
        _f("volume"),
        _f("wap", NAN),
        _i("count", -1),
    ),
)
"""OHLCV bars; ``wap`` (IB average) NaN and ``count`` (IB barCount) -1 when unknown."""

TICKS = Schema(
    "ticks",
    (
        _f("bid", NAN),
        _f("bid_size", NAN),
        _f("ask", NAN),
        _f("ask_size", NAN),
        _f("last", NAN),
        _f("last_size", NAN),
    ),
)
"""Top-of-book and trade ticks; NaN where a field does not apply to the row."""

FILLS = Schema(
    "fills",
    (
        _s("exec_id"),
        _i("order_id"),
        _i("perm_id", 0),
        _i("con_id"),
        _s("symbol", ""),
        _s("side"),
        _f("shares"),
        _f("price"),
        _f("commission", NAN),
        _s("currency", ""),
        _s("account", ""),
        _s("exchange", ""),
        _s("order_ref", ""),
    ),
)
"""Executions. ``side`` is IB's ``BOT`` / ``SLD``; ``shares`` > 0; ``commission`` NaN until known."""

FILL_SIDES = frozenset({"BOT", "SLD"})

ORDERS = Schema(
    "orders",
    (
        _i("order_id"),
        _i("perm_id", 0),
        _i("con_id", 0),
        _s("symbol", ""),
        _s("action", ""),
        _s("order_type", ""),
        _f("quantity", NAN),
        _f("limit_price", NAN),
        _f("stop_price", NAN),
        _s("tif", ""),
        _s("status"),
        _f("filled", 0.0),
        _f("remaining", NAN),
        _f("avg_fill_price", NAN),
        _s("order_ref", ""),
        _s("message", ""),
    ),
)
"""Order state changes (append-only log); ``status`` is IB's (PendingSubmit, Submitted, Filled...)."""

TERMINAL_ORDER_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})

POSITIONS = Schema(
    "positions",
    (
        _i("con_id"),
        _s("symbol", ""),
        _f("quantity"),
        _f("avg_cost", NAN),
        _f("market_price", NAN),
        _f("market_value", NAN),
        _f("unrealized_pnl", NAN),
        _f("realized_pnl", NAN),
    ),
)
"""One row per instrument per snapshot; a snapshot's rows share its ``time``."""

ACCOUNT = Schema(
    "account",
    (
        _f("net_liquidation", NAN),
        _f("total_cash", NAN),
        _f("gross_position_value", NAN),
        _f("maintenance_margin", NAN),
        _f("initial_margin", NAN),
        _f("available_funds", NAN),
        _f("buying_power", NAN),
        _f("excess_liquidity", NAN),
        _f("realized_pnl", NAN),
        _f("unrealized_pnl", NAN),
        _s("currency", ""),
    ),
)

DAILY_PNL = Schema(
    "daily_pnl",
    (
        _f("realized_pnl", NAN),
        _f("unrealized_pnl", NAN),
        _f("commission", NAN),
        _f("net_pnl", NAN),
        _i("trades", 0),
    ),
)
"""One row per calendar day (index: UTC midnight of the date)."""

CONTRACT = Schema("contract", (_s("json"),))
UNIVERSE = Schema("universe", (_s("key"),))

_NUMPY_DTYPES: dict[DType, Any] = {
    "float64": np.dtype("float64"),
    "int64": np.dtype("int64"),
    "bool": np.dtype("bool"),
    "str": np.dtype("object"),
}


def empty_frame(schema: Schema, *, indexed: bool = True) -> pd.DataFrame:
    """A zero-row frame with the schema's columns and dtypes (and a UTC ``time`` index)."""
    data = {c.name: pd.Series([], dtype=_NUMPY_DTYPES[c.dtype]) for c in schema.columns}
    if indexed:
        index: pd.Index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name=TIME)
        return pd.DataFrame({k: v.to_numpy() for k, v in data.items()}, index=index)
    return pd.DataFrame(data)


def utc_timestamp(value: Any, what: str) -> pd.Timestamp:
    """A tz-aware timestamp converted to UTC; naive or unparseable input raises ``ValueError``."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not a timestamp: {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"{what}: missing timestamp (NaT)")
    if ts.tzinfo is None:
        raise ValueError(f"{what}: timestamp {value!r} is tz-naive; give it a time zone (UTC)")
    return ts.tz_convert("UTC").as_unit("ns")


def optional_utc(value: Any, what: str) -> pd.Timestamp | None:
    return None if value is None else utc_timestamp(value, what)


def utc_index(values: Any, what: str) -> pd.DatetimeIndex:
    """A ``datetime64[ns, UTC]`` index named ``time`` from tz-aware values (any zone)."""
    if isinstance(values, pd.DatetimeIndex):
        idx = values
    else:
        try:
            idx = pd.DatetimeIndex(values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: not timestamps ({exc})") from exc
    if idx.tz is None:
        raise ValueError(
            f"{what}: timestamps are tz-naive; localize them (e.g. .tz_localize('UTC')) before storing"
        )
    if idx.hasnans:
        raise ValueError(f"{what}: missing timestamps (NaT)")
    return pd.DatetimeIndex(idx.tz_convert("UTC").as_unit("ns"), name=TIME)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _coerce(col: Column, series: pd.Series, what: str) -> np.ndarray[Any, Any]:
    name = f"{what}: column {col.name!r}"
    kind = series.dtype.kind
    if col.dtype in ("float64", "int64") and kind == "O":
        if series.map(lambda v: isinstance(v, bool | np.bool_)).any():
            raise ValueError(f"{name} must be numeric ({col.dtype}), got booleans")
        if col.dtype == "int64" and not col.required:
            series = series.map(lambda v: col.default if _is_missing(v) else v)
        try:
            series = pd.to_numeric(series, errors="raise")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric ({col.dtype}): {exc}") from exc
        kind = series.dtype.kind
    if col.dtype == "float64":
        if kind in "iuf":
            return series.to_numpy(dtype="float64", na_value=np.nan)
        raise ValueError(f"{name} must be numeric (float64), got dtype {series.dtype}")
    if col.dtype == "int64":
        if kind == "u" and len(series) and int(series.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: value out of int64 range")
        if kind in "iu":
            return series.to_numpy(dtype="int64")
        if kind == "f":
            values = series.to_numpy(dtype="float64")
            if np.isnan(values).any():
                raise ValueError(f"{name} must be integer (int64), has missing values")
            if not np.all(values == np.round(values)):
                raise ValueError(f"{name} must be integer (int64), has fractional values")
            return values.astype("int64")
        raise ValueError(f"{name} must be integer (int64), got dtype {series.dtype}")
    if col.dtype == "bool":
        if kind == "b":
            return series.to_numpy(dtype="bool")
        if kind == "O" and series.map(lambda v: isinstance(v, bool | np.bool_)).all():
            return series.to_numpy(dtype="bool")
        raise ValueError(f"{name} must be bool, got dtype {series.dtype}")
    # str
    if kind in "OU" or isinstance(series.dtype, pd.StringDtype):
        out = series.astype(object).to_numpy(dtype=object, copy=True)
        for i, v in enumerate(out):
            if isinstance(v, str):
                continue
            if _is_missing(v) and not col.required:
                out[i] = col.default
                continue
            raise ValueError(f"{name} must hold str values, got {v!r}")
        return out
    raise ValueError(f"{name} must hold str values, got dtype {series.dtype}")


def conform(schema: Schema, df: pd.DataFrame, what: str, *, indexed: bool = True) -> pd.DataFrame:
    """``df`` checked and coerced to ``schema``: exact columns (optional ones filled with their
    default), schema dtypes and order, and (``indexed``) a UTC ``time`` index. A frame with a
    ``time`` column and no DatetimeIndex gets that column as its index. Raises ``ValueError``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    index: pd.Index = df.index
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"{what}: duplicate column names {columns}")
    if indexed and TIME in columns and not isinstance(df.index, pd.DatetimeIndex):
        index = pd.Index(df[TIME])
        columns.remove(TIME)
        df = df.drop(columns=[TIME])
    unknown = sorted(set(columns) - set(schema.names))
    missing = [c.name for c in schema.columns if c.required and c.name not in columns]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"missing required column(s) {missing}")
        if unknown:
            parts.append(f"unknown column(s) {unknown}")
        raise ValueError(f"{what}: {'; '.join(parts)} (expected {schema.names})")
    data: dict[str, np.ndarray[Any, Any]] = {}
    for col in schema.columns:
        if col.name in columns:
            data[col.name] = _coerce(col, df[col.name], what)
        else:
            data[col.name] = np.full(len(df), col.default, dtype=_NUMPY_DTYPES[col.dtype])
    if indexed:
        if not isinstance(index, pd.DatetimeIndex) and len(index) and index.dtype.kind != "O":
            raise ValueError(f"{what}: index {TIME!r} must be tz-aware timestamps, got {index.dtype}")
        out_index: pd.Index = utc_index(index, f"{what}: index {TIME!r}")
    else:
        out_index = pd.RangeIndex(len(df))
    return pd.DataFrame(data, index=out_index)


def records_frame(schema: Schema, records: Iterable[Mapping[str, Any]], what: str) -> pd.DataFrame:
    """Records (mappings with a ``time`` key plus schema fields) as a conformed frame."""
    rows = list(records)
    required = [TIME] + [c.name for c in schema.columns if c.required]
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValueError(f"{what}: record {i} is a {type(r).__name__}, expected a mapping")
        missing = [k for k in required if k not in r]
        if missing:
            raise ValueError(f"{what}: record {i} is missing required column(s) {missing}")
    times = [utc_timestamp(r[TIME], f"{what}: record {i} column {TIME!r}") for i, r in enumerate(rows)]
    body = pd.DataFrame([{k: v for k, v in r.items() if k != TIME} for r in rows])
    if not rows:
        body = pd.DataFrame(index=pd.RangeIndex(0))
    body.index = pd.DatetimeIndex(times, dtype="datetime64[ns, UTC]", name=TIME)
    # Missing keys in some records become NaN: map them back to the column default.
    for col in schema.columns:
        if col.name in body.columns and not col.required and body[col.name].isna().any():
            body[col.name] = body[col.name].astype(object).where(body[col.name].notna(), col.default)
    return conform(schema, body, what)


def day_index(value: Any, what: str) -> pd.Timestamp:
    """UTC midnight of a calendar date (a date, a naive date/time, or a tz-aware time's local date)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return pd.Timestamp(value.year, value.month, value.day, tz="UTC")
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not a date: {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"{what}: missing date")
    return pd.Timestamp(ts.year, ts.month, ts.day, tz="UTC").as_unit("ns")


def time_sorted(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` in time order (stable: equal times keep their order); no copy when already sorted."""
    return df if df.index.is_monotonic_increasing else df.sort_index(kind="stable")
