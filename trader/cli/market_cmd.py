"""``cli.py resolve`` and ``cli.py snapshot``: an instrument's contract and one quote, from the trader.

Both call the trader's RPC (docs/rpc.md, "Market data and instruments"): ``resolve_symbol`` and
``snapshot``, with the contract options every market command shares (:func:`contract_options`:
``--sec-type``, ``--exchange``, ``--currency``, ``--expiry``). A symbol made of digits is taken as
a conId. An unknown symbol is the trader's ``unknown_contract`` message, exit 1; a trader that does
not answer is exit 2.

``snapshot --delayed``: the ``snapshot`` RPC takes no market data type (IB's
``reqMarketDataType(3)`` is the trader's connection-wide choice: it falls back to delayed data by
itself when IB refuses live data), so nothing extra is sent; the output says so, and the quote's
``delayed`` field tells which kind it is (live on the paper exchange).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.client import trader_call
from trader.cli.output import Outcome, outcome_command, success

DELAYED_NOTE = (
    "--delayed: the trader's snapshot RPC has no market data type parameter (IB's type 3, delayed), "
    "so none was sent; the trader asks for delayed data by itself only when IB refuses live data. "
    "The paper exchange's data are live; 'delayed' in the quote says which kind it is."
)


def contract_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--sec-type``, ``--exchange``, ``--currency``, ``--expiry`` (the trader's defaults)."""
    fn = click.option("--expiry", default="", help="Futures/options expiry, e.g. 202612.")(fn)
    fn = click.option("--currency", default="USD", show_default=True)(fn)
    fn = click.option("--exchange", default="SMART", show_default=True)(fn)
    return click.option("--sec-type", default="STK", show_default=True, help="STK, FUT, CASH, OPT, IND ...")(
        fn
    )


def instrument(symbol: str, sec_type: str, exchange: str, currency: str, expiry: str = "") -> dict[str, Any]:
    """The RPC params naming an instrument (a symbol of digits is a conId)."""
    if symbol.strip().isdigit():
        return {"con_id": int(symbol)}
    params: dict[str, Any] = {"symbol": symbol, "sec_type": sec_type, "exchange": exchange}
    params["currency"] = currency
    if expiry:
        params["expiry"] = expiry
    return params


def plain(value: Any) -> Any:
    """NaN -> None (valid JSON; shown as '-'), recursively in dicts and lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


CONTRACT_ROWS = (
    ("conId", "conId"),
    ("symbol", "symbol"),
    ("local symbol", "localSymbol"),
    ("type", "secType"),
    ("exchange", "exchange"),
    ("primary exchange", "primaryExchange"),
    ("currency", "currency"),
    ("expiry", "lastTradeDateOrContractMonth"),
    ("multiplier", "multiplier"),
    ("strike", "strike"),
    ("right", "right"),
    ("trading class", "tradingClass"),
)


def contract_table(contract: dict[str, Any]) -> RenderableType:
    table = Table(title=f"{contract.get('localSymbol') or contract.get('symbol')}", show_header=False)
    for label, key in CONTRACT_ROWS:
        value = contract.get(key)
        if value not in (None, "", 0, 0.0) or key in ("conId", "symbol"):
            table.add_row(label, text(value))
    return table


def quote_table(quote: dict[str, Any]) -> RenderableType:
    table = Table(title=f"{quote.get('symbol')} (conId {quote.get('con_id')})", show_header=False)
    table.add_row("time", str(quote.get("time"))[:23])
    for label, price, size in (
        ("bid", "bid", "bid_size"),
        ("ask", "ask", "ask_size"),
        ("last", "last", "last_size"),
    ):
        table.add_row(label, f"{text(quote.get(price))} x {text(quote.get(size))}")
    table.add_row("volume", text(quote.get("volume")))
    table.add_row("data", "delayed" if quote.get("delayed") else "live")
    note = quote.get("note")
    return Group(table, Text(note, style="yellow")) if note else table


@click.command("resolve")
@click.option(
    "--symbol", required=True, help="AAPL, ES (with --sec-type FUT --expiry), EUR (CASH), or a conId."
)
@contract_options
@outcome_command
def resolve_command(symbol: str, sec_type: str, exchange: str, currency: str, expiry: str) -> Outcome:
    """Resolve a symbol to IB's contract (conId, exchanges, local symbol ...)."""
    params = instrument(symbol, sec_type, exchange, currency, expiry)
    return success(plain(trader_call("resolve_symbol", **params)), human=contract_table)


@click.command("snapshot")
@click.option("--symbol", required=True, help="AAPL, a local symbol, or a conId.")
@click.option("--delayed", is_flag=True, help="Ask for delayed data (see the note in the output).")
@contract_options
@outcome_command
def snapshot_command(
    *, symbol: str, delayed: bool, sec_type: str, exchange: str, currency: str, expiry: str
) -> Outcome:
    """One quote now (bid, ask, last, sizes, volume), without subscribing."""
    params = instrument(symbol, sec_type, exchange, currency, expiry)
    quote: dict[str, Any] = plain(trader_call("snapshot", **params))
    if delayed:
        quote |= {"delayed_requested": True, "note": DELAYED_NOTE}
    return success(quote, human=quote_table)
