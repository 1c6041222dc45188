"""Tick fan-out: TickPublisher -> TickSubscriber (DataFrames) vs a raw one-msgpack-dict-per-tick loop.

Run: ``.venv/bin/python bench/messaging_fanout.py`` (about 45 s, 6 configurations of ~7 s). The
process running :func:`run` is the trader-like publisher; subscribers are separate processes, 1
then 4 of them, all subscribed to everything. Ticks have 6 fields (time: tz-aware datetime set at
publish, bid, ask, last, bid_size, ask_size) over 50 symbols. Subscribers: ``ours`` (one DataFrame
per topic per drain, the default), ``merged`` (``merge_topics=True``: one DataFrame per drain with
a topic column) and ``raw``. Two phases per configuration:

* ``max``: the publisher pushes as fast as it can for a few seconds, yielding to the event loop
  every ``CHUNK`` ticks (so batches flush, as a trader's loop would); each subscriber reports the
  ticks it delivered per second between the phase's start and end markers. With more ticks than
  a subscriber can take, ZeroMQ drops for it at its high-water mark; what it delivered counts.
* ``paced``: 20,000 ticks/s (published each millisecond, as they come due); latency is per tick,
  from the ``publish()`` call (the tick's time) to the moment the subscriber's callback holds it
  in a DataFrame (raw: holds the unpacked dict).

Baseline, same machine, same run, measured the same way: ``send_multipart([topic,
msgpack.packb(tick)])`` per tick; subscribers ``recv_multipart`` + ``unpackb`` per tick. "cores"
rows are process CPU time over wall time (all threads, ZeroMQ's I/O thread included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgpack
import numpy as np
import pandas as pd
import zmq

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trader.messaging.pubsub import TickPublisher, TickSubscriber  # noqa: E402

SYMBOLS: Final = [f"SYM{i:02d}" for i in range(50)]
CTL: Final = "ctl"
CHUNK: Final = 1000  # ticks published per event-loop iteration in the max phase
MAX_SECONDS: Final = 3.0
PACED_SECONDS: Final = 3.0
PACED_RATE: Final = 20_000
RAW_HWM: Final = 1_000_000  # messages; a raw message is one tick, so give it room
SUB_COUNTS: Final = (1, 4)
OURS: Final = ("ours", "merged")  # per-topic DataFrames / one DataFrame per drain (merge_topics)
KINDS: Final = (*OURS, "raw")


def _tick(i: int) -> dict[str, Any]:
    px = 100.0 + (i % 997) * 0.01
    return {
        "time": dt.datetime.now(dt.UTC),
        "bid": px,
        "ask": px + 0.01,
        "last": px + 0.005,
        "bid_size": 100 + i % 7,
        "ask_size": 200 + i % 5,
    }


# --------------------------------------------------------------------------- subscriber processes


class _Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.rows = 0
        self.start = time.perf_counter()
        self.cpu = time.process_time()
        self.latencies: list[np.ndarray[Any, Any]] = []

    def result(self, extra: dict[str, Any]) -> str:
        elapsed = time.perf_counter() - self.start
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        p50, p99, worst = (np.percentile(lat, [50, 99, 100]) / 1e6).tolist() if len(lat) else (0, 0, 0)
        cpu = (time.process_time() - self.cpu) / elapsed  # cores used (all threads, incl. zmq I/O)
        out = {
            "phase": self.name,
            "rows": self.rows,
            "elapsed": elapsed,
            "rate": self.rows / elapsed,
            "cpu": cpu,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": worst,
            **extra,
        }
        return "RESULT " + json.dumps(out)


async def _sub_ours(endpoint: str, merge_topics: bool) -> None:
    phase: _Phase | None = None
    done = asyncio.Event()
    sub = TickSubscriber(endpoint, prefixes=[""], merge_topics=merge_topics)
    ready = False

    def on_batch(topic: str, frame: pd.DataFrame) -> None:
        if phase is not None:
            now = time.time_ns()
            phase.rows += len(frame)
            times = frame["time"].to_numpy(dtype="datetime64[ns]").view(np.int64)
            phase.latencies.append(now - times)

    def on_event(topic: str, body: Any) -> None:
        nonlocal phase, ready
        cmd = body.get("cmd")
        if not ready:
            ready = True
            print("READY", flush=True)
        if cmd == "start" and (phase is None or phase.name != body["phase"]):
            phase = _Phase(body["phase"])
        elif cmd == "end" and phase is not None and phase.name == body["phase"]:
            stats = sub.stats
            print(
                phase.result(
                    {
                        "dropped_rows": stats.dropped_rows,
                        "frames": stats.frames,
                        "batches": stats.batches,
                        "drains": stats.drains,
                    }
                ),
                flush=True,
            )
            phase = None
        elif cmd == "quit":
            done.set()

    sub.on_batch, sub.on_event = on_batch, on_event
    async with sub:
        sub.start()
        await done.wait()


def _sub_raw(endpoint: str) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, RAW_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    phase: _Phase | None = None
    ready = False
    lat: list[int] = []
    ctl = CTL.encode()
    while True:
        topic, payload = sock.recv_multipart()
        tick = msgpack.unpackb(payload)
        if topic != ctl:
            if phase is not None:
                phase.rows += 1
                lat.append(time.time_ns() - tick["time"].to_unix_nano())
            continue
        if not ready:
            ready = True
            print("READY", flush=True)
        cmd = tick.get("cmd")
        if cmd == "start" and (phase is None or phase.name != tick["phase"]):
            phase = _Phase(tick["phase"])
            lat = []
        elif cmd == "end" and phase is not None and phase.name == tick["phase"]:
            phase.latencies.append(np.array(lat, dtype=np.int64))
            print(phase.result({}), flush=True)
            phase = None
        elif cmd == "quit":
            break
    sock.close(0)


# --------------------------------------------------------------------------- publisher (this process)


class _Sender:
    """One API over both publishers: ``tick(symbol, row)``, ``ctl(body)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ours: TickPublisher | None = None
        self.raw: zmq.Socket[bytes] | None = None
        if kind in OURS:
            self.ours = TickPublisher("tcp://127.0.0.1:*", heartbeat_s=1.0)
            self.endpoint = self.ours.endpoint
        else:
            self.raw = zmq.Context.instance().socket(zmq.PUB)
            self.raw.setsockopt(zmq.SNDHWM, RAW_HWM)
            self.raw.setsockopt(zmq.LINGER, 0)
            self.raw.bind("tcp://127.0.0.1:*")
            self.endpoint = self.raw.getsockopt_string(zmq.LAST_ENDPOINT)
        self.topics = {s: s.encode() for s in SYMBOLS}

    def tick(self, symbol: str, row: dict[str, Any]) -> None:
        if self.ours is not None:
            self.ours.publish(symbol, row)
        elif self.raw is not None:
            try:  # noqa: SIM105 - no context manager in the per-tick loop of the baseline
                self.raw.send_multipart((self.topics[symbol], msgpack.packb(row, datetime=True)), zmq.NOBLOCK)
            except zmq.Again:
                pass

    def ctl(self, body: dict[str, Any]) -> None:
        if self.ours is not None:
            self.ours.publish_event(CTL, body)
        elif self.raw is not None:
            with contextlib.suppress(zmq.Again):
                self.raw.send_multipart((CTL.encode(), msgpack.packb(body)), zmq.NOBLOCK)

    def close(self) -> None:
        if self.ours is not None:
            self.ours.close()
        if self.raw is not None:
            self.raw.close(0)


class _Sub:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            await self.lines.put(raw.decode().rstrip())
        await self.lines.put("EOF")

    async def expect(self, prefix: str) -> str:
        while True:
            line = await self.lines.get()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if line == "EOF":
                raise RuntimeError(f"subscriber exited before {prefix!r}")


async def _until(
    sender: _Sender,
    body: dict[str, Any],
    waits: list[asyncio.Task[str]],
    every: float = 0.02,
    limit: float = 60.0,
) -> list[str]:
    """Send ``body`` every ``every`` s until all ``waits`` finish (a marker may be dropped)."""
    deadline = time.monotonic() + limit
    while not all(w.done() for w in waits):
        if time.monotonic() > deadline:
            raise TimeoutError(f"subscribers did not answer {body}")
        sender.ctl(body)
        await asyncio.wait(waits, timeout=every)
    return [w.result() for w in waits]


async def _max_phase(sender: _Sender, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    symbols, n_sym = SYMBOLS, len(SYMBOLS)
    sent = 0
    start = loop.time()
    while loop.time() - start < seconds:
        for i in range(sent, sent + CHUNK):
            sender.tick(symbols[i % n_sym], _tick(i))
        sent += CHUNK
        await asyncio.sleep(0)
    return sent / (loop.time() - start)


async def _paced_phase(sender: _Sender, seconds: float, rate: int) -> float:
    loop = asyncio.get_running_loop()
    symbols, n_sym = SYMBOLS, len(SYMBOLS)
    sent = 0
    start = loop.time()
    while (elapsed := loop.time() - start) < seconds:
        due = int(elapsed * rate)
        for i in range(sent, due):
            sender.tick(symbols[i % n_sym], _tick(i))
        sent = max(sent, due)
        await asyncio.sleep(0.0005)
    return sent / (loop.time() - start)


async def _config(kind: str, n_subs: int) -> dict[str, float]:
    sender = _Sender(kind)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subs: list[_Sub] = []
    try:
        for _ in range(n_subs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--role",
                "sub",
                "--kind",
                kind,
                "--endpoint",
                sender.endpoint,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                cwd=ROOT,
            )
            subs.append(_Sub(proc))
        loop = asyncio.get_running_loop()
        await _until(sender, {"cmd": "probe"}, [loop.create_task(s.expect("READY")) for s in subs])
        out: dict[str, float] = {}
        for phase in ("max", "paced"):
            sender.ctl({"cmd": "start", "phase": phase})
            if phase == "max":
                out["pub_rate"] = await _max_phase(sender, MAX_SECONDS)
            else:
                cpu, start = time.process_time(), time.perf_counter()
                out["paced_rate"] = await _paced_phase(sender, PACED_SECONDS, PACED_RATE)
                out["paced_pub_cpu"] = (time.process_time() - cpu) / (time.perf_counter() - start)
            waits = [loop.create_task(s.expect("RESULT")) for s in subs]
            results = [json.loads(r) for r in await _until(sender, {"cmd": "end", "phase": phase}, waits)]
            rates = [r["rate"] for r in results]
            out[f"{phase}_rate_min"] = min(rates)
            out[f"{phase}_rate_mean"] = statistics.fmean(rates)
            out[f"{phase}_p50_ms"] = statistics.fmean(r["p50_ms"] for r in results)
            out[f"{phase}_p99_ms"] = max(r["p99_ms"] for r in results)
            out[f"{phase}_sub_cpu"] = statistics.fmean(r["cpu"] for r in results)
        sender.ctl({"cmd": "quit"})
        for sub in subs:
            try:
                await asyncio.wait_for(sub.proc.wait(), 5)
            except TimeoutError:
                sub.proc.kill()
        return out
    finally:
        for sub in subs:
            if sub.proc.returncode is None:
                sub.proc.kill()
                await sub.proc.wait()
            sub.reader.cancel()
        sender.close()


def run(report: Callable[[str], None] | None = None) -> dict[str, float]:
    """Run every configuration; returns flat figures keyed ``<kind>_<n>sub_<figure>``."""
    say = report or (lambda _line: None)
    results: dict[str, float] = {}
    for n_subs in SUB_COUNTS:
        for kind in KINDS:
            say(f"running {kind} with {n_subs} subscriber(s)...")
            figures = asyncio.run(_config(kind, n_subs))
            results.update({f"{kind}_{n_subs}sub_{k}": v for k, v in figures.items()})
    say(_table(results))
    return results


def _table(r: dict[str, float]) -> str:
    rows = [
        ("delivered ticks/s per sub (max, min over subs)", "max_rate_min", "{:,.0f}"),
        ("delivered ticks/s per sub (max, mean)", "max_rate_mean", "{:,.0f}"),
        ("publisher ticks/s (max phase)", "pub_rate", "{:,.0f}"),
        ("latency p50 ms @20k/s (mean over subs)", "paced_p50_ms", "{:.2f}"),
        ("latency p99 ms @20k/s (worst sub)", "paced_p99_ms", "{:.2f}"),
        ("delivered ticks/s per sub (paced, min)", "paced_rate_min", "{:,.0f}"),
        ("cores per sub process (max phase, mean)", "max_sub_cpu", "{:.2f}"),
        ("cores per sub process (paced, mean)", "paced_sub_cpu", "{:.2f}"),
        ("publisher cores (paced)", "paced_pub_cpu", "{:.2f}"),
    ]
    head = f"{'':48s}" + "".join(f"{f'{k} {n}sub':>14s}" for n in SUB_COUNTS for k in KINDS)
    lines = [f"cores: {os.cpu_count()}", head]
    for label, key, fmt in rows:
        cells = [r.get(f"{k}_{n}sub_{key}") for n in SUB_COUNTS for k in KINDS]
        lines.append(
            f"{label:48s}" + "".join(f"{fmt.format(c) if c is not None else '-':>14s}" for c in cells)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("bench", "sub"), default="bench")
    parser.add_argument("--kind", choices=KINDS, default="ours")
    parser.add_argument("--endpoint", default="")
    args = parser.parse_args()
    if args.role == "sub":
        if args.kind in OURS:
            asyncio.run(_sub_ours(args.endpoint, merge_topics=args.kind == "merged"))
        else:
            _sub_raw(args.endpoint)
        return
    run(report=print)


if __name__ == "__main__":
    main()
