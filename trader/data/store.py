"""The ArcticDB store: one Arctic instance, libraries by purpose, typed read/write APIs.

Layout: docs/storage.md. Column schemas:
``trader/data/schemas.py``.

Conventions for every method:

* Timestamps are tz-aware UTC (``datetime64[ns, UTC]``), in the index named ``time``. Input may be in
  any time zone (converted to UTC); a naive timestamp raises ``ValueError`` naming the column.
* Input frames must carry exactly the schema's columns (optional ones may be omitted and get their
  default); unknown or missing columns raise ``ValueError`` naming them. Dtypes are coerced
  losslessly to the schema (int -> float64 fine, 1.5 -> int64 not).
* Reads of a symbol that does not exist return an EMPTY frame with the schema's columns and dtypes.
* All methods block (ArcticDB I/O): call them off the event loop (``asyncio.to_thread``) or through
  ``trader.data.writer.AsyncStoreWriter``. One writer per process/store; any number of readers,
  including other processes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import arcticdb as adb
import pandas as pd
from arcticdb.exceptions import ArcticException, NoDataFoundException

from trader.data import schemas as sc
from trader.data.layout import (
    ACCOUNT_PREFIX,
    BARS_PREFIX,
    CONTRACT_PREFIX,
    FILLS_LIB,
    ORDERS_LIB,
    PNL_PREFIX,
    PORTFOLIO_LIB,
    POSITIONS_LIB,
    TICKS_LIB,
    UNIVERSE_PREFIX,
    UNIVERSES_LIB,
    bars_library,
    check_symbol,
    con_id_symbol,
    normalise_uri,
)
from trader.data.prepare import (
    Prepared,
    prepare_bars,
    prepare_daily_pnl,
    prepare_fills,
    prepare_orders,
    prepare_portfolio_snapshot,
    prepare_positions_snapshot,
    prepare_ticks,
)
from trader.data.schemas import Schema

log = logging.getLogger(__name__)

TimeLike = pd.Timestamp | datetime | str

_READ_RETRIES = 5


class StoreError(RuntimeError):
    """A storage operation failed (not bad input: that is ``ValueError``)."""


class _Shared:
    """Per-URI process state shared by every Store over that URI."""

    def __init__(self, arctic: Any) -> None:
        self.arctic = arctic
        self.libs: dict[str, Any] = {}
        self.libs_lock = threading.Lock()
        self.write_lock = threading.RLock()
        self.exec_ids: dict[str, tuple[int, set[str]]] = {}
        self.ends: dict[tuple[str, str], tuple[int, pd.Timestamp]] = {}


# One Arctic instance per store per process: LMDB must not be opened twice in one process.
_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared(uri: str) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.get(uri)
        if shared is None:
            # Readers must not trust a cached version map: the writer prunes old versions, so a
            # version cached a second ago may be gone. 0 = always read the symbol's version ref.
            adb.config.set_config_int("VersionMap.ReloadInterval", 0)
            if uri.startswith("lmdb://"):
                # The storage lock (symbol-list compaction) waits this long for a competing writer
                # to show up: 1 s by default, made for eventually consistent object stores. LMDB is
                # consistent at once. (Process-wide setting.)
                adb.config.set_config_int("StorageLock.WaitMs", 10)
            try:
                shared = _Shared(adb.Arctic(uri))
            except ArcticException as exc:
                raise StoreError(f"cannot open store {uri}: {exc}") from exc
            _SHARED[uri] = shared
        return shared


def _bound(value: TimeLike | None, what: str) -> pd.Timestamp | None:
    return sc.optional_utc(value, what)


class Store:
    """Bourse's ArcticDB store.

    ``Store(uri)`` / ``Store.open(uri)``: ``lmdb:///abs/path`` (directory created if missing; a
    relative path is taken from the working directory), or any ArcticDB URI (``s3://host:bucket?...``).
    Resolve the configured URI with ``StoreConfig.resolved_uri(data_dir)`` first. Instances over the
    same URI in one process share one ``arcticdb.Arctic`` (LMDB forbids opening a path twice),
    its library handles, write lock and caches.

    Writes take a per-store lock (read-modify-write upserts are then safe from several threads of
    one process); there must be one writing process per store. Every write prunes the symbol's
    previous versions, so storage does not grow with the number of appends; readers retry a read
    that raced with a prune.
    """

    def __init__(self, uri: str) -> None:
        self._uri = normalise_uri(uri)
        shared = _shared(self._uri)
        self._arctic = shared.arctic
        self._libs = shared.libs
        self._libs_lock = shared.libs_lock
        self._write_lock = shared.write_lock
        self._exec_ids = shared.exec_ids
        self._ends = shared.ends

    @classmethod
    def open(cls, uri: str) -> Store:
        return cls(uri)

    @property
    def uri(self) -> str:
        return self._uri

    def __repr__(self) -> str:
        return f"Store({self._uri!r})"

    def library(self, name: str) -> Any:
        """The ``arcticdb.Library`` ``name``, created on first use (escape hatch for plain arcticdb)."""
        lib = self._libs.get(name)
        if lib is not None:
            return lib
        with self._libs_lock:
            lib = self._libs.get(name)
            if lib is None:
                try:
                    lib = self._arctic.get_library(name, create_if_missing=True)
                except ArcticException as exc:
                    raise StoreError(f"cannot open library {name!r} in {self._uri}: {exc}") from exc
                self._libs[name] = lib
        return lib

    def _rlib(self, name: str) -> Any | None:
        """The library for reading, or None if it does not exist yet (reads never create it)."""
        lib = self._libs.get(name)
        if lib is None and self._arctic.has_library(name):
            lib = self.library(name)
        return lib

    def list_libraries(self) -> list[str]:
        return sorted(self._arctic.list_libraries())

    # ---- primitives --------------------------------------------------------------------------------

    def _has(self, lib: Any | None, sym: str) -> bool:
        return lib is not None and bool(lib.has_symbol(sym))

    def _read(self, lib: Any | None, sym: str, **kwargs: Any) -> pd.DataFrame | None:
        """``lib.read(sym).data``, or None if the symbol does not exist; retries reads that raced
        with the writer pruning the version being read."""
        if lib is None:
            return None
        for attempt in range(_READ_RETRIES):
            try:
                return lib.read(sym, **kwargs).data  # type: ignore[no-any-return]
            except ArcticException as exc:
                if isinstance(exc, NoDataFoundException) and not self._has(lib, sym):
                    return None
                if attempt == _READ_RETRIES - 1:
                    raise StoreError(f"read {lib.name}/{sym} failed: {exc}") from exc
                log.debug("read %s/%s raced with a write (%s); retrying", lib.name, sym, exc)
                _time.sleep(0.005 * 2**attempt)
        raise AssertionError("unreachable")

    def _range(self, lib: Any | None, sym: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        if lib is None:
            return None
        for attempt in range(_READ_RETRIES):
            try:
                first, last = lib.get_description(sym).date_range
            except ArcticException as exc:
                if isinstance(exc, NoDataFoundException) and not self._has(lib, sym):
                    return None
                if attempt == _READ_RETRIES - 1:
                    raise StoreError(f"describe {lib.name}/{sym} failed: {exc}") from exc
                _time.sleep(0.005 * 2**attempt)
                continue
            if pd.isna(first) or pd.isna(last):
                return None
            return pd.Timestamp(first).tz_convert("UTC"), pd.Timestamp(last).tz_convert("UTC")
        raise AssertionError("unreachable")

    def _read_range(
        self, lib: Any | None, sym: str, schema: Schema, start: TimeLike | None, end: TimeLike | None
    ) -> pd.DataFrame:
        lo, hi = _bound(start, "start"), _bound(end, "end")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"start {lo} is after end {hi}")
        dr = None if lo is None and hi is None else (lo, hi)
        df = self._read(lib, sym, date_range=dr)
        return sc.empty_frame(schema) if df is None else df

    def _write_op(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, prune_previous_versions=True, **kwargs)
        except ArcticException as exc:
            raise StoreError(f"{what} failed: {exc}") from exc

    def _end(self, lib: Any, sym: str) -> pd.Timestamp | None:
        """The symbol's last stored timestamp (None: no symbol). From this process's cache when the
        symbol's version proves it current (one cheap version-ref read), else from its description."""
        cached = self._ends.get((lib.name, sym))
        if cached is not None:
            try:
                if int(lib.read_metadata(sym).version) == cached[0]:
                    return cached[1]
            except ArcticException:
                pass
        rng = self._range(lib, sym)
        return None if rng is None else rng[1]

    def _append_sorted(self, lib: Any, sym: str, new: pd.DataFrame) -> int:
        """Append rows (equal timestamps allowed); rows older than the stored end are merged in."""
        if new.empty:
            return 0
        new = sc.time_sorted(new)
        where = f"{lib.name}/{sym}"
        with self._write_lock:
            end = self._end(lib, sym)
            if end is None:
                item = self._write_op(f"write {where}", lib.write, sym, new)
            elif new.index[0] >= end:
                item = self._write_op(f"append {where}", lib.append, sym, new)
            else:
                old = self._read(lib, sym, date_range=(new.index[0], None))
                merged = pd.concat([old, new]) if old is not None and len(old) else new
                item = self._write_op(f"update {where}", lib.update, sym, sc.time_sorted(merged))
            last = new.index[-1] if end is None else max(end, new.index[-1])
            self._ends[(lib.name, sym)] = (int(item.version), last)
        return len(new)

    def _upsert(self, lib: Any, sym: str, new: pd.DataFrame) -> int:
        """Rows of ``new`` replace stored rows at the same timestamps; other stored rows are kept."""
        if new.empty:
            return 0
        new = sc.time_sorted(new)
        where = f"{lib.name}/{sym}"
        with self._write_lock:
            end = self._end(lib, sym)
            if end is None:
                item = self._write_op(f"write {where}", lib.write, sym, new)
            elif new.index[0] > end:
                item = self._write_op(f"append {where}", lib.append, sym, new)
            else:
                lo, hi = new.index[0], new.index[-1]
                old = self._read(lib, sym, date_range=(lo, hi))
                if old is not None and len(old):
                    new = sc.time_sorted(pd.concat([old[~old.index.isin(new.index)], new]))
                item = self._write_op(f"update {where}", lib.update, sym, new, date_range=(lo, hi))
            last = new.index[-1] if end is None else max(end, new.index[-1])
            self._ends[(lib.name, sym)] = (int(item.version), last)
        return len(new)

    def _read_all(
        self, lib_name: str, one: str | None, reader: Callable[[str], pd.DataFrame], schema: Schema
    ) -> pd.DataFrame:
        """``reader(symbol)`` for one strategy or every symbol of the library, with a ``strategy`` column."""
        lib = self._rlib(lib_name)
        if one is not None:
            names = [check_symbol(one, "strategy")]
        else:
            names = [] if lib is None else sorted(lib.list_symbols())
        frames: list[pd.DataFrame] = []
        for name in names:
            df = reader(name)
            if len(df):
                frames.append(df.assign(strategy=name))
        if not frames:
            return sc.empty_frame(schema).assign(strategy=pd.Series([], dtype=object))
        return pd.concat(frames).sort_index(kind="stable")

    def apply(self, write: Prepared) -> int:
        """Perform a validated write (``trader.data.prepare``); returns the rows written (fills:
        the NEW fills stored)."""
        lib = self.library(write.library)
        if write.mode == "append":
            return self._append_sorted(lib, write.symbol, write.frame)
        if write.mode == "upsert":
            self._upsert(lib, write.symbol, write.frame)
            return len(write.frame)
        return self._append_fills(lib, write.symbol, write.frame)

    # ---- bars: library bars_<size>, symbol str(con_id) ------------------------------------------

    def write_bars(self, con_id: int, bar_size: str, df: pd.DataFrame) -> int:
        """Upsert bars (schema ``BARS``: open high low close volume wap count, index ``time``).

        Bars at timestamps already stored are replaced; stored bars at other timestamps are kept
        (even inside the new frame's span). Duplicate timestamps in ``df``: the last wins.
        Returns the number of rows written."""
        return self.apply(prepare_bars(con_id, bar_size, df))

    def read_bars(
        self, con_id: int, bar_size: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pd.DataFrame:
        """Bars with ``start <= time <= end`` (either bound optional), sorted by time."""
        lib = self._rlib(bars_library(bar_size))
        return self._read_range(lib, con_id_symbol(con_id), sc.BARS, start, end)

    def bars_range(self, con_id: int, bar_size: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """(first, last) stored bar time, or None when there are none."""
        return self._range(self._rlib(bars_library(bar_size)), con_id_symbol(con_id))

    def bar_sizes(self) -> list[str]:
        """Library names of the bar sizes stored (``bars_1min``, ...)."""
        return [n for n in self.list_libraries() if n.startswith(BARS_PREFIX)]

    # ---- ticks: library ticks, symbol str(con_id) -----------------------------------------------

    def append_ticks(self, con_id: int, df: pd.DataFrame) -> int:
        """Append ticks (schema ``TICKS``: bid bid_size ask ask_size last last_size, NaN where a
        field did not change/apply). Equal timestamps are allowed. Ticks older than the last stored
        one are merged in time order (slower path). Not idempotent. Returns rows written."""
        return self.apply(prepare_ticks(con_id, df))

    def read_ticks(
        self, con_id: int, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pd.DataFrame:
        """Ticks with ``start <= time <= end``, in time (then arrival) order."""
        return self._read_range(self._rlib(TICKS_LIB), con_id_symbol(con_id), sc.TICKS, start, end)

    def ticks_range(self, con_id: int) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        return self._range(self._rlib(TICKS_LIB), con_id_symbol(con_id))

    # ---- fills: library fills, symbol = strategy -------------------------------------------------

    def append_fills(self, strategy: str, fills: Iterable[Mapping[str, Any]]) -> int:
        """Append fills (schema ``FILLS``; each record needs ``time`` and the required fields).

        Idempotent by ``exec_id`` within the strategy: a fill already stored (or repeated in
        ``fills``) is skipped. Returns the number of NEW fills stored."""
        return self.apply(prepare_fills(strategy, fills))

    def _append_fills(self, lib: Any, sym: str, new: pd.DataFrame) -> int:
        with self._write_lock:
            known = self._known_exec_ids(lib, sym)
            new = new[~new["exec_id"].duplicated(keep="first") & ~new["exec_id"].isin(known)]
            if new.empty:
                return 0
            self._append_sorted(lib, sym, new)
            version = int(lib.read_metadata(sym).version)
            self._exec_ids[sym] = (version, known | set(new["exec_id"]))
        return len(new)

    def _known_exec_ids(self, lib: Any, sym: str) -> set[str]:
        if not self._has(lib, sym):
            return set()
        version = int(lib.read_metadata(sym).version)
        cached = self._exec_ids.get(sym)
        if cached is not None and cached[0] == version:
            return cached[1]
        df = self._read(lib, sym, columns=["exec_id"])
        ids = set() if df is None else set(df["exec_id"])
        self._exec_ids[sym] = (version, ids)
        return ids

    def fill_exec_ids(self, strategy: str) -> frozenset[str]:
        """Every stored exec_id of the strategy (for reconciling with IB's executions)."""
        sym = check_symbol(strategy, "strategy")
        with self._write_lock:
            return frozenset(self._known_exec_ids(self._rlib(FILLS_LIB), sym))

    def read_fills(self, strategy: str | None = None, since: TimeLike | None = None) -> pd.DataFrame:
        """Fills with ``time >= since`` of one strategy (or all), plus a ``strategy`` column, time-sorted."""
        lib = self._rlib(FILLS_LIB)
        return self._read_all(
            FILLS_LIB, strategy, lambda s: self._read_range(lib, s, sc.FILLS, since, None), sc.FILLS
        )

    # ---- orders: library orders, symbol = strategy ------------------------------------------------

    def append_orders(self, strategy: str, events: Iterable[Mapping[str, Any]]) -> int:
        """Append order state changes (schema ``ORDERS``; each needs ``time``, ``order_id`` and
        ``status``) to the strategy's append-only log. Returns rows written."""
        return self.apply(prepare_orders(strategy, events))

    def read_orders(self, strategy: str | None = None, since: TimeLike | None = None) -> pd.DataFrame:
        """The order-event log (one strategy or all), plus a ``strategy`` column, time-sorted."""
        lib = self._rlib(ORDERS_LIB)
        return self._read_all(
            ORDERS_LIB, strategy, lambda s: self._read_range(lib, s, sc.ORDERS, since, None), sc.ORDERS
        )

    def latest_orders(self, strategy: str | None = None, open_only: bool = False) -> pd.DataFrame:
        """Latest state per (strategy, ``order_id``): the last logged event; ``open_only`` drops
        orders whose status is terminal (Filled, Cancelled, ApiCancelled, Inactive)."""
        events = self.read_orders(strategy)
        if events.empty:
            return events
        last = events.reset_index().groupby(["strategy", "order_id"], sort=False).tail(1)
        out = last.set_index(sc.TIME).sort_index(kind="stable")
        if open_only:
            out = out[~out["status"].isin(sc.TERMINAL_ORDER_STATUSES)]
        return out

    # ---- positions: library positions, symbol = strategy ------------------------------------------

    def write_positions_snapshot(self, strategy: str, df: pd.DataFrame, time: TimeLike) -> None:
        """Record the strategy's whole position set at ``time`` (schema ``POSITIONS``, one row per
        con_id; the frame's index is ignored). An empty frame records "flat" (stored as one marker
        row with con_id 0). A snapshot at an already stored time replaces it."""
        self.apply(prepare_positions_snapshot(strategy, df, time))

    def _snapshot(self, sym: str, at: TimeLike | None) -> pd.DataFrame:
        lib = self._rlib(POSITIONS_LIB)
        if at is None:
            rng = self._range(lib, sym)
            t = None if rng is None else rng[1]
        else:
            times = self._read(lib, sym, date_range=(None, _bound(at, "at")), columns=[])
            t = None if times is None or len(times.index) == 0 else times.index[-1]
        if t is None:
            return sc.empty_frame(sc.POSITIONS)
        rows = self._read(lib, sym, date_range=(t, t))
        return sc.empty_frame(sc.POSITIONS) if rows is None else rows[rows["con_id"] != 0]

    def read_positions(self, strategy: str | None = None, at: TimeLike | None = None) -> pd.DataFrame:
        """The latest snapshot at or before ``at`` (default: the latest) of one strategy (or of each),
        plus a ``strategy`` column; index ``time`` = snapshot time. Flat -> no rows."""
        return self._read_all(POSITIONS_LIB, strategy, lambda s: self._snapshot(s, at), sc.POSITIONS)

    def read_positions_history(
        self, strategy: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pd.DataFrame:
        """All snapshot rows in range (flat markers included: rows with con_id 0)."""
        lib = self._rlib(POSITIONS_LIB)
        return self._read_range(lib, check_symbol(strategy, "strategy"), sc.POSITIONS, start, end)

    # ---- portfolio: library portfolio, symbols account.<acct>, pnl.<name> --------------------------

    def write_portfolio_snapshot(self, account: str, values: Mapping[str, Any], time: TimeLike) -> None:
        """Record one account snapshot (schema ``ACCOUNT``: net_liquidation, total_cash, ...; omitted
        fields are NaN) at ``time``; a snapshot at an already stored time replaces it."""
        self.apply(prepare_portfolio_snapshot(account, values, time))

    def read_portfolio(
        self, account: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pd.DataFrame:
        sym = ACCOUNT_PREFIX + check_symbol(account, "account")
        return self._read_range(self._rlib(PORTFOLIO_LIB), sym, sc.ACCOUNT, start, end)

    def write_daily_pnl(self, name: str, date: Any, values: Mapping[str, Any]) -> None:
        """Upsert the P&L of one day (schema ``DAILY_PNL``) for ``name`` (a strategy, or an account
        for the total). ``date`` (a date, or a time whose local calendar date is taken) is stored
        as UTC midnight of that date."""
        self.apply(prepare_daily_pnl(name, date, values))

    def read_daily_pnl(
        self, name: str, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pd.DataFrame:
        sym = PNL_PREFIX + check_symbol(name, "name")
        return self._read_range(self._rlib(PORTFOLIO_LIB), sym, sc.DAILY_PNL, start, end)

    # ---- universes: library universes, symbols contract.<key>, universe.<name> ---------------------

    def put_contract(self, key: str, contract: Mapping[str, Any]) -> None:
        """Cache a resolved contract (a JSON-serialisable dict) under ``key`` (e.g.
        ``'STK:AAPL:SMART:USD'`` or ``str(con_id)``); replaces any previous entry."""
        sym = CONTRACT_PREFIX + check_symbol(key, "contract key")
        try:
            text = json.dumps(dict(contract), sort_keys=True, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"contract {key!r} is not JSON-serialisable: {exc}") from exc
        now = pd.Timestamp.now(tz="UTC").as_unit("ns")
        frame = pd.DataFrame({"json": [text]}, index=pd.DatetimeIndex([now], name=sc.TIME))
        lib = self.library(UNIVERSES_LIB)
        with self._write_lock:
            self._write_op(f"write {sym}", lib.write, sym, frame)

    def get_contract(self, key: str) -> dict[str, Any] | None:
        """The cached contract dict, or None."""
        sym = CONTRACT_PREFIX + check_symbol(key, "contract key")
        df = self._read(self._rlib(UNIVERSES_LIB), sym)
        if df is None or df.empty:
            return None
        value = json.loads(df["json"].iloc[-1])
        return value if isinstance(value, dict) else None

    def delete_contract(self, key: str) -> None:
        """Forget a cached contract (no error if absent)."""
        sym = CONTRACT_PREFIX + check_symbol(key, "contract key")
        with self._write_lock:
            self.library(UNIVERSES_LIB).delete(sym)

    def list_contracts(self) -> list[str]:
        return self._list_prefixed(CONTRACT_PREFIX)

    def _list_prefixed(self, prefix: str) -> list[str]:
        lib = self._rlib(UNIVERSES_LIB)
        syms = [] if lib is None else lib.list_symbols(regex="^" + re.escape(prefix))
        return sorted(s.removeprefix(prefix) for s in syms)

    def put_universe(self, name: str, symbols: Sequence[str]) -> None:
        """Create or replace universe ``name``: an ordered, non-empty list of distinct instrument
        keys (contract keys or conIds as str)."""
        sym = UNIVERSE_PREFIX + check_symbol(name, "universe name")
        if isinstance(symbols, str):
            raise ValueError(f"universe {name!r}: symbols must be a sequence of str, not a str")
        keys = list(symbols)
        if not keys:
            raise ValueError(f"universe {name!r}: no symbols (delete the universe instead)")
        bad = [k for k in keys if not isinstance(k, str) or not k]
        if bad:
            raise ValueError(f"universe {name!r}: symbols must be non-empty str, got {bad[:5]}")
        dups = sorted({k for k in keys if keys.count(k) > 1})
        if dups:
            raise ValueError(f"universe {name!r}: duplicate symbols {dups[:5]}")
        lib = self.library(UNIVERSES_LIB)
        with self._write_lock:
            self._write_op(f"write {sym}", lib.write, sym, pd.DataFrame({"key": keys}))

    def get_universe(self, name: str) -> list[str]:
        """The universe's keys in order; ``KeyError`` if it does not exist."""
        df = self._read(self._rlib(UNIVERSES_LIB), UNIVERSE_PREFIX + check_symbol(name, "universe name"))
        if df is None:
            raise KeyError(f"no universe {name!r}")
        return [str(k) for k in df["key"]]

    def list_universes(self) -> list[str]:
        return self._list_prefixed(UNIVERSE_PREFIX)

    def delete_universe(self, name: str) -> None:
        """Delete the universe; ``KeyError`` if it does not exist."""
        sym = UNIVERSE_PREFIX + check_symbol(name, "universe name")
        lib = self.library(UNIVERSES_LIB)
        with self._write_lock:
            if not self._has(lib, sym):
                raise KeyError(f"no universe {name!r}")
            lib.delete(sym)

    # ---- maintenance -------------------------------------------------------------------------------

    def compact(self, library: str, symbol: str) -> bool:
        """Rewrite a symbol built from many small appends (ticks, logs) into full-size segments;
        True if it was rewritten. Worth running off-hours on ticks and logs."""
        lib = self._rlib(library)
        with self._write_lock:
            if lib is None or not self._has(lib, symbol):
                return False
            before = int(lib.read_metadata(symbol).version)
            item = self._write_op(f"compact {library}/{symbol}", lib.compact_data, symbol)
        return int(item.version) != before


__all__ = ["Store", "StoreError", "TimeLike", "bars_library", "con_id_symbol"]
