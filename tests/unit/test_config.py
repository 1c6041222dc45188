"""Configuration: typed, immutable, strict; every problem is one line naming file, key and expectation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.support import ROOT
from trader.config import ConfigError
from trader.config.files import check_all
from trader.config.paths import resolve_config_path, resolve_data_dir
from trader.config.schema import load
from trader.config.trader import TraderConfig

SHIPPED = ROOT / "configs" / "trader.yaml"


def write(tmp_path: Path, text: str, name: str = "trader.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_trader_config_when_shipped_file_loaded_then_defaults_of_design_are_used() -> None:
    config = load(TraderConfig, SHIPPED, {})
    assert (config.ib.host, config.ib.port, config.ib.client_id) == ("127.0.0.1", 7497, 0)
    assert (config.zmq.rpc, config.zmq.ticks, config.zmq.events) == (
        "tcp://127.0.0.1:42001",
        "tcp://127.0.0.1:42002",
        "tcp://127.0.0.1:42003",
    )
    assert config.logging.levels["ib_async"] == "WARNING"


def test_trader_config_when_loaded_then_it_is_immutable() -> None:
    config = load(TraderConfig, SHIPPED, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ib.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.logging.levels["x"] = "DEBUG"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ib:\n  prot: 7497\n", "trader.yaml: ib.prot: unknown key (expected one of: account, client_id"),
        ("ib:\n  port: seven\n", "trader.yaml: ib.port: expected an integer, got 'seven'"),
        ("ib:\n  port: 70000\n", "trader.yaml: ib.port: must be between 1 and 65535, got 70000"),
        ("ib:\n  readonly: 1\n", "trader.yaml: ib.readonly: expected true or false, got 1"),
        ("zmq:\n  rpc: localhost:1\n", "trader.yaml: zmq.rpc: expected a ZeroMQ endpoint"),
        ("logging:\n  level: LOUD\n", "trader.yaml: logging.level: expected one of 'DEBUG'"),
        ("logging:\n  levels:\n    trader: 3\n", "trader.yaml: logging.levels.trader: expected one of"),
        ("ib: [1, 2]\n", "trader.yaml: ib: expected a mapping, got [1, 2]"),
        ("- 1\n", "trader.yaml: (top level): expected a mapping, got list"),
        ("ib:\n  port: [\n", "trader.yaml: invalid YAML: line 3, column 1"),
        ("surprise: 1\n", "trader.yaml: surprise: unknown key (expected one of: data_dir, ib, logging"),
    ],
)
def test_trader_config_when_file_is_wrong_then_one_line_error_names_file_key_and_expectation(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(TraderConfig, path, {})
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_trader_config_when_file_missing_then_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: file not found"):
        load(TraderConfig, tmp_path / "nowhere.yaml", {})


def test_trader_config_when_env_overrides_then_they_win_with_yaml_typing() -> None:
    config = load(
        TraderConfig,
        SHIPPED,
        {
            "BOURSE_IB_PORT": "4002",
            "BOURSE_IB_ACCOUNT": "007",
            "BOURSE_LOGGING_JSON": "true",
            "BOURSE_ZMQ_RPC": "tcp://127.0.0.1:5555",
            "BOURSE_PYCRON_ANYTHING": "belongs to another config",
        },
    )
    assert config.ib.port == 4002
    assert config.ib.account == "007"  # string fields take the text as is
    assert config.logging.json is True
    assert config.zmq.rpc == "tcp://127.0.0.1:5555"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BOURSE_IB_PORTT": "1"},
            "environment variable BOURSE_IB_PORTT: ib.portt: unknown key (BOURSE_IB_ACCOUNT",
        ),
        (
            {"BOURSE_IB_PORT": "abc"},
            "environment variable BOURSE_IB_PORT: ib.port: expected an integer, got 'abc'",
        ),
        (
            {"BOURSE_IB_CLIENT_ID": "-3"},
            "environment variable BOURSE_IB_CLIENT_ID: ib.client_id: must be between",
        ),
    ],
)
def test_trader_config_when_env_override_is_wrong_then_error_names_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(TraderConfig, SHIPPED, env)
    assert message in str(info.value)


def test_store_uri_when_relative_lmdb_then_it_lives_under_the_data_dir(tmp_path: Path) -> None:
    config = load(TraderConfig, SHIPPED, {})
    assert config.store.resolved_uri(tmp_path) == f"lmdb://{tmp_path}/arctic"
    s3 = dataclasses.replace(config.store, uri="s3://s3.example.com:bucket?access=x")
    assert s3.resolved_uri(tmp_path) == "s3://s3.example.com:bucket?access=x"


def test_data_dir_when_resolved_then_flag_beats_env_beats_config_beats_default(tmp_path: Path) -> None:
    env = {"BOURSE_DATA_DIR": str(tmp_path / "env")}
    assert resolve_data_dir(tmp_path / "flag", env, "cfg") == tmp_path / "flag"
    assert resolve_data_dir(None, env, "cfg") == tmp_path / "env"
    assert resolve_data_dir(None, {}, str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert resolve_data_dir(None, {}, None) == Path("data").resolve()
    assert resolve_data_dir(None, {"BOURSE_DATA_DIR": ""}, None) == Path("data").resolve()


def test_config_path_when_resolved_then_flag_beats_env_beats_default(tmp_path: Path) -> None:
    default = Path("configs/trader.yaml")
    assert resolve_config_path("a.yaml", {"BOURSE_CONFIG": "b.yaml"}, default) == Path("a.yaml")
    assert resolve_config_path(None, {"BOURSE_CONFIG": "b.yaml"}, default) == Path("b.yaml")
    assert resolve_config_path(None, {}, default) == default


def test_check_all_when_shipped_configs_then_every_file_is_valid() -> None:
    results = check_all(ROOT / "configs", {})
    assert results, "configs/ holds no files"
    assert [r.error for r in results if not r.ok] == []


def test_check_all_when_unknown_file_then_it_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "x: 1\n", "mystery.yaml")
    (result,) = check_all(tmp_path, {})
    assert result.error is not None and "no schema knows this file" in result.error
