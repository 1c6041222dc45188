"""``cli.py positions | portfolio | pnl | account``: what the trader's book and IB say we hold.

Every command is one query of the trader RPC (docs/rpc.md "Queries"): ``positions`` is
``get_positions`` (the book, per strategy), ``portfolio`` is ``get_portfolio`` (IB's own view),
``pnl`` is ``get_pnl`` and ``account`` is ``get_account``. ``--json`` prints the RPC's result in
the ok/error envelope. A trader that does not answer is exit 2.

The number and time formatters here are shared by the book and trade commands.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.client import trader_call
from trader.cli.output import Outcome, outcome_command, success

KEY_ACCOUNT_TAGS = (
    "NetLiquidation",
    "TotalCashValue",
    "BuyingPower",
    "AvailableFunds",
    "ExcessLiquidity",
    "GrossPositionValue",
    "InitMarginReq",
    "MaintMarginReq",
    "UnrealizedPnL",
    "RealizedPnL",
)
"""What ``account`` shows without ``--all``, in this order."""


# -- formatting (shared) ----------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 2) -> str:
    """``1,234.50``; "-" for None / NaN."""
    if not is_number(value):
        return "-" if value is None or isinstance(value, float) else str(value)
    return f"{value:,.{digits}f}"


def qty(value: Any) -> str:
    """A quantity without trailing zeros: ``10``, ``0.5``, ``-4``."""
    return f"{value:,.8g}" if is_number(value) else "-"


def price(value: Any) -> str:
    """A price with at least 2 and at most 6 decimals: ``187.23``, ``1.08345``."""
    if not is_number(value):
        return "-"
    text = f"{value:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def signed(value: Any, digits: int = 2) -> Text:
    """A P&L amount, green when positive and red when negative."""
    if not is_number(value):
        return Text("-")
    style = "green" if value > 0 else "red" if value < 0 else ""
    return Text(num(value, digits), style=style)


def when(time_ns: Any, millis: bool = False) -> str:
    """Epoch nanoseconds as ``01-14 09:31:02`` (UTC; ``2026-01-14 09:31:02.123`` with ``millis``)."""
    if not is_number(time_ns) or not time_ns:
        return "-"
    stamp = datetime.fromtimestamp(time_ns / 1e9, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if millis else stamp.strftime("%m-%d %H:%M:%S")


def right(table: Table, *names: str) -> None:
    """Right-aligned columns that are never wrapped (numbers: text columns give way first)."""
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)


def fixed(table: Table, *names: str) -> None:
    """Columns never wrapped (symbols, states, times)."""
    for name in names:
        table.add_column(name, no_wrap=True)


# -- positions ----------------------------------------------------------------------------------------


def _positions_table(rows: list[dict[str, Any]]) -> RenderableType:
    if not rows:
        return Text("no positions")
    accounts = sorted({r["account"] for r in rows})
    several = len(accounts) > 1
    table = Table(title=f"positions of {', '.join(accounts)} (the trader's book, per strategy)")
    if several:
        fixed(table, "account")
    fixed(table, "strategy", "symbol")
    right(table, "quantity", "avg price", "mark", "market value", "unrealized", "realized", "commissions")
    right(table, "fills")
    for row in sorted(rows, key=lambda r: (r["strategy"], r["symbol"], r["account"])):
        cells: list[RenderableType] = [
            row["strategy"],
            row["symbol"],
            qty(row["quantity"]),
            price(row["avg_price"]),
            price(row.get("mark")),
            num(row.get("market_value")),
            signed(row.get("unrealized")),
            signed(row.get("realized")),
            num(row.get("commissions")),
            str(row.get("fills", "-")),
        ]
        table.add_row(*([row["account"]] if several else []), *cells)
    return table


@click.command("positions")
@click.option("--strategy", help="Only this strategy's positions.")
@click.option("--all", "include_flat", is_flag=True, help="Include flat positions (quantity 0).")
@outcome_command
def positions_command(strategy: str | None, include_flat: bool) -> Outcome:
    """Positions per strategy and instrument, from the trader's book (get_positions)."""
    rows = trader_call("get_positions", strategy=strategy, include_flat=include_flat)
    return success(rows, human=_positions_table)


# -- portfolio ----------------------------------------------------------------------------------------


def _portfolio_table(rows: list[dict[str, Any]]) -> RenderableType:
    if not rows:
        return Text("IB reports no portfolio positions")
    table = Table(title="portfolio (IB's view)")
    fixed(table, "account", "symbol")
    right(table, "position", "market price", "market value", "average cost", "unrealized", "realized")
    for row in sorted(rows, key=lambda r: (r["account"], r["symbol"])):
        table.add_row(
            row["account"],
            row["symbol"],
            qty(row["position"]),
            price(row["market_price"]),
            num(row["market_value"]),
            price(row["average_cost"]),
            signed(row["unrealized_pnl"]),
            signed(row["realized_pnl"]),
        )
    return table


@click.command("portfolio")
@outcome_command
def portfolio_command() -> Outcome:
    """IB's portfolio: positions at IB's prices with IB's P&L (get_portfolio)."""
    return success(trader_call("get_portfolio"), human=_portfolio_table)


# -- pnl ------------------------------------------------------------------------------------------------


def _pnl_row(table: Table, name: str, pnl: dict[str, Any], style: str = "") -> None:
    missing = ", ".join(str(c) for c in pnl.get("missing_marks") or []) or "-"
    table.add_row(
        Text(name, style=style),
        signed(pnl["realized"]),
        signed(pnl["unrealized"]),
        num(pnl["commissions"]),
        signed(pnl["total"]),
        missing,
    )


def _pnl_table(result: dict[str, Any]) -> RenderableType:
    table = Table(title="P&L (the trader's book; realized net of commissions)")
    table.add_column("strategy")
    right(table, "realized", "unrealized", "commissions", "total")
    table.add_column("no mark (conIds)")
    for name, pnl in sorted(result["by_strategy"].items()):
        _pnl_row(table, name, pnl)
    table.add_section()
    _pnl_row(table, "total", result["total"], style="bold")
    return Group(table, Text(f"marks: {result.get('marks', 0)} instruments priced", style="dim"))


@click.command("pnl")
@click.option("--strategy", help="Only this strategy (the total is then its total).")
@outcome_command
def pnl_command(strategy: str | None) -> Outcome:
    """P&L per strategy and in total: realized, unrealized at marks, commissions (get_pnl)."""
    return success(trader_call("get_pnl", strategy=strategy), human=_pnl_table)


# -- account --------------------------------------------------------------------------------------------


def _value_rows(values: dict[str, dict[str, Any]], tags: list[str]) -> list[tuple[str, str, Any]]:
    """(tag, currency, value) rows; a tag's BASE row is left out when it only repeats one currency."""
    rows: list[tuple[str, str, Any]] = []
    for tag in tags:
        by_currency = values.get(tag) or {}
        others = [c for c in by_currency if c != "BASE"]
        for currency, value in by_currency.items():
            if currency == "BASE" and len(others) == 1:
                continue
            rows.append((tag, currency, value))
    return rows


def _account_table(result: dict[str, Any]) -> RenderableType:
    values: dict[str, dict[str, Any]] = result.get("values") or {}
    state = "connected" if result.get("connected") else "not connected: values may be stale"
    table = Table(title=f"account {result.get('account') or '?'} ({state})")
    table.add_column("tag")
    table.add_column("value", justify="right")
    table.add_column("currency")
    key = [t for t in KEY_ACCOUNT_TAGS if t in values]
    rest = sorted(t for t in values if t not in KEY_ACCOUNT_TAGS)
    for tag, currency, value in _value_rows(values, key):
        table.add_row(tag, num(value) if is_number(value) else str(value), currency)
    if rest:
        table.add_section()
    for tag, currency, value in _value_rows(values, rest):
        table.add_row(tag, num(value) if is_number(value) else str(value), currency)
    if not values:
        return Group(table, Text("IB sent no account values (yet)", style="dim"))
    return table


@click.command("account")
@click.option("--all", "every_tag", is_flag=True, help="Every tag IB sends, not only the key values.")
@outcome_command
def account_command(every_tag: bool) -> Outcome:
    """IB's account values: NetLiquidation, cash, buying power, funds, margin, P&L (get_account)."""
    result: dict[str, Any] = trader_call("get_account")
    if not every_tag:
        values = result.get("values") or {}
        result = result | {"values": {t: values[t] for t in KEY_ACCOUNT_TAGS if t in values}}
    return success(result, human=_account_table)
