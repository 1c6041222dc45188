"""``cli.py`` commands: positions, portfolio, pnl, account (being written)."""

from __future__ import annotations

import click


@click.command("positions")
def positions_command() -> None:
    """Positions per strategy and instrument."""
    raise click.ClickException("not implemented yet")


@click.command("portfolio")
def portfolio_command() -> None:
    """IB's portfolio."""
    raise click.ClickException("not implemented yet")


@click.command("pnl")
def pnl_command() -> None:
    """P&L per strategy."""
    raise click.ClickException("not implemented yet")


@click.command("account")
def account_command() -> None:
    """IB's account values."""
    raise click.ClickException("not implemented yet")
