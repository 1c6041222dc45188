"""``cli.py`` commands: info (being written)."""

from __future__ import annotations

import click


@click.command("info")
def info_command() -> None:
    """A live full-screen dashboard (q or Ctrl+C quits)."""
    raise click.ClickException("not implemented yet")
