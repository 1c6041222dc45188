"""The trader service's configuration: configs/trader.yaml."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trader.config.schema import checked, endpoint, in_range
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
