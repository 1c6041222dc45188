"""``cli.py`` commands: subscribe (being written)."""

from __future__ import annotations

import click


@click.group("subscribe")
def subscribe_group() -> None:
    """Live market data subscriptions."""
    raise click.ClickException("not implemented yet")
