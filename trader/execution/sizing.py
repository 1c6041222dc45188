"""Sizing: a cash amount -> a quantity, with the instrument's multiplier and lot size. Pure.

``quantity = floor(cash / (price x multiplier) / lot) x lot`` — never more than the cash buys —
and :class:`~trader.execution.builders.BadOrder` naming the numbers when that is under one lot
(or under the instrument's minimum size). The price is the order's own (limit, else stop) when it
has one, else the touch the order would take (ask for a buy, bid for a sell), else the mid, else
the last trade, else the other side (:func:`sizing_price`).

Lots: IB's ``ContractDetails.sizeIncrement`` (1 for stocks and futures; FX often 1 or finer) is
the lot; ``minSize`` the smallest order. :func:`lot_rules` reads both from contract details.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from trader.execution.builders import BadOrder

_EPS = 1e-9


class _Details(Protocol):
    """What sizing reads of ib_async's ContractDetails."""

    minSize: float
    sizeIncrement: float


@dataclass(frozen=True, slots=True)
class LotRules:
    """An instrument's sizing terms: ``multiplier`` (units per contract: 50 for ES, 1 for a stock),
    ``lot_size`` (quantities are whole multiples of it), ``min_size`` (the smallest order, >= lot)."""

    multiplier: float = 1.0
    lot_size: float = 1.0
    min_size: float = 0.0

    def __post_init__(self) -> None:
        for name in ("multiplier", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise BadOrder(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.min_size) and self.min_size >= 0):
            raise BadOrder(f"min_size must be a number >= 0, got {self.min_size!r}")

    @property
    def smallest(self) -> float:
        """The smallest quantity that can be ordered: one lot, or min_size rounded up to lots."""
        return max(self.lot_size, round_to_lot(self.min_size, self.lot_size, "up"))


def lot_rules(multiplier: float | str | None, details: _Details | None = None) -> LotRules:
    """The rules of a contract (its ``multiplier``, "" or None meaning 1) and its details."""
    try:
        mult = float(multiplier or 1)
    except (TypeError, ValueError):
        raise BadOrder(f"multiplier must be a number, got {multiplier!r}") from None
    lot = float(details.sizeIncrement or 1) if details is not None else 1.0
    minimum = float(details.minSize or 0) if details is not None else 0.0
    return LotRules(mult if mult > 0 else 1.0, lot if lot > 0 else 1.0, max(minimum, 0.0))


def _decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


def round_to_lot(quantity: float, lot_size: float, mode: str = "down") -> float:
    """``quantity`` as a whole number of lots: ``down`` (floor), ``up`` (ceil) or ``nearest``;
    exact decimals for fractional lots (0.3, not 0.30000000000000004)."""
    if not (math.isfinite(lot_size) and lot_size > 0):
        raise BadOrder(f"lot_size must be a positive number, got {lot_size!r}")
    lots = quantity / lot_size
    match mode:
        case "down":
            count = math.floor(lots + _EPS)
        case "up":
            count = math.ceil(lots - _EPS)
        case "nearest":
            count = math.floor(lots + 0.5)
        case _:
            raise ValueError(f"mode must be down, up or nearest; got {mode!r}")
    return round(count * lot_size, _decimals(lot_size))


def is_lot_multiple(quantity: float, lot_size: float) -> bool:
    lots = quantity / lot_size
    return abs(lots - round(lots)) <= 1e-9 * max(1.0, abs(lots))


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and 0 < value < 1e300


def sizing_price(
    action: str,
    *,
    bid: float | None = None,
    ask: float | None = None,
    last: float | None = None,
    limit_price: float | None = None,
    stop_price: float | None = None,
) -> float:
    """The price to size a cash amount at: the order's limit, else its stop, else the touch it
    takes (ask for BUY, bid for SELL), else the mid, else the last trade, else the other side;
    BadOrder if none."""
    buy = action.upper() == "BUY"
    touch, far = (ask, bid) if buy else (bid, ask)
    mid = (bid + ask) / 2 if bid is not None and ask is not None and _usable(bid) and _usable(ask) else None
    for value in (limit_price, stop_price, touch, mid, last, far):
        if value is not None and _usable(value):
            return float(value)
    raise BadOrder(f"no usable price to size the order (bid {bid!r}, ask {ask!r}, last {last!r})")


def quantity_for_cash(
    cash: float,
    price: float,
    multiplier: float = 1.0,
    lot_size: float = 1.0,
    *,
    min_size: float = 0.0,
    symbol: str = "",
) -> float:
    """The whole lots ``cash`` buys at ``price`` (x ``multiplier``); BadOrder naming the numbers
    when that is less than one lot (or ``min_size``)."""
    rules = LotRules(multiplier, lot_size, min_size)
    if isinstance(cash, bool) or not (math.isfinite(cash) and cash > 0):
        raise BadOrder(f"cash_amount must be a positive number, got {cash!r}")
    if not _usable(price):
        raise BadOrder(f"no usable price to size cash_amount {cash:g} (got {price!r})")
    unit_value = price * rules.multiplier
    raw = cash / unit_value
    quantity = round_to_lot(raw, rules.lot_size, "down")
    smallest = rules.smallest
    if quantity < smallest - _EPS:
        what = f" of {symbol}" if symbol else ""
        need = smallest * unit_value
        unit = "lot" if smallest == rules.lot_size else "order (the minimum size)"
        raise BadOrder(
            f"cash_amount {cash:g} buys {raw:.6g} units{what} at {price:g} x {rules.multiplier:g}, "
            f"less than one {unit} of {smallest:g} (needs at least {need:.2f})"
        )
    return quantity


def quantity_for_cash_with(cash: float, price: float, rules: LotRules, *, symbol: str = "") -> float:
    """:func:`quantity_for_cash` with an instrument's :class:`LotRules`."""
    return quantity_for_cash(
        cash, price, rules.multiplier, rules.lot_size, min_size=rules.min_size, symbol=symbol
    )
