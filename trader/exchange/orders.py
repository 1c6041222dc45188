"""Orders: the request model (TWS field names), validation with TWS codes, and working-order state.

Unset prices are ``None``; TWS's "unset" double (``sys.float_info.max``) is accepted as unset too,
so the protocol layer may pass decoded values through. Supported: MKT, LMT, STP, STP LMT, TRAIL
(``auxPrice`` amount or ``trailingPercent``, optional initial ``trailStopPrice``), TRAIL LIMIT
(``lmtPriceOffset``), MOC and LOC (stocks, filled at the regular session's close); TIF DAY, GTC, IOC.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from trader.exchange.instruments import Instrument

ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT", "MOC", "LOC"})
LIMIT_TYPES = frozenset({"LMT", "STP LMT", "LOC"})
STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL", "TRAIL LIMIT"})
TRAIL_TYPES = frozenset({"TRAIL", "TRAIL LIMIT"})
AUCTION_TYPES = frozenset({"MOC", "LOC"})
MARKET_TYPES = frozenset({"MKT", "STP", "TRAIL", "MOC"})
TIFS = frozenset({"DAY", "GTC", "IOC"})
ACTIONS = frozenset({"BUY", "SELL"})

PENDING_SUBMIT = "PendingSubmit"
PENDING_CANCEL = "PendingCancel"
PRE_SUBMITTED = "PreSubmitted"
SUBMITTED = "Submitted"
FILLED = "Filled"
CANCELLED = "Cancelled"
INACTIVE = "Inactive"
DONE_STATES = frozenset({FILLED, CANCELLED, INACTIVE})

_UNSET_THRESHOLD = 1e300


def is_set(value: float | None) -> bool:
    """A price field carries a value (not None, not TWS's unset double, not NaN)."""
    return value is not None and not math.isnan(value) and abs(value) < _UNSET_THRESHOLD


def value_of(value: float | None) -> float:
    """The value of a set field (0.0 when unset)."""
    return float(value) if value is not None and is_set(value) else 0.0


@dataclass(frozen=True, slots=True)
class Order:
    """An order as placed by a client, keyed by (clientId, orderId). ``permId`` is assigned."""

    orderId: int
    clientId: int
    conId: int
    action: str
    totalQuantity: float
    orderType: str = "LMT"
    lmtPrice: float | None = None
    auxPrice: float | None = None
    tif: str = "DAY"
    outsideRth: bool = False
    parentId: int = 0
    transmit: bool = True
    ocaGroup: str = ""
    ocaType: int = 0
    trailingPercent: float | None = None
    trailStopPrice: float | None = None
    lmtPriceOffset: float | None = None
    orderRef: str = ""
    account: str = ""
    whatIf: bool = False
    permId: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.clientId, self.orderId)

    @property
    def sign(self) -> int:
        return 1 if self.action == "BUY" else -1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# -- TWS errors ---------------------------------------------------------------------------------

Problem = tuple[int, str]

NO_SECURITY = (200, "No security definition has been found for the request")
DUPLICATE_ID = (103, "Duplicate order id")
MODIFY_FILLED = (104, "Can't modify a filled order.")
MODIFY_MISMATCH = (105, "Order being modified does not match original order.")
BAD_TICK = (110, "The price does not conform to the minimum price variation for this contract.")
UNSUPPORTED_TYPE = (387, "Unsupported order type for this exchange and security type.")
ZERO_SIZE = (434, "The order size cannot be zero.")
CANCELLED_NOTICE = (202, "Order Canceled - reason:")
OUTSIDE_RTH_IGNORED = (
    2109,
    "Order Event Warning:Attribute 'Outside Regular Trading Hours' is ignored based on the order type and "
    "destination. PlaceOrder is now being processed.",
)


def rejected(reason: str) -> Problem:
    return (201, f"Order rejected - reason:{reason}")


def invalid(cause: str) -> Problem:
    return (321, f"Error validating request.-'bN' : cause - {cause}")


def cancel_not_found(order_id: int) -> Problem:
    return (10147, f"OrderId {order_id} that needs to be cancelled is not found.")


def cancel_wrong_state(order_id: int, state: str) -> Problem:
    return (10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.")


def held_until_notice(order: Order, inst: Instrument, when: str) -> Problem:
    text = (
        f"Order Message:\n{order.action} {order.totalQuantity:g} {inst.localSymbol} {inst.exchange}\n"
        f"Warning: your order will not be placed at the exchange until {when}"
    )
    return (399, text)


def validate(order: Order, inst: Instrument | None) -> Problem | None:
    """The first problem TWS would report for a new order, or None. Margin is checked elsewhere."""
    if inst is None or inst.conId != order.conId:
        return NO_SECURITY
    if order.action not in ACTIONS:
        return invalid(f"Invalid action {order.action!r} (BUY or SELL)")
    if order.orderType not in ORDER_TYPES:
        return UNSUPPORTED_TYPE
    if order.orderType in AUCTION_TYPES and inst.secType != "STK":
        return UNSUPPORTED_TYPE
    if order.tif not in TIFS:
        return invalid(f"Invalid time in force {order.tif!r} (DAY, GTC or IOC)")
    if order.ocaType not in (0, 1, 2, 3):
        return invalid(f"Invalid OCA type {order.ocaType}")
    qty = order.totalQuantity
    if not math.isfinite(qty) or qty <= 0:
        return ZERO_SIZE
    increments = qty / inst.sizeIncrement
    if abs(increments - round(increments)) > 1e-9:
        return rejected(f"The order size must be a multiple of {inst.sizeIncrement:g}.")
    return _validate_prices(order, inst)


def _validate_prices(order: Order, inst: Instrument) -> Problem | None:
    kind = order.orderType
    if kind in LIMIT_TYPES and not (is_set(order.lmtPrice) and value_of(order.lmtPrice) > 0):
        return invalid("The limit price is missing or not positive")
    if kind in ("STP", "STP LMT") and not (is_set(order.auxPrice) and value_of(order.auxPrice) > 0):
        return invalid("The stop price (auxPrice) is missing or not positive")
    if kind in TRAIL_TYPES:
        amount, percent = is_set(order.auxPrice), is_set(order.trailingPercent)
        if amount == percent:
            return invalid("A trailing order needs exactly one of auxPrice (amount) and trailingPercent")
        if amount and value_of(order.auxPrice) <= 0:
            return invalid("The trailing amount must be positive")
        if percent and not 0 < value_of(order.trailingPercent) < 100:
            return invalid("The trailing percent must be between 0 and 100")
        if kind == "TRAIL LIMIT" and not (
            is_set(order.lmtPriceOffset) and value_of(order.lmtPriceOffset) >= 0
        ):
            return invalid("A TRAIL LIMIT order needs lmtPriceOffset")
        if is_set(order.trailStopPrice) and value_of(order.trailStopPrice) <= 0:
            return invalid("The trail stop price must be positive")
    prices: list[float | None] = []
    if kind in LIMIT_TYPES:
        prices.append(order.lmtPrice)
    if kind in ("STP", "STP LMT") or (kind in TRAIL_TYPES and is_set(order.auxPrice)):
        prices.append(order.auxPrice)
    if kind in TRAIL_TYPES:
        prices += [order.trailStopPrice, order.lmtPriceOffset if kind == "TRAIL LIMIT" else None]
    for price in prices:
        if is_set(price) and not inst.on_tick(value_of(price)):
            return BAD_TICK
    return None


def normalize(order: Order, inst: Instrument) -> tuple[Order, Problem | None]:
    """What TWS does to an order before working it: outsideRth is dropped for stock MKT / MOC / LOC
    orders (warning 2109) and auction orders are DAY orders."""
    if order.orderType in ("MKT", "MOC", "LOC") and order.outsideRth and inst.secType == "STK":
        return dataclasses.replace(order, outsideRth=False), OUTSIDE_RTH_IGNORED
    if order.orderType in AUCTION_TYPES and order.tif != "DAY":
        return dataclasses.replace(order, tif="DAY"), None
    return order, None


def initial_stop(order: Order) -> float | None:
    """The stop of a new stop order (a trailing stop without trailStopPrice starts at the market)."""
    if order.orderType in ("STP", "STP LMT"):
        return value_of(order.auxPrice)
    if order.orderType in TRAIL_TYPES and value_of(order.trailStopPrice) > 0:
        return value_of(order.trailStopPrice)
    return None


# -- working state ------------------------------------------------------------------------------


@dataclass(slots=True)
class WorkingOrder:
    """The engine's mutable state of one order."""

    order: Order
    inst: Instrument
    status: str
    created_ns: int
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    cum_value: float = 0.0
    """Sum of fill price x shares (for the commission schedule's per-order caps)."""
    commission: float = 0.0
    transmitted: bool = True
    released: bool = True
    """False while a child waits for its parent to fill."""
    triggered: bool = False
    """Stops: the stop was touched; the order now works as MKT or LMT."""
    stop_price: float | None = None
    """Stops: the current stop (trailing orders move it)."""
    trigger_limit: float | None = None
    """TRAIL LIMIT: the limit price computed at trigger time."""
    rested: bool = False
    """Had a chance to match before: a later match fills at the limit, not at the touch."""
    expiry_ns: int | None = None
    auction_ns: int | None = None
    why_held: str = ""
    done_ns: int | None = None

    @property
    def remaining(self) -> float:
        return max(0.0, self.order.totalQuantity - self.filled)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATES

    @property
    def key(self) -> tuple[int, int]:
        return self.order.key

    def update_trigger(self, last: float) -> bool:
        """Move a trailing stop with the last price and tell whether the stop is touched (then the
        order is triggered: TRAIL LIMIT gets its limit, stop +/- lmtPriceOffset)."""
        order, inst = self.order, self.inst
        buy = order.action == "BUY"
        if order.orderType in TRAIL_TYPES:
            amount = value_of(order.auxPrice) or last * value_of(order.trailingPercent) / 100.0
            candidate = (
                inst.round_price(last + amount, "up") if buy else inst.round_price(last - amount, "down")
            )
            if self.stop_price is None:
                self.stop_price = candidate
            elif not (last >= self.stop_price if buy else last <= self.stop_price):
                self.stop_price = min(self.stop_price, candidate) if buy else max(self.stop_price, candidate)
        stop = self.stop_price
        if stop is None or not (last >= stop - 1e-9 if buy else last <= stop + 1e-9):
            return False
        self.triggered = True
        if order.orderType == "TRAIL LIMIT":
            offset = value_of(order.lmtPriceOffset)
            self.trigger_limit = inst.round_price(stop + offset if buy else stop - offset)
        return True

    def limit_price(self) -> float | None:
        """The limit the order works at now (None: a market order, or a stop not yet triggered)."""
        kind = self.order.orderType
        if kind in ("LMT", "LOC") or (kind == "STP LMT" and self.triggered):
            return value_of(self.order.lmtPrice)
        if kind == "TRAIL LIMIT" and self.triggered:
            return self.trigger_limit
        return None

    def to_dict(self) -> dict[str, Any]:
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("order", "inst")
        }
        data["order"] = self.order.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], inst: Instrument) -> WorkingOrder:
        values = {k: v for k, v in data.items() if k not in ("order", "inst")}
        return cls(order=Order.from_dict(data["order"]), inst=inst, **values)
