"""Validation of write input into ``Prepared`` writes: pure (no I/O), so the async writer runs it on
the caller's side and bad input fails at once, in the producer, with a clear ``ValueError``.

``Store.apply(prepared)`` performs a prepared write; ``merge`` coalesces several prepared writes to
the same symbol into one (what the writer does with a batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from trader.data import schemas as sc
from trader.data.layout import (
    ACCOUNT_PREFIX,
    FILLS_LIB,
    ORDERS_LIB,
    PNL_PREFIX,
    PORTFOLIO_LIB,
    POSITIONS_LIB,
    TICKS_LIB,
    bars_library,
    check_symbol,
    con_id_symbol,
)

TimeLike = pd.Timestamp | datetime | str
Mode = Literal["append", "upsert", "fills"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated write of ``frame`` (schema-conformed, UTC ``time`` index) to library/symbol.

    ``append``: add rows (equal timestamps kept; older rows merged in time order).
    ``upsert``: rows replace stored rows at the same timestamps, other stored rows are kept.
    ``fills``: append rows whose ``exec_id`` is not stored yet (idempotent).
    ``coalesce``: several writes to the same key may be concatenated into one."""

    mode: Mode
    library: str
    symbol: str
    frame: pd.DataFrame
    coalesce: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.mode, self.library, self.symbol)


def merge(items: Sequence[Prepared]) -> Prepared:
    """One write equivalent to ``items`` (same key, coalescible) applied in order."""
    first = items[0]
    if len(items) == 1:
        return first
    if any(p.key != first.key or not p.coalesce for p in items):
        raise ValueError("merge: writes to different symbols or not coalescible")
    frame = pd.concat([p.frame for p in items])
    if first.mode == "upsert":  # later writes win at equal timestamps
        frame = sc.time_sorted(frame)
        frame = frame[~frame.index.duplicated(keep="last")]
    return Prepared(first.mode, first.library, first.symbol, frame, True)


def prepare_bars(con_id: int, bar_size: str, df: pd.DataFrame) -> Prepared:
    """Bars upsert (schema ``BARS``); duplicate timestamps in ``df``: the last wins."""
    sym, lib = con_id_symbol(con_id), bars_library(bar_size)
    frame = sc.time_sorted(sc.conform(sc.BARS, df, f"bars {bar_size!r} {sym}"))
    return Prepared("upsert", lib, sym, frame[~frame.index.duplicated(keep="last")])


def prepare_ticks(con_id: int, df: pd.DataFrame) -> Prepared:
    sym = con_id_symbol(con_id)
    return Prepared("append", TICKS_LIB, sym, sc.conform(sc.TICKS, df, f"ticks {sym}"))


def prepare_fills(strategy: str, fills: Iterable[Mapping[str, Any]]) -> Prepared:
    sym = check_symbol(strategy, "strategy")
    frame = sc.records_frame(sc.FILLS, fills, f"fills {sym}")
    bad_side = sorted(set(frame["side"]) - sc.FILL_SIDES)
    if bad_side:
        raise ValueError(f"fills {sym}: column 'side' must be BOT or SLD, got {bad_side}")
    if (frame["exec_id"] == "").any():
        raise ValueError(f"fills {sym}: column 'exec_id' must not be empty")
    if (frame["shares"] <= 0).any():
        raise ValueError(f"fills {sym}: column 'shares' must be > 0 (the side gives the direction)")
    return Prepared("fills", FILLS_LIB, sym, frame)


def prepare_orders(strategy: str, events: Iterable[Mapping[str, Any]]) -> Prepared:
    sym = check_symbol(strategy, "strategy")
    return Prepared("append", ORDERS_LIB, sym, sc.records_frame(sc.ORDERS, events, f"orders {sym}"))


def prepare_positions_snapshot(strategy: str, df: pd.DataFrame, time: TimeLike) -> Prepared:
    """The strategy's whole position set at ``time``; empty -> one flat marker row (con_id 0)."""
    sym = check_symbol(strategy, "strategy")
    what = f"positions {sym}"
    at = sc.utc_timestamp(time, f"{what}: time")
    rows = sc.conform(sc.POSITIONS, df, what, indexed=False)
    if rows["con_id"].duplicated().any():
        raise ValueError(f"{what}: column 'con_id' has duplicates: one row per instrument")
    if (rows["con_id"] <= 0).any():
        raise ValueError(f"{what}: column 'con_id' must be positive")
    if rows.empty:
        flat = pd.DataFrame({"con_id": [0], "quantity": [0.0]})
        rows = sc.conform(sc.POSITIONS, flat, what, indexed=False)
    rows.index = pd.DatetimeIndex([at] * len(rows), name=sc.TIME)
    return Prepared("upsert", POSITIONS_LIB, sym, rows, coalesce=False)


def prepare_portfolio_snapshot(account: str, values: Mapping[str, Any], time: TimeLike) -> Prepared:
    sym = ACCOUNT_PREFIX + check_symbol(account, "account")
    at = sc.utc_timestamp(time, f"portfolio {account}: time")
    row = sc.conform(sc.ACCOUNT, pd.DataFrame([dict(values)], index=[at]), f"portfolio {account}")
    return Prepared("upsert", PORTFOLIO_LIB, sym, row)


def prepare_daily_pnl(name: str, date: Any, values: Mapping[str, Any]) -> Prepared:
    sym = PNL_PREFIX + check_symbol(name, "name")
    day = sc.day_index(date, f"daily pnl {name}: date")
    row = sc.conform(sc.DAILY_PNL, pd.DataFrame([dict(values)], index=[day]), f"daily pnl {name}")
    return Prepared("upsert", PORTFOLIO_LIB, sym, row)


TICK_FIELDS: tuple[str, ...] = tuple(sc.TICKS.names)
_TICK_INDEX = {name: i for i, name in enumerate(TICK_FIELDS)}
TickRow = tuple[int, tuple[float, ...]]
"""(time in ns since the epoch, UTC; values in ``TICK_FIELDS`` order, NaN where absent)."""


def tick_row(time: TimeLike, fields: Mapping[str, Any]) -> TickRow:
    """One tick validated without pandas frames (the cheap path for ticks arriving one by one)."""
    if isinstance(time, pd.Timestamp) and time.tzinfo is not None:
        ns = int(time.value) if time.unit == "ns" else int(time.as_unit("ns").value)
    else:
        ns = int(sc.utc_timestamp(time, "tick: column 'time'").value)
    values = [math.nan] * len(TICK_FIELDS)
    for name, value in fields.items():
        i = _TICK_INDEX.get(name)
        if i is None:
            raise ValueError(f"tick: unknown column {name!r} (expected {list(TICK_FIELDS)})")
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"tick: column {name!r} must be numeric (float64), got {value!r}")
        values[i] = float(value)
    return ns, tuple(values)


def prepare_tick_rows(con_id_sym: str, rows: Sequence[TickRow]) -> Prepared:
    """Validated tick rows of one symbol as one append."""
    idx = pd.DatetimeIndex(np.array([r[0] for r in rows], dtype="int64").view("M8[ns]"), name=sc.TIME)
    values = np.array([r[1] for r in rows], dtype="float64").reshape(len(rows), len(TICK_FIELDS))
    frame = pd.DataFrame(values, columns=list(TICK_FIELDS), index=idx.tz_localize("UTC"))
    return Prepared("append", TICKS_LIB, con_id_sym, frame)
