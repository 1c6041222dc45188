"""Target positions, pure: what to cancel and what to place so a position reaches its target
without ever overshooting it.

The runtime calls :func:`plan_target` on every price update, order update and fill with the
strategy's attributed position and its working orders in the symbol (orders being cancelled
included: they may still fill). Placing is only ever ``target - position - sum(working)`` with every
working order on the side of the target, so ``position + sum(working)`` never goes past the target,
and repeating a target places nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EPS = 1e-9
"""Quantities closer than this to zero are zero (as the book's)."""


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    client_order_id: str
    signed_remaining: float
    """What may still fill: + buys, - sells."""


@dataclass(frozen=True, slots=True)
class TargetPlan:
    cancel: tuple[str, ...] = ()
    """Client order ids to cancel (some may already be being cancelled: the caller skips those)."""
    place: float = 0.0
    """Signed quantity to place now (+ buy, - sell); 0: nothing."""

    @property
    def idle(self) -> bool:
        return not self.cancel and self.place == 0.0


def plan_target(target: float, position: float, working: Sequence[WorkingOrder]) -> TargetPlan:
    """Cancel the working orders that go against ``target - position`` (all of them when the target
    is reached) or that would overshoot it (taken in the given order, oldest first: those that still
    fit in what is needed are kept, the others cancelled), and place nothing until those are gone;
    else place what is missing."""
    need = target - position
    live = [w for w in working if abs(w.signed_remaining) > EPS]
    if abs(need) <= EPS:
        return TargetPlan(cancel=tuple(w.client_order_id for w in live))
    sign = 1.0 if need > 0 else -1.0
    against = [w.client_order_id for w in live if w.signed_remaining * sign < 0]
    along = [w for w in live if w.signed_remaining * sign > 0]
    kept = 0.0
    overshoot: list[str] = []
    for w in along:  # oldest first: keep while they fit in what is needed
        if kept + abs(w.signed_remaining) <= abs(need) + EPS:
            kept += abs(w.signed_remaining)
        else:
            overshoot.append(w.client_order_id)
    cancel = tuple(against + overshoot)
    if cancel:
        return TargetPlan(cancel=cancel)
    place = need - sign * kept
    return TargetPlan(place=place if abs(place) > EPS else 0.0)
