"""``cli.py subscribe ...``: live market data through the trader (owner ``cli``).

* ``start`` / ``stop`` / ``list`` call the trader's ``subscribe``, ``unsubscribe`` (owner ``cli``)
  and ``get_subscriptions``. A stream lives while any owner wants it, so ``stop`` never cuts a
  strategy's data; subscriptions survive a trader restart.
* ``listen`` prints the ticks of the trader's ticks PUB (``zmq.ticks`` of the trader config; topic =
  local symbol), one line per tick, until Ctrl+C (exit 0) or ``--count`` ticks; with ``--json`` one
  JSON object per line. It only listens: ``subscribe start`` makes the trader stream. When nothing
  (not even the PUB's heartbeat) arrives for a few seconds, it asks the trader: down -> exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table

from trader.cli.client import trader_call, trader_client, trader_curve, trader_endpoint
from trader.cli.context import cli_context
from trader.cli.market_cmd import plain, text
from trader.cli.output import CliFailure, Outcome, failure, outcome_command, success
from trader.config.schema import ConfigError
from trader.messaging.curve import CurveKeys
from trader.messaging.pubsub import TickBatch, TickSubscriber

OWNER = "cli"
QUIET_S = 3.0
"""Nothing at all (ticks or heartbeats) for this long: is the trader up?"""
TICK_FIELDS = (
    "time",
    "con_id",
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",
    "last_size",
    "volume",
    "delayed",
)


def clock(epoch_s: Any) -> str:
    """An epoch-seconds time as ``HH:MM:SS`` UTC (``-`` when none)."""
    if not isinstance(epoch_s, int | float) or not epoch_s:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S")


def subscriptions_table(infos: list[dict[str, Any]]) -> RenderableType:
    if not infos:
        return "no subscriptions (start one: cli.py subscribe start --symbol AAPL)"
    table = Table(title="subscriptions")
    for column in ("topic", "conId", "owners", "data", "ticks", "last tick (UTC)", "bars", "error"):
        table.add_column(column, justify="right" if column in ("conId", "ticks") else "left")
    for info in infos:
        bars = ", ".join(f"{b['bar_size']} ({b['bars']})" for b in info.get("bars", []))
        data = "failed" if info.get("failed") else ("delayed" if info.get("delayed") else "live")
        table.add_row(
            str(info.get("topic")),
            str(info.get("con_id")),
            ", ".join(info.get("owners", [])),
            data,
            str(info.get("ticks", 0)),
            clock(info.get("last_tick_at")),
            bars or "-",
            text(info.get("error")),
        )
    return table


@click.group("subscribe")
def subscribe_group() -> None:
    """Live market data: subscribe (owner cli), list, stop, listen to the ticks."""


@subscribe_group.command("start")
@click.option("--symbol", "symbols", multiple=True, help="AAPL, or a conId (repeatable).")
@click.option("--universe", help="Every member of this universe.")
@click.option("--bar-size", help="Also stream bars of this size ('5 secs', '1 min' ...).")
@click.option("--sec-type", default="STK", show_default=True)
@click.option("--exchange", default="SMART", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@outcome_command
def start_command(
    *,
    symbols: tuple[str, ...],
    universe: str | None,
    bar_size: str | None,
    sec_type: str,
    exchange: str,
    currency: str,
) -> Outcome:
    """Stream instruments' ticks (and bars with --bar-size) on the ticks PUB, for owner cli."""
    if not symbols and not universe:
        return failure("give --symbol (repeatable) or --universe", code="bad_params")
    params: dict[str, Any] = {"owner": OWNER, "sec_type": sec_type, "exchange": exchange}
    params["currency"] = currency
    con_ids = [int(s) for s in symbols if s.strip().isdigit()]
    names = [s for s in symbols if not s.strip().isdigit()]
    if bar_size:
        params["bar_size"] = bar_size
    with trader_client() as trader:
        if universe:
            members = trader.call("get_universe", name=universe)["members"]
            con_ids += [int(m["con_id"]) for m in members if m.get("con_id")]
        if names:
            params["symbols"] = names
        if con_ids:
            params["con_ids"] = list(dict.fromkeys(con_ids))
        infos = trader.call("subscribe", **params)
    return success(plain(infos), human=subscriptions_table)


@subscribe_group.command("list")
@click.option("--owner", help="Only this owner's (default: every owner's).")
@outcome_command
def list_command(owner: str | None) -> Outcome:
    """The trader's subscriptions, their owners, tick counts and bar streams."""
    params: dict[str, Any] = {} if owner is None else {"owner": owner}
    infos = trader_call("get_subscriptions", **params)
    return success(plain(infos), human=subscriptions_table)


@subscribe_group.command("stop")
@click.option("--symbol", "symbols", multiple=True, help="Only these (repeatable; default: all of cli's).")
@click.option("--bar-size", help="Only the bars of this size (the ticks stay).")
@click.option("--sec-type", default="STK", show_default=True)
@click.option("--exchange", default="SMART", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@outcome_command
def stop_command(
    symbols: tuple[str, ...], bar_size: str | None, sec_type: str, exchange: str, currency: str
) -> Outcome:
    """Drop owner cli's subscriptions (a stream stops when its last owner leaves)."""
    params: dict[str, Any] = {"owner": OWNER}
    if names := [s for s in symbols if not s.strip().isdigit()]:
        params |= {"symbols": names, "sec_type": sec_type, "exchange": exchange, "currency": currency}
    if con_ids := [int(s) for s in symbols if s.strip().isdigit()]:
        params["con_ids"] = con_ids
    if bar_size:
        params["bar_size"] = bar_size
    result = trader_call("unsubscribe", **params)
    return success(result, human=lambda r: f"unsubscribed {r['unsubscribed']} (owner {OWNER})")


# -- listen -----------------------------------------------------------------------------------------


def tick_line(topic: str, row: dict[str, Any]) -> str:
    """``03:16:50.889  AAPL  bid 181.62 x 525  ask 181.63 x 75  last 181.62 x 150``."""
    stamp = row.get("time")
    clock = stamp.strftime("%H:%M:%S.%f")[:-3] if isinstance(stamp, datetime) else str(stamp)

    def pair(price: str, size: str) -> str:
        return f"{price} {text(row.get(price))} x {text(row.get(size))}"

    line = f"{clock}  {topic:<10} {pair('bid', 'bid_size')}  {pair('ask', 'ask_size')}"
    line += f"  {pair('last', 'last_size')}"
    return line + ("  (delayed)" if row.get("delayed") else "")


def tick_json(topic: str, row: dict[str, Any]) -> str:
    record = {"symbol": topic, **{k: row.get(k) for k in TICK_FIELDS if k in row}}
    return json.dumps(plain(record), default=str)


def ticks_endpoint() -> str:
    try:
        return cli_context().trader_config().zmq.ticks
    except ConfigError as exc:
        raise CliFailure(failure(str(exc), code="invalid_config", exit_code=2)) from None


def check_trader() -> None:
    """Ping the trader: a CliFailure (exit 2) when it does not answer."""
    with trader_client() as trader:
        trader.call("status")


async def listen(
    endpoint: str, symbols: tuple[str, ...], count: int | None, as_json: bool, curve: CurveKeys | None = None
) -> int:
    """Print ticks until ``count`` (None: forever); returns how many were printed."""
    printed = 0
    hinted = False
    async with TickSubscriber(endpoint, curve=curve) as sub:
        for symbol in symbols:
            sub.subscribe_exact(symbol)
        if not symbols:
            sub.subscribe("")
        started = quiet_since = time.monotonic()
        while count is None or printed < count:
            try:
                async with asyncio.timeout(QUIET_S):
                    messages = await sub.receive()
            except TimeoutError:
                messages = []
            if sub.last_heartbeat_age < QUIET_S:
                quiet_since = time.monotonic()
            for msg in messages:
                if not isinstance(msg, TickBatch) or ".bars." in msg.topic:
                    continue
                for record in msg.frame.to_dict("records"):
                    row = {str(k): v for k, v in record.items()}
                    click.echo(tick_json(msg.topic, row) if as_json else tick_line(msg.topic, row))
                    printed += 1
                    if count is not None and printed >= count:
                        break
                sys.stdout.flush()
                if count is not None and printed >= count:
                    break
            if time.monotonic() - quiet_since >= QUIET_S:
                await asyncio.to_thread(check_trader)  # down: exit 2
                quiet_since = time.monotonic()
            if printed == 0 and not hinted and time.monotonic() - started >= QUIET_S:
                hinted = True
                wanted = ", ".join(symbols) or "any symbol"
                hint = f"no ticks yet for {wanted} on {endpoint} (the trader is up; is it subscribed? "
                click.echo(hint + "cli.py subscribe start --symbol ...)", err=True)
    return printed


@subscribe_group.command("listen")
@click.option("--symbol", "symbols", multiple=True, help="Only these topics (local symbols; repeatable).")
@click.option("--count", type=click.IntRange(1), help="Stop after N ticks (default: until Ctrl+C).")
@outcome_command
def listen_command(symbols: tuple[str, ...], count: int | None) -> Outcome | None:
    """Print live ticks from the trader's ticks PUB (one line each) until Ctrl+C or --count."""
    endpoint = ticks_endpoint()
    trader_endpoint()  # a broken config fails here, before listening
    curve = trader_curve()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(listen(endpoint, symbols, count, cli_context().as_json, curve))
    return None
