"""``cli.py ping``: is the trader service answering its RPC? (CurveZMQ when the config enables it.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from trader.cli.context import cli_context
from trader.cli.output import Outcome, emit, failure, json_option, success, unavailable
from trader.config import ConfigError
from trader.config.paths import resolve_config_path, resolve_data_dir
from trader.config.schema import load
from trader.config.trader import TraderConfig
from trader.messaging.curve import CurveKeyError, CurveKeys
from trader.messaging.rpc import RpcClient, RpcClientError, RpcRemoteError, RpcTimeout, RpcUnavailable


def trader_config(config_path: str | None) -> TraderConfig:
    path = resolve_config_path(config_path, os.environ, Path("configs/trader.yaml"))
    return load(TraderConfig, path, os.environ)


def trader_endpoint(config_path: str | None) -> str:
    return trader_config(config_path).zmq.rpc


def ping(endpoint: str, timeout: float, curve: CurveKeys | None = None) -> Outcome:
    started = time.perf_counter()
    try:
        with RpcClient(endpoint, timeout=timeout, curve=curve) as client:
            reply: dict[str, Any] = client.call("ping", timeout=timeout)
    except RpcRemoteError as exc:
        return failure(f"{endpoint}: {exc.code}: {exc.message}", code=exc.code)
    except (RpcTimeout, RpcUnavailable):
        return unavailable("trader service", endpoint)
    except RpcClientError as exc:
        return failure(f"{endpoint}: {exc}", code="rpc_error")
    reply["round_trip_ms"] = round((time.perf_counter() - started) * 1000, 3)
    reply["endpoint"] = endpoint
    return success(reply, human=_table)


def _table(reply: dict[str, Any]) -> Table:
    table = Table(title=f"trader at {reply['endpoint']}", show_header=False)
    for key in ("server_id", "uptime_s", "in_flight", "round_trip_ms"):
        table.add_row(key, str(reply.get(key)))
    return table


@click.command("ping")
@click.option("--endpoint", help="Trader RPC endpoint (default: zmq.rpc of the trader config).")
@click.option(
    "--config", "config_path", help="Trader config (default: $BOURSE_CONFIG, else configs/trader.yaml)."
)
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for the reply.")
@json_option
def ping_command(endpoint: str | None, config_path: str | None, timeout: float, as_json: bool) -> None:
    """Round trip to the trader service's RPC."""
    try:
        config: TraderConfig | None = trader_config(config_path)
    except ConfigError as exc:
        if endpoint is None:
            emit(failure(str(exc), code="invalid_config"), as_json)
            return
        config = None  # an explicit endpoint needs no config (and gets no curve keys)
    curve: CurveKeys | None = None
    if config is not None:
        endpoint = endpoint or config.zmq.rpc
        data_dir = resolve_data_dir(cli_context().data_dir, os.environ, config.data_dir)
        try:
            curve = config.zmq.curve.client_keys(data_dir)
        except CurveKeyError as exc:
            emit(failure(f"zmq.curve: {exc}", code="curve_keys", exit_code=2), as_json)
            return
    assert endpoint is not None
    emit(ping(endpoint, timeout, curve), as_json)
