"""ReplayMarket: stored ticks / bars replayed as quotes at a speed, history without look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trader.config.exchange import ExchangeConfig
from trader.config.schema import ConfigError, load
from trader.data.store import Store
from trader.exchange.bars import HistoricalDataError
from trader.exchange.faults import FaultError
from trader.exchange.instruments import Universe, load_universe
from trader.exchange.market import MarketConfig
from trader.exchange.replay import ReplayMarket, ReplayQuoteCache, ReplaySettings, parse_time, resolved_uri
from trader.exchange.server import build_server

NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[2]
START = "2026-01-05T15:00:00Z"
START_NS = parse_time(START)
UNIVERSE: Universe = load_universe(always_open=True)
AAPL = UNIVERSE.by_symbol("AAPL").conId
MSFT = UNIVERSE.by_symbol("MSFT").conId
T0 = 1_800_000_000 * NS  # an arbitrary wall time


def _ticks(n: int = 10, every_s: int = 10) -> pd.DataFrame:
    """n AAPL ticks from START - 2 * every_s, ``every_s`` apart: bid 100 + i/100, ask bid + .01."""
    times = pd.date_range(
        pd.Timestamp(START) - pd.Timedelta(seconds=2 * every_s), periods=n, freq=f"{every_s}s"
    )
    bid = np.round(100 + np.arange(n) / 100, 2)
    return pd.DataFrame(
        {
            "bid": bid,
            "bid_size": 300.0,
            "ask": np.round(bid + 0.01, 2),
            "ask_size": 400.0,
            "last": np.round(bid + 0.01, 2),
            "last_size": 10.0,
        },
        index=pd.DatetimeIndex(times, name="time"),
    )


def _bars(n: int = 30) -> pd.DataFrame:
    times = pd.date_range(pd.Timestamp(START) - pd.Timedelta(minutes=10), periods=n, freq="1min")
    o = 200 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "open": o,
            "high": o + 2,
            "low": o - 1,
            "close": o + 1,
            "volume": 1000.0,
            "wap": o + 0.5,
            "count": 7,
        },
        index=pd.DatetimeIndex(times, name="time"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"lmdb://{tmp_path / 'arctic'}")
    s.append_ticks(AAPL, _ticks())
    s.write_bars(AAPL, "1 min", _bars())
    return s


def _market(store: Store, **kw: object) -> ReplayMarket:
    settings = ReplaySettings(start_ns=START_NS, **kw)  # type: ignore[arg-type]
    return ReplayMarket(UNIVERSE, MarketConfig(), store, settings, t0_ns=T0)


def test_replay_ticks_when_time_passes_then_each_stored_tick_in_order_at_speed(store: Store) -> None:
    market = _market(store, speed=10.0)
    first = market.advance(T0)
    assert [q.bid for q in first] == [100.02]  # the state at start (the tick at START)
    assert first[0].ask == 100.03 and first[0].bidSize == 300.0 and first[0].askSize == 400.0
    assert market.advance(T0 + NS // 2) == []  # 5 stored seconds: nothing new
    q = market.advance(T0 + NS)  # 10 stored seconds
    assert [x.bid for x in q] == [100.03] and q[0].time_ns == T0 + NS
    burst = market.advance(T0 + 5 * NS)
    assert [x.bid for x in burst] == [100.04, 100.05, 100.06, 100.07]
    assert [x.conId for x in burst] == [AAPL] * 4
    rest = market.advance(T0 + 100 * NS)
    assert [x.bid for x in rest] == [100.08, 100.09] and rest[-1] == market.last_quote(AAPL, T0 + 100 * NS)
    assert market.advance(T0 + 200 * NS) == []  # the end: quiet


def test_replay_when_instrument_has_no_data_then_quiet_and_unfillable(store: Store) -> None:
    market = _market(store)
    assert {q.conId for q in market.advance(T0)} == {AAPL}
    quiet = market.last_quote(MSFT, T0)
    assert quiet.bid == -1 and quiet.bidSize == 0 and quiet.askSize == 0
    assert market.session_stats(MSFT, T0).volume == 0
    assert market.con_ids == [AAPL]
    with pytest.raises(FaultError, match="MSFT has no stored data"):
        market.shock(MSFT, 5, T0)


def test_replay_session_stats_when_ticks_then_day_open_high_low_volume(store: Store) -> None:
    market = _market(store, speed=10.0)
    stats = market.session_stats(AAPL, T0 + 2 * NS)
    assert stats.open == 100.01 and stats.high == 100.05 and stats.low == 100.01
    assert stats.volume == 50.0


def test_replay_loop_when_past_the_end_then_starts_over(store: Store) -> None:
    market = _market(store, speed=10.0, loop=True)
    market.advance(T0)
    assert market.advance(T0 + 7 * NS)[-1].bid == 100.09  # START + 70 s: the last tick
    again = market.advance(T0 + market.cycle_ns // 10 + NS // 10)
    assert [q.bid for q in again] == [100.02]


def test_replay_bars_when_time_passes_then_open_low_high_close_quotes(store: Store) -> None:
    market = _market(store, speed=60.0, kind="bars")
    first = market.advance(T0)
    assert [q.last for q in first] == [210.0] and first[0].ask == 210.01
    quotes = market.advance(T0 + NS)  # one stored minute: the rest of the bar and the next open
    assert [q.last for q in quotes] == [209.0, 212.0, 211.0, 211.0]
    assert quotes[0].lastSize == 250.0


def test_replay_history_when_requested_then_only_bars_completed_before_replay_time(store: Store) -> None:
    market = _market(store, speed=60.0)
    now = T0 + 5 * NS  # replay time START + 5 min
    series = market.bars(AAPL, now, "1800 S", "1 min", now_ns=now)
    assert int(series.time_ns[-1]) == START_NS + 4 * 60 * NS  # the bar ending at START + 5 min
    assert int(series.time_ns[0]) == START_NS - 10 * 60 * NS
    assert series.close[-1] == 215.0 and series.count[-1] == 7
    explicit = market.bars(AAPL, START_NS, "120 S", "1 min", now_ns=now)  # a stored time
    assert [int(t) for t in explicit.time_ns] == [START_NS - 2 * 60 * NS, START_NS - 60 * NS]


def test_replay_history_when_only_ticks_then_aggregated_up_to_replay_time(store: Store) -> None:
    market = _market(store, speed=10.0)
    now = T0 + 3 * NS  # START + 30 s: ticks at -20, -10, 0, 10, 20, 30
    series = market.bars(AAPL, now, "60 S", "5 secs", what_to_show="TRADES", now_ns=now)
    assert list(series.close) == [100.01, 100.02, 100.03, 100.04, 100.05, 100.06]
    assert list(series.volume) == [10.0] * 6
    mid = market.bars(AAPL, now, "60 S", "5 secs", what_to_show="MIDPOINT", now_ns=now)
    assert mid.close[-1] == pytest.approx(100.055) and mid.volume[-1] == -1


def test_replay_history_when_nothing_stored_then_162(store: Store) -> None:
    market = _market(store)
    with pytest.raises(HistoricalDataError) as info:
        market.bars(MSFT, T0, "1 D", "1 min", now_ns=T0)
    assert info.value.code == 162 and "HMDS query returned no data" in info.value.text
    with pytest.raises(HistoricalDataError) as early:
        market.bars(AAPL, START_NS - 86_400 * NS, "60 S", "1 min", now_ns=T0)  # before the data
    assert early.value.code == 162


def test_replay_shock_halt_resume_and_state_round_trip(store: Store) -> None:
    market = _market(store, speed=10.0)
    market.advance(T0)
    market.shock(AAPL, 100, T0)
    shocked = market.advance(T0)
    assert [q.bid for q in shocked] == [200.04]
    market.halt(AAPL, T0 + NS)
    assert market.is_halted(AAPL) and market.advance(T0 + 3 * NS) == []
    assert market.last_quote(AAPL, T0 + 3 * NS).bid == 200.06
    state = market.to_dict()
    assert set(state) == {"shocks", "halts"} and str(AAPL) in state["halts"]
    market.resume(AAPL)
    assert [q.bid for q in market.advance(T0 + 3 * NS)] == [200.1]  # the halt's ticks skipped
    other = _market(store, speed=10.0)
    other.load_dict(state)
    assert other.is_halted(AAPL) and other.last_quote(AAPL, T0).bid == 200.04


def test_replay_quote_cache_when_installed_then_features_get_replayed_values(store: Store) -> None:
    market = _market(store, speed=10.0)
    extensions: dict[str, object] = {}
    market.install(extensions)
    cache = next(iter(extensions.values()))
    assert isinstance(cache, ReplayQuoteCache)
    assert cache.last_quote(AAPL, T0).bid == 100.02
    assert cache.quote(AAPL, T0 + NS, volume=False).volume == 0
    assert cache.session_stats(AAPL, T0).open == 100.01


def test_replay_config_when_loaded_then_defaults_and_env_mapping(tmp_path: Path) -> None:
    config = load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", {})
    assert config.market.source == "synthetic" and config.market.replay.kind == "ticks"
    env = {
        "BOURSE_MARKET_SOURCE": "replay",
        "BOURSE_MARKET_REPLAY": '{start: "2026-01-05T15:00:00Z", speed: 5}',
    }
    replay = load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", env).market
    assert replay.source == "replay" and replay.replay.speed == 5 and replay.replay.uri == "lmdb://arctic"
    with pytest.raises(ConfigError, match="ISO time"):
        load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", {"BOURSE_MARKET_REPLAY": "{start: soon}"})
    with pytest.raises(ConfigError, match=r"market\.replay\.bar_size"):
        load(
            ExchangeConfig, ROOT / "configs" / "exchange.yaml", {"BOURSE_MARKET_REPLAY": "{bar_size: 7 min}"}
        )
    assert resolved_uri("lmdb://arctic", tmp_path) == f"lmdb://{tmp_path.as_posix()}/arctic"
    assert resolved_uri("lmdb:///abs", tmp_path) == "lmdb:///abs"


def test_build_server_when_source_replay_then_replay_market_from_data_dir(tmp_path: Path) -> None:
    Store(f"lmdb://{tmp_path / 'arctic'}").append_ticks(AAPL, _ticks())
    env = {"BOURSE_MARKET_SOURCE": "replay", "BOURSE_MARKET_REPLAY": "{speed: 10}"}
    config = load(ExchangeConfig, ROOT / "configs" / "exchange.yaml", env)
    server = build_server(config, tmp_path, reset=True, clock=lambda: T0)
    market = server.core.market
    assert isinstance(market, ReplayMarket) and market.start_ns == START_NS - 20 * NS  # first stored
    assert isinstance(server.core.extensions["market.quotes"], ReplayQuoteCache)
