"""``cli.py risk ...``: the trader's risk limits and trading state (halt, reduce-only, resume).

Each command asks the trader's RPC ``methods`` whether the method it needs (``risk_show``,
``risk_set``, ``risk_halt`` ...) is there and calls it when it is (a trader without the risk RPC:
one line, exit 1). ``--scope`` is ``account`` (the default), ``strategy:<name>``, or for ``set``
also ``strategy:*`` (the default strategy limits). ``--json`` prints the RPC's result.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.account_cmd import when
from trader.cli.client import trader_client
from trader.cli.output import Outcome, failure, outcome_command, success

NOT_AVAILABLE = (
    "risk commands need the trader's risk gate RPC, which this version of Bourse does not include yet"
)
STATE_STYLES = {"active": "green", "reducing": "yellow", "halted": "bold red"}
SCOPE_HELP = "account (default), strategy:<name>, or strategy:* (the default strategy limits)"


def call_if_available(method: str, message: str, human: Any = None, **params: Any) -> Outcome:
    """``method``'s result when the trader's ``methods`` lists it; else ``message`` (code
    ``not_available``, exit 1). A trader that does not answer is the usual one line, exit 2."""
    with trader_client() as client:
        names = {str(m.get("name")) for m in client.call("methods") if isinstance(m, dict)}
        if method not in names:
            return failure(message, code="not_available")
        return success(client.call(method, **params), human)


# -- rendering -------------------------------------------------------------------------------------------


def amount(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def state_text(state: dict[str, Any]) -> Text:
    name = str(state.get("state", "?"))
    text = Text(name.upper(), style=STATE_STYLES.get(name, ""))
    if state.get("reason"):
        text.append(f"  {state['reason']}")
    if state.get("until_ns"):
        text.append(f"  (until {when(state['until_ns'])})", style="dim")
    return text


def render_show(data: dict[str, Any]) -> RenderableType:
    trading = data.get("trading", {})
    states = Table(title="trading state", title_justify="left", show_edge=False)
    states.add_column("scope")
    states.add_column("state")
    states.add_row("account", state_text(trading))
    for name, state in sorted(trading.get("strategies", {}).items()):
        states.add_row(f"strategy:{name}", state_text(state))
    kill = "present: trading halted" if data.get("kill_switch_file_present") else "absent"
    states.add_row("kill switch", Text(f"{data.get('kill_switch_file', 'STOP')} {kill}"))
    states.add_row("mode", Text(str(data.get("trading_mode", "?"))))
    day = data.get("trading_day", {})
    states.add_row("trading day", Text(f"{day.get('day')} (starts {day.get('start')} {day.get('tz')})"))

    limits: dict[str, dict[str, Any]] = data.get("limits", {})
    scopes = list(limits)
    table = Table(title="limits in force (- : none)", title_justify="left", show_edge=False)
    table.add_column("limit")
    for scope in scopes:
        table.add_column(scope, justify="right")
    overrides: dict[str, dict[str, Any]] = data.get("overrides", {})
    keys = list(next(iter(limits.values()), {}))
    for key in keys:
        cells = []
        for scope in scopes:
            cell = Text(amount(limits[scope].get(key)))
            if key in overrides.get(scope, {}):
                cell.stylize("bold cyan")  # changed at runtime
            cells.append(cell)
        table.add_row(key, *cells)

    usage = Table(title="use now", title_justify="left", show_edge=False)
    for column in ("scope", "open orders", "orders/s", "orders/min", "day P&L", "peak", "tripped"):
        usage.add_column(column, justify="left" if column == "scope" else "right")
    days: dict[str, dict[str, Any]] = data.get("day", {})
    for scope, use in data.get("usage", {}).items():
        pnl = days.get(scope, {})
        usage.add_row(
            scope,
            str(use.get("open_orders", 0)),
            str(use.get("orders_last_second", 0)),
            str(use.get("orders_last_minute", 0)),
            amount(pnl.get("pnl")),
            amount(pnl.get("peak")),
            "yes" if pnl.get("tripped") else "",
        )
    checks = data.get("checks", {})
    refused = ", ".join(f"{k} {v}" for k, v in sorted(checks.get("refused", {}).items())) or "none"
    footer = Text(f"orders passed {checks.get('passed', 0)}; refused by rule: {refused}", style="dim")
    return Group(states, Text(""), table, Text(""), usage, footer)


def render_set(data: dict[str, Any]) -> RenderableType:
    return Text.assemble(
        (f"{data['scope']} ", "bold"),
        f"{data['key']}: {amount(data['previous'])} -> ",
        (amount(data["effective"]), "bold cyan"),
        " (saved; in force now)",
    )


def render_command(data: dict[str, Any]) -> RenderableType:
    line = Text.assemble((f"{data['scope']}: ", "bold"), state_text(data.get("state", {})))
    done = [e for e in data.get("events", []) if e.get("type") != "risk.halt"]
    if any(e.get("type") == "risk.cancel" for e in done):
        line.append("\nits working orders are being cancelled", style="yellow")
    return line


# -- commands --------------------------------------------------------------------------------------------


@click.group("risk")
def risk_group() -> None:
    """Risk limits and trading state: show, set, halt, reduce, resume (needs the risk gate RPC)."""


@risk_group.command("show")
@outcome_command
def show_command() -> Outcome:
    """The trading state (active, reduce-only, halted) and every risk limit with its current use."""
    return call_if_available("risk_show", NOT_AVAILABLE, render_show)


@risk_group.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--scope", default="account", show_default=True, help=SCOPE_HELP)
@outcome_command
def set_command(key: str, value: str, scope: str) -> Outcome:
    """Set the risk limit KEY (e.g. max_order_notional) to VALUE (a number, or `none` for no limit);
    saved, so it survives a restart."""
    return call_if_available("risk_set", NOT_AVAILABLE, render_set, key=key, value=value, scope=scope)


def _scope_and_reason(fn: Any) -> Any:
    fn = click.option("--reason", default="", help="Why (shown in the state and the risk event).")(fn)
    return click.option("--scope", default="account", show_default=True, help="account or strategy:<name>")(
        fn
    )


@risk_group.command("halt")
@_scope_and_reason
@outcome_command
def halt_command(scope: str, reason: str) -> Outcome:
    """Refuse every new order (cancels stay allowed) and cancel working orders, until `risk resume`."""
    return call_if_available("risk_halt", NOT_AVAILABLE, render_command, scope=scope, reason=reason)


@risk_group.command("reduce")
@_scope_and_reason
@outcome_command
def reduce_command(scope: str, reason: str) -> Outcome:
    """Reduce-only: accept only orders that shrink a position, until `risk resume`."""
    return call_if_available("risk_reduce", NOT_AVAILABLE, render_command, scope=scope, reason=reason)


@risk_group.command("resume")
@_scope_and_reason
@outcome_command
def resume_command(scope: str, reason: str) -> Outcome:
    """Back to active trading after `risk halt` or `risk reduce` (refused while the STOP file is there)."""
    return call_if_available("risk_resume", NOT_AVAILABLE, render_command, scope=scope, reason=reason)
