"""``cli.py info``: a live full-screen dashboard of the trading system.

The state (:class:`~trader.cli.dashboard_view.DashboardState`) is loaded once from the trader's RPC
(status, positions, open orders, fills, subscriptions) and pycron, then kept current from the
events PUB and the ticks PUB (zmq.events / zmq.ticks of the trader config); only pycron's processes
and the subscription list are asked again, every :data:`SLOW_REFRESH_S`. The screen is redrawn on
changes (at most every :data:`REDRAW_S`) and once a second. ``q`` or Ctrl+C quits; the terminal
is restored whatever happens. ``--once`` (or output that is not a terminal) prints one frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import click
from rich.live import Live

from trader.cli.client import trader_client, trader_curve
from trader.cli.context import cli_context
from trader.cli.dashboard_view import FILLS_KEPT, DashboardState, render
from trader.cli.output import Outcome, console, failure, outcome_command, success
from trader.cli.status_cmd import pycron_processes
from trader.messaging.pubsub import TickSubscriber

__all__ = ["DashboardState", "info_command", "render", "run_live", "snapshot"]

EVENT_PREFIXES = ("order.", "fill.", "position.", "account", "connection", "reconcile", "error")
SLOW_REFRESH_S = 10.0
REDRAW_S = 0.25
"""Redraw at most this often on events; at least once a second (ages and the clock move)."""
ONCE_TICKS_S = 1.0
"""``--once`` listens this long at most for a price of every subscribed symbol."""


def snapshot() -> dict[str, Any]:
    """The initial state from the trader's RPC and pycron (CliFailure, exit 2: trader down)."""
    with trader_client() as client:
        out = {
            "status": client.call("status"),
            "positions": client.call("get_positions", include_flat=True),
            "orders": client.call("get_orders", open_only=True),
            "fills": client.call("get_fills")[-FILLS_KEPT:],
            "subscriptions": client.call("get_subscriptions"),
        }
    return out | {"processes": pycron_processes()}


def slow_refresh() -> dict[str, Any]:
    with trader_client() as client:
        subscriptions = client.call("get_subscriptions")
    return {"subscriptions": subscriptions, "processes": pycron_processes()}


def tick_rows(frame: Any) -> list[dict[str, Any]]:
    """The rows of a tick batch (a DataFrame, its index may be the time) as dicts."""
    if not hasattr(frame, "to_dict"):
        return list(frame)
    if "time" not in frame.columns:
        frame = frame.reset_index(names="time")
    return list(frame.tail(1).to_dict("records"))


@contextlib.contextmanager
def cbreak_keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys one by one, no echo) when it is a terminal; restored always."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios  # noqa: PLC0415 - POSIX terminals only
    import tty  # noqa: PLC0415

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Feeds:
    """The two subscribers, feeding ``state`` and flagging ``dirty``."""

    def __init__(self, state: DashboardState, dirty: asyncio.Event) -> None:
        config = cli_context().trader_config()
        curve = trader_curve()
        self.state, self.dirty = state, dirty
        self.events = TickSubscriber(
            config.zmq.events, prefixes=EVENT_PREFIXES, on_event=self.on_event, curve=curve
        )
        self.ticks = TickSubscriber(config.zmq.ticks, on_batch=self.on_batch, curve=curve)
        self.follow_subscriptions()
        self.tasks = [self.events.start(), self.ticks.start()]

    def on_event(self, topic: str, body: Any) -> None:
        if isinstance(body, Mapping):
            self.state.apply_event(topic, body)
            self.dirty.set()

    def on_batch(self, topic: str, frame: Any) -> None:
        self.state.apply_ticks(topic, tick_rows(frame))
        self.dirty.set()

    def follow_subscriptions(self) -> None:
        for topic in self.state.subscriptions:
            self.ticks.subscribe_exact(topic)  # the ticks only, not the bars

    async def refresh(self) -> None:
        """pycron's processes and the subscriptions again (a trader restarting: keep what we have)."""
        with contextlib.suppress(Exception):
            self.state.load(await asyncio.to_thread(slow_refresh))
            self.follow_subscriptions()
            self.dirty.set()

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.events.close()
        self.ticks.close()


async def capture_prices(state: DashboardState, within: float = ONCE_TICKS_S) -> None:
    """Listen to the ticks (and events) until every subscribed symbol has a price, or ``within``."""
    dirty = asyncio.Event()
    feeds = _Feeds(state, dirty)
    try:
        async with asyncio.timeout(within):
            while any("time" not in state.prices.get(t, {}) for t in state.subscriptions):
                await dirty.wait()
                dirty.clear()
    except TimeoutError:
        pass
    finally:
        await feeds.aclose()


async def run_live(state: DashboardState) -> None:
    """Draw ``state`` full screen, updated from the events and ticks PUBs, until q or Ctrl+C."""
    loop = asyncio.get_running_loop()
    stop, dirty = asyncio.Event(), asyncio.Event()
    out = console()

    def on_key(fd: int) -> None:
        data = os.read(fd, 64)
        if not data or b"q" in data.lower():
            stop.set()

    feeds = _Feeds(state, dirty)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        with cbreak_keys() as fd, Live(console=out, screen=True, auto_refresh=False) as live:
            if fd is not None:
                loop.add_reader(fd, on_key, fd)
            try:
                next_slow = time.monotonic() + SLOW_REFRESH_S
                while not stop.is_set():
                    live.update(render(state, out.width, out.height), refresh=True)
                    dirty.clear()
                    await _first(stop.wait(), dirty.wait(), within=1.0)
                    await asyncio.sleep(REDRAW_S if dirty.is_set() else 0)  # coalesce a burst
                    if time.monotonic() >= next_slow:
                        next_slow = time.monotonic() + SLOW_REFRESH_S
                        await feeds.refresh()
            finally:
                if fd is not None:
                    loop.remove_reader(fd)
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        await feeds.aclose()


async def _first(*waits: Any, within: float) -> None:
    """Until the first of ``waits`` is done, or ``within`` seconds."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@click.command("info")
@click.option(
    "--once", is_flag=True, help="Print one frame and exit (for scripts; also when not a terminal)."
)
@outcome_command
def info_command(once: bool) -> Outcome | None:
    """A live full-screen dashboard: positions, open orders, fills, P&L, IB, processes, prices.

    Loaded from the trader's RPC, then updated from its events and ticks. q or Ctrl+C quits.
    With --json: the state as one document (implies --once).
    """
    state = DashboardState()
    state.load(snapshot())
    out = console()
    if once or cli_context().as_json or not out.is_terminal:
        if state.subscriptions:
            asyncio.run(capture_prices(state))
        return success(state.to_dict(), human=lambda _: render(state, out.width, out.height))
    if not sys.stdout.isatty():
        return failure("info needs a terminal (use --once)")
    asyncio.run(run_live(state))
    return None
