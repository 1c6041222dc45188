"""Pre-trade risk: the one gate every order passes before it reaches IB.

* :mod:`~trader.risk.gate` — :class:`RiskGate` (a list of pure checks ``check(order, context) ->
  reason | None`` behind the built-in "disconnected -> refuse" rule), :class:`OrderIntent`,
  :class:`GateContext`, :class:`Refusal`.

The limits of the design card (order size and notional, position, exposure, leverage, open
orders, rate, daily loss, trading state, kill switch) are added as checks by the risk issue.
"""

from trader.risk.gate import (
    NOT_CONNECTED,
    Check,
    GateContext,
    OrderIntent,
    Refusal,
    RiskGate,
    require_connected,
)

__all__ = [
    "NOT_CONNECTED",
    "Check",
    "GateContext",
    "OrderIntent",
    "Refusal",
    "RiskGate",
    "require_connected",
]
