"""The trader service's configuration: configs/trader.yaml."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trader.config.schema import checked, endpoint, in_range
from trader.messaging.curve import CurveKeys, is_loopback, key_paths, load_keys
from trader.risk.limits import RiskConfig

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


@dataclass(frozen=True, slots=True)
class IbConfig:
    """Where TWS / IB Gateway (or the paper exchange) listens, and who we are to it."""

    host: str = "127.0.0.1"
    port: int = checked(7497, in_range(1, 65535))
    client_id: int = checked(1, in_range(0, 2**31 - 1))
    account: str = ""
    """Empty: the first account TWS reports as managed."""
    connect_timeout_s: float = checked(10.0, in_range(0.1, 600))
    readonly: bool = False


def _key_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value or value != Path(value).name or value.startswith("."):
        return f"expected a key name (a file name without directory, like 'trader'), got {value!r}"
    return None


def _under(data_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_dir / path


@dataclass(frozen=True, slots=True)
class CurveConfig:
    """CurveZMQ on the trader's sockets (docs/wire.md "Security"); required to bind beyond loopback."""

    enabled: bool = False
    keys_dir: str | None = None
    """Where the keypairs live; null: ``<data-dir>/keys``; a relative path is under the data dir."""
    server_key: str = checked("trader", _key_name)
    """The trader's keypair: ``<keys_dir>/<server_key>.key`` (public) and ``.key_secret``."""
    client_key: str = checked("cli", _key_name)
    """The keypair this config's clients (cli.py, history refresh) connect with."""
    clients_dir: str | None = None
    """Public keys (``*.key``) of the clients the trader admits; null: ``<keys_dir>/clients``."""

    def keys_path(self, data_dir: Path) -> Path:
        return _under(data_dir, self.keys_dir) if self.keys_dir else data_dir / "keys"

    def clients_path(self, data_dir: Path) -> Path:
        return (
            _under(data_dir, self.clients_dir) if self.clients_dir else self.keys_path(data_dir) / "clients"
        )

    def server_public_path(self, data_dir: Path) -> Path:
        return key_paths(self.keys_path(data_dir), self.server_key)[0]

    def server_keys(self, data_dir: Path) -> CurveKeys | None:
        """The trader's keys (None when disabled); raises CurveKeyError naming the missing file."""
        if not self.enabled:
            return None
        return load_keys(
            self.keys_path(data_dir), self.server_key, authorized_dir=self.clients_path(data_dir)
        )

    def client_keys(self, data_dir: Path, name: str | None = None) -> CurveKeys | None:
        """Keypair ``name`` (default ``client_key``) with the trader's public key (None when disabled)."""
        if not self.enabled:
            return None
        keys_dir = self.keys_path(data_dir)
        return load_keys(keys_dir, name or self.client_key, server_key=self.server_public_path(data_dir))


@dataclass(frozen=True, slots=True)
class ZmqConfig:
    """The trader's ZeroMQ endpoints and messaging knobs (docs/wire.md)."""

    rpc: str = checked("tcp://127.0.0.1:42001", endpoint)
    ticks: str = checked("tcp://127.0.0.1:42002", endpoint)
    events: str = checked("tcp://127.0.0.1:42003", endpoint)
    rpc_timeout_s: float = checked(5.0, in_range(0.01, 3600))
    tick_linger_ms: float = checked(0.0, in_range(0, 1000))
    """How long a tick batch may wait for more ticks; 0 sends at the next loop turn."""
    tick_max_batch: int = checked(1000, in_range(1, 1_000_000))
    send_hwm: int = checked(100_000, in_range(1, 10_000_000))
    heartbeat_s: float = checked(1.0, in_range(0.05, 60))
    curve: CurveConfig = field(default_factory=CurveConfig)

    def unsafe_binds(self) -> list[str]:
        """``zmq.<name> = <endpoint>`` of each endpoint that binds beyond loopback without curve."""
        if self.curve.enabled:
            return []
        ends = {"rpc": self.rpc, "ticks": self.ticks, "events": self.events}
        return [f"zmq.{name} = {end}" for name, end in ends.items() if not is_loopback(end)]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """ArcticDB. ``lmdb://<relative path>`` lives under the data directory; S3 URIs are shared."""

    uri: str = "lmdb://arctic"

    def resolved_uri(self, data_dir: Path) -> str:
        scheme, sep, rest = self.uri.partition("://")
        if scheme == "lmdb" and sep and not rest.startswith("/"):
            return f"lmdb://{(data_dir / rest).as_posix()}"
        return self.uri


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: LogLevel = "INFO"
    console: bool = True
    json: bool = False
    """Also write ``<service>.jsonl`` (one JSON object per line) beside the text log."""
    max_bytes: int = checked(10 * 1024 * 1024, in_range(1024, 2**40))
    backup_count: int = checked(5, in_range(0, 1000))
    levels: Mapping[str, LogLevel] = field(default_factory=lambda: types.MappingProxyType({}))
    """Level per component (logger name), e.g. ``trader.messaging: DEBUG``."""


@dataclass(frozen=True, slots=True)
class TraderConfig:
    data_dir: str | None = None
    """Overridden by ``--data-dir`` and ``$BOURSE_DATA_DIR``; ``./data`` when unset everywhere."""
    ib: IbConfig = field(default_factory=IbConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    """Pre-trade limits, trading states, the breaker, the kill switch, the live-trading guard
    (docs/risk.md)."""
