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
    best = market.mark(order.con_id)
    if order.order_type != "MKT":
        for price in (order.limit_price, order.stop_price):
            if price is not None and math.isfinite(price) and price > 0 and (best is None or price > best):
                best = price
    return best


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


def _book_lines(book: BookSnapshot) -> dict[int, _Line]:
    """The lines of ``book``'s instruments, in the order they first appear (positions, then
    working orders); computed once per snapshot, never to be changed."""
    lines: dict[int, _Line] | None = book._memo.get("lines")
    if lines is not None:
        return lines
    lines = {}
    get = lines.get
    for p in book.positions:
        found = get(p.con_id)
        if found is None:
            found = lines[p.con_id] = _Line(p.con_id, p.symbol, p.multiplier, p.currency)
        found.position += p.quantity
    for w in book.working:
        found = get(w.con_id)
        if found is None:
            found = lines[w.con_id] = _Line(w.con_id, w.symbol, w.multiplier, w.currency)
        remaining = w.remaining
        if remaining > 0:
            found.buys += remaining
        else:
            found.sells += remaining
    book._memo["lines"] = lines
    return lines


def _order_line(view: ScopeView, order: OrderIntent) -> _Line:
    """The line of the order's instrument in the scope (an empty one when the scope has none)."""
    found = _book_lines(view.book).get(order.con_id)
    if found is None:
        return _Line(order.con_id, order.symbol, order.multiplier, order.currency)
    return found


def _lines(view: ScopeView, order: OrderIntent) -> dict[int, _Line]:
    """Every line of the scope, the order's instrument last when the scope has none of it."""
    lines = dict(_book_lines(view.book))
    if order.con_id not in lines:
        lines[order.con_id] = _Line(order.con_id, order.symbol, order.multiplier, order.currency)
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


# -- exposure, once per snapshot -------------------------------------------------------------------
#
# The exposure checks (gross, net, leverage) sum, over every instrument of the scope with
# exposure, a term per instrument; only the order's instrument depends on the order. So the terms
# of every instrument, valued at its mark, are computed once per (book, market) (:class:`_Valued`),
# and an order's sums are those lists with the order's own term put in its place: the same terms
# in the same order as :func:`_values` gives, hence the same ``math.fsum`` results. When the
# order's instrument is one this cannot place (it has no exposure before the order, or no mark)
# or another instrument cannot be valued (the check refuses, naming it), :func:`_values` is used.


@dataclass(slots=True)
class _Valued:
    """The instruments of one book with exposure, valued at ``market``'s marks."""

    market: MarketSnapshot
    index: dict[int, int]
    """conId -> its place in the term lists (instruments that could be valued), in line order."""
    units: list[float]
    gross: list[float]
    """worst case x unit, per instrument."""
    unknown: dict[int, str]
    """conId -> why it cannot be valued (instruments with exposure only)."""
    extremes: tuple[list[float], list[float]] | None = None
    """(long extreme x unit, short extreme x unit) per instrument, once the net check needs them."""


def _valued(book: BookSnapshot, market: MarketSnapshot) -> _Valued:
    found: _Valued | None = book._memo.get("valued")
    if found is not None and found.market is market:
        return found
    index: dict[int, int] = {}
    units: list[float] = []
    gross: list[float] = []
    unknown: dict[int, str] = {}
    rates: dict[str, float | None] = {}
    marks = market.marks
    isfinite = math.isfinite
    for con_id, line in _book_lines(book).items():
        position = line.position
        worst = max(abs(position + line.buys), abs(position + line.sells))  # line.worst()
        if worst <= EPS:
            continue
        price = marks.get(con_id)  # market.mark(con_id), inline
        if price is None or not isfinite(price) or price <= 0:
            unknown[con_id] = f"no price for {line.symbol or con_id} (no quote)"
            continue
        try:
            rate = rates[line.currency]
        except KeyError:
            rate = rates[line.currency] = market.rate(line.currency)
        if rate is None:
            unknown[con_id] = f"no {line.currency}/{market.base_currency} rate for {line.symbol or con_id}"
            continue
        unit = float(price) * line.multiplier * rate
        index[con_id] = len(units)
        units.append(unit)
        gross.append(worst * unit)
    found = book._memo["valued"] = _Valued(market, index, units, gross, unknown)
    return found


@dataclass(frozen=True, slots=True)
class _OrderTerms:
    """The order's instrument in a scope: before and with the order, its unit value, and where
    its term goes in the lists (None: appended)."""

    before: _Line
    after: _Line
    unit: float
    place: int | None


def _order_terms(
    view: ScopeView, order: OrderIntent, market: MarketSnapshot
) -> tuple[_Valued, _OrderTerms | None] | str | None:
    """(the scope's valued instruments, the order's terms; None when its instrument has no
    exposure either way), or the reasons it cannot be valued, or None when :func:`_values` must
    decide (see above)."""
    valued = _valued(view.book, market)
    if valued.unknown and (len(valued.unknown) > 1 or order.con_id not in valued.unknown):
        return None
    lines = _book_lines(view.book)
    before = lines.get(order.con_id)
    if before is None:
        before = _Line(order.con_id, order.symbol, order.multiplier, order.currency)
        place = None
    else:
        place = valued.index.get(order.con_id)
        if place is None:  # held, without exposure or without a mark: its place is not known
            return None
    after = _with_order(before, order)
    if before.worst() <= EPS and after.worst() <= EPS:
        return valued, None
    unit = _unit(before, order, market)
    if isinstance(unit, str):
        return unit
    return valued, _OrderTerms(before, after, unit, place)


def _with_terms(
    terms: list[float], own: _OrderTerms | None, before: float, after: float
) -> tuple[float, float]:
    """``math.fsum`` of ``terms`` with the order's term (``before`` / ``after``) in its place."""
    if own is None:
        total = math.fsum(terms)
        return total, total
    changed = terms.copy()
    if own.place is None:
        changed.append(before)
        first = math.fsum(changed)
        changed[-1] = after
    else:
        changed[own.place] = before
        first = math.fsum(changed)
        changed[own.place] = after
    return first, math.fsum(changed)


def _gross_of(view: ScopeView, order: OrderIntent, market: MarketSnapshot) -> tuple[float, float] | str:
    """(gross worst-case exposure before, with the order), or why it is not known."""
    found = _order_terms(view, order, market)
    if found is None:
        values, unknown = _values(view, order, market)
        if unknown:
            return "; ".join(unknown)
        return _gross(values)
    if isinstance(found, str):
        return found
    valued, own = found
    if own is None:
        return _with_terms(valued.gross, None, 0.0, 0.0)
    return _with_terms(valued.gross, own, own.before.worst() * own.unit, own.after.worst() * own.unit)


def _net_extremes(
    view: ScopeView, order: OrderIntent, market: MarketSnapshot
) -> tuple[tuple[float, float], tuple[float, float]] | str:
    """((long, short) worst-case net exposure before the order, and with it), or why not known."""
    found = _order_terms(view, order, market)
    if found is None:
        values, unknown = _values(view, order, market)
        if unknown:
            return "; ".join(unknown)

        def extremes(lines: list[tuple[_Line, float]]) -> tuple[float, float]:
            return (
                math.fsum(line.long_extreme * unit for line, unit in lines),
                math.fsum(line.short_extreme * unit for line, unit in lines),
            )

        return extremes([(b, u) for b, _, u in values]), extremes([(a, u) for _, a, u in values])
    if isinstance(found, str):
        return found
    valued, own = found
    if valued.extremes is None:
        lines = _book_lines(view.book)
        held = [(lines[con_id], valued.units[place]) for con_id, place in valued.index.items()]
        valued.extremes = (
            [line.long_extreme * unit for line, unit in held],
            [line.short_extreme * unit for line, unit in held],
        )
    longs, shorts = valued.extremes
    if own is None:
        long_total, short_total = math.fsum(longs), math.fsum(shorts)
        return (long_total, short_total), (long_total, short_total)
    long_before, long_after = _with_terms(
        longs, own, own.before.long_extreme * own.unit, own.after.long_extreme * own.unit
    )
    short_before, short_after = _with_terms(
        shorts, own, own.before.short_extreme * own.unit, own.after.short_extreme * own.unit
    )
    return (long_before, short_before), (long_after, short_after)


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
    line = _order_line(view, order)
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
    line = _order_line(view, order)
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
    gross = _gross_of(view, order, market)
    if isinstance(gross, str):
        return gross
    before, after = gross
    if after <= limit + EPS or after <= before + EPS:
        return None
    return f"would be {fmt(after)} > limit {fmt(limit)} (now {fmt(before)} worst case)"


def max_net_exposure(
    order: OrderIntent, view: ScopeView, market: MarketSnapshot, limits: RiskLimits, now_ns: int
) -> str | None:
    limit = limits.max_net_exposure
    if limit is None:
        return None
    net = _net_extremes(view, order, market)
    if isinstance(net, str):
        return net
    (long_before, short_before), (long_after, short_after) = net
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
    gross = _gross_of(view, order, market)
    if isinstance(gross, str):
        return gross
    before, after = gross
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
