"""``cli.py strategy ...``: the strategy services' strategies - list, status, enable, disable, reload.

Each command talks to the RPC of the shard hosting the strategy: ``tcp://<shards.host>:<shards.
base_port + K>`` from configs/strategies.yaml (``--config``, else ``$BOURSE_STRATEGIES_CONFIG``;
``BOURSE_SHARDS_BASE_PORT`` and the other overrides apply). A shard that does not answer is one
line and exit status 2; an unknown strategy or a refused parameter is exit status 1.

``call_if_available`` is kept for the commands whose trader RPC is not there yet (risk).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.client import trader_client
from trader.cli.output import CliFailure, Outcome, failure, outcome_command, success, unavailable
from trader.config.schema import ConfigError
from trader.messaging.rpc import RpcClient, RpcClientError, RpcRemoteError, RpcTimeout, RpcUnavailable
from trader.strategy.config import StrategiesConfig, load_strategies, strategies_config_path

CONNECT_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 15.0
EXIT_CONFIG = 2
STATE_STYLES = {"RUNNING": "green", "DISABLED": "yellow", "ERROR": "bold red", "WARMING_UP": "cyan"}


def call_if_available(method: str, message: str, **params: Any) -> Outcome:
    """``method``'s result when the trader offers it; else ``message`` (code ``not_available``)."""
    with trader_client() as client:
        names = {str(m.get("name")) for m in client.call("methods") if isinstance(m, dict)}
        if method not in names:
            return failure(message, code="not_available")
        return success(client.call(method, **params))


# -- the shards ---------------------------------------------------------------------------------------


def load_config(path: str | None) -> tuple[StrategiesConfig, Path]:
    where = strategies_config_path(path, os.environ)
    try:
        return load_strategies(where, os.environ), where
    except ConfigError as exc:
        raise CliFailure(failure(str(exc), code="invalid_config", exit_code=EXIT_CONFIG)) from None


class ShardClient:
    def __init__(self, rpc: RpcClient, shard: int, endpoint: str) -> None:
        self.rpc, self.shard, self.endpoint = rpc, shard, endpoint

    def call(self, method: str, *, timeout: float = CALL_TIMEOUT_S, **params: Any) -> Any:
        try:
            return self.rpc.call(method, params, timeout=timeout)
        except RpcRemoteError as exc:
            raise CliFailure(failure(exc.message, code=exc.code)) from None
        except (RpcTimeout, RpcUnavailable):
            service = f"strategy service (shard {self.shard})"
            raise CliFailure(unavailable(service, self.endpoint)) from None
        except RpcClientError as exc:
            raise CliFailure(failure(f"{self.endpoint}: {exc}", code="rpc_error")) from None


@contextmanager
def shard_client(config: StrategiesConfig, shard: int) -> Iterator[ShardClient]:
    """A client of shard ``shard`` that answered a ping (else a CliFailure, exit 2)."""
    endpoint = config.shards.endpoint(shard)
    with RpcClient(endpoint, timeout=CALL_TIMEOUT_S, max_retries=1) as rpc:
        client = ShardClient(rpc, shard, endpoint)
        client.call("ping", timeout=CONNECT_TIMEOUT_S)
        yield client


def shard_of(config: StrategiesConfig, path: Path, name: str) -> int:
    entries = config.entries()
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise CliFailure(failure(f"no strategy {name!r} in {path} (known: {known})", code="unknown_strategy"))
    return entries[name].shard


def on_shard(path: str | None, name: str, method: str, **params: Any) -> Any:
    config, where = load_config(path)
    with shard_client(config, shard_of(config, where, name)) as client:
        return client.call(method, name=name, **params)


# -- rendering ----------------------------------------------------------------------------------------


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def _positions(status: dict[str, Any]) -> str:
    return ", ".join(f"{s} {q:g}" for s, q in (status.get("position") or {}).items() if q) or "flat"


def list_table(rows: list[dict[str, Any]]) -> RenderableType:
    table = Table(title="strategies", title_justify="left")
    for column in (
        "name",
        "shard",
        "state",
        "instruments",
        "bar size",
        "position",
        "working",
        "fills",
        "error",
    ):
        table.add_column(column)
    for row in rows:
        error = (row.get("last_error") or "").strip().splitlines()
        table.add_row(
            row["name"],
            str(row.get("shard", "")),
            _state(str(row.get("state", ""))),
            ", ".join(row.get("instruments", [])),
            str(row.get("bar_size", "")),
            _positions(row),
            str(len(row.get("working_orders") or [])),
            str(row.get("fills", 0)),
            error[-1] if error else "",
        )
    return table


def status_view(status: dict[str, Any]) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("strategy", f"{status['name']} ({status.get('class', '')}) on shard {status.get('shard')}")
    head.add_row("state", _state(str(status.get("state", ""))))
    head.add_row("instruments", f"{', '.join(status.get('instruments', []))} - {status.get('bar_size')}")
    head.add_row("params", ", ".join(f"{k}={v!r}" for k, v in (status.get("params") or {}).items()))
    head.add_row("position", _positions(status))
    head.add_row("targets", ", ".join(f"{s} {q:g}" for s, q in (status.get("targets") or {}).items()) or "-")
    head.add_row("fills", str(status.get("fills", 0)))
    hooks = status.get("hooks") or {}
    head.add_row(
        "hooks",
        ", ".join(f"{k} {v.get('calls', 0)}x max {v.get('max_ms', 0):.1f} ms" for k, v in hooks.items())
        or "-",
    )
    sender = status.get("sender") or {}
    head.add_row("orders sent", ", ".join(f"{k} {v}" for k, v in sender.items() if v not in (None, 0)) or "-")
    parts: list[RenderableType] = [head]
    working = status.get("working_orders") or []
    if working:
        table = Table(title="working orders", title_justify="left")
        for column in ("client order id", "symbol", "action", "quantity", "type", "state", "remaining"):
            table.add_column(column)
        for o in working:
            cells = ("client_order_id", "symbol", "action", "quantity", "order_type", "state", "remaining")
            table.add_row(*(str(o.get(key)) for key in cells))
        parts.append(table)
    if status.get("last_error"):
        parts.append(Text("last error:\n" + str(status["last_error"]).rstrip(), style="red"))
    return Group(*parts)


# -- commands -----------------------------------------------------------------------------------------

config_option = click.option(
    "--config",
    "config_path",
    help="Strategies config (default: $BOURSE_STRATEGIES_CONFIG, else configs/strategies.yaml).",
)


@click.group("strategy")
def strategy_group() -> None:
    """The strategies of the strategy services: list, status, enable, disable, reload."""


@strategy_group.command("list")
@config_option
@outcome_command
def list_command(config_path: str | None) -> Outcome:
    """Every strategy of every shard with its state, position and working orders."""
    config, _ = load_config(config_path)
    shards = sorted({entry.shard for entry in config.entries().values()})
    rows: list[dict[str, Any]] = []
    for shard in shards:
        with shard_client(config, shard) as client:
            rows += client.call("list")
    return success(rows, human=list_table)


@strategy_group.command("status")
@click.argument("name")
@config_option
@outcome_command
def status_command(name: str, config_path: str | None) -> Outcome:
    """Strategy NAME in detail: state, parameters, position, working orders, last error."""
    return success(on_shard(config_path, name, "status"), human=status_view)


@strategy_group.command("enable")
@click.argument("name")
@config_option
@outcome_command
def enable_command(name: str, config_path: str | None) -> Outcome:
    """Let strategy NAME trade (again: also after an ERROR)."""
    status = on_shard(config_path, name, "enable")
    return success(status, human=lambda s: Text.assemble(f"{s['name']}: ", _state(str(s["state"]))))


@strategy_group.command("disable")
@click.argument("name")
@click.option("--cancel-orders", is_flag=True, help="Also cancel its working orders.")
@config_option
@outcome_command
def disable_command(name: str, cancel_orders: bool, config_path: str | None) -> Outcome:
    """Stop strategy NAME from trading (its positions and, unless --cancel-orders, its orders stay)."""
    status = on_shard(config_path, name, "disable", cancel_orders=cancel_orders)
    return success(status, human=lambda s: Text.assemble(f"{s['name']}: ", _state(str(s["state"]))))


@strategy_group.command("reload")
@click.argument("name")
@config_option
@outcome_command
def reload_command(name: str, config_path: str | None) -> Outcome:
    """Give strategy NAME the parameters the config file has now (checked against its class)."""
    status = on_shard(config_path, name, "reload")
    params = ", ".join(f"{k}={v!r}" for k, v in (status.get("params") or {}).items())
    return success(status, human=lambda s: f"{s['name']}: params {params}")
