"""What the risk engine reads: frozen snapshots the trader builds from its book and market data.

* :class:`BookSnapshot` — positions per (strategy, conId), working orders (signed remaining),
  cumulative P&L per strategy and for the account, the account's net liquidation.
* :class:`MarketSnapshot` — marks by conId (``None``: no quote), FX rates to the base currency.
* :func:`snapshot_from_book` builds both from a :class:`~trader.book.Book` (the trader's wiring).

Amounts are converted to the base currency with ``MarketSnapshot.fx`` (units of base currency per
unit of the currency); an instrument whose mark or FX rate is unknown has no value, and every
check that needs it refuses (fail closed).
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

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

    def for_strategy(self, strategy: str) -> BookSnapshot:
        """Only ``strategy``'s positions, working orders and P&L (net liquidation kept)."""
        pnl = self.pnl.get(strategy, PnLSnapshot())
        return replace(
            self,
            positions=tuple(p for p in self.positions if p.strategy == strategy),
            working=tuple(w for w in self.working if w.strategy == strategy),
            pnl=types.MappingProxyType({strategy: pnl}),
            account_pnl=pnl,
        )

    def total_pnl(self) -> PnLSnapshot:
        if self.account_pnl is not None:
            return self.account_pnl
        total = PnLSnapshot()
        for value in self.pnl.values():
            total = total + value
        return total

    def position(self, strategy: str | None, con_id: int) -> float:
        """The position in ``con_id`` of ``strategy`` (all strategies when None)."""
        return math.fsum(
            p.quantity
            for p in self.positions
            if p.con_id == con_id and (strategy is None or p.strategy == strategy)
        )

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
    positions = tuple(
        PositionSnapshot(
            p.strategy,
            p.con_id,
            p.symbol,
            p.quantity,
            p.multiplier,
            currency_of.get(p.con_id, base_currency),
        )
        for p in book.positions.positions(account=account, include_flat=False)
    )
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
        for o in book.working_orders()
        if account is None or not o.account or o.account == account
    )
    pnl = {s: PnLSnapshot.of(v) for s, v in book.positions.pnl_by_strategy(marks, account=account).items()}
    return RiskSnapshot(
        BookSnapshot(
            positions,
            working,
            net_liquidation,
            types.MappingProxyType(pnl),
            PnLSnapshot.of(book.positions.pnl(marks, account=account)),
        ),
        MarketSnapshot(
            types.MappingProxyType(dict(marks)),
            types.MappingProxyType(dict(fx or {})),
            base_currency,
        ),
    )


def signed_sum(values: Iterable[float]) -> tuple[float, float]:
    """(sum of positives, sum of negatives) of ``values``."""
    items = list(values)
    return math.fsum(v for v in items if v > 0), math.fsum(v for v in items if v < 0)
