"""What the strategy runtime hands to its shell: intents (:class:`PlaceOrder`, :class:`CancelOrder`),
states and events; plus the small pure helpers they need (bar sizes, client order id prefixes)."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from trader.service.bars import parse_bar_size
from trader.strategy.window import TICKS

ORDER_TYPES: Final = {
    (False, False): "MKT",
    (True, False): "LMT",
    (False, True): "STP",
    (True, True): "STP LMT",
}
TIFS: Final = frozenset({"DAY", "GTC", "IOC", "FOK", "OPG"})
RESERVED_SUFFIXES: Final = (".tp", ".sl")


@dataclass(frozen=True)
class PlaceOrder:
    """An intent for the shell to send as ``place_order`` (``params()`` are its params)."""

    strategy: str
    client_order_id: str
    symbol: str
    action: str
    quantity: float
    order_type: str = "MKT"
    limit_price: float | None = None
    stop_price: float | None = None
    tif: str = "DAY"
    take_profit: float | None = None
    stop_loss: float | None = None

    def params(self) -> dict[str, Any]:
        """Exactly ``place_order``'s params (docs/rpc.md), without the None ones."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class CancelOrder:
    """An intent for the shell to send as ``cancel_order``."""

    strategy: str
    client_order_id: str

    def params(self) -> dict[str, Any]:
        """Exactly ``cancel_order``'s params."""
        return {"strategy": self.strategy, "client_order_id": self.client_order_id}


Intent = PlaceOrder | CancelOrder


class StrategyState(StrEnum):
    INSTALLED = "INSTALLED"
    WARMING_UP = "WARMING_UP"
    RUNNING = "RUNNING"
    DISABLED = "DISABLED"
    ERROR = "ERROR"


@dataclass(frozen=True)
class RuntimeEvent:
    strategy: str
    kind: str
    """``"error"`` (a hook raised), ``"slow_hook"`` (slower than ``slow_hook_s``), ``"state"``."""
    message: str
    traceback: str | None = None


def normalise_bar_size(bar_size: str) -> str:
    """``"ticks"``, or IB's normalised bar size name (``"5 sec"`` -> ``"5 secs"``); ValueError else."""
    if bar_size.strip().lower() == TICKS:
        return TICKS
    return parse_bar_size(bar_size).name


_PREFIXES_USED: set[str] = set()


def new_id_prefix(now_s: float) -> str:
    """UTC ``yyyymmddHHMMSS`` of ``now_s`` plus 4 random hex digits, never twice in this process."""
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%Y%m%d%H%M%S")
    while True:
        prefix = f"{stamp}{secrets.token_hex(2)}"
        if prefix not in _PREFIXES_USED:
            _PREFIXES_USED.add(prefix)
            return prefix


@dataclass
class HookStats:
    calls: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    def record(self, ms: float) -> None:
        self.calls += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
