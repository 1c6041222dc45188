"""The circuit breaker: trading days in New York across DST, day P&L from a baseline, the day's
peak, one breach a day -> Halt until the next day, CancelScope, FlattenScope."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from trader.risk import CancelScope, FlattenScope, Halt, PnLSnapshot, RiskLimits
from trader.risk.breaker import Breaker, DayTrack, TradingDay, breach

S = 1_000_000_000
NY = ZoneInfo("America/New_York")


def ns(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    """New York wall-clock time as UTC nanoseconds."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()) * S


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()) * S


def test_trading_day_when_before_and_after_17h_then_labelled_today_and_tomorrow() -> None:
    day = TradingDay()
    assert day.label(ns(2026, 11, 20, 16, 59)) == dt.date(2026, 11, 20)
    assert day.label(ns(2026, 11, 20, 17, 0)) == dt.date(2026, 11, 21)
    assert day.start_ns(dt.date(2026, 11, 21)) == ns(2026, 11, 20, 17)


def test_trading_day_when_spring_dst_change_then_day_starts_at_17h_local_both_sides() -> None:
    day = TradingDay("America/New_York", "17:00")
    # 2026-03-08 02:00 EST -> EDT: 17:00 is 22:00 UTC on the 7th and 21:00 UTC on the 8th
    assert day.start_ns(dt.date(2026, 3, 8)) == utc(2026, 3, 7, 22)
    assert day.start_ns(dt.date(2026, 3, 9)) == utc(2026, 3, 8, 21)
    assert day.label(utc(2026, 3, 8, 20, 59)) == dt.date(2026, 3, 8)
    assert day.label(utc(2026, 3, 8, 21, 0)) == dt.date(2026, 3, 9)
    assert day.start_ns(dt.date(2026, 3, 9)) - day.start_ns(dt.date(2026, 3, 8)) == 23 * 3600 * S
    assert day.next_start_ns(utc(2026, 3, 8, 12)) == utc(2026, 3, 8, 21)


def test_trading_day_when_autumn_dst_change_then_the_day_is_25_hours() -> None:
    day = TradingDay()
    # 2026-11-01 02:00 EDT -> EST
    assert day.start_ns(dt.date(2026, 11, 2)) - day.start_ns(dt.date(2026, 11, 1)) == 25 * 3600 * S
    assert day.label(utc(2026, 11, 1, 21, 59)) == dt.date(2026, 11, 1)
    assert day.label(utc(2026, 11, 1, 22, 0)) == dt.date(2026, 11, 2)


def test_trading_day_when_midnight_start_then_label_is_the_local_date() -> None:
    day = TradingDay("Europe/London", "00:00")
    assert day.label(utc(2026, 7, 1, 23, 30)) == dt.date(2026, 7, 2)  # BST
    assert day.next_start_ns(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 23)


def test_observe_when_loss_reaches_limit_then_halt_cancel_flatten_once_a_day() -> None:
    breaker = Breaker(TradingDay())
    limits = RiskLimits(max_daily_loss=1000)
    t = ns(2026, 11, 20, 10)
    assert breaker.observe("account", PnLSnapshot(10_000.0, 0.0), limits, t) == []  # the baseline
    actions = breaker.observe("account", PnLSnapshot(9_500.0, -500.0), limits, t + S)
    reason = (
        "circuit breaker account: max_daily_loss: day loss 1,000 >= limit 1,000 "
        "(realized -500, unrealized -500)"
    )
    assert actions == [
        Halt("account", reason, t + S, ns(2026, 11, 20, 17), "max_daily_loss"),
        CancelScope("account", reason, t + S),
        FlattenScope("account", reason, t + S),
    ]
    assert breaker.observe("account", PnLSnapshot(9_000.0, -500.0), limits, t + 2 * S) == []


def test_observe_when_new_trading_day_then_baseline_resets_and_breaker_rearms() -> None:
    breaker = Breaker(TradingDay())
    limits = RiskLimits(max_daily_loss=1000)
    breaker.observe("account", PnLSnapshot(0.0), limits, ns(2026, 11, 20, 10))
    assert breaker.observe("account", PnLSnapshot(-1500.0), limits, ns(2026, 11, 20, 11))
    # after 17:00 the day starts at -1,500: a further -500 is no breach, -1,000 is
    assert breaker.observe("account", PnLSnapshot(-1500.0), limits, ns(2026, 11, 20, 17, 1)) == []
    assert breaker.observe("account", PnLSnapshot(-2000.0), limits, ns(2026, 11, 20, 18)) == []
    assert breaker.observe("account", PnLSnapshot(-2500.0), limits, ns(2026, 11, 20, 19))


def test_observe_when_fallen_from_the_peak_then_drawdown_breach_names_the_peak() -> None:
    breaker = Breaker(TradingDay())
    limits = RiskLimits(max_drawdown=2000, max_daily_loss=5000)
    t = ns(2026, 11, 20, 10)
    for i, total in enumerate([0.0, 1500.0, 3000.0, 2000.0]):
        assert breaker.observe("strategy:alpha", PnLSnapshot(total), limits, t + i * S) == []
    actions = breaker.observe("strategy:alpha", PnLSnapshot(1000.0), limits, t + 9 * S)
    halt = actions[0]
    assert isinstance(halt, Halt) and halt.rule == "max_drawdown"
    assert halt.reason == (
        "circuit breaker strategy:alpha: max_drawdown: drawdown 2,000 from the day's peak 3,000 "
        ">= limit 2,000 (day P&L 1,000)"
    )
    assert breaker.tracks["strategy:alpha"].peak == 3000.0


def test_observe_when_marks_missing_then_nothing_is_decided() -> None:
    breaker = Breaker(TradingDay())
    limits = RiskLimits(max_daily_loss=1)
    t = ns(2026, 11, 20, 10)
    breaker.observe("account", PnLSnapshot(0.0), limits, t)
    assert breaker.observe("account", PnLSnapshot(-50.0, 0.0, (1,)), limits, t + S) == []
    assert breaker.tracks["account"].tripped == ""


def test_view_when_day_rolled_without_a_sample_then_day_pnl_starts_at_zero() -> None:
    breaker = Breaker(TradingDay())
    breaker.observe("account", PnLSnapshot(100.0), RiskLimits(), ns(2026, 11, 20, 10))
    day, peak = breaker.view("account", PnLSnapshot(-400.0), ns(2026, 11, 20, 12))
    assert (day.total, peak) == (-500.0, 100.0 - 100.0)
    day, peak = breaker.view("account", PnLSnapshot(-400.0), ns(2026, 11, 20, 18))
    assert (day.total, peak) == (0.0, 0.0)


def test_records_when_round_tripped_then_tracks_equal() -> None:
    track = DayTrack(dt.date(2026, 11, 21), 1.0, 2.0, 3.0, PnLSnapshot(4.0, 5.0, (7,)), "tripped")
    assert DayTrack.from_record(track.to_record()) == track
    breaker = Breaker(TradingDay(), {"account": track})
    assert Breaker.tracks_from_record(breaker.to_record()) == {"account": track}


@pytest.mark.parametrize(
    ("total", "peak", "rule"),
    [(-400.0, 0.0, ""), (-1000.0, 0.0, "max_daily_loss"), (0.0, 500.0, "max_drawdown"), (1.0, 500.0, "")],
)
def test_breach_when_pnl_and_peak_then_the_first_breached_rule(total: float, peak: float, rule: str) -> None:
    why = breach(PnLSnapshot(total), peak, RiskLimits(max_daily_loss=1000, max_drawdown=500))
    assert why.partition(":")[0] == rule if rule else why == ""
    assert bool(why) is bool(rule)
