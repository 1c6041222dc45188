"""Indicators: vectorised == incremental == a straightforward reference (loops and rolling apply),
and the per-window cache."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.strategy import (
    Atr,
    Bollinger,
    Ema,
    IndicatorCache,
    Rsi,
    Sma,
    Strategy,
    StrategyRuntime,
    atr,
    bollinger,
    ema,
    rsi,
    sma,
)
from trader.strategy.window import BAR_COLUMNS, RollingWindow

TOL = 1e-9


def walk(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    high = close + rng.uniform(0.0, 1.0, n)
    low = close - rng.uniform(0.0, 1.0, n)
    index = pd.date_range("2026-01-14", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"open": close, "high": high, "low": low, "close": close, "volume": 1.0}, index=index)


def same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= TOL)))


# -- straightforward references ---------------------------------------------------------------------


def ref_sma(s: pd.Series, n: int) -> pd.Series:
    return s.rolling(n).apply(lambda w: sum(w) / len(w), raw=True)


def ref_ema(s: pd.Series, n: int) -> list[float]:
    alpha, out, y = 2.0 / (n + 1), [], math.nan
    for i, x in enumerate(s):
        y = x if i == 0 else alpha * x + (1 - alpha) * y
        out.append(y if i >= n - 1 else math.nan)
    return out


def ref_wilder(values: list[float], n: int) -> list[float]:
    out, avg = [], math.nan
    for i, v in enumerate(values):
        if i == n - 1:
            avg = sum(values[:n]) / n
        elif i >= n:
            avg = (avg * (n - 1) + v) / n
        out.append(avg)
    return out


def ref_rsi(s: pd.Series, n: int) -> list[float]:
    x = s.tolist()
    changes = [x[i] - x[i - 1] for i in range(1, len(x))]
    gains = ref_wilder([max(c, 0.0) for c in changes], n)
    losses = ref_wilder([max(-c, 0.0) for c in changes], n)
    out = [math.nan]
    for g, loss in zip(gains, losses, strict=True):
        if math.isnan(g):
            out.append(math.nan)
        elif g + loss == 0:
            out.append(50.0)
        else:
            out.append(100.0 - 100.0 / (1.0 + g / loss) if loss else 100.0)
    return out


def ref_bollinger(s: pd.Series, n: int, k: float) -> pd.DataFrame:
    mid = ref_sma(s, n)
    std = s.rolling(n).apply(lambda w: math.sqrt(sum((v - w.mean()) ** 2 for v in w) / len(w)), raw=True)
    return pd.DataFrame({"mid": mid, "upper": mid + k * std, "lower": mid - k * std})


def ref_atr(frame: pd.DataFrame, n: int) -> list[float]:
    ranges = []
    for i, (h, lo, _c) in enumerate(zip(frame["high"], frame["low"], frame["close"], strict=True)):
        if i == 0:
            ranges.append(h - lo)
        else:
            prev = frame["close"].iloc[i - 1]
            ranges.append(max(h - lo, abs(h - prev), abs(lo - prev)))
    return ref_wilder(ranges, n)


def incremental(make: Callable[[], Any], values: Any) -> list[Any]:
    indicator = make()
    return [indicator.update(v) for v in values]


# -- vectorised vs incremental vs reference ---------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_sma_when_random_walk_then_vectorised_incremental_and_reference_agree(n: int) -> None:
    close = walk(300)["close"]
    vectorised = sma(close, n)
    assert same(vectorised, ref_sma(close, n))
    assert same(vectorised, incremental(lambda: Sma(n), close))
    assert vectorised.iloc[: n - 1].isna().all()
    assert not math.isnan(vectorised.iloc[n - 1])


@pytest.mark.parametrize("n", [1, 3, 12, 26])
def test_ema_when_random_walk_then_vectorised_incremental_and_reference_agree(n: int) -> None:
    close = walk(300)["close"]
    vectorised = ema(close, n)
    assert same(vectorised, ref_ema(close, n))
    assert same(vectorised, incremental(lambda: Ema(n), close))


@pytest.mark.parametrize("n", [2, 5, 14])
def test_rsi_when_random_walk_then_vectorised_incremental_and_reference_agree(n: int) -> None:
    close = walk(300)["close"]
    vectorised = rsi(close, n)
    assert same(vectorised, ref_rsi(close, n))
    assert same(vectorised, incremental(lambda: Rsi(n), close))
    assert vectorised.iloc[:n].isna().all()
    assert ((vectorised.dropna() >= 0) & (vectorised.dropna() <= 100)).all()


@pytest.mark.parametrize(("n", "k"), [(2, 1.0), (20, 2.0), (50, 2.5)])
def test_bollinger_when_random_walk_then_vectorised_incremental_and_reference_agree(n: int, k: float) -> None:
    close = walk(1500)["close"]  # past the incremental form's exact recomputation (every 1000)
    vectorised = bollinger(close, n, k)
    assert list(vectorised.columns) == ["mid", "upper", "lower"]
    assert same(vectorised, ref_bollinger(close, n, k))
    assert same(vectorised, incremental(lambda: Bollinger(n, k), close))


@pytest.mark.parametrize("n", [1, 5, 14])
def test_atr_when_random_walk_then_vectorised_incremental_and_reference_agree(n: int) -> None:
    frame = walk(300)
    vectorised = atr(frame, n)
    assert same(vectorised, ref_atr(frame, n))
    rows = [row for _, row in frame.iterrows()]
    assert same(vectorised, incremental(lambda: Atr(n), rows))
    dicts = frame[["high", "low", "close"]].to_dict("records")
    assert same(vectorised, incremental(lambda: Atr(n), dicts))


def test_rsi_when_only_rises_or_flat_then_100_or_50() -> None:
    up = pd.Series([float(i) for i in range(30)])
    flat = pd.Series([5.0] * 30)
    assert rsi(up, 14).dropna().eq(100.0).all()
    assert rsi(flat, 14).dropna().eq(50.0).all()
    assert Rsi(14).update(1.0) != Rsi(14).update(1.0)  # NaN before n changes


def test_indicators_when_shorter_than_n_then_all_nan() -> None:
    short = walk(5)
    assert sma(short["close"], 10).isna().all()
    assert rsi(short["close"], 10).isna().all()
    assert atr(short, 10).isna().all()
    assert bollinger(short["close"], 10).isna().all().all()


def test_indicators_when_n_invalid_then_value_error() -> None:
    with pytest.raises(ValueError, match="length"):
        sma(walk(5)["close"], 0)
    with pytest.raises(ValueError, match="length"):
        Ema(0)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(1.0, 1000.0, allow_nan=False), min_size=1, max_size=80),
    n=st.integers(1, 15),
)
def test_incremental_when_any_series_then_equals_vectorised(values: list[float], n: int) -> None:
    s = pd.Series(values)
    assert same(sma(s, n), incremental(lambda: Sma(n), values))
    assert same(ema(s, n), incremental(lambda: Ema(n), values))
    assert same(rsi(s, n), incremental(lambda: Rsi(n), values))
    assert same(bollinger(s, n), incremental(lambda: Bollinger(n), values))


# -- cache ------------------------------------------------------------------------------------------


def test_indicator_cache_when_same_window_version_then_computed_once() -> None:
    window = RollingWindow(BAR_COLUMNS, 100, symbol="AAPL")
    window.append(walk(50))
    cache = IndicatorCache()
    first = cache.indicator(window, "sma", n=10)
    second = cache.indicator(window, "sma", n=10)
    assert second is first
    assert cache.computed == 1
    cache.indicator(window, "sma", n=20)  # other params: computed
    assert cache.computed == 2
    window.append(walk(51).iloc[[-1]])  # a new bar: a new version
    third = cache.indicator(window, "sma", n=10)
    assert third is not first
    assert cache.computed == 3
    assert same(third, sma(window.frame()["close"], 10))
    assert len(cache) == 2  # one entry per (window, name, params)
    cache.forget(window)
    assert len(cache) == 0


def test_indicator_cache_when_unknown_name_then_value_error() -> None:
    window = RollingWindow(BAR_COLUMNS, 10)
    with pytest.raises(ValueError, match="unknown indicator"):
        IndicatorCache().indicator(window, "macd")


def test_strategy_indicator_when_called_twice_in_a_hook_then_computed_once() -> None:
    seen: list[pd.Series] = []

    class Twice(Strategy):
        def on_prices(self, prices: pd.DataFrame) -> None:
            symbol = prices.attrs["symbol"]
            seen.append(self.indicator(symbol, "ema", n=5))
            seen.append(self.indicator(symbol, "ema", n=5))

    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="t")
    runtime.add("twice", Twice(), ["AAPL"], "1 min")
    runtime.start("twice")
    data = walk(20)
    runtime.on_prices("AAPL", "1 min", data)
    assert seen[0] is seen[1]
    assert runtime.indicators.computed == 1
    assert same(seen[0], ema(data["close"], 5))
