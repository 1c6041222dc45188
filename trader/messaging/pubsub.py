"""Bourse pub/sub: batched ticks and events over ZeroMQ PUB/SUB, delivered as DataFrames.

The one import path for users; the code lives in :mod:`~trader.messaging.pubsub_wire` (pure:
columnar payloads and their parsing),
:mod:`~trader.messaging.pubsub_receive` (pure: DataFrames, coalescing, seq accounting),
:mod:`~trader.messaging.pubsub_publisher` and :mod:`~trader.messaging.pubsub_subscriber`. The
wire contract is in docs/wire.md ("Pub/sub").

Publisher (inside a running event loop)::

    async with TickPublisher("tcp://127.0.0.1:42002") as pub:
        pub.publish("AAPL", {"time": now, "bid": 189.1, "ask": 189.2, "last": 189.15})
        pub.publish_event("fills", {"order_id": 7, "qty": 100})

Subscriber::

    async with TickSubscriber("tcp://127.0.0.1:42002", prefixes=["AAPL"]) as sub:
        async for msg in sub:            # TickBatch(topic, frame, ...) or Event(topic, body, ...)
            ...
        # or: sub.on_batch = handler; sub.start(); sub.observable("AAPL").subscribe(...)
"""

from __future__ import annotations

from trader.messaging.pubsub_publisher import PublisherStats, TickPublisher
from trader.messaging.pubsub_receive import Event, Message, SeqTracker, TickBatch, TopicStats
from trader.messaging.pubsub_subscriber import SubscriberStats, TickSubscriber
from trader.messaging.pubsub_wire import HEARTBEAT_TOPIC, PayloadError

__all__ = [
    "HEARTBEAT_TOPIC",
    "Event",
    "Message",
    "PayloadError",
    "PublisherStats",
    "SeqTracker",
    "SubscriberStats",
    "TickBatch",
    "TickPublisher",
    "TickSubscriber",
    "TopicStats",
]
