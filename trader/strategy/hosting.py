"""Which strategies a shard hosts, their classes and parameters, and the runtime holding them.

Everything here fails before anything trades: a name that is not in the file or not on this
shard, a class that does not load, a parameter the class does not declare (or of the wrong type,
or out of range) is a :class:`ConfigError` naming the config file and the key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trader.config.schema import ConfigError
from trader.strategy.base import Strategy
from trader.strategy.config import StrategiesConfig, StrategyConfig
from trader.strategy.loader import load_class
from trader.strategy.params import resolve_params
from trader.strategy.runtime import StrategyRuntime


@dataclass(frozen=True, slots=True)
class Loaded:
    name: str
    entry: StrategyConfig
    cls: type[Strategy]
    params: Mapping[str, Any]


def select(
    config: StrategiesConfig, source: str, shard: int, names: Sequence[str] | None
) -> dict[str, StrategyConfig]:
    """The strategies of ``shard`` (only ``names`` when given: each must be on this shard)."""
    if not 0 <= shard < config.shards.count:
        raise ConfigError(
            source, "shards.count", f"there is no shard {shard} (shards 0..{config.shards.count - 1})"
        )
    entries = config.entries()
    if not names:
        return {name: e for name, e in entries.items() if e.shard == shard}
    chosen: dict[str, StrategyConfig] = {}
    for name in names:
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise ConfigError(source, f"strategies.{name}", f"no such strategy (known: {known})")
        if entries[name].shard != shard:
            raise ConfigError(
                source, f"strategies.{name}.shard", f"{name} runs on shard {entries[name].shard}, not {shard}"
            )
        chosen[name] = entries[name]
    return chosen


def search_path(config_path: Path) -> list[Path]:
    """Where relative ``class`` files are looked up: the current directory, the config's
    directory and its parent (``configs/strategies.yaml`` -> the repository root)."""
    folder = config_path.expanduser().resolve().parent
    out: list[Path] = []
    for place in (Path.cwd(), folder, folder.parent):
        if place not in out:
            out.append(place)
    return out


def resolve(cls: type[Strategy], name: str, overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The class's parameters with ``overrides``; ConfigError at ``strategies.<name>.params.<key>``."""
    try:
        return resolve_params(cls, overrides, source)
    except ConfigError as exc:
        raise ConfigError(source, f"strategies.{name}.{exc.key}", exc.problem) from None


def load_all(entries: Mapping[str, StrategyConfig], config_path: Path) -> list[Loaded]:
    source = str(config_path)
    search = search_path(config_path)
    out: list[Loaded] = []
    for name, entry in entries.items():
        cls = load_class(entry.class_path, search=search, source=source, key=f"strategies.{name}.class")
        out.append(Loaded(name, entry, cls, resolve(cls, name, entry.params, source)))
    return out


def make_runtime(loaded: Sequence[Loaded], slow_hook_s: float) -> StrategyRuntime:
    """A runtime holding ``loaded``. Client order ids are ``<name>-<start time + random>-<n>``:
    new at every process start, so never reused after a restart."""
    runtime = StrategyRuntime(clock=time.time, slow_hook_s=slow_hook_s)
    for spec in loaded:
        entry = spec.entry
        runtime.add(
            spec.name,
            spec.cls(),
            entry.instruments,
            entry.bar_size,
            entry.enabled,
            warmup_bars=entry.warmup_bars,
        )
        runtime.set_params(spec.name, entry.params, source=f"strategies.{spec.name}")
    return runtime
