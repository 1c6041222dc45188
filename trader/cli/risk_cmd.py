"""``cli.py`` commands: risk (being written)."""

from __future__ import annotations

import click


@click.group("risk")
def risk_group() -> None:
    """Risk limits and trading state."""
    raise click.ClickException("not implemented yet")
