"""Market data subscriptions shared by many owners, kept alive across reconnects.

:class:`MarketData` holds one IB subscription (reqMktData) per contract on behalf of any number
of owners (strategies, the CLI ...): the first :meth:`~MarketData.subscribe` of a contract starts
the stream, the last :meth:`~MarketData.unsubscribe` cancels it. Subscriptions are recorded even
while the session is down and requested when it is up: the session's sync calls
:meth:`~MarketData.resubscribe_all` after every new connection and after 1101 ("data lost").

Live data first: when IB says live data is not permitted (354, 10089, 10090) the subscription
falls back to delayed data (``reqMarketDataType(3)``, then the request again) and is marked
``delayed_fallback``; 10167 marks it delayed; 10168/10186 (nothing at all) mark it failed with
the error. ``reqMarketDataType`` applies to the whole connection: TWS keeps serving live data to
the contracts it is permitted for (their ``market_data_type`` stays 1), but the paper exchange
switches every subscription of the connection to delayed.

Ticks come out as :class:`Tick` records (one per updated ticker per ib_async update batch) to the
listeners of :meth:`~MarketData.add_tick_listener`, all contracts or one conId: that is the feed of
the tick publisher (``Tick.topic`` / ``Tick.as_row()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ib_async import Contract, Ticker

from trader.ib.errors import Action, IbError, classify
from trader.ib.session import UP_STATES, IbSession, SyncContext, SyncReason

log = logging.getLogger("trader.ib.market_data")

LIVE, FROZEN, DELAYED, DELAYED_FROZEN = 1, 2, 3, 4
_MARKET_DATA_ACTIONS = frozenset(
    {
        Action.FALLBACK_DELAYED,
        Action.DELAYED,
        Action.NO_MARKET_DATA,
        Action.COMPETING_SESSION,
        Action.CONTRACT,
        Action.FAIL,
    }
)


@dataclass(frozen=True, slots=True)
class Tick:
    """The state of one contract's quote after an update (NaN: no value yet)."""

    con_id: int
    topic: str
    """The publisher topic: the local symbol (AAPL, ESZ6, EUR.USD)."""
    time: datetime
    """When IB last updated the ticker (UTC)."""
    bid: float
    ask: float
    last: float
    bid_size: float
    ask_size: float
    last_size: float
    volume: float
    market_data_type: int
    """1 live, 2 frozen, 3 delayed, 4 delayed frozen (as IB reports it for this subscription)."""

    @property
    def delayed(self) -> bool:
        return self.market_data_type in (DELAYED, DELAYED_FROZEN)

    def as_row(self) -> dict[str, Any]:
        """The publisher's row: ``TickPublisher.publish(tick.topic, tick.as_row())``."""
        return {
            "time": self.time,
            "con_id": self.con_id,
            "bid": self.bid,
            "ask": self.ask,
            "last": self.last,
            "bid_size": self.bid_size,
            "ask_size": self.ask_size,
            "last_size": self.last_size,
            "volume": self.volume,
            "delayed": self.delayed,
        }

    @classmethod
    def of(cls, ticker: Ticker, topic: str) -> Tick:
        contract = ticker.contract
        return cls(
            con_id=contract.conId if contract is not None else 0,
            topic=topic,
            time=ticker.time or datetime.now(UTC),
            bid=_num(ticker.bid),
            ask=_num(ticker.ask),
            last=_num(ticker.last),
            bid_size=_num(ticker.bidSize),
            ask_size=_num(ticker.askSize),
            last_size=_num(ticker.lastSize),
            volume=_num(ticker.volume),
            market_data_type=int(ticker.marketDataType),
        )


@dataclass(slots=True, eq=False)
class Subscription:
    """One contract's stream and who wants it."""

    contract: Contract
    owners: set[str] = field(default_factory=set)
    ticker: Ticker | None = None
    """The ib_async ticker of the current connection (a new one after each reconnect)."""
    req_id: int = 0
    requests: int = 0
    """reqMktData sent for it (first request, fallbacks, resubscribes)."""
    delayed_fallback: bool = False
    """Live data was refused (354/10089/10090) and delayed data was requested instead."""
    error: IbError | None = None
    """The last market data error IB sent for it (cleared by a new request)."""
    failed: bool = False
    """IB gives it no data (10168/10186, unknown contract ...) until the next request."""
    ticks: int = 0
    last_tick_at: float | None = None

    @property
    def con_id(self) -> int:
        return int(self.contract.conId)

    @property
    def topic(self) -> str:
        return topic_of(self.contract)

    @property
    def market_data_type(self) -> int:
        """As IB reports it for the current request (0: not requested on this connection)."""
        return int(self.ticker.marketDataType) if self.ticker is not None else 0

    @property
    def delayed(self) -> bool:
        if self.ticker is not None and self.ticks:
            return self.market_data_type in (DELAYED, DELAYED_FROZEN)
        return self.delayed_fallback

    def info(self) -> dict[str, Any]:
        return {
            "con_id": self.con_id,
            "topic": self.topic,
            "owners": sorted(self.owners),
            "market_data_type": self.market_data_type,
            "delayed": self.delayed,
            "delayed_fallback": self.delayed_fallback,
            "failed": self.failed,
            "error": str(self.error) if self.error else None,
            "ticks": self.ticks,
            "last_tick_at": self.last_tick_at,
            "requests": self.requests,
        }


TickListener = Callable[[Tick], None]


class MarketData:
    """Reference-counted market data subscriptions over an :class:`IbSession`."""

    def __init__(
        self,
        session: IbSession,
        *,
        generic_ticks: str = "",
        delayed_fallback: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.generic_ticks = generic_ticks
        self.delayed_fallback = delayed_fallback
        self.clock = clock
        self._subs: dict[int, Subscription] = {}
        self._listeners: list[TickListener] = []
        self._by_con_listeners: dict[int, list[TickListener]] = {}
        self._data_type = LIVE
        """What this connection was told with reqMarketDataType."""
        self._detach = [session.add_resubscriber(self._on_sync)]
        ib = session.ib
        ib.pendingTickersEvent += self._on_pending
        ib.errorEvent += self._on_error

    # -- owners ---------------------------------------------------------------------------------------

    def subscribe(self, owner: str, contract: Contract) -> Subscription:
        """``owner`` wants ``contract`` (qualified: conId set). The first owner starts the stream
        (at once when the session is up, else at the next connection)."""
        con_id = int(contract.conId or 0)
        if con_id <= 0:
            raise ValueError(f"subscribe needs a qualified contract (conId), got {contract!r}")
        sub = self._subs.get(con_id)
        if sub is None:
            sub = self._subs[con_id] = Subscription(contract)
            sub.owners.add(owner)
            log.info("market data %s: subscribed by %s (first owner)", sub.topic, owner)
            self._request(sub)
        elif owner not in sub.owners:
            sub.owners.add(owner)
            log.debug("market data %s: subscribed by %s (%d owners)", sub.topic, owner, len(sub.owners))
        return sub

    def unsubscribe(self, owner: str, contract: Contract | int) -> bool:
        """``owner`` no longer wants it; the last owner cancels the stream. False: it had no such
        subscription."""
        con_id = contract if isinstance(contract, int) else int(contract.conId or 0)
        sub = self._subs.get(con_id)
        if sub is None or owner not in sub.owners:
            return False
        sub.owners.discard(owner)
        if not sub.owners:
            del self._subs[con_id]
            self._cancel(sub)
            log.info("market data %s: cancelled (last owner %s left)", sub.topic, owner)
        return True

    def unsubscribe_owner(self, owner: str) -> int:
        """Drop every subscription of ``owner`` (a strategy stopped); returns how many."""
        return sum(self.unsubscribe(owner, con_id) for con_id in list(self._subs))

    def get(self, contract: Contract | int) -> Subscription | None:
        con_id = contract if isinstance(contract, int) else int(contract.conId or 0)
        return self._subs.get(con_id)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())

    def owners(self, contract: Contract | int) -> frozenset[str]:
        sub = self.get(contract)
        return frozenset(sub.owners) if sub is not None else frozenset()

    # -- ticks ----------------------------------------------------------------------------------------

    def add_tick_listener(self, listener: TickListener, con_id: int | None = None) -> Callable[[], None]:
        """Call ``listener(tick)`` for every update (of ``con_id`` only, when given); returns its remover."""
        if con_id is None:
            self._listeners.append(listener)
            return lambda: _remove(self._listeners, listener)
        listeners = self._by_con_listeners.setdefault(con_id, [])
        listeners.append(listener)
        return lambda: _remove(listeners, listener)

    def _on_pending(self, tickers: Iterable[Ticker]) -> None:
        now = self.clock()
        for ticker in tickers:
            contract = ticker.contract
            if contract is None:
                continue
            sub = self._subs.get(contract.conId)
            if sub is None or sub.ticker is not ticker:
                continue
            sub.ticks += 1
            sub.last_tick_at = now
            if sub.failed:
                sub.failed = False
            tick = Tick.of(ticker, sub.topic)
            for listener in (*self._listeners, *self._by_con_listeners.get(sub.con_id, ())):
                try:
                    listener(tick)
                except Exception:
                    log.exception("tick listener failed on %s", tick.topic)

    # -- requests -------------------------------------------------------------------------------------

    def _socket_up(self) -> bool:
        return self.session.state in UP_STATES

    def _request(self, sub: Subscription) -> None:
        if not self._socket_up():
            return  # requested by resubscribe_all at the next connection
        ib = self.session.ib
        if sub.delayed_fallback and self._data_type != DELAYED:
            self._set_data_type(DELAYED)
        sub.error, sub.failed = None, False
        sub.ticker = ib.reqMktData(sub.contract, self.generic_ticks)
        sub.req_id = int(ib.wrapper.ticker2ReqId["mktData"].get(sub.ticker, 0))
        sub.requests += 1

    def _cancel(self, sub: Subscription) -> None:
        ticker, sub.ticker = sub.ticker, None
        if ticker is None or not self._socket_up():
            return
        ib = self.session.ib
        if ib.wrapper.ticker2ReqId["mktData"].get(ticker):
            ib.cancelMktData(sub.contract)

    def _set_data_type(self, data_type: int) -> None:
        self.session.ib.reqMarketDataType(data_type)
        self._data_type = data_type

    async def resubscribe_all(self) -> int:
        """Request every subscription again (after a reconnect or 1101); returns how many."""
        if not self._socket_up():
            return 0
        if any(sub.delayed_fallback for sub in self._subs.values()):
            self._set_data_type(DELAYED)
        for sub in self._subs.values():
            self._request(sub)
        if self._subs:
            log.info("market data: %d subscriptions requested again", len(self._subs))
        return len(self._subs)

    async def _on_sync(self, context: SyncContext) -> None:
        if context.reason in (SyncReason.CONNECT, SyncReason.RECONNECT):
            self._data_type = LIVE  # a new connection starts live
        await self.resubscribe_all()

    async def snapshot(self, contract: Contract, timeout: float = 10.0) -> Tick:  # noqa: ASYNC109
        """One snapshot quote (no subscription); :class:`NotConnected` when the session is down."""
        ib = self.session.require_connected("market data snapshot")
        (ticker,) = await asyncio.wait_for(ib.reqTickersAsync(contract), timeout)
        return Tick.of(ticker, topic_of(contract))

    # -- IB errors ------------------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, text: str, contract: Contract | None) -> None:
        if req_id <= 0:
            return
        sub = self._for_request(req_id)
        if sub is None:
            return
        error = classify(code, text, req_id)
        if error.action not in _MARKET_DATA_ACTIONS:
            return
        sub.error = error
        if error.action is Action.FALLBACK_DELAYED:
            if not self.delayed_fallback or sub.delayed_fallback:
                sub.failed = True
                log.error("market data %s: %s (no delayed fallback)", sub.topic, error)
                return
            sub.delayed_fallback = True
            log.warning(
                "market data %s: live data not permitted (%d): falling back to delayed", sub.topic, code
            )
            self._set_data_type(DELAYED)
            self._request(sub)
            sub.error = error
        elif error.action is Action.DELAYED:
            sub.delayed_fallback = True
            log.info("market data %s: delayed data (%d)", sub.topic, code)
        else:
            sub.failed = True
            log.error("market data %s: %s", sub.topic, error)

    def _for_request(self, req_id: int) -> Subscription | None:
        for sub in self._subs.values():
            if sub.req_id == req_id:
                return sub
        return None

    def close(self) -> None:
        """Cancel every stream and detach from the session."""
        for sub in list(self._subs.values()):
            self._cancel(sub)
        self._subs.clear()
        for detach in self._detach:
            detach()
        ib = self.session.ib
        with contextlib.suppress(ValueError):
            ib.pendingTickersEvent -= self._on_pending
        with contextlib.suppress(ValueError):
            ib.errorEvent -= self._on_error


def topic_of(contract: Contract) -> str:
    """The publisher topic of a contract: its local symbol (AAPL, ESZ6, EUR.USD), else its symbol."""
    return str(contract.localSymbol or contract.symbol or contract.conId)


def _num(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _remove(items: list[TickListener], item: TickListener) -> None:
    with contextlib.suppress(ValueError):
        items.remove(item)
