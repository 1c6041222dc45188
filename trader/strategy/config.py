"""The strategy services' configuration: configs/strategies.yaml.

Loaded strictly like every config (:mod:`trader.config.schema`): an unknown key, a wrong type or a
bad value is one line naming the file and the dotted key (``strategies.sma_fast.bar_size``).
Checked here, without importing any strategy code: ``class`` is ``<path>.py:<Class>``, ``shard``
is below ``shards.count``, ``bar_size`` is one of IB's sizes that divide a day (or ``ticks``).
The ``params`` are checked against the class's ``Param`` declarations when a strategy service
loads the class (:mod:`trader.strategy.loader`).

``python services/strategy_service.py --shard K`` hosts the strategies with ``shard: K``; shard K's
RPC is ``tcp://<shards.host>:<shards.base_port + K>``. ``trader:`` endpoints left null come from
the trader's own config (configs/trader.yaml, ``$BOURSE_CONFIG``, ``BOURSE_ZMQ_*``).

CurveZMQ (docs/strategies.md, "Running on more processes or machines"): ``trader.curve_server_key``
names the trader's public key file; the shard then connects with keypair ``trader.curve_key_name``
of ``trader.curve_keys_dir``. Left null while the trader config (read for a null endpoint) has
``zmq.curve.enabled``, the trader's own key files are used. A trader endpoint beyond loopback
without curve is a configuration error.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from trader.config.paths import CONFIG_ENV, resolve_config_path, resolve_data_dir
from trader.config.schema import ConfigError, build, checked, endpoint, env_overrides, in_range, load, merge
from trader.config.trader import LoggingConfig, TraderConfig, ZmqConfig
from trader.messaging.curve import CurveKeyError, CurveKeys, is_loopback, load_keys
from trader.service.bars import parse_bar_size

DEFAULT_CONFIG: Final = Path("configs/strategies.yaml")
CONFIG_PATH_ENV: Final = "BOURSE_STRATEGIES_CONFIG"
DEFAULT_TRADER_CONFIG: Final = Path("configs/trader.yaml")
TICKS: Final = "ticks"
_SOURCE: Final = "strategies.yaml"
"""Source named by errors raised inside the schema's checks (the loader puts the real path in)."""
_CLASS_RE: Final = re.compile(r"^(?P<file>[^:\s]+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)$")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
RESERVED_NAMES: Final = frozenset({"external", "unattributed"})


def _optional_endpoint(value: Any) -> str | None:
    return None if value is None else endpoint(value)


@dataclass(frozen=True, slots=True)
class TraderEndpoints:
    """Where the trader is; null: from the trader config (configs/trader.yaml + BOURSE_ZMQ_*)."""

    rpc: str | None = checked(None, _optional_endpoint)
    ticks: str | None = checked(None, _optional_endpoint)
    events: str | None = checked(None, _optional_endpoint)
    rpc_timeout_s: float = checked(5.0, in_range(0.1, 600))
    curve_server_key: str | None = None
    """The trader's public key file (``trader.key``): connect with CurveZMQ. A relative path is
    under the data directory. Null: curve only when the trader config enables it."""
    curve_keys_dir: str | None = None
    """Where this shard's keypair lives; null: ``<data-dir>/keys`` (relative: under the data dir)."""
    curve_key_name: str = "strategies"
    """This shard's keypair: ``<curve_keys_dir>/<name>.key_secret``; its ``.key`` goes into the
    trader's authorized clients directory."""


@dataclass(frozen=True, slots=True)
class ShardsConfig:
    count: int = checked(2, in_range(1, 1000))
    host: str = "127.0.0.1"
    base_port: int = checked(42020, in_range(1, 65535))

    def endpoint(self, shard: int) -> str:
        """Shard ``shard``'s RPC endpoint."""
        return f"tcp://{self.host}:{self.base_port + shard}"


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    """One strategy of the file (``class`` in YAML is ``class_path`` here: a Python keyword)."""

    class_path: str
    instruments: tuple[str, ...]
    bar_size: str = "1 min"
    warmup_bars: int = checked(0, in_range(0, 100_000))
    params: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    enabled: bool = True
    shard: int = checked(0, in_range(0, 999))
    cancel_on_stop: bool = False
    """Cancel the strategy's working orders when its service stops (default: leave them)."""

    @property
    def file(self) -> str:
        return self.class_path.partition(":")[0]

    @property
    def class_name(self) -> str:
        return self.class_path.partition(":")[2]

    @property
    def bar_seconds(self) -> int | None:
        """The bar length in seconds; None for ``ticks``."""
        return None if self.bar_size == TICKS else parse_bar_size(self.bar_size).seconds


_YAML_KEYS: Final = {
    "class" if f.name == "class_path" else f.name for f in dataclasses.fields(StrategyConfig)
}


def parse_strategy(name: Any, raw: Any, source: str = _SOURCE) -> StrategyConfig:
    """One ``strategies.<name>`` entry, validated; ConfigError names ``strategies.<name>.<key>``."""
    prefix = f"strategies.{name}"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(
            source, prefix, "a strategy name is letters, digits, '_', '-', '.' (no ':' or spaces)"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(
            source, prefix, f"{name!r} is reserved (orders outside Bourse, unexplained positions)"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(source, prefix, f"expected a mapping, got {raw!r}")
    for key in raw:
        if key not in _YAML_KEYS:
            known = ", ".join(sorted(_YAML_KEYS))
            raise ConfigError(source, f"{prefix}.{key}", f"unknown key (expected one of: {known})")
    if "class" not in raw:
        raise ConfigError(source, f"{prefix}.class", "missing required key (`path/to/file.py:ClassName`)")
    data = {("class_path" if k == "class" else k): v for k, v in raw.items()}
    try:
        entry = build(StrategyConfig, data, source, prefix)
    except ConfigError as exc:
        raise ConfigError(exc.source, exc.key.replace(".class_path", ".class"), exc.problem) from None
    if not _CLASS_RE.match(entry.class_path):
        raise ConfigError(
            source, f"{prefix}.class", f"expected `path/to/file.py:ClassName`, got {entry.class_path!r}"
        )
    if not entry.instruments:
        raise ConfigError(source, f"{prefix}.instruments", "at least one instrument is needed")
    for i, symbol in enumerate(entry.instruments):
        if not symbol.strip() or symbol != symbol.strip():
            raise ConfigError(source, f"{prefix}.instruments[{i}]", f"not a symbol: {symbol!r}")
    if len(set(entry.instruments)) != len(entry.instruments):
        raise ConfigError(source, f"{prefix}.instruments", "an instrument is listed twice")
    if entry.bar_size != TICKS:
        try:
            size = parse_bar_size(entry.bar_size)
        except ValueError as exc:
            raise ConfigError(source, f"{prefix}.bar_size", f"{exc}, or 'ticks'") from None
        entry = dataclasses.replace(entry, bar_size=size.name)
    for key in entry.params:
        if not isinstance(key, str):
            raise ConfigError(source, f"{prefix}.params", f"parameter names are strings, got {key!r}")
    return entry


def _check_strategies(value: Any) -> str | None:
    for name, raw in value.items():
        parse_strategy(name, raw)
    return None


@dataclass(frozen=True, slots=True)
class StrategiesConfig:
    data_dir: str | None = None
    """Overridden by ``--data-dir`` and ``$BOURSE_DATA_DIR``; ``./data`` when unset everywhere."""
    trader: TraderEndpoints = field(default_factory=TraderEndpoints)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    slow_hook_s: float = checked(0.5, in_range(0.001, 3600))
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    strategies: Mapping[str, Any] = field(
        default_factory=lambda: types.MappingProxyType({}), metadata={"check": _check_strategies}
    )

    def __post_init__(self) -> None:
        for name, entry in self.entries().items():
            if entry.shard >= self.shards.count:
                raise ConfigError(
                    _SOURCE,
                    f"strategies.{name}.shard",
                    f"shard {entry.shard} does not exist: shards.count is {self.shards.count} "
                    f"(shards 0..{self.shards.count - 1})",
                )

    def entries(self) -> dict[str, StrategyConfig]:
        """Every strategy, parsed, by name (in the file's order)."""
        return {str(name): parse_strategy(name, raw) for name, raw in self.strategies.items()}

    def entry(self, name: str) -> StrategyConfig:
        """Strategy ``name``; KeyError naming the known ones."""
        entries = self.entries()
        if name not in entries:
            known = ", ".join(entries) or "none"
            raise KeyError(f"no strategy {name!r} in the strategies config (known: {known})")
        return entries[name]

    def of_shard(self, shard: int) -> dict[str, StrategyConfig]:
        return {name: e for name, e in self.entries().items() if e.shard == shard}

    def shard_of(self, name: str) -> int:
        return self.entry(name).shard


def strategies_config_path(cli_value: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$BOURSE_STRATEGIES_CONFIG``, else configs/strategies.yaml."""
    for candidate in (cli_value, environ.get(CONFIG_PATH_ENV) or None):
        if candidate:
            return Path(candidate).expanduser()
    return DEFAULT_CONFIG


def load_strategies(path: Path, environ: Mapping[str, str]) -> StrategiesConfig:
    """Load and validate ``path`` (env overrides applied); ConfigError names ``path`` and the key."""
    try:
        return load(StrategiesConfig, path, environ)
    except ConfigError as exc:
        if exc.source == _SOURCE:
            raise ConfigError(str(path), exc.key, exc.problem) from None
        raise


@dataclass(frozen=True, slots=True)
class ResolvedEndpoints:
    rpc: str
    ticks: str
    events: str
    rpc_timeout_s: float
    curve: CurveKeys | None = None
    """This shard's CurveZMQ keys with the trader's public key; None: plain TCP."""


def trader_endpoints(
    config: StrategiesConfig, environ: Mapping[str, str], data_dir: Path | None = None
) -> ResolvedEndpoints:
    """The trader's endpoints: the strategies config's, else the trader config's (its file is
    ``$BOURSE_CONFIG`` or configs/trader.yaml; ``BOURSE_ZMQ_*`` apply). The trader config is read
    only when some endpoint is left null. With CurveZMQ (see the module doc) the keys are loaded
    here; a missing key file, or a trader beyond loopback without curve, is a ConfigError.
    ``data_dir``: the shard's (relative key paths); default from ``$BOURSE_DATA_DIR`` / config."""
    ends = config.trader
    where = data_dir if data_dir is not None else resolve_data_dir(None, environ, config.data_dir)
    zmq: ZmqConfig | None = None
    trader_data_dir = where
    if not (ends.rpc and ends.ticks and ends.events):
        trader_path = resolve_config_path(None, environ, DEFAULT_TRADER_CONFIG)
        if trader_path.exists() or environ.get(CONFIG_ENV):
            trader = load(TraderConfig, trader_path, environ)
        else:  # no trader config here: its defaults with the BOURSE_* overrides
            trader = build(TraderConfig, merge({}, env_overrides(TraderConfig, environ)), "environment")
        zmq = trader.zmq
        trader_data_dir = resolve_data_dir(None, environ, trader.data_dir)
    rpc = ends.rpc or (zmq.rpc if zmq else "")
    ticks = ends.ticks or (zmq.ticks if zmq else "")
    events = ends.events or (zmq.events if zmq else "")
    server_key: Path | None = None
    if ends.curve_server_key:
        server_key = _under(where, ends.curve_server_key)
    elif zmq is not None and zmq.curve.enabled:
        server_key = zmq.curve.server_public_path(trader_data_dir)
    if server_key is None:
        for name, end in (("rpc", rpc), ("ticks", ticks), ("events", events)):
            if not is_loopback(end):
                raise ConfigError(
                    _SOURCE,
                    f"trader.{name}",
                    f"{end} is not on this machine: set trader.curve_server_key (the trader's public key, "
                    "CurveZMQ) to connect to it",
                )
        return ResolvedEndpoints(rpc, ticks, events, ends.rpc_timeout_s)
    keys_dir = _under(where, ends.curve_keys_dir) if ends.curve_keys_dir else where / "keys"
    try:
        curve = load_keys(keys_dir, ends.curve_key_name, server_key=server_key)
    except (CurveKeyError, ValueError) as exc:
        key = "trader.curve_server_key" if str(exc).startswith(str(server_key)) else "trader.curve_keys_dir"
        raise ConfigError(_SOURCE, key, str(exc)) from None
    return ResolvedEndpoints(rpc, ticks, events, ends.rpc_timeout_s, curve)


def _under(data_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_dir / path
