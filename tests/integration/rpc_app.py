"""An RPC server process for the integration tests and the benchmark.

    python tests/integration/rpc_app.py --endpoint tcp://127.0.0.1:5555 [--state counts.log]

Prints ``RPC READY <endpoint> pid=<pid> server_id=<id>`` once bound, and nothing else unless
``--log-level`` asks for it (nobody drains the pipe). ``--state`` makes the ``count`` method append
to a file, so executions are counted across a SIGKILL and a restart. What happens inside (a
``count`` started, was cancelled, finished) is awaited with the ``wait_event`` method.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trader.messaging.rpc import MethodRegistry, RpcError, RpcServer


class Counts:
    """Executions per key, in memory or appended to a file (one line per execution)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.memory: dict[str, int] = {}

    def add(self, key: str) -> int:
        if self.path is None:
            self.memory[key] = self.memory.get(key, 0) + 1
            return self.memory[key]
        with self.path.open("a") as f:
            f.write(key + "\n")
        return self.get(key)

    def get(self, key: str) -> int:
        if self.path is None:
            return self.memory.get(key, 0)
        if not self.path.exists():
            return 0
        return sum(1 for line in self.path.read_text().splitlines() if line == key)


class Events:
    """Named events ("start", "cancelled", "done") per key, so tests can await what happened in here."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    def get(self, key: str, name: str) -> asyncio.Event:
        return self._events.setdefault((key, name), asyncio.Event())


def build_registry(counts: Counts) -> MethodRegistry:
    registry = MethodRegistry()
    events = Events()

    @registry.method("echo")
    async def echo(**params: Any) -> Any:
        """Returns its params."""
        return params.get("value", params)

    @registry.method("add")
    def add(a: int, b: int) -> int:
        """Synchronous handler with typed params."""
        return a + b

    @registry.method("scale")
    async def scale(values: list[float], factor: float = 1.0, label: str | None = None) -> dict[str, Any]:
        return {"values": [v * factor for v in values], "label": label}

    @registry.method("fail")
    async def fail(message: str = "boom") -> None:
        raise ValueError(message)

    @registry.method("refuse")
    async def refuse(reason: str = "limit") -> None:
        raise RpcError("risk_refused", f"order refused: {reason}")

    @registry.method("slow")
    async def slow(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @registry.method("count")
    async def count(key: str = "default", delay: float = 0.0) -> int:
        """Waits ``delay`` then records one execution of ``key``; returns the executions so far."""
        events.get(key, "start").set()
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            events.get(key, "cancelled").set()
            raise
        n = counts.add(key)
        events.get(key, "done").set()
        return n

    @registry.method("count_shielded", shield=True)
    async def count_shielded(key: str, delay: float) -> int:
        """Like ``count`` but registered with ``shield=True``: runs past its deadline."""
        events.get(key, "start").set()
        await asyncio.sleep(delay)
        n = counts.add(key)
        events.get(key, "done").set()
        return n

    @registry.method("wait_event")
    async def wait_event(key: str, event: Literal["start", "cancelled", "done"], within: float = 5.0) -> bool:
        """Whether ``event`` happened for ``key`` (``count``/``count_shielded``) within ``within`` s."""
        try:
            await asyncio.wait_for(events.get(key, event).wait(), within)
        except TimeoutError:
            return False
        return True

    @registry.method("counted")
    def counted(key: str = "default") -> int:
        return counts.get(key)

    @registry.method("frame")
    async def frame(rows: int = 3) -> pd.DataFrame:
        index = pd.date_range("2024-01-02 09:30", periods=rows, freq="1min", tz="America/New_York")
        return pd.DataFrame(
            {"close": [100.0 + i for i in range(rows)], "volume": list(range(rows))}, index=index
        )

    @registry.method("unencodable")
    async def unencodable() -> object:
        return object()

    return registry


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s %(message)s")
    server = RpcServer(args.endpoint, build_registry(Counts(args.state)))
    await server.start()
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve_forever())
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(server.close()))
    print(f"RPC READY {server.bound_endpoint} pid={os.getpid()} server_id={server.server_id}", flush=True)
    await serving
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
