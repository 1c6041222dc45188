"""The trader's execution RPC methods (docs/rpc.md "Execution"; docs/execution.md): algorithms
(``place_algo``, ``cancel_algo``, ``get_algos``), one-cancels-other groups (``place_oco``) and exits
attached to a position (``protect_position``). Errors as place_order's (``bad_order``,
``refused``, ``not_connected``, ``conflict``, ``unknown_order`` ...)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from ib_async import Contract

from trader.book import build_order_ref
from trader.execution import builders
from trader.execution.algos import Plan
from trader.execution.iceberg import IcebergPlan
from trader.execution.twap import TwapPlan
from trader.messaging.rpc import MethodRegistry
from trader.service import mapping as mp
from trader.service.algo_runner import RunningAlgo
from trader.service.orders import BadOrder, OrderSpec, Placed, PlaceRequest, TraderError, check_spec

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

ALGOS: Final = ("twap", "iceberg")
STYLES: Final = {"limit": "limit_at_touch", "limit_at_touch": "limit_at_touch", "market": "market"}
CONTRACT_KEYS: Final = ("symbol", "con_id", "sec_type", "exchange", "currency", "expiry")
OCO_KEYS: Final = frozenset(
    {
        *CONTRACT_KEYS,
        *("action", "quantity", "order_type", "limit_price", "stop_price", "trail_amount"),
        *("trail_percent", "trail_stop_price", "limit_offset", "tif", "outside_rth", "account"),
    }
)
"""What one order of ``place_oco`` may hold (place_order's params without brackets and cash)."""


def end_time(duration_s: float | None, end: float | str | None, now: float) -> float:
    """The end of a TWAP in epoch seconds: ``now + duration_s``, or ``end`` (epoch seconds, or an
    ISO time; naive is UTC)."""
    if (duration_s is None) == (end is None):
        raise BadOrder("give exactly one of duration_s and end")
    if duration_s is not None:
        if not duration_s > 0:
            raise BadOrder(f"duration_s must be a positive number, got {duration_s!r}")
        return now + float(duration_s)
    if isinstance(end, str):
        try:
            parsed = datetime.fromisoformat(end.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadOrder(f"end must be epoch seconds or an ISO time, got {end!r}") from None
        value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        value = float(end or 0)
    if value <= now:
        raise BadOrder(f"end {end!r} is not in the future")
    return value


def check_terms(
    kind: str,
    *,
    duration_s: float | None,
    end: float | str | None,
    style: str,
    display: float | None,
    limit_price: float | None,
) -> None:
    """The params that belong to the algorithm ``kind`` (BadOrder naming the stray ones)."""
    if kind == "twap":
        if display is not None or limit_price is not None:
            raise BadOrder("display and limit_price are iceberg params (a twap works at the touch)")
        if style.lower() not in STYLES:
            raise BadOrder(f"style must be limit or market; got {style!r}")
        if (duration_s is None) == (end is None):
            raise BadOrder("a twap needs exactly one of duration_s and end")
    else:
        if display is None or limit_price is None:
            raise BadOrder("an iceberg needs display and limit_price")
        if duration_s is not None or end is not None:
            raise BadOrder("duration_s / end are twap params")


def make_plan(
    kind: str,
    parent_id: str,
    side: str,
    quantity: float,
    lot_size: float,
    *,
    duration_s: float | None,
    end: float | str | None,
    slices: int,
    style: str,
    display: float | None,
    limit_price: float | None,
) -> Plan:
    """The plan of a checked :func:`check_terms` request; a TWAP starts now."""
    if kind == "twap":
        now = time.time()
        end_at = end_time(duration_s, end, now)
        return TwapPlan(
            quantity, side, now, end_at, slices, STYLES[style.lower()], parent_id=parent_id, lot_size=lot_size
        )
    assert display is not None and limit_price is not None
    return IcebergPlan(quantity, display, side, limit_price, parent_id=parent_id, lot_size=lot_size)


def _placed(result: Placed) -> dict[str, Any]:
    return {"created": result.created, "order": mp.order_record(result.orders[0])}


async def _contract_from(app: TraderApp, params: dict[str, Any]) -> Contract:
    from trader.service.trader_api import contract_of  # noqa: PLC0415 (trader_api imports this)

    return await contract_of(
        app,
        params.get("symbol"),
        params.get("con_id"),
        sec_type=params.get("sec_type") or "STK",
        exchange=params.get("exchange") or "SMART",
        currency=params.get("currency") or "USD",
        expiry=params.get("expiry") or "",
    )


def _check_ids(strategy: str, client_order_id: str) -> None:
    """BadOrder for a strategy name or client order id the book would refuse."""
    try:
        build_order_ref(strategy, client_order_id)
    except ValueError as exc:
        raise BadOrder(str(exc)) from None


def _require_connected(app: TraderApp) -> None:
    if not app.session.connected:
        raise TraderError("not_connected", str(app.gate.connection(app.gate_context())))


Method = Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]


def register(registry: MethodRegistry, app: TraderApp) -> None:
    from trader.service.trader_api import _method  # noqa: PLC0415 (trader_api imports this module)

    method = functools.partial(_method, registry)
    _algos(method, app)
    _oco(method, app)
    _protect(method, app)


def _algos(method: Method, app: TraderApp) -> None:
    runner = app.algos
    contract_from = functools.partial(_contract_from, app)

    def require_connected() -> None:
        _require_connected(app)

    @method("place_algo", shield=True)
    async def place_algo(
        *,
        strategy: str,
        client_order_id: str,
        algo: str,
        action: str,
        quantity: float | None = None,
        cash_amount: float | None = None,
        symbol: str | None = None,
        con_id: int | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
        duration_s: float | None = None,
        end: float | str | None = None,
        slices: int = 10,
        style: str = "limit",
        display: float | None = None,
        limit_price: float | None = None,
        account: str = "",
        wait_s: float = 2.0,
    ) -> dict[str, Any]:
        """Run an execution algorithm as one parent order (children <id>.1, <id>.2 ..., each
        through the risk gate): twap (duration_s or end, slices, style limit|market) or iceberg
        (display, limit_price). Once per client order id: a repeat returns the running parent
        (created false). The whole parent is checked by the gate first (trading state, max order
        quantity and notional). wait_s: wait that long for the first children to be sent."""
        kind = algo.strip().lower()
        if kind not in ALGOS:
            raise BadOrder(f"algo must be one of {', '.join(ALGOS)}; got {algo!r}")
        if (quantity is None) == (cash_amount is None):
            raise BadOrder("give exactly one of quantity and cash_amount")
        _check_ids(strategy, client_order_id)
        side = builders.normal("action", action, builders.ACTIONS)
        existing = runner.algos.get(client_order_id)
        if existing is not None:
            if existing.strategy != strategy or existing.plan.side != side:
                what = f"{existing.strategy}'s {existing.plan.side} {existing.plan.algo}"
                raise TraderError("conflict", f"client order id {client_order_id} is {what}")
            return {"created": False, "algo": existing.record()}
        if app.book.get(client_order_id) is not None or app.book.get(f"{client_order_id}.1") is not None:
            raise TraderError(
                "conflict", f"client order id {client_order_id} is already used by orders in the book"
            )
        check_terms(
            kind, duration_s=duration_s, end=end, style=style, display=display, limit_price=limit_price
        )
        require_connected()
        contract = await contract_from(
            {"symbol": symbol, "con_id": con_id, "sec_type": sec_type, "exchange": exchange}
            | {"currency": currency, "expiry": expiry}
        )
        rules = await app.desk.lot_rules(contract)
        if cash_amount is not None:
            spec = OrderSpec(side, 1.0, "LMT" if limit_price else "MKT", limit_price=limit_price)
            quantity = await app.desk.size_cash(contract, spec, cash_amount)
        assert quantity is not None
        plan = make_plan(
            kind, client_order_id, side, quantity, rules.lot_size,
            duration_s=duration_s, end=end, slices=slices, style=style, display=display,
            limit_price=limit_price,
        )  # fmt: skip
        if client_order_id in runner.algos:  # placed meanwhile (a resend while we awaited)
            return {"created": False, "algo": runner.algos[client_order_id].record()}
        await runner.check_parent(strategy, client_order_id, contract, plan)
        running = RunningAlgo(strategy, plan, contract, account)
        runner.start(running)
        if wait_s > 0:
            await runner.settled(running, wait_s)
        return {"created": True, "algo": running.record()}

    @method("cancel_algo", shield=True)
    async def cancel_algo(
        *, client_order_id: str, strategy: str | None = None, wait_s: float = 0.0
    ) -> dict[str, Any]:
        """Stop an algorithm: every working child is cancelled; the parent is done once none works
        (reason cancelled). wait_s: wait that long for it to be done."""
        running = runner.cancel(client_order_id, strategy)
        if wait_s > 0 and not running.plan.done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.finished.wait(), wait_s)
        return {"algo": running.record()}

    @method("get_algos")
    def get_algos(
        *, strategy: str | None = None, active_only: bool = False, client_order_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Algorithm parents (of one strategy, running ones, or one), each with its children."""
        if client_order_id is not None:
            return [runner.get(client_order_id, strategy).record()]
        return runner.records(strategy, active_only)


def _oco(method: Method, app: TraderApp) -> None:
    contract_from = functools.partial(_contract_from, app)

    def require_connected() -> None:
        _require_connected(app)

    @method("place_oco", shield=True)
    async def place_oco(
        *,
        strategy: str,
        client_order_id: str,
        orders: list[dict[str, Any]],
        oca_type: int = 1,
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """Orders in one OCA group: the first to fill cancels the others (oca_type 1; 2 and 3
        reduce them instead). Each of orders is a place_order-like map (symbol, action, quantity,
        order_type, prices, tif ...; no brackets, no cash_amount); they are placed as
        <client_order_id>.1, .2 ... in OCA group oca:<client_order_id>. All are checked before
        any is sent; if one is refused the ones placed are cancelled. Once per client order id."""
        _check_ids(strategy, client_order_id)
        if len(orders) < 2:
            raise BadOrder(f"one-cancels-other needs at least 2 orders, got {len(orders)}")
        if oca_type not in builders.OCA_TYPES:
            raise BadOrder(f"oca_type must be one of 1, 2, 3; got {oca_type!r}")
        specs: list[tuple[dict[str, Any], OrderSpec]] = []
        for i, terms in enumerate(orders, 1):
            unknown = sorted(set(terms) - OCO_KEYS)
            if unknown:
                raise BadOrder(f"order {i}: unknown or unsupported terms {', '.join(unknown)}")
            if "action" not in terms or "quantity" not in terms:
                raise BadOrder(f"order {i}: action and quantity are required")
            fields = {f.name for f in dataclasses.fields(OrderSpec)}
            try:
                raw = OrderSpec(**{k: v for k, v in terms.items() if k in fields})
                specs.append((terms, check_spec(raw)))
            except (BadOrder, TypeError, ValueError) as exc:
                raise BadOrder(f"order {i}: {exc}") from None
        ids = [f"{client_order_id}.{i}" for i in range(1, len(specs) + 1)]
        known = [app.book.get(i) for i in ids]
        if all(o is not None for o in known):  # a repeat
            return {"created": False, "oca_group": f"oca:{client_order_id}", "orders": [
                mp.order_record(o) for o in known if o is not None
            ]}  # fmt: skip
        require_connected()
        contracts = [await contract_from(terms) for terms, _ in specs]
        group = f"oca:{client_order_id}"
        placed: list[Placed] = []
        try:
            for coid, (terms, spec), contract in zip(ids, specs, contracts, strict=True):
                request = PlaceRequest(
                    strategy, coid, contract, spec, account=str(terms.get("account") or ""),
                    oca_group=group, oca_type=oca_type,
                )  # fmt: skip
                placed.append(await app.desk.place(request))
        except Exception:
            for done in placed:  # all or none: the group is incomplete
                order = done.orders[0]
                if not order.state.is_done:
                    with contextlib.suppress(TraderError):
                        app.desk.cancel(order.client_order_id)
            raise
        if wait_s > 0:
            acked = ("Initialized", "PendingSubmit", "ApiPending")
            for coid in ids:
                await app.desk.wait(coid, lambda o: str(o.state) not in acked, wait_s)
        return {
            "created": any(p.created for p in placed),
            "oca_group": group,
            "orders": [mp.order_record(app.book.order(coid)) for coid in ids],
        }


def _protect(method: Method, app: TraderApp) -> None:
    contract_from = functools.partial(_contract_from, app)

    def require_connected() -> None:
        _require_connected(app)

    @method("protect_position", shield=True)
    async def protect_position(
        *,
        strategy: str,
        symbol: str | None = None,
        con_id: int | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
        stop_price: float | None = None,
        limit_price: float | None = None,
        trail_amount: float | None = None,
        trail_percent: float | None = None,
        limit_offset: float | None = None,
        tif: str = "GTC",
        client_order_id: str | None = None,
        account: str = "",
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """A stop-loss (stop_price, + limit_price: STP LMT) or a trailing stop (trail_amount or
        trail_percent, + limit_offset: TRAIL LIMIT) closing the strategy's position in the
        instrument: the opposite side, its size now, GTC by default. A stop on the wrong side of
        the market (it would trigger at once) is bad_order. client_order_id: default
        protect-<strategy>-<conId>-<ns>."""
        stops = [v for v in (stop_price, trail_amount, trail_percent) if v is not None]
        if len(stops) != 1:
            raise BadOrder("give exactly one of stop_price, trail_amount and trail_percent")
        require_connected()
        contract = await contract_from(
            {"symbol": symbol, "con_id": con_id, "sec_type": sec_type, "exchange": exchange}
            | {"currency": currency, "expiry": expiry}
        )
        cid = int(contract.conId)
        acct = account or app.session.account
        held = sum(
            p.quantity
            for p in app.book.positions.positions(strategy=strategy, con_id=cid, include_flat=False)
            if not acct or p.account == acct
        )
        if stop_price is not None:
            kind = "STP" if limit_price is None else "STP LMT"
        else:
            kind = "TRAIL" if limit_offset is None else "TRAIL LIMIT"
        raw = OrderSpec(
            "SELL", 1.0, kind, limit_price=limit_price, stop_price=stop_price, trail_amount=trail_amount,
            trail_percent=trail_percent, limit_offset=limit_offset, tif=tif,
        )  # fmt: skip
        mark = app.marks.get(cid)
        if mark is None:  # no ticks: a snapshot, else the last price seen (a fill's)
            try:
                mark = await app.desk.price(contract)
            except Exception:
                mark = app.risk.marks().get(cid)
        built = builders.exit_for_position(held, raw, mark=mark)  # BadOrder: flat, wrong side
        spec = check_spec(dataclasses.replace(raw, action=str(built.action), quantity=abs(held)))
        coid = client_order_id or f"protect-{strategy}-{cid}-{time.time_ns()}"
        _check_ids(strategy, coid)
        result = await app.desk.place(PlaceRequest(strategy, coid, contract, spec, account=account))
        if wait_s > 0 and result.created:
            acked = ("Initialized", "PendingSubmit", "ApiPending")
            await app.desk.wait(coid, lambda o: str(o.state) not in acked, wait_s)
            result = Placed(result.created, [app.book.order(coid)])
        return _placed(result) | {"position": held}
