"""The trader service's RPC methods (docs/wire.md lists the built-ins ``ping`` and ``methods``).

Later issues register orders, positions, market data, risk and control here; each method is a
small function over the service's state, registered explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trader
from trader.config.trader import TraderConfig
from trader.messaging.rpc import MethodRegistry


@dataclass(slots=True)
class TraderState:
    """What the trader service knows about itself; grows with the IB session and the book."""

    config: TraderConfig
    config_path: Path
    data_dir: Path
    started_wall: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)


def plain(value: Any) -> Any:
    """Config values as plain msgpack-able data (mappings and tuples unwrapped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def status(state: TraderState) -> dict[str, Any]:
    config = state.config
    return {
        "service": "trader",
        "version": trader.__version__,
        "pid": os.getpid(),
        "started": state.started_wall,
        "uptime_s": round(time.monotonic() - state.started_monotonic, 3),
        "data_dir": str(state.data_dir),
        "config_path": str(state.config_path),
        "store_uri": config.store.resolved_uri(state.data_dir),
        "endpoints": {"rpc": config.zmq.rpc, "ticks": config.zmq.ticks, "events": config.zmq.events},
        "ib": {"host": config.ib.host, "port": config.ib.port, "client_id": config.ib.client_id},
    }


def build_registry(state: TraderState) -> MethodRegistry:
    registry = MethodRegistry()

    @registry.method("status")
    def _status() -> dict[str, Any]:
        """The service: version, uptime, data dir, store, endpoints, IB target."""
        return status(state)

    @registry.method("config")
    def _config() -> dict[str, Any]:
        """The effective configuration (file plus environment overrides)."""
        return {
            "path": str(state.config_path),
            "data_dir": str(state.data_dir),
            "config": plain(state.config),
        }

    return registry
