"""``cli.py book ...``: the trader's book of orders, trades and fills; cancel an order; its history.

``book orders`` is ``get_orders`` (working orders unless ``--all``), ``book trades`` is
``get_trades`` (orders with their fills), ``book fills`` is ``get_fills`` (the book's fills in time
order), ``book cancel`` is ``cancel_order`` and ``book log`` builds an order's history from
``get_trades``: the RPC offers no log of state changes (the store's ``orders`` audit log is not
queryable), so the history is what the order record and its fills carry: when it was placed, each
fill, and its last state with IB's last message. ``--json`` prints the RPC's records.

The order formatters here (:func:`order_line`, :func:`order_terms`) are shared with ``trade``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.account_cmd import fixed, num, price, qty, right, when
from trader.cli.client import CALL_TIMEOUT_S, trader_call
from trader.cli.output import Outcome, failure, outcome_command, success

DONE = ("Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected")
FAILED = ("Inactive", "Rejected")
STATE_STYLES = {
    "Filled": "green",
    "Submitted": "cyan",
    "PreSubmitted": "cyan",
    "PartiallyFilled": "yellow",
    "PendingCancel": "yellow",
    "PendingSubmit": "yellow",
    "Cancelled": "dim",
    "ApiCancelled": "dim",
    "Rejected": "bold red",
    "Inactive": "bold red",
    "Unknown": "dark_orange",
}


# -- order formatting (shared with trade) ---------------------------------------------------------------


def order_terms(order: dict[str, Any]) -> str:
    """``MKT``, ``LMT 181.50``, ``STP 200.00``, ``STP LMT 200.00 201.00``, ``TRAIL 40.00``; the tif
    unless DAY."""
    kind = order.get("order_type") or "?"
    parts = [kind]
    if kind in ("STP", "STP LMT", "TRAIL") and order.get("aux_price") is not None:
        parts.append(price(order["aux_price"]))
    if kind in ("LMT", "STP LMT") and order.get("limit_price") is not None:
        parts.append(price(order["limit_price"]))
    if order.get("tif") and order["tif"] != "DAY":
        parts.append(order["tif"])
    return " ".join(parts)


def order_state(order: dict[str, Any], with_reason: bool = False) -> str:
    """``Filled 10 @ 187.23``, ``Submitted``, ``PartiallyFilled 4/10 @ 90.10``, ``Rejected: why``
    (IB's last message only for a failed or lost order, unless ``with_reason``)."""
    state = str(order.get("state"))
    filled = order.get("filled") or 0.0
    text = state
    if filled:
        total = order.get("quantity")
        done = qty(filled) if state == "Filled" or total is None else f"{qty(filled)}/{qty(total)}"
        text += f" {done} @ {price(order.get('avg_fill_price'))}"
    reason = one_line(order.get("reason"))
    if reason and (state in FAILED or state == "Unknown" or with_reason):
        text += f": {reason}"
    return text


def order_line(order: dict[str, Any]) -> str:
    """``BUY 10 AAPL MKT (manual, cli-...): Filled 10 @ 187.23``."""
    who = f"({order.get('strategy')}, {order.get('client_order_id')})"
    head = f"{order.get('action')} {qty(order.get('quantity'))} {order.get('symbol')} {order_terms(order)}"
    return f"{head} {who}: {order_state(order)}"


def one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def styled_state(order: dict[str, Any]) -> Text:
    state = str(order.get("state"))
    return Text(state, style=STATE_STYLES.get(state, ""))


def orders_table(orders: list[dict[str, Any]], title: str) -> RenderableType:
    if not orders:
        return Text(f"{title}: none")
    table = Table(title=title)
    id_column(table, orders)
    fixed(table, "strategy")
    table.add_column("order")
    fixed(table, "state")
    right(table, "filled")
    fixed(table, "placed (UTC)")
    reasons = any(one_line(o.get("reason")) for o in orders)
    if reasons:
        table.add_column("reason")
    for order in sorted(orders, key=lambda o: (o.get("created_ns") or 0, o["client_order_id"])):
        cells: list[RenderableType] = [
            order["client_order_id"],
            order["strategy"],
            order_text(order),
            styled_state(order),
            filled_text(order),
            when(order.get("created_ns")),
        ]
        table.add_row(*cells, *([one_line(order.get("reason"))] if reasons else []))
    return table


def order_text(order: dict[str, Any]) -> str:
    """``BUY 3 MSFT LMT 250.00 GTC``."""
    return f"{order['action']} {qty(order.get('quantity'))} {order['symbol']} {order_terms(order)}"


def filled_text(order: dict[str, Any]) -> str:
    """``10 @ 181.63``, or ``0``."""
    filled = order.get("filled") or 0.0
    return f"{qty(filled)} @ {price(order.get('avg_fill_price'))}" if filled else "0"


def id_column(table: Table, rows: list[dict[str, Any]], key: str = "client_order_id") -> None:
    """The client order id column, never cut (people copy the ids into the next command)."""
    width = max((len(str(_order_of(r).get(key) or "")) for r in rows), default=0)
    table.add_column("client order id", no_wrap=True, min_width=width)


def _order_of(row: dict[str, Any]) -> dict[str, Any]:
    order = row.get("order")
    return order if isinstance(order, dict) else row


def cancel(client_order_id: str, strategy: str | None, wait: float) -> Outcome:
    """``cancel_order`` and the order's state after it (shared by ``book cancel`` and ``trade cancel``)."""
    reply = trader_call(
        "cancel_order",
        client_order_id=client_order_id,
        strategy=strategy,
        wait_s=wait,
        timeout=CALL_TIMEOUT_S + wait,
    )
    return success(reply, human=lambda r: Text(f"cancel {order_line(r['order'])}"))


# -- the group ------------------------------------------------------------------------------------------


@click.group("book")
def book_group() -> None:
    """Orders, trades and fills in the trader's book; cancel an order; an order's history."""


@book_group.command("orders")
@click.option("--all", "every", is_flag=True, help="Every order of the book, not only working ones.")
@click.option("--strategy", help="Only this strategy's orders.")
@outcome_command
def orders_command(every: bool, strategy: str | None) -> Outcome:
    """Working orders (every order with --all), oldest first (get_orders)."""
    orders = trader_call("get_orders", strategy=strategy, open_only=not every)
    title = f"{'orders' if every else 'working orders'}{f' of {strategy}' if strategy else ''}"
    return success(orders, human=lambda rows: orders_table(rows, title))


def _trades_table(trades: list[dict[str, Any]]) -> RenderableType:
    if not trades:
        return Text("no trades")
    table = Table(title="trades (orders with their fills)")
    id_column(table, trades)
    fixed(table, "strategy")
    table.add_column("order")
    fixed(table, "state")
    right(table, "fills", "filled", "commission")
    fixed(table, "last fill (UTC)")
    for trade in sorted(trades, key=_trade_time):
        order, fills = trade["order"], trade["fills"]
        commissions = [f["commission"] for f in fills if f.get("commission") is not None]
        table.add_row(
            order["client_order_id"],
            order["strategy"],
            order_text(order),
            styled_state(order),
            str(len(fills)),
            filled_text(order),
            num(sum(commissions)) if commissions else "-",
            when(fills[-1]["time_ns"]) if fills else "-",
        )
    return table


def _trade_time(trade: dict[str, Any]) -> tuple[int, str]:
    fills = trade["fills"]
    last = fills[-1]["time_ns"] if fills else trade["order"].get("created_ns") or 0
    return int(last), trade["order"]["client_order_id"]


@book_group.command("trades")
@click.option("--strategy", help="Only this strategy's trades.")
@click.option("--all", "every", is_flag=True, help="Also orders without any fill.")
@outcome_command
def trades_command(strategy: str | None, every: bool) -> Outcome:
    """Orders that filled (all orders with --all), each with its fills (get_trades)."""
    trades = trader_call("get_trades", strategy=strategy)
    if not every:
        trades = [t for t in trades if t["fills"]]
    return success(trades, human=_trades_table)


def _fills_table(fills: list[dict[str, Any]]) -> RenderableType:
    if not fills:
        return Text("no fills")
    table = Table(title="fills (exec ids: --json)")
    fixed(table, "time (UTC)", "strategy")
    id_column(table, fills)
    fixed(table, "symbol", "side")
    right(table, "shares", "price", "commission")
    for fill in fills:
        table.add_row(
            when(fill["time_ns"]),
            fill["strategy"],
            fill.get("client_order_id") or "-",
            fill["symbol"],
            fill["side"],
            qty(fill["shares"]),
            price(fill["price"]),
            num(fill.get("commission")),
        )
    return table


def since_ns(text: str) -> int:
    """An ISO date or time (naive: UTC) as epoch nanoseconds; click.BadParameter if it is not one."""
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO date or time (2026-01-14, 2026-01-14T09:30:00)", param_hint="--since"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    ns = int(stamp.timestamp() * 1e9)
    if not 0 <= ns < 2**63:  # the RPC's times are int64 nanoseconds: 1970 .. 2262
        raise click.BadParameter(f"{text!r} is out of range (1970 to 2262)", param_hint="--since")
    return ns


@book_group.command("fills")
@click.option("--strategy", help="Only this strategy's fills.")
@click.option("--since", "since", help="Only fills at or after this ISO date/time (UTC unless an offset).")
@outcome_command
def fills_command(strategy: str | None, since: str | None) -> Outcome:
    """The book's fills in time order (get_fills)."""
    start = since_ns(since) if since else None
    fills = trader_call("get_fills", strategy=strategy, since_ns=start)
    return success(fills, human=_fills_table)


@book_group.command("cancel")
@click.option("--order-id", "client_order_id", required=True, help="The client order id.")
@click.option("--strategy", help="Refuse unless the order is this strategy's.")
@click.option(
    "--wait", type=click.FloatRange(0, 120), default=5.0, show_default=True, help="Seconds to wait for it."
)
@outcome_command
def cancel_command(client_order_id: str, strategy: str | None, wait: float) -> Outcome:
    """Cancel a working order by its client order id (cancel_order)."""
    return cancel(client_order_id, strategy, wait)


# -- log ------------------------------------------------------------------------------------------------


def order_events(trade: dict[str, Any]) -> list[dict[str, Any]]:
    """An order's history as the book has it: placed, each fill, its last state."""
    order, fills = trade["order"], trade["fills"]
    base = {"client_order_id": order["client_order_id"], "strategy": order["strategy"]}
    events = [base | {"time_ns": order.get("created_ns"), "event": "placed", "detail": order_text(order)}]
    for fill in fills:
        commission = "" if fill.get("commission") is None else f", commission {num(fill['commission'])}"
        detail = (
            f"{fill['side']} {qty(fill['shares'])} @ {price(fill['price'])}{commission} ({fill['exec_id']})"
        )
        events.append(base | {"time_ns": fill["time_ns"], "event": "fill", "detail": detail})
    last = order_state(order, with_reason=True) + (
        f" (IB: {order['ib_status']})" if order.get("ib_status") else ""
    )
    events.append(base | {"time_ns": order.get("updated_ns"), "event": "state", "detail": last})
    return events


def _log_table(events: list[dict[str, Any]]) -> RenderableType:
    if not events:
        return Text("no orders")
    table = Table(title="order history (the book's record and fills)")
    fixed(table, "time (UTC)")
    id_column(table, events)
    table.add_column("strategy")
    fixed(table, "event")
    table.add_column("detail")
    for event in events:
        table.add_row(
            when(event["time_ns"], millis=True),
            event["client_order_id"],
            event["strategy"],
            event["event"],
            event["detail"],
        )
    note = Text("intermediate states are not kept by the RPC: the last state is shown", style="dim")
    return Group(table, note)


@book_group.command("log")
@click.option("--order-id", "client_order_id", help="One order (with its bracket children .tp/.sl).")
@click.option("--strategy", help="Only this strategy's orders.")
@click.option("--tail", type=click.IntRange(1), default=30, show_default=True, help="Only the last N events.")
@outcome_command
def log_command(client_order_id: str | None, strategy: str | None, tail: int) -> Outcome:
    """Orders' history, oldest first: placed, fills, last state and IB's last message.

    Built from get_trades (the order records and their fills): the RPC keeps no list of an
    order's intermediate states, so the last state is shown with its time."""
    trades = trader_call("get_trades", strategy=strategy)
    if client_order_id is not None:
        family = (client_order_id, f"{client_order_id}.tp", f"{client_order_id}.sl")
        trades = [t for t in trades if t["order"]["client_order_id"] in family]
        if not any(t["order"]["client_order_id"] == client_order_id for t in trades):
            owner = f" of strategy {strategy}" if strategy else ""
            return failure(f"no order {client_order_id}{owner}", code="unknown_order")
    events = [e for t in trades for e in order_events(t)]
    events.sort(key=lambda e: (e["time_ns"] or 0, e["client_order_id"]))
    return success(events[-tail:], human=_log_table)
