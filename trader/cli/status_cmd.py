"""``cli.py status`` and ``cli.py reconnect``: the whole system at a glance, and a fresh IB session.

``status`` asks pycron for its processes (GET /processes; pycron not running is a row saying so,
not an error), then the trader for its ``status`` and ``get_subscriptions``. The trader not
answering is the one error: one line, exit status 2.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.client import trader_client
from trader.cli.output import Outcome, outcome_command, success
from trader.cli.pycron_cmd import STATE_STYLES, Refused, Target, Unreachable, human_uptime, request
from trader.config import ConfigError

PYCRON_TIMEOUT_S = 2.0
RECONNECT_TIMEOUT_S = 30.0
RECONNECT_POLL_S = 0.2
SETTLED = ("connected", "degraded")
NO_RISK_GATE = {"state": "active", "note": "no risk gate yet"}
IB_STYLES = {"connected": "green", "connecting": "yellow", "syncing": "yellow", "degraded": "dark_orange"}


def pycron_processes(timeout: float = PYCRON_TIMEOUT_S) -> dict[str, Any]:
    """pycron's jobs: ``{"running": true, "url", "jobs"}``, or ``{"running": false, "url", "error"}``."""
    target = Target(None, None, None, None)
    try:
        url = target.url
    except ConfigError as exc:
        return {"running": False, "url": None, "error": f"pycron config: {exc}"}
    try:
        jobs = request(target, "GET", "/processes", {}, timeout=timeout)
    except Unreachable:
        return {"running": False, "url": url, "error": f"pycron is not running at {url}"}
    except Refused as exc:
        return {"running": False, "url": url, "error": f"pycron: {exc.message}"}
    return {"running": True, "url": url, "jobs": jobs if isinstance(jobs, list) else []}


def trading_state(status: dict[str, Any]) -> dict[str, Any]:
    """What the trader says about trading (``trading`` in its status), else active without a gate."""
    trading = status.get("trading")
    if isinstance(trading, dict):
        return trading
    return dict(NO_RISK_GATE)


def subscription_summary(subs: list[dict[str, Any]], status: dict[str, Any]) -> dict[str, Any]:
    """Count, symbols and the age of the newest tick (the subscriptions' ``last_tick_at``)."""
    now = time.time()
    ticks = [float(s["last_tick_at"]) for s in subs if s.get("last_tick_at")]
    age = round(now - max(ticks), 3) if ticks else status.get("last_tick_age_s")
    return {
        "count": len(subs),
        "symbols": sorted(str(s.get("topic")) for s in subs),
        "failed": sorted(str(s.get("topic")) for s in subs if s.get("failed")),
        "delayed": sorted(str(s.get("topic")) for s in subs if s.get("delayed")),
        "last_tick_age_s": age,
    }


def collect_status() -> dict[str, Any]:
    """The ``status`` document (raises CliFailure, exit 2, when the trader does not answer)."""
    with trader_client() as client:
        status: dict[str, Any] = client.call("status")
        subs: list[dict[str, Any]] = client.call("get_subscriptions")
    return {
        "processes": pycron_processes(),
        "trader": status,
        "trading": trading_state(status),
        "subscriptions": subscription_summary(subs, status),
    }


# --- rendering ------------------------------------------------------------------------------------


def when(epoch_s: Any) -> str:
    """``2026-01-14 15:04:05 (3m 12s ago)`` of epoch seconds; ``-`` for none."""
    if not epoch_s:
        return "-"
    at = datetime.fromtimestamp(float(epoch_s)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{at} ({human_uptime(max(0.0, time.time() - float(epoch_s)))} ago)"


def ib_state(ib: dict[str, Any]) -> Text:
    state = str(ib.get("state", "unknown"))
    text = Text(state, style=IB_STYLES.get(state, "bold red"))
    if ib.get("since"):
        text.append(f" since {when(ib['since'])}")
    if ib.get("reason") and state != "connected":
        text.append(f" - {ib['reason']}")
    return text


def processes_table(processes: dict[str, Any]) -> RenderableType:
    table = Table(title="processes (pycron)", title_justify="left")
    for column in ("name", "state", "pid", "uptime", "restarts", "reason"):
        table.add_column(column, justify="right" if column in ("pid", "uptime", "restarts") else "left")
    if not processes.get("running"):
        table.add_row("pycron", Text("not running", style="bold red"), "-", "-", "-", processes.get("error"))
        return table
    for job in processes.get("jobs", []):
        state = str(job.get("state"))
        table.add_row(
            str(job.get("name")),
            Text(state, style=STATE_STYLES.get(state, "")),
            str(job.get("pid") or "-"),
            human_uptime(job.get("uptime_s")),
            str(job.get("restarts", 0)),
            Text(str(job.get("reason") or "")),
        )
    return table


def trader_table(doc: dict[str, Any]) -> RenderableType:
    status, subs, trading = doc["trader"], doc["subscriptions"], doc["trading"]
    ib = status.get("ib", {})
    endpoints = status.get("endpoints", {})
    store = status.get("store", {})
    book = status.get("book", {})
    table = Table(title=f"trader (pid {status.get('pid')})", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    age = subs.get("last_tick_age_s")
    symbols = ", ".join(subs["symbols"]) or "-"
    rows: list[tuple[str, str | Text]] = [
        ("IB", ib_state(ib)),
        ("IB gateway", f"{ib.get('host')}:{ib.get('port')}"),
        ("client id", f"{ib.get('client_id')} (configured {ib.get('configured_client_id', '-')})"),
        ("account", str(ib.get("account") or "-")),
        ("trading", f"{trading.get('state')}" + (f" ({trading['note']})" if trading.get("note") else "")),
        ("subscriptions", f"{subs['count']}: {symbols}"),
        ("last tick", "-" if age is None else f"{human_uptime(float(age))} ago"),
        (
            "book",
            f"{book.get('orders', 0)} orders, {book.get('working', 0)} working, "
            f"{book.get('open_positions', 0)} open positions",
        ),
        ("data dir", str(status.get("data_dir"))),
        ("store", str(store.get("uri") or status.get("store_uri"))),
        ("rpc", str(endpoints.get("rpc"))),
        ("events", str(endpoints.get("events"))),
        ("ticks", str(endpoints.get("ticks"))),
        ("uptime", human_uptime(status.get("uptime_s"))),
        ("version", str(status.get("version"))),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def render_status(doc: dict[str, Any]) -> RenderableType:
    return Group(processes_table(doc["processes"]), trader_table(doc))


def render_session(session: dict[str, Any]) -> RenderableType:
    line = Text.assemble(("IB: ", "bold"), ib_state(session))
    line.append(f" (client id {session.get('client_id')}, account {session.get('account') or '-'}, ")
    line.append(f"{session.get('connects', 0)} connects)")
    return line


# --- the commands ---------------------------------------------------------------------------------


@click.command("status")
@outcome_command
def status_command() -> Outcome:
    """Every process (pycron), the IB connection, trading state, subscriptions, store, endpoints.

    pycron not running is shown as a row; the trader not answering is an error (exit status 2).
    """
    return success(collect_status(), human=render_status)


def reconnect(wait_s: float) -> dict[str, Any]:
    """Ask for a new IB session; wait up to ``wait_s`` for it to be made (connected, or degraded);
    the session's status (``ib`` of ``status``) then."""
    with trader_client() as client:
        before = int(client.call("status").get("ib", {}).get("connects") or 0)
        session: dict[str, Any] = client.call("reconnect", timeout=RECONNECT_TIMEOUT_S)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            session = client.call("status").get("ib", session)
            if int(session.get("connects") or 0) > before and session.get("state") in SETTLED:
                break
            time.sleep(RECONNECT_POLL_S)
    return session


@click.command("reconnect")
@click.option(
    "--wait",
    type=click.FloatRange(0, 600),
    default=15.0,
    show_default=True,
    help="Seconds to wait for the new session (0: print the state right after the drop).",
)
@outcome_command
def reconnect_command(wait: float) -> Outcome:
    """Drop the trader's IB connection and make a new one now (then it reconciles); print the session."""
    return success(reconnect(wait), human=render_session)
