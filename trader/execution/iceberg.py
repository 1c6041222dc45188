"""Iceberg: a large limit order shown ``display`` at a time.

Exactly one LMT child of ``min(display, what is left)`` works at ``limit_price``; when it is
filled the next one is placed, until the whole quantity is filled. So never more than ``display``
is working at the exchange. :meth:`IcebergPlan.reprice` moves the limit (of the working child and
of the ones to come).
"""

from __future__ import annotations

import math
from typing import Any

from trader.execution.algos import EPS, Action, ModifyChild, Plan, check_quantity
from trader.execution.builders import BadOrder
from trader.execution.sizing import round_to_lot


def _limit(value: float) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise BadOrder(f"limit_price must be a positive number, got {value!r}")
    return float(value)


class IcebergPlan(Plan):
    """An iceberg of ``quantity`` showing ``display`` at ``limit_price``; see the module's doc."""

    algo = "iceberg"

    def __init__(
        self,
        quantity: float,
        display: float,
        side: str,
        limit_price: float,
        *,
        parent_id: str,
        lot_size: float = 1.0,
        max_failures: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(
            parent_id, quantity, side, lot_size=lot_size, max_failures=max_failures, retry_delay=retry_delay
        )
        self.display = check_quantity("display", display, self.lot_size)
        if self.display > self.quantity:
            raise BadOrder(f"display {self.display:g} is more than the quantity {self.quantity:g}")
        self.limit_price = _limit(limit_price)

    def params(self) -> dict[str, Any]:
        return {"display": self.display, "limit_price": self.limit_price}

    def reprice(self, limit_price: float) -> list[Action]:
        """A new limit for the working child (a modification) and the children to come."""
        self.limit_price = _limit(limit_price)
        actions: list[Action] = []
        for child in self.working:
            if not child.cancel_requested and child.limit_price != self.limit_price:
                child.limit_price = self.limit_price
                actions.append(ModifyChild(child.client_order_id, None, self.limit_price))
        return actions

    def _work(self, now: float) -> list[Action]:
        if self.working or self._holding(now):
            return []
        left = round_to_lot(self.quantity - self.commitment, self.lot_size, "down")
        show = min(self.display, left)
        if show < self.lot_size - EPS:
            return []
        return [self._new_child(now, show, "LMT", self.limit_price)]
