#!/usr/bin/env python3
"""Store benchmarks: ArcticDB (LMDB) through ``trader.data`` beside a baseline measured in the same run.

    .venv/bin/python bench/store.py                 # everything (about a minute)
    .venv/bin/python bench/store.py ticks bars      # a subset: ticks, bars, writer
    .venv/bin/python bench/store.py --ticks 200000  # smaller tick set

Baseline: the same columns as raw uncompressed NumPy binaries, one file per column: ``np.save`` /
``np.load`` for whole-frame write/read, ``ndarray.tofile`` in append mode for appends, and
``np.load(mmap_mode='r')`` + ``searchsorted`` for a time-range read. That is the disk/memcpy ceiling
with no versioning, no schema, no index, no compression and no multi-process safety; parquet
(needs pyarrow) and pickle are not used. CSV would be 10-50x slower than both and is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trader.data.store import Store
from trader.data.writer import AsyncStoreWriter

Row = tuple[str, int, float, float | None]
T0 = pd.Timestamp("2024-01-02 14:30", tz="UTC")


def timed(fn: Callable[[], Any], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def tick_frame(n: int, start: pd.Timestamp = T0) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    idx = start + pd.to_timedelta(np.cumsum(rng.integers(1, 20_000_000, n)), unit="ns")
    price = 100 + np.cumsum(rng.normal(0, 0.01, n))
    return pd.DataFrame(
        {
            "bid": price - 0.01,
            "bid_size": rng.integers(1, 50, n).astype(float),
            "ask": price + 0.01,
            "ask_size": rng.integers(1, 50, n).astype(float),
            "last": price,
            "last_size": rng.integers(1, 10, n).astype(float),
        },
        index=pd.DatetimeIndex(idx, name="time"),
    )


def bar_frame() -> pd.DataFrame:
    """One year of regular-hours 1-min bars: 252 days x 390 bars."""
    days = pd.bdate_range("2023-01-02", periods=252, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    idx = pd.DatetimeIndex((days.values[:, None] + np.arange(390) * np.timedelta64(1, "m")).ravel(), tz="UTC")
    n = len(idx)
    rng = np.random.default_rng(2)
    close = 100 + np.cumsum(rng.normal(0, 0.05, n))
    return pd.DataFrame(
        {
            "open": close,
            "high": close + 0.1,
            "low": close - 0.1,
            "close": close,
            "volume": rng.integers(100, 10_000, n).astype(float),
            "wap": close,
            "count": rng.integers(1, 500, n),
        },
        index=pd.DatetimeIndex(idx, name="time"),
    )


# ---- the baseline: one raw .npy per column ----------------------------------------------------------


def np_write(df: pd.DataFrame, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "time.npy", np.asarray(df.index.values).view("int64"))
    for c in df.columns:
        np.save(d / f"{c}.npy", df[c].to_numpy())


def np_append(df: pd.DataFrame, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "time.bin", "ab") as f:
        np.asarray(df.index.values).view("int64").tofile(f)
    for c in df.columns:
        with open(d / f"{c}.bin", "ab") as f:
            df[c].to_numpy().tofile(f)


def np_read(d: Path, columns: list[str]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(np.load(d / "time.npy"), tz="UTC", name="time")
    return pd.DataFrame({c: np.load(d / f"{c}.npy") for c in columns}, index=idx)


def np_read_range(d: Path, columns: list[str], lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    t = np.load(d / "time.npy", mmap_mode="r")
    a, b = np.searchsorted(t, lo.value, "left"), np.searchsorted(t, hi.value, "right")
    idx = pd.DatetimeIndex(np.array(t[a:b]), tz="UTC", name="time")
    return pd.DataFrame(
        {c: np.array(np.load(d / f"{c}.npy", mmap_mode="r")[a:b]) for c in columns}, index=idx
    )


# ---- benchmarks -------------------------------------------------------------------------------------


def bench_ticks(root: Path, n: int, out: list[Row]) -> None:
    df = tick_frame(n)
    cols = list(df.columns)
    lo, hi = df.index[n // 2], df.index[n // 2] + pd.Timedelta(hours=1)
    store = Store(f"lmdb://{root / 'arctic'}")
    raw = store.library("bench_raw")
    chunk = 1000
    chunks = [df.iloc[i : i + chunk] for i in range(0, n, chunk)]

    out.append(
        ("ticks write (Store.append_ticks, one call)", n, timed(lambda: store.append_ticks(1, df)), None)
    )
    out.append(("ticks write (raw lib.write)", n, timed(lambda: raw.write("t", df)), None))
    out.append(("  baseline np.save per column", n, timed(lambda: np_write(df, root / "np_ticks")), None))

    def appends() -> None:
        for c in chunks:
            store.append_ticks(2, c)

    def np_appends() -> None:
        for c in chunks:
            np_append(c, root / "np_ticks_app")

    out.append((f"ticks append ({len(chunks)} x {chunk} rows, Store)", n, timed(appends), None))
    out.append((f"  baseline tofile append ({len(chunks)} x {chunk})", n, timed(np_appends), None))
    fragmented = timed(lambda: store.read_ticks(2), 3)
    out.append(("ticks read all (Store, after small appends)", n, fragmented, None))
    out.append(("ticks compact (Store.compact)", n, timed(lambda: store.compact("ticks", "2")), None))
    out.append(("ticks read all (Store)", n, timed(lambda: store.read_ticks(1), 3), None))
    out.append(("ticks read all (raw lib.read)", n, timed(lambda: raw.read("t"), 3), None))
    out.append(("  baseline np.load per column", n, timed(lambda: np_read(root / "np_ticks", cols), 3), None))
    rows = len(store.read_ticks(1, lo, hi))
    out.append(
        ("ticks read 1 hour (Store date range)", rows, timed(lambda: store.read_ticks(1, lo, hi), 3), None)
    )
    out.append(
        (
            "  baseline mmap + searchsorted",
            rows,
            timed(lambda: np_read_range(root / "np_ticks", cols, lo, hi), 3),
            None,
        )
    )


def bench_bars(root: Path, out: list[Row]) -> None:
    df = bar_frame()
    n = len(df)
    cols = list(df.columns)
    store = Store(f"lmdb://{root / 'arctic'}")
    out.append(
        ("bars write 1y 1-min (Store.write_bars)", n, timed(lambda: store.write_bars(1, "1 min", df)), None)
    )
    out.append(("  baseline np.save per column", n, timed(lambda: np_write(df, root / "np_bars")), None))
    last_day = df.iloc[-390:].assign(close=lambda d: d["close"] + 1)
    out.append(
        (
            "bars upsert last day (390, overlapping)",
            390,
            timed(lambda: store.write_bars(1, "1 min", last_day), 3),
            None,
        )
    )
    next_day = last_day.set_axis(last_day.index + pd.Timedelta(days=1))
    out.append(
        (
            "bars upsert next day (390, append path)",
            390,
            timed(lambda: store.write_bars(1, "1 min", next_day)),
            None,
        )
    )
    out.append(("bars read 1y (Store.read_bars)", n, timed(lambda: store.read_bars(1, "1 min"), 3), None))
    out.append(("  baseline np.load per column", n, timed(lambda: np_read(root / "np_bars", cols), 3), None))
    lo, hi = df.index[-390 * 21], df.index[-1]
    rows = len(store.read_bars(1, "1 min", lo, hi))
    out.append(
        (
            "bars read last month (date range)",
            rows,
            timed(lambda: store.read_bars(1, "1 min", lo, hi), 3),
            None,
        )
    )
    out.append(
        (
            "  baseline mmap + searchsorted",
            rows,
            timed(lambda: np_read_range(root / "np_bars", cols, lo, hi), 3),
            None,
        )
    )


def fill_record(k: int) -> dict[str, Any]:
    return {
        "time": T0 + pd.Timedelta(seconds=k),
        "exec_id": f"e{k}",
        "order_id": k,
        "con_id": 1,
        "side": "BOT",
        "shares": 1,
        "price": 1.0,
    }


def bench_writer(root: Path, out: list[Row]) -> None:
    store = Store(f"lmdb://{root / 'arctic'}")
    instruments, per = 50, 400
    n = instruments * per

    async def main() -> None:
        async with AsyncStoreWriter(store, linger_s=0.05) as writer:
            idle: list[float] = []
            for k in range(30):
                f0 = time.perf_counter()
                await writer.write_fill("idle", fill_record(k))
                idle.append(time.perf_counter() - f0)
            lat_ms = sorted(x * 1000 for x in idle)
            out.append(
                (
                    "writer: awaited write_fill, idle (p50, max)",
                    len(idle),
                    statistics.median(idle),
                    lat_ms[-1],
                )
            )

            loaded: list[float] = []
            t = time.perf_counter()
            for k in range(per):
                at = T0 + pd.Timedelta(seconds=k)
                for con_id in range(1, instruments + 1):
                    await writer.append_tick(1000 + con_id, at, bid=100.0 + k, bid_size=5.0)
                if k % 40 == 0:  # a fill now and then, awaited like the trader does
                    f0 = time.perf_counter()
                    await writer.write_fill("loaded", fill_record(k))
                    loaded.append(time.perf_counter() - f0)
                    t -= time.perf_counter() - f0  # producer time excludes the awaited fills
            produced = time.perf_counter() - t
            await writer.flush()
            total = time.perf_counter() - t
            print(f"# writer: {writer.stats}")
        out.append((f"writer: append_tick x {n} ({instruments} symbols), loop side", n, produced, None))
        out.append(("writer: ... until all stored (flush returned)", n, total, None))
        lat_ms = sorted(x * 1000 for x in loaded)
        out.append(
            (
                "writer: awaited write_fill under that load (p50, max)",
                len(loaded),
                statistics.median(loaded),
                lat_ms[-1],
            )
        )

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="*", default=["ticks", "bars", "writer"])
    ap.add_argument("--ticks", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        if "ticks" in args.which:
            bench_ticks(root, args.ticks, rows)
        if "bars" in args.which:
            bench_bars(root, rows)
        if "writer" in args.which:
            bench_writer(root, rows)
    print(f"{'operation':58} {'rows':>9} {'seconds':>9} {'rows/s':>12}")
    for name, n, sec, extra in rows:
        if extra is not None:
            print(f"{name:58} {n:9d} {sec * 1000:8.2f}ms  max {extra:.2f}ms")
        else:
            print(f"{name:58} {n:9d} {sec:9.4f} {n / sec:12,.0f}")


if __name__ == "__main__":
    main()
