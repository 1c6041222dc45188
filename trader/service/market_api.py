"""The trader service's market data: its RPC methods (docs/rpc.md, "Market data and
instruments"), live bars on the ticks PUB, and subscriptions that survive a restart.

* **Bars.** ``subscribe(owner, symbols, bar_size='5 secs')`` adds a bar stream per (instrument,
  bar size): the instrument's ticks are aggregated (:mod:`trader.service.bars`: clock-aligned UTC
  boundaries, empty intervals skipped) and each closed bar is published with
  ``publish_frame(f"{topic}.bars.{slug}", df)`` (one row, index time UTC, open high low close
  volume) and written to the store's bars library (``write_bars``, fire-and-forget). A bar closes
  at the first tick after its end, or by the timer shortly after the boundary. The last owner of
  an (instrument, bar size) leaving stops it.
* **Persistence.** ``<data-dir>/book/subscriptions.json`` (temp file, fsync, rename) holds every
  owner's instruments (with their contracts) and bar sizes, rewritten after every change. At start
  they are subscribed again (:meth:`MarketFeeds.restore`): MarketData requests them once IB is
  connected, and again after every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
from ib_async import Contract

from trader.ib.contracts import contract_from_dict, contract_to_dict
from trader.ib.market_data import Subscription, Tick
from trader.jsonfile import write_json_atomic
from trader.messaging.rpc import BAD_PARAMS, MethodRegistry, RpcError
from trader.service.bars import Bar, BarAggregator, BarSize, VolumeCounter, parse_bar_size
from trader.service.trader_api import _method, contract_of

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service.market")

CLOSE_GRACE_NS: Final = 50_000_000
"""The timer closes a bar this long after its end (ticks stamped before the boundary still count)."""


class SubscriptionsFile:
    """``<dir>/subscriptions.json``: the owners' subscriptions, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "subscriptions.json"
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.move_aside(repr(exc))
            return None
        if not isinstance(data, dict) or not isinstance(data.get("owners"), dict):
            self.move_aside("no 'owners' map")
            return None
        return data

    def move_aside(self, why: str) -> None:
        aside = self.path.with_name(f"subscriptions.broken-{time.time_ns()}.json")
        log.error("subscriptions file %s unusable (%s): moved to %s", self.path, why, aside)
        with contextlib.suppress(OSError):
            self.path.rename(aside)

    def save(self, owners: dict[str, list[dict[str, Any]]]) -> None:
        write_json_atomic(self.path, {"saved_ns": time.time_ns(), "owners": owners}, compact=True)
        self.saves += 1


@dataclass(eq=False)
class BarStream:
    """One instrument's bars of one size, and who wants them."""

    con_id: int
    symbol: str
    size: BarSize
    owners: set[str] = field(default_factory=set)
    published: int = 0

    def __post_init__(self) -> None:
        self.aggregator = BarAggregator(self.size)
        self.volume = VolumeCounter()

    @property
    def topic(self) -> str:
        return f"{self.symbol}.bars.{self.size.slug}"

    def info(self) -> dict[str, Any]:
        return {
            "bar_size": self.size.name,
            "topic": self.topic,
            "owners": sorted(self.owners),
            "bars": self.published,
            "late": self.aggregator.late,
        }


def tick_price(tick: Tick) -> float:
    """A bar's price of a tick: the last trade, else the quote's mid (NaN: neither)."""
    if math.isfinite(tick.last) and tick.last > 0:
        return tick.last
    if tick.bid > 0 and tick.ask > 0:
        return (tick.bid + tick.ask) / 2
    return math.nan


class MarketFeeds:
    """Bar streams over the app's MarketData, and the persistence of every owner's subscriptions."""

    def __init__(self, app: TraderApp) -> None:
        self.app = app
        self.md = app.md
        self.file = SubscriptionsFile(app.state.data_dir / "book")
        self.streams: dict[tuple[int, int], BarStream] = {}
        """By (conId, bar seconds)."""
        self.restored = 0
        self._writes: list[tuple[int, str, pd.DataFrame]] = []
        self._wake = asyncio.Event()
        self._save_lock = asyncio.Lock()

    # -- owners ---------------------------------------------------------------------------------------

    def subscribe(self, owner: str, contract: Contract, size: BarSize | None) -> Subscription:
        sub = self.md.subscribe(owner, contract)
        if size is not None:
            key = (sub.con_id, size.seconds)
            stream = self.streams.get(key)
            if stream is None:
                stream = self.streams[key] = BarStream(sub.con_id, sub.topic, size)
                log.info("bars %s: started for %s", stream.topic, owner)
            stream.owners.add(owner)
        return sub

    def unsubscribe(self, owner: str, con_id: int, size: BarSize | None) -> bool:
        """Drop ``owner``'s bars of ``size`` of the instrument, or (no size) its ticks and all its
        bars of it. False: it had no such subscription."""
        dropped = False
        for key, stream in list(self.streams.items()):
            if key[0] == con_id and (size is None or key[1] == size.seconds) and owner in stream.owners:
                stream.owners.discard(owner)
                dropped = True
                if not stream.owners:
                    del self.streams[key]
                    log.info("bars %s: stopped (last owner %s left)", stream.topic, owner)
        if size is None:
            dropped = self.md.unsubscribe(owner, con_id) or dropped
        return dropped

    def unsubscribe_owner(self, owner: str) -> int:
        con_ids = {s.con_id for s in self.md.subscriptions() if owner in s.owners}
        con_ids |= {s.con_id for s in self.streams.values() if owner in s.owners}
        return sum(self.unsubscribe(owner, c, None) for c in con_ids)

    def info(self, sub: Subscription) -> dict[str, Any]:
        bars = [s.info() for s in self.streams.values() if s.con_id == sub.con_id]
        return sub.info() | {"bars": sorted(bars, key=lambda b: str(b["topic"]))}

    # -- persistence ----------------------------------------------------------------------------------

    def records(self) -> dict[str, list[dict[str, Any]]]:
        owners: dict[str, list[dict[str, Any]]] = {}
        for sub in self.md.subscriptions():
            for owner in sorted(o for o in sub.owners if not o.startswith("algo:")):  # algos: not kept
                sizes = [
                    s.size.name for s in self.streams.values() if s.con_id == sub.con_id and owner in s.owners
                ]
                owners.setdefault(owner, []).append(
                    {
                        "con_id": sub.con_id,
                        "topic": sub.topic,
                        "contract": contract_to_dict(sub.contract),
                        "bar_sizes": sorted(sizes),
                    }
                )
        return owners

    async def save(self) -> None:
        async with self._save_lock:
            records = self.records()
            try:
                await asyncio.to_thread(self.file.save, records)
            except (OSError, TypeError, ValueError):
                log.exception("saving the subscriptions to %s failed", self.file.path)

    def restore(self) -> int:
        """Subscribe again what the file holds (requested at IB once connected); returns how many
        (owner, instrument) pairs."""
        data = self.file.load()
        if data is None:
            return 0
        restored = 0
        for owner, entries in data["owners"].items():
            for entry in entries if isinstance(entries, list) else []:
                try:
                    contract = contract_from_dict(dict(entry["contract"]))
                    sizes = [parse_bar_size(s) for s in entry.get("bar_sizes", [])]
                    self.subscribe(str(owner), contract, None)
                    for size in sizes:
                        self.subscribe(str(owner), contract, size)
                    restored += 1
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("subscription of %s not restored (%r): %s", owner, exc, entry)
        self.restored = restored
        log.info(
            "subscriptions restored: %d (owner, instrument) pairs, %d bar streams",
            restored,
            len(self.streams),
        )
        return restored

    # -- ticks to bars --------------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        streams = [s for s in self.streams.values() if s.con_id == tick.con_id]
        if not streams:
            return
        price = tick_price(tick)
        time_ns = int(pd.Timestamp(tick.time).value)
        for stream in streams:
            volume = stream.volume.delta(tick.volume)
            was_open = stream.aggregator.open_bar_end_ns is not None
            bar = stream.aggregator.update(time_ns, price, volume)
            if bar is not None:
                self._emit(stream, bar)
            if not was_open:
                self._wake.set()  # the timer learns the new bar's end

    def _emit(self, stream: BarStream, bar: Bar) -> None:
        frame = bar.frame()
        try:
            self.app.ticks.publish_frame(stream.topic, frame)
        except Exception:
            log.exception("publishing %s failed", stream.topic)
        stream.published += 1
        self._writes.append((stream.con_id, stream.size.name, frame))
        self._wake.set()

    def close_due(self, now_ns: int) -> int:
        """The timer's work: close the bars whose end (plus the grace) has passed."""
        closed = 0
        for stream in list(self.streams.values()):
            bar = stream.aggregator.close_due(now_ns - CLOSE_GRACE_NS)
            if bar is not None:
                self._emit(stream, bar)
                closed += 1
        return closed

    async def run(self) -> None:
        """Close bars at their boundaries and hand closed bars to the store writer."""
        while True:
            ends = [e for s in self.streams.values() if (e := s.aggregator.open_bar_end_ns) is not None]
            delay = None if not ends else max(0.0, (min(ends) + CLOSE_GRACE_NS - time.time_ns()) / 1e9)
            if not self._writes:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self.close_due(time.time_ns())
            await self._flush_writes()

    async def _flush_writes(self) -> None:
        writes, self._writes = self._writes, []
        writer = self.app.writer
        for con_id, size, frame in writes:
            if writer is None:
                break
            try:
                await writer.write_bars(con_id, size, frame)
            except Exception:
                log.exception("bars of %s (%s) not written", con_id, size)


# -- RPC methods ------------------------------------------------------------------------------------


def _size(bar_size: str | None) -> BarSize | None:
    if bar_size is None:
        return None
    try:
        return parse_bar_size(bar_size)
    except ValueError as exc:
        raise RpcError(BAD_PARAMS, str(exc)) from None


def register(registry: MethodRegistry, app: TraderApp) -> None:
    """The market data and instrument methods."""
    method = functools.partial(_method, registry)
    feeds = app.market

    @method("resolve_symbol")
    async def resolve_symbol(
        *,
        symbol: str | None = None,
        con_id: int | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
    ) -> dict[str, Any]:
        """The one contract of a symbol (or conId): unknown_contract / ambiguous_contract."""
        return contract_to_dict(
            await contract_of(
                app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency, expiry=expiry
            )
        )

    @method("snapshot")
    async def snapshot(
        *,
        symbol: str | None = None,
        con_id: int | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
    ) -> dict[str, Any]:
        """One quote now (no subscription): time, bid, ask, last, sizes, volume."""
        contract = await contract_of(
            app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency, expiry=expiry
        )
        tick = await app.md.snapshot(contract, timeout=10.0)
        return {"symbol": tick.topic, **tick.as_row()}

    async def contracts(
        symbols: list[str] | None, con_ids: list[int] | None, *, sec_type: str, exchange: str, currency: str
    ) -> list[Contract]:
        out = [await _known_or_resolved(app, c) for c in con_ids or []]
        out += [
            await contract_of(app, s, None, sec_type=sec_type, exchange=exchange, currency=currency)
            for s in symbols or []
        ]
        return out

    @method("subscribe")
    async def subscribe(
        *,
        owner: str,
        symbols: list[str] | None = None,
        con_ids: list[int] | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        bar_size: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stream these instruments' ticks on the ticks PUB (topic = local symbol) for ``owner``;
        bar_size (IB's: '5 secs', '1 min', '5 mins' ...): also their bars (topic
        ``<symbol>.bars.<slug>``). Kept across reconnects and restarts; the last owner's
        unsubscribe stops a stream."""
        size = _size(bar_size)
        if not owner:
            raise RpcError(BAD_PARAMS, "subscribe: owner must not be empty")
        chosen = await contracts(symbols, con_ids, sec_type=sec_type, exchange=exchange, currency=currency)
        subs = [feeds.subscribe(owner, c, size) for c in chosen]
        await feeds.save()
        return [feeds.info(s) for s in subs]

    @method("unsubscribe")
    async def unsubscribe(
        *,
        owner: str,
        symbols: list[str] | None = None,
        con_ids: list[int] | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        bar_size: str | None = None,
    ) -> dict[str, Any]:
        """Drop ``owner``'s subscriptions to these instruments (all of them when none is named);
        bar_size: only its bars of that size (the ticks stay)."""
        size = _size(bar_size)
        if not symbols and not con_ids:
            if size is None:
                count = feeds.unsubscribe_owner(owner)
            else:
                count = sum(feeds.unsubscribe(owner, s.con_id, size) for s in app.md.subscriptions())
        else:
            chosen = await contracts(
                symbols, con_ids, sec_type=sec_type, exchange=exchange, currency=currency
            )
            count = sum(feeds.unsubscribe(owner, int(c.conId), size) for c in chosen)
        await feeds.save()
        return {"unsubscribed": count}

    @method("get_subscriptions")
    def get_subscriptions(*, owner: str | None = None) -> list[dict[str, Any]]:
        """Streams and their owners (of one owner when given), with their bar streams."""
        return [feeds.info(s) for s in app.md.subscriptions() if owner is None or owner in s.owners]

    @method("get_history")
    async def get_history(
        *,
        symbol: str | None = None,
        con_id: int | None = None,
        bar_size: str = "1 min",
        duration: str | None = None,
        days: int | None = None,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
        end: datetime | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
    ) -> pd.DataFrame:
        """Historical bars as a DataFrame (index time UTC; open high low close volume wap count),
        through the store and IB's pacing rules. duration (IB's, e.g. "2 D") or days."""
        if duration is not None and days is not None:
            raise RpcError(BAD_PARAMS, "get_history: give duration or days, not both")
        span = duration or f"{days or 1} D"
        contract = await contract_of(
            app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency, expiry=expiry
        )
        try:
            return await app.history.bars(
                contract,
                end=end,
                duration=span,
                bar_size=bar_size,
                what_to_show=what_to_show,
                use_rth=use_rth,
            )
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, f"get_history: {exc}") from None


async def _known_or_resolved(app: TraderApp, con_id: int) -> Contract:
    """A subscribed instrument's contract (so it can be unsubscribed while IB is down), else IB's."""
    sub = app.md.get(con_id)
    return sub.contract if sub is not None else await contract_of(app, None, con_id)
