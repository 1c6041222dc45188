"""configs/strategies.yaml: strict loading, one-line errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trader.config.files import check_file
from trader.config.schema import ConfigError
from trader.strategy.config import load_strategies
from trader.strategy.hosting import load_all, select

STRATEGY = "strategies/sma_crossover.py:SmaCrossover"
ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategies.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_strategies(path, environ or {})
    return str(caught.value)


def entry(extra: str = "", *, cls: str = STRATEGY) -> str:
    return f"strategies:\n  sma:\n    class: {cls}\n    instruments: [AAPL]\n{extra}"


def test_config_when_the_repository_file_then_it_loads_with_three_strategies_on_two_shards() -> None:
    config = load_strategies(ROOT / "configs" / "strategies.yaml", {})
    entries = config.entries()
    assert len(entries) == 3
    assert {e.shard for e in entries.values()} == {0, 1}
    assert check_file(ROOT / "configs" / "strategies.yaml", {}).ok


def test_config_when_unknown_key_in_a_strategy_then_error_names_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, entry("    colour: red\n"))
    assert error_of(path).startswith(f"{path}: strategies.sma.colour: unknown key")


def test_config_when_unknown_top_level_key_then_error_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "shard: {count: 2}\n")
    assert error_of(path).startswith(f"{path}: shard: unknown key")


def test_config_when_class_is_not_file_colon_class_then_error(tmp_path: Path) -> None:
    path = write(tmp_path, entry(cls="strategies.sma_crossover.SmaCrossover"))
    assert "strategies.sma.class: expected `path/to/file.py:ClassName`" in error_of(path)


def test_config_when_class_is_missing_then_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "strategies:\n  sma:\n    instruments: [AAPL]\n")
    assert f"{path}: strategies.sma.class: missing required key" in error_of(path)


def test_config_when_shard_not_below_count_then_error(tmp_path: Path) -> None:
    path = write(tmp_path, "shards: {count: 2}\n" + entry("    shard: 2\n"))
    assert f"{path}: strategies.sma.shard: shard 2 does not exist" in error_of(path)


def test_config_when_bar_size_unknown_then_error_and_ticks_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, entry("    bar_size: 7 weeks\n"))
    assert "strategies.sma.bar_size: unknown bar size '7 weeks'" in error_of(path)
    ticks = write(tmp_path, entry("    bar_size: ticks\n"))
    assert load_strategies(ticks, {}).entry("sma").bar_size == "ticks"
    five = write(tmp_path, entry("    bar_size: 5 sec\n"))
    assert load_strategies(five, {}).entry("sma").bar_size == "5 secs"


def test_config_when_env_overrides_base_port_then_shard_endpoints_follow(tmp_path: Path) -> None:
    path = write(tmp_path, entry())
    config = load_strategies(path, {"BOURSE_SHARDS_BASE_PORT": "43100"})
    assert config.shards.endpoint(1) == "tcp://127.0.0.1:43101"


def test_config_when_reserved_strategy_name_then_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"strategies:\n  external:\n    class: {STRATEGY}\n    instruments: [AAPL]\n")
    assert "strategies.external: 'external' is reserved" in error_of(path)


def test_load_when_params_unknown_or_ill_typed_then_error_names_the_param(tmp_path: Path) -> None:
    cls = str(ROOT / STRATEGY)
    path = write(tmp_path, entry("    params: {fastest: 3}\n", cls=cls))
    config = load_strategies(path, {})
    with pytest.raises(ConfigError, match=r"strategies\.sma\.params\.fastest: unknown parameter"):
        load_all(select(config, str(path), 0, None), path)
    path = write(tmp_path, entry("    params: {fast: fast}\n", cls=cls))
    with pytest.raises(ConfigError, match=r"strategies\.sma\.params\.fast: expected an integer"):
        load_all(select(load_strategies(path, {}), str(path), 0, None), path)


def test_load_when_file_or_class_missing_or_not_a_strategy_then_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("class NotOne:\n    pass\n", encoding="utf-8")
    cases = {
        "nowhere.py:X": "strategies.sma.class: no such file nowhere.py",
        "plain.py:Missing": "plain.py has no class Missing (classes there: NotOne)",
        "plain.py:NotOne": "plain.py:NotOne is not a strategy",
    }
    for cls, message in cases.items():
        path = write(tmp_path, entry(cls=cls))
        with pytest.raises(ConfigError) as caught:
            load_all(select(load_strategies(path, {}), str(path), 0, None), path)
        assert message in str(caught.value)


def test_select_when_named_strategy_is_on_another_shard_then_error(tmp_path: Path) -> None:
    path = write(tmp_path, entry("    shard: 1\n"))
    with pytest.raises(ConfigError, match="sma runs on shard 1, not 0"):
        select(load_strategies(path, {}), str(path), 0, ["sma"])
