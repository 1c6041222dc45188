"""``cli.py config ...``: validate the configuration files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from trader.cli.output import Outcome, emit, failure, json_option, success
from trader.config.files import check_all


def check(configs_dir: Path) -> Outcome:
    results = check_all(configs_dir, os.environ)
    rows = [{"file": str(r.path), "ok": r.ok, "error": r.error} for r in results]
    bad = [r for r in results if not r.ok]
    if not results:
        return failure(f"{configs_dir}: no configuration files found", rows)
    if bad:
        return failure(
            "\n".join(r.error or "" for r in bad),
            rows,
            "invalid_config",
            human=_table,
        )
    return success(rows, human=_table)


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="configuration")
    table.add_column("file")
    table.add_column("status")
    for row in rows:
        status = "[green]ok[/]" if row["ok"] else "[red]invalid[/]"
        table.add_row(row["file"], status)
    return table


@click.group("config")
def config_group() -> None:
    """Configuration files."""


@config_group.command("check")
@click.option(
    "--dir",
    "configs_dir",
    type=click.Path(path_type=Path),
    default=Path("configs"),
    show_default=True,
    help="Folder of configuration files to validate.",
)
@json_option
def check_command(configs_dir: Path, as_json: bool) -> None:
    """Validate every file in configs/ (unknown keys, types, missing files)."""
    emit(check(configs_dir), as_json)
