"""``cli.py trade twap|iceberg|algos|cancel-algo|oco|protect``: execution through the trader service.

``trade twap`` / ``trade iceberg`` are ``place_algo`` (docs/execution.md), ``trade algos`` is
``get_algos``, ``trade cancel-algo`` ``cancel_algo``, ``trade oco`` ``place_oco`` (a take-profit
limit and a stop on the same side, one cancels the other) and ``trade protect``
``protect_position``. Strategy ``manual`` unless ``--strategy``; client order ids
``cli-<UTC time>-<hex>`` as for ``trade buy``. On a live account each is confirmed first (or
``--yes``). Registered under ``trade`` by trader/cli/main.py.
"""

from __future__ import annotations

import re
from typing import Any, Final

import click
from rich.console import RenderableType
from rich.text import Text

from trader.cli.account_cmd import qty
from trader.cli.book_cmd import order_line
from trader.cli.client import CALL_TIMEOUT_S, trader_client
from trader.cli.output import Outcome, failure, outcome_command, success
from trader.cli.trade_cmd import MANUAL, confirm_live, new_client_order_id

DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
UNIT_S: Final = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str) -> float:
    """``90`` / ``90s`` / ``10m`` / ``1.5h`` -> seconds; click.BadParameter otherwise."""
    match = DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise click.BadParameter(f"expected a duration like 30s, 10m or 1h; got {text!r}")
    return float(match.group(1)) * UNIT_S[(match.group(2) or "s").lower()]


def _side(buy: bool, sell: bool) -> str:
    if buy == sell:
        raise click.UsageError("give exactly one of --buy and --sell")
    return "BUY" if buy else "SELL"


def algo_line(algo: dict[str, Any]) -> str:
    """``twap BUY 100 AAPL (manual, cli-...): running, 42 filled, 58 working``."""
    head = f"{algo.get('algo')} {algo.get('action')} {qty(algo.get('quantity'))} {algo.get('symbol')}"
    who = f"({algo.get('strategy')}, {algo.get('client_order_id')})"
    state = str(algo.get("state"))
    if algo.get("reason"):
        state += f" ({algo['reason']})"
    tail = f"{qty(algo.get('filled'))} filled, {qty(algo.get('working'))} working"
    return f"{head} {who}: {state}, {tail}"


def _render_algo(algo: dict[str, Any]) -> RenderableType:
    lines = [algo_line(algo)]
    for child in algo.get("children") or []:
        price = f" {child['limit_price']:g}" if child.get("limit_price") else ""
        lines.append(
            f"  {child['client_order_id']}: {child['order_type']}{price} {qty(child['quantity'])}, "
            f"{qty(child['filled'])} filled, {child['state']}"
        )
    lines += [f"  error: {e}" for e in algo.get("errors") or []]
    return Text("\n".join(lines))


def _contract_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--symbol", required=True, help="AAPL; ES with --sec-type FUT."),
            click.option("--strategy", default=MANUAL, show_default=True, help="The order's owner."),
            click.option("--sec-type", default="STK", show_default=True),
            click.option("--exchange", default="SMART", show_default=True),
            click.option("--currency", default="USD", show_default=True),
            click.option("--expiry", default="", help="Futures/options expiry (202612)."),
            click.option("--yes", is_flag=True, help="Do not ask for confirmation on a live account."),
        ]
    ):
        fn = option(fn)
    return fn


def _side_options(fn: Any) -> Any:
    fn = click.option("--sell", is_flag=True, help="Sell.")(fn)
    fn = click.option("--buy", is_flag=True, help="Buy.")(fn)
    return click.option("--quantity", type=click.FloatRange(0, min_open=True), required=True)(fn)


def _contract(opts: dict[str, Any]) -> dict[str, Any]:
    keys = ("symbol", "sec_type", "exchange", "currency")
    return {k: str(opts[k]).upper() for k in keys} | {"expiry": opts["expiry"]}


def _place_algo(params: dict[str, Any], yes: bool) -> Outcome:
    what = f"{params['algo']} {params['action']} {params['quantity']:g} {params['symbol']}"
    with trader_client() as client:
        confirm_live(client, f"{what} ({params['strategy']}, {params['client_order_id']})", yes)
        reply: dict[str, Any] = client.call("place_algo", timeout=CALL_TIMEOUT_S + 5, **params)
    return success(reply["algo"], human=_render_algo)


@click.command("twap")
@_contract_options
@_side_options
@click.option("--duration", required=True, help="Over how long: 30s, 10m, 1h.")
@click.option("--slices", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option(
    "--style",
    type=click.Choice(["limit", "market"], case_sensitive=False),
    default="limit",
    show_default=True,
    help="limit: one passive limit at the touch, raised each slice; market: a market order per slice.",
)
@outcome_command
def twap_command(**opts: Any) -> Outcome:
    """TWAP: --quantity in --slices equal slices over --duration, the rest at market at the end.

    Runs in the trader as one parent (its children <id>.1, <id>.2 ... each pass the risk gate);
    follow it with 'trade algos', stop it with 'trade cancel-algo --order-id ID'."""
    params = _contract(opts) | {
        "strategy": opts["strategy"],
        "client_order_id": new_client_order_id(),
        "algo": "twap",
        "action": _side(opts["buy"], opts["sell"]),
        "quantity": opts["quantity"],
        "duration_s": parse_duration(opts["duration"]),
        "slices": opts["slices"],
        "style": opts["style"].lower(),
    }
    return _place_algo(params, opts["yes"])


@click.command("iceberg")
@_contract_options
@_side_options
@click.option("--display", type=click.FloatRange(0, min_open=True), required=True, help="Shown at a time.")
@click.option("--limit", type=click.FloatRange(0, min_open=True), required=True, help="Limit price.")
@outcome_command
def iceberg_command(**opts: Any) -> Outcome:
    """Iceberg: --quantity at --limit, never more than --display working; the next child once one
    is filled."""
    params = _contract(opts) | {
        "strategy": opts["strategy"],
        "client_order_id": new_client_order_id(),
        "algo": "iceberg",
        "action": _side(opts["buy"], opts["sell"]),
        "quantity": opts["quantity"],
        "display": opts["display"],
        "limit_price": opts["limit"],
    }
    return _place_algo(params, opts["yes"])


@click.command("algos")
@click.option("--strategy", help="Only this strategy's algorithms.")
@click.option("--active", is_flag=True, help="Only the running ones.")
@click.option("--order-id", "client_order_id", help="One algorithm, with its children.")
@outcome_command
def algos_command(strategy: str | None, active: bool, client_order_id: str | None) -> Outcome:
    """Algorithms the trader runs (get_algos): one line per parent; with --order-id its children."""
    with trader_client() as client:
        params: dict[str, Any] = {"strategy": strategy, "active_only": active}
        if client_order_id:
            params["client_order_id"] = client_order_id
        algos: list[dict[str, Any]] = client.call("get_algos", **params)

    def render(rows: list[dict[str, Any]]) -> RenderableType:
        if not rows:
            return Text("no algorithms")
        if client_order_id:
            return _render_algo(rows[0])
        return Text("\n".join(algo_line(a) for a in rows))

    return success(algos, human=render)


@click.command("cancel-algo")
@click.option("--order-id", "client_order_id", required=True, help="The algorithm's client order id.")
@click.option("--strategy", help="Refuse unless the algorithm is this strategy's.")
@click.option("--wait", type=click.FloatRange(0, 120), default=5.0, show_default=True)
@outcome_command
def cancel_algo_command(client_order_id: str, strategy: str | None, wait: float) -> Outcome:
    """Stop an algorithm: its working children are cancelled (cancel_algo)."""
    with trader_client() as client:
        reply: dict[str, Any] = client.call(
            "cancel_algo",
            client_order_id=client_order_id,
            strategy=strategy,
            wait_s=wait,
            timeout=CALL_TIMEOUT_S + wait,
        )
    algo = reply["algo"]
    if algo["state"] != "done":
        message = f"algo {client_order_id} is still {algo['state']} after {wait:g}s"
        return failure(message, data=algo, code="not_cancelled", human=_render_algo)
    return success(algo, human=_render_algo)


@click.command("oco")
@_contract_options
@_side_options
@click.option("--limit", type=click.FloatRange(0, min_open=True), required=True, help="The limit leg.")
@click.option("--stop", type=click.FloatRange(0, min_open=True), required=True, help="The stop leg.")
@click.option("--tif", type=click.Choice(["DAY", "GTC"], case_sensitive=False), default="GTC")
@outcome_command
def oco_command(**opts: Any) -> Outcome:
    """One-cancels-other: a limit and a stop for --quantity on the same side (e.g. a take-profit and
    a stop-loss of a long: --sell); the first to fill cancels the other (place_oco)."""
    action = _side(opts["buy"], opts["sell"])
    contract = _contract(opts)
    base = contract | {"action": action, "quantity": opts["quantity"], "tif": opts["tif"].upper()}
    orders = [
        base | {"order_type": "LMT", "limit_price": opts["limit"]},
        base | {"order_type": "STP", "stop_price": opts["stop"]},
    ]
    coid = new_client_order_id()
    with trader_client() as client:
        legs = f"LMT {opts['limit']:g} / STP {opts['stop']:g}"
        what = f"OCO {action} {opts['quantity']:g} {contract['symbol']} {legs}"
        confirm_live(client, what, opts["yes"])
        reply: dict[str, Any] = client.call(
            "place_oco", strategy=opts["strategy"], client_order_id=coid, orders=orders, wait_s=5.0,
            timeout=CALL_TIMEOUT_S + 5,
        )  # fmt: skip
    return success(reply, human=lambda r: Text("\n".join(order_line(o) for o in r["orders"])))


@click.command("protect")
@_contract_options
@click.option("--stop", type=click.FloatRange(0, min_open=True), help="Stop-loss at this price.")
@click.option("--trail-pct", type=click.FloatRange(0, 100, min_open=True, max_open=True), help="Trailing %.")
@click.option("--trail-amount", type=click.FloatRange(0, min_open=True), help="Trailing, price units.")
@outcome_command
def protect_command(**opts: Any) -> Outcome:
    """A stop-loss or trailing stop closing the strategy's position in --symbol (GTC, sized to the
    position now: protect_position)."""
    stops = {k: opts[k] for k in ("stop", "trail_pct", "trail_amount") if opts[k] is not None}
    if len(stops) != 1:
        raise click.UsageError("give exactly one of --stop, --trail-pct and --trail-amount")
    names = {"stop": "stop_price", "trail_pct": "trail_percent", "trail_amount": "trail_amount"}
    params = _contract(opts) | {names[k]: v for k, v in stops.items()} | {"strategy": opts["strategy"]}
    params["client_order_id"] = new_client_order_id()
    with trader_client() as client:
        confirm_live(client, f"protect {opts['strategy']}'s {params['symbol']} position", opts["yes"])
        reply: dict[str, Any] = client.call(
            "protect_position", wait_s=5.0, timeout=CALL_TIMEOUT_S + 5, **params
        )
    return success(reply, human=lambda r: Text(f"protect {order_line(r['order'])}"))


ALGO_COMMANDS: Final = (
    twap_command,
    iceberg_command,
    algos_command,
    cancel_algo_command,
    oco_command,
    protect_command,
)
"""Added to the ``trade`` group by trader/cli/main.py."""
