"""Strategy parameters: Param descriptors and resolve_params (strict, ConfigError naming the key)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from trader.config.schema import ConfigError
from trader.strategy import Param, Strategy, StrategyRuntime, resolve_params
from trader.strategy.params import apply_params, params_of


class Crossover(Strategy):
    fast = Param(10, "fast SMA bars", min=2)
    slow = Param(30, "slow SMA bars", min=3, max=500)
    quantity = Param(10.0, "shares when long", min=0)
    short = Param(False, "also go short")
    mode = Param("close", "price column", choices=("close", "open"))


class Child(Crossover):
    fast = Param(5, "faster", min=1)
    extra = Param(1.5, "a new one")


def test_resolve_params_when_no_overrides_then_defaults() -> None:
    assert resolve_params(Crossover, {}, "cfg.yaml") == {
        "fast": 10,
        "slow": 30,
        "quantity": 10.0,
        "short": False,
        "mode": "close",
    }


def test_resolve_params_when_valid_overrides_then_taken_and_int_converted_for_float() -> None:
    params = resolve_params(Crossover, {"fast": 3, "quantity": 7, "short": True, "mode": "open"}, "cfg")
    assert params["fast"] == 3
    assert params["quantity"] == 7.0
    assert isinstance(params["quantity"], float)
    assert params["short"] is True
    assert params["mode"] == "open"


@pytest.mark.parametrize(
    ("overrides", "key", "match"),
    [
        ({"nope": 1}, "params.nope", "unknown parameter"),
        ({"fast": 2.5}, "params.fast", "expected an integer"),
        ({"fast": True}, "params.fast", "expected an integer"),
        ({"fast": "10"}, "params.fast", "expected an integer"),
        ({"quantity": "10"}, "params.quantity", "expected a number"),
        ({"quantity": False}, "params.quantity", "expected a number"),
        ({"short": 1}, "params.short", "expected true or false"),
        ({"mode": 3}, "params.mode", "expected a string"),
        ({"fast": 1}, "params.fast", "must be >= 2"),
        ({"slow": 501}, "params.slow", "must be <= 500"),
        ({"quantity": -1}, "params.quantity", "must be >= 0"),
        ({"mode": "high"}, "params.mode", "must be one of 'close', 'open'"),
    ],
)
def test_resolve_params_when_invalid_then_config_error_naming_the_key(
    overrides: dict[str, Any], key: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        resolve_params(Crossover, overrides, "configs/strategies.yaml")
    assert info.value.source == "configs/strategies.yaml"
    assert info.value.key == key


def test_param_when_read_on_instance_then_resolved_value_and_on_class_the_descriptor() -> None:
    strategy = Crossover()
    assert strategy.fast == 10  # the default before anything is applied
    apply_params(strategy, resolve_params(Crossover, {"fast": 4}, "cfg"))
    assert strategy.fast == 4
    assert strategy.slow == 30
    assert isinstance(Crossover.fast, Param)
    assert Crossover.fast.doc == "fast SMA bars"
    assert Crossover().fast == 10  # other instances keep theirs


def test_param_when_assigned_on_instance_then_attribute_error() -> None:
    strategy = Crossover()
    with pytest.raises(AttributeError, match="read-only"):
        strategy.fast = 3


def test_params_of_when_subclass_overrides_then_its_declaration_wins() -> None:
    declared = params_of(Child)
    assert set(declared) == {"fast", "slow", "quantity", "short", "mode", "extra"}
    assert declared["fast"].default == 5
    assert resolve_params(Child, {"fast": 1}, "cfg")["fast"] == 1  # min 1 in the child


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Param(cast(Any, [1]), "a list"), TypeError),
        (lambda: Param("x", "str with bounds", min=1), TypeError),
        (lambda: Param(1, "default below min", min=2), ValueError),
        (lambda: Param("a", "default not a choice", choices=("b",)), ValueError),
    ],
)
def test_param_when_declared_wrong_then_error_at_class_definition(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


def test_set_params_when_invalid_then_config_error_and_nothing_changes() -> None:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="t")
    strategy = Crossover()
    runtime.add("x", strategy, ["AAPL"], "1 min")
    runtime.set_params("x", {"fast": 3})
    assert strategy.fast == 3
    with pytest.raises(ConfigError, match=r"strategies\.x: params\.slow: must be <= 500"):
        runtime.set_params("x", {"fast": 4, "slow": 1000})
    assert strategy.fast == 3
    assert runtime.status("x")["params"]["fast"] == 3


def test_add_when_params_applied_before_then_kept() -> None:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="t")
    strategy = Crossover()
    apply_params(strategy, resolve_params(Crossover, {"fast": 7}, "cfg"))
    runtime.add("x", strategy, ["AAPL"], "1 min")
    assert strategy.fast == 7
    assert runtime.status("x")["params"]["fast"] == 7
