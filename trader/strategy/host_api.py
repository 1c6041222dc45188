"""A strategy service's RPC (shard K on ``tcp://<shards.host>:<shards.base_port + K>``).

| method | params | result |
|---|---|---|
| ``list`` | - | every hosted strategy: name, state, instruments, bar size, position, ... plus ``shard`` |
| ``status`` | ``name`` | the strategy in detail (runtime status) plus its recent events (errors with
  tracebacks, slow hooks, state changes), event counts and its order sender's counters |
| ``enable`` | ``name`` | lets it trade again (an ERROR strategy restarts); its status |
| ``disable`` | ``name``, ``cancel_orders`` (false) | stops its intents (and cancels its working orders) |
| ``reload`` | ``name``, ``params`` (optional) | new parameters: the given ones, else the config file's |
| ``ping`` | - | built in (wire.md) |

Errors: ``unknown_strategy`` (not on this shard), ``bad_params`` (a parameter the class refuses),
``invalid_config`` (the file no longer loads), ``not_ready`` (still starting).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trader.config.schema import ConfigError
from trader.messaging.rpc import BAD_PARAMS, MethodRegistry, RpcError
from trader.strategy.config import load_strategies
from trader.strategy.host import StrategyHost
from trader.strategy.hosting import resolve

UNKNOWN_STRATEGY = "unknown_strategy"
INVALID_CONFIG = "invalid_config"
NOT_READY = "not_ready"


def build_registry(host: StrategyHost, config_path: Path, environ: Mapping[str, str]) -> MethodRegistry:
    registry = MethodRegistry()

    def known(name: str) -> None:
        if name not in host.loaded:
            here = ", ".join(host.loaded) or "none"
            raise RpcError(UNKNOWN_STRATEGY, f"no strategy {name!r} on shard {host.shard} (here: {here})")

    def ready() -> None:
        if not host.running:
            raise RpcError(NOT_READY, f"shard {host.shard} is still starting (restoring, warming up)")

    def status_of(name: str) -> dict[str, Any]:
        return strategy_status(host, name)

    @registry.method("list")
    def list_() -> list[dict[str, Any]]:
        """Every strategy of this shard with its state."""
        return [{**item, "shard": host.shard} for item in host.runtime.list()]

    @registry.method("status")
    def status(name: str) -> dict[str, Any]:
        """One strategy in detail: state, params, positions, working orders, last error, events."""
        known(name)
        return status_of(name)

    @registry.method("enable")
    def enable(name: str) -> dict[str, Any]:
        """Let the strategy trade again (from DISABLED or ERROR)."""
        known(name)
        ready()
        host.apply(host.runtime.enable(name))
        return status_of(name)

    @registry.method("disable")
    def disable(name: str, cancel_orders: bool = False) -> dict[str, Any]:
        """Stop the strategy's intents; cancel_orders: also cancel its working orders."""
        known(name)
        ready()
        host.apply(host.runtime.disable(name, cancel_orders))
        return status_of(name)

    @registry.method("reload")
    def reload(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """New parameters: ``params`` (each checked against the class), else the config file's."""
        known(name)
        reload_params(host, name, params, config_path, environ)
        return status_of(name)

    return registry


def strategy_status(host: StrategyHost, name: str) -> dict[str, Any]:
    """The runtime's status of ``name`` with the shard, its class, recent events and sender counters."""
    status = dict(host.runtime.status(name))
    status["shard"] = host.shard
    status["class"] = host.loaded[name].entry.class_path
    status["events"] = [e for e in host.recent if e["strategy"] == name][-20:]
    status["event_counts"] = dict(host.event_counts.get(name, {}))
    stats = host.sender.stats.get(name)
    status["sender"] = {**(stats.as_dict() if stats is not None else {}), "queued": host.sender.pending(name)}
    return status


def reload_params(
    host: StrategyHost,
    name: str,
    params: Mapping[str, Any] | None,
    config_path: Path,
    environ: Mapping[str, str],
) -> None:
    """Give ``name`` the parameters ``params``, else those of the config file now (RpcError else)."""
    spec = host.loaded[name]
    source = "reload" if params is not None else str(config_path)
    if params is None:
        try:
            entry = load_strategies(config_path, environ).entry(name)
        except ConfigError as exc:
            raise RpcError(INVALID_CONFIG, str(exc)) from None
        except KeyError as exc:
            raise RpcError(INVALID_CONFIG, f"{config_path}: {exc.args[0]}") from None
        if entry.class_path != spec.entry.class_path:
            raise RpcError(
                INVALID_CONFIG,
                f"{config_path}: strategies.{name}.class changed ({entry.class_path}): restart the shard",
            )
        params = entry.params
    try:
        resolve(spec.cls, name, params, source)
        host.runtime.set_params(name, params, source=source)
    except ConfigError as exc:
        raise RpcError(BAD_PARAMS, str(exc)) from None
    host.apply([])
