"""Positions and P&L per (account, strategy, instrument), per strategy and per account.

The ledger of fills is the truth; a position is a fold over its fills in a canonical order
(``time_ns``, then ``exec_id``), so the same fills give the same positions whatever order they
arrived in, and a fill that arrives late (a missed execution found by reconciliation) refolds its
position.

Accounting choices:

* **Average price without commissions.** ``avg_price`` is the quantity-weighted average fill price
  of the open position (average-cost method: adding moves it, reducing keeps it, a flip through zero
  restarts it at the flipping fill's price). ``avg_cost`` is ``avg_price * multiplier``, IB's unit,
  but unlike IB's ``avgCost`` it carries no commission.
* **Realized P&L is net of every commission**, charged when the commission is known (opening ones
  too): ``realized = sum((price - avg_price) * closed * multiplier) - sum(commissions)``. IB charges
  an opening commission when the position closes (through its avgCost); totals agree, the timing of
  realized vs. unrealized differs. Commissions may arrive before or after their executions without
  changing any average.
* **Unrealized P&L** is ``quantity * (mark - avg_price) * multiplier`` at marks passed in by conId.

So ``realized + unrealized`` is exactly the mark-to-market change of cash plus positions net of
commissions. Amounts are in the instrument's currency; the book does no FX conversion.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

EPS = 1e-9
"""Quantities closer than this to zero are zero."""

Marks = Mapping[int, float]
"""Mark price by conId."""


class PositionKey(NamedTuple):
    account: str
    strategy: str
    con_id: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One booked fill: an execution, or an adjustment (``client_order_id`` None)."""

    exec_id: str
    account: str
    strategy: str
    con_id: int
    symbol: str
    quantity: float
    """Signed: + bought, - sold."""
    price: float
    time_ns: int
    multiplier: float = 1.0
    commission: float | None = None
    """``None`` until the commission report arrives."""
    currency: str = "USD"
    client_order_id: str | None = None
    order_id: int = 0
    perm_id: int = 0

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.strategy, self.con_id)

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.time_ns, self.exec_id)

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Fill:
        return cls(**record)


@dataclass(frozen=True, slots=True)
class PnL:
    """Realized (net of commissions) and unrealized P&L of some positions.

    ``missing_marks``: conIds of open positions without a mark; their unrealized P&L is not in
    ``unrealized``."""

    realized: float = 0.0
    unrealized: float = 0.0
    commissions: float = 0.0
    missing_marks: tuple[int, ...] = ()

    @property
    def total(self) -> float:
        return self.realized + self.unrealized

    def __add__(self, other: PnL) -> PnL:
        return PnL(
            self.realized + other.realized,
            self.unrealized + other.unrealized,
            self.commissions + other.commissions,
            tuple(sorted(set(self.missing_marks) | set(other.missing_marks))),
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A position of one strategy in one instrument of one account."""

    account: str
    strategy: str
    con_id: int
    symbol: str
    multiplier: float
    quantity: float
    avg_price: float
    realized: float
    """Net of commissions."""
    commissions: float
    fills: int

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.account, self.strategy, self.con_id)

    @property
    def avg_cost(self) -> float:
        """Per unit with the multiplier (IB's unit), without commissions."""
        return self.avg_price * self.multiplier

    @property
    def is_flat(self) -> bool:
        return abs(self.quantity) < EPS

    def market_value(self, mark: float) -> float:
        return self.quantity * mark * self.multiplier

    def unrealized(self, mark: float) -> float:
        return self.quantity * (mark - self.avg_price) * self.multiplier

    def pnl(self, marks: Marks) -> PnL:
        if self.is_flat:
            return PnL(self.realized, 0.0, self.commissions)
        mark = marks.get(self.con_id)
        if mark is None:
            return PnL(self.realized, 0.0, self.commissions, (self.con_id,))
        return PnL(self.realized, self.unrealized(mark), self.commissions)

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Fold:
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_gross: float = 0.0

    def step(self, quantity: float, price: float, multiplier: float) -> None:
        q0 = self.quantity
        if abs(q0) < EPS or (q0 > 0) == (quantity > 0):
            total = abs(q0) + abs(quantity)
            self.avg_price = (self.avg_price * abs(q0) + price * abs(quantity)) / total
            self.quantity = q0 + quantity
            return
        closing = min(abs(quantity), abs(q0))
        self.realized_gross += (price - self.avg_price) * closing * (1.0 if q0 > 0 else -1.0) * multiplier
        rest = abs(quantity) - closing
        if rest > EPS:  # through zero: the rest opens at this price
            self.quantity = math.copysign(rest, quantity)
            self.avg_price = price
        else:
            self.quantity = q0 + quantity
        if abs(self.quantity) < EPS:
            self.quantity = self.avg_price = 0.0


_EXACT_LIMIT = 2.0**960
"""Commissions at least this large (or not finite) are summed by ``math.fsum`` on every read, as
before: :class:`_ExactSum` cannot overflow below it, so its rounding is ``math.fsum``'s."""


class _ExactSum:
    """A running sum of floats kept exactly (Shewchuk's non-overlapping partials, as ``math.fsum``
    keeps them) that values can be added to and taken out of; :attr:`value` is the sum correctly
    rounded, i.e. exactly what ``math.fsum`` of the values currently in it returns.

    Values that are not finite or too large (:data:`_EXACT_LIMIT`) are only counted in
    :attr:`special`: while it is non-zero the owner recomputes with ``math.fsum`` instead."""

    __slots__ = ("partials", "special", "value")

    def __init__(self) -> None:
        self.partials: list[float] = []
        self.special = 0
        self.value = 0.0

    def add(self, x: float) -> None:
        if not (abs(x) < _EXACT_LIMIT):  # inf, nan, huge
            self.special += 1
            return
        partials = self.partials
        i = 0
        for partial in partials:
            big, small = (partial, x) if abs(x) < abs(partial) else (x, partial)
            hi = big + small
            lo = small - (hi - big)
            if lo:
                partials[i] = lo
                i += 1
            x = hi
        del partials[i:]
        if x:
            partials.append(x)
        self.value = math.fsum(partials)

    def remove(self, x: float) -> None:
        if not (abs(x) < _EXACT_LIMIT):
            self.special -= 1
            return
        self.add(-x)


class Positions:
    """The fill ledger (by exec id, each applied once) and the positions folded from it.

    Each position keeps its fold and the exact running sum of its fills' known commissions, so
    :meth:`position` is O(1) whatever the number of its fills."""

    def __init__(self) -> None:
        self._fills: dict[str, Fill] = {}
        self._order: dict[PositionKey, list[tuple[int, str]]] = {}
        self._folds: dict[PositionKey, _Fold] = {}
        self._commissions: dict[PositionKey, _ExactSum] = {}

    # -- changes ---------------------------------------------------------------------------------

    def add(self, fill: Fill) -> bool:
        """Book ``fill``; ``False`` (nothing changes) when its exec id is already booked."""
        if fill.exec_id in self._fills:
            return False
        if fill.quantity == 0 or not math.isfinite(fill.quantity):
            raise ValueError(f"fill {fill.exec_id}: quantity must be non-zero, not {fill.quantity!r}")
        key = fill.key
        order = self._order.setdefault(key, [])
        if order:
            first = self._fills[order[0][1]]
            if first.multiplier != fill.multiplier:
                raise ValueError(
                    f"fill {fill.exec_id}: multiplier {fill.multiplier} of conId {fill.con_id} differs from "
                    f"{first.multiplier} of earlier fills"
                )
        self._fills[fill.exec_id] = fill
        commissions = self._commissions.get(key)
        if commissions is None:
            commissions = self._commissions[key] = _ExactSum()
        if fill.commission is not None:
            commissions.add(fill.commission)
        if not order or fill.sort_key > order[-1]:
            order.append(fill.sort_key)
            self._folds.setdefault(key, _Fold()).step(fill.quantity, fill.price, fill.multiplier)
        else:
            bisect.insort(order, fill.sort_key)
            self._refold(key)
        return True

    def set_commission(self, exec_id: str, commission: float) -> bool:
        """Attach the commission of a booked fill (a later report replaces an earlier one);
        ``False`` when it is unchanged. KeyError for an unknown exec id."""
        fill = self._fills[exec_id]
        if fill.commission == commission:
            return False
        self._fills[exec_id] = dataclasses.replace(fill, commission=commission)
        commissions = self._commissions[fill.key]
        if fill.commission is not None:
            commissions.remove(fill.commission)
        commissions.add(commission)
        return True

    def _refold(self, key: PositionKey) -> None:
        fold = self._folds[key] = _Fold()
        for _, exec_id in self._order[key]:
            fill = self._fills[exec_id]
            fold.step(fill.quantity, fill.price, fill.multiplier)

    # -- queries ---------------------------------------------------------------------------------

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self._fills

    def __len__(self) -> int:
        return len(self._fills)

    def fill(self, exec_id: str) -> Fill | None:
        return self._fills.get(exec_id)

    def fills(
        self, *, account: str | None = None, strategy: str | None = None, con_id: int | None = None
    ) -> list[Fill]:
        """Fills in canonical order (time, then exec id), optionally filtered."""
        chosen = [
            f
            for f in self._fills.values()
            if (account is None or f.account == account)
            and (strategy is None or f.strategy == strategy)
            and (con_id is None or f.con_id == con_id)
        ]
        return sorted(chosen, key=lambda f: f.sort_key)

    def position(self, key: PositionKey) -> Position:
        """The position of ``key`` (flat and empty when it has no fills)."""
        order = self._order.get(key)
        if not order:
            return Position(key.account, key.strategy, key.con_id, "", 1.0, 0.0, 0.0, 0.0, 0.0, 0)
        fold = self._folds[key]
        running = self._commissions[key]
        # a non-finite or huge commission: math.fsum over the fills decides (or raises), as before
        commissions = self.commissions(key) if running.special else running.value
        last = self._fills[order[-1][1]]
        return Position(
            key.account,
            key.strategy,
            key.con_id,
            last.symbol,
            last.multiplier,
            fold.quantity,
            fold.avg_price,
            fold.realized_gross - commissions,
            commissions,
            len(order),
        )

    def commissions(self, key: PositionKey) -> float:
        """The known commissions of ``key``'s fills, summed from the ledger (``math.fsum`` in
        canonical order): what :meth:`position` keeps as a running sum."""
        fills = (self._fills[exec_id] for _, exec_id in self._order.get(key, ()))
        return math.fsum(f.commission for f in fills if f.commission is not None)

    def positions(
        self,
        *,
        account: str | None = None,
        strategy: str | None = None,
        con_id: int | None = None,
        include_flat: bool = True,
    ) -> list[Position]:
        """Positions sorted by (account, strategy, conId), optionally filtered."""
        out = []
        for key in sorted(self._order):
            if (
                (account is None or key.account == account)
                and (strategy is None or key.strategy == strategy)
                and (con_id is None or key.con_id == con_id)
            ):
                pos = self.position(key)
                if include_flat or not pos.is_flat:
                    out.append(pos)
        return out

    def strategies(self) -> list[str]:
        return sorted({key.strategy for key in self._order})

    def accounts(self) -> list[str]:
        return sorted({key.account for key in self._order})

    def net_quantity(self, account: str, con_id: int) -> float:
        """The account's position in ``con_id``: the sum over strategies."""
        return math.fsum(p.quantity for p in self.positions(account=account, con_id=con_id))

    def account_quantities(self) -> dict[tuple[str, int], float]:
        """``(account, conId) -> quantity``, summed over strategies (flat ones included)."""
        sums: dict[tuple[str, int], list[float]] = {}
        for pos in self.positions():
            sums.setdefault((pos.account, pos.con_id), []).append(pos.quantity)
        return {k: _zero(math.fsum(v)) for k, v in sums.items()}

    def pnl(
        self,
        marks: Marks,
        *,
        account: str | None = None,
        strategy: str | None = None,
        con_id: int | None = None,
    ) -> PnL:
        """P&L of the positions matching the filters (all of them by default)."""
        return _sum(p.pnl(marks) for p in self.positions(account=account, strategy=strategy, con_id=con_id))

    def pnl_by_strategy(self, marks: Marks, *, account: str | None = None) -> dict[str, PnL]:
        return {s: self.pnl(marks, account=account, strategy=s) for s in self.strategies()}

    def pnl_by_account(self, marks: Marks) -> dict[str, PnL]:
        return {a: self.pnl(marks, account=a) for a in self.accounts()}


def _zero(value: float) -> float:
    return 0.0 if abs(value) < EPS else value


def _sum(items: Iterable[PnL]) -> PnL:
    total = PnL()
    for item in items:
        total = total + item
    return total
