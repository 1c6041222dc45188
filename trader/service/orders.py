"""Orders between the RPC, the book and IB: checking, building, placing, cancelling, modifying.

Order terms and IB orders are :mod:`trader.execution.builders`' (one :class:`BadOrder`, mapped to
the RPC's ``bad_order``); this module adds what the trader service needs around them:

* :func:`check_spec` is the builders' check plus :func:`~trader.execution.builders.check_traded`
  (tif DAY, GTC or IOC: FOK / OPG are refused before they reach the paper exchange, which rejects
  them); :func:`quantity_for_cash` sizes a cash amount (:mod:`trader.execution.sizing`, whole lots).
* :func:`build_legs` (the builders'): one order, or a bracket (the parent, then a take-profit LMT
  and/or a stop-loss STP on the other side, ``transmit`` on the last leg only);
  :func:`order_requests` are the book's requests of the same legs (``<id>.tp``, ``<id>.sl``).
* :func:`modified` is a copy of a working ib_async order with new terms.
* :class:`OrderDesk` places (idempotent on the client order id, through the risk gate, in an OCA
  group when asked), cancels and modifies for the trader app; :class:`TraderError` carries the RPC
  error code. It sizes cash amounts with the instrument's lot rules (contract details, cached).

Execution algorithms run in :mod:`trader.service.algo_runner`; their children come through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ib_async import IB, Contract, Order, Trade
from ib_async.util import UNSET_DOUBLE

from trader.book import (
    BookConflict,
    CancelRequested,
    InvalidTransition,
    OrderDenied,
    OrderRequest,
    OrderState,
    OrderSubmitted,
    build_order_ref,
)
from trader.book import Order as BookOrder
from trader.execution import builders, sizing
from trader.execution.builders import (
    ACTIONS,
    ORDER_TYPES,
    STOP_LOSS,
    TAKE_PROFIT,
    TRADED_TIFS,
    TRAIL_TYPES,
    BadOrder,
    Leg,
    OrderSpec,
    build_legs,
)
from trader.execution.sizing import LotRules
from trader.ib.errors import NotConnected
from trader.risk import NOT_CONNECTED, OrderIntent
from trader.service.mapping import multiplier_of, symbol_of

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service.orders")

TIFS: Final = TRADED_TIFS
RISK_PRICE_TIMEOUT_S: Final = 2.0
LOT_RULES_TIMEOUT_S: Final = 5.0
FRACTIONAL_LOT: Final = 1e-8
"""The lot of a fractional quantity (FX without contract details)."""

__all__ = [
    "ACTIONS",
    "ORDER_TYPES",
    "STOP_LOSS",
    "TAKE_PROFIT",
    "TIFS",
    "BadOrder",
    "Leg",
    "OrderSpec",
    "build_legs",
    "check_spec",
    "quantity_for_cash",
]


def check_spec(raw: OrderSpec) -> OrderSpec:
    """``raw`` checked and normalised by the builders (``STP_LMT`` -> ``STP LMT``), and sendable by
    the trader (tif DAY, GTC or IOC); :class:`BadOrder` naming the culprit."""
    return builders.check_traded(builders.check_spec(raw))


def quantity_for_cash(
    cash: float,
    price: float,
    multiplier: float = 1.0,
    *,
    fractional: bool = False,
    lot_size: float = 1.0,
    min_size: float = 0.0,
    symbol: str = "",
) -> float:
    """The whole lots ``cash`` buys at ``price`` x ``multiplier`` (:mod:`trader.execution.sizing`);
    ``fractional``: any quantity (lot 1e-8). BadOrder (with the numbers) under one lot."""
    lot = FRACTIONAL_LOT if fractional else lot_size
    return sizing.quantity_for_cash(cash, price, multiplier, lot, min_size=min_size, symbol=symbol)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise BadOrder(f"{name} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Modification:
    quantity: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    trail_amount: float | None = None
    trail_percent: float | None = None
    tif: str | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in dataclasses.astuple(self))


def modified(order: Order, change: Modification) -> Order:
    """A copy of ``order`` with the new terms, checked against its type (BadOrder)."""
    if change.empty:
        raise BadOrder("nothing to modify: give quantity, limit_price, stop_price, trail_* or tif")
    kind = str(order.orderType).upper()
    new = copy.copy(order)
    if change.quantity is not None:
        new.totalQuantity = _positive("quantity", change.quantity)
    if change.limit_price is not None:
        if kind not in builders.LIMIT_TYPES:
            raise BadOrder(f"limit_price is not used for {kind}")
        new.lmtPrice = _positive("limit_price", change.limit_price)
    if change.stop_price is not None:
        if kind not in ("STP", "STP LMT"):
            raise BadOrder(f"stop_price is not used for {kind}")
        new.auxPrice = _positive("stop_price", change.stop_price)
    if change.trail_amount is not None or change.trail_percent is not None:
        if kind not in TRAIL_TYPES:
            raise BadOrder(f"trail_amount / trail_percent are not used for {kind}")
        if change.trail_amount is not None and change.trail_percent is not None:
            raise BadOrder("give one of trail_amount and trail_percent")
        if change.trail_amount is not None:
            new.auxPrice = _positive("trail_amount", change.trail_amount)
            new.trailingPercent = UNSET_DOUBLE
        elif change.trail_percent is not None:
            new.trailingPercent = _positive("trail_percent", change.trail_percent)
            new.auxPrice = UNSET_DOUBLE
    if change.tif is not None:
        new.tif = builders.normal("tif", change.tif, TIFS)
    return new


def order_requests(
    strategy: str, client_order_id: str, contract: Contract, spec: OrderSpec, *, account: str, now_ns: int
) -> list[OrderRequest]:
    """The book's requests of an order and its bracket children (same order as :func:`build_legs`)."""
    legs: list[tuple[str, str, str, float | None, float | None]] = [
        ("", spec.action, spec.order_type, spec.limit_price, spec.aux_price)
    ]
    if spec.take_profit is not None:
        legs.append((TAKE_PROFIT, spec.exit_action, "LMT", spec.take_profit, None))
    if spec.stop_loss is not None:
        legs.append((STOP_LOSS, spec.exit_action, "STP", None, spec.stop_loss))
    return [
        OrderRequest(
            strategy,
            client_order_id + suffix,
            int(contract.conId),
            symbol_of(contract),
            "BUY" if action == "BUY" else "SELL",
            spec.quantity,
            now_ns,
            order_type,
            limit,
            aux,
            spec.tif,
            account,
            multiplier_of(contract),
        )
        for suffix, action, order_type, limit, aux in legs
    ]


# -- the order desk: place, cancel, modify --------------------------------------------------------


class TraderError(Exception):
    """A domain error for the RPC caller: ``code`` (``not_connected``, ``refused`` ...) and text."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class PlaceRequest:
    strategy: str
    client_order_id: str
    contract: Contract
    """Qualified (conId set)."""
    spec: OrderSpec
    cash_amount: float | None = None
    """When set, ``spec.quantity`` is ignored: sized from the cash at the limit or market price."""
    account: str = ""
    liquidation: bool = False
    """Sent by the risk engine to close a position (the breaker's flatten): admitted in any trading
    state when it only reduces. Internal only: no RPC param sets it."""
    oca_group: str = ""
    """One-cancels-other: the order joins this IB OCA group (``ocaType`` ``oca_type``)."""
    oca_type: int = 1


@dataclass(frozen=True, slots=True)
class Placed:
    created: bool
    orders: list[BookOrder]
    """The order, then its bracket children."""


class OrderDesk:
    """Orders of the trader app: the gate, the book, then IB (the app's book, session, gate and
    ``apply``). Idempotent on the client order id; nothing is sent while IB is not CONNECTED."""

    def __init__(self, app: TraderApp) -> None:
        self.app = app
        self._placing: dict[str, asyncio.Future[None]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._lots: dict[int, LotRules] = {}

    def notify(self, client_order_id: str) -> None:
        """The order changed: wake its waiters."""
        for future in self._waiters.pop(client_order_id, []):
            if not future.done():
                future.set_result(None)

    def existing(self, strategy: str, client_order_id: str, action: str) -> Placed | None:
        """The order already registered under ``client_order_id`` (a repeat), or None; another
        strategy's or side's order under that id is a ``conflict``."""
        book = self.app.book
        order = book.get(client_order_id)
        if order is None:
            return None
        if order.strategy != strategy or order.action != action.upper():
            what = f"{order.strategy}'s {order.action} {order.symbol}"
            raise TraderError("conflict", f"client order id {client_order_id} is {what}")
        children = [c for c in (book.get(client_order_id + s) for s in (TAKE_PROFIT, STOP_LOSS)) if c]
        return Placed(False, [order, *children])

    async def place(self, request: PlaceRequest) -> Placed:
        """Place once per client order id: a repeat returns the existing order (``created`` False)."""
        coid = request.client_order_id
        while (running := self._placing.get(coid)) is not None:
            await asyncio.shield(running)
        repeat = self.existing(request.strategy, coid, request.spec.action)
        if repeat is not None:
            return repeat
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._placing[coid] = done
        try:
            return await self._place_new(request)
        finally:
            del self._placing[coid]
            done.set_result(None)

    async def _place_new(self, request: PlaceRequest) -> Placed:
        app, spec, contract = self.app, request.spec, request.contract
        if not app.session.connected:  # fail fast, before any pricing
            raise TraderError("not_connected", str(app.gate.connection(app.gate_context())))
        multiplier = multiplier_of(contract)
        if request.cash_amount is not None:
            quantity = await self.size_cash(contract, spec, request.cash_amount)
            spec = dataclasses.replace(spec, quantity=quantity)
        account = request.account or app.session.account
        con_id = int(contract.conId)
        app.risk.note_contract(con_id, str(contract.currency))
        extra = None if request.liquidation else await self.risk_price(contract)
        intent = OrderIntent(
            request.strategy,
            request.client_order_id,
            con_id,
            symbol_of(contract),
            str(contract.secType),
            spec.action,
            spec.quantity,
            spec.order_type,
            spec.limit_price,
            spec.aux_price,
            multiplier,
            str(contract.currency),
            account,
            spec.bracket,
            request.liquidation,
        )
        refusal = app.gate.check(intent, app.gate_context(extra))
        if refusal is not None and refusal.rule == NOT_CONNECTED:
            raise TraderError("not_connected", refusal.reason)
        now = time.time_ns()
        requests = order_requests(
            request.strategy, request.client_order_id, contract, spec, account=account, now_ns=now
        )
        try:
            orders = [app.book.register(r)[0] for r in requests]
        except BookConflict as exc:
            raise TraderError("conflict", str(exc)) from None
        for order in orders:
            app.order_changed(order, None)
        if refusal is not None:
            for order in orders:
                app.apply(OrderDenied(order.client_order_id, str(refusal), now), "gate")
            raise TraderError("refused", str(refusal))
        try:
            ib = app.session.require_connected("order")
            client_id = int(ib.client.clientId)
            legs = build_legs(
                spec,
                lambda suffix: build_order_ref(request.strategy, request.client_order_id + suffix),
                ib.client.getReqId,
                request.account,
            )
            if request.oca_group:
                legs[0].order.ocaGroup, legs[0].order.ocaType = request.oca_group, request.oca_type
            for leg, order in zip(legs, orders, strict=True):
                trade = ib.placeOrder(contract, leg.order)
                submitted = OrderSubmitted(order.client_order_id, int(trade.order.orderId), now, client_id)
                app.apply(submitted, "place")
        except (NotConnected, ConnectionError) as exc:
            for order in orders:
                if order.state is OrderState.INITIALIZED:
                    app.apply(OrderDenied(order.client_order_id, f"not sent: {exc}", now), "place")
            raise TraderError("not_connected", str(exc)) from None
        return Placed(True, [app.book.order(o.client_order_id) for o in orders])

    async def lot_rules(self, contract: Contract) -> LotRules:
        """The instrument's multiplier, lot size (``sizeIncrement``) and minimum size from its
        contract details (asked once per instrument; lot 1 when IB does not answer)."""
        con_id = int(contract.conId)
        rules = self._lots.get(con_id)
        if rules is not None:
            return rules
        details = None
        try:
            found = await asyncio.wait_for(self.app.contracts.details(contract), LOT_RULES_TIMEOUT_S)
            details = found[0] if len(found) == 1 else None
        except Exception as exc:  # no details: lot 1 (not cached: asked again next time)
            log.warning("contract details of %s for its lot size: %s", symbol_of(contract), exc)
        rules = sizing.lot_rules(contract.multiplier, details)
        if details is not None:
            self._lots[con_id] = rules
        return rules

    async def size_cash(self, contract: Contract, spec: OrderSpec, cash: float) -> float:
        """The whole lots ``cash`` buys: at the order's limit (or stop) price, else the market."""
        price = spec.limit_price or spec.stop_price or await self.price(contract)
        rules = await self.lot_rules(contract)
        if contract.secType == "CASH" and int(contract.conId) not in self._lots:  # no details: as before
            rules = LotRules(rules.multiplier, FRACTIONAL_LOT, rules.min_size)
        return sizing.quantity_for_cash_with(cash, price, rules, symbol=symbol_of(contract))

    async def risk_price(self, contract: Contract) -> dict[int, float] | None:
        """A price for the gate when no mark is known (a snapshot, briefly): the amount limits
        refuse an order they cannot value."""
        con_id = int(contract.conId)
        if self.app.gate.engine is None or con_id in self.app.risk.marks():
            return None
        try:
            price = await asyncio.wait_for(self.price(contract), RISK_PRICE_TIMEOUT_S)
        except Exception:  # no price: the gate says so
            return None
        self.app.risk.note_price(con_id, price)
        return {con_id: price}

    async def price(self, contract: Contract) -> float:
        """A price to size a cash amount: the last tick's mid (or trade), else a snapshot."""
        mark = self.app.marks.get(int(contract.conId))
        if mark:
            return mark
        tick = await self.app.md.snapshot(contract, timeout=5.0)
        for value in ((tick.bid + tick.ask) / 2, tick.last):
            if math.isfinite(value) and value > 0:
                return value
        raise BadOrder(f"no price for {symbol_of(contract)} to size a cash amount")

    async def wait(self, client_order_id: str, done: Callable[[BookOrder], bool], within: float) -> BookOrder:
        """The order once ``done(order)`` holds, or as it is after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        order = self.app.book.order(client_order_id)
        while not done(order) and (remaining := deadline - loop.time()) > 0:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(client_order_id, []).append(future)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, remaining)
            order = self.app.book.order(client_order_id)
        return order

    def order(self, client_order_id: str, strategy: str | None = None) -> BookOrder:
        """The book's order (of ``strategy`` when given), else ``unknown_order``."""
        order = self.app.book.get(client_order_id)
        if order is None or (strategy is not None and order.strategy != strategy):
            owner = f" of {strategy}" if strategy else ""
            raise TraderError("unknown_order", f"no order {client_order_id}{owner}")
        return order

    def _connected(self, what: str) -> IB:
        try:
            return self.app.session.require_connected(what)
        except NotConnected as exc:
            raise TraderError("not_connected", str(exc)) from None

    @staticmethod
    def _ib_order(ib: IB, order: BookOrder) -> tuple[Trade | None, Order]:
        """ib_async's trade of one of our orders (IB lets only the placing client change it)."""
        if order.is_external or order.client_id != ib.client.clientId:
            who = "outside Bourse" if order.is_external else f"by client {order.client_id}"
            raise TraderError(
                "refused", f"order {order.client_order_id} was placed {who}: only it can change it"
            )
        trade = ib.wrapper.trades.get((order.client_id, order.order_id))
        if trade is not None:
            return trade, trade.order
        return None, Order(orderId=order.order_id, clientId=order.client_id, permId=order.perm_id)

    def cancel(self, client_order_id: str, strategy: str | None = None) -> BookOrder:
        """Cancel: locally when never sent, else CancelRequested then cancelOrder; ``too_late``
        when it is done (or the book refuses the transition)."""
        app, order = self.app, self.order(client_order_id, strategy)
        if order.state.is_done:
            raise TraderError("too_late", f"order {client_order_id} is already {order.state}")
        now = time.time_ns()
        if order.state is OrderState.INITIALIZED:
            app.apply(CancelRequested(client_order_id, now), "cancel")
            return order
        ib = self._connected("cancel")
        _, ib_order = self._ib_order(ib, order)
        try:
            order.validate(CancelRequested(client_order_id, now))
        except InvalidTransition as exc:
            raise TraderError("too_late", str(exc)) from None
        outcome = app.apply(CancelRequested(client_order_id, now), "cancel")
        pending = OrderState.PENDING_CANCEL
        if outcome is not None and outcome.state is pending and outcome.previous is not pending:
            ib.cancelOrder(ib_order)  # once: a repeated cancel while pending sends nothing
        return order

    def modify(self, client_order_id: str, change: Modification, strategy: str | None = None) -> BookOrder:
        """Send the new terms (placeOrder with the same id); the book takes them from IB's openOrder."""
        order = self.order(client_order_id, strategy)
        if not order.state.is_working or order.state is OrderState.PENDING_CANCEL:
            raise TraderError("too_late", f"order {client_order_id} is {order.state}")
        ib = self._connected("modify")
        trade, _ = self._ib_order(ib, order)
        if trade is None or trade.isDone():
            raise TraderError("too_late", f"order {client_order_id} is not live at IB")
        ib.placeOrder(trade.contract, modified(trade.order, change))
        return order
