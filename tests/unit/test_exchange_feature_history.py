"""The market-data feature's history side (real-time bars, historical bars with keepUpToDate
and pacing, schedules, head timestamps, historical ticks) against the real ib_async ``Decoder``;
no sockets (see ``tests/unit/exchange_market_harness.py``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.unit.exchange_market_harness import (
    AAPL,
    AAPL_C,
    AAPL_ID,
    ALWAYS,
    NS,
    REAL,
    SATURDAY,
    UNKNOWN,
    WEDNESDAY_RTH,
    Harness,
    RecordingSession,
    errors,
    hist,
    mkt,
    names,
    ticks,
    utc,
)
from trader.exchange.feature_history import bar_fields, encode_bars, parse_end
from trader.exchange.pacing import HistoricalPacing, pacing_of
from trader.exchange.protocol import (
    CancelHeadTimeStamp,
    CancelHistoricalData,
    CancelRealTimeBars,
    ReqHeadTimeStamp,
    ReqHistoricalData,
    ReqHistoricalTicks,
    ReqRealTimeBars,
    encode_historical_data,
)

# -- real-time bars ---------------------------------------------------------------------------------


def test_real_time_bars_when_window_completes_then_5_second_bar_of_the_process() -> None:
    h = Harness(now=WEDNESDAY_RTH + 2 * NS)
    assert h.request(ReqRealTimeBars(1, AAPL_C, 5, "TRADES", False, "")) == []
    bars = []
    for _ in range(11):
        bars += [a for n, a in h.step() if n == "realtimeBar"]
    assert len(bars) == 2
    start = WEDNESDAY_RTH
    expected = h.market.bars(AAPL, start + 5 * NS, "5 S", "5 secs", use_rth=False).rows()[0]
    assert bars[0][1] == start // NS
    assert bars[0][2:] == (
        expected.open,
        expected.high,
        expected.low,
        expected.close,
        expected.volume,
        expected.wap,
        expected.count,
    )
    assert bars[1][1] == start // NS + 5


def test_real_time_bars_when_midpoint_then_no_volume() -> None:
    h = Harness()
    h.request(ReqRealTimeBars(1, AAPL_C, 5, "MIDPOINT", False, ""))
    bars = []
    for _ in range(6):
        bars += [a for n, a in h.step() if n == "realtimeBar"]
    assert bars and bars[0][6] == -1.0 and bars[0][8] == -1


def test_real_time_bars_when_cancelled_or_closed_then_none() -> None:
    h = Harness(REAL, SATURDAY)
    h.request(ReqRealTimeBars(1, AAPL_C, 5, "TRADES", False, ""))
    assert all(h.step() == [] for _ in range(6))
    h = Harness()
    h.request(ReqRealTimeBars(1, AAPL_C, 5, "TRADES", False, ""))
    h.request(CancelRealTimeBars(1))
    assert all(h.step() == [] for _ in range(6))


def test_real_time_bars_when_bad_what_to_show_then_error_names_the_request() -> None:
    (error,) = errors(Harness().request(ReqRealTimeBars(1, AAPL_C, 5, "OPTION_IV", False, "")))
    assert error[1] == 321 and "reqRealTimeBars" in error[2]


# -- historical data --------------------------------------------------------------------------------


def bars_of(calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    assert names(calls)[-1] == "historicalDataEnd", names(calls)
    return [a[1] for n, a in calls if n == "historicalData"]


def test_historical_when_real_hours_one_day_of_minutes_rth_then_390_bars() -> None:
    h = Harness(REAL, SATURDAY)
    bars = bars_of(h.request(hist(1)))
    assert len(bars) == 390
    assert bars[0].date == "20261120 09:30:00 US/Eastern"
    assert bars[-1].date == "20261120 15:59:00 US/Eastern"


def test_historical_when_always_open_day_ending_at_midnight_then_1440_bars() -> None:
    h = Harness(ALWAYS, SATURDAY)
    bars = bars_of(h.request(hist(1, end="20261121 00:00:00 US/Eastern")))
    assert len(bars) == 1440
    assert bars[0].date == "20261120 00:00:00 US/Eastern"


def test_historical_when_format_date_2_then_epoch_seconds() -> None:
    h = Harness(REAL, SATURDAY)
    bars = bars_of(h.request(hist(1, fmt=2)))
    assert bars[0].date == str(utc(2026, 11, 20, 14, 30) // NS)


def test_historical_when_daily_bars_then_dates_and_values_of_the_market() -> None:
    h = Harness(REAL, SATURDAY)
    bars = bars_of(h.request(hist(1, duration="5 D", bar_size="1 day", fmt=2)))
    assert [b.date for b in bars] == ["20261116", "20261117", "20261118", "20261119", "20261120"]
    expected = h.market.bars(AAPL, SATURDAY, "5 D", "1 day", now_ns=SATURDAY).rows()
    assert [(b.open, b.high, b.low, b.close, b.volume, b.barCount) for b in bars] == [
        (e.open, e.high, e.low, e.close, e.volume, e.count) for e in expected
    ]


@pytest.mark.parametrize("what", ["MIDPOINT", "BID", "ASK"])
def test_historical_when_quote_types_then_no_volume(what: str) -> None:
    bars = bars_of(Harness().request(hist(1, what=what, duration="600 S")))
    assert bars and all(b.volume == -1 for b in bars)


def test_historical_when_encoded_column_wise_then_same_as_per_bar_encoder() -> None:
    h = Harness(REAL, SATURDAY)
    series = h.market.bars(AAPL, SATURDAY, "1 D", "5 mins", now_ns=SATURDAY)
    inst = REAL[AAPL]
    fast = h.session
    fast.data += encode_bars(5, series, inst, 1, start="a", end="b")
    slow = RecordingSession(h.core)
    slow.data += encode_historical_data(5, bar_fields(series, inst, 1), "a", "b")
    assert fast.calls() == slow.calls()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SATURDAY),
        ("20261120 16:00:00 US/Eastern", utc(2026, 11, 20, 21)),
        ("20261120 21:00:00 UTC", utc(2026, 11, 20, 21)),
        ("20261120-21:00:00", utc(2026, 11, 20, 21)),
        ("20261120 16:00:00", utc(2026, 11, 20, 21)),
        ("20261120 16:00:00 EST", utc(2026, 11, 20, 21)),
        ("20261120", utc(2026, 11, 21, 4, 59, second=59)),
    ],
)
def test_parse_end_when_tws_formats_then_instant(text: str, expected: int) -> None:
    assert parse_end(text, REAL[AAPL], SATURDAY) == expected


@pytest.mark.parametrize("text", ["2026-11-20", "20261120 25:00:00", "20261120 16:00:00 Mars/Base", "x"])
def test_historical_when_end_malformed_then_error_10314(text: str) -> None:
    (error,) = errors(Harness().request(hist(1, end=text)))
    assert error[1] == 10314


def test_historical_when_end_given_then_bars_end_there() -> None:
    h = Harness(REAL, SATURDAY)
    bars = bars_of(h.request(hist(1, end="20261119 12:00:00 US/Eastern", duration="3600 S", rth=False)))
    assert bars[-1].date == "20261119 11:59:00 US/Eastern"
    assert len(bars) == 60


def test_historical_when_unknown_contract_then_error_200() -> None:
    assert errors(Harness().request(hist(1, contract=UNKNOWN)))[0][1] == 200


def test_historical_when_what_to_show_unsupported_then_error_names_the_request() -> None:
    (error,) = errors(Harness().request(hist(1, what="ADJUSTED_LAST")))
    assert error[1] == 321 and "reqHistoricalData" in error[2] and "ADJUSTED_LAST" in error[2]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"bar_size": "7 mins"}, 321),
        ({"duration": "3 Q"}, 321),
        ({"duration": "10 Y", "bar_size": "1 secs"}, 162),
    ],
)
def test_historical_when_market_refuses_then_its_code_and_text(kwargs: dict[str, Any], code: int) -> None:
    (error,) = errors(Harness().request(hist(1, **kwargs)))
    assert error[1] == code


def test_historical_when_no_data_then_error_162() -> None:
    h = Harness()
    (error,) = errors(h.request(hist(1, end="20000103 12:00:00 US/Eastern")))
    assert error[1] == 162 and "HMDS query returned no data" in error[2]


def test_historical_when_identical_within_15_seconds_then_pacing_error_162() -> None:
    h = Harness()
    assert bars_of(h.request(hist(1, duration="600 S")))
    (error,) = errors(h.request(hist(2, duration="600 S")))
    assert error == (
        2,
        162,
        "Historical Market Data Service error message:Historical data request pacing violation",
    )
    h.now += 15 * NS
    assert bars_of(h.request(hist(3, duration="600 S")))


def test_historical_when_pacing_disabled_then_identical_requests_pass() -> None:
    h = Harness()
    pacing_of(h.core.extensions).enabled = False
    for i in range(3):
        assert bars_of(h.request(hist(i, duration="600 S")))


def test_historical_when_pacing_state_then_exchange_wide_in_core_extensions() -> None:
    h = Harness()
    h.request(hist(1, duration="600 S"))
    assert isinstance(h.core.extensions["pacing"], HistoricalPacing)
    other = RecordingSession(h.core)
    h.feature.handlers[ReqHistoricalData](other, hist(1, duration="600 S"))
    assert errors(other.calls())[0][1] == 162


def test_historical_when_keep_up_to_date_then_updates_of_the_current_bar() -> None:
    h = Harness()
    bars = bars_of(h.request(hist(1, duration="600 S", keep=True)))
    updates = []
    for _ in range(70):
        updates += [a[1] for n, a in h.step() if n == "historicalDataUpdate"]
    assert len(updates) >= 2
    assert updates[-1].date > bars[-1].date
    current = h.market.bars(AAPL, h.now + 1, "600 S", "1 min", use_rth=True, now_ns=h.now).rows()[-1]
    assert (updates[-1].close, updates[-1].high, updates[-1].low) == (
        current.close,
        current.high,
        current.low,
    )
    h.request(CancelHistoricalData(1))
    assert all(h.step() == [] for _ in range(3))


def test_historical_when_keep_up_to_date_daily_then_update_of_today() -> None:
    h = Harness()
    bars = bars_of(h.request(hist(1, duration="2 D", bar_size="1 day", keep=True)))
    (update,) = [a[1] for n, a in h.step(2) if n == "historicalDataUpdate"]
    assert update.date == bars[-1].date == "20261118"
    assert update.close == h.market.last_quote(AAPL, h.now).last


def test_historical_when_keep_up_to_date_with_end_then_error() -> None:
    (error,) = errors(Harness().request(hist(1, end="20261118 10:00:00 US/Eastern", keep=True)))
    assert error[1] == 321 and "live updates" in error[2]


def test_historical_when_schedule_then_sessions_of_the_period() -> None:
    h = Harness(REAL, SATURDAY)
    calls = h.request(hist(1, what="SCHEDULE", duration="3 D", bar_size="1 day"))
    assert names(calls) == ["historicalSchedule"]
    _, start, end, zone, sessions = calls[0][1]
    assert start < end
    assert zone == "US/Eastern"
    assert [s.refDate for s in sessions] == ["20261118", "20261119", "20261120"]
    assert sessions[0].startDateTime == "20261118-09:30:00"


def test_head_timestamp_when_format_1_and_2_then_first_session_of_history() -> None:
    h = Harness(REAL, SATURDAY)
    (call,) = h.request(ReqHeadTimeStamp(1, AAPL_C, True, "TRADES", 1))
    assert call == ("headTimestamp", (1, "20160101 09:30:00 US/Eastern"))  # holidays start in 2025
    (call,) = h.request(ReqHeadTimeStamp(2, AAPL_C, True, "TRADES", 2))
    assert call[1][1] == str(utc(2016, 1, 1, 14, 30) // NS) == str(h.market.head_timestamp(AAPL) // NS)
    assert h.request(CancelHeadTimeStamp(2)) == []


def test_head_timestamp_when_unknown_contract_then_error_200() -> None:
    assert errors(Harness().request(ReqHeadTimeStamp(1, UNKNOWN, True, "TRADES", 1)))[0][1] == 200


def test_requests_when_contract_by_con_id_then_resolved() -> None:
    h = Harness()
    assert bars_of(h.request(hist(1, duration="60 S", contract=AAPL_ID)))
    assert ticks(h.request(mkt(2, replace(AAPL_ID, exchange=""))))


# -- historical ticks -------------------------------------------------------------------------------


def test_historical_ticks_when_end_now_then_last_published_quotes_oldest_first() -> None:
    h = Harness()
    (call,) = h.request(ReqHistoricalTicks(1, AAPL_C, "", "", 10, "TRADES", False, False, ""))
    assert call[0] == "historicalTicksLast"
    req_id, rows, done = call[1]
    assert (req_id, len(rows), done) == (1, 10, True)
    times = [int(r.time.timestamp()) for r in rows]
    assert times == sorted(times) and times[-1] == h.now // NS
    last = h.market.quote_at(AAPL, h.now)
    assert (rows[-1].price, rows[-1].size, rows[-1].exchange) == (last.last, last.lastSize, "NASDAQ")


def test_historical_ticks_when_start_then_forward_from_it() -> None:
    h = Harness(REAL, SATURDAY)
    start = "20261120 09:30:00 US/Eastern"
    (call,) = h.request(ReqHistoricalTicks(1, AAPL_C, start, "", 5, "BID_ASK", True, False, ""))
    assert call[0] == "historicalTicksBidAsk"
    rows = call[1][1]
    assert [int(r.time.timestamp()) for r in rows] == [utc(2026, 11, 20, 14, 30) // NS + i for i in range(5)]
    q = h.market.quote_at(AAPL, utc(2026, 11, 20, 14, 30))
    assert (rows[0].priceBid, rows[0].priceAsk, rows[0].sizeBid, rows[0].sizeAsk) == (
        q.bid,
        q.ask,
        q.bidSize,
        q.askSize,
    )


def test_historical_ticks_when_closed_then_end_of_last_session_only() -> None:
    h = Harness(REAL, SATURDAY)
    (call,) = h.request(ReqHistoricalTicks(1, AAPL_C, "", "", 3, "MIDPOINT", True, False, ""))
    assert call[0] == "historicalTicks"
    rows = call[1][1]
    assert [int(r.time.timestamp()) for r in rows] == [utc(2026, 11, 20, 21) // NS - i for i in (3, 2, 1)]
    assert rows[-1].price == h.market.quote_at(AAPL, utc(2026, 11, 20, 21) - NS).mid


def test_historical_ticks_when_bad_request_then_errors() -> None:
    h = Harness()
    (error,) = errors(h.request(ReqHistoricalTicks(1, AAPL_C, "", "", 3, "ASK", True, False, "")))
    assert error[1] == 321 and "reqHistoricalTicks" in error[2]
    assert (
        errors(h.request(ReqHistoricalTicks(2, UNKNOWN, "", "", 3, "TRADES", True, False, "")))[0][1] == 200
    )
    assert (
        errors(h.request(ReqHistoricalTicks(3, AAPL_C, "x", "", 3, "TRADES", True, False, "")))[0][1] == 10314
    )
