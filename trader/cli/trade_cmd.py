"""``cli.py trade ...``: place, modify and cancel orders through the trader service.

``trade buy|sell`` is ``place_order`` (docs/rpc.md) for strategy ``manual`` unless ``--strategy``,
with a fresh client order id ``cli-<UTC yyyymmddHHMMSS>-<6 hex>``; ``trade modify`` is
``modify_order``, ``trade cancel`` ``cancel_order`` and ``trade cancel-all`` ``cancel_all``.

On an account that is not a paper account (paper ids start with ``D``: DU1234567), an order or a
modification is only sent after ``click.confirm`` (or with ``--yes``); the account comes from the
trader's ``status``. After the reply the order's state is printed; a market or IOC order is
followed (``get_orders``) until it is done or ``--wait`` seconds passed. An order the trader
refuses, or that IB rejects, is its reason on stderr and exit 1; bad option combinations are click
usage errors (exit 2); a trader that does not answer is exit 2.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import RenderableType
from rich.text import Text

from trader.cli.book_cmd import DONE, FAILED, cancel, one_line, order_line, order_terms
from trader.cli.client import CALL_TIMEOUT_S, TraderClient, trader_client
from trader.cli.output import CliFailure, Outcome, failure, outcome_command, success

MANUAL = "manual"
TIFS = ("DAY", "GTC", "IOC")
ORDER_TYPES_HELP = "--market, --limit P, --stop P [--limit P], --trail-pct X or --trail-amount X"
CHILD_LABELS = {".tp": "take profit", ".sl": "stop loss"}


def new_client_order_id(now: datetime | None = None) -> str:
    """``cli-20260114093102-3fa9c1``: the UTC time and 6 random hex digits."""
    return f"cli-{(now or datetime.now(UTC)):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def order_type_params(
    market: bool, limit: float | None, stop: float | None, trail_pct: float | None, trail_amount: float | None
) -> dict[str, Any]:
    """The order type and its prices for place_order; click.UsageError unless exactly one type."""
    kinds = ["--market"] if market else []
    if stop is not None:
        kinds.append("--stop --limit" if limit is not None else "--stop")
    elif limit is not None:
        kinds.append("--limit")
    kinds += [name for name, value in (("--trail-pct", trail_pct), ("--trail-amount", trail_amount)) if value]
    if len(kinds) != 1:
        got = f" (got {' and '.join(kinds)})" if kinds else ""
        raise click.UsageError(f"give exactly one order type: {ORDER_TYPES_HELP}{got}")
    if market:
        return {"order_type": "MKT"}
    if trail_pct is not None:
        return {"order_type": "TRAIL", "trail_percent": trail_pct}
    if trail_amount is not None:
        return {"order_type": "TRAIL", "trail_amount": trail_amount}
    if stop is not None and limit is not None:
        return {"order_type": "STP LMT", "stop_price": stop, "limit_price": limit}
    if stop is not None:
        return {"order_type": "STP", "stop_price": stop}
    return {"order_type": "LMT", "limit_price": limit}


def round_price(value: float, sec_type: str) -> float:
    """``value`` at a plausible tick: the RPC gives no min tick, so 2 decimals (4 below 1.00, 5 for FX)."""
    decimals = 5 if sec_type.upper() == "CASH" else 2 if abs(value) >= 1 else 4
    return round(value, decimals)


def stop_loss_from_pct(action: str, reference: float, pct: float, sec_type: str) -> float:
    """BUY: ``reference * (1 - pct/100)``; SELL: ``reference * (1 + pct/100)``, rounded."""
    factor = 1 - pct / 100 if action == "BUY" else 1 + pct / 100
    return round_price(reference * factor, sec_type)


def _finite(value: Any) -> float | None:
    ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def reference_price(client: TraderClient, params: dict[str, Any]) -> float:
    """The order's limit (or stop) price, else a snapshot's mid, else its last trade."""
    for key in ("limit_price", "stop_price"):
        if params.get(key) is not None:
            return float(params[key])
    contract = {k: params[k] for k in ("symbol", "sec_type", "exchange", "currency", "expiry")}
    snap = client.call("snapshot", **contract)
    bid, ask, last = _finite(snap.get("bid")), _finite(snap.get("ask")), _finite(snap.get("last"))
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    if last is not None:
        return last
    message = f"no quote for {params['symbol']} to compute --stop-loss-pct from: give --limit or --stop-loss"
    raise CliFailure(failure(message, code="no_price"))


def describe(params: dict[str, Any]) -> str:
    size = f"{params['quantity']:g}" if "quantity" in params else f"${params['cash_amount']:,.2f} of"
    terms = order_terms({"order_type": params["order_type"], "tif": params["tif"]} | _prices(params))
    extras = [
        f"{name} {params[key]}" for key, name in (("take_profit", "TP"), ("stop_loss", "SL")) if key in params
    ]
    text = " ".join([params["action"], size, params["symbol"], terms, *extras])
    return f"{text} ({params['strategy']}, {params['client_order_id']})"


def _prices(params: dict[str, Any]) -> dict[str, Any]:
    aux = params.get("stop_price", params.get("trail_amount"))
    return {"limit_price": params.get("limit_price"), "aux_price": aux}


def confirm_live(client: TraderClient, what: str, yes: bool) -> str:
    """The account; on a non-paper one (id not starting with D) ask first unless ``yes``."""
    account = str((client.call("status").get("ib") or {}).get("account") or "")
    if yes or account.startswith("D"):
        return account
    where = f"LIVE account {account}" if account else "an account the trader has not identified yet"
    try:
        confirmed = click.confirm(f"{what} on {where}: send it?", default=False, err=True)
    except click.Abort:
        confirmed = False
    if not confirmed:
        raise CliFailure(failure("order not sent", code="not_confirmed"))
    return account


def follow(client: TraderClient, order: dict[str, Any], until: float) -> dict[str, Any]:
    """``order`` polled with get_orders until it is done or ``until`` (monotonic) passed."""
    while order.get("state") not in DONE and time.monotonic() < until:
        time.sleep(0.1)
        (order,) = client.call("get_orders", client_order_id=order["client_order_id"])
    return order


def _render_placed(reply: dict[str, Any]) -> RenderableType:
    lines = [order_line(reply["order"])]
    if not reply.get("created", True):
        lines[0] += "  (already placed: this client order id exists)"
    for child in reply.get("children") or []:
        label = CHILD_LABELS.get(child["client_order_id"][-3:], "child")
        lines.append(f"  {label}: {order_line(child)}")
    return Text("\n".join(lines))


def place(params: dict[str, Any], stop_loss_pct: float | None, yes: bool, wait: float) -> Outcome:
    """Confirm if live, place, follow; the reply with the order's latest state."""
    coid = params["client_order_id"]
    with trader_client() as client:
        if stop_loss_pct is not None:
            reference = reference_price(client, params)
            params["stop_loss"] = stop_loss_from_pct(
                params["action"], reference, stop_loss_pct, params["sec_type"]
            )
        confirm_live(client, describe(params), yes)
        started = time.monotonic()
        try:
            reply: dict[str, Any] = client.call("place_order", timeout=CALL_TIMEOUT_S + wait, **params)
        except CliFailure as exc:
            if exc.outcome.code != "unavailable":
                raise
            message = (
                f"the trader service did not answer place_order at {client.endpoint}: order {coid} may "
                f"have been placed (check: cli.py book log --order-id {coid})"
            )
            raise CliFailure(failure(message, code="unavailable", exit_code=2)) from None
        order = reply["order"]
        if params["order_type"] == "MKT" or params["tif"] == "IOC":
            order = follow(client, order, started + wait)
        children = [
            client.call("get_orders", client_order_id=c["client_order_id"])[0] for c in reply["children"]
        ]
    reply = reply | {"order": order, "children": children}
    if order.get("state") in FAILED:
        reason = one_line(order.get("reason")) or "no reason given"
        message = f"order {coid} {order['state']}: {reason}"
        return failure(message, data=reply, code=str(order["state"]).lower(), human=_render_placed)
    return success(reply, human=_render_placed)


# -- the group ------------------------------------------------------------------------------------------


@click.group("trade")
def trade_group() -> None:
    """Place, modify and cancel orders (strategy 'manual' unless --strategy)."""


def _order_options(fn: Any) -> Any:
    options = [
        click.option(
            "--symbol", required=True, help="AAPL; ES with --sec-type FUT; EUR with --sec-type CASH."
        ),
        click.option("--market", is_flag=True, help="Market order."),
        click.option("--limit", type=float, help="Limit price (with --stop: a stop-limit order)."),
        click.option("--stop", type=float, help="Stop price."),
        click.option("--trail-pct", type=float, help="Trailing stop, trail in percent."),
        click.option("--trail-amount", type=float, help="Trailing stop, trail in price units."),
        click.option("--quantity", type=float, help="Shares / contracts."),
        click.option("--amount", type=float, help="Cash to spend: the trader sizes the quantity."),
        click.option(
            "--tif", type=click.Choice(TIFS, case_sensitive=False), default="DAY", show_default=True
        ),
        click.option("--take-profit", type=float, help="Bracket: a take-profit limit at this price."),
        click.option("--stop-loss", type=float, help="Bracket: a stop-loss at this price."),
        click.option(
            "--stop-loss-pct",
            type=click.FloatRange(0, 100, min_open=True, max_open=True),
            help="Bracket: a stop-loss X% from the limit/stop price (else the quote's mid or last), "
            "rounded to 0.01 (the RPC gives no tick size).",
        ),
        click.option("--strategy", default=MANUAL, show_default=True, help="The order's owner."),
        click.option("--outside-rth", is_flag=True, help="May trigger/fill outside regular trading hours."),
        click.option("--sec-type", default="STK", show_default=True),
        click.option("--exchange", default="SMART", show_default=True),
        click.option("--currency", default="USD", show_default=True),
        click.option("--expiry", default="", help="Futures/options expiry (202612)."),
        click.option("--yes", is_flag=True, help="Do not ask for confirmation on a live account."),
        click.option(
            "--wait",
            type=click.FloatRange(0, 120),
            default=5.0,
            show_default=True,
            help="Seconds to wait for IB (a market/IOC order: until it is done).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _order(action: str, opts: dict[str, Any]) -> Outcome:
    params: dict[str, Any] = {
        "strategy": opts["strategy"],
        "client_order_id": new_client_order_id(),
        "action": action,
        "symbol": opts["symbol"],
        "sec_type": opts["sec_type"].upper(),
        "exchange": opts["exchange"].upper(),
        "currency": opts["currency"].upper(),
        "expiry": opts["expiry"],
        "tif": opts["tif"].upper(),
        "outside_rth": opts["outside_rth"],
        "wait_s": opts["wait"],
    }
    params |= order_type_params(
        opts["market"], opts["limit"], opts["stop"], opts["trail_pct"], opts["trail_amount"]
    )
    if (opts["quantity"] is None) == (opts["amount"] is None):
        raise click.UsageError("give exactly one of --quantity N and --amount USD")
    params |= (
        {"quantity": opts["quantity"]} if opts["quantity"] is not None else {"cash_amount": opts["amount"]}
    )
    if opts["stop_loss"] is not None and opts["stop_loss_pct"] is not None:
        raise click.UsageError("give at most one of --stop-loss P and --stop-loss-pct X")
    for key in ("take_profit", "stop_loss"):
        if opts[key] is not None:
            params[key] = opts[key]
    return place(params, opts["stop_loss_pct"], opts["yes"], opts["wait"])


@trade_group.command("buy")
@_order_options
@outcome_command
def buy_command(**opts: Any) -> Outcome:
    """Buy: exactly one order type and one of --quantity / --amount.

    The order gets a new client order id (cli-<UTC time>-<hex>) and belongs to strategy 'manual'
    unless --strategy. On a live (non-paper) account it is sent only once confirmed (or --yes).
    Prints the order's state after IB's answer; an order refused or rejected is exit 1."""
    return _order("BUY", opts)


@trade_group.command("sell")
@_order_options
@outcome_command
def sell_command(**opts: Any) -> Outcome:
    """Sell (or sell short): exactly one order type and one of --quantity / --amount.

    The order gets a new client order id (cli-<UTC time>-<hex>) and belongs to strategy 'manual'
    unless --strategy. On a live (non-paper) account it is sent only once confirmed (or --yes).
    Prints the order's state after IB's answer; an order refused or rejected is exit 1."""
    return _order("SELL", opts)


@trade_group.command("cancel")
@click.option("--order-id", "client_order_id", required=True, help="The client order id.")
@click.option("--strategy", help="Refuse unless the order is this strategy's.")
@click.option(
    "--wait", type=click.FloatRange(0, 120), default=5.0, show_default=True, help="Seconds to wait."
)
@outcome_command
def cancel_command(client_order_id: str, strategy: str | None, wait: float) -> Outcome:
    """Cancel a working order by its client order id (cancel_order)."""
    return cancel(client_order_id, strategy, wait)


def _render_cancel_all(result: dict[str, Any]) -> RenderableType:
    if not result["cancelled"] and not result["errors"]:
        return Text("no working orders to cancel")
    lines = [f"cancel {order_line(o)}" for o in result["orders"]]
    lines += [f"not cancelled {coid}: {error}" for coid, error in sorted(result["errors"].items())]
    return Text("\n".join(lines))


@trade_group.command("cancel-all")
@click.option("--strategy", help="Only this strategy's orders (default: every strategy's).")
@click.option(
    "--wait", type=click.FloatRange(0, 120), default=5.0, show_default=True, help="Seconds to wait."
)
@outcome_command
def cancel_all_command(strategy: str | None, wait: float) -> Outcome:
    """Cancel every working order (of one strategy); orders placed outside Bourse are left alone."""
    with trader_client() as client:
        result: dict[str, Any] = client.call("cancel_all", strategy=strategy)
        until = time.monotonic() + wait
        orders = []
        for coid in sorted(result["cancelled"]):
            (order,) = client.call("get_orders", client_order_id=coid)
            orders.append(follow(client, order, until))
    result = result | {"orders": orders}
    if result["errors"]:
        message = f"{len(result['errors'])} orders not cancelled: " + "; ".join(
            f"{coid}: {one_line(error)}" for coid, error in sorted(result["errors"].items())
        )
        return failure(message, data=result, code="not_cancelled", human=_render_cancel_all)
    return success(result, human=_render_cancel_all)


def _differs(order: dict[str, Any], change: dict[str, Any]) -> list[str]:
    """The requested terms the order does not show (yet)."""
    fields = {"quantity": "quantity", "limit_price": "limit_price", "stop_price": "aux_price"}
    return [
        key
        for key, value in change.items()
        if order.get(fields[key]) is None or not math.isclose(float(order[fields[key]]), value, abs_tol=1e-9)
    ]


@trade_group.command("modify")
@click.option("--order-id", "client_order_id", required=True, help="The client order id.")
@click.option("--limit", type=float, help="New limit price.")
@click.option("--quantity", type=float, help="New total quantity.")
@click.option("--stop", type=float, help="New stop price.")
@click.option("--strategy", help="Refuse unless the order is this strategy's.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a live account.")
@click.option(
    "--wait", type=click.FloatRange(0, 120), default=5.0, show_default=True, help="Seconds to wait."
)
@outcome_command
def modify_command(
    *,
    client_order_id: str,
    limit: float | None,
    quantity: float | None,
    stop: float | None,
    strategy: str | None,
    yes: bool,
    wait: float,
) -> Outcome:
    """Change a working order's limit, stop or quantity (modify_order); IB confirms the new terms."""
    change = {
        key: value
        for key, value in (("limit_price", limit), ("quantity", quantity), ("stop_price", stop))
        if value is not None
    }
    if not change:
        raise click.UsageError("give at least one of --limit, --quantity and --stop")
    with trader_client() as client:
        (before,) = client.call("get_orders", client_order_id=client_order_id, strategy=strategy)
        terms = ", ".join(f"{k} {v:g}" for k, v in change.items())
        confirm_live(client, f"modify {order_line(before)} to {terms}", yes)
        reply: dict[str, Any] = client.call(
            "modify_order",
            client_order_id=client_order_id,
            strategy=strategy,
            wait_s=wait,
            timeout=CALL_TIMEOUT_S + wait,
            **change,
        )
    order = reply["order"]
    pending = _differs(order, change)
    if pending and order.get("reason") and order.get("reason") != before.get("reason"):
        message = f"modification of {client_order_id} not applied: {one_line(order['reason'])}"
        return failure(message, data=reply, code="not_modified", human=lambda r: Text(order_line(r["order"])))
    note = f"  (IB has not confirmed {', '.join(pending)} within {wait:g}s)" if pending else ""
    return success(reply, human=lambda r: Text(f"modified {order_line(r['order'])}{note}"))
