"""The risk: config section (strict, errors name the key), the live-trading guard, and the
persistence of runtime limits and states (atomic JSON under <data-dir>/risk/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trader.config.schema import ConfigError, build
from trader.risk import RiskConfig, RiskEngine, RiskLimits, live_trading_guard
from trader.risk.store import (
    RiskStoreError,
    limits_file,
    load_overrides,
    load_state,
    save_overrides,
    save_state,
    state_file,
)


def test_config_when_full_section_then_built_with_overrides() -> None:
    config = build(
        RiskConfig,
        {
            "trading_mode": "live",
            "limits": {"max_order_notional": 100_000, "max_open_orders": 50},
            "strategy_limits": {"max_daily_loss": 2000},
            "strategies": {"alpha": {"max_position_quantity": 500}},
            "trading_day_tz": "Europe/London",
            "trading_day_start": "00:00",
            "kill_switch_poll_s": 0.5,
        },
        "trader.yaml",
        "risk",
    )
    assert config.limits == RiskLimits(max_order_notional=100_000.0, max_open_orders=50)
    assert config.strategy_override("alpha").max_position_quantity == 500
    assert config.strategy_override("beta") == RiskLimits()
    assert build(RiskConfig, None, "trader.yaml", "risk") == RiskConfig()


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"limits": {"max_foo": 1}}, "risk.limits.max_foo", "unknown key"),
        ({"limits": {"max_order_notional": -5}}, "risk.limits.max_order_notional", "positive number"),
        ({"limits": {"max_open_orders": 2.5}}, "risk.limits.max_open_orders", "an integer or null"),
        ({"strategies": {"alpha": {"max_leverage": "x"}}}, "risk.strategies.alpha.max_leverage", "a number"),
        ({"strategies": {"alpha": {"max_bar": 1}}}, "risk.strategies.alpha.max_bar", "unknown key"),
        ({"strategies": {"a:b": {}}}, "risk.strategies", "not a strategy name"),
        ({"trading_mode": "real"}, "risk.trading_mode", "one of 'paper', 'live'"),
        ({"trading_day_tz": "Mars/Olympus"}, "risk.trading_day_tz", "IANA time zone"),
        ({"trading_day_start": "5pm"}, "risk.trading_day_start", "HH:MM"),
        ({"kill_switch_poll_s": 2}, "risk.kill_switch_poll_s", "between 0.01 and 1"),
    ],
)
def test_config_when_invalid_then_error_names_the_key(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(RiskConfig, data, "trader.yaml", "risk")
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"trader.yaml: {key}: ")


@pytest.mark.parametrize(
    ("port", "account", "mode", "refused"),
    [
        (7497, "DU1234567", "paper", False),
        (4002, "", "paper", False),
        (7496, "", "paper", True),
        (4001, "DU1234567", "paper", True),
        (7497, "U1234567", "paper", True),
        (7496, "U1234567", "live", False),
        (7497, "DU1234567", "live", False),
        (7497, "df55", "paper", False),
    ],
)
def test_guard_when_port_account_and_mode_then_live_needs_live_mode(
    port: int, account: str, mode: str, refused: bool
) -> None:
    reason = live_trading_guard(port, account, mode)
    assert (reason is not None) is refused
    if reason is not None:
        assert "risk.trading_mode: live" in reason


def test_guard_when_live_port_and_account_then_both_reasons_named() -> None:
    assert live_trading_guard(7496, "U42", "paper") == (
        "live trading refused: TWS live port 7496 and account U42 is not a paper account "
        "(paper accounts start with D), but risk.trading_mode is 'paper'; "
        "set risk.trading_mode: live in configs/trader.yaml to trade real money"
    )


def test_overrides_when_saved_and_loaded_then_round_trip_under_the_data_dir(tmp_path: Path) -> None:
    engine = RiskEngine()
    engine.set_limit("account", "max_order_notional", 50_000, 1)
    engine.set_limit("strategy:alpha", "max_open_orders", 4, 2)
    engine.set_limit("strategy:*", "max_daily_loss", None, 3)
    path = limits_file(tmp_path)
    assert path == tmp_path / "risk" / "limits.json"
    save_overrides(path, engine.overrides_record())
    assert load_overrides(path) == engine.overrides_record()
    again = RiskEngine(overrides=load_overrides(path))
    assert again.limits_for("strategy:alpha").max_open_orders == 4
    assert [p.name for p in path.parent.iterdir()] == ["limits.json"]  # no temporary file left


def test_state_when_saved_and_loaded_then_engine_rebuilt_equal(tmp_path: Path) -> None:
    engine = RiskEngine()
    engine.halt("strategy:alpha", "manual", 5)
    engine.kill_switch(True, 6)
    save_state(state_file(tmp_path), engine.state_record())
    assert RiskEngine(state=load_state(state_file(tmp_path))).state_record() == engine.state_record()


def test_store_when_missing_then_empty_and_when_broken_then_error_names_file_and_key(tmp_path: Path) -> None:
    path = limits_file(tmp_path)
    assert load_overrides(path) == {} and load_state(state_file(tmp_path)) == {}
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(RiskStoreError, match=r"limits\.json: not valid JSON"):
        load_overrides(path)
    path.write_text(json.dumps({"version": 1, "overrides": {"account": {"max_foo": 1}}}))
    with pytest.raises(RiskStoreError, match=r"overrides\.account: max_foo: unknown limit"):
        load_overrides(path)
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(RiskStoreError, match="version 1"):
        load_overrides(path)
