"""Pre-trade risk: the one gate every order passes before it reaches IB (docs/risk.md).

* :mod:`~trader.risk.gate` — :class:`RiskGate` (connection, then the engine, then plain checks),
  :class:`OrderIntent`, :class:`GateContext`, :class:`Refusal`, :class:`Violation`.
* :mod:`~trader.risk.engine` — :class:`RiskEngine`: limits, trading states, rate windows, breaker.
* :mod:`~trader.risk.limits` — :class:`RiskLimits`, :class:`RiskConfig` (the ``risk:`` section).
* :mod:`~trader.risk.checks` — one pure check per limit and the :data:`CHECKS` registry.
* :mod:`~trader.risk.snapshot` — :class:`BookSnapshot`, :class:`MarketSnapshot`, builders.
* :mod:`~trader.risk.state` — ACTIVE / REDUCING / HALTED and their transition table.
* :mod:`~trader.risk.breaker` — trading days, day P&L, peak, breach -> Halt/Cancel/Flatten.
* :mod:`~trader.risk.actions` — what the engine asks the trader to do, with their events.
* :mod:`~trader.risk.ratelimit`, :mod:`~trader.risk.guard`, :mod:`~trader.risk.store`.
"""

from trader.risk.actions import (
    Action,
    CancelScope,
    FlattenOrder,
    FlattenScope,
    Halt,
    Reduce,
    Resume,
    flatten_orders,
)
from trader.risk.breaker import Breaker, TradingDay
from trader.risk.checks import CHECKS, ScopeView
from trader.risk.engine import RiskEngine, RiskError
from trader.risk.gate import (
    CHECK_FAILED,
    NOT_CONNECTED,
    Check,
    GateContext,
    OrderIntent,
    Refusal,
    RiskGate,
    Violation,
    require_connected,
)
from trader.risk.guard import live_trading_guard
from trader.risk.limits import (
    ACCOUNT,
    LIMIT_KEYS,
    STRATEGY_DEFAULTS,
    LimitError,
    RiskConfig,
    RiskLimits,
    strategy_scope,
)
from trader.risk.snapshot import (
    BookSnapshot,
    MarketSnapshot,
    PnLSnapshot,
    PositionSnapshot,
    RiskSnapshot,
    WorkingOrder,
    snapshot_from_book,
)
from trader.risk.state import InvalidStateTransition, ScopeState, TradingState

__all__ = [
    "ACCOUNT",
    "CHECKS",
    "CHECK_FAILED",
    "LIMIT_KEYS",
    "NOT_CONNECTED",
    "STRATEGY_DEFAULTS",
    "Action",
    "BookSnapshot",
    "Breaker",
    "CancelScope",
    "Check",
    "FlattenOrder",
    "FlattenScope",
    "GateContext",
    "Halt",
    "InvalidStateTransition",
    "LimitError",
    "MarketSnapshot",
    "OrderIntent",
    "PnLSnapshot",
    "PositionSnapshot",
    "Reduce",
    "Refusal",
    "Resume",
    "RiskConfig",
    "RiskEngine",
    "RiskError",
    "RiskGate",
    "RiskLimits",
    "RiskSnapshot",
    "ScopeState",
    "ScopeView",
    "TradingDay",
    "TradingState",
    "Violation",
    "WorkingOrder",
    "flatten_orders",
    "live_trading_guard",
    "require_connected",
    "snapshot_from_book",
    "strategy_scope",
]
