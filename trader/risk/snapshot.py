"""What the risk engine reads: frozen snapshots the trader builds from its book and market data.

* :class:`BookSnapshot` — positions per (strategy, conId), working orders (signed remaining),
  cumulative P&L per strategy and for the account, the account's net liquidation.
* :class:`MarketSnapshot` — marks by conId (``None``: no quote), FX rates to the base currency.
* :func:`snapshot_from_book` builds both from a :class:`~trader.book.Book` (the trader's wiring).

Amounts are converted to the base currency with ``MarketSnapshot.fx`` (units of base currency per
unit of the currency); an instrument whose mark or FX rate is unknown has no value, and every
check that needs it refuses (fail closed).

A :class:`BookSnapshot` is immutable, so what is derived from it (a strategy's share, positions by
instrument, the checks' per-instrument lines and exposures) is computed once, on first use, and
kept in its private ``_memo``: one order's checks in two scopes scan the book once, not per rule.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trader.book import Book, PnL

EPS = 1e-9


def _frozen_map() -> Mapping[str, float]:
    return types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    strategy: str
    con_id: int
    symbol: str
    quantity: float
    """Signed: + long, - short."""
    multiplier: float = 1.0
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """An order that may still fill: its signed remaining quantity (+ buy, - sell)."""

    strategy: str
    client_order_id: str
    con_id: int
    symbol: str
    remaining: float
    multiplier: float = 1.0
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class PnLSnapshot:
    """Cumulative P&L (since the book began): realized net of commissions, unrealized at marks.

    ``missing_marks``: conIds of open positions without a mark (``unrealized`` leaves them out, so
    the P&L is not known)."""

    realized: float = 0.0
    unrealized: float = 0.0
    missing_marks: tuple[int, ...] = ()

    @property
    def total(self) -> float:
        return self.realized + self.unrealized

    @property
    def known(self) -> bool:
        return not self.missing_marks

    @classmethod
    def of(cls, pnl: PnL) -> PnLSnapshot:
        return cls(pnl.realized, pnl.unrealized, pnl.missing_marks)

    def __add__(self, other: PnLSnapshot) -> PnLSnapshot:
        missing = tuple(sorted(set(self.missing_marks) | set(other.missing_marks)))
        return PnLSnapshot(self.realized + other.realized, self.unrealized + other.unrealized, missing)


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    positions: tuple[PositionSnapshot, ...] = ()
    working: tuple[WorkingOrder, ...] = ()
    """Working orders (the order being checked is not among them)."""
    net_liquidation: float | None = None
    """The account's net liquidation value in the base currency; None while unknown."""
    pnl: Mapping[str, PnLSnapshot] = field(default_factory=lambda: types.MappingProxyType({}))
    """Cumulative P&L per strategy."""
    account_pnl: PnLSnapshot | None = None
    """The account's cumulative P&L; None: the sum of ``pnl``."""
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """What is derived from this snapshot, computed once (not part of its value; a copy made by
    ``replace`` starts empty)."""

    def for_strategy(self, strategy: str) -> BookSnapshot:
        """Only ``strategy``'s positions, working orders and P&L (net liquidation kept)."""
        key = ("for_strategy", strategy)
        found: BookSnapshot | None = self._memo.get(key)
        if found is None:
            pnl = self.pnl.get(strategy, PnLSnapshot())
            found = self._memo[key] = replace(
                self,
                positions=tuple(p for p in self.positions if p.strategy == strategy),
                working=tuple(w for w in self.working if w.strategy == strategy),
                pnl=types.MappingProxyType({strategy: pnl}),
                account_pnl=pnl,
            )
        return found

    def total_pnl(self) -> PnLSnapshot:
        if self.account_pnl is not None:
            return self.account_pnl
        total = PnLSnapshot()
        for value in self.pnl.values():
            total = total + value
        return total

    def position(self, strategy: str | None, con_id: int) -> float:
        """The position in ``con_id`` of ``strategy`` (all strategies when None)."""
        key = ("position", strategy, con_id)
        found: float | None = self._memo.get(key)
        if found is None:
            own: BookSnapshot | None = (
                None if strategy is None else self._memo.get(("for_strategy", strategy))
            )
            if own is not None and own is not self:  # the same positions in the same order, fewer
                found = self._memo[key] = own.position(strategy, con_id)
                return found
            found = self._memo[key] = math.fsum(
                p.quantity
                for p in self.positions
                if p.con_id == con_id and (strategy is None or p.strategy == strategy)
            )
        return found

    def strategies(self) -> list[str]:
        names = {p.strategy for p in self.positions} | {w.strategy for w in self.working} | set(self.pnl)
        return sorted(names)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    marks: Mapping[int, float | None] = field(default_factory=lambda: types.MappingProxyType({}))
    """Mark price by conId (last mid or trade); missing or None: no quote."""
    fx: Mapping[str, float] = field(default_factory=_frozen_map)
    """Units of ``base_currency`` per unit of a currency (``EUR: 1.08`` when the base is USD)."""
    base_currency: str = "USD"

    def mark(self, con_id: int) -> float | None:
        value = self.marks.get(con_id)
        if value is None or not math.isfinite(value) or value <= 0:
            return None
        return float(value)

    def rate(self, currency: str) -> float | None:
        if currency == self.base_currency:
            return 1.0
        value = self.fx.get(currency)
        if value is None or not math.isfinite(value) or value <= 0:
            return None
        return float(value)


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    book: BookSnapshot
    market: MarketSnapshot


def snapshot_from_book(
    book: Book,
    marks: Mapping[int, float],
    *,
    account: str | None = None,
    net_liquidation: float | None = None,
    currencies: Mapping[int, str] | None = None,
    fx: Mapping[str, float] | None = None,
    base_currency: str = "USD",
) -> RiskSnapshot:
    """The snapshot of ``book`` (only ``account``'s when given) at ``marks``.

    ``currencies``: currency by conId (from the trader's contracts); unknown ones are taken to be
    ``base_currency``. A working order whose quantity is unknown counts as nothing left."""
    currency_of = currencies or {}
    # One pass over the positions (each folded once) for the snapshot and every P&L: the same
    # positions, in the same order, as Positions.positions / pnl / pnl_by_strategy would use.
    held = book.positions.positions(account=account)
    positions = tuple(
        PositionSnapshot(
            p.strategy,
            p.con_id,
            p.symbol,
            p.quantity,
            p.multiplier,
            currency_of.get(p.con_id, base_currency),
        )
        for p in held
        if not p.is_flat
    )
    # P&L sums as PnL.__add__ makes them (from zero, in this order), without a PnL per step.
    by_strategy = {s: _PnLSum() for s in book.positions.strategies()}
    account_pnl = _PnLSum()
    for p in held:
        value = p.pnl(marks)
        by_strategy[p.strategy].add(value)
        account_pnl.add(value)
    # Working orders only: filtered before sorting (Book.working_orders sorts every order first).
    working = tuple(
        WorkingOrder(
            o.strategy,
            o.client_order_id,
            o.con_id,
            o.symbol,
            (o.remaining or 0.0) * (1.0 if o.action == "BUY" else -1.0),
            o.multiplier,
            currency_of.get(o.con_id, base_currency),
        )
        for o in book.working_orders()  # the book's index: O(working orders), by client order id
        if account is None or not o.account or o.account == account
    )
    pnl = {s: v.snapshot() for s, v in by_strategy.items()}
    return RiskSnapshot(
        BookSnapshot(
            positions,
            working,
            net_liquidation,
            types.MappingProxyType(pnl),
            account_pnl.snapshot(),
        ),
        MarketSnapshot(
            types.MappingProxyType(dict(marks)),
            types.MappingProxyType(dict(fx or {})),
            base_currency,
        ),
    )


class _PnLSum:
    """A sum of :class:`~trader.book.PnL` (the parts a PnLSnapshot keeps), added one by one."""

    __slots__ = ("missing", "realized", "unrealized")

    def __init__(self) -> None:
        self.realized = 0.0
        self.unrealized = 0.0
        self.missing: set[int] = set()

    def add(self, value: PnL) -> None:
        self.realized = self.realized + value.realized
        self.unrealized = self.unrealized + value.unrealized
        self.missing.update(value.missing_marks)

    def snapshot(self) -> PnLSnapshot:
        return PnLSnapshot(self.realized, self.unrealized, tuple(sorted(self.missing)))


def signed_sum(values: Iterable[float]) -> tuple[float, float]:
    """(sum of positives, sum of negatives) of ``values``."""
    items = list(values)
    return math.fsum(v for v in items if v > 0), math.fsum(v for v in items if v < 0)
