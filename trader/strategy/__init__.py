"""Strategies: the :class:`Strategy` base class authors subclass, its parameters, rolling windows,
indicators, target planning and the pure runtime the strategy service (and the backtester) drives.

Pure: no sockets, no asyncio, no clock reads (time is injected); the async shell lives in
``trader/strategy/host.py`` and ``services/strategy_service.py``.
"""

from trader.strategy.base import Strategy
from trader.strategy.indicators import (
    Atr,
    Band,
    Bollinger,
    Ema,
    IndicatorCache,
    Rsi,
    Sma,
    atr,
    bollinger,
    ema,
    rsi,
    sma,
    true_range,
)
from trader.strategy.params import Param, resolve_params
from trader.strategy.runtime import (
    CancelOrder,
    Intent,
    PlaceOrder,
    RuntimeEvent,
    StrategyRuntime,
    StrategyState,
)
from trader.strategy.targets import TargetPlan, WorkingOrder, plan_target
from trader.strategy.window import RollingWindow

__all__ = [
    "Atr",
    "Band",
    "Bollinger",
    "CancelOrder",
    "Ema",
    "IndicatorCache",
    "Intent",
    "Param",
    "PlaceOrder",
    "RollingWindow",
    "Rsi",
    "RuntimeEvent",
    "Sma",
    "Strategy",
    "StrategyRuntime",
    "StrategyState",
    "TargetPlan",
    "WorkingOrder",
    "atr",
    "bollinger",
    "ema",
    "plan_target",
    "resolve_params",
    "rsi",
    "sma",
    "true_range",
]
