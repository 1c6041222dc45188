"""``cli.py`` commands: resolve, snapshot (being written)."""

from __future__ import annotations

import click


@click.command("resolve")
def resolve_command() -> None:
    """Resolve a symbol to IB's contract."""
    raise click.ClickException("not implemented yet")


@click.command("snapshot")
def snapshot_command() -> None:
    """One quote now."""
    raise click.ClickException("not implemented yet")
