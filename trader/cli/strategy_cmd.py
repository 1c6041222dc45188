"""``cli.py`` commands: strategy (being written)."""

from __future__ import annotations

import click


@click.group("strategy")
def strategy_group() -> None:
    """Strategies: list, enable, disable, status."""
    raise click.ClickException("not implemented yet")
