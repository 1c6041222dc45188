"""``cli.py exchange ...``: the paper exchange's control RPC from the terminal (faults, status, reset).

Every command calls one method of the control RPC (:mod:`trader.exchange.control`) at
``--endpoint``, by default ``exchange.control_rpc`` of ``--config`` (configs/exchange.yaml, with
the ``BOURSE_EXCHANGE_CONTROL_RPC`` override), and prints what the exchange did (``--json``: the
ok/error envelope). An unreachable exchange or a refused command is one error line and exit 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table

from trader.cli.output import Outcome, emit, failure, json_option, success
from trader.config import ConfigError
from trader.config.exchange import ExchangeConfig
from trader.config.schema import load
from trader.exchange.faults import (
    CONFIRMATION_REQUIRED,
    CONNECTIVITY_CHANGES,
    FARM_STATES,
    FARMS,
    REJECT_STATUSES,
)
from trader.messaging.rpc import RpcClient, RpcClientError, RpcRemoteError

DEFAULT_CONFIG = Path("configs/exchange.yaml")


def control_endpoint(config_path: str | None) -> str:
    """``exchange.control_rpc`` of the exchange config (environment overrides applied)."""
    path = Path(config_path).expanduser() if config_path else DEFAULT_CONFIG
    return load(ExchangeConfig, path, os.environ).exchange.control_rpc


def call(endpoint: str, method: str, params: dict[str, Any], timeout: float) -> Outcome:
    """One control RPC call as an :class:`Outcome`."""
    try:
        with RpcClient(endpoint, timeout=timeout) as client:
            result = client.call(method, params, timeout=timeout)
    except RpcRemoteError as exc:
        return failure(f"{method}: {exc.code}: {exc.message}", code=exc.code)
    except RpcClientError as exc:
        return failure(f"the exchange control RPC at {endpoint} did not answer: {exc}", code="unavailable")
    return success(result, human=_status_table if method == "status" else _result_table(method))


def _result_table(method: str) -> Callable[[Any], RenderableType]:
    def render(result: Any) -> RenderableType:
        table = Table(title=f"exchange {method}", show_header=False)
        for key, value in (result or {}).items():
            table.add_row(str(key), _text(value))
        return table

    return render


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _status_table(status: dict[str, Any]) -> RenderableType:
    table = Table(title=f"paper exchange {status.get('host')}:{status.get('port')}", show_header=False)
    rows = [
        ("listening", status.get("listening")),
        ("uptime_s", status.get("uptime_s")),
        ("clients", status.get("clients")),
        ("connections", status.get("connections")),
        ("orders", status.get("orders")),
        ("market", status.get("market")),
        ("pacing", "on" if status.get("pacing") else "off"),
        ("delay_ms", (status.get("faults") or {}).get("delay_ms")),
        ("faults active", status.get("active") or "none"),
    ]
    for key, value in rows:
        table.add_row(key, _text(value))
    return table


def _control(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command shares: --endpoint, --config, --timeout, --json."""
    fn = json_option(fn)
    fn = click.option(
        "--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for the reply."
    )(fn)
    fn = click.option(
        "--config",
        "config_path",
        help=f"Exchange config for the default endpoint (default: {DEFAULT_CONFIG}).",
    )(fn)
    return click.option(
        "--endpoint", help="Control RPC endpoint (default: exchange.control_rpc of the config)."
    )(fn)


def run(method: str, params: dict[str, Any], opts: dict[str, Any]) -> None:
    """Resolve the endpoint, call, print; exits non-zero on any error."""
    as_json = bool(opts["as_json"])
    endpoint = opts["endpoint"]
    if endpoint is None:
        try:
            endpoint = control_endpoint(opts["config_path"])
        except ConfigError as exc:
            emit(failure(str(exc), code="invalid_config"), as_json)
            return
    emit(call(endpoint, method, params, opts["timeout"]), as_json)


@click.group("exchange")
def exchange_group() -> None:
    """Drive the paper exchange: status, faults on command, reset."""


@exchange_group.command("status")
@_control
def status_command(**opts: Any) -> None:
    """Clients, orders, uptime, market mode and the faults in effect."""
    run("status", {}, opts)


@exchange_group.command("drop")
@_control
def drop_command(**opts: Any) -> None:
    """Drop every client connection at once (as when TWS dies)."""
    run("drop", {}, opts)


@exchange_group.command("restart")
@click.option("--seconds", type=click.FloatRange(0, 600, min_open=True), required=True, help="Downtime.")
@_control
def restart_command(seconds: float, **opts: Any) -> None:
    """A gateway restart: drop all, refuse connections for N seconds, then accept again."""
    run("restart", {"seconds": seconds}, opts)


@exchange_group.command("connectivity")
@click.argument("change", type=click.Choice(CONNECTIVITY_CHANGES))
@_control
def connectivity_command(change: str, **opts: Any) -> None:
    """IB <-> TWS connectivity: lost (1100), restored (1102), restored-data-lost (1101)."""
    run("connectivity", {"change": change}, opts)


@exchange_group.command("farm")
@click.option("--name", type=click.Choice(list(FARMS)), required=True, help="Data farm.")
@click.option("--state", type=click.Choice(FARM_STATES), required=True, help="New state.")
@_control
def farm_command(name: str, state: str, **opts: Any) -> None:
    """A data farm notice to every client (2103-2108, 2157/2158)."""
    run("farm", {"name": name, "state": state}, opts)


@exchange_group.command("reject-next")
@click.option("--count", type=click.IntRange(0, 10_000), default=1, show_default=True, help="0 clears.")
@click.option(
    "--code", type=click.IntRange(1, 99_999), default=201, show_default=True, help="TWS error code."
)
@click.option(
    "--text",
    default="Order rejected - reason:Rejected by the paper exchange (fault).",
    show_default=True,
    help="TWS error text.",
)
@click.option(
    "--status", "order_status", type=click.Choice(REJECT_STATUSES), default="Inactive", show_default=True
)
@_control
def reject_next_command(count: int, code: int, text: str, order_status: str, **opts: Any) -> None:
    """Reject the next N new orders with that error and status (--count 0 clears)."""
    run("reject_next", {"count": count, "code": code, "text": text, "status": order_status}, opts)


@exchange_group.command("pacing")
@click.argument("state", type=click.Choice(["on", "off"]))
@_control
def pacing_command(state: str, **opts: Any) -> None:
    """Historical-data pacing (error 162) on or off."""
    run("pacing", {"enabled": state == "on"}, opts)


@exchange_group.command("delay")
@click.option("--ms", type=click.IntRange(0, 60_000), required=True, help="Delay in ms; 0 clears it.")
@_control
def delay_command(ms: int, **opts: Any) -> None:
    """Delay everything sent to clients (acknowledgements, fills, data) by N ms."""
    run("delay", {"ms": ms}, opts)


@exchange_group.command("shock")
@click.option("--symbol", required=True, help="AAPL, or a local symbol (ESZ6, EUR.USD).")
@click.option("--percent", type=float, required=True, help="Move in percent, e.g. -5.")
@_control
def shock_command(symbol: str, percent: float, **opts: Any) -> None:
    """Move an instrument by X% at once."""
    run("shock", {"symbol": symbol, "percent": percent}, opts)


@exchange_group.command("halt")
@click.option("--symbol", required=True)
@_control
def halt_command(symbol: str, **opts: Any) -> None:
    """Halt an instrument: quotes stop (tick 49), orders wait."""
    run("halt", {"symbol": symbol}, opts)


@exchange_group.command("resume")
@click.option("--symbol", required=True)
@_control
def resume_command(symbol: str, **opts: Any) -> None:
    """Resume a halted instrument."""
    run("resume", {"symbol": symbol}, opts)


@exchange_group.command("reset")
@click.option("--yes", "confirmed", is_flag=True, help="Confirm: forget the account and every order.")
@click.option("--cash", type=click.FloatRange(0, 1e12), help="Starting cash (default: account.initial_cash).")
@_control
def reset_command(confirmed: bool, cash: float | None, **opts: Any) -> None:
    """Forget the account and every order (clients are dropped); needs --yes."""
    if not confirmed:
        message = "reset forgets the account and every order: pass --yes"
        emit(failure(message, code=CONFIRMATION_REQUIRED), bool(opts["as_json"]))
        return
    params: dict[str, Any] = {"confirm": True}
    if cash is not None:
        params["cash"] = cash
    run("reset", params, opts)
