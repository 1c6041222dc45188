"""The paper exchange's configuration: configs/exchange.yaml.

Every key may be overridden from the environment as ``BOURSE_<SECTION>_<KEY>`` (e.g.
``BOURSE_EXCHANGE_PORT=7600``, ``BOURSE_MARKET_TICK_RATE=10``); ``services/exchange_service.py``
also takes ``--port``, ``--seed`` and ``--reset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from trader.config.schema import checked, endpoint, in_range
from trader.config.trader import LoggingConfig

MarketHours = Literal["always", "real"]
MarketSource = Literal["synthetic", "replay"]
ReplayKind = Literal["ticks", "bars"]


def _account_id(value: Any) -> str | None:
    return None if value and value.isalnum() else f"expected an account id like DU1234567, got {value!r}"


def _divides_day(value: Any) -> str | None:
    if not 1 <= value <= 86_400_000 or 86_400_000 % value:
        return f"must divide a day in milliseconds (e.g. 100, 250, 1000), got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The TWS API socket and the exchange's clock."""

    host: str = "127.0.0.1"
    port: int = checked(7497, in_range(0, 65535))
    """0 binds a free port (printed in the ready line)."""
    clock_interval_ms: int = checked(50, in_range(1, 10_000))
    """How often the market advances and the features' ``on_step`` run."""
    master_client_id: int = checked(0, in_range(-1, 2**31 - 1))
    """Like TWS's "Master API client ID": this client also receives every other client's order
    updates and executions, and its reqOpenOrders / reqExecutions cover all clients. -1: none."""
    send_limit_bytes: int = checked(16 * 1024 * 1024, in_range(1024, 2**32))
    """A client that stops reading is disconnected once this much output is waiting for it."""
    control_rpc: str = checked("tcp://127.0.0.1:42010", endpoint)
    """ZeroMQ endpoint of the control RPC (faults, clock, state)."""


@dataclass(frozen=True, slots=True)
class AccountConfig:
    id: str = checked("DU1234567", _account_id)
    initial_cash: float = checked(1_000_000.0, in_range(0, 1e12))
    update_interval_s: float = checked(3.0, in_range(0.05, 3600))
    """reqAccountUpdates / reqAccountSummary / multi subscriptions get changed values (and
    portfolio rows at new marks) this often; TWS uses 180 s. Fills are always sent at once."""
    pnl_interval_s: float = checked(1.0, in_range(0.05, 60))
    """reqPnL / reqPnLSingle updates (TWS: about one per second)."""


def _iso_time(value: Any) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return f"expected an ISO time like 2026-01-05T14:30:00Z (naive: UTC), got {value!r}"
    return None


def _bar_size(value: Any) -> str | None:
    from trader.exchange.bars import BAR_SIZES  # noqa: PLC0415 (trader.exchange imports trader.config)

    return None if value in BAR_SIZES else f"expected one of {', '.join(BAR_SIZES)}, got {value!r}"


@dataclass(frozen=True, slots=True)
class ReplaySection:
    """``market.source: replay``: quotes and history from the ArcticDB store (docs/paper-exchange.md)."""

    uri: str = "lmdb://arctic"
    """The store; ``lmdb://<relative path>`` lives under the data directory (as the trader's)."""
    start: str | None = checked(None, _iso_time)
    """Stored time replayed at the first market step (ISO; naive is UTC); null: the first stored."""
    speed: float = checked(60.0, in_range(0.001, 1_000_000))
    """Stored seconds per real second (60: one stored minute per second)."""
    kind: ReplayKind = "ticks"
    bar_size: str = checked("1 min", _bar_size)
    """The stored bars replayed with ``kind: bars``."""
    loop: bool = False
    """Start over after the last stored event."""


@dataclass(frozen=True, slots=True)
class MarketSection:
    seed: int = checked(1, in_range(0, 2**63 - 1))
    step_ms: int = checked(1000, _divides_day)
    tick_rate: float = checked(1.0, in_range(0.001, 1000))
    """Quotes per second per instrument (at most one per step)."""
    volatility_multiplier: float = checked(1.0, in_range(0.001, 100))
    hours: MarketHours = "always"
    """``always``: every instrument trades around the clock, every day (tests, demos, CI at any
    time); ``real``: the venues' calendars (regular/extended hours, weekends, holidays)."""
    source: MarketSource = "synthetic"
    """``synthetic``: the deterministic process; ``replay``: stored ticks or bars (``replay``)."""
    replay: ReplaySection = field(default_factory=ReplaySection)
    """Override from the environment as one YAML mapping, e.g.
    ``BOURSE_MARKET_REPLAY='{start: "2026-01-05T14:30:00Z", speed: 60}'``."""


@dataclass(frozen=True, slots=True)
class EngineSection:
    partial_fills: bool = True
    """Fill at most the displayed size per quote; the rest waits for the next quotes."""
    check_margin: bool = True
    """Reject (201, Inactive) orders whose initial margin would exceed the equity with loan."""


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    data_dir: str | None = None
    """Overridden by ``--data-dir`` and ``$BOURSE_DATA_DIR``; state is ``<data-dir>/exchange/``."""
    exchange: ServerConfig = field(default_factory=ServerConfig)
    account: AccountConfig = field(default_factory=AccountConfig)
    market: MarketSection = field(default_factory=MarketSection)
    engine: EngineSection = field(default_factory=EngineSection)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
