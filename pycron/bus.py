"""In-process fan-out of pycron's events and job log lines to any number of async readers.

A :class:`Fanout` keeps the last ``history`` items and hands every published item to each live
:class:`Subscription` (the SSE stream of the web API, ``cli.py pycron logs --follow``). A reader
that falls behind by more than its queue size loses the oldest items and sees ``dropped`` grow; a
slow reader never blocks the supervisor.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscription(Generic[T]):
    """One reader of a :class:`Fanout`: ``async for item in sub`` until :meth:`close`."""

    def __init__(self, fanout: Fanout[T], maxsize: int) -> None:
        self._fanout = fanout
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self.closed = False
        self.dropped = 0
        """Items lost because this reader fell more than ``maxsize`` behind."""

    def _push(self, item: T) -> None:
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wakeup.set()

    async def get(self, timeout: float | None = None) -> T | None:  # noqa: ASYNC109 - SSE keepalive
        """The next item; ``None`` when closed or when ``timeout`` passes first."""
        while not self._items:
            if self.closed:
                return None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return None
        return self._items.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._fanout._discard(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while (item := await self.get()) is not None:
            yield item


class Fanout(Generic[T]):
    """Publish items to every subscriber and keep the last ``history`` of them."""

    def __init__(self, history: int = 1000) -> None:
        self._recent: deque[T] = deque(maxlen=history)
        self._subscribers: set[Subscription[T]] = set()

    def publish(self, item: T) -> None:
        self._recent.append(item)
        for sub in list(self._subscribers):
            sub._push(item)

    def recent(self, n: int | None = None) -> list[T]:
        """The last ``n`` items (all kept ones when ``None``), oldest first."""
        items = list(self._recent)
        return items if n is None else items[max(0, len(items) - n) :]

    def subscribe(self, maxsize: int = 10_000) -> Subscription[T]:
        """A reader of every item published from now on."""
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (their iterators finish)."""
        for sub in list(self._subscribers):
            sub.close()

    def _discard(self, sub: Subscription[T]) -> None:
        self._subscribers.discard(sub)
