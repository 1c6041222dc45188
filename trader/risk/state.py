"""Trading states, per strategy and for the account: ACTIVE, REDUCING, HALTED.

* ACTIVE — orders pass to the limit checks.
* REDUCING — only an order that reduces the absolute position of its instrument (its strategy's
  position, without crossing zero, even if every working order on its side fills) passes.
* HALTED — no new order passes. Cancels always pass (the trader never gates them).

Moves are a small table (:data:`TRANSITIONS`); :meth:`ScopeState.apply` raises
:class:`InvalidStateTransition` for a move not in it (``resume`` when ACTIVE, ``reduce`` when
REDUCING). ``halt`` when HALTED is allowed: a second cause (the kill switch after a breaker halt)
keeps the first ``since`` and records the new reason; the later ``until`` wins (None = until a
manual resume).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from trader.risk.snapshot import EPS


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class StateAction(StrEnum):
    HALT = "halt"
    REDUCE = "reduce"
    RESUME = "resume"


TRANSITIONS: Final[Mapping[tuple[TradingState, StateAction], TradingState]] = {
    (TradingState.ACTIVE, StateAction.HALT): TradingState.HALTED,
    (TradingState.ACTIVE, StateAction.REDUCE): TradingState.REDUCING,
    (TradingState.REDUCING, StateAction.HALT): TradingState.HALTED,
    (TradingState.REDUCING, StateAction.RESUME): TradingState.ACTIVE,
    (TradingState.HALTED, StateAction.HALT): TradingState.HALTED,
    (TradingState.HALTED, StateAction.REDUCE): TradingState.REDUCING,
    (TradingState.HALTED, StateAction.RESUME): TradingState.ACTIVE,
}


class InvalidStateTransition(ValueError):
    def __init__(self, scope: str, state: TradingState, action: StateAction) -> None:
        self.scope, self.state, self.action = scope, state, action
        super().__init__(f"{scope} is {state}: cannot {action}")


def admits(state: TradingState, quantity: float, position: float, pending: float = 0.0) -> bool:
    """Whether ``state`` lets an order of signed ``quantity`` through, given its instrument's
    ``position`` and ``pending``, the signed sum of working orders on the order's side."""
    if state is TradingState.ACTIVE:
        return True
    if state is TradingState.HALTED:
        return False
    worst = position + pending + quantity
    if position > EPS:
        return quantity < 0 and worst >= -EPS
    if position < -EPS:
        return quantity > 0 and worst <= EPS
    return False


@dataclass(frozen=True, slots=True)
class ScopeState:
    """The trading state of one scope (``account`` or ``strategy:<name>``)."""

    scope: str
    state: TradingState = TradingState.ACTIVE
    reason: str = ""
    since_ns: int = 0
    until_ns: int | None = None
    """A halt that ends by itself (the breaker's: the next trading day); None: a manual resume."""

    def apply(self, action: StateAction, reason: str, now_ns: int, until_ns: int | None = None) -> ScopeState:
        target = TRANSITIONS.get((self.state, action))
        if target is None:
            raise InvalidStateTransition(self.scope, self.state, action)
        if target is self.state:  # halt while halted: another cause
            later = None if until_ns is None or self.until_ns is None else max(until_ns, self.until_ns)
            return replace(self, reason=reason, until_ns=later)
        return ScopeState(
            self.scope, target, reason, now_ns, until_ns if target is TradingState.HALTED else None
        )

    def admits(self, quantity: float, position: float, pending: float = 0.0) -> bool:
        return admits(self.state, quantity, position, pending)

    def describe(self) -> str:
        text = f"{self.scope} is {self.state.value.upper()}"
        return f"{text} ({self.reason})" if self.reason else text

    def to_record(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "state": self.state.value,
            "reason": self.reason,
            "since_ns": self.since_ns,
            "until_ns": self.until_ns,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ScopeState:
        until = record.get("until_ns")
        return cls(
            str(record["scope"]),
            TradingState(record["state"]),
            str(record.get("reason", "")),
            int(record.get("since_ns", 0)),
            None if until is None else int(until),
        )
