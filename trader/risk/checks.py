"""One pure function per limit: ``check(order, view, market, limits, now_ns) -> reason | None``.

``view`` is one scope's side of the book (:class:`ScopeView`: the account's or one strategy's
positions, working orders, recent order counts, day P&L); ``limits`` that scope's limits. A check
whose limit is ``None`` passes. A reason carries the numbers (``AAPL would be 1,200 > limit
1,000``); the engine prefixes it with the rule (and the scope when it is a strategy).

Worst case, always:

* **Working orders** count as if every one on the order's side fills: a BUY is checked against
  ``position + working buys + order``, a SELL against ``position + working sells - order``.
* **Grows, not is**: a position, exposure or leverage check refuses only an order that makes its
  worst case bigger *and* beyond the limit; an order that only reduces passes even when the
  scope is already over the limit (so risk can always be cut).
* **Prices**: the order's instrument is valued at the higher of its mark and its own limit / stop
  price; other instruments at their marks; amounts in the base currency. A needed price (or FX
  rate) that is not known refuses the order (``no price for AAPL (no quote)``), never passes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from trader.risk.gate import OrderIntent
from trader.risk.limits import RiskLimits
from trader.risk.snapshot import EPS, BookSnapshot, MarketSnapshot, PnLSnapshot

Check = Callable[[OrderIntent, "ScopeView", MarketSnapshot, RiskLimits, int], str | None]


@dataclass(frozen=True, slots=True)
class ScopeView:
    """One scope's share of the book, as the engine hands it to the checks."""

    scope: str
    book: BookSnapshot
    """Positions and working orders of the scope (the whole account, or one strategy)."""
    orders_last_second: int = 0
    """Orders admitted in the scope within the last second (the engine's rate windows)."""
    orders_last_minute: int = 0
    day_pnl: PnLSnapshot = field(default_factory=PnLSnapshot)
    """P&L since the trading day started (realized + unrealized)."""
    day_peak: float = 0.0
    """The highest day P&L seen this trading day (0 at the day's start)."""


def fmt(value: float) -> str:
    """``1,200`` / ``1,234.5`` / ``0.25``: thousands separators, at most 2 decimals."""
    text = f"{value:,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def signed(value: float) -> str:
    return ("+" if value > 0 else "") + fmt(value)


def reduces(position: float, quantity: float) -> bool:
    """``quantity`` (signed) brings ``position`` closer to zero without crossing it."""
    after = position + quantity
    if position > EPS:
        return quantity < 0 and after >= -EPS
    if position < -EPS:
        return quantity > 0 and after <= EPS
    return False


def grows(before: float, after: float) -> bool:
    """``after`` is further from zero than ``before``, or on the other side of it."""
    if abs(after) <= EPS:
        return False
    if abs(before) <= EPS or (before > 0) != (after > 0):
        return True
    return abs(after) > abs(before) + EPS


def order_price(order: OrderIntent, market: MarketSnapshot) -> float | None:
    """The price to value ``order`` at: the higher of its mark and its own limit / stop price."""
    prices = [market.mark(order.con_id)]
    prices += [p for p in (order.limit_price, order.stop_price) if order.order_type != "MKT"]
    known = [p for p in prices if p is not None and math.isfinite(p) and p > 0]
    return max(known) if known else None


@dataclass(slots=True)
class _Line:
    """One instrument of a scope: its position and the sums of its working buys and sells."""

    con_id: int
    symbol: str
    multiplier: float
    currency: str
    position: float = 0.0
    buys: float = 0.0
    sells: float = 0.0

    @property
    def long_extreme(self) -> float:
        return self.position + self.buys

    @property
    def short_extreme(self) -> float:
        return self.position + self.sells

    def worst(self) -> float:
        return max(abs(self.long_extreme), abs(self.short_extreme))


def _lines(view: ScopeView, order: OrderIntent) -> dict[int, _Line]:
    lines: dict[int, _Line] = {}

    def line(con_id: int, symbol: str, multiplier: float, currency: str) -> _Line:
        found = lines.get(con_id)
        if found is None:
            found = lines[con_id] = _Line(con_id, symbol, multiplier, currency)
        return found

    for p in view.book.positions:
        line(p.con_id, p.symbol, p.multiplier, p.currency).position += p.quantity
    for w in view.book.working:
        entry = line(w.con_id, w.symbol, w.multiplier, w.currency)
        if w.remaining > 0:
            entry.buys += w.remaining
        else:
            entry.sells += w.remaining
    line(order.con_id, order.symbol, order.multiplier, order.currency)
    return lines


def _with_order(line: _Line, order: OrderIntent) -> _Line:
    added = _Line(
        line.con_id, line.symbol, line.multiplier, line.currency, line.position, line.buys, line.sells
    )
    if order.signed_quantity > 0:
        added.buys += order.signed_quantity
    else:
        added.sells += order.signed_quantity
    return added


def _side(line: _Line, order: OrderIntent) -> float:
    """The worst-case position on the order's side (before the order)."""
    return line.long_extreme if order.signed_quantity > 0 else line.short_extreme


def _unit(line: _Line, order: OrderIntent, market: MarketSnapshot) -> float | str:
    """Base-currency value of one unit (price x multiplier x FX), or why it is not known."""
    price = order_price(order, market) if line.con_id == order.con_id else market.mark(line.con_id)
    if price is None:
        return f"no price for {line.symbol or line.con_id} (no quote)"
    rate = market.rate(line.currency)
    if rate is None:
        return f"no {line.currency}/{market.base_currency} rate for {line.symbol or line.con_id}"
    return price * line.multiplier * rate


def _values(
    view: ScopeView, order: OrderIntent, market: MarketSnapshot
) -> tuple[list[tuple[_Line, _Line, float]], list[str]]:
    """(line before, line with the order, unit value) of every instrument with exposure, and the
    reasons of those that cannot be valued."""
    out: list[tuple[_Line, _Line, float]] = []
    unknown: list[str] = []
    for line in _lines(view, order).values():
        after = _with_order(line, order) if line.con_id == order.con_id else line
        if line.worst() <= EPS and after.worst() <= EPS:
            continue
        unit = _unit(line, order, market)
        if isinstance(unit, str):
            unknown.append(unit)
        else:
            out.append((line, after, unit))
    return out, unknown


def _gross(values: list[tuple[_Line, _Line, float]]) -> tuple[float, float]:
    before = math.fsum(b.worst() * u for b, _, u in values)
    after = math.fsum(a.worst() * u for _, a, u in values)
    return before, after


# -- the checks --------------------------------------------------------------------------------------


def max_order_quantity(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_order_quantity
    if limit is None or order.quantity <= limit + EPS:
        return None
    return f"{order.symbol} order {fmt(order.quantity)} > limit {fmt(limit)}"


def max_order_notional(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_order_notional
    if limit is None:
        return None
    price = order_price(order, market)
    if price is None:
        return f"no price for {order.symbol} (no quote)"
    rate = market.rate(order.currency)
    if rate is None:
        return f"no {order.currency}/{market.base_currency} rate for {order.symbol}"
    notional = order.quantity * price * order.multiplier * rate
    if notional <= limit + EPS:
        return None
    terms = f"{fmt(order.quantity)} x {fmt(price)}"
    if order.multiplier != 1:
        terms += f" x {fmt(order.multiplier)}"
    if rate != 1:
        terms += f" x {rate:g} {order.currency}/{market.base_currency}"
    return f"{order.symbol} order {terms} = {fmt(notional)} > limit {fmt(limit)}"


def max_position_quantity(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_position_quantity
    if limit is None:
        return None
    line = _lines(view, order)[order.con_id]
    before = _side(line, order)
    after = before + order.signed_quantity
    if abs(after) <= limit + EPS or not grows(before, after):
        return None
    working = line.buys if order.signed_quantity > 0 else line.sells
    return (
        f"{order.symbol} would be {fmt(after)} > limit {fmt(limit)} "
        f"(position {fmt(line.position)}, working {signed(working)}, order {signed(order.signed_quantity)})"
    )


def max_position_notional(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_position_notional
    if limit is None:
        return None
    line = _lines(view, order)[order.con_id]
    before = _side(line, order)
    after = before + order.signed_quantity
    if not grows(before, after):
        return None
    unit = _unit(line, order, market)
    if isinstance(unit, str):
        return unit
    value = abs(after) * unit
    if value <= limit + EPS:
        return None
    return f"{order.symbol} would be {fmt(value)} > limit {fmt(limit)} ({fmt(after)} x {fmt(unit)})"


def max_gross_exposure(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_gross_exposure
    if limit is None:
        return None
    values, unknown = _values(view, order, market)
    if unknown:
        return "; ".join(unknown)
    before, after = _gross(values)
    if after <= limit + EPS or after <= before + EPS:
        return None
    return f"would be {fmt(after)} > limit {fmt(limit)} (now {fmt(before)} worst case)"


def max_net_exposure(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_net_exposure
    if limit is None:
        return None
    values, unknown = _values(view, order, market)
    if unknown:
        return "; ".join(unknown)

    def extremes(lines: list[tuple[_Line, float]]) -> tuple[float, float]:
        return (
            math.fsum(line.long_extreme * unit for line, unit in lines),
            math.fsum(line.short_extreme * unit for line, unit in lines),
        )

    long_before, short_before = extremes([(b, u) for b, _, u in values])
    long_after, short_after = extremes([(a, u) for _, a, u in values])
    before = max(abs(long_before), abs(short_before))
    after = max(abs(long_after), abs(short_after))
    if after <= limit + EPS or after <= before + EPS:
        return None
    side = long_after if abs(long_after) >= abs(short_after) else short_after
    return f"would be {signed(side)} > limit {fmt(limit)} (now {fmt(before)} worst case)"


def max_leverage(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_leverage
    if limit is None:
        return None
    values, unknown = _values(view, order, market)
    if unknown:
        return "; ".join(unknown)
    before, after = _gross(values)
    if after <= before + EPS:
        return None
    equity = view.book.net_liquidation
    if equity is None or not math.isfinite(equity) or equity <= 0:
        return f"net liquidation {'unknown' if equity is None else fmt(equity)}: leverage cannot be checked"
    leverage = after / equity
    if leverage <= limit + EPS:
        return None
    return (
        f"would be {leverage:.2f}x > limit {limit:.2f}x (gross {fmt(after)} / net liquidation {fmt(equity)})"
    )


def max_open_orders(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_open_orders
    if limit is None:
        return None
    legs = 3 if order.bracket else 1
    count = len(view.book.working) + legs
    if count <= limit:
        return None
    return f"would be {count} > limit {limit} ({len(view.book.working)} working + {legs})"


def max_orders_per_second(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_orders_per_second
    if limit is None or view.orders_last_second + 1 <= limit:
        return None
    return f"would be {view.orders_last_second + 1} orders in 1 s > limit {limit}"


def max_orders_per_minute(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_orders_per_minute
    if limit is None or view.orders_last_minute + 1 <= limit:
        return None
    return f"would be {view.orders_last_minute + 1} orders in 60 s > limit {limit}"


def _reduces_own_position(order: OrderIntent, view: ScopeView) -> bool:
    return reduces(view.book.position(order.strategy, order.con_id), order.signed_quantity)


def max_daily_loss(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_daily_loss
    if limit is None or _reduces_own_position(order, view):
        return None
    day = view.day_pnl
    if not day.known:
        return f"day P&L unknown (no mark for conId {', '.join(map(str, day.missing_marks))})"
    if -day.total < limit - EPS:
        return None
    return (
        f"day loss {fmt(-day.total)} >= limit {fmt(limit)} "
        f"(realized {fmt(day.realized)}, unrealized {fmt(day.unrealized)}): only reducing orders"
    )


def max_drawdown(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_drawdown
    if limit is None or _reduces_own_position(order, view):
        return None
    day = view.day_pnl
    if not day.known:
        return f"day P&L unknown (no mark for conId {', '.join(map(str, day.missing_marks))})"
    drawdown = view.day_peak - day.total
    if drawdown < limit - EPS:
        return None
    return (
        f"drawdown {fmt(drawdown)} from the day's peak {fmt(view.day_peak)} >= limit {fmt(limit)}: "
        "only reducing orders"
    )


CHECKS: Final[Mapping[str, Check]] = {
    "max_order_quantity": max_order_quantity,
    "max_order_notional": max_order_notional,
    "max_position_quantity": max_position_quantity,
    "max_position_notional": max_position_notional,
    "max_gross_exposure": max_gross_exposure,
    "max_net_exposure": max_net_exposure,
    "max_leverage": max_leverage,
    "max_open_orders": max_open_orders,
    "max_orders_per_second": max_orders_per_second,
    "max_orders_per_minute": max_orders_per_minute,
    "max_daily_loss": max_daily_loss,
    "max_drawdown": max_drawdown,
}
"""The registry: rule name (the limit's key) -> check, in the order they are evaluated."""
