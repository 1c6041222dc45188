"""``cli.py keys ...``: CurveZMQ keypairs for the trader's sockets (docs/wire.md, "Security").

``keys generate NAME`` writes ``NAME.key`` (public) and ``NAME.key_secret`` (mode 0600) into the
keys directory: ``--dir``, else ``zmq.curve.keys_dir`` of the trader config (null:
``<data-dir>/keys``). ``--authorize`` also copies the public key into the authorized clients
directory (``zmq.curve.clients_dir``, null: ``<keys_dir>/clients``), which the trader re-reads on
the next connection. ``keys authorize FILE`` does that for a public key made on another machine;
``keys list`` shows both directories.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import click
from rich.console import Group
from rich.table import Table

from trader.cli.context import cli_context
from trader.cli.output import Outcome, failure, outcome_command, success
from trader.config.schema import ConfigError
from trader.config.trader import CurveConfig
from trader.messaging.curve import PUBLIC_SUFFIX, CurveKeyError, generate_keypair, list_keys, load_public_key

EXIT_CONFIG = 2


def _dirs(directory: Path | None) -> tuple[Path, Path]:
    """(keys directory, authorized clients directory) for ``--dir`` or the trader config."""
    ctx = cli_context()
    data_dir = ctx.resolved_data_dir()
    try:
        curve = ctx.trader_config().zmq.curve
    except ConfigError:
        curve = CurveConfig()
    if directory is not None:
        return directory, directory / "clients"
    return curve.keys_path(data_dir), curve.clients_path(data_dir)


@click.group("keys")
def keys_group() -> None:
    """CurveZMQ keys (needed to bind the trader beyond 127.0.0.1)."""


@keys_group.command("generate")
@click.argument("name")
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path), help="Keys directory (default: the config's)."
)
@click.option(
    "--authorize", is_flag=True, help="Also admit this key: copy NAME.key into the clients directory."
)
@click.option("--force", is_flag=True, help="Replace an existing keypair of that name.")
@outcome_command
def generate_command(name: str, directory: Path | None, authorize: bool, force: bool) -> Outcome:
    """Create keypair NAME: NAME.key (public, to share) and NAME.key_secret (0600, keep here)."""
    keys_dir, clients_dir = _dirs(directory)
    try:
        public, secret = generate_keypair(keys_dir, name, overwrite=force)
    except (FileExistsError, ValueError) as exc:
        hint = " (--force replaces it)" if isinstance(exc, FileExistsError) else ""
        return failure(f"{exc}{hint}", code="exists" if hint else "bad_name")
    row: dict[str, Any] = {
        "name": name,
        "public_key": load_public_key(public).decode(),
        "public_file": str(public),
        "secret_file": str(secret),
        "authorized": None,
    }
    if authorize:
        row["authorized"] = str(_authorize(public, clients_dir))
    return success(row, human=_generated)


def _authorize(public: Path, clients_dir: Path) -> Path:
    clients_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = clients_dir / public.name
    shutil.copyfile(public, target)
    os.chmod(target, 0o644)
    return target


def _generated(row: dict[str, Any]) -> Table:
    table = Table(title=f"keypair {row['name']}", show_header=False)
    table.add_row("public key", row["public_key"])
    table.add_row("public file", row["public_file"] + "  (copy it to the other side)")
    table.add_row("secret file", row["secret_file"] + "  (mode 0600; never copy it)")
    if row["authorized"]:
        table.add_row("authorized", row["authorized"])
    return table


@keys_group.command("authorize")
@click.argument("public_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path), help="Keys directory (default: the config's)."
)
@outcome_command
def authorize_command(public_file: Path, directory: Path | None) -> Outcome:
    """Admit a client: copy its public key file (NAME.key) into the authorized clients directory."""
    _, clients_dir = _dirs(directory)
    try:
        key = load_public_key(public_file)
    except CurveKeyError as exc:
        return failure(str(exc), code="bad_key")
    if not public_file.name.endswith(PUBLIC_SUFFIX):
        return failure(f"{public_file}: a public key file ends in {PUBLIC_SUFFIX}", code="bad_key")
    target = _authorize(public_file, clients_dir)
    return success({"public_key": key.decode(), "authorized": str(target)})


@keys_group.command("list")
@click.option(
    "--dir", "directory", type=click.Path(path_type=Path), help="Keys directory (default: the config's)."
)
@outcome_command
def list_command(directory: Path | None) -> Outcome:
    """Keypairs of the keys directory and the clients the trader admits."""
    keys_dir, clients_dir = _dirs(directory)
    data = {
        "keys_dir": str(keys_dir),
        "keys": list_keys(keys_dir),
        "clients_dir": str(clients_dir),
        "clients": list_keys(clients_dir),
    }
    return success(data, human=_listed)


def _listed(data: dict[str, Any]) -> Group:
    tables = []
    for title, rows in (
        (f"keys in {data['keys_dir']}", data["keys"]),
        (f"authorized clients in {data['clients_dir']}", data["clients"]),
    ):
        table = Table(title=title)
        for column in ("name", "public key", "secret"):
            table.add_column(column)
        for row in rows:
            secret = "yes" if row.get("secret") else "no"
            table.add_row(row["name"], row.get("public") or f"[red]{row.get('error')}[/]", secret)
        if not rows:
            table.add_row("(none)", "", "")
        tables.append(table)
    return Group(*tables)
