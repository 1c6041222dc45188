"""TWAP: a parent quantity worked in N equal time slices between ``start`` and ``end``.

Slice k covers ``[start + k*D/N, start + (k+1)*D/N)`` (D = end - start). During slice k the
plan aims at the cumulative **target** ``quantity * (k+1)/N`` rounded to lots (the schedule at the
slice's end boundary), so whatever earlier slices missed is caught up in the next child:

* ``style="limit_at_touch"``: one passive LMT child at the near touch (the bid for a buy, the ask
  for a sell). At each boundary the working child is modified up to the new target and repriced to
  the touch (a modification only raises the quantity); a child is placed when none works. No
  child is placed before the first quote.
* ``style="market"``: at each boundary a MKT child for the new target less what is committed.
* The **last slice** (and any time at or after ``end``) finishes the parent: working LMT children
  are cancelled and, once their cancels are confirmed, one MKT child takes what is left, so the
  whole quantity is done by the end time (a market order fills at once while the market is open).
"""

from __future__ import annotations

import math
from typing import Any, Final

from trader.execution.algos import EPS, Action, CancelChild, Child, ModifyChild, Plan
from trader.execution.builders import BadOrder
from trader.execution.sizing import round_to_lot

STYLES: Final = ("limit_at_touch", "market")


class TwapPlan(Plan):
    """TWAP over ``[start, end]`` in ``slices`` slices; see the module's doc."""

    algo = "twap"

    def __init__(  # noqa: PLR0917 - issue 8 spells it TwapPlan(quantity, side, start, end, slices, style)
        self,
        quantity: float,
        side: str,
        start: float,
        end: float,
        slices: int,
        style: str = "limit_at_touch",
        *,
        parent_id: str,
        lot_size: float = 1.0,
        max_failures: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(
            parent_id, quantity, side, lot_size=lot_size, max_failures=max_failures, retry_delay=retry_delay
        )
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise BadOrder(f"end must be after start (start {start!r}, end {end!r})")
        if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
            raise BadOrder(f"slices must be a whole number >= 1, got {slices!r}")
        if style not in STYLES:
            raise BadOrder(f"style must be one of {', '.join(STYLES)}; got {style!r}")
        self.start_time = float(start)
        self.end_time = float(end)
        self.slices = slices
        self.style = style
        self.bid: float | None = None
        self.ask: float | None = None

    # -- the schedule ----------------------------------------------------------------------------

    @property
    def slice_length(self) -> float:
        return (self.end_time - self.start_time) / self.slices

    def boundary(self, k: int) -> float:
        """Start of slice ``k`` (``boundary(slices)`` is the end)."""
        return self.end_time if k >= self.slices else self.start_time + k * self.slice_length

    def slice_at(self, now: float) -> int:
        """The slice ``now`` falls in: -1 before the start, the last one from its start on."""
        if now < self.start_time:
            return -1
        k = math.floor((now - self.start_time) / self.slice_length)
        while k + 1 < self.slices and now >= self.boundary(k + 1):  # float edges
            k += 1
        while k > 0 and now < self.boundary(k):
            k -= 1
        return min(k, self.slices - 1)

    def target(self, k: int) -> float:
        """The cumulative quantity due by the end of slice ``k`` (whole lots; all of it at the last)."""
        if k < 0:
            return 0.0
        if k >= self.slices - 1:
            return self.quantity
        return round_to_lot(self.quantity * (k + 1) / self.slices, self.lot_size, "nearest")

    def touch(self) -> float | None:
        """The near touch a passive child joins: the bid for a buy, the ask for a sell."""
        return self.bid if self.side == "BUY" else self.ask

    def params(self) -> dict[str, Any]:
        now = self.now
        k = self.slice_at(now) if now is not None else -1
        return {
            "start": self.start_time,
            "end": self.end_time,
            "slices": self.slices,
            "style": self.style,
            "slice": k,
            "target": self.target(k),
            "next_boundary": self.boundary(k + 1) if k + 1 <= self.slices else None,
        }

    @property
    def state(self) -> str:
        state = super().state
        if state == "running" and self.now is not None and self.now < self.start_time:
            return "pending"
        return state

    def next_timer(self) -> float | None:
        if self.reason:
            return None
        times = [t for t in (super().next_timer(),) if t is not None]
        k = self.slice_at(self.now) if self.now is not None else -1
        if k + 1 < self.slices:
            times.append(self.boundary(k + 1))
        return min(times) if times else None

    # -- working ---------------------------------------------------------------------------------

    def _quote(self, bid: float | None, ask: float | None) -> None:
        def usable(x: float | None) -> bool:
            return x is not None and math.isfinite(x) and 0 < x < 1e300

        self.bid = float(bid) if bid is not None and usable(bid) else None
        self.ask = float(ask) if ask is not None and usable(ask) else None

    def _to_place(self, target: float, now: float) -> float:
        """Whole lots to add to reach ``target`` (0 while holding after a failure)."""
        if self._holding(now):
            return 0.0
        add = round_to_lot(target - self.commitment, self.lot_size, "down")
        return add if add >= self.lot_size - EPS else 0.0

    def _work(self, now: float) -> list[Action]:
        k = self.slice_at(now)
        if k < 0:
            return []
        if k >= self.slices - 1:
            return self._final(now)
        add = self._to_place(self.target(k), now)
        if self.style == "market":
            return [self._new_child(now, add, "MKT", None, k)] if add else []
        limits = [c for c in self.working if c.order_type == "LMT" and not c.cancel_requested]
        price = self.touch()
        if not limits:
            return [self._new_child(now, add, "LMT", price, k)] if add and price is not None else []
        return self._amend(limits[0], k, add, price)

    def _amend(self, child: Child, k: int, add: float, price: float | None) -> list[Action]:
        reprice = child.slice < k and price is not None and price != child.limit_price
        child.slice = max(child.slice, k)
        if not add and not reprice:
            return []
        quantity = round_to_lot(child.quantity + add, self.lot_size, "nearest") if add else None
        if quantity is not None:
            child.quantity = quantity  # counted at once: the safe side if the raise is refused
        if reprice:
            child.limit_price = price
        return [ModifyChild(child.client_order_id, quantity, price if reprice else None)]

    def _final(self, now: float) -> list[Action]:
        """The last slice: cancel the limits; once they are done, the rest at market."""
        actions: list[Action] = []
        for child in self.working:
            if child.order_type != "MKT" and not child.cancel_requested:
                child.cancel_requested = True
                actions.append(CancelChild(child.client_order_id))
        if any(c.order_type != "MKT" for c in self.working):
            return actions  # the rest once the cancels are confirmed (their fills counted)
        add = self._to_place(self.quantity, now)
        if add:
            actions.append(self._new_child(now, add, "MKT", None, self.slices - 1))
        return actions
