"""What the risk engine asks the trader to do, and the events it publishes about it.

The engine changes its own states (a :class:`Halt` is already in force when it is returned); the
trader publishes every action's :meth:`event` on the events PUB (topic ``risk``) and carries out
:class:`CancelScope` (cancel the scope's working orders) and :class:`FlattenScope` (market orders
closing the scope's positions, see :func:`flatten_orders`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trader.risk.limits import ACCOUNT, strategy_of
from trader.risk.snapshot import EPS, BookSnapshot


@dataclass(frozen=True, slots=True)
class Halt:
    scope: str
    reason: str
    at_ns: int
    until_ns: int | None = None
    """When the halt ends by itself (the next trading day's start); None: a manual resume."""
    rule: str = ""
    """The breached rule (``max_daily_loss``, ``max_drawdown``, ``kill_switch``), empty when manual."""

    def event(self) -> dict[str, Any]:
        return {
            "type": "risk.halt",
            "scope": self.scope,
            "reason": self.reason,
            "rule": self.rule,
            "at_ns": self.at_ns,
            "until_ns": self.until_ns,
            "alert": bool(self.rule),
        }


@dataclass(frozen=True, slots=True)
class Reduce:
    scope: str
    reason: str
    at_ns: int

    def event(self) -> dict[str, Any]:
        return {"type": "risk.reduce", "scope": self.scope, "reason": self.reason, "at_ns": self.at_ns}


@dataclass(frozen=True, slots=True)
class Resume:
    scope: str
    reason: str
    at_ns: int

    def event(self) -> dict[str, Any]:
        return {"type": "risk.resume", "scope": self.scope, "reason": self.reason, "at_ns": self.at_ns}


@dataclass(frozen=True, slots=True)
class CancelScope:
    """Cancel every working order of the scope (``account``: all of them)."""

    scope: str
    reason: str
    at_ns: int

    def event(self) -> dict[str, Any]:
        return {"type": "risk.cancel", "scope": self.scope, "reason": self.reason, "at_ns": self.at_ns}


@dataclass(frozen=True, slots=True)
class FlattenScope:
    """Close every position of the scope with market orders (after :class:`CancelScope`)."""

    scope: str
    reason: str
    at_ns: int

    def event(self) -> dict[str, Any]:
        return {"type": "risk.flatten", "scope": self.scope, "reason": self.reason, "at_ns": self.at_ns}


Action = Halt | Reduce | Resume | CancelScope | FlattenScope


@dataclass(frozen=True, slots=True)
class FlattenOrder:
    """A market order closing one strategy's position in one instrument."""

    strategy: str
    con_id: int
    symbol: str
    action: str
    quantity: float


def in_scope(scope: str, strategy: str) -> bool:
    return scope == ACCOUNT or strategy_of(scope) == strategy


def flatten_orders(scope: str, book: BookSnapshot) -> list[FlattenOrder]:
    """The market orders that close ``scope``'s positions, one per (strategy, instrument), so the
    book keeps each fill attributed to the strategy that held the position."""
    totals: dict[tuple[str, int], tuple[str, float]] = {}
    for p in book.positions:
        if in_scope(scope, p.strategy):
            symbol, quantity = totals.get((p.strategy, p.con_id), (p.symbol, 0.0))
            totals[(p.strategy, p.con_id)] = (symbol, quantity + p.quantity)
    return [
        FlattenOrder(strategy, con_id, symbol, "SELL" if quantity > 0 else "BUY", abs(quantity))
        for (strategy, con_id), (symbol, quantity) in sorted(totals.items())
        if abs(quantity) > EPS
    ]
