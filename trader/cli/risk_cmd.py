"""``cli.py risk ...``: the trader's risk limits and trading state (halt, reduce-only, resume).

The risk gate has no RPC yet. Each command asks the trader's RPC ``methods`` whether the method it
needs (``risk_show``, ``risk_set``, ``risk_halt`` ...) is there and calls it when it is; until then
it prints one line saying so and exits 1.
"""

from __future__ import annotations

from typing import Any

import click

from trader.cli.client import trader_client
from trader.cli.output import Outcome, failure, outcome_command, success

NOT_AVAILABLE = (
    "risk commands need the trader's risk gate RPC, which this version of Bourse does not include yet"
)


def call_if_available(method: str, message: str, **params: Any) -> Outcome:
    """``method``'s result when the trader's ``methods`` lists it; else ``message`` (code
    ``not_available``, exit 1). A trader that does not answer is the usual one line, exit 2."""
    with trader_client() as client:
        names = {str(m.get("name")) for m in client.call("methods") if isinstance(m, dict)}
        if method not in names:
            return failure(message, code="not_available")
        return success(client.call(method, **params))


@click.group("risk")
def risk_group() -> None:
    """Risk limits and trading state: show, set, halt, reduce, resume (needs the risk gate RPC)."""


@risk_group.command("show")
@outcome_command
def show_command() -> Outcome:
    """The trading state (active, reduce-only, halted) and every risk limit with its current use."""
    return call_if_available("risk_show", NOT_AVAILABLE)


@risk_group.command("set")
@click.argument("key")
@click.argument("value")
@outcome_command
def set_command(key: str, value: str) -> Outcome:
    """Set the risk limit KEY (e.g. max_order_value) to VALUE for this trader session."""
    return call_if_available("risk_set", NOT_AVAILABLE, key=key, value=value)


@risk_group.command("halt")
@outcome_command
def halt_command() -> Outcome:
    """Refuse every new order (cancels stay allowed) until `risk resume`."""
    return call_if_available("risk_halt", NOT_AVAILABLE)


@risk_group.command("reduce")
@outcome_command
def reduce_command() -> Outcome:
    """Reduce-only: accept only orders that shrink a position, until `risk resume`."""
    return call_if_available("risk_reduce", NOT_AVAILABLE)


@risk_group.command("resume")
@outcome_command
def resume_command() -> Outcome:
    """Back to active trading after `risk halt` or `risk reduce`."""
    return call_if_available("risk_resume", NOT_AVAILABLE)
