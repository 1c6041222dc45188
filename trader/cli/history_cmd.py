"""``cli.py`` commands: history (being written)."""

from __future__ import annotations

import click


@click.group("history")
def history_group() -> None:
    """Historical bars."""
    raise click.ClickException("not implemented yet")
