"""``cli.py`` commands: universes (being written)."""

from __future__ import annotations

import click


@click.group("universes")
def universes_group() -> None:
    """Named lists of instruments."""
    raise click.ClickException("not implemented yet")
