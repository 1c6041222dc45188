"""The runtime's view of one strategy's orders and position, pure.

Fills and order updates come on separate event topics, in either order (the trader publishes a
fill only once journaled, so an order can be reported Filled before its last fill arrives). What an
order may still do to the position is therefore computed from both: executed = the last record's
``filled`` (the executions listed in its ``exec_ids``) plus the fills seen that it does not list
yet; pending = what may still execute plus what executed but was not seen as a fill. The position
only moves with fills, so ``position + pending`` is right whichever arrives first, and an order
reported done stays counted ("settling") until its fills are in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from trader.strategy.targets import EPS

DONE_STATES: Final = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected"})
"""The book's states of orders that no longer work (trader/book/states.py)."""


def is_working(record: Mapping[str, Any]) -> bool:
    working = record.get("working")
    if working is not None:
        return bool(working)
    return str(record.get("state", "")) not in DONE_STATES


def signed_fill_quantity(fill: Mapping[str, Any]) -> float:
    """The fill's signed quantity: ``quantity`` when given, else ``shares`` with ``side`` (BOT/SLD)
    or ``action`` (BUY/SELL)."""
    quantity = fill.get("quantity")
    if quantity is not None:
        return float(quantity)
    shares = abs(float(fill.get("shares") or 0.0))
    side = str(fill.get("side") or fill.get("action") or "").upper()
    if side in ("BOT", "BUY"):
        return shares
    if side in ("SLD", "SELL"):
        return -shares
    raise ValueError(f"fill {fill.get('exec_id')!r} has neither a signed quantity nor a side")


class BoundedSet:
    """The last ``maxlen`` keys added (a set with FIFO eviction)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.maxlen = maxlen
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.maxlen:
            self._keys.popitem(last=False)

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class TrackedOrder:
    """An order of a strategy that may still change its position: working (placed by this runtime,
    ``record`` None until the trader's first order event, or learnt from the trader), or done with
    executions whose fill events have not arrived yet ("settling")."""

    client_order_id: str
    symbol: str
    action: str
    quantity: float
    record: dict[str, Any] | None = None
    record_filled: float = 0.0
    record_exec_ids: frozenset[str] = frozenset()
    own_fills: dict[str, float] = field(default_factory=dict)
    """Shares of the fills seen for this order (and counted in the position), by exec id."""
    base_filled: float = 0.0
    """Shares already in the position when it was restored (its record's ``filled`` then)."""
    working: bool = True
    cancel_requested: bool = False

    @property
    def sign(self) -> float:
        return 1.0 if self.action == "BUY" else -1.0

    @property
    def filled(self) -> float:
        """Executed so far: the record's fills plus those seen that it does not list yet."""
        extra = sum(q for e, q in self.own_fills.items() if e not in self.record_exec_ids)
        return self.record_filled + extra

    @property
    def remaining(self) -> float:
        """What may still execute (0 once done)."""
        left = self.quantity - self.filled
        return left if self.working and left > EPS else 0.0

    @property
    def pending(self) -> float:
        """What may still change the position: the remaining plus executions whose fills have not
        come yet (the order record said so first)."""
        in_flight = self.filled - self.base_filled - sum(self.own_fills.values())
        return self.remaining + (in_flight if in_flight > EPS else 0.0)

    @property
    def signed_pending(self) -> float:
        return self.sign * self.pending

    def update(self, record: Mapping[str, Any]) -> None:
        self.record = dict(record)
        self.symbol = str(record.get("symbol") or self.symbol)
        self.action = str(record.get("action") or self.action).upper()
        quantity = record.get("quantity")
        if quantity is not None:
            self.quantity = float(quantity)
        self.record_filled = float(record.get("filled") or 0.0)
        self.record_exec_ids = frozenset(record.get("exec_ids") or ())
        self.working = is_working(record)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, restored: bool = False) -> TrackedOrder:
        """From an order record; ``restored``: its fills so far are already in the position."""
        quantity = record.get("quantity")
        if quantity is None:  # an order known only through its fills: what it may still do
            quantity = float(record.get("filled") or 0.0) + float(record.get("remaining") or 0.0)
        order = cls(
            client_order_id=str(record["client_order_id"]),
            symbol=str(record.get("symbol") or ""),
            action=str(record.get("action") or "BUY").upper(),
            quantity=float(quantity),
        )
        order.update(record)
        if restored:
            order.base_filled = order.record_filled
        return order

    def view(self) -> dict[str, Any]:
        """What ``Strategy.working_orders`` returns for it."""
        base = dict(self.record) if self.record is not None else {"state": "Initialized", "filled": 0.0}
        return base | {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "action": self.action,
            "quantity": self.quantity,
            "filled": self.filled,
            "remaining": self.remaining,
            "cancel_requested": self.cancel_requested,
            "acknowledged": self.record is not None,
        }
