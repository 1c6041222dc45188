#!/usr/bin/env python3
"""Paper exchange benchmarks: stock ib_async against the exchange process, beside in-run baselines.

    .venv/bin/python bench/exchange.py [--orders 200] [--connects 50] [--starts 3] [--seconds 5]
                                       [--fanout 32]

* **order round trip**: an ib_async MKT order (1 share of SPY, alternating sides) from
  ``placeOrder`` to its Filled ``orderStatus``, sequentially. Baselines on the same exchange: the raw
  TWS socket round trip of ``reqCurrentTime`` from a minimal hand-written client (framing and
  handshake only: the floor of any request), and the same request through ib_async
  (``reqCurrentTimeAsync``: the client library's share).
* **ticks/s** streamed into one ib_async client's ``Ticker`` objects (``TickData`` entries, as
  ``pendingTickersEvent`` sees them), from the fast test market (100 ms steps, 10 quotes/s per
  instrument, every instrument open). The market makes at most 37 x 10 quotes/s, so the load comes
  from ``--fanout`` subscriptions per instrument (TWS allows several market data lines per
  contract; ib_async routes them to the one Ticker per contract). Shown beside one subscription per
  instrument. ib_async's request throttle is off (``MaxRequests = 0``) so the subscriptions go out
  at once. A finer market (``step_ms`` 10) is not used: its day blocks take ~7 GB.
* **connect()**: ``IB.connectAsync`` until ib_async reports connected (handshake, startApi and the
  initial sync of positions, orders, account, executions), fresh client ids. Baseline: the raw
  client's handshake + startApi until nextValidId and managedAccounts.
* **start-up**: process start to the ready line (market warm-up included), fresh data dir. Baseline:
  ``python -c pass`` (the interpreter's own start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ib_async import IB, Contract, MarketOrder, Stock, Ticker  # noqa: E402

from trader.exchange.instruments import load_universe  # noqa: E402

READY = re.compile(r"exchange ready on ([\d.]+):(\d+)")
FAST_MARKET = {"BOURSE_MARKET_STEP_MS": "100", "BOURSE_MARKET_TICK_RATE": "10"}
QUIET = {"BOURSE_LOGGING_CONSOLE": "false", "BOURSE_MARKET_HOURS": "always", "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- the exchange process


class Exchange:
    """``services/exchange_service.py`` on a free port with a fresh data dir, control RPC off."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "services/exchange_service.py", "--port", str(_free_port())),
                *("--data-dir", str(data_dir), "--reset", "--control", "off"),
            ],
            cwd=ROOT,
            env={**os.environ, **QUIET, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if match := READY.search(line):
                self.host, self.port = match.group(1), int(match.group(2))
                break
        else:
            self.stop()
            raise RuntimeError("the exchange did not start:\n" + "".join(seen[-20:]))
        self.ready_s = time.perf_counter() - started

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@contextlib.contextmanager
def exchange(env: dict[str, str] | None = None) -> Iterator[Exchange]:
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        ex = Exchange(Path(tmp), env)
        try:
            yield ex
        finally:
            ex.stop()


# --------------------------------------------------------------------------- a minimal TWS client


class RawClient:
    """The TWS API by hand: length-prefixed NUL-separated fields, nothing else."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def start(cls, host: str, port: int, client_id: int) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        versions = b"v157..178"
        writer.write(b"API\0" + struct.pack(">I", len(versions)) + versions)
        await client.frame()  # server version, connection time
        client.send("71", "2", str(client_id), "")  # startApi
        seen: set[str] = set()
        while not {"9", "15"} <= seen:  # nextValidId and managedAccounts
            seen.add((await client.frame())[0])
        return client

    def send(self, *fields: str) -> None:
        payload = "".join(f"{f}\0" for f in fields).encode()
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    async def frame(self) -> list[str]:
        (length,) = struct.unpack(">I", await self.reader.readexactly(4))
        return (await self.reader.readexactly(length)).decode().split("\0")[:-1]

    async def current_time(self) -> None:
        self.send("49", "1")
        while (await self.frame())[0] != "49":
            pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# --------------------------------------------------------------------------- measurements


async def _timed(n: int, once: Callable[[int], Any]) -> list[float]:
    """Milliseconds of ``n`` sequential ``await once(i)``."""
    out = []
    for i in range(n):
        started = time.perf_counter()
        await once(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def round_trips(ex: Exchange, orders: int, pings: int) -> dict[str, list[float]]:
    raw = await RawClient.start(ex.host, ex.port, 900)
    ib = IB()
    ib.client.MaxRequests = (
        0  # ib_async's 45 requests/s throttle would dominate p99 (TWS's own limit is 50/s)
    )
    await ib.connectAsync(ex.host, ex.port, clientId=901)
    try:
        (spy,) = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        assert isinstance(spy, Contract)

        async def order(i: int) -> None:
            trade = ib.placeOrder(spy, MarketOrder("BUY" if i % 2 == 0 else "SELL", 1))
            if not trade.isDone():
                await asyncio.wait_for(_next(trade.filledEvent), 10)

        async def ib_ping(i: int) -> None:
            await ib.reqCurrentTimeAsync()

        async def raw_ping(i: int) -> None:
            await raw.current_time()

        for fn, warmup in ((order, 20), (ib_ping, 50), (raw_ping, 50)):
            await _timed(warmup, fn)
        return {
            "raw": await _timed(pings, raw_ping),
            "ib_ping": await _timed(pings, ib_ping),
            "order": await _timed(orders, order),
        }
    finally:
        ib.disconnect()
        await raw.close()


async def connects(ex: Exchange, n: int) -> dict[str, list[float]]:
    async def ib_connect(i: int) -> None:
        ib = IB()
        await ib.connectAsync(ex.host, ex.port, clientId=2000 + i, timeout=10)
        ib.disconnect()

    async def raw_connect(i: int) -> None:
        raw = await RawClient.start(ex.host, ex.port, 5000 + i)
        await raw.close()

    await _timed(3, lambda i: ib_connect(i + 900))
    return {"ib": await _timed(n, ib_connect), "raw": await _timed(n, raw_connect)}


async def tick_rate(ex: Exchange, fanout: int, seconds: float) -> dict[str, float]:
    ib = IB()
    ib.client.MaxRequests = 0  # no client-side throttle: all subscriptions go out at once
    await ib.connectAsync(ex.host, ex.port, clientId=1, timeout=10)
    ticks = 0

    def on_pending(tickers: set[Ticker]) -> None:
        nonlocal ticks
        ticks += sum(len(t.ticks) for t in tickers)

    ib.pendingTickersEvent += on_pending
    try:
        universe = load_universe()
        for inst in universe:
            for _ in range(fanout):
                ib.reqMktData(Contract(conId=inst.conId, exchange=inst.exchange))
        await asyncio.sleep(1.5)  # initial values of every subscription, then the steady stream
        t0, n0, c0, e0 = time.perf_counter(), ticks, time.process_time(), ex.cpu_s()
        await asyncio.sleep(seconds)  # a measuring window, not a wait for an event
        wall = time.perf_counter() - t0
        return {
            "ticks_per_s": (ticks - n0) / wall,
            "subscriptions": float(len(universe) * fanout),
            "client_cpu": (time.process_time() - c0) / wall,
            "exchange_cpu": (ex.cpu_s() - e0) / wall,
            "exchange_rss_mb": ex.rss_mb(),
        }
    finally:
        ib.disconnect()


async def _next(event: Any) -> Any:
    return await event


def startups(n: int) -> dict[str, list[float]]:
    ready = []
    for _ in range(n):
        with exchange() as ex:
            ready.append(ex.ready_s * 1000)
    floor = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append((time.perf_counter() - started) * 1000)
    return {"ready": ready, "python": floor}


# --------------------------------------------------------------------------- report


def run(
    report: Callable[[str], None] | None = None,
    *,
    orders: int = 200,
    connects_n: int = 50,
    starts: int = 3,
    seconds: float = 5.0,
    fanout: int = 32,
) -> dict[str, float]:
    """Measure everything; print a table per figure; return the figures (ms, ticks/s)."""
    say = report or print
    results: dict[str, float] = {}

    def row(name: str, values: list[float], base: list[float] | None, key: str) -> None:
        p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
        results[f"{key}_p50_ms"], results[f"{key}_p99_ms"] = p50, p99
        ratio = f"{p50 / _pct(base, 0.5):>10.1f}x" if base else f"{'':>11}"
        say(f"  {name:<44}{p50:>9.3f}{p99:>9.3f}{ratio}")

    header = f"  {'':<44}{'p50 ms':>9}{'p99 ms':>9}{'p50/base':>11}"
    with exchange() as ex:
        rt = asyncio.run(round_trips(ex, orders, max(orders, 500)))
        say(f"Order round trip ({orders} sequential ib_async MKT orders, 1 SPY)")
        say(header)
        row("raw socket reqCurrentTime (baseline)", rt["raw"], None, "raw_ping")
        row("ib_async reqCurrentTimeAsync", rt["ib_ping"], rt["raw"], "ib_ping")
        row("ib_async MKT placeOrder -> Filled status", rt["order"], rt["raw"], "order")
        say("")
        ct = asyncio.run(connects(ex, connects_n))
        say(f"connect() ({connects_n} sequential connects, fresh client ids)")
        say(header)
        row("raw handshake + startApi (baseline)", ct["raw"], None, "raw_connect")
        row("ib_async IB.connectAsync (with initial sync)", ct["ib"], ct["raw"], "connect")
        say("")
    with exchange(FAST_MARKET) as ex:
        one = asyncio.run(tick_rate(ex, 1, seconds))
        many = asyncio.run(tick_rate(ex, fanout, seconds))
    title = "Market data into one ib_async client's Tickers"
    say(f"{title} (fast market: 100 ms steps, 10 quotes/s per instrument, {seconds:g} s window)")
    say(f"  {'':<44}{'ticks/s':>10}{'client cpu':>11}{'exch cpu':>10}{'exch RSS':>10}")
    for name, r in (
        (f"1 subscription x {len(load_universe())} instruments", one),
        (f"{fanout} subscriptions each", many),
    ):
        say(
            f"  {name:<44}{r['ticks_per_s']:>10.0f}{r['client_cpu']:>10.0%}{r['exchange_cpu']:>10.0%}"
            f"{r['exchange_rss_mb']:>8.0f}MB"
        )
    results["ticks_per_s_one"] = one["ticks_per_s"]
    results["ticks_per_s"] = many["ticks_per_s"]
    say(f"  goal >= 20,000 ticks/s: {'met' if many['ticks_per_s'] >= 20_000 else 'NOT met'}")
    say("")
    st = startups(starts)
    say(f"Start-up to ready ({starts} starts, fresh data dir, --reset)")
    say(header)
    row("python -c pass (baseline)", st["python"], None, "python_start")
    row("exchange service: process start -> ready line", st["ready"], st["python"], "startup")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--connects", type=int, default=50)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fanout", type=int, default=32)
    args = parser.parse_args()
    run(
        orders=args.orders,
        connects_n=args.connects,
        starts=args.starts,
        seconds=args.seconds,
        fanout=args.fanout,
    )


if __name__ == "__main__":
    main()
