"""The strategy host's small parts: start-up errors, price streams, frames as the runtime wants them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import pandas as pd

from trader.strategy.config import TICKS

RETRY_CODES: Final = frozenset({"not_connected", "timeout", "overloaded", "deadline_exceeded", "store_error"})
"""Remote errors of a start-up step worth waiting out (IB not connected yet ...)."""
HISTORY_PATIENCE_S: Final = 60.0
RESYNC_S: Final = 10.0
RECENT_EVENTS: Final = 100
BAR_COLUMNS: Final = ("open", "high", "low", "close", "volume")
TICK_COLUMNS: Final = ("bid", "ask", "last", "bid_size", "ask_size", "last_size")
TERMINAL: Final = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected"})


class StartupError(Exception):
    """A start-up step failed for good (an unknown contract ...): one line for the operator."""


@dataclass
class Stream:
    symbol: str
    bar_size: str
    strategies: set[str] = field(default_factory=set)
    last: pd.Timestamp | None = None


def frame_of(frame: pd.DataFrame, bar_size: str) -> pd.DataFrame:
    """A PUB batch (or a history frame) as the runtime wants it: index = time (UTC), bar or tick columns."""
    out = frame
    if "time" in out.columns:
        out = out.set_index("time")
    index = pd.DatetimeIndex(out.index)
    out = out.set_axis(index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC"), axis=0)
    out.index.name = "time"
    wanted = [c for c in (TICK_COLUMNS if bar_size == TICKS else BAR_COLUMNS) if c in out.columns]
    return out[wanted]
