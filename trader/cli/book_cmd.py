"""``cli.py`` commands: book (being written)."""

from __future__ import annotations

import click


@click.group("book")
def book_group() -> None:
    """Orders, trades and fills in the trader's book."""
    raise click.ClickException("not implemented yet")
