"""The pre-trade gate: pure checks run in order on every order before it is sent to IB.

A check is a plain function ``check(order: OrderIntent, context: GateContext) -> str | None``:
``None`` lets the order through, a string refuses it and says why (naming the rule's numbers, e.g.
``"order notional 125,000 > limit 100,000"``). Checks never do I/O and never read the clock: the
context carries everything (connection state, the book, marks, the time).

:class:`RiskGate` always runs :func:`require_connected` first (an order is refused at once, never
queued, while the IB session is not CONNECTED), then its configured checks; the first refusal
wins. A check that raises refuses the order (rule ``check_failed``): the gate fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from trader.book import Book

log = logging.getLogger("trader.risk")

NOT_CONNECTED: Final = "not_connected"
"""The rule name of the connection check (the trader maps it to the RPC error ``not_connected``)."""
CHECK_FAILED: Final = "check_failed"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order as the gate sees it: what would be sent to IB (a bracket is its parent)."""

    strategy: str
    client_order_id: str
    con_id: int
    symbol: str
    sec_type: str
    action: str
    """BUY or SELL."""
    quantity: float
    order_type: str
    limit_price: float | None = None
    stop_price: float | None = None
    multiplier: float = 1.0
    currency: str = "USD"
    account: str = ""
    bracket: bool = False

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.action == "BUY" else -self.quantity


@dataclass(frozen=True, slots=True)
class GateContext:
    """What checks may look at. ``book`` is the live book: read it, never change it."""

    connected: bool
    connection_state: str
    connection_reason: str
    book: Book
    now_ns: int
    marks: Mapping[int, float] = field(default_factory=dict)
    """Mark price by conId (last mid or trade), where known."""


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"


Check = Callable[[OrderIntent, GateContext], str | None]


def require_connected(order: OrderIntent, context: GateContext) -> str | None:
    """Orders go to IB only while the session is CONNECTED (up and reconciled)."""
    if context.connected:
        return None
    return f"IB session {context.connection_state} ({context.connection_reason}): order not sent"


def _rule_name(check: Check) -> str:
    return str(getattr(check, "rule", None) or getattr(check, "__name__", type(check).__name__))


class RiskGate:
    """Runs :func:`require_connected`, then ``checks`` in order; the first refusal wins.

    A check's rule name is its ``rule`` attribute, else its function name."""

    def __init__(self, checks: Iterable[Check] = ()) -> None:
        self.checks: list[Check] = list(checks)
        self.passed = 0
        self.refused: dict[str, int] = {}

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def connection(self, context: GateContext) -> Refusal | None:
        """The connection rule alone (callable before the order is fully known)."""
        if context.connected:
            return None
        return Refusal(NOT_CONNECTED, f"IB session {context.connection_state} ({context.connection_reason})")

    def check(self, order: OrderIntent, context: GateContext) -> Refusal | None:
        """``None`` when every rule passes, else the first :class:`Refusal`."""
        refusal = self._first_refusal(order, context)
        if refusal is None:
            self.passed += 1
        else:
            self.refused[refusal.rule] = self.refused.get(refusal.rule, 0) + 1
        return refusal

    def _first_refusal(self, order: OrderIntent, context: GateContext) -> Refusal | None:
        reason = require_connected(order, context)
        if reason is not None:
            return Refusal(NOT_CONNECTED, reason)
        for check in self.checks:
            rule = _rule_name(check)
            try:
                reason = check(order, context)
            except Exception as exc:
                log.exception("risk check %s failed on %s: refusing", rule, order.client_order_id)
                return Refusal(CHECK_FAILED, f"check {rule} raised {type(exc).__name__}: {exc}")
            if reason is not None:
                return Refusal(rule, reason)
        return None

    def stats(self) -> dict[str, object]:
        return {
            "checks": [_rule_name(c) for c in self.checks],
            "passed": self.passed,
            "refused": dict(self.refused),
        }
