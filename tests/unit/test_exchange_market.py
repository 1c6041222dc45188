"""The synthetic market: deterministic quotes, sessions, history consistent with the live stream."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.exchange.bars import BAR_SIZES, HistoricalDataError
from trader.exchange.instruments import load_universe
from trader.exchange.market import Market, MarketConfig, Quote

NS = 1_000_000_000
UNIVERSE = load_universe()
AAPL = 265598
ES = UNIVERSE.by_symbol("ES", "FUT").conId
EUR = 12087792
MARKET = Market(UNIVERSE)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * NS


RTH = utc(2026, 11, 18, 15, 0)  # Wednesday 10:00 New York
SATURDAY = utc(2026, 11, 21, 15, 0)
TIMES = st.integers(utc(2026, 1, 5), utc(2026, 12, 31))


def on_grid(price: float, tick: float) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-6


# -- quotes -----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(TIMES, st.sampled_from([AAPL, ES, EUR]))
def test_quote_when_queried_twice_on_fresh_markets_then_identical(t: int, con_id: int) -> None:
    assert Market(UNIVERSE).quote_at(con_id, t) == MARKET.quote_at(con_id, t)


def test_quote_when_seed_differs_then_prices_differ() -> None:
    other = Market(UNIVERSE, MarketConfig(seed=2))
    assert other.quote_at(AAPL, RTH).bid != MARKET.quote_at(AAPL, RTH).bid


def test_quotes_when_queried_in_any_order_then_the_same() -> None:
    times = [RTH + k * 7919 * NS for k in range(20)]
    forward = [Market(UNIVERSE).quote_at(AAPL, t) for t in times]
    market = Market(UNIVERSE)
    backward = [market.quote_at(AAPL, t) for t in reversed(times)]
    assert forward == list(reversed(backward))


@settings(max_examples=40, deadline=None)
@given(TIMES, st.sampled_from([AAPL, ES, EUR]))
def test_quote_when_generated_then_on_the_tick_grid_with_a_positive_spread(t: int, con_id: int) -> None:
    inst = UNIVERSE[con_id]
    q = MARKET.quote_at(con_id, t)
    assert all(on_grid(p, inst.minTick) for p in (q.bid, q.ask, q.last))
    spread_ticks = round((q.ask - q.bid) / inst.minTick)
    assert spread_ticks in (inst.spreadTicks, inst.spreadTicks + 1)
    assert q.last in (q.bid, q.ask)
    assert q.mid == pytest.approx((q.bid + q.ask) / 2)
    assert q.bidSize >= 1 and q.askSize >= 1 and q.lastSize >= 1


def test_advance_when_market_open_then_one_quote_per_instrument_and_step() -> None:
    market = Market(UNIVERSE)
    quotes = market.advance(RTH)
    assert {q.conId for q in quotes} == {i.conId for i in UNIVERSE}
    assert market.advance(RTH + NS // 2) == []
    assert len(market.advance(RTH + NS)) == len(UNIVERSE)


def test_advance_when_weekend_then_no_quotes_but_marks_from_the_last_close() -> None:
    market = Market(UNIVERSE)
    assert market.advance(SATURDAY) == []
    friday_close = utc(2026, 11, 21, 1, 0)  # Friday 20:00 New York: end of the extended session
    last = market.last_quote(AAPL, SATURDAY)
    assert last.step == (friday_close - NS) // NS
    assert last.bid == market.quote_at(AAPL, friday_close - NS).bid
    assert market.mark(AAPL, SATURDAY) == last.mid


def test_advance_when_only_futures_open_then_stocks_are_silent() -> None:
    sunday_evening = utc(2026, 11, 23, 0, 0)  # Sunday 18:00 Chicago
    con_ids = {q.conId for q in Market(UNIVERSE).advance(sunday_evening)}
    assert ES in con_ids and EUR in con_ids and AAPL not in con_ids


def test_advance_when_tick_rate_is_half_per_second_then_a_quote_every_two_seconds() -> None:
    market = Market(UNIVERSE, MarketConfig(tick_rate=0.5))
    counts = [len(market.advance(RTH + k * NS, [AAPL])) for k in range(10)]
    assert counts == [1, 0] * 5


def test_volume_when_streaming_then_cumulative_in_the_session_and_equal_to_snapshots() -> None:
    market = Market(UNIVERSE)
    volumes = [market.advance(RTH + k * NS, [AAPL])[0].volume for k in range(5)]
    assert volumes == sorted(volumes) and volumes[0] > 0
    assert volumes[-1] == market.quote_at(AAPL, RTH + 4 * NS).volume
    sizes = [market.quote_at(AAPL, RTH + k * NS).lastSize for k in range(1, 5)]
    assert volumes[-1] - volumes[0] == sum(sizes)


def test_halt_when_set_then_no_quotes_until_resumed() -> None:
    market = Market(UNIVERSE)
    market.halt(AAPL, RTH)
    assert AAPL not in {q.conId for q in market.advance(RTH)}
    assert not market.is_open(AAPL, RTH) and market.is_halted(AAPL)
    assert market.last_quote(AAPL, RTH + 60 * NS).step == RTH // NS
    market.resume(AAPL)
    assert AAPL in {q.conId for q in market.advance(RTH + NS)}


def test_shock_when_applied_then_the_price_jumps_and_the_process_continues_from_there() -> None:
    market = Market(UNIVERSE)
    before = market.quote_at(AAPL, RTH)
    later_unshocked = market.quote_at(AAPL, RTH + 600 * NS)
    market.shock(AAPL, 10.0, RTH)
    after = market.advance(RTH, [AAPL])[0]
    assert after.mid == pytest.approx(before.mid * 1.1, abs=0.02)
    assert market.quote_at(AAPL, RTH + 600 * NS).mid == pytest.approx(later_unshocked.mid * 1.1, abs=0.02)
    assert market.quote_at(AAPL, RTH - NS) == Market(UNIVERSE).quote_at(AAPL, RTH - NS)
    bars = market.bars(AAPL, RTH + 60 * NS, "120 S", "1 min", what_to_show="MIDPOINT")
    assert bars.close[-1] == pytest.approx(market.quote_at(AAPL, RTH + 59 * NS).mid)


def test_state_when_saved_and_loaded_then_shocks_and_halts_survive() -> None:
    market = Market(UNIVERSE)
    market.shock(ES, -3.0, RTH)
    market.halt(AAPL, RTH)
    other = Market(UNIVERSE)
    other.load_dict(market.to_dict())
    assert other.quote_at(ES, RTH) == market.quote_at(ES, RTH)
    assert other.is_halted(AAPL)


@pytest.mark.parametrize(
    "kwargs", [{"step_ms": 7}, {"tick_rate": 0}, {"volatility_multiplier": 0}, {"seed": -1}, {"anchor": "x"}]
)
def test_config_when_invalid_then_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MarketConfig(**kwargs)  # type: ignore[arg-type]


def test_volatility_when_measured_on_minute_midpoints_then_close_to_the_instrument_and_multiplier() -> None:
    def realized(market: Market) -> float:
        bars = market.bars(AAPL, RTH, "5 D", "1 min", what_to_show="MIDPOINT", use_rth=False)
        contiguous = np.diff(bars.time_ns) == 60 * NS
        returns = np.diff(np.log(bars.close))[contiguous]
        return float(np.std(returns) * math.sqrt(365.25 * 24 * 60))

    base = realized(MARKET)
    assert base == pytest.approx(UNIVERSE[AAPL].volatility, rel=0.3)
    assert realized(Market(UNIVERSE, MarketConfig(volatility_multiplier=3.0))) == pytest.approx(
        3 * base, rel=0.3
    )


# -- history ----------------------------------------------------------------------------------------


def test_bars_when_one_day_of_minutes_in_rth_then_390_bars_from_the_open() -> None:
    end = utc(2026, 11, 18, 21, 0)
    bars = MARKET.bars(AAPL, end, "1 D", "1 min")
    assert len(bars) == 390
    frame = bars.to_frame()
    assert frame.index[0] == datetime(2026, 11, 18, 14, 30, tzinfo=UTC)
    assert frame.index[-1] == datetime(2026, 11, 18, 20, 59, tzinfo=UTC)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert ((frame["wap"] >= frame["low"]) & (frame["wap"] <= frame["high"])).all()
    assert (frame["count"] == 60).all()


def test_bars_when_extended_hours_then_960_minutes() -> None:
    assert len(MARKET.bars(AAPL, utc(2026, 11, 19, 1, 0), "1 D", "1 min", use_rth=False)) == 960


def test_bars_when_hourly_in_rth_then_the_first_bar_starts_at_the_open() -> None:
    bars = MARKET.bars(AAPL, utc(2026, 11, 18, 21, 0), "1 D", "1 hour").to_frame()
    assert [t.strftime("%H:%M") for t in bars.index] == [
        "14:30",
        "15:00",
        "16:00",
        "17:00",
        "18:00",
        "19:00",
        "20:00",
    ]
    assert list(bars["count"]) == [1800] + [3600] * 6


def test_daily_bar_when_compared_with_minutes_then_it_aggregates_them() -> None:
    end = utc(2026, 11, 19, 2, 0)
    minutes = MARKET.bars(AAPL, end, "1 D", "1 min")
    day = MARKET.bars(AAPL, end, "1 D", "1 day")
    assert len(day) == 1 and day.dates == (date(2026, 11, 18),)
    assert day.open[0] == minutes.open[0] and day.close[0] == minutes.close[-1]
    assert day.high[0] == minutes.high.max() and day.low[0] == minutes.low.min()
    assert day.volume[0] == minutes.volume.sum()
    row = day.rows()[0]
    assert row.date == date(2026, 11, 18) and row.count == 23400


def test_daily_bars_when_n_days_then_n_sessions_skipping_weekends_and_holidays() -> None:
    bars = MARKET.bars(AAPL, utc(2026, 11, 28, 12, 0), "5 D", "1 day")
    assert bars.dates == (
        date(2026, 11, 20),
        date(2026, 11, 23),
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 27),
    )


def test_weekly_and_monthly_bars_when_requested_then_group_the_daily_bars() -> None:
    end = utc(2026, 11, 21, 12, 0)
    days = MARKET.bars(AAPL, end, "2 M", "1 day")
    weeks = MARKET.bars(AAPL, end, "2 M", "1 week")
    months = MARKET.bars(AAPL, end, "2 M", "1 month")
    assert weeks.volume.sum() == days.volume.sum() == months.volume.sum()
    assert weeks.high.max() == days.high.max() and months.low.min() == days.low.min()
    assert [d.month for d in months.dates] == [9, 10, 11]
    assert all(d.weekday() == 0 for d in weeks.dates[1:-1])


@pytest.mark.parametrize("what", ["MIDPOINT", "BID", "ASK"])
def test_bars_when_not_trades_then_no_volume(what: str) -> None:
    bars = MARKET.bars(AAPL, RTH, "600 S", "1 min", what_to_show=what)
    assert (bars.volume == -1).all() and (bars.count == -1).all() and (bars.wap == -1).all()


def test_bid_ask_and_midpoint_bars_when_compared_then_ordered() -> None:
    bid = MARKET.bars(AAPL, RTH, "1800 S", "5 mins", what_to_show="BID")
    ask = MARKET.bars(AAPL, RTH, "1800 S", "5 mins", what_to_show="ASK")
    mid = MARKET.bars(AAPL, RTH, "1800 S", "5 mins", what_to_show="MIDPOINT")
    assert (bid.close < ask.close).all()
    assert np.allclose(mid.close, (bid.close + ask.close) / 2)


@pytest.mark.parametrize("bar_size", BAR_SIZES)
def test_bars_when_any_ib_bar_size_then_bars_are_produced(bar_size: str) -> None:
    duration = {"1 week": "3 M", "1 month": "1 Y"}.get(bar_size, "2 D" if "sec" not in bar_size else "1800 S")
    bars = MARKET.bars(EUR, RTH, duration, bar_size, what_to_show="MIDPOINT")
    assert len(bars) >= 1
    assert (bars.high >= bars.low).all()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"bar_size": "7 mins"}, 321),
        ({"duration": "1 Q"}, 321),
        ({"duration": "1D"}, 321),
        ({"what_to_show": "OPTION_IMPLIED_VOLATILITY"}, 321),
        ({"duration": "30 D", "bar_size": "1 secs"}, 162),
        ({"end": SATURDAY, "duration": "3600 S"}, 162),
        ({"con_id": 1}, 200),
    ],
)
def test_bars_when_request_is_bad_then_tws_error(kwargs: dict[str, object], code: int) -> None:
    args: dict[str, object] = {"con_id": AAPL, "end": RTH, "duration": "1 D", "bar_size": "1 min"}
    args.update(kwargs)
    with pytest.raises(HistoricalDataError) as info:
        MARKET.bars(
            args["con_id"],  # type: ignore[arg-type]
            args["end"],  # type: ignore[arg-type]
            args["duration"],  # type: ignore[arg-type]
            args["bar_size"],  # type: ignore[arg-type]
            what_to_show=str(args.get("what_to_show", "TRADES")),
        )
    assert info.value.code == code


def test_bars_when_end_is_in_the_future_then_clamped_to_now() -> None:
    bars = MARKET.bars(AAPL, RTH + 3600 * NS, "1 D", "1 min", now_ns=RTH)
    assert bars.time_ns[-1] == RTH


def test_head_timestamp_when_asked_then_the_first_session_of_history_and_nothing_earlier() -> None:
    market = Market(UNIVERSE, MarketConfig(history_start="2026-03-08"))  # a Sunday
    head = market.head_timestamp(AAPL)
    assert head == utc(2026, 3, 9, 13, 30)  # Monday 09:30 New York, daylight saving time since Sunday
    assert market.head_timestamp(AAPL, use_rth=False) == utc(2026, 3, 9, 8, 0)
    bars = market.bars(AAPL, utc(2026, 3, 10), "1 M", "1 day")
    assert bars.dates == (date(2026, 3, 9),)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 6 * 3600 - 120), st.sampled_from([AAPL, ES, EUR]))
def test_history_when_compared_with_the_live_stream_then_continuous_at_the_boundary(
    offset: int, con_id: int
) -> None:
    now = utc(2026, 11, 18, 14, 40) + offset * NS
    market = Market(UNIVERSE)
    history = market.bars(con_id, now, "60 S", "1 secs", now_ns=now)
    assert history.time_ns[-1] == now - NS
    assert history.close[-1] == market.quote_at(con_id, now - NS).last
    live: list[Quote] = []
    for k in range(60):
        live += market.advance(now + k * NS, [con_id])
    assert [q.step for q in live] == list(range(now // NS, now // NS + 60))
    after = market.bars(con_id, now + 60 * NS, "120 S", "1 secs")
    assert list(after.close[-60:]) == [q.last for q in live]
    assert list(after.close[:60]) == list(history.close)
    minute = market.bars(con_id, now + 60 * NS, "60 S", "1 secs", what_to_show="MIDPOINT")
    assert list(minute.close) == [q.mid for q in live]


def test_session_stats_when_streaming_then_match_the_day_so_far_and_the_previous_close() -> None:
    market = Market(UNIVERSE)
    stats = market.session_stats(AAPL, RTH)
    day = market.bars(AAPL, RTH + NS, "1 D", "1 min", use_rth=False)
    previous = market.bars(AAPL, utc(2026, 11, 18, 6), "1 D", "1 day", use_rth=False)
    assert (stats.open, stats.high, stats.low) == (day.open[0], day.high.max(), day.low.min())
    assert stats.volume == market.quote_at(AAPL, RTH).volume == day.volume.sum()
    assert stats.close == previous.close[-1]
