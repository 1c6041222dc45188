#!/usr/bin/env python3
"""Trader service benchmarks, beside raw ib_async on the same paper exchange in the same run.

    .venv/bin/python bench/trading.py [--orders 200] [--seconds 5]

* **order round trip**: a MKT order for 1 SPY (alternating sides), sequential, paced 25 ms apart
  (under ib_async's 45 requests/s throttle, which both sides keep):
  - baseline: raw ib_async (its own client id) ``placeOrder`` -> the fill (``trade.fillEvent``);
  - Bourse: ``place_order`` over RPC -> trader -> exchange -> the ``fill.<strategy>`` event back on
    the events PUB. The fill is made durable in the fill journal (an fsynced append, group
    committed) before it is published, so the figure includes that; ArcticDB is written behind.
    The ``order.<strategy>`` event with state Filled (published as soon as the execution is
    booked) and the RPC reply are shown beside it.
  Raw and trader orders alternate in blocks so that both see the same market and machine.
* **memory**: the trader's RSS idle, then with every instrument of the universe subscribed and
  streaming (the shipped universe has 37 instruments, so 37, not 100), on a fast market (100 ms
  steps, 10 quotes/s per instrument); ticks/s received on the ticks PUB and the trader's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ib_async import IB, MarketOrder, Stock  # noqa: E402

from trader.exchange.instruments import load_universe  # noqa: E402
from trader.messaging.pubsub import Event, TickSubscriber  # noqa: E402
from trader.messaging.rpc import AsyncRpcClient  # noqa: E402

QUIET = {"BOURSE_LOGGING_CONSOLE": "false", "BOURSE_MARKET_HOURS": "always", "PYTHONUNBUFFERED": "1"}
FAST_MARKET = {"BOURSE_MARKET_STEP_MS": "100", "BOURSE_MARKET_TICK_RATE": "10"}
RISK_FOR_BENCH = {
    # The shipped strategy rate limit (20 orders/s) would throttle a 40/s benchmark: raise it (every
    # other check still runs on every order, so the gate's cost is in the figures).
    "BOURSE_RISK_STRATEGY_LIMITS": "{max_position_notional: 250000, max_open_orders: 100, "
    "max_orders_per_second: 1000, max_orders_per_minute: 100000, max_daily_loss: 10000}",
}
PACE_S = 0.025


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _endpoint() -> str:
    return f"tcp://127.0.0.1:{_free_port()}"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Service:
    """A service process started with ``args`` and ``env``, awaited on its ready line."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **QUIET, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if re.search(ready, line):
                break
        else:
            self.stop()
            raise RuntimeError(f"{args[0]} did not start:\n" + "".join(seen[-20:]))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@contextlib.contextmanager
def system(market: dict[str, str]) -> Iterator[tuple[int, dict[str, str], Service]]:
    """An exchange (free port) and a trader service (IB client 0, free endpoints), fresh dirs."""
    with tempfile.TemporaryDirectory(prefix="bench-trader-") as tmp:
        port = _free_port()
        args = ["services/exchange_service.py", "--port", str(port), "--data-dir", f"{tmp}/exchange"]
        exchange = Service([*args, "--reset", "--control", "off"], market, r"exchange ready on")
        endpoints = {"rpc": _endpoint(), "ticks": _endpoint(), "events": _endpoint()}
        env = {f"BOURSE_ZMQ_{k.upper()}": v for k, v in endpoints.items()}
        env |= {"BOURSE_IB_PORT": str(port), "BOURSE_IB_CLIENT_ID": "0", "BOURSE_DATA_DIR": f"{tmp}/trader"}
        env |= RISK_FOR_BENCH
        try:
            trader = Service(["services/trader_service.py"], env, r"trader service ready")
            try:
                yield port, endpoints, trader
            finally:
                trader.stop()
        finally:
            exchange.stop()


async def _connected(rpc: AsyncRpcClient) -> None:
    for _ in range(400):
        if (await rpc.call("status"))["ib"]["state"] == "connected":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the trader did not connect to the exchange")


# --------------------------------------------------------------------------- order round trips


async def round_trips(port: int, endpoints: dict[str, str], orders: int) -> dict[str, list[float]]:
    ids = itertools.count()
    out: dict[str, list[float]] = {"raw": [], "fill_event": [], "order_event": [], "rpc_reply": []}
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=901)
    spy = Stock("SPY", "SMART", "USD")
    await ib.qualifyContractsAsync(spy)
    async with (
        AsyncRpcClient(endpoints["rpc"], timeout=10) as rpc,
        TickSubscriber(endpoints["events"], prefixes=["fill.bench", "order.bench"]) as events,
    ):
        await _connected(rpc)
        await rpc.call("resolve_symbol", symbol="SPY")  # cached in the trader from now on
        arrivals: dict[tuple[str, str], float] = {}
        wake = asyncio.Event()

        async def listen() -> None:
            async for msg in events:
                if isinstance(msg, Event):
                    body = msg.body
                    if msg.topic.startswith("fill.") or body.get("state") == "Filled":
                        arrivals[msg.topic.split(".")[0], body["client_order_id"]] = time.perf_counter()
                        wake.set()

        listener = asyncio.create_task(listen())

        async def raw(i: int) -> None:
            started = time.perf_counter()
            trade = ib.placeOrder(spy, MarketOrder("BUY" if i % 2 == 0 else "SELL", 1))
            while not trade.fills:
                await asyncio.wait_for(trade.fillEvent, 10)
            out["raw"].append(time.perf_counter() - started)

        async def bourse(i: int) -> None:
            coid = f"b{next(ids)}"
            started = time.perf_counter()
            await rpc.call(
                "place_order",
                strategy="bench",
                client_order_id=coid,
                symbol="SPY",
                action="BUY" if i % 2 == 0 else "SELL",
                quantity=1,
            )
            replied = time.perf_counter()
            async with asyncio.timeout(10):
                while ("fill", coid) not in arrivals:
                    wake.clear()
                    await wake.wait()
            out["rpc_reply"].append(replied - started)
            out["fill_event"].append(arrivals["fill", coid] - started)
            out["order_event"].append(arrivals["order", coid] - started)

        try:
            for fn in (raw, bourse):  # warm-up
                for i in range(20):
                    await fn(i)
                    await asyncio.sleep(PACE_S)
            for values in out.values():
                values.clear()
            block = 25
            for start in range(0, orders, block):
                for fn in (raw, bourse):
                    for i in range(start, min(start + block, orders)):
                        await fn(i)
                        await asyncio.sleep(PACE_S)
        finally:
            listener.cancel()
            ib.disconnect()
    return out


# --------------------------------------------------------------------------- memory with streams


async def streaming(endpoints: dict[str, str], trader: Service, seconds: float) -> dict[str, float]:
    con_ids = [inst.conId for inst in load_universe()]
    async with (
        AsyncRpcClient(endpoints["rpc"], timeout=20) as rpc,
        TickSubscriber(endpoints["ticks"], prefixes=[""], merge_topics=True) as ticks,
    ):
        await _connected(rpc)
        await asyncio.sleep(1.0)
        idle = trader.rss_mb()
        subscribed = await rpc.call("subscribe", owner="bench", con_ids=con_ids)
        rows = 0
        deadline = time.monotonic() + 2.0  # warm-up: every stream started
        cpu0 = 0.0
        started = 0.0
        async for msg in ticks:
            if time.monotonic() >= deadline:
                if not started:
                    started, cpu0, rows = time.monotonic(), trader.cpu_s(), 0
                    deadline = started + seconds
                else:
                    break
            if not isinstance(msg, Event):
                rows += len(msg.frame)
        elapsed = time.monotonic() - started
        return {
            "instruments": float(len(subscribed)),
            "idle_rss_mb": idle,
            "rss_mb": trader.rss_mb(),
            "ticks_per_s": rows / elapsed,
            "cpu": (trader.cpu_s() - cpu0) / elapsed,
        }


# --------------------------------------------------------------------------- report


def run(
    report: Callable[[str], None] | None = None, *, orders: int = 200, seconds: float = 5.0
) -> dict[str, float]:
    """Measure; print the tables; return the figures (ms, MB, ticks/s)."""
    say = report or print
    results: dict[str, float] = {}
    with system({}) as (port, endpoints, _trader):
        rt = asyncio.run(round_trips(port, endpoints, orders))
    base = _pct(rt["raw"], 0.5)
    say(f"Order round trip ({orders} sequential MKT orders, 1 SPY, paced {PACE_S * 1000:g} ms)")
    say(f"  {'':<58}{'p50 ms':>9}{'p99 ms':>9}{'p50 - base':>12}")
    rows: list[tuple[str, str]] = [
        ("raw ib_async placeOrder -> fill (baseline)", "raw"),
        ("Bourse place_order RPC -> reply", "rpc_reply"),
        ("Bourse place_order RPC -> order event (Filled)", "order_event"),
        ("Bourse place_order RPC -> fill event (journaled first)", "fill_event"),
    ]
    for name, key in rows:
        p50, p99 = _pct(rt[key], 0.5) * 1000, _pct(rt[key], 0.99) * 1000
        results[f"{key}_p50_ms"], results[f"{key}_p99_ms"] = p50, p99
        extra = "" if key in ("raw", "rpc_reply") else f"{p50 - base * 1000:>+11.3f}"
        say(f"  {name:<58}{p50:>9.3f}{p99:>9.3f}{extra:>12}")
    added = results["fill_event_p50_ms"] - results["raw_p50_ms"]
    say(
        f"  trader adds {added:.2f} ms at p50 to the fill (goal < 2 ms: {'met' if added < 2 else 'NOT met'});"
    )
    say(f"  to the Filled order event: {results['order_event_p50_ms'] - results['raw_p50_ms']:.2f} ms")
    say("")
    with system(FAST_MARKET) as (_port, endpoints, trader):
        mem = asyncio.run(streaming(endpoints, trader, seconds))
    results.update(mem)
    count = f"{mem['instruments']:.0f}"
    say(f"Trader memory: idle, then {count} instruments subscribed (the whole universe: 100 do not exist)")
    say(f"streaming on a fast market (100 ms steps, 10 quotes/s each), {seconds:g} s window")
    say(f"  {'RSS idle':<30}{mem['idle_rss_mb']:>8.0f} MB")
    say(f"  {'RSS streaming':<30}{mem['rss_mb']:>8.0f} MB")
    say(f"  {'ticks/s on the ticks PUB':<30}{mem['ticks_per_s']:>8.0f}")
    say(f"  {'trader CPU':<30}{mem['cpu']:>8.0%}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    run(orders=args.orders, seconds=args.seconds)


if __name__ == "__main__":
    main()
