"""``cli.py universes ...``: named lists of instruments, kept in the trader's store.

The trader owns the store (one writer), so every command is an RPC of the trader (docs/rpc.md,
"Universes and stored history"): ``list_universes``, ``get_universe``, ``put_universe``,
``universe_add``, ``universe_remove``, ``delete_universe``. Symbols are resolved by the trader
before anything is written (an unknown one is refused, exit 1, nothing changes); members are stored
as conIds. A symbol of digits is a conId. ``destroy`` needs ``--yes``.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table

from trader.cli.client import trader_call
from trader.cli.market_cmd import text
from trader.cli.output import Outcome, failure, outcome_command, success


def split(symbols: tuple[str, ...]) -> dict[str, Any]:
    """``symbols`` / ``con_ids`` params of the names given (digits: a conId)."""
    names = [s.strip() for s in symbols if s.strip()]
    params: dict[str, Any] = {}
    if ids := [int(s) for s in names if s.isdigit()]:
        params["con_ids"] = ids
    if syms := [s for s in names if not s.isdigit()]:
        params["symbols"] = syms
    return params


def names_table(rows: list[dict[str, Any]]) -> RenderableType:
    if not rows:
        return "no universes (create one: cli.py universes create NAME SYMBOL...)"
    table = Table(title="universes")
    table.add_column("name")
    table.add_column("members", justify="right")
    for row in rows:
        table.add_row(str(row["name"]), str(row["count"]))
    return table


def universe_table(universe: dict[str, Any]) -> RenderableType:
    notes = []
    if universe.get("created") is not None:
        notes.append("created" if universe["created"] else "replaced")
    if "added" in universe:
        notes.append(f"added {len(universe['added'])}")
    if "removed" in universe:
        notes.append(f"removed {len(universe['removed'])}")
    title = (
        f"universe {universe['name']} ({universe['count']} members{'; ' if notes else ''}{', '.join(notes)})"
    )
    table = Table(title=title)
    for column in ("#", "symbol", "local symbol", "conId", "type", "exchange", "primary", "currency"):
        table.add_column(column, justify="right" if column in ("#", "conId") else "left")
    for n, m in enumerate(universe["members"], 1):
        table.add_row(
            str(n),
            text(m.get("symbol")),
            text(m.get("local_symbol")),
            text(m.get("con_id") or m.get("key")),
            text(m.get("sec_type")),
            text(m.get("exchange")),
            text(m.get("primary_exchange")),
            text(m.get("currency") or m.get("error")),
        )
    return table


def _type_options(fn: Any) -> Any:
    fn = click.option("--currency", default="USD", show_default=True, help="Currency of the symbols.")(fn)
    fn = click.option("--exchange", default="SMART", show_default=True, help="Exchange of the symbols.")(fn)
    return click.option("--sec-type", default="STK", show_default=True, help="Type of the symbols.")(fn)


@click.group("universes")
def universes_group() -> None:
    """Named lists of instruments (kept in the trader's store)."""


@universes_group.command("list")
@outcome_command
def list_command() -> Outcome:
    """Every universe and its size."""
    return success(trader_call("list_universes"), human=names_table)


@universes_group.command("get")
@click.argument("name")
@outcome_command
def get_command(name: str) -> Outcome:
    """A universe's members, in order, with their contracts."""
    return success(trader_call("get_universe", name=name), human=universe_table)


@universes_group.command("create")
@click.argument("name")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="Replace the universe if it exists.")
@_type_options
@outcome_command
def create_command(
    *, name: str, symbols: tuple[str, ...], replace: bool, sec_type: str, exchange: str, currency: str
) -> Outcome:
    """Create universe NAME of SYMBOL... (each resolved first; an existing one needs --replace)."""
    result = trader_call(
        "put_universe",
        name=name,
        replace=replace,
        sec_type=sec_type,
        exchange=exchange,
        currency=currency,
        **split(symbols),
    )
    return success(result, human=universe_table)


@universes_group.command("add")
@click.argument("name")
@click.argument("symbols", nargs=-1, required=True)
@_type_options
@outcome_command
def add_command(name: str, symbols: tuple[str, ...], sec_type: str, exchange: str, currency: str) -> Outcome:
    """Append SYMBOL... to universe NAME (members already in it are skipped)."""
    result = trader_call(
        "universe_add", name=name, sec_type=sec_type, exchange=exchange, currency=currency, **split(symbols)
    )
    return success(result, human=universe_table)


@universes_group.command("remove")
@click.argument("name")
@click.argument("symbols", nargs=-1, required=True)
@outcome_command
def remove_command(name: str, symbols: tuple[str, ...]) -> Outcome:
    """Remove SYMBOL... (symbol, local symbol or conId) from universe NAME."""
    return success(trader_call("universe_remove", name=name, **split(symbols)), human=universe_table)


@universes_group.command("destroy")
@click.argument("name")
@click.option("--yes", "confirmed", is_flag=True, help="Confirm: delete the universe.")
@outcome_command
def destroy_command(name: str, confirmed: bool) -> Outcome:
    """Delete universe NAME (needs --yes)."""
    if not confirmed:
        return failure(f"destroy deletes universe {name!r}: pass --yes", code="confirmation_required")
    return success(
        trader_call("delete_universe", name=name), human=lambda r: f"deleted universe {r['deleted']}"
    )
