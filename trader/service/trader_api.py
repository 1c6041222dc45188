"""The trader service's RPC methods (docs/rpc.md; docs/wire.md lists the built-ins).

Each method is a small function over :class:`~trader.service.trader_app.TraderApp`, registered
explicitly in :func:`build_registry`; params are typed (``bad_params`` from the registry), domain
errors are ``RpcError`` with the codes of :data:`ERROR_CODES`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from ib_async import Contract

import trader
from trader.book import InvalidTransition, UnknownOrder
from trader.book import Order as BookOrder
from trader.config.trader import TraderConfig
from trader.data.store import StoreError
from trader.ib.contracts import AmbiguousContract, UnknownContract
from trader.ib.errors import NotConnected
from trader.ib.history import HistoryError
from trader.messaging.rpc import BAD_PARAMS, MethodRegistry, RpcError
from trader.risk import InvalidStateTransition, LimitError, RiskError
from trader.service import mapping as mp
from trader.service.orders import (
    BadOrder,
    Modification,
    OrderSpec,
    Placed,
    PlaceRequest,
    TraderError,
    check_spec,
)

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

ERROR_CODES: Final = (
    *("not_connected", "unknown_contract", "ambiguous_contract", "refused", "unknown_order", "bad_order"),
    *("conflict", "too_late", "history_error", "store_error", "timeout"),
)
"""Domain error codes (besides the wire's: bad_params, unknown_method, internal ...); docs/rpc.md."""


@dataclass(slots=True)
class TraderState:
    """What the trader service knows about itself (the app holds the IB session and the book)."""

    config: TraderConfig
    config_path: Path
    data_dir: Path
    started_wall: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)


def plain(value: Any) -> Any:
    """Config values as plain msgpack-able data (mappings and tuples unwrapped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def status(state: TraderState, app: TraderApp | None = None) -> dict[str, Any]:
    config = state.config
    out: dict[str, Any] = {
        "service": "trader",
        "version": trader.__version__,
        "pid": os.getpid(),
        "started": state.started_wall,
        "uptime_s": round(time.monotonic() - state.started_monotonic, 3),
        "data_dir": str(state.data_dir),
        "config_path": str(state.config_path),
        "store_uri": config.store.resolved_uri(state.data_dir),
        "endpoints": {"rpc": config.zmq.rpc, "ticks": config.zmq.ticks, "events": config.zmq.events},
        "ib": {"host": config.ib.host, "port": config.ib.port, "client_id": config.ib.client_id},
    }
    if app is None:
        return out
    return out | mp.app_status(app)


# -- errors -----------------------------------------------------------------------------------------


_CODES: Final[tuple[tuple[type[Exception], str], ...]] = (
    (BadOrder, "bad_order"),
    (NotConnected, "not_connected"),
    (UnknownContract, "unknown_contract"),
    (AmbiguousContract, "ambiguous_contract"),
    (InvalidTransition, "too_late"),
    (HistoryError, "history_error"),
    (StoreError, "store_error"),
    (LimitError, BAD_PARAMS),
    (InvalidStateTransition, "conflict"),
    (RiskError, "conflict"),
)


def rpc_error(exc: Exception) -> Exception:
    """The RPC error of a domain exception (others are returned as they are: ``internal``)."""
    if isinstance(exc, TraderError):
        return RpcError(exc.code, exc.message)
    if isinstance(exc, UnknownOrder):
        return RpcError("unknown_order", f"no order {exc.args[0] if exc.args else ''}")
    if isinstance(exc, TimeoutError):
        return RpcError("timeout", f"IB did not answer in time ({exc or 'timeout'})")
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return RpcError(code, str(exc))
    return exc


def domain(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (same signature, for the registry) with domain exceptions turned into RPC errors."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except RpcError:
                raise
            except Exception as exc:
                raise rpc_error(exc) from None

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RpcError:
            raise
        except Exception as exc:
            raise rpc_error(exc) from None

    return run


# -- helpers ----------------------------------------------------------------------------------------


async def contract_of(
    app: TraderApp,
    symbol: str | None,
    con_id: int | None,
    *,
    sec_type: str = "STK",
    exchange: str = "SMART",
    currency: str = "USD",
    expiry: str = "",
) -> Contract:
    """The one contract named by ``con_id`` or ``symbol`` (+ type, exchange, currency, expiry)."""
    if con_id:
        return await app.contracts.by_con_id(con_id)
    if not symbol or not symbol.strip():
        raise RpcError(BAD_PARAMS, "give a symbol or a con_id")
    return await app.contracts.resolve(symbol, sec_type, exchange, currency, expiry=expiry)


def placed(result: Placed) -> dict[str, Any]:
    """The reply of place_order: the order (as it is now) and its bracket children."""
    return {
        "created": result.created,
        "order": mp.order_record(result.orders[0]),
        "children": [mp.order_record(c) for c in result.orders[1:]],
    }


def _method(
    registry: MethodRegistry, name: str, *, shield: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as ``name`` with domain errors mapped (see :func:`domain`)."""
    return lambda fn: registry.method(name, shield=shield)(domain(fn))


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _terms(order: BookOrder) -> tuple[object, ...]:
    return (order.quantity, order.limit_price, order.aux_price, order.tif, order.reason, order.state)


# -- the registry -----------------------------------------------------------------------------------


def build_registry(state: TraderState, app: TraderApp | None = None) -> MethodRegistry:
    """The allowlist: ``status`` and ``config`` always; the trading methods with an app."""
    registry = MethodRegistry()

    @registry.method("status")
    def _status() -> dict[str, Any]:
        """The service: version, uptime, data dir, store, endpoints; IB connection state and since
        when, client id, subscriptions, last tick age, book counts, reconciliation, risk gate."""
        return status(state, app)

    @registry.method("config")
    def _config() -> dict[str, Any]:
        """The effective configuration (file plus environment overrides)."""
        return {
            "path": str(state.config_path),
            "data_dir": str(state.data_dir),
            "config": plain(state.config),
        }

    if app is not None:
        _trading(registry, app)
        _control(registry, app)
        _queries(registry, app)
        from trader.service.market_api import register  # noqa: PLC0415 (it imports this module)

        register(registry, app)
        from trader.service.data_api import register as register_data  # noqa: PLC0415

        register_data(registry, app)
        from trader.service.risk_api import register as register_risk  # noqa: PLC0415

        register_risk(registry, app)
        from trader.service.algo_api import register as register_algo  # noqa: PLC0415

        register_algo(registry, app)
    return registry


def _trading(registry: MethodRegistry, app: TraderApp) -> None:
    method = functools.partial(_method, registry)

    @method("place_order", shield=True)
    async def place_order(
        *,
        strategy: str,
        client_order_id: str,
        action: str,
        quantity: float | None = None,
        cash_amount: float | None = None,
        symbol: str | None = None,
        con_id: int | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
        order_type: str = "MKT",
        limit_price: float | None = None,
        stop_price: float | None = None,
        trail_amount: float | None = None,
        trail_percent: float | None = None,
        trail_stop_price: float | None = None,
        limit_offset: float | None = None,
        tif: str = "DAY",
        outside_rth: bool = False,
        take_profit: float | None = None,
        stop_loss: float | None = None,
        account: str = "",
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """Place an order once per (strategy, client_order_id): a repeat returns the existing order
        (created false) and never places again. Refused at once with not_connected while IB is
        down. Give quantity or cash_amount; symbol or con_id. wait_s: wait up to that long for IB's
        acknowledgement (or a fill) before replying."""
        if (quantity is None) == (cash_amount is None):
            raise BadOrder("give exactly one of quantity and cash_amount")
        if not strategy or not client_order_id:
            raise BadOrder("strategy and client_order_id must not be empty")
        raw = OrderSpec(
            action,
            quantity if quantity is not None else 1.0,
            order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            trail_amount=trail_amount,
            trail_percent=trail_percent,
            trail_stop_price=trail_stop_price,
            limit_offset=limit_offset,
            tif=tif,
            outside_rth=outside_rth,
            take_profit=take_profit,
            stop_loss=stop_loss,
        )
        spec = check_spec(raw)
        existing = app.desk.existing(strategy, client_order_id, spec.action)
        if existing is not None:
            return placed(existing)
        if not app.session.connected:
            raise TraderError("not_connected", str(app.gate.connection(app.gate_context())))
        contract = await contract_of(
            app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency, expiry=expiry
        )
        request = PlaceRequest(strategy, client_order_id, contract, spec, cash_amount, account)
        try:
            result = await app.desk.place(request)
        except ValueError as exc:  # an invalid strategy / client order id (the book's check)
            if isinstance(exc, BadOrder):
                raise
            raise BadOrder(str(exc)) from None
        if wait_s > 0 and result.created:
            acked = ("Initialized", "PendingSubmit", "ApiPending")
            await app.desk.wait(client_order_id, lambda o: str(o.state) not in acked, wait_s)
        return placed(result)

    @method("modify_order", shield=True)
    async def modify_order(
        *,
        client_order_id: str,
        strategy: str | None = None,
        quantity: float | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        trail_amount: float | None = None,
        trail_percent: float | None = None,
        tif: str | None = None,
        wait_s: float = 2.0,
    ) -> dict[str, Any]:
        """Change a working order's terms (placeOrder with its IB id); waits up to wait_s for IB's
        answer (the book takes the new terms from IB's openOrder)."""
        change = Modification(quantity, limit_price, stop_price, trail_amount, trail_percent, tif)
        before = _terms(app.desk.order(client_order_id, strategy))
        order = app.desk.modify(client_order_id, change, strategy)
        if wait_s > 0:
            order = await app.desk.wait(client_order_id, lambda o: _terms(o) != before, wait_s)
        return {"order": mp.order_record(order)}

    @method("cancel_order", shield=True)
    async def cancel_order(
        *, client_order_id: str, strategy: str | None = None, wait_s: float = 0.0
    ) -> dict[str, Any]:
        """Cancel a working order (too_late once it is done); wait_s: wait for it to be done."""
        order = app.desk.cancel(client_order_id, strategy)
        if wait_s > 0:
            order = await app.desk.wait(client_order_id, lambda o: o.state.is_done, wait_s)
        return {"order": mp.order_record(order)}


def _control(registry: MethodRegistry, app: TraderApp) -> None:
    method = functools.partial(_method, registry)

    @method("cancel_all")
    def cancel_all(*, strategy: str | None = None) -> dict[str, Any]:
        """Cancel every working order (of one strategy); orders of other clients are left alone."""
        cancelled, errors = [], {}
        for order in app.book.working_orders(strategy):
            if order.is_external:
                continue
            try:
                app.desk.cancel(order.client_order_id)
                cancelled.append(order.client_order_id)
            except TraderError as exc:
                errors[order.client_order_id] = f"{exc.code}: {exc.message}"
        return {"cancelled": cancelled, "errors": errors}

    @method("reconnect")
    async def reconnect() -> dict[str, Any]:
        """Drop the IB connection now and make a new one (then reconcile)."""
        await app.session.reconnect("reconnect requested over RPC")
        return app.session.status()

    @method("reconcile")
    async def reconcile_now() -> dict[str, Any]:
        """Reconcile the book with IB now; returns the findings (also published on ``reconcile``)."""
        if not app.session.connected:
            raise TraderError("not_connected", str(app.gate.connection(app.gate_context())))
        return mp.findings_record("rpc", await app.reconcile("rpc"))


def _queries(registry: MethodRegistry, app: TraderApp) -> None:
    method = functools.partial(_method, registry)

    @method("get_orders")
    def get_orders(
        *, strategy: str | None = None, open_only: bool = False, client_order_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Orders of the book (one strategy, working ones, or one order), by client order id."""
        if client_order_id is not None:
            return [mp.order_record(app.desk.order(client_order_id, strategy))]
        chosen = app.book.working_orders(strategy) if open_only else list(app.book.orders.values())
        return [mp.order_record(o) for o in chosen if strategy is None or o.strategy == strategy]

    @method("get_trades")
    def get_trades(*, strategy: str | None = None, open_only: bool = False) -> list[dict[str, Any]]:
        """Orders with their fills (``{"order": ..., "fills": [...]}``)."""
        fills: dict[str, list[dict[str, Any]]] = {}
        for fill in app.book.positions.fills(strategy=strategy):
            if fill.client_order_id is not None:
                fills.setdefault(fill.client_order_id, []).append(mp.fill_record(fill, app.book))
        orders = app.book.working_orders(strategy) if open_only else list(app.book.orders.values())
        return [
            {"order": mp.order_record(o), "fills": fills.get(o.client_order_id, [])}
            for o in orders
            if strategy is None or o.strategy == strategy
        ]

    @method("get_fills")
    async def get_fills(
        *, strategy: str | None = None, since_ns: int | None = None, source: str = "book"
    ) -> list[dict[str, Any]] | pd.DataFrame:
        """Fills in time order: from the book (records), or source="store": the store's fills
        library as a DataFrame (what was durably written)."""
        if source == "store":
            assert app.writer is not None
            since = None if since_ns is None else pd.Timestamp(since_ns, tz="UTC")
            return await app.writer.call(lambda s: s.read_fills(strategy, since))
        if source != "book":
            raise RpcError(BAD_PARAMS, f"get_fills: source must be 'book' or 'store', got {source!r}")
        return [
            mp.fill_record(f, app.book)
            for f in app.book.positions.fills(strategy=strategy)
            if f.client_order_id is not None and (since_ns is None or f.time_ns >= since_ns)
        ]

    @method("get_positions")
    def get_positions(
        *, strategy: str | None = None, aggregate: bool = False, include_flat: bool = False
    ) -> list[dict[str, Any]]:
        """Positions per (account, strategy, instrument); aggregate=true: per (account,
        instrument) summed over strategies, with IB's own quantity beside it."""
        now = mp.marks_of(app)
        rows = app.book.positions.positions(strategy=strategy, include_flat=include_flat or aggregate)
        if not aggregate:
            return [mp.position_record(p, now.get(p.con_id)) for p in rows]
        ib_qty = {(p.account, int(p.contract.conId)): float(p.position) for p in app.session.ib.positions()}
        groups: dict[tuple[str, int], list[Any]] = {}
        for pos in rows:
            groups.setdefault((pos.account, pos.con_id), []).append(pos)
        out = []
        for (account, con_id), held in sorted(groups.items()):
            quantity = math.fsum(p.quantity for p in held)
            if not include_flat and abs(quantity) < 1e-9 and (account, con_id) not in ib_qty:
                continue
            pnl = app.book.positions.pnl(now, account=account, con_id=con_id, strategy=strategy)
            out.append(
                {
                    "account": account,
                    "con_id": con_id,
                    "symbol": held[-1].symbol,
                    "quantity": quantity,
                    "ib_quantity": ib_qty.get((account, con_id)),
                    "mark": now.get(con_id),
                    "by_strategy": {p.strategy: p.quantity for p in held},
                    "pnl": mp.pnl_record(pnl),
                }
            )
        return out

    @method("get_pnl")
    def get_pnl(*, strategy: str | None = None, account: str | None = None) -> dict[str, Any]:
        """P&L from the book at current marks: per strategy and in total (realized net of
        commissions; unrealized at the marks; missing_marks lists conIds without one)."""
        now = mp.marks_of(app)
        positions = app.book.positions
        by_strategy = positions.pnl_by_strategy(now, account=account)
        if strategy is not None:
            by_strategy = {k: v for k, v in by_strategy.items() if k == strategy}
        total = positions.pnl(now, account=account, strategy=strategy)
        return {
            "by_strategy": {k: mp.pnl_record(v) for k, v in by_strategy.items()},
            "total": mp.pnl_record(total),
            "marks": len(now),
        }

    @method("get_portfolio")
    def get_portfolio(*, account: str = "") -> list[dict[str, Any]]:
        """IB's portfolio (positions at IB's prices, with IB's P&L)."""
        return [
            {
                "account": item.account,
                "con_id": int(item.contract.conId),
                "symbol": mp.symbol_of(item.contract),
                "position": float(item.position),
                "market_price": float(item.marketPrice),
                "market_value": float(item.marketValue),
                "average_cost": float(item.averageCost),
                "unrealized_pnl": float(item.unrealizedPNL),
                "realized_pnl": float(item.realizedPNL),
            }
            for item in app.session.ib.portfolio(account)
        ]

    @method("get_account")
    def get_account(*, account: str = "") -> dict[str, Any]:
        """IB's account values (``{tag: {currency: value}}``, numbers as floats)."""
        values: dict[str, dict[str, float | str]] = {}
        for value in app.session.ib.accountValues(account):
            values.setdefault(value.tag, {})[value.currency] = _number(value.value)
        return {
            "account": account or app.session.account,
            "connected": app.session.connected,
            "values": values,
        }
