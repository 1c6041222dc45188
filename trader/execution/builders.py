"""Order builders: checked order terms -> ib_async ``Order`` objects. Pure functions, no I/O.

* :class:`OrderSpec` / :func:`check_spec`: the terms of one order (MKT, LMT, STP, STP LMT, TRAIL
  by amount or percent, TRAIL LIMIT, MOC, LOC) checked and normalised; :class:`BadOrder` names the
  culprit. :func:`build_order` is the one ib_async order of a spec (no bracket).
* :func:`build_legs`: a spec with ``take_profit`` / ``stop_loss`` is a bracket: the parent, a LMT
  take-profit (``<id>.tp``) and a STP stop-loss (``<id>.sl``) on the other side, linked by
  ``parentId`` (IB works a parent's children as one OCA group, reduced as they fill) and sent with
  the transmit chain IB needs: every leg ``transmit=False`` but the last, so nothing is live
  until the whole bracket has arrived.
* :func:`one_cancels_other`: copies of arbitrary orders in one OCA group (``ocaType`` 1: the first
  fill cancels the others).
* :func:`exit_for_position`, :func:`stop_loss_for_position`, :func:`trailing_stop_for_position`:
  an exit order sized to a position, on the opposite side.
* Shortcuts per type (:func:`market`, :func:`limit`, :func:`stop`, :func:`stop_limit`,
  :func:`trailing_stop`, :func:`trailing_stop_limit`, :func:`market_on_close`,
  :func:`limit_on_close`) go through the same checks.

IB fields set (everything else keeps ib_async's defaults, i.e. unset):

=============  ============================================================================
MKT            orderType
LMT            orderType, lmtPrice
STP            orderType, auxPrice (the stop)
STP LMT        orderType, lmtPrice, auxPrice (the stop)
TRAIL          orderType, auxPrice (amount) or trailingPercent; trailStopPrice (optional)
TRAIL LIMIT    as TRAIL plus lmtPriceOffset (the limit = the stop -/+ the offset at trigger)
MOC            orderType "MOC" (tif DAY)
LOC            orderType "LOC", lmtPrice (tif DAY)
=============  ============================================================================

and on every order ``action``, ``totalQuantity``, ``tif``, ``outsideRth``, ``transmit``, plus
``orderId`` / ``orderRef`` / ``account`` / ``ocaGroup`` / ``ocaType`` / ``parentId`` when given.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ib_async import Order

ORDER_TYPES: Final = ("MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT", "MOC", "LOC")
TIFS: Final = ("DAY", "GTC", "IOC", "FOK", "OPG")
TRADED_TIFS: Final = ("DAY", "GTC", "IOC")
"""The time in force the trader service sends (:func:`check_traded`): IB also knows FOK and OPG,
but the paper exchange rejects them (error 321), so Bourse refuses them before they are sent."""
ACTIONS: Final = ("BUY", "SELL")
LIMIT_TYPES: Final = frozenset({"LMT", "STP LMT", "LOC"})
"""Types that need ``limit_price`` (and refuse it otherwise)."""
STOP_TYPES: Final = frozenset({"STP", "STP LMT"})
"""Types that need ``stop_price``."""
TRAIL_TYPES: Final = frozenset({"TRAIL", "TRAIL LIMIT"})
AUCTION_TYPES: Final = frozenset({"MOC", "LOC"})
OCA_TYPES: Final = (1, 2, 3)
"""IB's ocaType: 1 cancel the others (with block), 2 reduce them (with block), 3 reduce (no block)."""
TAKE_PROFIT: Final = ".tp"
STOP_LOSS: Final = ".sl"
"""Suffixes of a bracket's children's client order ids (``<parent>.tp``, ``<parent>.sl``)."""


class BadOrder(ValueError):
    """The order's terms are invalid (the message names the field and the value)."""


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """Order terms; field names are the RPC's (a superset of trader.service.orders.OrderSpec).

    ``trail_stop_price``: a trailing order's initial stop (else IB starts it from the market);
    ``limit_offset``: TRAIL LIMIT's distance between the stop and the limit (IB's lmtPriceOffset).
    """

    action: str
    quantity: float
    order_type: str = "MKT"
    limit_price: float | None = None
    stop_price: float | None = None
    trail_amount: float | None = None
    trail_percent: float | None = None
    trail_stop_price: float | None = None
    limit_offset: float | None = None
    tif: str = "DAY"
    outside_rth: bool = False
    take_profit: float | None = None
    stop_loss: float | None = None

    @property
    def aux_price(self) -> float | None:
        """IB's auxPrice: the stop price (STP, STP LMT) or the trailing amount (TRAIL ...)."""
        return self.stop_price if self.stop_price is not None else self.trail_amount

    @property
    def bracket(self) -> bool:
        return self.take_profit is not None or self.stop_loss is not None

    @property
    def exit_action(self) -> str:
        return opposite(self.action)


def opposite(action: str) -> str:
    """The other side: SELL for BUY, BUY for SELL."""
    return "SELL" if action.upper() == "BUY" else "BUY"


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise BadOrder(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _price(name: str, value: float | None) -> float | None:
    return None if value is None else _positive(name, value)


def _offset(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not (math.isfinite(value) and value >= 0):
        raise BadOrder(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def normal(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` upper-cased with ``_`` as a space (``stp_lmt`` -> ``STP LMT``), one of ``allowed``."""
    text = " ".join(str(value).upper().replace("_", " ").split())
    if text not in allowed:
        raise BadOrder(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return text


def _uses(spec: OrderSpec, name: str, needed: bool) -> None:
    if needed != (getattr(spec, name) is not None):
        raise BadOrder(f"{name} is {'required' if needed else 'not used'} for {spec.order_type}")


def check_spec(raw: OrderSpec) -> OrderSpec:
    """``raw`` checked and normalised (upper case, ``STP_LMT`` -> ``STP LMT``, floats); BadOrder
    for anything IB would refuse or Bourse cannot place."""
    spec = dataclasses.replace(
        raw,
        action=normal("action", raw.action, ACTIONS),
        quantity=_positive("quantity", raw.quantity),
        order_type=normal("order_type", raw.order_type, ORDER_TYPES),
        tif=normal("tif", raw.tif, TIFS),
        limit_price=_price("limit_price", raw.limit_price),
        stop_price=_price("stop_price", raw.stop_price),
        trail_amount=_price("trail_amount", raw.trail_amount),
        trail_percent=_price("trail_percent", raw.trail_percent),
        trail_stop_price=_price("trail_stop_price", raw.trail_stop_price),
        limit_offset=_offset("limit_offset", raw.limit_offset),
        take_profit=_price("take_profit", raw.take_profit),
        stop_loss=_price("stop_loss", raw.stop_loss),
        outside_rth=bool(raw.outside_rth),
    )
    kind = spec.order_type
    _uses(spec, "limit_price", kind in LIMIT_TYPES)
    _uses(spec, "stop_price", kind in STOP_TYPES)
    _uses(spec, "limit_offset", kind == "TRAIL LIMIT")
    if kind in TRAIL_TYPES:
        if (spec.trail_amount is None) == (spec.trail_percent is None):
            raise BadOrder(f"{kind} needs exactly one of trail_amount and trail_percent")
        if spec.trail_percent is not None and spec.trail_percent >= 100:
            raise BadOrder(f"trail_percent must be below 100, got {spec.trail_percent:g}")
    else:
        for name in ("trail_amount", "trail_percent", "trail_stop_price"):
            _uses(spec, name, False)
    if kind in AUCTION_TYPES:
        if spec.tif != "DAY":
            raise BadOrder(f"{kind} orders are DAY orders (at the close); got tif {spec.tif}")
        if spec.outside_rth:
            raise BadOrder(f"outside_rth is not used for {kind}: it fills in the closing auction")
    if kind == "STP LMT" and spec.limit_price is not None and spec.stop_price is not None:
        up = spec.action == "BUY"  # a buy stop-limit caps at or above its stop, a sell floors below
        if (spec.limit_price < spec.stop_price) if up else (spec.limit_price > spec.stop_price):
            side = "at or above" if up else "at or below"
            raise BadOrder(
                f"limit_price {spec.limit_price:g} must be {side} stop_price {spec.stop_price:g} "
                f"for a {spec.action} STP LMT (it could never fill once triggered)"
            )
    if spec.bracket:
        _check_bracket(spec)
    return spec


def _check_bracket(spec: OrderSpec) -> None:
    if spec.tif in ("IOC", "FOK"):
        raise BadOrder(f"a bracket's parent cannot be {spec.tif}: its children would never activate")
    if spec.order_type in AUCTION_TYPES:
        raise BadOrder(f"a bracket's parent cannot be {spec.order_type}: it fills after the session")
    up = 1.0 if spec.action == "BUY" else -1.0  # a BUY takes profit above, stops out below
    tp, sl, entry = spec.take_profit, spec.stop_loss, spec.limit_price
    if tp is not None and sl is not None and (tp - sl) * up <= 0:
        side = "above" if up > 0 else "below"
        raise BadOrder(f"take_profit {tp:g} must be {side} stop_loss {sl:g} for a {spec.action} bracket")
    if entry is not None and tp is not None and (tp - entry) * up <= 0:
        raise BadOrder(f"take_profit {tp:g} is on the wrong side of limit_price {entry:g} for {spec.action}")
    if entry is not None and sl is not None and (entry - sl) * up <= 0:
        raise BadOrder(f"stop_loss {sl:g} is on the wrong side of limit_price {entry:g} for {spec.action}")


def check_traded(spec: OrderSpec) -> OrderSpec:
    """``spec`` (already checked) if the trader service can send it: tif DAY, GTC or IOC; BadOrder
    naming the tif otherwise (FOK / OPG are valid at IB but the paper exchange rejects them)."""
    if spec.tif not in TRADED_TIFS:
        hint = (
            "use IOC (fills what it can at once)"
            if spec.tif == "FOK"
            else "use a DAY order placed at the open"
        )
        raise BadOrder(
            f"tif {spec.tif} is not supported by Bourse: the paper exchange works DAY, GTC and IOC "
            f"only (IB error 321 for {spec.tif}); {hint}"
        )
    return spec


# -- one order ------------------------------------------------------------------------------------


def build_order(
    spec: OrderSpec,
    *,
    order_id: int = 0,
    order_ref: str = "",
    account: str = "",
    transmit: bool = True,
    check: bool = True,
) -> Order:
    """The ib_async order of ``spec`` alone (its bracket terms, if any, are :func:`build_legs`'s).

    ``check`` runs :func:`check_spec` first (pass False for a spec already checked)."""
    if check:
        spec = check_spec(spec)
    order = Order(
        action=spec.action,
        totalQuantity=spec.quantity,
        orderType=spec.order_type,
        tif=spec.tif,
        outsideRth=spec.outside_rth,
        transmit=transmit,
    )
    if spec.limit_price is not None:
        order.lmtPrice = spec.limit_price
    if spec.stop_price is not None:
        order.auxPrice = spec.stop_price
    if spec.trail_amount is not None:
        order.auxPrice = spec.trail_amount
    if spec.trail_percent is not None:
        order.trailingPercent = spec.trail_percent
    if spec.trail_stop_price is not None:
        order.trailStopPrice = spec.trail_stop_price
    if spec.limit_offset is not None:
        order.lmtPriceOffset = spec.limit_offset
    if order_id:
        order.orderId = order_id
    if order_ref:
        order.orderRef = order_ref
    if account:
        order.account = account
    return order


def market(action: str, quantity: float, *, tif: str = "DAY", outside_rth: bool = False) -> Order:
    return build_order(OrderSpec(action, quantity, "MKT", tif=tif, outside_rth=outside_rth))


def limit(
    action: str, quantity: float, limit_price: float, *, tif: str = "DAY", outside_rth: bool = False
) -> Order:
    spec = OrderSpec(action, quantity, "LMT", limit_price=limit_price, tif=tif, outside_rth=outside_rth)
    return build_order(spec)


def stop(
    action: str, quantity: float, stop_price: float, *, tif: str = "DAY", outside_rth: bool = False
) -> Order:
    spec = OrderSpec(action, quantity, "STP", stop_price=stop_price, tif=tif, outside_rth=outside_rth)
    return build_order(spec)


def stop_limit(
    action: str,
    quantity: float,
    stop_price: float,
    limit_price: float,
    *,
    tif: str = "DAY",
    outside_rth: bool = False,
) -> Order:
    spec = OrderSpec(
        action,
        quantity,
        "STP LMT",
        limit_price=limit_price,
        stop_price=stop_price,
        tif=tif,
        outside_rth=outside_rth,
    )
    return build_order(spec)


def trailing_stop(
    action: str,
    quantity: float,
    *,
    amount: float | None = None,
    percent: float | None = None,
    stop_price: float | None = None,
    tif: str = "DAY",
    outside_rth: bool = False,
) -> Order:
    """TRAIL by ``amount`` (auxPrice) or ``percent`` (trailingPercent); ``stop_price`` the initial stop."""
    spec = OrderSpec(
        action,
        quantity,
        "TRAIL",
        trail_amount=amount,
        trail_percent=percent,
        trail_stop_price=stop_price,
        tif=tif,
        outside_rth=outside_rth,
    )
    return build_order(spec)


def trailing_stop_limit(
    action: str,
    quantity: float,
    *,
    limit_offset: float,
    amount: float | None = None,
    percent: float | None = None,
    stop_price: float | None = None,
    tif: str = "DAY",
    outside_rth: bool = False,
) -> Order:
    """TRAIL LIMIT: a trailing stop that becomes a limit ``limit_offset`` beyond the stop when hit."""
    spec = OrderSpec(
        action,
        quantity,
        "TRAIL LIMIT",
        trail_amount=amount,
        trail_percent=percent,
        trail_stop_price=stop_price,
        limit_offset=limit_offset,
        tif=tif,
        outside_rth=outside_rth,
    )
    return build_order(spec)


def market_on_close(action: str, quantity: float) -> Order:
    return build_order(OrderSpec(action, quantity, "MOC"))


def limit_on_close(action: str, quantity: float, limit_price: float) -> Order:
    return build_order(OrderSpec(action, quantity, "LOC", limit_price=limit_price))


# -- brackets -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One ib_async order to place: the parent (``suffix`` "") or a bracket child."""

    suffix: str
    order: Order

    @property
    def action(self) -> str:
        return str(self.order.action)


def build_legs(
    spec: OrderSpec,
    order_ref: Callable[[str], str],
    next_id: Callable[[], int],
    account: str = "",
    *,
    check: bool = True,
) -> list[Leg]:
    """The orders to place, in this order: the parent, then the take-profit, then the stop-loss.

    ``order_ref(suffix)`` gives each leg's orderRef; ``next_id()`` a fresh IB order id (the
    children carry the parent's as ``parentId``). Every leg but the last has ``transmit=False``:
    IB holds them until the last arrives, then activates the bracket as a whole. The children
    keep the parent's tif (DAY for an OPG parent: they work after the open)."""
    if check:
        spec = check_spec(spec)
    parent = build_order(spec, order_id=next_id(), order_ref=order_ref(""), account=account, check=False)
    legs = [Leg("", parent)]
    exit_tif = "DAY" if spec.tif == "OPG" else spec.tif
    children: list[tuple[str, OrderSpec]] = []
    if spec.take_profit is not None:
        tp = OrderSpec(spec.exit_action, spec.quantity, "LMT", limit_price=spec.take_profit, tif=exit_tif)
        children.append((TAKE_PROFIT, tp))
    if spec.stop_loss is not None:
        sl = OrderSpec(spec.exit_action, spec.quantity, "STP", stop_price=spec.stop_loss, tif=exit_tif)
        children.append((STOP_LOSS, sl))
    for suffix, child_spec in children:
        child = build_order(
            dataclasses.replace(child_spec, outside_rth=spec.outside_rth),
            order_id=next_id(),
            order_ref=order_ref(suffix),
            account=account,
            check=False,
        )
        child.parentId = parent.orderId
        legs.append(Leg(suffix, child))
    for i, leg in enumerate(legs):
        leg.order.transmit = i == len(legs) - 1
    return legs


def bracket(
    action: str,
    quantity: float,
    *,
    entry_type: str = "LMT",
    entry_price: float | None = None,
    take_profit: float | None = None,
    stop_loss: float | None = None,
    next_id: Callable[[], int],
    tif: str = "DAY",
    outside_rth: bool = False,
) -> list[Order]:
    """Entry + take-profit + stop-loss (either exit may be left out) as :func:`build_legs` builds
    them; ``entry_price`` is the entry's limit (LMT) or stop (STP)."""
    kind = normal("entry_type", entry_type, ("MKT", "LMT", "STP"))
    spec = OrderSpec(
        action,
        quantity,
        kind,
        limit_price=entry_price if kind == "LMT" else None,
        stop_price=entry_price if kind == "STP" else None,
        tif=tif,
        outside_rth=outside_rth,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    if not spec.bracket:
        raise BadOrder("a bracket needs take_profit and/or stop_loss")
    return [leg.order for leg in build_legs(spec, lambda _: "", next_id)]


# -- OCA ------------------------------------------------------------------------------------------


def one_cancels_other(orders: Sequence[Order], group: str, oca_type: int = 1) -> list[Order]:
    """Copies of ``orders`` in OCA group ``group`` (``ocaType`` 1: when one fills, IB cancels the
    rest). Each is sent on its own (``transmit`` True); bracket children are refused (their
    parent already makes them one group)."""
    if len(orders) < 2:
        raise BadOrder(f"one-cancels-other needs at least 2 orders, got {len(orders)}")
    if not group or any(c.isspace() for c in group):
        raise BadOrder(f"oca group must be a non-empty name without whitespace, got {group!r}")
    if oca_type not in OCA_TYPES:
        raise BadOrder(f"oca_type must be one of 1, 2, 3; got {oca_type!r}")
    result: list[Order] = []
    for i, order in enumerate(orders):
        if order.ocaGroup and order.ocaGroup != group:
            raise BadOrder(f"order {i} is already in OCA group {order.ocaGroup!r}")
        if order.parentId:
            raise BadOrder(
                f"order {i} is a bracket child (parentId {order.parentId}): already one-cancels-other"
            )
        new = copy.copy(order)
        new.ocaGroup = group
        new.ocaType = oca_type
        new.transmit = True
        result.append(new)
    return result


# -- exits attached to a position -----------------------------------------------------------------


def _position(position: float) -> tuple[str, float]:
    if not math.isfinite(position) or abs(position) < 1e-12:
        raise BadOrder(f"no position to protect (position {position!r})")
    return ("SELL" if position > 0 else "BUY"), abs(float(position))


def exit_for_position(position: float, spec: OrderSpec, *, mark: float | None = None) -> Order:
    """An exit order of ``position`` (signed): ``spec``'s type and prices, its side and size
    replaced by the opposite side and the position's size. With ``mark`` (the current price) a
    stop is checked to be on the protective side (below a long's market, above a short's)."""
    action, quantity = _position(position)
    if spec.bracket:
        raise BadOrder("an exit order cannot itself be a bracket")
    checked = check_spec(dataclasses.replace(spec, action=action, quantity=quantity))
    trigger = checked.stop_price if checked.stop_price is not None else checked.trail_stop_price
    if mark is not None and trigger is not None:
        _positive("mark", mark)
        if (trigger >= mark) if position > 0 else (trigger <= mark):
            where = "below" if position > 0 else "above"
            side = "long" if position > 0 else "short"
            raise BadOrder(
                f"the stop {trigger:g} of a {side} {quantity:g} must be {where} the market {mark:g}: "
                "it would trigger at once"
            )
    return build_order(checked, check=False)


def stop_loss_for_position(
    position: float,
    stop_price: float,
    *,
    limit_price: float | None = None,
    mark: float | None = None,
    tif: str = "GTC",
    outside_rth: bool = False,
) -> Order:
    """A STP (or STP LMT with ``limit_price``) closing ``position``; GTC by default."""
    kind = "STP" if limit_price is None else "STP LMT"
    spec = OrderSpec(
        "SELL", 1, kind, limit_price=limit_price, stop_price=stop_price, tif=tif, outside_rth=outside_rth
    )
    return exit_for_position(position, spec, mark=mark)


def trailing_stop_for_position(
    position: float,
    *,
    amount: float | None = None,
    percent: float | None = None,
    stop_price: float | None = None,
    limit_offset: float | None = None,
    mark: float | None = None,
    tif: str = "GTC",
    outside_rth: bool = False,
) -> Order:
    """A TRAIL (or TRAIL LIMIT with ``limit_offset``) closing ``position``; GTC by default."""
    kind = "TRAIL" if limit_offset is None else "TRAIL LIMIT"
    spec = OrderSpec(
        "SELL",
        1,
        kind,
        trail_amount=amount,
        trail_percent=percent,
        trail_stop_price=stop_price,
        limit_offset=limit_offset,
        tif=tif,
        outside_rth=outside_rth,
    )
    return exit_for_position(position, spec, mark=mark)
