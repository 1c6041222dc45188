"""The pre-trade gate every order passes before it is sent to IB.

:class:`RiskGate` runs, in order:

1. :func:`require_connected` — an order is refused at once (never queued) while the IB session is
   not CONNECTED; nothing else runs.
2. The :class:`~trader.risk.engine.RiskEngine` when it has one: trading states and every limit,
   evaluated **all**; the refusal names every failing rule (``rule`` comma-joined, ``reason``
   ``"; "``-joined, one :class:`Violation` each).
3. Plain checks ``check(order: OrderIntent, context: GateContext) -> str | None`` in order, the
   first refusal among them added (the original contract, kept for extra rules).

Checks never do I/O and never read the clock: the context carries everything (connection state,
the book, marks, the time). A check that raises refuses the order (rule ``check_failed``): the
gate fails closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from trader.book import Book

if TYPE_CHECKING:
    from trader.risk.engine import RiskEngine
    from trader.risk.snapshot import RiskSnapshot

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
    liquidation: bool = False
    """Sent by the risk engine itself to flatten a position (circuit breaker): admitted in any
    trading state when it only reduces its position; never set from a request."""

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
    account: str = ""
    """The trader's account (empty: every account of the book)."""
    net_liquidation: float | None = None
    """The account's net liquidation in ``base_currency`` (IB's NetLiquidation), None while unknown."""
    currencies: Mapping[int, str] = field(default_factory=dict)
    """Currency by conId of the instruments the book holds (unknown: ``base_currency``)."""
    fx: Mapping[str, float] = field(default_factory=dict)
    """Units of ``base_currency`` per unit of each other currency."""
    base_currency: str = "USD"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an order is refused. ``rule``: the failing rules' names, comma-joined; ``reason``: what
    each failed on, ``"; "``-joined. A refusal of the risk engine names its rules in ``reason``
    (``violations`` holds them one by one), so ``str()`` is the reason alone."""

    rule: str
    reason: str
    violations: tuple[Violation, ...] = ()

    def __str__(self) -> str:
        return self.reason if self.violations else f"{self.rule}: {self.reason}"

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.rule.split(","))


@dataclass(frozen=True, slots=True)
class Violation:
    """One failing rule in one scope (``account`` or ``strategy:<name>``)."""

    rule: str
    scope: str
    message: str

    def __str__(self) -> str:
        where = "" if self.scope == "account" else f" ({self.scope})"
        return f"{self.rule}{where}: {self.message}"


def refusal_of(violations: list[Violation]) -> Refusal | None:
    """The refusal naming every violation (rules once each, in order), or None."""
    if not violations:
        return None
    rules = ",".join(dict.fromkeys(v.rule for v in violations))
    return Refusal(rules, "; ".join(str(v) for v in violations), tuple(violations))


Check = Callable[[OrderIntent, GateContext], str | None]


def require_connected(order: OrderIntent, context: GateContext) -> str | None:
    """Orders go to IB only while the session is CONNECTED (up and reconciled)."""
    if context.connected:
        return None
    return f"IB session {context.connection_state} ({context.connection_reason}): order not sent"


def _rule_name(check: Check) -> str:
    return str(getattr(check, "rule", None) or getattr(check, "__name__", type(check).__name__))


class RiskGate:
    """Runs :func:`require_connected`, then the risk engine (every failing rule named), then the
    plain ``checks`` in order (the first of those that refuses is added; kept for extra rules).

    A check's rule name is its ``rule`` attribute, else its function name. ``engine``: a
    :class:`~trader.risk.engine.RiskEngine`; ``snapshot`` builds its input from the context
    (by default :func:`~trader.risk.snapshot.snapshot_from_book` over ``context.book`` and
    ``context.marks`` with the context's account, net liquidation, currencies and FX rates)."""

    def __init__(
        self,
        checks: Iterable[Check] = (),
        *,
        engine: RiskEngine | None = None,
        snapshot: Callable[[GateContext], RiskSnapshot] | None = None,
    ) -> None:
        self.checks: list[Check] = list(checks)
        self.engine = engine
        self.snapshot = snapshot or default_snapshot
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
        """``None`` when every rule passes, else a :class:`Refusal` naming the failing rules."""
        refusal = self._refusal(order, context)
        if refusal is None:
            self.passed += 1
            if self.engine is not None:
                self.engine.admit(order, context.now_ns)
        else:
            for rule in refusal.rules:
                self.refused[rule] = self.refused.get(rule, 0) + 1
            if self.engine is not None and refusal.rule != NOT_CONNECTED:
                self.engine.count_refusal(refusal)
        return refusal

    def _refusal(self, order: OrderIntent, context: GateContext) -> Refusal | None:
        reason = require_connected(order, context)
        if reason is not None:
            return Refusal(NOT_CONNECTED, reason)
        violations: list[Violation] = []
        if self.engine is not None:
            try:
                violations += self.engine.violations(order, self.snapshot(context), context.now_ns)
            except Exception as exc:
                log.exception("risk engine failed on %s: refusing", order.client_order_id)
                violations.append(
                    Violation(CHECK_FAILED, "account", f"risk engine raised {type(exc).__name__}: {exc}")
                )
        first = self._first_refusal(order, context)
        if first is None:
            return refusal_of(violations)
        if not violations:
            return first
        return refusal_of([*violations, Violation(first.rule, "account", first.reason)])

    def _first_refusal(self, order: OrderIntent, context: GateContext) -> Refusal | None:
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
        stats: dict[str, object] = {
            "checks": [_rule_name(c) for c in self.checks],
            "passed": self.passed,
            "refused": dict(self.refused),
        }
        if self.engine is not None:
            status = self.engine.status(time.time_ns())
            stats["rules"] = status["checks"]["rules"]
            stats["trading"] = status["trading"]
        return stats


def default_snapshot(context: GateContext) -> RiskSnapshot:
    from trader.risk.snapshot import snapshot_from_book  # noqa: PLC0415 (snapshot imports the book)

    return snapshot_from_book(
        context.book,
        context.marks,
        account=context.account or None,
        net_liquidation=context.net_liquidation,
        currencies=context.currencies,
        fx=context.fx,
        base_currency=context.base_currency,
    )
