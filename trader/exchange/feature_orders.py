"""The orders feature: placeOrder / cancelOrder and the order and execution queries.

Requests -> engine: the contract of a placeOrder is resolved against the universe (error 200 when
unknown or ambiguous), the order mapped to an engine :class:`Order` and the engine's events are
handed to ``core.publish``. Events -> messages (``on_events``), per session:

* an order's status: ``openOrder`` then ``orderStatus`` (ib_async needs the openOrder first);
* a fill: ``execDetails`` (reqId -1), and its ``commissionReport`` right after the order status,
  as TWS sends them;
* errors of an order (reqId = order id): only to the client that placed it;
* what-if answers: an ``openOrder`` with ``whatIf`` set and the margin figures, to that client.

Who sees what (TWS semantics): a client sees its own orders and executions. The *master client*
(``exchange.master_client_id``, like TWS's "Master API client ID"; 0 by default) also receives
every other client's order updates and executions, and its reqOpenOrders / reqExecutions cover
all clients. reqAllOpenOrders and reqCompletedOrders cover every client. Errors are never copied
to the master (ib_async would apply another client's order id to its own trades).

Faults (:mod:`trader.exchange.faults`): before the engine sees an order request, the exchange's
fault state may refuse it (connectivity lost, or a queued ``reject-next``). A refused new order
gets an openOrder + orderStatus with the refusal's status (Inactive / Cancelled), then the error;
its id and a permId count as used. Other refusals are the error alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from trader.exchange.events import (
    CommissionReportEvent,
    ErrorEvent,
    Event,
    ExecutionEvent,
    OrderStatusEvent,
    WhatIfEvent,
)
from trader.exchange.faults import OrderRequest, Refusal, faults_of
from trader.exchange.instruments import Instrument, Universe
from trader.exchange.market import Quote
from trader.exchange.matching import MatchingEngine
from trader.exchange.orders import NO_SECURITY, UNSUPPORTED_TYPE, Order, is_set, rejected
from trader.exchange.protocol import (
    ApiRequest,
    CancelOrder,
    ContractFields,
    ExecutionFields,
    ExecutionFilterFields,
    OrderFields,
    OrderStateFields,
    PlaceOrder,
    ReqAllOpenOrders,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqExecutions,
    ReqGlobalCancel,
    ReqOpenOrders,
    encode_commission_report,
    encode_completed_order,
    encode_completed_orders_end,
    encode_exec_details,
    encode_exec_details_end,
    encode_open_order,
    encode_open_order_end,
    encode_order_status,
    format_tws_time,
)
from trader.exchange.session_api import ExchangeCore, Handler, Session

log = logging.getLogger("trader.exchange.orders")

NS = 1_000_000_000
SPECS_KEPT = 20_000
"""Client order specs remembered for echoing in openOrder (oldest forgotten first)."""


# -- mapping helpers (shared with the account feature) ----------------------------------------------


def contract_of(inst: Instrument, exchange: str | None = None) -> ContractFields:
    """The TWS contract of an instrument (``exchange``: the routing/venue to report, default the
    instrument's own, e.g. SMART)."""
    return ContractFields(
        conId=inst.conId,
        symbol=inst.symbol,
        secType=inst.secType,
        lastTradeDateOrContractMonth=inst.lastTradeDateOrContractMonth,
        multiplier=inst.multiplier_text,
        exchange=inst.exchange if exchange is None else exchange,
        primaryExchange=inst.primaryExchange,
        currency=inst.currency,
        localSymbol=inst.localSymbol,
        tradingClass=inst.tradingClass,
    )


def resolve_contract(universe: Universe, contract: ContractFields) -> Instrument | None:
    """The one instrument a placeOrder contract names (conId decides when set), else None."""
    if contract.conId:
        return universe.get(contract.conId)
    found = universe.lookup(
        contract.symbol,
        contract.secType,
        contract.exchange,
        contract.currency,
        local_symbol=contract.localSymbol,
        last_trade_date_or_contract_month=contract.lastTradeDateOrContractMonth,
        trading_class=contract.tradingClass,
        multiplier=contract.multiplier,
        primary_exchange=contract.primaryExchange,
    )
    return found[0] if len(found) == 1 else None


def quantity(value: float) -> Decimal:
    """A share/contract count as TWS writes it (``100``, ``0.5``)."""
    return Decimal(int(value)) if float(value).is_integer() else Decimal(repr(float(value)))


def _price(value: float | None) -> float | None:
    return float(value) if value is not None and is_set(value) else None


def engine_order(order_id: int, client_id: int, inst: Instrument, order: OrderFields, account: str) -> Order:
    """The engine's view of a placeOrder (TWS defaults: DAY when tif is empty)."""
    return Order(
        orderId=order_id,
        clientId=client_id,
        conId=inst.conId,
        action=order.action.upper(),
        totalQuantity=float(order.totalQuantity),
        orderType=" ".join(order.orderType.upper().split()),
        lmtPrice=_price(order.lmtPrice),
        auxPrice=_price(order.auxPrice),
        tif=(order.tif or "DAY").upper(),
        outsideRth=order.outsideRth,
        parentId=order.parentId,
        transmit=order.transmit,
        ocaGroup=order.ocaGroup,
        ocaType=order.ocaType,
        trailingPercent=_price(order.trailingPercent),
        trailStopPrice=_price(order.trailStopPrice),
        lmtPriceOffset=_price(order.lmtPriceOffset),
        orderRef=order.orderRef,
        account=order.account or account,
        whatIf=order.whatIf,
    )


def order_fields(order: Order, base: OrderFields | None, account: str) -> OrderFields:
    """The openOrder / completedOrder order: the client's spec with the engine's current values."""
    return dataclasses.replace(
        base or OrderFields(),
        clientId=order.clientId,
        permId=order.permId,
        action=order.action,
        totalQuantity=quantity(order.totalQuantity),
        orderType=order.orderType,
        lmtPrice=_price(order.lmtPrice),
        auxPrice=_price(order.auxPrice),
        tif=order.tif,
        ocaGroup=order.ocaGroup,
        ocaType=order.ocaType,
        orderRef=order.orderRef,
        transmit=order.transmit,
        parentId=order.parentId,
        outsideRth=order.outsideRth,
        trailStopPrice=_price(order.trailStopPrice),
        trailingPercent=_price(order.trailingPercent),
        lmtPriceOffset=_price(order.lmtPriceOffset),
        account=order.account or account,
        whatIf=order.whatIf,
    )


def parse_filter_time(text: str, tz: ZoneInfo) -> int | None:
    """ExecutionFilter.time: ``yyyymmdd hh:mm:ss [zone]`` (local to ``tz`` without a zone) or
    ``yyyymmdd-hh:mm:ss`` (UTC); None when empty. ValueError when malformed."""
    text = text.strip()
    if not text:
        return None
    if "-" in text[:9] and " " not in text:
        when = datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=ZoneInfo("UTC"))
    else:
        date_part, _, rest = text.partition(" ")
        time_part, _, zone = rest.strip().partition(" ")
        when = datetime.strptime(f"{date_part} {time_part or '00:00:00'}", "%Y%m%d %H:%M:%S")
        when = when.replace(tzinfo=ZoneInfo(zone.strip()) if zone.strip() else tz)
    return int(when.timestamp()) * NS


def _use_order_id(engine: MatchingEngine, client_id: int, order_id: int) -> None:
    """Count ``order_id`` as used by ``client_id`` (nextValidId goes above it, as TWS does for a
    rejected order). The engine only counts the orders it took; its id table is the one the
    persistence layer saves (trader/exchange/state.py reads it the same way)."""
    ids = engine._next_ids
    ids[client_id] = max(ids.get(client_id, 1), order_id + 1)


# -- the feature ----------------------------------------------------------------------------------


class OrderSpecs:
    """Exchange-wide: what each client sent for each order (contract and order), for openOrder."""

    def __init__(self, kept: int = SPECS_KEPT) -> None:
        self.kept = kept
        self._specs: OrderedDict[tuple[int, int], tuple[ContractFields, OrderFields]] = OrderedDict()

    def put(self, key: tuple[int, int], contract: ContractFields, order: OrderFields) -> None:
        self._specs[key] = (contract, order)
        self._specs.move_to_end(key)
        while len(self._specs) > self.kept:
            self._specs.popitem(last=False)

    def get(self, key: tuple[int, int]) -> tuple[ContractFields, OrderFields] | None:
        return self._specs.get(key)


class OrdersFeature:
    name = "orders"

    def __init__(self, *, master_client_id: int = 0, time_zone: str = "US/Eastern") -> None:
        self.master_client_id = master_client_id
        self.tz = ZoneInfo(time_zone)
        self.handlers: Mapping[type[ApiRequest], Handler] = {
            PlaceOrder: self.place_order,
            CancelOrder: self.cancel_order,
            ReqGlobalCancel: self.global_cancel,
            ReqOpenOrders: self.req_open_orders,
            ReqAllOpenOrders: self.req_all_open_orders,
            ReqAutoOpenOrders: self.req_auto_open_orders,
            ReqCompletedOrders: self.req_completed_orders,
            ReqExecutions: self.req_executions,
        }

    # -- helpers ------------------------------------------------------------------------------------

    def specs(self, core: ExchangeCore) -> OrderSpecs:
        specs = core.extensions.get(self.name)
        if not isinstance(specs, OrderSpecs):
            specs = core.extensions[self.name] = OrderSpecs()
        return specs

    def is_master(self, session: Session) -> bool:
        return self.master_client_id >= 0 and session.client_id == self.master_client_id

    def sees(self, session: Session, client_id: int) -> bool:
        """Does ``session`` get the order updates / executions of ``client_id``'s orders?"""
        return client_id in (session.client_id, -1) or self.is_master(session)

    def _open_order(self, session: Session, event: OrderStatusEvent) -> bytes:
        core = session.core
        inst = core.universe[event.order.conId]
        spec = self.specs(core).get(event.order.key)
        contract = spec[0] if spec else contract_of(inst)
        fields = order_fields(event.order, spec[1] if spec else None, core.account_id)
        state = OrderStateFields(status=event.status)
        return encode_open_order(
            event.orderId, contract, fields, state, server_version=session.server_version
        )

    def _order_status(self, event: OrderStatusEvent) -> bytes:
        return encode_order_status(
            event.orderId,
            event.status,
            filled=quantity(event.filled),
            remaining=quantity(event.remaining),
            avgFillPrice=event.avgFillPrice,
            permId=event.permId,
            parentId=event.parentId,
            lastFillPrice=event.lastFillPrice,
            clientId=event.clientId,
            whyHeld=event.whyHeld,
            mktCapPrice=event.mktCapPrice,
        )

    def _send_status(self, session: Session, event: OrderStatusEvent) -> None:
        session.send(self._open_order(session, event))
        session.send(self._order_status(event))

    def _exec_details(self, session: Session, req_id: int, ex: ExecutionEvent) -> bytes:
        inst = session.core.universe[ex.conId]
        fields = ExecutionFields(
            execId=ex.execId,
            time=datetime.fromtimestamp(ex.time_ns / NS, tz=self.tz).replace(microsecond=0),
            acctNumber=ex.acctNumber,
            exchange=ex.exchange,
            side=ex.side,
            shares=quantity(ex.shares),
            price=ex.price,
            permId=ex.permId,
            clientId=ex.clientId,
            orderId=ex.orderId,
            liquidation=ex.liquidation,
            cumQty=quantity(ex.cumQty),
            avgPrice=ex.avgPrice,
            orderRef=ex.orderRef,
            lastLiquidity=ex.lastLiquidity,
        )
        contract = contract_of(inst, ex.exchange)
        return encode_exec_details(req_id, contract, fields, server_version=session.server_version)

    @staticmethod
    def _commission(report: CommissionReportEvent) -> bytes:
        return encode_commission_report(
            report.execId,
            report.commission,
            report.currency,
            realizedPNL=report.realizedPNL,
            yield_=report.yield_,
            yieldRedemptionDate=report.yieldRedemptionDate,
        )

    def _what_if(self, session: Session, event: WhatIfEvent) -> bytes:
        core = session.core
        spec = self.specs(core).get(event.order.key)
        inst = core.universe[event.order.conId]
        contract = spec[0] if spec else contract_of(inst)
        fields = order_fields(event.order, spec[1] if spec else None, core.account_id)
        state = OrderStateFields(
            status="PreSubmitted",
            initMarginBefore=event.initMarginBefore,
            maintMarginBefore=event.maintMarginBefore,
            equityWithLoanBefore=event.equityWithLoanBefore,
            initMarginChange=event.initMarginChange,
            maintMarginChange=event.maintMarginChange,
            equityWithLoanChange=event.equityWithLoanChange,
            initMarginAfter=event.initMarginAfter,
            maintMarginAfter=event.maintMarginAfter,
            equityWithLoanAfter=event.equityWithLoanAfter,
            commission=event.commission,
            minCommission=event.minCommission,
            maxCommission=event.maxCommission,
            commissionCurrency=event.commissionCurrency,
            warningText=event.warningText,
        )
        return encode_open_order(
            event.orderId, contract, fields, state, server_version=session.server_version
        )

    # -- requests -----------------------------------------------------------------------------------

    def place_order(self, session: Session, request: PlaceOrder) -> None:
        core = session.core
        order_id = request.orderId
        inst = resolve_contract(core.universe, request.contract)
        if inst is None:
            session.send_error(order_id, *NO_SECURITY)
            return
        spec = request.order
        if spec.account and spec.account != core.account_id:
            session.send_error(order_id, *rejected(f"Invalid account code {spec.account!r}."))
            return
        if spec.conditions:
            session.send_error(order_id, UNSUPPORTED_TYPE[0], f"{UNSUPPORTED_TYPE[1]} (order conditions)")
            return
        order = engine_order(order_id, session.client_id, inst, spec, core.account_id)
        kind: OrderRequest = "what_if" if order.whatIf else "new"
        if kind == "new" and core.engine.order(session.client_id, order_id) is not None:
            kind = "modify"
        refusal = faults_of(core.extensions).order_gate(kind)
        if refusal is not None and refusal.status is None:  # the order (if any) stays as it was
            session.send_error(order_id, refusal.code, refusal.text)
            return
        self.specs(core).put(order.key, contract_of(inst, request.contract.exchange or None), spec)
        if refusal is not None:
            self._reject(session, order, refusal)
            return
        core.publish(core.engine.place(order, core.clock()))

    def _reject(self, session: Session, order: Order, refusal: Refusal) -> None:
        """End a new order the fault state refused with the refusal's status, then its error."""
        core = session.core
        now = core.clock()
        assert refusal.status is not None
        order = dataclasses.replace(order, permId=core.engine.next_perm_id)
        core.engine.next_perm_id += 1
        _use_order_id(core.engine, order.clientId, order.orderId)
        status = OrderStatusEvent(order, refusal.status, 0.0, order.totalQuantity, 0.0, 0.0, "", now)
        error = ErrorEvent(order.clientId, order.orderId, refusal.code, refusal.text, now)
        if faults_of(core.extensions).connectivity_lost:  # reports are held: tell this client now
            self._send_status(session, status)
            session.send_error(error.reqId, error.code, error.text)
        else:
            core.publish([status, error])

    def cancel_order(self, session: Session, request: CancelOrder) -> None:
        core = session.core
        refusal = faults_of(core.extensions).order_gate("cancel")
        if refusal is not None:
            session.send_error(request.orderId, refusal.code, refusal.text)
            return
        core.publish(core.engine.cancel(request.orderId, session.client_id, core.clock()))

    def global_cancel(self, session: Session, request: ReqGlobalCancel) -> None:
        core = session.core
        refusal = faults_of(core.extensions).order_gate("cancel")
        if refusal is not None:
            session.send_error(-1, refusal.code, refusal.text)
            return
        core.publish(core.engine.global_cancel(core.clock()))

    def req_open_orders(self, session: Session, request: ReqOpenOrders) -> None:
        client = None if self.is_master(session) else session.client_id
        self._send_open_orders(session, session.core.engine.open_orders(client, session.core.clock()))

    def req_all_open_orders(self, session: Session, request: ReqAllOpenOrders) -> None:
        self._send_open_orders(session, session.core.engine.open_orders(None, session.core.clock()))

    def _send_open_orders(self, session: Session, events: Iterable[OrderStatusEvent]) -> None:
        for event in sorted(events, key=lambda e: e.permId):
            self._send_status(session, event)
        session.send(encode_open_order_end())

    def req_auto_open_orders(self, session: Session, request: ReqAutoOpenOrders) -> None:
        # No manual (TWS) orders exist here, so there is nothing to bind; only the check remains.
        if session.client_id != 0:
            session.send_error(
                -1,
                321,
                "Error validating request.-'bI' : cause - reqAutoOpenOrders can only be called "
                "from client id 0.",
            )

    def req_completed_orders(self, session: Session, request: ReqCompletedOrders) -> None:
        core = session.core
        specs = self.specs(core)
        for event in core.engine.completed_orders():
            spec = specs.get(event.order.key)
            inst = core.universe[event.order.conId]
            contract = spec[0] if spec else contract_of(inst)
            fields = dataclasses.replace(
                order_fields(event.order, spec[1] if spec else None, core.account_id),
                filledQuantity=quantity(event.filled),
            )
            done = datetime.fromtimestamp(event.time_ns // NS, tz=self.tz)
            state = OrderStateFields(
                status=event.status, completedTime=format_tws_time(done), completedStatus=event.status
            )
            session.send(
                encode_completed_order(contract, fields, state, server_version=session.server_version)
            )
        session.send(encode_completed_orders_end())

    def req_executions(self, session: Session, request: ReqExecutions) -> None:
        core = session.core
        client = None if self.is_master(session) else session.client_id
        try:
            pairs = self.filter_executions(core, core.engine.executions(client), request.execFilter)
        except ValueError as exc:
            session.send_error(request.reqId, 321, f"Error validating request.-'bC' : cause - {exc}")
            pairs = []
        for execution, report in pairs:
            session.send(self._exec_details(session, request.reqId, execution))
            session.send(self._commission(report))
        session.send(encode_exec_details_end(request.reqId))

    def filter_executions(
        self,
        core: ExchangeCore,
        pairs: Iterable[tuple[ExecutionEvent, CommissionReportEvent]],
        flt: ExecutionFilterFields,
    ) -> list[tuple[ExecutionEvent, CommissionReportEvent]]:
        """TWS's reqExecutions: the executions since the filter's time (today's, since local
        midnight, without one) matching the filter; empty fields match anything, ``side`` BUY /
        SELL matches BOT / SLD. Malformed time: ValueError."""
        try:
            since = parse_filter_time(flt.time, self.tz)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"Invalid execution filter time {flt.time!r}") from exc
        if since is None:
            now = datetime.fromtimestamp(core.clock() // NS, tz=self.tz)
            since = int(now.replace(hour=0, minute=0, second=0).timestamp()) * NS
        side = {"BUY": "BOT", "SELL": "SLD"}.get(flt.side.upper(), flt.side.upper())
        out = []
        for execution, report in pairs:
            inst = core.universe.get(execution.conId)
            if inst is None or execution.time_ns < since:
                continue
            if flt.clientId and execution.clientId != flt.clientId:
                continue
            if flt.acctCode and execution.acctNumber != flt.acctCode:
                continue
            if flt.symbol and inst.symbol.upper() != flt.symbol.upper():
                continue
            if flt.secType and inst.secType != flt.secType.upper():
                continue
            if flt.exchange and flt.exchange.upper() not in (
                execution.exchange,
                inst.exchange,
                inst.primaryExchange,
            ):
                continue
            if side and execution.side != side:
                continue
            out.append((execution, report))
        return out

    # -- events -------------------------------------------------------------------------------------

    def on_events(self, session: Session, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, OrderStatusEvent):
                if self.sees(session, event.clientId):
                    self._send_status(session, event)
            elif isinstance(event, ExecutionEvent):
                if self.sees(session, event.clientId):
                    session.send(self._exec_details(session, -1, event))
            elif isinstance(event, CommissionReportEvent):
                if self.sees(session, event.clientId):
                    session.send(self._commission(event))
            elif isinstance(event, ErrorEvent):
                if event.clientId in (session.client_id, -1):
                    session.send_error(event.reqId, event.code, event.text, event.advancedOrderRejectJson)
            elif isinstance(event, WhatIfEvent) and event.clientId == session.client_id:
                session.send(self._what_if(session, event))

    def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
        pass

    def on_close(self, session: Session) -> None:
        pass
