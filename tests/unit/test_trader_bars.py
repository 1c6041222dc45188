"""The live bar aggregator of the trader service (pure: the time is passed in), the tick price
of a bar and the subscriptions file."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from trader.ib.market_data import Tick
from trader.service.bars import NS, BarAggregator, BarSize, VolumeCounter, parse_bar_size
from trader.service.market_api import SubscriptionsFile, tick_price

T0 = int(datetime(2026, 1, 14, 15, 30, tzinfo=UTC).timestamp()) * NS  # on every boundary up to 30 mins


def at(seconds: float) -> int:
    return T0 + int(seconds * NS)


@pytest.mark.parametrize(
    ("text", "name", "seconds", "slug"),
    [
        ("5 secs", "5 secs", 5, "5s"),
        ("1 sec", "1 secs", 1, "1s"),  # IB says "1 secs"
        ("30 secs", "30 secs", 30, "30s"),
        ("1 min", "1 min", 60, "1min"),
        ("5 mins", "5 mins", 300, "5min"),
        (" 15  MINS ", "15 mins", 900, "15min"),
        ("1 hour", "1 hour", 3600, "1h"),
        ("4 hours", "4 hours", 14400, "4h"),
        ("1 day", "1 day", 86400, "1day"),
    ],
)
def test_parse_bar_size_when_ib_strings_then_seconds_and_slug(
    text: str, name: str, seconds: int, slug: str
) -> None:
    size = parse_bar_size(text)
    assert size == BarSize(name, seconds)
    assert size.slug == slug


@pytest.mark.parametrize(
    "text", ["", "5", "0 secs", "1 week", "1 month", "7 secs", "7 mins", "2 days", "x mins"]
)
def test_parse_bar_size_when_unknown_or_not_dividing_a_day_then_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="bar size"):
        parse_bar_size(text)


def test_update_when_ticks_in_one_interval_then_ohlcv_closed_by_first_tick_after_end() -> None:
    agg = BarAggregator(parse_bar_size("5 secs"))
    assert agg.update(at(0.2), 10.0, 1) is None
    assert agg.update(at(1.0), 12.0, 2) is None
    assert agg.update(at(3.0), 9.0, 0) is None
    assert agg.update(at(4.999), 11.0, 3) is None
    assert agg.open_bar_end_ns == at(5)
    bar = agg.update(at(5.0), 50.0, 7)  # the boundary belongs to the next bar
    assert bar is not None
    assert (bar.start_ns, bar.open, bar.high, bar.low, bar.close) == (T0, 10.0, 12.0, 9.0, 11.0)
    assert bar.volume == 6 and bar.updates == 4
    assert agg.open_bar_end_ns == at(10)
    nxt = agg.close_due(at(10))
    assert nxt is not None and (nxt.start_ns, nxt.open, nxt.close, nxt.volume) == (at(5), 50.0, 50.0, 7)
    assert agg.bars == 2


def test_bar_boundaries_when_first_tick_mid_interval_then_aligned_to_clock_in_utc() -> None:
    agg = BarAggregator(parse_bar_size("1 min"))
    agg.update(at(37.5), 1.0)
    bar = agg.close_due(at(61))
    assert bar is not None and bar.start_ns == T0
    frame = bar.frame()
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2026-01-14 15:30", tz="UTC")


def test_close_due_when_before_end_then_nothing_and_when_nothing_open_then_nothing() -> None:
    agg = BarAggregator(parse_bar_size("5 secs"))
    assert agg.close_due(at(100)) is None
    agg.update(at(1), 5.0)
    assert agg.close_due(at(4.9)) is None
    assert agg.close_due(at(5)) is not None
    assert agg.close_due(at(6)) is None  # closed once


def test_update_when_intervals_without_ticks_then_skipped_no_flat_bars() -> None:
    agg = BarAggregator(parse_bar_size("5 secs"))
    agg.update(at(1), 5.0)
    bar = agg.update(at(23), 6.0)  # 5..20 s had no tick: no bars for them
    assert bar is not None and bar.start_ns == T0
    last = agg.close_due(at(25))
    assert last is not None and last.start_ns == at(20) and last.open == 6.0
    assert agg.bars == 2


def test_update_when_tick_of_a_closed_bar_then_dropped_as_late() -> None:
    agg = BarAggregator(parse_bar_size("5 secs"))
    agg.update(at(6), 5.0)
    agg.close_due(at(10.1))
    assert agg.update(at(9.9), 99.0) is None  # its bar was already closed by the timer
    assert agg.late == 1 and agg.open_bar_end_ns is None
    agg.update(at(11), 7.0)
    assert agg.update(at(10.5), 1.0) is None  # an out-of-order tick is fine inside the open bar
    bar = agg.close_due(at(15))
    assert bar is not None and (bar.open, bar.low, bar.close) == (7.0, 1.0, 1.0)


@pytest.mark.parametrize("price", [math.nan, 0.0, -1.0])
def test_update_when_no_price_then_ignored(price: float) -> None:
    agg = BarAggregator(parse_bar_size("5 secs"))
    assert agg.update(at(1), price, 10) is None
    assert agg.open_bar_end_ns is None


def test_volume_counter_when_cumulative_then_deltas_first_and_resets_zero() -> None:
    counter = VolumeCounter()
    assert [counter.delta(v) for v in (100, 100, 130, math.nan, 135, 20, 25)] == [0, 0, 30, 0, 5, 0, 5]


def test_subscriptions_file_when_saved_then_loaded_and_when_broken_then_moved_aside(tmp_path: Path) -> None:
    file = SubscriptionsFile(tmp_path / "book")
    assert file.load() is None
    owners = {
        "sma": [{"con_id": 265598, "topic": "AAPL", "contract": {"conId": 265598}, "bar_sizes": ["5 secs"]}]
    }
    file.save(owners)
    loaded = file.load()
    assert loaded is not None and loaded["owners"] == owners
    assert not list((tmp_path / "book").glob("*.tmp"))
    file.path.write_text("{not json", encoding="utf-8")
    assert file.load() is None
    assert not file.path.exists() and len(list((tmp_path / "book").glob("subscriptions.broken-*.json"))) == 1


def _tick(**prices: float) -> Tick:
    fields = {"bid": math.nan, "ask": math.nan, "last": math.nan} | prices
    nan = math.nan
    return Tick(
        1, "AAPL", datetime.now(UTC), fields["bid"], fields["ask"], fields["last"], nan, nan, nan, nan, 1
    )


def test_tick_price_when_trade_then_last_else_mid_else_nan() -> None:
    assert tick_price(_tick(bid=1.0, ask=2.0, last=1.75)) == 1.75
    assert tick_price(_tick(bid=1.0, ask=2.0)) == 1.5
    assert math.isnan(tick_price(_tick(bid=1.0)))
