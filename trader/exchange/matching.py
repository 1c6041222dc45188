"""The matching engine: orders against the synthetic market, booked into the account.

Plain synchronous code; time is an argument. The session layer calls :meth:`MatchingEngine.place`,
:meth:`~MatchingEngine.cancel`, :meth:`~MatchingEngine.global_cancel` on requests and
:meth:`~MatchingEngine.advance` on a timer (it pulls the due quotes from the market, matches them,
and handles time: RTH open/close, DAY expiry, MOC/LOC at the close). Every call returns the
:mod:`trader.exchange.events` to send, in TWS order.

Fills: market orders (and triggered stops) take the touch (ask for buys, bid for sells); limit
orders fill when the touch crosses the limit - at the touch when marketable on arrival, at the limit
once resting. With ``partial_fills`` (default) one quote gives at most its displayed size, shared
by all orders on that side. Stops and trailing stops trigger on the last trade price. Orders
without ``outsideRth`` only work in regular trading hours (PreSubmitted outside them); nothing
fills outside trading sessions or while the instrument is halted.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from trader.exchange.account import Account
from trader.exchange.commissions import CommissionSchedule
from trader.exchange.events import (
    UNSET_DOUBLE,
    AccountValueEvent,
    CommissionReportEvent,
    ErrorEvent,
    Event,
    ExecutionEvent,
    OrderStatusEvent,
    PositionEvent,
    WhatIfEvent,
    status_event,
)
from trader.exchange.instruments import Instrument, Universe
from trader.exchange.market import Market, Quote
from trader.exchange.orders import (
    AUCTION_TYPES,
    CANCELLED,
    CANCELLED_NOTICE,
    DUPLICATE_ID,
    FILLED,
    INACTIVE,
    MODIFY_FILLED,
    MODIFY_MISMATCH,
    PRE_SUBMITTED,
    STOP_TYPES,
    SUBMITTED,
    Order,
    Problem,
    WorkingOrder,
    cancel_not_found,
    cancel_wrong_state,
    held_until_notice,
    initial_stop,
    normalize,
    rejected,
    validate,
    value_of,
)
from trader.exchange.state import engine_state, restore_engine_state

_EPS = 1e-9
_VENUES = {"NASDAQ": "ISLAND"}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    partial_fills: bool = True
    """Fill at most the displayed size per quote (the rest waits for the next quotes)."""
    check_margin: bool = True
    """Reject (201, Inactive) orders whose initial margin would exceed the equity with loan."""
    completed_kept: int = 1000
    executions_kept: int = 10_000


class MatchingEngine:
    """Orders of all clients of one account, matched against a :class:`Market`."""

    def __init__(
        self,
        universe: Universe,
        market: Market,
        account: Account,
        commissions: CommissionSchedule | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.universe = universe
        self.market = market
        self.account = account
        self.commissions = commissions or CommissionSchedule()
        self.config = config or EngineConfig()
        self._orders: dict[tuple[int, int], WorkingOrder] = {}
        self._working: dict[int, dict[tuple[int, int], WorkingOrder]] = {}
        self._completed: deque[WorkingOrder] = deque()
        self._executions: deque[tuple[ExecutionEvent, CommissionReportEvent]] = deque()
        self._last_quote: dict[int, Quote] = {}
        self._liquidity: dict[int, list[float]] = {}
        self._sent_values: dict[tuple[str, str], str] = {}
        self._next_ids: dict[int, int] = {}
        self.next_perm_id = 1_000_001
        self.exec_seq = 0
        self._exec_prefix = zlib.crc32(account.account_id.encode()) & 0xFFFFFFFF

    # -- public API ------------------------------------------------------------------------------

    def place(self, order: Order, now_ns: int) -> list[Event]:
        """placeOrder: a new order, a modification (same clientId/orderId) or a what-if."""
        self._roll_day(now_ns)
        inst = self.universe.get(order.conId)
        if order.whatIf:
            problem = validate(order, inst)
            if problem is not None:
                return [self._error(order, problem, now_ns)]
            assert inst is not None
            return [self._what_if(order, inst, now_ns)]
        existing = self._orders.get(order.key)
        if existing is not None:
            return self._modify(existing, order, now_ns)
        problem = validate(order, inst)
        parent = self._orders.get((order.clientId, order.parentId)) if order.parentId else None
        if problem is None and order.parentId and (parent is None or parent.status in (CANCELLED, INACTIVE)):
            problem = rejected(f"The parent order {order.parentId} is not working.")
        if problem is not None:
            return [self._error(order, problem, now_ns)]
        assert inst is not None
        events: list[Event] = []
        order, warning = normalize(order, inst)
        if warning:
            events.append(self._error(order, warning, now_ns))
        order = replace(order, permId=self.next_perm_id)
        self.next_perm_id += 1
        self._next_ids[order.clientId] = max(self._next_ids.get(order.clientId, 1), order.orderId + 1)
        wo = WorkingOrder(order, inst, PRE_SUBMITTED, now_ns, transmitted=False)
        wo.released = parent is None or parent.status == FILLED
        wo.stop_price = initial_stop(order)
        self._set_expiry(wo, now_ns)
        self._orders[order.key] = wo
        self._working.setdefault(order.conId, {})[order.key] = wo
        if not order.transmit:
            events.append(self._status(wo, now_ns))
            return events
        events += self._transmit(parent if parent is not None else wo, now_ns, placed=wo)
        return events

    def cancel(self, order_id: int, client_id: int, now_ns: int) -> list[Event]:
        """cancelOrder: Cancelled (+ 202), or 10147 / 10148 when there is nothing to cancel."""
        wo = self._orders.get((client_id, order_id))
        if wo is None:
            return [ErrorEvent(client_id, order_id, *cancel_not_found(order_id), now_ns)]
        if wo.done:
            return [ErrorEvent(client_id, order_id, *cancel_wrong_state(order_id, wo.status), now_ns)]
        return self._cancel(wo, now_ns, notice=True)

    def global_cancel(self, now_ns: int) -> list[Event]:
        """reqGlobalCancel: every working order of every client."""
        events: list[Event] = []
        for wo in [w for orders in self._working.values() for w in orders.values()]:
            if not wo.done:
                events += self._cancel(wo, now_ns, notice=True)
        return events

    def on_quote(self, quote: Quote, now_ns: int) -> list[Event]:
        """Match the working orders of ``quote.conId`` against a new quote."""
        self._last_quote[quote.conId] = quote
        self._liquidity[quote.conId] = [quote.step, quote.time_ns, quote.bidSize, quote.askSize]
        events: list[Event] = []
        for wo in list(self._working.get(quote.conId, {}).values()):
            if not wo.done:
                events += self._match(wo, quote, now_ns, arrival=False)
        return events

    def on_time(self, now_ns: int) -> list[Event]:
        """Time passes: MOC/LOC auctions, DAY expiry, PreSubmitted <-> Submitted at RTH edges."""
        self._roll_day(now_ns)
        events: list[Event] = []
        for wo in [w for orders in self._working.values() for w in orders.values()]:
            if wo.done:
                continue
            if wo.auction_ns is not None and now_ns >= wo.auction_ns and wo.transmitted and wo.released:
                events += self._auction(wo, now_ns)
            elif wo.expiry_ns is not None and now_ns >= wo.expiry_ns:
                events += self._cancel(wo, now_ns, notice=False)
            elif (status := self._status_for(wo, now_ns)) != wo.status:
                wo.status = status
                events.append(self._status(wo, now_ns))
        return events

    def advance(self, now_ns: int) -> tuple[list[Quote], list[Event]]:
        """One turn of the exchange: time events, then the due quotes and their fills."""
        events = self.on_time(now_ns)
        quotes = self.market.advance(now_ns)
        for quote in quotes:
            events += self.on_quote(quote, now_ns)
        return quotes, events

    def next_order_id(self, client_id: int) -> int:
        """nextValidId for a client: above every order id it used."""
        return self._next_ids.get(client_id, 1)

    def open_orders(self, client_id: int | None = None, now_ns: int | None = None) -> list[OrderStatusEvent]:
        """Working orders (of one client, or all), for reqOpenOrders / reqAllOpenOrders."""
        return [
            self._status(w, w.created_ns if now_ns is None else now_ns)
            for orders in self._working.values()
            for w in orders.values()
            if not w.done and (client_id is None or w.order.clientId == client_id)
        ]

    def completed_orders(self, client_id: int | None = None) -> list[OrderStatusEvent]:
        """Recently finished orders, for reqCompletedOrders."""
        return [
            self._status(w, w.done_ns or w.created_ns)
            for w in self._completed
            if client_id is None or w.order.clientId == client_id
        ]

    def order(self, client_id: int, order_id: int) -> OrderStatusEvent | None:
        wo = self._orders.get((client_id, order_id))
        return None if wo is None else self._status(wo, wo.done_ns or wo.created_ns)

    def executions(self, client_id: int | None = None) -> list[tuple[ExecutionEvent, CommissionReportEvent]]:
        """Executions with their commission reports (reqExecutions), oldest first."""
        return [e for e in self._executions if client_id is None or e[0].clientId == client_id]

    def marks(self, now_ns: int) -> dict[int, float]:
        """Mark prices of the positions: midpoint of the latest quote."""
        return {c: self._quote(c, now_ns).mid for c in self.account.positions}

    def quote(self, con_id: int, now_ns: int) -> Quote:
        return self._quote(con_id, now_ns)

    # -- placement helpers -----------------------------------------------------------------------

    def _set_expiry(self, wo: WorkingOrder, now_ns: int) -> None:
        cal = wo.inst.calendar
        wo.expiry_ns = wo.auction_ns = None
        if wo.order.orderType in AUCTION_TYPES:
            session = cal.next_session(now_ns, rth=True)
            wo.auction_ns = wo.expiry_ns = session.close_ns if session else None
        elif wo.order.tif == "DAY":
            session = cal.next_session(now_ns, rth=not wo.order.outsideRth)
            wo.expiry_ns = session.close_ns if session else None

    def _children(self, parent: WorkingOrder) -> list[WorkingOrder]:
        key = parent.order.clientId
        return [
            w
            for orders in self._working.values()
            for w in orders.values()
            if w.order.parentId == parent.order.orderId and w.order.clientId == key and not w.done
        ]

    def _transmit(self, root: WorkingOrder, now_ns: int, placed: WorkingOrder) -> list[Event]:
        """Send ``root`` and its children to the market (margin check, statuses, first matches)."""
        events: list[Event] = []
        group: list[WorkingOrder] = []
        for w in (root, *self._children(root), placed):
            if not w.done and not w.transmitted and all(w is not g for g in group):
                group.append(w)
        for wo in group:
            wo.transmitted = True
            problem = self._margin_problem(wo, now_ns) if not wo.order.parentId else None
            if problem is not None:
                wo.status = INACTIVE
                events += [self._status(wo, now_ns), self._error(wo.order, problem, now_ns)]
                events += self._finish(wo, now_ns)
                for child in self._children(wo):
                    events += self._cancel(child, now_ns, notice=True)
                continue
            wo.status = self._status_for(wo, now_ns)
            events.append(self._status(wo, now_ns))
            if wo.status == PRE_SUBMITTED and wo.released and not self._can_trade(wo, now_ns):
                session = wo.inst.calendar.next_session(now_ns, rth=not wo.order.outsideRth)
                if session is not None and session.open_ns > now_ns:
                    when = f"{wo.inst.calendar.local(session.open_ns):%Y-%m-%d %H:%M:%S} {wo.inst.timeZone}"
                    events.append(self._error(wo.order, held_until_notice(wo.order, wo.inst, when), now_ns))
        for wo in group:
            if not wo.done and wo.transmitted:
                events += self._match(wo, self._quote(wo.order.conId, now_ns), now_ns, arrival=True)
            if wo.order.tif == "IOC" and not wo.done and wo.transmitted and wo.released:
                events += self._cancel(wo, now_ns, notice=False)
        return events

    def _margin_problem(self, wo: WorkingOrder, now_ns: int) -> Problem | None:
        if not self.config.check_margin:
            return None
        con_id = wo.order.conId
        held = self.account.positions[con_id].quantity if con_id in self.account.positions else 0.0
        change = wo.order.sign * wo.remaining
        if abs(held + change) <= abs(held) + _EPS:
            return None
        marks = self.marks(now_ns)
        marks[con_id] = self._quote(con_id, now_ns).mid
        equity = self.account.net_liquidation(marks)
        required = self.account.margins(marks, {con_id: change}).init
        if required <= equity:
            return None
        return rejected(
            "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE "
            f"[{equity:.2f} USD] MUST EXCEED THE INITIAL MARGIN [{required:.2f} USD]"
        )

    def _modify(self, wo: WorkingOrder, new: Order, now_ns: int) -> list[Event]:
        if wo.status == FILLED:
            return [self._error(new, MODIFY_FILLED, now_ns)]
        if wo.done:
            return [self._error(new, DUPLICATE_ID, now_ns)]
        old = wo.order
        if (new.conId, new.action, new.parentId) != (old.conId, old.action, old.parentId):
            return [self._error(new, MODIFY_MISMATCH, now_ns)]
        problem = validate(new, wo.inst)
        if problem is None and new.totalQuantity < wo.filled - _EPS:
            problem = MODIFY_MISMATCH
        if problem is not None:
            return [self._error(new, problem, now_ns)]
        new, warning = normalize(new, wo.inst)
        events: list[Event] = [self._error(new, warning, now_ns)] if warning else []
        wo.order = replace(new, permId=old.permId, transmit=new.transmit or wo.transmitted)
        stop_fields = ("orderType", "auxPrice", "trailStopPrice", "trailingPercent")
        if not wo.triggered and any(getattr(old, f) != getattr(new, f) for f in stop_fields):
            wo.stop_price = initial_stop(wo.order)
        if (old.tif, old.outsideRth, old.orderType) != (new.tif, new.outsideRth, new.orderType):
            self._set_expiry(wo, now_ns)
        wo.rested = False
        if wo.remaining <= _EPS:
            wo.status = FILLED
            events.append(self._status(wo, now_ns))
            return events + self._finish(wo, now_ns)
        if new.transmit and not wo.transmitted:
            parent = self._orders.get((new.clientId, new.parentId)) if new.parentId else None
            return events + self._transmit(parent or wo, now_ns, placed=wo)
        wo.status = self._status_for(wo, now_ns)
        events.append(self._status(wo, now_ns))
        if wo.transmitted:
            events += self._match(wo, self._quote(wo.order.conId, now_ns), now_ns, arrival=True)
        return events

    def _what_if(self, order: Order, inst: Instrument, now_ns: int) -> WhatIfEvent:
        marks = self.marks(now_ns)
        quote = self._quote(inst.conId, now_ns)
        marks[inst.conId] = quote.mid
        limit = value_of(order.lmtPrice)
        price = limit if limit > 0 else (quote.ask if order.action == "BUY" else quote.bid)
        commission = self.commissions.estimate(inst, order.totalQuantity, price)
        figures = self.account.what_if(inst, order.sign * order.totalQuantity, commission, marks)
        fees = (commission, commission, commission)
        return WhatIfEvent(order, *figures.texts(), *fees, self.commissions.currency, "", now_ns)

    # -- matching --------------------------------------------------------------------------------

    def _quote(self, con_id: int, now_ns: int) -> Quote:
        quote = self._last_quote.get(con_id)
        stale = quote is not None and now_ns - quote.time_ns >= self.market.tick_interval_ns
        if quote is None or quote.time_ns > now_ns or (stale and self.market.is_open(con_id, now_ns)):
            quote = self.market.last_quote(con_id, now_ns)
            self._last_quote[con_id] = quote
            self._liquidity[con_id] = [quote.step, quote.time_ns, quote.bidSize, quote.askSize]
        return quote

    def _can_trade(self, wo: WorkingOrder, now_ns: int) -> bool:
        return self.market.is_open(wo.order.conId, now_ns, rth=not wo.order.outsideRth)

    def _status_for(self, wo: WorkingOrder, now_ns: int) -> str:
        if wo.done:
            return wo.status
        if not wo.transmitted or not wo.released:
            return PRE_SUBMITTED
        if wo.order.orderType in STOP_TYPES and not wo.triggered:
            return PRE_SUBMITTED
        return SUBMITTED if self._can_trade(wo, now_ns) else PRE_SUBMITTED

    def _match(self, wo: WorkingOrder, quote: Quote, now_ns: int, arrival: bool) -> list[Event]:
        events: list[Event] = []
        if wo.done or not wo.transmitted or not wo.released or wo.order.orderType in AUCTION_TYPES:
            return events
        if not self._can_trade(wo, now_ns):
            return events
        if wo.order.orderType in STOP_TYPES and not wo.triggered:
            if not wo.update_trigger(quote.last):
                return events
            wo.status = SUBMITTED
            events.append(self._status(wo, now_ns))
            arrival = True
        buy = wo.order.action == "BUY"
        touch = quote.ask if buy else quote.bid
        limit = wo.limit_price()
        price = touch
        if limit is not None:
            if (buy and touch > limit + _EPS) or (not buy and touch < limit - _EPS):
                wo.rested = True
                return events
            if wo.rested and not arrival:
                price = limit
        liquidity = self._liquidity.setdefault(
            quote.conId, [quote.step, quote.time_ns, quote.bidSize, quote.askSize]
        )
        side = 3 if buy else 2
        quantity = min(wo.remaining, liquidity[side]) if self.config.partial_fills else wo.remaining
        if quantity <= _EPS:
            wo.rested = True
            return events
        liquidity[side] -= quantity
        resting = limit is not None and price == limit and wo.rested
        events += self._fill(wo, quantity, price, now_ns, liquidity=1 if resting else 2)
        wo.rested = True
        return events

    def _auction(self, wo: WorkingOrder, now_ns: int) -> list[Event]:
        assert wo.auction_ns is not None
        session = wo.inst.calendar.session_at(wo.auction_ns - 1, rth=True)
        if session is None or self.market.is_halted(wo.order.conId):
            return self._cancel(wo, now_ns, notice=False)
        price = self.market.close_price(wo.order.conId, session)
        limit = wo.limit_price()
        buy = wo.order.action == "BUY"
        if limit is not None and ((buy and price > limit + _EPS) or (not buy and price < limit - _EPS)):
            return self._cancel(wo, now_ns, notice=False)
        return self._fill(wo, wo.remaining, price, now_ns, liquidity=2)

    def _fill(
        self, wo: WorkingOrder, quantity: float, price: float, now_ns: int, liquidity: int
    ) -> list[Event]:
        inst, order = wo.inst, wo.order
        commission = self.commissions.for_fill(inst, wo.filled, wo.cum_value, quantity, price)
        result = self.account.apply_fill(inst, order.sign * quantity, price, commission)
        wo.avg_fill_price = (wo.avg_fill_price * wo.filled + price * quantity) / (wo.filled + quantity)
        wo.filled += quantity
        wo.cum_value += quantity * price * inst.multiplier
        wo.commission += commission
        wo.last_fill_price = price
        wo.status = FILLED if wo.remaining <= _EPS else SUBMITTED
        self.exec_seq += 1
        exec_id = f"{self._exec_prefix:08x}.{self.exec_seq:08x}.01.01"
        venue = (
            _VENUES.get(inst.primaryExchange, inst.primaryExchange)
            if inst.secType == "STK"
            else inst.exchange
        )
        execution = ExecutionEvent(
            exec_id,
            now_ns,
            self.account.account_id,
            venue,
            "BOT" if order.action == "BUY" else "SLD",
            quantity,
            price,
            order.permId,
            order.clientId,
            order.orderId,
            wo.filled,
            wo.avg_fill_price,
            order.orderRef,
            inst.conId,
            liquidity,
        )
        realized = UNSET_DOUBLE if result.realized is None else result.realized
        report = CommissionReportEvent(
            exec_id, commission, self.commissions.currency, realized, order.clientId, order.orderId
        )
        self._executions.append((execution, report))
        while len(self._executions) > self.config.executions_kept:
            self._executions.popleft()
        marks = self.marks(now_ns)
        row = self.account.row(result.position, marks)
        position = PositionEvent(
            self.account.account_id,
            inst.conId,
            row.position,
            row.averageCost,
            row.marketPrice,
            row.marketValue,
            row.unrealizedPNL,
            row.realizedPNL,
            now_ns,
        )
        events: list[Event] = [execution, self._status(wo, now_ns), report, position]
        events += self._after_fill(wo, quantity, now_ns)
        events += self._account_events(marks, now_ns)
        return events

    def _after_fill(self, wo: WorkingOrder, quantity: float, now_ns: int) -> list[Event]:
        """Finish a filled order, activate its children, apply OCA / bracket siblings."""
        events: list[Event] = []
        if wo.done:
            events += self._finish(wo, now_ns)
            for child in self._children(wo):
                child.released = True
                child.status = self._status_for(child, now_ns)
                events.append(self._status(child, now_ns))
                events += self._match(child, self._quote(child.order.conId, now_ns), now_ns, arrival=True)
        order = wo.order
        siblings: list[WorkingOrder] = []
        reduce = True
        if order.ocaGroup:
            siblings = [
                w
                for orders in self._working.values()
                for w in orders.values()
                if w.order.ocaGroup == order.ocaGroup and w is not wo and not w.done
            ]
            reduce = order.ocaType in (2, 3)
        elif order.parentId:
            parent = self._orders.get((order.clientId, order.parentId))
            siblings = [w for w in self._children(parent) if w is not wo] if parent is not None else []
            reduce = not wo.done
        for other in siblings:
            if other.done:
                continue
            remaining_total = other.order.totalQuantity - quantity
            if not reduce or remaining_total <= other.filled + _EPS:
                events += self._cancel(other, now_ns, notice=False)
            else:
                other.order = replace(other.order, totalQuantity=remaining_total)
                events.append(self._status(other, now_ns))
        return events

    def _cancel(self, wo: WorkingOrder, now_ns: int, notice: bool) -> list[Event]:
        if wo.done:
            return []
        wo.status = CANCELLED
        events: list[Event] = [self._status(wo, now_ns)]
        if notice:
            events.append(self._error(wo.order, CANCELLED_NOTICE, now_ns))
        events += self._finish(wo, now_ns)
        for child in self._children(wo):
            events += self._cancel(child, now_ns, notice=notice)
        return events

    def _finish(self, wo: WorkingOrder, now_ns: int) -> list[Event]:
        """Move a done order out of the working set (it stays known for duplicate checks)."""
        wo.done_ns = now_ns
        orders = self._working.get(wo.order.conId)
        if orders is not None:
            orders.pop(wo.key, None)
        self._completed.append(wo)
        while len(self._completed) > self.config.completed_kept:
            old = self._completed.popleft()
            if self._orders.get(old.key) is old:
                del self._orders[old.key]
        return []

    # -- events ----------------------------------------------------------------------------------

    def _status(self, wo: WorkingOrder, now_ns: int) -> OrderStatusEvent:
        return status_event(wo, now_ns)

    def _error(self, order: Order, problem: Problem, now_ns: int) -> ErrorEvent:
        return ErrorEvent(order.clientId, order.orderId, problem[0], problem[1], now_ns)

    def _account_events(self, marks: dict[int, float], now_ns: int) -> list[Event]:
        events: list[Event] = []
        for value in self.account.snapshot(marks).values:
            key = (value.key, value.currency)
            if self._sent_values.get(key) != value.value:
                self._sent_values[key] = value.value
                events.append(
                    AccountValueEvent(value.account, value.key, value.value, value.currency, now_ns)
                )
        return events

    def _roll_day(self, now_ns: int) -> None:
        day = self.account.day_of(now_ns)
        if day != self.account.day:
            self.account.roll_day(day, self.marks(now_ns))

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state: account, working orders, id counters, recent executions, shocks/halts."""
        return engine_state(self)

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        universe: Universe,
        market: Market,
        commissions: CommissionSchedule | None = None,
        config: EngineConfig | None = None,
    ) -> MatchingEngine:
        """Rebuild an engine saved by :meth:`to_dict` (orders of unknown instruments are dropped)."""
        engine = cls(universe, market, Account.from_dict(universe, data["account"]), commissions, config)
        restore_engine_state(engine, data)
        return engine

    def reset(self, cash: float | None = None) -> None:
        """Forget every order and position (ids keep increasing); the account gets ``cash``."""
        self._orders.clear()
        self._working.clear()
        self._completed.clear()
        self._executions.clear()
        self._sent_values.clear()
        self._liquidity.clear()
        self.account.reset(cash)
