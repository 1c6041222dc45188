"""``cli.py`` commands: status, reconnect (being written)."""

from __future__ import annotations

import click


@click.command("status")
def status_command() -> None:
    """Every process, the IB connection, trading state, subscriptions, store."""
    raise click.ClickException("not implemented yet")


@click.command("reconnect")
def reconnect_command() -> None:
    """Drop and re-make the trader's IB connection."""
    raise click.ClickException("not implemented yet")
