"""``cli.py`` commands: trade (being written)."""

from __future__ import annotations

import click


@click.group("trade")
def trade_group() -> None:
    """Place, modify and cancel orders."""
    raise click.ClickException("not implemented yet")
