"""The trader service's market data on the paper exchange (fast market: a quote every 250 ms):
live bars on the ticks PUB, and subscriptions that survive a trader restart. Real processes;
waits are on received messages or on an RPC polled until a condition holds, with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.integration.exchange_fixtures import ExchangeProcess, con_id, run
from tests.integration.test_trader_orders import poll, start_trader, wait_connected
from tests.support import Processes
from trader.data.store import Store
from trader.messaging.pubsub import TickBatch, TickSubscriber
from trader.messaging.rpc import AsyncRpcClient, RpcRemoteError

pytestmark = pytest.mark.integration

SYMBOL = "AAPL"
BARS_TOPIC = f"{SYMBOL}.bars.5s"


class Ticks:
    """Every tick batch of the trader's ticks PUB under a prefix since entering, awaitable by topic."""

    def __init__(self, endpoint: str, prefix: str) -> None:
        self.sub = TickSubscriber(endpoint, prefixes=[prefix])
        self.batches: list[TickBatch] = []
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticks:
        await self.sub.__aenter__()
        self._task = asyncio.create_task(self._read())
        async with asyncio.timeout(10):
            await self.sub.wait_for_heartbeat()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sub.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for msg in self.sub:
            if isinstance(msg, TickBatch):
                self.batches.append(msg)
                self._new.set()

    async def wait_for(self, topic: str, within: float = 10.0) -> pd.DataFrame:
        """The first frame received on exactly ``topic``."""
        deadline = time.monotonic() + within
        while True:
            for batch in self.batches:
                if batch.topic == topic:
                    return batch.frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = sorted({b.topic for b in self.batches})
                raise AssertionError(f"nothing on {topic!r} within {within}s; topics seen: {seen}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)


def test_subscribe_with_bar_size_then_bars_published_and_subscription_restored_after_restart(
    exchange: ExchangeProcess, procs: Processes, tmp_path: Path
) -> None:
    data_dir = tmp_path / "trader"

    async def body() -> None:
        trader = await asyncio.to_thread(start_trader, procs, data_dir, exchange.port)
        endpoints = {"rpc": trader.rpc, "ticks": trader.ticks, "events": trader.events}
        async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc, Ticks(trader.ticks, SYMBOL) as ticks:
            await wait_connected(rpc)
            with pytest.raises(RpcRemoteError) as refused:
                await rpc.call("subscribe", owner="barry", symbols=[SYMBOL], bar_size="1 week")
            assert refused.value.code == "bad_params"

            (info,) = await rpc.call("subscribe", owner="barry", symbols=[SYMBOL], bar_size="5 secs")
            assert info["con_id"] == con_id(SYMBOL) and info["owners"] == ["barry"]
            assert [(b["bar_size"], b["topic"]) for b in info["bars"]] == [("5 secs", BARS_TOPIC)]

            frame = await ticks.wait_for(BARS_TOPIC, within=12.0)
            # the index (bar start, UTC) travels as the leading time column, as in every tick batch
            assert list(frame.columns) == ["time", "open", "high", "low", "close", "volume"]
            bar = frame.iloc[-1]
            assert (
                bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]
            )
            assert bar["volume"] >= 0
            start = pd.Timestamp(bar["time"])
            assert str(start.tz) == "UTC" and start.value % 5_000_000_000 == 0
            await ticks.wait_for(SYMBOL)  # the ticks themselves still stream on their own topic
            store_uri = (await rpc.call("status"))["store_uri"]

        saved = json.loads((data_dir / "book" / "subscriptions.json").read_text(encoding="utf-8"))
        (entry,) = saved["owners"]["barry"]
        assert entry["con_id"] == con_id(SYMBOL) and entry["bar_sizes"] == ["5 secs"]

        assert await asyncio.to_thread(trader.child.stop) == 0  # SIGTERM: a clean stop
        stored = await asyncio.to_thread(lambda: Store.open(store_uri).read_bars(con_id(SYMBOL), "5 secs"))
        assert start in stored.index and stored.loc[start, "close"] == bar["close"]  # for warm-ups
        trader = await asyncio.to_thread(start_trader, procs, data_dir, exchange.port, endpoints=endpoints)
        async with AsyncRpcClient(trader.rpc, timeout=10.0) as rpc, Ticks(trader.ticks, SYMBOL) as ticks:
            subs: list[dict[str, Any]] = await rpc.call("get_subscriptions", owner="barry")
            (restored,) = subs  # restored before IB is even connected
            assert restored["topic"] == SYMBOL and restored["owners"] == ["barry"]
            assert [b["topic"] for b in restored["bars"]] == [BARS_TOPIC]
            await wait_connected(rpc)
            await ticks.wait_for(SYMBOL, within=10.0)  # requested again once IB is up
            await poll(rpc, "get_subscriptions", lambda s: s[0]["ticks"] > 0, owner="barry")

            assert await rpc.call("unsubscribe", owner="barry", symbols=[SYMBOL], bar_size="5 secs") == {
                "unsubscribed": 1
            }
            (left,) = await rpc.call("get_subscriptions", owner="barry")
            assert left["bars"] == []  # the ticks stay
            assert await rpc.call("unsubscribe", owner="barry") == {"unsubscribed": 1}
            assert await rpc.call("get_subscriptions") == []
        saved = json.loads((data_dir / "book" / "subscriptions.json").read_text(encoding="utf-8"))
        assert saved["owners"] == {}
        assert "Traceback" not in trader.log_text(), trader.log_text()[-4000:]

    run(body(), timeout=60.0)
