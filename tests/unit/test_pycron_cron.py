"""pycron cron expressions and maintenance windows: parsing, next fire across DST, missed runs, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycron.cron import CronError, fires_between, missed_runs, next_fire, parse_cron
from pycron.windows import in_window, next_window_change, parse_duration, parse_window

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
TOKYO = ZoneInfo("Asia/Tokyo")
SYDNEY = ZoneInfo("Australia/Sydney")
ZONES = [NEW_YORK, LONDON, TOKYO, SYDNEY]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    year, month, day, hour, minute, second = (*args, 0, 0, 0)[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=tz, fold=fold)


def walls(fires: list[datetime], tz: ZoneInfo) -> list[str]:
    return [f.astimezone(tz).strftime("%m-%d %H:%M:%S %Z") for f in fires]


def series(expr: str, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    fires = []
    for _ in range(count):
        after = next_fire(expr, after, tz)
        fires.append(after)
    return fires


# --- parsing -------------------------------------------------------------------------------------


def test_parse_when_five_fields_then_seconds_zero_and_sets_expanded() -> None:
    cron = parse_cron("*/15 9-17 1,15 JAN-mar mon-FRI")
    assert cron.seconds == {0}
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == set(range(9, 18))
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert not cron.days_star and not cron.weekdays_star


def test_parse_when_six_fields_then_first_is_seconds() -> None:
    cron = parse_cron("10,40 0 12 * * *")
    assert cron.seconds == {10, 40}
    assert cron.minutes == {0}
    assert cron.hours == {12}


def test_parse_when_range_with_step_or_start_with_step_then_stepped() -> None:
    assert parse_cron("1-30/5 * * * *").minutes == {1, 6, 11, 16, 21, 26}
    assert parse_cron("50/5 * * * *").minutes == {50, 55}
    assert parse_cron("* */6 * * *").hours == {0, 6, 12, 18}


def test_parse_when_sunday_is_0_or_7_or_name_then_same() -> None:
    assert parse_cron("0 0 * * 0").weekdays == parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("0 0 * * sun").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == {5, 6, 0}


def test_parse_when_month_names_any_case_then_numbers() -> None:
    assert parse_cron("0 0 1 jan,Jun,DEC *").months == {1, 6, 12}


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_parse_when_macro_then_equivalent_fields(macro: str, equivalent: str) -> None:
    a, b = parse_cron(macro), parse_cron(equivalent)
    assert (a.seconds, a.minutes, a.hours, a.days, a.months, a.weekdays) == (
        b.seconds,
        b.minutes,
        b.hours,
        b.days,
        b.months,
        b.weekdays,
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * * 8", "day-of-week: 8 out of range 0-7"),
        ("60 * * * *", "minute: 60 out of range 0-59"),
        ("* 24 * * *", "hour: 24 out of range 0-23"),
        ("* * 0 * *", "day-of-month: 0 out of range 1-31"),
        ("* * * 13 *", "month: 13 out of range 1-12"),
        ("61 * * * * *", "second: 61 out of range 0-59"),
        ("* * * FOO *", "month: invalid value 'FOO'"),
        ("* * * * MON-XYZ", "day-of-week: invalid value 'XYZ'"),
        ("*/0 * * * *", "minute: invalid step '0' in '*/0'"),
        ("5-1 * * * *", "minute: range 5-1 is reversed"),
        ("1,,2 * * * *", "minute: empty item in '1,,2'"),
        ("* * *", "expression: expected 5 or 6 fields, got 3"),
        ("* * * * * * *", "expression: expected 5 or 6 fields, got 7"),
        ("@reboot", "macro: unknown '@reboot'"),
        ("0 0 30 2 *", "day-of-month: 30 never occurs"),
        ("-1 * * * *", "minute: invalid value ''"),
    ],
)
def test_parse_when_invalid_then_one_line_error_naming_field_and_value(expr: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_parse_when_parsed_then_frozen() -> None:
    cron = parse_cron("0 0 * * *")
    with pytest.raises(AttributeError):
        cron.source = "x"  # type: ignore[misc]


# --- next fire: common expressions ---------------------------------------------------------------


def test_next_fire_when_every_15_minutes_then_next_quarter_strictly_after() -> None:
    after = local(TOKYO, 2026, 5, 1, 10, 15)
    assert next_fire("*/15 * * * *", after, TOKYO) == local(TOKYO, 2026, 5, 1, 10, 30)
    assert next_fire("*/15 * * * *", after - timedelta(microseconds=1), TOKYO) == after


def test_next_fire_when_result_then_aware_utc() -> None:
    fire = next_fire("0 9 * * *", local(TOKYO, 2026, 5, 1, 10), TOKYO)
    assert fire.tzinfo is UTC
    assert fire == datetime(2026, 5, 2, 0, 0, tzinfo=UTC)


def test_next_fire_when_weekdays_only_then_skips_weekend() -> None:
    friday_evening = local(NEW_YORK, 2026, 5, 1, 18)
    assert next_fire("30 9 * * MON-FRI", friday_evening, NEW_YORK) == local(NEW_YORK, 2026, 5, 4, 9, 30)


def test_next_fire_when_seconds_field_then_fires_at_that_second() -> None:
    after = local(LONDON, 2026, 7, 1, 12, 0, 10)
    assert next_fire("10,40 * * * * *", after, LONDON) == local(LONDON, 2026, 7, 1, 12, 0, 40)


def test_next_fire_when_month_end_then_rolls_into_next_year() -> None:
    after = local(SYDNEY, 2026, 12, 31, 23, 59, 59)
    assert next_fire("@yearly", after, SYDNEY) == local(SYDNEY, 2027, 1, 1)
    assert next_fire("0 0 31 * *", local(SYDNEY, 2026, 4, 1), SYDNEY) == local(SYDNEY, 2026, 5, 31)


def test_next_fire_when_feb_29_then_next_leap_year_far_ahead() -> None:
    assert next_fire("0 0 29 2 *", local(TOKYO, 2026, 1, 1), TOKYO) == local(TOKYO, 2028, 2, 29)
    assert next_fire("0 0 29 2 *", local(TOKYO, 9000, 3, 1), TOKYO) == local(TOKYO, 9004, 2, 29)


def test_next_fire_when_nothing_before_year_10000_then_cron_error() -> None:
    with pytest.raises(CronError, match="no fire time"):
        next_fire("0 0 29 2 *", local(TOKYO, 9997, 3, 1), TOKYO)


def test_next_fire_when_after_is_naive_then_value_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire("* * * * *", datetime(2026, 1, 1), TOKYO)


def test_next_fire_when_both_day_fields_restricted_then_either_matches() -> None:
    # Vixie: the 13th OR any Friday. 2026-02-06 is a Friday, before the 13th.
    fires = series("0 0 13 * FRI", local(TOKYO, 2026, 2, 1), TOKYO, 4)
    assert walls(fires, TOKYO) == [
        "02-06 00:00:00 JST",
        "02-13 00:00:00 JST",
        "02-20 00:00:00 JST",
        "02-27 00:00:00 JST",
    ]
    assert next_fire("0 0 13 * FRI", local(TOKYO, 2026, 3, 12), TOKYO) == local(TOKYO, 2026, 3, 13)
    assert next_fire("0 0 29 2 MON", local(TOKYO, 2026, 1, 1), TOKYO) == local(TOKYO, 2026, 2, 2)


def test_next_fire_when_one_day_field_is_star_then_both_must_match() -> None:
    assert next_fire("0 0 * * FRI", local(TOKYO, 2026, 2, 1), TOKYO) == local(TOKYO, 2026, 2, 6)
    assert next_fire("0 0 13 * *", local(TOKYO, 2026, 2, 1), TOKYO) == local(TOKYO, 2026, 2, 13)
    # '*/2' starts with '*' so it counts as unrestricted (AND): odd days that are Fridays.
    assert next_fire("0 0 */2 * FRI", local(TOKYO, 2026, 2, 1), TOKYO) == local(TOKYO, 2026, 2, 13)


# --- next fire: DST --------------------------------------------------------------------------------


def test_next_fire_when_new_york_spring_gap_then_fires_at_gap_end_once() -> None:
    fires = series("*/30 * * * *", local(NEW_YORK, 2026, 3, 8, 1), NEW_YORK, 4)
    assert walls(fires, NEW_YORK) == [
        "03-08 01:30:00 EST",
        "03-08 03:00:00 EDT",
        "03-08 03:30:00 EDT",
        "03-08 04:00:00 EDT",
    ]


def test_next_fire_when_daily_job_in_spring_gap_then_runs_that_day_at_gap_end() -> None:
    fires = series("30 2 * * *", local(NEW_YORK, 2026, 3, 7, 12), NEW_YORK, 3)
    assert walls(fires, NEW_YORK) == ["03-08 03:00:00 EDT", "03-09 02:30:00 EDT", "03-10 02:30:00 EDT"]
    assert fires[0] == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_next_fire_when_new_york_fall_back_then_repeated_hour_fires_once() -> None:
    fires = series("0,30 * * * *", local(NEW_YORK, 2026, 11, 1, 0, 45), NEW_YORK, 4)
    assert walls(fires, NEW_YORK) == [
        "11-01 01:00:00 EDT",
        "11-01 01:30:00 EDT",
        "11-01 02:00:00 EST",
        "11-01 02:30:00 EST",
    ]


def test_next_fire_when_after_is_in_second_occurrence_then_skips_to_after_repeat() -> None:
    second_occurrence = local(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)
    assert next_fire("* * * * * *", second_occurrence, NEW_YORK) == local(NEW_YORK, 2026, 11, 1, 2, 0)
    assert next_fire("30 1 * * *", second_occurrence, NEW_YORK) == local(NEW_YORK, 2026, 11, 2, 1, 30)


def test_next_fire_when_london_spring_forward_then_gap_end() -> None:
    # 2026-03-29 01:00 GMT -> 02:00 BST: 01:30 does not exist.
    fires = series("30 1 * * *", local(LONDON, 2026, 3, 28, 12), LONDON, 2)
    assert walls(fires, LONDON) == ["03-29 02:00:00 BST", "03-30 01:30:00 BST"]


def test_next_fire_when_london_fall_back_then_first_occurrence_only() -> None:
    # 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 happens twice.
    fires = series("30 1 * * *", local(LONDON, 2026, 10, 24, 12), LONDON, 2)
    assert walls(fires, LONDON) == ["10-25 01:30:00 BST", "10-26 01:30:00 GMT"]
    assert fires[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_next_fire_when_tokyo_then_fixed_nine_hour_offset_all_year() -> None:
    for month in (1, 3, 7, 11):
        fire = next_fire("0 9 * * *", datetime(2026, month, 1, tzinfo=UTC), TOKYO)
        assert fire == datetime(2026, month, 2, 0, 0, tzinfo=UTC)


def test_next_fire_when_sydney_dst_starts_in_october_then_gap_end() -> None:
    # Southern hemisphere: 2026-10-04 02:00 AEST -> 03:00 AEDT; DST ends 2026-04-05 03:00 -> 02:00.
    assert walls(series("30 2 * * *", local(SYDNEY, 2026, 10, 3, 12), SYDNEY, 2), SYDNEY) == [
        "10-04 03:00:00 AEDT",
        "10-05 02:30:00 AEDT",
    ]
    assert walls(series("30 2 * * *", local(SYDNEY, 2026, 4, 4, 12), SYDNEY, 2), SYDNEY) == [
        "04-05 02:30:00 AEDT",
        "04-06 02:30:00 AEST",
    ]


@pytest.mark.parametrize("tz", ZONES, ids=str)
def test_next_fire_when_daily_over_a_year_then_every_day_exactly_once(tz: ZoneInfo) -> None:
    for expr in ("30 2 * * *", "30 1 * * *", "0 0 * * *"):
        fires = fires_between(expr, tz, local(tz, 2026, 1, 1), local(tz, 2027, 1, 1))
        days = [f.astimezone(tz).date() for f in fires]
        assert len(days) == 365 == len(set(days)), expr


_FIELD_CHOICES = {
    "minute": st.sampled_from(["*", "0", "30", "*/15", "0,30", "5-20/5", "59", "*/7"]),
    "hour": st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2", "23", "0,12"]),
    "dom": st.sampled_from(["*", "1", "15", "31", "1-7", "*/3", "29"]),
    "month": st.sampled_from(["*", "3", "10,11", "MAR-APR", "*/2", "FEB"]),
    "dow": st.sampled_from(["*", "0", "SUN", "MON-FRI", "6,0", "*/2", "3"]),
}


def _valid(expr: str) -> bool:
    try:
        parse_cron(expr)
    except CronError:
        return False
    return True


_expressions = st.tuples(*_FIELD_CHOICES.values()).map(" ".join).filter(_valid)


def _is_gap_end(fire: datetime, tz: ZoneInfo) -> bool:
    before, at = (fire - timedelta(seconds=1)).astimezone(tz), fire.astimezone(tz)
    return before.utcoffset() != at.utcoffset() and at.replace(tzinfo=None) > before.replace(tzinfo=None)


@settings(max_examples=150, deadline=None)
@given(
    expr=_expressions,
    tz=st.sampled_from(ZONES),
    start=st.datetimes(
        min_value=datetime(2025, 6, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC)
    ),
)
def test_next_fire_when_called_repeatedly_then_strictly_increasing_and_matching(
    expr: str, tz: ZoneInfo, start: datetime
) -> None:
    cron = parse_cron(expr)
    fires = series(expr, start, tz, 25)
    assert all(a < b for a, b in zip([start, *fires], fires, strict=False))
    for fire in fires:
        wall = fire.astimezone(tz)
        assert cron.matches(wall) or _is_gap_end(fire, tz), (expr, wall)
        assert wall.fold == 0 or wall.utcoffset() == wall.replace(fold=0).utcoffset()  # first occurrence


def _brute_force(expr: str, tz: ZoneInfo, start: datetime, minutes: int) -> list[datetime]:
    """Oracle: scan UTC minutes; a wall match fires on its first occurrence, gap matches at gap end."""
    cron = parse_cron(expr)
    fires = []
    t = start.replace(second=0, microsecond=0)
    for _ in range(minutes):
        t += timedelta(minutes=1)
        wall = t.astimezone(tz)
        naive = wall.replace(tzinfo=None)
        first_occurrence = wall.fold == 0 or wall.utcoffset() == wall.replace(fold=0).utcoffset()
        if cron.matches(naive) and first_occurrence:
            fires.append(t)
        elif _is_gap_end(t, tz):
            previous = (t - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
            skipped = naive - previous - timedelta(seconds=1)
            gap = (previous + timedelta(minutes=m + 1) for m in range(int(skipped.total_seconds()) // 60))
            if any(cron.matches(w.replace(second=0)) for w in gap):
                fires.append(t)
    return fires


_TRANSITIONS = [
    (NEW_YORK, datetime(2026, 3, 8, 7, tzinfo=UTC)),
    (NEW_YORK, datetime(2026, 11, 1, 6, tzinfo=UTC)),
    (LONDON, datetime(2026, 3, 29, 1, tzinfo=UTC)),
    (LONDON, datetime(2026, 10, 25, 1, tzinfo=UTC)),
    (SYDNEY, datetime(2026, 4, 4, 16, tzinfo=UTC)),
    (SYDNEY, datetime(2026, 10, 3, 16, tzinfo=UTC)),
]


@settings(max_examples=60, deadline=None)
@given(
    minute=_FIELD_CHOICES["minute"],
    hour=_FIELD_CHOICES["hour"],
    transition=st.sampled_from(_TRANSITIONS),
    offset_minutes=st.integers(min_value=-600, max_value=120),
)
def test_fires_between_when_around_dst_then_equals_minute_scan_oracle(
    minute: str, hour: str, transition: tuple[ZoneInfo, datetime], offset_minutes: int
) -> None:
    tz, instant = transition
    expr = f"{minute} {hour} * * *"
    start = instant + timedelta(minutes=offset_minutes, seconds=17)
    span = 12 * 60
    assert fires_between(expr, tz, start, start + timedelta(minutes=span)) == _brute_force(
        expr, tz, start, span
    )


# --- fires_between / missed runs -----------------------------------------------------------------


def test_fires_between_when_interval_then_half_open_start_excluded_end_included() -> None:
    start, end = local(TOKYO, 2026, 5, 1, 10), local(TOKYO, 2026, 5, 1, 11)
    assert walls(fires_between("*/20 * * * *", TOKYO, start, end), TOKYO) == [
        "05-01 10:20:00 JST",
        "05-01 10:40:00 JST",
        "05-01 11:00:00 JST",
    ]
    assert len(fires_between("* * * * * *", TOKYO, start, end, limit=5)) == 5


def test_missed_runs_when_skip_then_none() -> None:
    last, now = local(NEW_YORK, 2026, 5, 1, 9), local(NEW_YORK, 2026, 5, 3, 9)
    assert missed_runs("0 * * * *", NEW_YORK, last, now, "skip") == []


def test_missed_runs_when_run_once_then_single_most_recent_missed_time() -> None:
    last, now = local(NEW_YORK, 2026, 5, 1, 9), local(NEW_YORK, 2026, 5, 3, 9, 20)
    assert missed_runs("0 * * * *", NEW_YORK, last, now, "run-once") == [local(NEW_YORK, 2026, 5, 3, 9)]


def test_missed_runs_when_down_for_a_year_with_every_second_job_then_fast_single_run() -> None:
    last = datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    now = datetime(2027, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    assert missed_runs("* * * * * *", TOKYO, last, now, "run-once") == [datetime(2027, 1, 1, tzinfo=UTC)]


def test_missed_runs_when_nothing_scheduled_while_down_then_none() -> None:
    last, now = local(NEW_YORK, 2026, 5, 1, 9, 1), local(NEW_YORK, 2026, 5, 1, 9, 59)
    assert missed_runs("0 * * * *", NEW_YORK, last, now, "run-once") == []
    assert missed_runs("0 * * * *", NEW_YORK, None, now, "run-once") == []


def test_missed_runs_when_fire_exactly_at_now_then_counted_and_at_last_run_not() -> None:
    last, now = local(NEW_YORK, 2026, 5, 1, 9), local(NEW_YORK, 2026, 5, 1, 10)
    assert missed_runs("0 * * * *", NEW_YORK, last, now, "run-once") == [now]


def test_missed_runs_when_missed_across_spring_gap_then_gap_end_time() -> None:
    last, now = local(NEW_YORK, 2026, 3, 8, 1), local(NEW_YORK, 2026, 3, 8, 3, 10)
    assert missed_runs("30 2 * * *", NEW_YORK, last, now, "run-once") == [local(NEW_YORK, 2026, 3, 8, 3)]


def test_missed_runs_when_unknown_policy_then_value_error() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        missed_runs("* * * * *", TOKYO, None, datetime.now(UTC), "run-all")  # type: ignore[arg-type]


# --- maintenance windows -------------------------------------------------------------------------

IB_NIGHTLY = {"cron": "45 23 * * *", "duration": "1h", "tz": "US/Eastern"}
IB_SUNDAY = {"days": ["SUN"], "start": "00:30", "duration": "2h30m", "tz": "US/Eastern"}
EASTERN = ZoneInfo("US/Eastern")


@pytest.mark.parametrize(
    ("wall", "inside"),
    [
        ((2026, 5, 1, 23, 44, 59), False),
        ((2026, 5, 1, 23, 45), True),
        ((2026, 5, 1, 23, 59, 59), True),
        ((2026, 5, 2, 0, 0), True),
        ((2026, 5, 2, 0, 44, 59), True),
        ((2026, 5, 2, 0, 45), False),
        ((2026, 5, 2, 12, 0), False),
    ],
)
def test_in_window_when_ib_nightly_crosses_midnight_then_inside_from_2345_to_0045(
    wall: tuple[int, ...], inside: bool
) -> None:
    window = parse_window(IB_NIGHTLY)
    assert in_window(window, local(EASTERN, *wall)) is inside


@pytest.mark.parametrize(
    ("day", "close_wall"),
    [
        ((2026, 3, 7), (2026, 3, 8, 0, 45)),  # night before spring forward
        ((2026, 3, 8), (2026, 3, 9, 0, 45)),
        ((2026, 10, 31), (2026, 11, 1, 0, 45)),  # night before fall back
        ((2026, 11, 1), (2026, 11, 2, 0, 45)),
    ],
)
def test_next_window_change_when_ib_nightly_around_dst_then_opens_2345_closes_0045_eastern(
    day: tuple[int, int, int], close_wall: tuple[int, ...]
) -> None:
    window = parse_window(IB_NIGHTLY)
    opening = next_window_change(window, local(EASTERN, *day, 12))
    assert opening == local(EASTERN, *day, 23, 45)
    assert next_window_change(window, opening) == local(EASTERN, *close_wall)
    assert in_window(window, opening) and not in_window(window, local(EASTERN, *close_wall))


def test_in_window_when_sunday_relogin_then_only_sunday_early_morning() -> None:
    window = parse_window(IB_SUNDAY)
    assert in_window(window, local(EASTERN, 2026, 5, 3, 1, 0))  # Sunday
    assert not in_window(window, local(EASTERN, 2026, 5, 2, 1, 0))  # Saturday
    assert not in_window(window, local(EASTERN, 2026, 5, 3, 3, 0))
    assert next_window_change(window, local(EASTERN, 2026, 5, 3, 1, 0)) == local(EASTERN, 2026, 5, 3, 3, 0)
    assert next_window_change(window, local(EASTERN, 2026, 5, 3, 3, 0)) == local(EASTERN, 2026, 5, 10, 0, 30)


def test_in_window_when_sunday_window_spans_fall_back_then_elapsed_duration() -> None:
    # 2026-11-01 is a Sunday: opens 00:30 EDT, 2h30m of elapsed time later is 02:00 EST.
    window = parse_window(IB_SUNDAY)
    opened = local(EASTERN, 2026, 11, 1, 0, 30)
    close = next_window_change(window, opened)
    assert close - opened == timedelta(hours=2, minutes=30)
    assert walls([close], EASTERN) == ["11-01 02:00:00 EST"]
    assert in_window(window, local(EASTERN, 2026, 11, 1, 1, 30, fold=1))


def test_in_window_when_sunday_window_spans_spring_forward_then_elapsed_duration() -> None:
    # 2026-03-08 is a Sunday: opens 00:30 EST, closes 2h30m later = 04:00 EDT wall.
    window = parse_window(IB_SUNDAY)
    close = next_window_change(window, local(EASTERN, 2026, 3, 8, 1))
    assert walls([close], EASTERN) == ["03-08 04:00:00 EDT"]
    assert in_window(window, local(EASTERN, 2026, 3, 8, 3, 59))


def test_next_window_change_when_openings_overlap_then_merged_close() -> None:
    window = parse_window({"cron": "0 * * * *", "duration": "90m", "tz": "Asia/Tokyo"})
    with pytest.raises(CronError, match="never closes"):
        next_window_change(window, local(TOKYO, 2026, 5, 1, 0, 10))
    window = parse_window({"cron": "0 0,1 * * *", "duration": "90m", "tz": "Asia/Tokyo"})
    assert next_window_change(window, local(TOKYO, 2026, 5, 1, 0, 10)) == local(TOKYO, 2026, 5, 1, 2, 30)


def test_parse_window_when_days_forms_then_cron_built() -> None:
    window = parse_window({"days": "MON-FRI", "start": "9:30:15", "duration": 60, "tz": "Europe/London"})
    assert window.opens.weekdays == {1, 2, 3, 4, 5}
    assert window.opens.hours == {9}
    assert window.opens.minutes == {30}
    assert window.opens.seconds == {15}
    assert window.duration == timedelta(minutes=1)
    assert parse_window({"start": "23:00", "duration": "1h", "tz": "UTC"}).opens.weekdays == set(range(7))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cron": "45 23 * * *", "duration": "1h", "tz": "Mars/Base"}, "tz: unknown time zone 'Mars/Base'"),
        ({"cron": "45 23 * * *", "duration": "1h"}, "tz: missing"),
        ({"cron": "45 23 * * *", "tz": "UTC"}, "duration: missing"),
        ({"cron": "45 23 * * *", "duration": "1 hour", "tz": "UTC"}, "duration: invalid value '1 hour'"),
        ({"cron": "45 23 * * *", "duration": "0m", "tz": "UTC"}, "duration: '0m' must be positive"),
        ({"cron": "45 25 * * *", "duration": "1h", "tz": "UTC"}, "hour: 25 out of range 0-23"),
        ({"days": "SUN", "start": "25:00", "duration": "1h", "tz": "UTC"}, "hour: 25 out of range"),
        ({"days": "SUN", "start": "noon", "duration": "1h", "tz": "UTC"}, "start: invalid value 'noon'"),
        ({"days": "FUNDAY", "start": "1:00", "duration": "1h", "tz": "UTC"}, "day-of-week: invalid value"),
        ({"cron": "* * * * *", "start": "1:00", "duration": "1h", "tz": "UTC"}, "window: give either"),
        ({"cron": "* * * * *", "duration": "1h", "tz": "UTC", "until": "x"}, "window: unknown key(s) until"),
    ],
)
def test_parse_window_when_invalid_then_cron_error_naming_field(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(CronError) as caught:
        parse_window(spec)
    assert str(caught.value).startswith(message)


def test_parse_duration_when_compound_then_summed() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("45s") == timedelta(seconds=45)
    assert parse_duration(1.5) == timedelta(seconds=1.5)
