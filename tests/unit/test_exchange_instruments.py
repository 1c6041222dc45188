"""The instrument universe: shipped contracts, strict loading, lookups and trading calendars."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from trader.config import ConfigError
from trader.exchange.instruments import load_universe, parse_universe
from trader.exchange.sessions import parse_window

NS = 1_000_000_000
UNIVERSE = load_universe()
HOURS = re.compile(r"^(\d{8}:(CLOSED|\d{4}-\d{8}:\d{4}))(;\d{8}:(CLOSED|\d{4}-\d{8}:\d{4}))*$")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * NS


def shipped() -> dict:  # type: ignore[type-arg]
    path = Path(__file__).resolve().parents[2] / "trader" / "exchange" / "universe.yaml"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


# -- the shipped universe --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "con_id"),
    [
        ("AAPL", 265598),
        ("SPY", 756733),
        ("MSFT", 272093),
        ("AMZN", 3691937),
        ("NVDA", 4815747),
        ("TSLA", 76792991),
        ("GOOGL", 208813719),
        ("META", 107113386),
        ("QQQ", 320227571),
        ("IWM", 9579970),
    ],
)
def test_universe_when_shipped_then_stocks_carry_their_real_ib_con_ids(symbol: str, con_id: int) -> None:
    inst = UNIVERSE.by_symbol(symbol)
    assert inst.conId == con_id
    assert (inst.exchange, inst.currency, inst.secType, inst.timeZone) == (
        "SMART",
        "USD",
        "STK",
        "US/Eastern",
    )


def test_universe_when_shipped_then_at_least_30_stocks_and_the_futures_and_fx() -> None:
    assert sum(1 for i in UNIVERSE if i.secType == "STK") >= 30
    expected = {
        "ES": ("CME", 50, 0.25),
        "NQ": ("CME", 20, 0.25),
        "CL": ("NYMEX", 1000, 0.01),
        "GC": ("COMEX", 100, 0.1),
    }
    for symbol, (exchange, multiplier, tick) in expected.items():
        fut = UNIVERSE.by_symbol(symbol, "FUT")
        assert (fut.exchange, fut.multiplier, fut.minTick) == (exchange, multiplier, tick)
        assert fut.lastTradeDateOrContractMonth >= "20261121" and fut.multiplier_text == f"{multiplier:g}"
    es = UNIVERSE.by_symbol("ES", "FUT")
    assert (es.contractMonth, es.localSymbol, es.timeZone) == ("202612", "ESZ6", "US/Central")
    eur = UNIVERSE.by_symbol("EUR", "CASH", "IDEALPRO")
    assert (eur.conId, eur.localSymbol, eur.minTick, eur.decimals) == (12087792, "EUR.USD", 0.00005, 5)


def test_instruments_when_shipped_then_prices_on_grid_and_parameters_sane() -> None:
    for inst in UNIVERSE:
        assert inst.on_tick(inst.price), inst.symbol
        assert 0 < inst.volatility < 1 and inst.spreadTicks >= 1 and inst.displaySize >= 1
        assert 0 < inst.maintMarginRate <= inst.initMarginRate <= 1
        assert inst.longName


def test_price_helpers_when_rounding_then_on_the_tick_grid() -> None:
    es = UNIVERSE.by_symbol("ES", "FUT")
    assert (es.round_price(6000.1), es.round_price(6000.1, "up"), es.round_price(6000.2, "down")) == (
        6000.0,
        6000.25,
        6000.0,
    )
    assert es.tick_price(24001) == 6000.25 and es.ticks_per_unit == 4
    assert not es.on_tick(6000.1) and es.on_tick(6000.75)


# -- lookups -----------------------------------------------------------------------------------------


def test_lookup_when_partial_contract_then_matches_like_req_contract_details() -> None:
    assert [i.conId for i in UNIVERSE.lookup("aapl")] == [265598]
    assert [i.conId for i in UNIVERSE.lookup("AAPL", "STK", "ISLAND", "USD")] == [265598]
    assert [i.conId for i in UNIVERSE.lookup("AAPL", "STK", "NASDAQ")] == [265598]
    assert UNIVERSE.lookup("AAPL", "FUT") == []
    assert [
        i.symbol for i in UNIVERSE.lookup("ES", "FUT", "CME", last_trade_date_or_contract_month="202612")
    ] == ["ES"]
    assert [i.symbol for i in UNIVERSE.lookup("NQ", "FUT", "GLOBEX")] == ["NQ"]
    assert [i.symbol for i in UNIVERSE.lookup(local_symbol="EUR.USD")] == ["EUR"]
    assert [i.symbol for i in UNIVERSE.lookup(con_id=756733, symbol="ignored")] == ["SPY"]
    assert UNIVERSE.lookup("ES", "FUT", multiplier="20") == []
    assert UNIVERSE.get(1) is None and 265598 in UNIVERSE and UNIVERSE[265598].symbol == "AAPL"
    with pytest.raises(KeyError):
        UNIVERSE.by_symbol("NOPE")


def test_matching_symbols_when_searching_then_exact_then_prefix_then_names() -> None:
    assert [i.symbol for i in UNIVERSE.matching_symbols("goog")][:2] == ["GOOG", "GOOGL"]
    found = [i.symbol for i in UNIVERSE.matching_symbols("gold")]
    assert set(found) == {"GC", "GLD"}
    assert len(UNIVERSE.matching_symbols("a")) == 16
    assert UNIVERSE.matching_symbols("  ") == []


# -- calendars ------------------------------------------------------------------------------------------


def test_trading_hours_when_formatted_then_tws_style_with_closed_days() -> None:
    aapl = UNIVERSE[265598]
    hours = aapl.liquid_hours(date(2026, 11, 25), 4)
    assert hours == "20261125:0930-20261125:1600;20261126:CLOSED;20261127:0930-20261127:1600;20261128:CLOSED"
    assert aapl.trading_hours(date(2026, 11, 20), 1) == "20261120:0400-20261120:2000"
    es = UNIVERSE.by_symbol("ES", "FUT")
    assert es.trading_hours(date(2026, 11, 23), 1) == "20261122:1700-20261123:1600"
    for inst in UNIVERSE:
        assert HOURS.match(inst.trading_hours(date(2026, 11, 16), 14)), inst.symbol
        assert HOURS.match(inst.liquid_hours(date(2026, 11, 16), 14)), inst.symbol


def test_sessions_when_daylight_saving_changes_then_the_local_open_is_kept() -> None:
    cal = UNIVERSE[265598].calendar
    winter = cal.session_at(utc(2026, 3, 6, 15), rth=True)
    summer = cal.session_at(utc(2026, 3, 9, 15), rth=True)
    assert winter is not None and summer is not None
    assert (winter.open_ns, summer.open_ns) == (utc(2026, 3, 6, 14, 30), utc(2026, 3, 9, 13, 30))
    assert cal.session_at(utc(2026, 3, 7, 15), rth=True) is None


def test_sessions_when_navigating_then_next_previous_and_last_n() -> None:
    cal = UNIVERSE.by_symbol("ES", "FUT").calendar
    saturday = utc(2026, 11, 21, 12)
    nxt = cal.next_session(saturday, rth=False)
    prev = cal.previous_session(saturday, rth=False)
    assert nxt is not None and prev is not None
    assert (nxt.open_ns, nxt.trade_date) == (utc(2026, 11, 22, 23), date(2026, 11, 23))
    assert (prev.close_ns, prev.trade_date) == (utc(2026, 11, 20, 22), date(2026, 11, 20))
    assert [s.trade_date.day for s in cal.last_sessions(saturday, 3, rth=True)] == [18, 19, 20]
    assert len(cal.sessions_between(utc(2026, 11, 16), utc(2026, 11, 23), rth=True)) == 5
    assert cal.state(saturday, rth=False) == (False, nxt.open_ns)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fri 9:30-16:00", "expected a window"),
        ("mon-fry 09:30-16:00", "unknown weekday"),
        ("mon-fri 16:00-09:30", "closes before it opens"),
        ("sun-thu 17:00-18:00+1", "more than 24 hours"),
        ("mon 25:00-26:00", "invalid time"),
    ],
)
def test_window_when_malformed_then_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(text)


def test_window_when_wrapping_the_week_then_days_are_expanded() -> None:
    assert parse_window("fri-mon 09:00-10:00").days == frozenset({4, 5, 6, 0})


# -- strict loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda d: d["instruments"][0].update(minTick="x"), "instruments[0].minTick", "expected a number"),
        (lambda d: d["instruments"][0].update(colour=1), "instruments[0].colour", "unknown key"),
        (lambda d: d["instruments"][0].pop("price"), "instruments[0].price", "missing required key"),
        (lambda d: d["instruments"][1].update(conId=265598), "instruments[1].conId", "duplicate conId"),
        (
            lambda d: d["instruments"][0].update(calendar="moon"),
            "instruments[0].calendar",
            "unknown calendar",
        ),
        (lambda d: d["instruments"][0].update(price=250.005), "instruments[0].price", "multiple of minTick"),
        (
            lambda d: d["instruments"][0].update(volatility=9),
            "instruments[0].volatility",
            "annual volatility",
        ),
        (lambda d: d["instruments"][0].update(secType="OPT"), "instruments[0].secType", "expected one of"),
        (
            lambda d: d["instruments"][0].update(maintMarginRate=0.9),
            "instruments[0].maintMarginRate",
            "initMarginRate",
        ),
        (lambda d: d["defaults"]["STK"].update(minTik=0.01), "defaults.STK.minTik", "unknown key"),
        (lambda d: d["defaults"]["STK"].update(minTick="small"), "defaults.STK.minTick", "expected a number"),
        (lambda d: d["defaults"].update(OPT={}), "defaults.OPT", "unknown secType"),
        (
            lambda d: d["calendars"]["us_equity"].update(timeZone="Mars/Base"),
            "calendars.us_equity.timeZone",
            "unknown",
        ),
        (
            lambda d: d["calendars"]["us_equity"].update(trading=["mon-fri 4-20"]),
            "calendars.us_equity.trading[0]",
            "",
        ),
        (
            lambda d: d["calendars"]["us_equity"].update(holidays=["2026-13-01"]),
            "calendars.us_equity.holidays[0]",
            "",
        ),
        (lambda d: d.update(instruments=[]), "instruments", "at least one"),
    ],
)
def test_universe_when_invalid_then_config_error_names_file_and_key(mutate, key: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_universe(data, "universe.yaml")
    assert info.value.source == "universe.yaml"
    assert info.value.key == key
    assert problem in info.value.problem


def test_universe_when_loaded_from_a_path_then_same_as_shipped(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(shipped()))
    loaded = load_universe(path)
    assert [i.conId for i in loaded] == [i.conId for i in UNIVERSE]
    with pytest.raises(ConfigError, match="file not found"):
        load_universe(tmp_path / "missing.yaml")
