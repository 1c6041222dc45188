"""Pub/sub processes for the integration tests.

Subscriber::

    python tests/integration/pubsub_app.py sub --endpoint tcp://127.0.0.1:5556 --prefix AAPL \\
        [--exact T] [--mode iter|callback|observable] [--slow-ms 50] [--rcvhwm 10] [--rcvbuf 4096] \\
        [--end-topics AAPL,AAPL.X] [--stats]

Prints ``READY`` once a message on a subscribed topic arrived (the publisher probes until then),
``STATS {json}`` after every batch with ``--stats``, and ``SUMMARY {json}`` when an ``{"end":
true}`` event arrived on every topic of ``--end-topics``, then exits. ``--slow-ms`` sleeps that
long per batch (a deliberately slow consumer).

Publisher::

    python tests/integration/pubsub_app.py pub --endpoint tcp://127.0.0.1:5556 --topic AAPL \\
        [--interval-ms 5]

Publishes one row per topic every ``--interval-ms`` (``i`` counts up from 0), prints
``PUB READY src=<id>`` once bound, and runs until killed.

:func:`wait_for_line` is how the tests read these processes' output.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import faulthandler
import hashlib
import json
import os
import re
import selectors
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import Child
from trader.messaging.pubsub import Event, Message, TickBatch, TickPublisher, TickSubscriber

T0 = dt.datetime(2025, 3, 14, 14, 30, tzinfo=dt.UTC)


def make_row(topic: str, i: int) -> dict[str, Any]:
    """Row ``i`` of ``topic``: deterministic, every wire type (time, f8, i8, bool, str)."""
    base = sum(map(ord, topic)) / 7.0
    return {
        "time": T0 + dt.timedelta(microseconds=37 * i),
        "bid": base + i * 0.01,
        "ask": base + i * 0.01 + 0.5,
        "last": base + i * 0.25,
        "bid_size": 100 + i,
        "ask_size": -i,
        "halted": i % 5 == 0,
        "exchange": ("NYSE", "ARCA", "IEX")[i % 3],
    }


def frame_digest(frame: pd.DataFrame) -> str:
    """A hash of names, dtypes and exact values (time as int ns, floats bit for bit)."""
    h = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        h.update(f"{name}:{column.dtype};".encode())
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            h.update(column.to_numpy(dtype="datetime64[ns]").view(np.int64).tobytes())
        elif column.dtype == object:
            h.update("\x1f".join(map(repr, column.tolist())).encode())
        else:
            h.update(column.to_numpy().tobytes())
    return h.hexdigest()


_partial: dict[int, bytes] = {}


def wait_for_line(child: Child, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    """Like ``Child.wait_for_line``, reading the pipe with ``os.read``: a buffered ``readline``
    after ``select`` can leave complete lines in its buffer that ``select`` never reports."""
    regex = re.compile(pattern)
    for line in child.lines:
        if match := regex.search(line):
            return match
    assert child.popen.stdout is not None
    fd = child.popen.stdout.fileno()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            *complete, _partial[child.pid] = (_partial.get(child.pid, b"") + chunk).split(b"\n")
            found = None
            for raw in complete:
                line = raw.decode(errors="replace")
                child.lines.append(line)
                found = found or regex.search(line)
            if found:
                return found
    output = "\n".join(child.lines[-40:])
    raise AssertionError(f"no line matching {pattern!r} from {child.args} within {timeout}s:\n{output}")


class Summary:
    def __init__(self, sub: TickSubscriber, end_topics: set[str], slow_ms: float, stats: bool) -> None:
        self.sub = sub
        self.end_topics = end_topics
        self.ended: set[str] = set()
        self.slow_ms = slow_ms
        self.print_stats = stats
        self.frames: dict[str, list[pd.DataFrame]] = {}
        self.events: dict[str, int] = {}
        self.ready = False
        self.done = asyncio.Event()

    async def handle(self, msg: Message) -> None:
        """Record, then be slow (which holds up the subscriber's receive loop)."""
        self.record(msg)
        if isinstance(msg, TickBatch) and self.slow_ms:
            await asyncio.sleep(self.slow_ms / 1000)

    def record(self, msg: Message) -> None:
        if not self.ready:
            self.ready = True
            print("READY", flush=True)
        if isinstance(msg, TickBatch):
            self.frames.setdefault(msg.topic, []).append(msg.frame)
            if self.print_stats:
                print("STATS " + json.dumps(self.stats()), flush=True)
        elif isinstance(msg, Event):
            self.events[msg.topic] = self.events.get(msg.topic, 0) + 1
            if isinstance(msg.body, dict) and msg.body.get("end"):
                self.ended.add(msg.topic)
                if self.end_topics and self.end_topics <= self.ended and not self.done.is_set():
                    print("SUMMARY " + json.dumps(self.summary()), flush=True)
                    self.done.set()

    def stats(self) -> dict[str, Any]:
        s = self.sub.stats
        return {
            "rows": s.rows,
            "batches": s.batches,
            "frames": s.frames,
            "gaps": s.gaps,
            "dropped_messages": s.dropped_messages,
            "dropped_rows": s.dropped_rows,
            "malformed": s.malformed,
            "heartbeats": s.heartbeats,
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.stats(), "events": self.events, "topics": {}}
        for topic, frames in sorted(self.frames.items()):
            frame = pd.concat(frames, ignore_index=True)
            out["topics"][topic] = {
                "rows": len(frame),
                "frames": len(frames),
                "wire_batches": self.sub.stats.topics[topic].batches,
                "dtypes": {str(k): str(v) for k, v in frame.dtypes.items()},
                "digest": frame_digest(frame),
                "last": {k: str(v) for k, v in frame.iloc[-1].items()},
            }
        return out


async def run_sub(args: argparse.Namespace) -> None:
    sub = TickSubscriber(args.endpoint, rcvhwm=args.rcvhwm, rcvbuf=args.rcvbuf)
    for prefix in args.prefix:
        sub.subscribe(prefix)
    for topic in args.exact:
        sub.subscribe_exact(topic)
    end_topics = {t for t in args.end_topics.split(",") if t}
    if args.mode == "observable" and args.slow_ms:
        raise SystemExit("--slow-ms needs --mode iter or callback (observers cannot hold up the loop)")
    summary = Summary(sub, end_topics, args.slow_ms, args.stats)
    async with sub:
        if args.mode == "iter":
            async for msg in sub:
                await summary.handle(msg)
                if summary.done.is_set():
                    break
            return
        if args.mode == "observable":  # observers are synchronous: no --slow-ms here
            sub.observable().subscribe(summary.record)
        else:

            async def on_batch(topic: str, frame: pd.DataFrame) -> None:
                await summary.handle(TickBatch(topic, frame, 0, 0, (), 0))

            async def on_event(topic: str, body: Any) -> None:
                await summary.handle(Event(topic, body, 0, 0, 0))

            sub.on_batch, sub.on_event = on_batch, on_event
        sub.start()
        await summary.done.wait()


async def run_pub(args: argparse.Namespace) -> None:
    async with TickPublisher(args.endpoint, heartbeat_s=0.05) as pub:
        print(f"PUB READY src={pub.src}", flush=True)
        i = 0
        while True:
            for topic in args.topic:
                pub.publish(topic, make_row(topic, i))
            i += 1
            await asyncio.sleep(args.interval_ms / 1000)


def main() -> None:
    faulthandler.register(signal.SIGUSR1)  # a stuck child shows its stack when a test asks
    parser = argparse.ArgumentParser()
    sub_cmds = parser.add_subparsers(dest="cmd", required=True)
    sub = sub_cmds.add_parser("sub")
    sub.add_argument("--endpoint", required=True)
    sub.add_argument("--prefix", action="append", default=[])
    sub.add_argument("--exact", action="append", default=[])
    sub.add_argument("--mode", choices=("iter", "callback", "observable"), default="iter")
    sub.add_argument("--slow-ms", type=float, default=0.0)
    sub.add_argument("--rcvhwm", type=int, default=10_000)
    sub.add_argument("--rcvbuf", type=int, default=None)
    sub.add_argument("--end-topics", default="")
    sub.add_argument("--stats", action="store_true")
    pub = sub_cmds.add_parser("pub")
    pub.add_argument("--endpoint", required=True)
    pub.add_argument("--topic", action="append", default=[])
    pub.add_argument("--interval-ms", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run_sub(args) if args.cmd == "sub" else run_pub(args))


if __name__ == "__main__":
    main()
