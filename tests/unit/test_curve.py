"""CurveZMQ plumbing without sockets: endpoints, key files, the config that decides when curve is on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from trader.config.schema import ConfigError, build, load
from trader.config.trader import TraderConfig
from trader.messaging.curve import CurveKeyError, generate_keypair, is_loopback, list_keys, load_keys
from trader.strategy.config import StrategiesConfig, trader_endpoints


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:42001", True),
        ("tcp://127.0.0.2:42001", True),
        ("tcp://localhost:42001", True),
        ("tcp://[::1]:42001", True),
        ("ipc:///tmp/bourse.sock", True),
        ("inproc://x", True),
        ("tcp://0.0.0.0:42001", False),
        ("tcp://*:42001", False),
        ("tcp://10.0.0.5:42001", False),
        ("tcp://[::]:42001", False),
        ("tcp://eth0:42001", False),
        ("tcp://trader.example.com:42001", False),
        ("tcp://127.0.0.1:0;10.0.0.5:42001", False),
    ],
)
def test_is_loopback_when_endpoint_then_only_this_machine_counts(endpoint: str, local: bool) -> None:
    assert is_loopback(endpoint) is local


def test_generate_keypair_when_new_then_secret_is_0600_and_keys_load(tmp_path: Path) -> None:
    public, secret = generate_keypair(tmp_path / "keys", "trader")
    assert (public.name, secret.name) == ("trader.key", "trader.key_secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0
    keys = load_keys(tmp_path / "keys", "trader", server_key=public)
    assert len(keys.public) == len(keys.secret) == 40 and keys.server_public == keys.public
    assert keys.secret.decode() not in repr(keys)
    assert [row["name"] for row in list_keys(tmp_path / "keys")] == ["trader"]
    assert not list(Path(tmp_path / "keys").glob(".keygen-*"))


def test_generate_keypair_when_name_exists_then_refused_unless_overwrite(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "a")
    before = (tmp_path / "a.key").read_text()
    with pytest.raises(FileExistsError, match=r"a\.key_secret"):
        generate_keypair(tmp_path, "a")
    generate_keypair(tmp_path, "a", overwrite=True)
    assert (tmp_path / "a.key").read_text() != before


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "with space"])
def test_generate_keypair_when_name_is_not_a_plain_file_name_then_value_error(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match="key name"):
        generate_keypair(tmp_path, name)


def test_load_keys_when_files_missing_or_public_only_then_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CurveKeyError, match=r"nope\.key_secret: key file not found"):
        load_keys(tmp_path, "nope")
    public, _ = generate_keypair(tmp_path, "srv")
    with pytest.raises(CurveKeyError, match=r"other\.key: key file not found"):
        load_keys(tmp_path, "srv", server_key=tmp_path / "other.key")
    with pytest.raises(CurveKeyError, match="authorized clients directory not found"):
        load_keys(tmp_path, "srv", authorized_dir=tmp_path / "clients")
    (tmp_path / "pub.key_secret").write_text(public.read_text())
    with pytest.raises(CurveKeyError, match=r"pub\.key_secret: holds no secret key"):
        load_keys(tmp_path, "pub")
    (tmp_path / "junk.key_secret").write_text("not a certificate\n")
    with pytest.raises(CurveKeyError, match=r"junk\.key_secret"):
        load_keys(tmp_path, "junk")


def test_zmq_config_when_bind_beyond_loopback_then_unsafe_unless_curve_enabled() -> None:
    plain = build(TraderConfig, {"zmq": {"rpc": "tcp://0.0.0.0:42001", "events": "tcp://*:42003"}}, "t")
    assert plain.zmq.unsafe_binds() == ["zmq.rpc = tcp://0.0.0.0:42001", "zmq.events = tcp://*:42003"]
    curve = build(TraderConfig, {"zmq": {"rpc": "tcp://0.0.0.0:42001", "curve": {"enabled": True}}}, "t")
    assert curve.zmq.unsafe_binds() == []
    assert build(TraderConfig, {}, "t").zmq.unsafe_binds() == []


def test_curve_config_when_paths_null_or_relative_then_under_the_data_dir(tmp_path: Path) -> None:
    default = build(TraderConfig, {}, "t").zmq.curve
    assert default.keys_path(tmp_path) == tmp_path / "keys"
    assert default.clients_path(tmp_path) == tmp_path / "keys" / "clients"
    assert default.server_keys(tmp_path) is None and default.client_keys(tmp_path) is None
    custom = build(
        TraderConfig, {"zmq": {"curve": {"keys_dir": "k", "clients_dir": "/etc/c"}}}, "t"
    ).zmq.curve
    assert custom.keys_path(tmp_path) == tmp_path / "k" and custom.clients_path(tmp_path) == Path("/etc/c")
    with pytest.raises(ConfigError, match=r"zmq\.curve\.server_key"):
        build(TraderConfig, {"zmq": {"curve": {"server_key": "../trader"}}}, "t")


def test_env_override_when_sub_section_key_then_applied_and_merged_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trader.yaml"
    path.write_text("zmq:\n  curve:\n    keys_dir: /srv/keys\n", encoding="utf-8")
    config = load(TraderConfig, path, {"BOURSE_ZMQ_CURVE_ENABLED": "true"})
    assert config.zmq.curve.enabled is True and config.zmq.curve.keys_dir == "/srv/keys"
    with pytest.raises(ConfigError, match="environment variable BOURSE_ZMQ_CURVE_ENABLED"):
        load(TraderConfig, path, {"BOURSE_ZMQ_CURVE_ENABLED": "maybe"})


def strategies(trader: Mapping[str, object]) -> StrategiesConfig:
    return build(StrategiesConfig, {"trader": trader}, "strategies.yaml")


REMOTE = {"rpc": "tcp://10.0.0.5:42001", "ticks": "tcp://10.0.0.5:42002", "events": "tcp://10.0.0.5:42003"}


def test_trader_endpoints_when_remote_without_server_key_then_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"trader\.rpc.*not on this machine.*curve_server_key"):
        trader_endpoints(strategies(REMOTE), {}, tmp_path)


def test_trader_endpoints_when_remote_with_keys_then_curve_loaded(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "keys", "strategies")
    server, _ = generate_keypair(tmp_path / "elsewhere", "trader")
    ends = trader_endpoints(strategies({**REMOTE, "curve_server_key": str(server)}), {}, tmp_path)
    assert ends.curve is not None and ends.curve.server_public == server.read_text().split('"')[1].encode()
    with pytest.raises(
        ConfigError, match=r"trader\.curve_keys_dir: .*shard7\.key_secret: key file not found"
    ):
        trader_endpoints(
            strategies({**REMOTE, "curve_server_key": str(server), "curve_key_name": "shard7"}), {}, tmp_path
        )


def test_trader_endpoints_when_trader_config_enables_curve_then_its_key_files_are_used(
    tmp_path: Path,
) -> None:
    generate_keypair(tmp_path / "keys", "trader")
    generate_keypair(tmp_path / "keys", "strategies")
    env = {
        "BOURSE_ZMQ_CURVE_ENABLED": "true",
        "BOURSE_DATA_DIR": str(tmp_path),
        "BOURSE_CONFIG": "configs/trader.yaml",
    }
    ends = trader_endpoints(strategies({}), env, tmp_path)
    assert ends.curve is not None
    assert ends.curve.server_public == load_keys(tmp_path / "keys", "trader").public
    assert ends.curve.public == load_keys(tmp_path / "keys", "strategies").public
