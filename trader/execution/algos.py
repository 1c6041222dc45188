"""Execution algorithms as pure state machines: events in, actions out. No I/O, no clock.

A plan (:class:`~trader.execution.twap.TwapPlan`, :class:`~trader.execution.iceberg.IcebergPlan`)
is one **parent** order, named by its client order id, worked through **children** named
``<parent>.<n>`` (n = 1, 2 ...). The trader (the executor) feeds it:

* ``start(now)`` once, then ``on_timer(now)`` whenever :meth:`Plan.next_timer` is due (or every
  second), ``on_tick(now, bid, ask)`` on every quote of the instrument;
* ``on_child_update(child_id, filled, remaining, state)`` whenever a child changes (``filled`` is the
  child's cumulative fill, ``state`` the book's: Submitted, Filled, Cancelled, Rejected ...; a child
  the risk gate refused is reported Rejected);
* ``cancel()`` to stop the whole parent.

and carries out the :data:`Action`\\s each call returns, in order: :class:`PlaceChild` (through the
risk gate, like any order), :class:`ModifyChild`, :class:`CancelChild`, and :class:`Done` (the plan
is finished; it is returned once). Times are floats, seconds since the epoch (any monotonic origin
works: the plan only compares them).

Safety invariant of every plan: the children's **commitment** — a done child's fill plus a working
child's whole quantity — never exceeds the parent's quantity, so however fills race with cancels
and modifications the children can never fill more than the parent. A child's quantity is only
ever raised by a modification, never lowered (that could race with fills); a child to shrink is
cancelled instead, and its replacement waits for the cancel's confirmation.

Failures: a child that ends Rejected or Inactive, or Cancelled without being asked to, is a
failure; the plan waits ``retry_delay`` seconds before placing again, and after ``max_failures``
failures it gives up (cancels what is working, then ``Done("failed: ...")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from trader.execution.builders import ACTIONS, BadOrder, normal
from trader.execution.sizing import is_lot_multiple, round_to_lot

FILLED: Final = "Filled"
DONE_STATES: Final = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected"})
"""The book's done states (trader.book's DONE_STATES); anything else may still fill."""
EPS: Final = 1e-9


@dataclass(frozen=True, slots=True)
class PlaceChild:
    """Place a child order (through the risk gate): ``order_type`` MKT or LMT (``limit_price``)."""

    client_order_id: str
    quantity: float
    order_type: str
    limit_price: float | None
    action: str


@dataclass(frozen=True, slots=True)
class ModifyChild:
    """New terms for a working child: its new total ``quantity`` (never lower than before) and/or
    ``limit_price``; None leaves a term as it is."""

    client_order_id: str
    quantity: float | None = None
    limit_price: float | None = None


@dataclass(frozen=True, slots=True)
class CancelChild:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class Done:
    """The plan is finished: ``reason`` is ``filled``, ``cancelled`` or ``failed: <why>``."""

    reason: str


Action = PlaceChild | ModifyChild | CancelChild | Done


@dataclass(slots=True)
class Child:
    """The plan's view of one child order."""

    client_order_id: str
    quantity: float
    order_type: str
    limit_price: float | None
    placed_at: float
    slice: int = 0
    filled: float = 0.0
    avg_price: float | None = None
    state: str = "PendingSubmit"
    cancel_requested: bool = False

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES

    @property
    def commitment(self) -> float:
        """The most this child can still end up filled."""
        return self.filled if self.done else max(self.quantity, self.filled)

    @property
    def working_quantity(self) -> float:
        """What is working at the exchange now (0 once done)."""
        return 0.0 if self.done else max(0.0, self.quantity - self.filled)

    def record(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "order_type": self.order_type,
            "limit_price": self.limit_price,
            "quantity": self.quantity,
            "filled": self.filled,
            "remaining": self.working_quantity,
            "avg_fill_price": self.avg_price,
            "state": self.state,
            "cancel_requested": self.cancel_requested,
            "slice": self.slice,
            "placed_at": self.placed_at,
        }


def check_quantity(name: str, value: float, lot_size: float) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise BadOrder(f"{name} must be a positive number, got {value!r}")
    if not is_lot_multiple(value, lot_size):
        raise BadOrder(f"{name} {value:g} is not a whole number of lots of {lot_size:g}")
    return float(value)


class Plan:
    """What TWAP and iceberg share: children, commitment, failures, cancel, status, Done."""

    algo: str = ""

    def __init__(
        self,
        parent_id: str,
        quantity: float,
        side: str,
        *,
        lot_size: float = 1.0,
        max_failures: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        if not parent_id or any(c.isspace() for c in parent_id):
            raise BadOrder(f"parent_id must be a non-empty id without whitespace, got {parent_id!r}")
        if not (math.isfinite(lot_size) and lot_size > 0):
            raise BadOrder(f"lot_size must be a positive number, got {lot_size!r}")
        if max_failures < 1:
            raise BadOrder(f"max_failures must be at least 1, got {max_failures!r}")
        if not (math.isfinite(retry_delay) and retry_delay >= 0):
            raise BadOrder(f"retry_delay must be a number >= 0, got {retry_delay!r}")
        self.parent_id = parent_id
        self.lot_size = float(lot_size)
        self.quantity = check_quantity("quantity", quantity, self.lot_size)
        self.side = normal("side", side, ACTIONS)
        self.max_failures = max_failures
        self.retry_delay = float(retry_delay)
        self.children: dict[str, Child] = {}
        self.started = False
        self.cancelling = False
        self.failures: list[str] = []
        self.reason = ""
        """Why the plan finished (empty while it runs)."""
        self.now: float | None = None
        self._hold_until: float | None = None
        self._stop_reason = ""
        self._next_n = 1

    # -- what the plan has done ------------------------------------------------------------------

    @property
    def filled(self) -> float:
        return sum(c.filled for c in self.children.values())

    @property
    def commitment(self) -> float:
        return sum(c.commitment for c in self.children.values())

    @property
    def working(self) -> list[Child]:
        return [c for c in self.children.values() if not c.done]

    @property
    def done(self) -> bool:
        return bool(self.reason)

    @property
    def state(self) -> str:
        if self.reason:
            return "done"
        if self.cancelling or self._stop_reason:
            return "cancelling"
        return "running" if self.started else "pending"

    @property
    def avg_fill_price(self) -> float | None:
        priced = [c for c in self.children.values() if c.filled > 0 and c.avg_price is not None]
        total = sum(c.filled for c in priced)
        return sum(c.filled * (c.avg_price or 0.0) for c in priced) / total if total > 0 else None

    def status(self) -> dict[str, Any]:
        """The parent and its children, as one record (plain msgpack-able values)."""
        filled = self.filled
        return {
            "client_order_id": self.parent_id,
            "algo": self.algo,
            "action": self.side,
            "quantity": self.quantity,
            "filled": filled,
            "remaining": max(0.0, self.quantity - filled),
            "working": sum(c.working_quantity for c in self.children.values()),
            "avg_fill_price": self.avg_fill_price,
            "state": self.state,
            "reason": self.reason,
            "failures": list(self.failures),
            "lot_size": self.lot_size,
            "params": self.params(),
            "children": [c.record() for c in self.children.values()],
        }

    def params(self) -> dict[str, Any]:
        return {}

    # -- events ------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin (the first ``on_timer`` or ``on_tick`` begins too)."""
        self.started = True
        return self._step(now)

    def on_timer(self, now: float) -> list[Action]:
        return self.start(now)

    def on_tick(self, now: float, bid: float | None, ask: float | None) -> list[Action]:
        self._quote(bid, ask)
        return self.start(now)

    def on_child_update(
        self,
        child_id: str,
        filled: float,
        remaining: float,
        state: str,
        avg_price: float | None = None,
    ) -> list[Action]:
        """A child changed; updates for unknown children (or after Done) are ignored."""
        child = self.children.get(child_id)
        if child is None:
            return []
        was_done = child.done
        if math.isfinite(filled):
            child.filled = max(child.filled, float(filled))
        if avg_price is not None and math.isfinite(avg_price) and avg_price > 0:
            child.avg_price = float(avg_price)
        if not was_done:
            child.state = str(state)
            if not child.done and math.isfinite(remaining):
                # a confirmed raise shows here; a pending one keeps ours (the larger: the safe side)
                child.quantity = max(child.quantity, child.filled + max(0.0, float(remaining)))
            if child.done and child.state != FILLED and not child.cancel_requested:
                self._failed(child)  # refused, rejected, or cancelled by someone else
        if self.now is None:
            return []
        return self._step(self.now)

    def cancel(self, reason: str = "cancelled") -> list[Action]:
        """Stop: cancel every working child (once each); ``Done`` once none is working."""
        if self.reason:
            return []
        self.cancelling = True
        self._stop_reason = self._stop_reason or reason
        return self._wind_down()

    # -- helpers for the algorithms ------------------------------------------------------------

    def _quote(self, bid: float | None, ask: float | None) -> None:
        pass

    def _failed(self, child: Child) -> None:
        self.failures.append(f"{child.client_order_id} {child.state}")
        if self.now is not None:
            self._hold_until = self.now + self.retry_delay
        if len(self.failures) >= self.max_failures and not self._stop_reason:
            self._stop_reason = f"failed: {len(self.failures)} children failed ({', '.join(self.failures)})"

    def _holding(self, now: float) -> bool:
        return self._hold_until is not None and now < self._hold_until

    def _new_child(
        self, now: float, quantity: float, order_type: str, limit_price: float | None, slice_: int = 0
    ) -> PlaceChild:
        child_id = f"{self.parent_id}.{self._next_n}"
        self._next_n += 1
        quantity = round_to_lot(quantity, self.lot_size, "nearest")
        self.children[child_id] = Child(child_id, quantity, order_type, limit_price, now, slice_)
        return PlaceChild(child_id, quantity, order_type, limit_price, self.side)

    def _wind_down(self) -> list[Action]:
        """Cancel what works; Done (with the stop reason) once nothing does."""
        actions: list[Action] = []
        for child in self.working:
            if not child.cancel_requested:
                child.cancel_requested = True
                actions.append(CancelChild(child.client_order_id))
        if not self.working:
            actions += self._finish(self._stop_reason or "cancelled")
        return actions

    def _finish(self, reason: str) -> list[Action]:
        if self.reason:
            return []
        self.reason = reason
        return [Done(reason)]

    def _step(self, now: float) -> list[Action]:
        if self.reason:
            return []
        self.now = float(now) if self.now is None else max(self.now, float(now))
        if self._hold_until is not None and self.now >= self._hold_until:
            self._hold_until = None
        if self.filled >= self.quantity - EPS and not self.working:
            return self._finish(FILLED.lower())
        if self.cancelling or self._stop_reason:
            return self._wind_down()
        if not self.started:
            return []
        return self._work(self.now)

    def _work(self, now: float) -> list[Action]:
        raise NotImplementedError

    def next_timer(self) -> float | None:
        """When the plan next wants ``on_timer`` (None: only events move it)."""
        return self._hold_until if self._hold_until is not None and not self.reason else None
