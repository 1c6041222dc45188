"""Pub/sub over real sockets on free ports: subscriber processes, a slow one, restarts, garbage.

The slow-joiner problem is handled with events: the publisher probes (an event per topic every
20 ms) until each subscriber reports it is receiving, and only then does the measured run start.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import json
import re
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
import pandas as pd
import pytest
import zmq

from tests.integration.pubsub_app import frame_digest as digest
from tests.integration.pubsub_app import make_row, wait_for_line
from tests.support import Child, Processes, free_endpoint
from trader.messaging.codec import encode
from trader.messaging.pubsub import HEARTBEAT_TOPIC, Event, Message, TickBatch, TickPublisher, TickSubscriber
from trader.messaging.pubsub_wire import encode_rows, heartbeat_payload

pytestmark = pytest.mark.integration

APP = "tests/integration/pubsub_app.py"
TOPICS = ("AAPL", "AAPL.X", "MSFT")
ITERATIONS = 600  # per phase; each publishes ROWS rows on each topic, then yields to the loop
ROWS = 20


# --------------------------------------------------------------------------- helpers


async def wait_lines(children: Sequence[Child], pattern: str, seconds: float = 20.0) -> list[re.Match[str]]:
    try:
        return list(
            await asyncio.gather(*(asyncio.to_thread(wait_for_line, c, pattern, seconds) for c in children))
        )
    except AssertionError:
        for child in children:  # pubsub_app dumps its threads' stacks on SIGUSR1: say where it hangs
            child.kill(signal.SIGUSR1)
            with contextlib.suppress(AssertionError):
                wait_for_line(child, r"most recent call first", 5)
            print(f"--- {child.args[2:5]} (pid {child.pid}), last lines:", *child.lines[-60:], sep="\n")
        raise


async def probe_until_ready(pub: TickPublisher, children: Sequence[Child], topics: Iterable[str]) -> None:
    """Publish a probe event on each topic every 20 ms until every child printed READY."""
    ready = asyncio.ensure_future(wait_lines(children, r"^READY$"))
    while not ready.done():
        for topic in topics:
            pub.publish_event(topic, {"probe": True})
        await asyncio.wait([ready], timeout=0.02)
    await ready


def expected(topic: str, rows: range) -> pd.DataFrame:
    frame = pd.DataFrame([make_row(topic, i) for i in rows])
    frame.columns = pd.Index(list(frame.columns), dtype=object)
    return frame


class Inbox:
    """Messages a subscriber delivered through its callbacks, awaitable by predicate."""

    def __init__(self, sub: TickSubscriber) -> None:
        self.items: list[Message] = []
        self._changed = asyncio.Event()
        sub.on_batch = lambda topic, frame: self._add(TickBatch(topic, frame, 0, 0, (), 0))
        sub.on_event = lambda topic, body: self._add(Event(topic, body, 0, 0, 0))

    def _add(self, item: Message) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, predicate: Callable[[], bool], seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def frames(self, topic: str | None = None) -> list[pd.DataFrame]:
        return [m.frame for m in self.items if isinstance(m, TickBatch) and topic in (None, m.topic)]

    def rows(self, topic: str | None = None) -> int:
        return sum(len(f) for f in self.frames(topic))

    def events(self, topic: str | None = None) -> list[Any]:
        return [m.body for m in self.items if isinstance(m, Event) and topic in (None, m.topic)]


async def probe_inbox(pub: TickPublisher, inbox: Inbox, topic: str) -> None:
    """Publish probe events on ``topic`` until one arrives (the subscription is in place)."""
    async with asyncio.timeout(10):
        while not inbox.events(topic):
            pub.publish_event(topic, {"probe": True})
            with contextlib.suppress(TimeoutError):
                await inbox.wait(lambda: bool(inbox.events(topic)), seconds=0.02)


# --------------------------------------------------------------------------- fan-out to processes


async def _publish_phase(pub: TickPublisher, start: int) -> tuple[float, float]:
    """ITERATIONS bursts of ROWS rows per topic, one per millisecond or so (a feed's pace, which
    the fast subscribers follow even on 2 busy cores); returns (rows/s of the whole loop, the
    longest burst in seconds, flush included: a send that blocked would show in both)."""
    rows = {t: [make_row(t, i) for i in range(start, start + ITERATIONS * ROWS)] for t in TOPICS}
    longest = 0.0
    began = time.perf_counter()
    for it in range(ITERATIONS):
        burst = time.perf_counter()
        for topic in TOPICS:
            for row in rows[topic][it * ROWS : (it + 1) * ROWS]:
                pub.publish(topic, row)
        pub.flush()  # what the loop does at its next turn, timed here
        longest = max(longest, time.perf_counter() - burst)
        await asyncio.sleep(0.001)  # the pace of the feed (not a wait for some condition)
    return ITERATIONS * ROWS * len(TOPICS) / (time.perf_counter() - began), longest


def test_fanout_when_three_subscribers_then_filtered_exact_and_slow_one_isolated(procs: Processes) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        # A send queue and kernel buffer the slow subscriber overflows within one phase; the fast
        # ones keep theirs near empty (their ZeroMQ I/O threads read into a 10,000-message RCVHWM).
        async with TickPublisher(endpoint, sndhwm=300, sndbuf=32 * 1024, heartbeat_s=0.2) as pub:
            aapl = procs.python(
                APP,
                "sub",
                "--endpoint",
                endpoint,
                "--prefix",
                "AAPL",
                "--mode",
                "iter",
                "--end-topics",
                "AAPL,AAPL.X",
            )
            msft = procs.python(
                APP,
                "sub",
                "--endpoint",
                endpoint,
                "--prefix",
                "MSFT",
                "--mode",
                "observable",
                "--end-topics",
                "MSFT",
            )
            await probe_until_ready(pub, [aapl, msft], TOPICS)
            alone, _ = await _publish_phase(pub, 0)

            slow = procs.python(
                APP,
                "sub",
                "--endpoint",
                endpoint,
                "--prefix",
                "",
                "--mode",
                "callback",
                "--slow-ms",
                "20",
                "--rcvhwm",
                "10",
                "--rcvbuf",
                "4096",
                "--stats",
            )
            await probe_until_ready(pub, [slow], TOPICS)
            with_slow, longest = await _publish_phase(pub, ITERATIONS * ROWS)
            published = time.perf_counter()

            summaries = asyncio.ensure_future(wait_lines([aapl, msft], r"^SUMMARY (.*)$"))
            while not summaries.done():  # end markers, repeated; the fast ones lose nothing anyway
                for topic in TOPICS:
                    pub.publish_event(topic, {"end": True})
                await asyncio.wait([summaries], timeout=0.05)
            delivered_in = time.perf_counter() - published
            got = {
                name: json.loads(m.group(1))
                for name, m in zip(("aapl", "msft"), await summaries, strict=True)
            }
            slow_stats = json.loads(
                (await wait_lines([slow], r'^STATS (.*"dropped_messages": [1-9].*)$'))[0].group(1)
            )
            assert pub.stats.dropped_batches == 0  # PUB never refuses: drops happen per subscriber

        # topic filtering: ZeroMQ prefixes, "AAPL" also gets "AAPL.X"; nothing of MSFT
        assert set(got["aapl"]["topics"]) == {"AAPL", "AAPL.X"}
        assert set(got["msft"]["topics"]) == {"MSFT"}
        total = 2 * ITERATIONS * ROWS
        for name, topics in (("aapl", ("AAPL", "AAPL.X")), ("msft", ("MSFT",))):
            summary = got[name]
            assert (summary["gaps"], summary["dropped_messages"], summary["malformed"]) == (0, 0, 0)
            assert summary["heartbeats"] > 0
            for topic in topics:
                want = expected(topic, range(total))
                seen = summary["topics"][topic]
                assert seen["rows"] == total
                assert seen["dtypes"] == {str(k): str(v) for k, v in want.dtypes.items()}
                assert seen["dtypes"]["time"] == "datetime64[ns, UTC]"
                assert seen["digest"] == digest(want)  # every value, bit for bit
                assert seen["frames"] <= seen["wire_batches"]
        # the slow one lost data and says so; the others were not held up
        assert slow_stats["gaps"] > 0 and slow_stats["dropped_rows"] > 0
        # Not held up: no publish call ever blocked on the slow subscriber (a blocked PUB would sit
        # here for as long as the slow one sleeps). Speeds are measured in bench/messaging.py, not
        # asserted here; `with_slow` vs `alone` is in the failure message for a human to read.
        assert longest < 2.0, f"a publish call took {longest:.2f}s ({with_slow:,.0f} vs {alone:,.0f} rows/s)"
        assert delivered_in < 30.0

    asyncio.run(scenario())


def test_subscriber_when_publisher_process_killed_and_restarted_then_resumes_without_false_drops(
    procs: Processes,
) -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickSubscriber(endpoint, prefixes=["IBM"]) as sub:
            inbox = Inbox(sub)
            sub.start()
            first = procs.python(APP, "pub", "--endpoint", endpoint, "--topic", "IBM", "--interval-ms", "2")
            src1 = int((await wait_lines([first], r"^PUB READY src=(\d+)$"))[0].group(1))
            await inbox.wait(lambda: inbox.rows("IBM") >= 20)
            first.kill()  # SIGKILL: no goodbye
            await asyncio.to_thread(first.popen.wait, 10)
            before = inbox.rows("IBM")
            second = procs.python(APP, "pub", "--endpoint", endpoint, "--topic", "IBM", "--interval-ms", "2")
            src2 = int((await wait_lines([second], r"^PUB READY src=(\d+)$"))[0].group(1))
            await inbox.wait(lambda: inbox.rows("IBM") >= before + 20)  # reconnected by itself
            assert src1 != src2
            assert sub.stats.dropped_messages == 0 and sub.stats.resets == 0 and sub.stats.malformed == 0
            frame = pd.concat(inbox.frames("IBM"), ignore_index=True)
            # rows published before the reconnect are gone (PUB/SUB); after it, none is missing
            assert frame["bid_size"].iloc[before:].diff().iloc[1:].eq(1).all()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- in-process, real sockets


def test_subscriber_when_malformed_messages_then_counted_and_still_delivering() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        raw = ctx.socket(zmq.PUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.bind(endpoint)
        try:
            async with TickSubscriber(endpoint, prefixes=["A"]) as sub:
                inbox = Inbox(sub)
                sub.start()
                beat = encode(heartbeat_payload(src=1, seq=0, sent_ns=1, interval_ms=10, topics={}))
                async with asyncio.timeout(10):
                    while sub.stats.heartbeats == 0:  # slow joiner: beat until one is heard
                        raw.send_multipart([HEARTBEAT_TOPIC.encode(), beat])
                        await asyncio.sleep(0.01)
                garbage: list[list[bytes]] = [
                    [b"A"],
                    [b"A", b"x", b"y"],
                    [b"A", b"\xc1\xc1"],
                    [b"A\xff", encode({"v": 1})],
                    [
                        b"A",
                        msgpack.packb(
                            {
                                "v": 1,
                                "k": "batch",
                                "src": 1,
                                "seq": 0,
                                "sent_ns": 1,
                                "n": 2,
                                "row0": 0,
                                "columns": ["x"],
                                "dtypes": ["f8"],
                                "data": [b"123"],
                            }
                        ),
                    ],
                    [b"A", encode({"v": 9, "k": "batch"})],
                ]
                for frames in garbage:
                    raw.send_multipart(frames)
                raw.send_multipart(
                    [b"AAPL", encode_rows([make_row("AAPL", 0)], src=1, seq=0, row0=0, sent_ns=1)]
                )
                await inbox.wait(lambda: inbox.rows("AAPL") == 1)
                assert sub.stats.malformed == len(garbage)
                assert sub.stats.batches == 1
        finally:
            raw.close(0)

    asyncio.run(scenario())


def test_heartbeat_when_publisher_beats_then_age_small_and_grows_once_it_stops() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        pub = TickPublisher(endpoint, heartbeat_s=0.05)
        async with pub, TickSubscriber(endpoint) as sub:  # no data subscription: heartbeats still come
            assert sub.last_heartbeat_age == float("inf")
            sub.start()
            async with asyncio.timeout(10):
                await sub.wait_for_heartbeat()
            assert sub.last_heartbeat_age < 0.5
            pub.close()
            await asyncio.sleep(0.3)  # time passing is the point here
            assert sub.last_heartbeat_age >= 0.25
            assert sub.stats.heartbeats >= 1 and sub.stats.batches == 0

    asyncio.run(scenario())


def test_iteration_when_events_rows_and_frames_then_in_order_with_exact_types() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickPublisher(endpoint, heartbeat_s=0.05) as pub, TickSubscriber(endpoint) as sub:
            sub.subscribe("AAPL")
            received: list[Message] = []

            async def consume() -> None:
                async for msg in sub:
                    received.append(msg)
                    if isinstance(msg, Event) and msg.body.get("last"):
                        return

            consumer = asyncio.ensure_future(consume())
            async with asyncio.timeout(10):
                while not received:
                    pub.publish_event("AAPL", {"probe": True})
                    await asyncio.wait([consumer], timeout=0.02)
            bars = pd.DataFrame(
                {"open": [1.5, 2.5], "volume": [100, 200]},
                index=pd.DatetimeIndex(["2025-01-02 14:30", "2025-01-02 14:31"], tz="UTC", name="date"),
            )
            fill = {"order_id": 7, "price": decimal.Decimal("189.25"), "at": make_row("AAPL", 0)["time"]}
            for i in range(3):
                pub.publish("AAPL", make_row("AAPL", i))
            pub.publish_event("AAPL", fill)  # after the 3 pending rows, before the frame
            pub.publish_frame("AAPL", bars)
            pub.publish_event("AAPL", {"last": True})
            async with asyncio.timeout(10):
                await consumer
        got = [m for m in received if not (isinstance(m, Event) and m.body.get("probe"))]
        assert [type(m).__name__ for m in got] == ["TickBatch", "Event", "TickBatch", "Event"]
        first, event, frame = got[0], got[1], got[2]
        assert isinstance(first, TickBatch) and isinstance(event, Event) and isinstance(frame, TickBatch)
        pd.testing.assert_frame_equal(first.frame, expected("AAPL", range(3)))
        assert event.body == fill and isinstance(event.body["price"], decimal.Decimal)
        assert event.seq == first.last_seq + 1 and frame.first_seq == event.seq + 1
        assert frame.frame.columns.tolist() == ["date", "open", "volume"]
        assert [str(t) for t in frame.frame.dtypes] == ["datetime64[ns, UTC]", "float64", "int64"]
        assert frame.frame["date"].tolist() == bars.index.tolist()
        latency_ms = (first.recv_ns - first.sent_ns[0]) / 1e6
        assert 0 <= latency_ms < 5000

    asyncio.run(scenario())


def test_observable_when_prefix_then_only_matching_topics_and_completed_on_close() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickPublisher(endpoint) as pub:
            sub = TickSubscriber(endpoint, prefixes=["MSFT"])
            inbox = Inbox(sub)
            seen: list[tuple[str, int]] = []
            completed = asyncio.Event()
            sub.observable("AAPL").subscribe(
                on_next=lambda m: seen.append((m.topic, len(m.frame) if isinstance(m, TickBatch) else -1)),
                on_completed=completed.set,
            )
            sub.start()
            await probe_inbox(pub, inbox, "AAPL")
            await probe_inbox(pub, inbox, "MSFT")
            for i in range(5):
                for topic in ("AAPL", "AAPL.X", "MSFT", "IBM"):
                    pub.publish(topic, make_row(topic, i))
            await inbox.wait(lambda: inbox.rows("AAPL") + inbox.rows("AAPL.X") + inbox.rows("MSFT") == 15)
            await sub.aclose()
            assert completed.is_set()
        assert {t for t, n in seen if n > 0} == {"AAPL", "AAPL.X"}
        assert sum(n for _, n in seen if n > 0) == 10
        assert inbox.rows("IBM") == 0

    asyncio.run(scenario())


def test_subscribe_exact_when_longer_topics_published_then_only_the_exact_topic() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickPublisher(endpoint) as pub, TickSubscriber(endpoint) as sub:
            sub.subscribe_exact("SPY")
            inbox = Inbox(sub)
            sub.start()
            await probe_inbox(pub, inbox, "SPY")
            for i in range(4):
                pub.publish("SPYG", make_row("SPYG", i))
                pub.publish("SPY", make_row("SPY", i))
            pub.flush()  # SPYG too: an event flushes only its own topic first
            pub.publish_event("SPY", {"done": True})
            await inbox.wait(lambda: {"done": True} in inbox.events("SPY"))
            assert inbox.rows("SPY") == 4 and inbox.rows("SPYG") == 0
            assert sub.stats.filtered >= 1  # SPYG arrived (ZeroMQ prefix) and was dropped here

    asyncio.run(scenario())


def test_publish_when_burst_in_one_iteration_then_one_batch_per_topic_split_at_max_batch() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with (
            TickPublisher(endpoint, max_batch=30) as pub,
            TickSubscriber(endpoint, prefixes=["A"]) as sub,
        ):
            inbox = Inbox(sub)
            sub.start()
            await probe_inbox(pub, inbox, "A")
            for i in range(100):  # one loop iteration
                pub.publish("A", make_row("A", i))
            pub.publish_event("A", {"done": True})
            await inbox.wait(lambda: {"done": True} in inbox.events("A"))
            assert pub.stats.batches == 4 and pub.stats.rows == 100  # 30 + 30 + 30 + 10
            assert inbox.rows("A") == 100 and sub.stats.dropped_messages == 0

    asyncio.run(scenario())


def test_publish_when_linger_then_rows_of_several_iterations_share_a_batch() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with (
            TickPublisher(endpoint, linger_ms=200) as pub,
            TickSubscriber(endpoint, prefixes=["A"]) as sub,
        ):
            inbox = Inbox(sub)
            sub.start()
            await probe_inbox(pub, inbox, "A")
            for i in range(5):
                pub.publish("A", make_row("A", i))
                await asyncio.sleep(0)
            assert pub.pending_rows() == 5
            await inbox.wait(lambda: inbox.rows("A") == 5)
            assert pub.stats.batches == 1

    asyncio.run(scenario())


def test_publisher_when_nodrop_and_subscriber_stuck_then_counts_dropped_without_blocking() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickPublisher(endpoint, nodrop=True, sndhwm=5, sndbuf=4096) as pub:
            stuck = TickSubscriber(endpoint, prefixes=["A"], rcvhwm=5, rcvbuf=4096)  # never reads
            try:
                async with asyncio.timeout(10):
                    while pub.stats.dropped_events == 0 and pub.stats.dropped_batches == 0:
                        pub.publish_event("A", {"probe": True})  # until it is connected and full
                        await asyncio.sleep(0.005)
                rows = [make_row("A", i) for i in range(100)]
                began = time.perf_counter()
                for _ in range(300):
                    for row in rows:
                        pub.publish("A", row)
                    await asyncio.sleep(0)
                assert time.perf_counter() - began < 10
                assert pub.stats.dropped_batches > 0 and pub.stats.dropped_rows % 100 == 0
            finally:
                stuck.close()

    asyncio.run(scenario())


def test_merge_topics_when_many_topics_then_frames_carry_a_topic_column() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        topics = [f"S{i:02d}" for i in range(20)]
        async with TickPublisher(endpoint) as pub, TickSubscriber(endpoint, merge_topics=True) as sub:
            sub.subscribe("S")
            inbox = Inbox(sub)
            sub.start()
            await probe_inbox(pub, inbox, "S00")
            for i in range(10):
                for topic in topics:
                    pub.publish(topic, make_row(topic, i))
            await inbox.wait(lambda: inbox.rows() == 200)
            frames = inbox.frames("*")
            assert len(frames) < 200 and all(f.columns[0] == "topic" for f in frames)
            merged = pd.concat(frames, ignore_index=True)
            assert merged.groupby("topic").size().to_dict() == dict.fromkeys(topics, 10)
            assert str(merged["time"].dtype) == "datetime64[ns, UTC]"
            with pytest.raises(ValueError, match="topic column"):
                sub.observable("S01")

    asyncio.run(scenario())


def test_callbacks_when_one_raises_then_counted_and_delivery_goes_on() -> None:
    async def scenario() -> None:
        endpoint = free_endpoint()
        async with TickPublisher(endpoint) as pub, TickSubscriber(endpoint, prefixes=["A"]) as sub:
            inbox = Inbox(sub)

            def flaky(topic: str, frame: pd.DataFrame) -> None:
                if frame["bid_size"].iloc[0] == 100:
                    raise RuntimeError("boom")
                inbox.items.append(TickBatch(topic, frame, 0, 0, (), 0))

            sub.on_batch = flaky
            sub.start()
            await probe_inbox(pub, inbox, "A")
            pub.publish("A", make_row("A", 0))  # raises in the callback
            pub.publish_event("A", {"step": 1})
            await inbox.wait(lambda: {"step": 1} in inbox.events("A"))
            pub.publish("A", make_row("A", 1))
            pub.publish_event("A", {"done": True})
            await inbox.wait(lambda: {"done": True} in inbox.events("A"))
            assert sub.stats.callback_errors == 1 and inbox.rows("A") == 1

    asyncio.run(scenario())


def test_close_when_iterating_then_iteration_ends() -> None:
    async def scenario() -> None:
        sub = TickSubscriber(free_endpoint())
        received: list[Message] = []

        async def consume() -> None:
            async for msg in sub:
                received.append(msg)

        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)  # the consumer is now waiting on the socket
        sub.close()
        async with asyncio.timeout(5):
            await consumer
        assert received == []

    asyncio.run(scenario())


def test_publisher_when_closed_or_topic_reserved_then_refuses_loudly() -> None:
    async def scenario() -> None:
        pub = TickPublisher("tcp://127.0.0.1:*")
        assert pub.endpoint.startswith("tcp://127.0.0.1:")
        with pytest.raises(ValueError, match="reserved"):
            pub.publish(HEARTBEAT_TOPIC, {"x": 1})
        with pytest.raises(ValueError, match="non-empty"):
            pub.publish_event("", {"x": 1})
        pub.publish("A", make_row("A", 0))
        pub.close()
        assert pub.stats.batches == 1  # close flushed the pending row
        with pytest.raises(RuntimeError, match="closed"):
            pub.publish("A", {"x": 1})
        with pytest.raises(RuntimeError, match="closed"):
            pub.publish_event("B", 1)
        pub.close()  # idempotent

    asyncio.run(scenario())
