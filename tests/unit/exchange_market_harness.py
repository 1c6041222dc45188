"""Test harness of the market-data feature: a recording Session decoded by the real ib_async
``Decoder``, an exchange core with a hand-driven clock, request builders and call filters.

A recording :class:`Session` collects what the feature sends; the bytes are split into frames and
decoded by ``ib_async.decoder.Decoder`` with a wrapper that checks each call against the real
``Wrapper`` signature and records it. Any ERROR logged by ib_async fails the test. Time is driven
by hand: ``Harness.step(seconds)`` advances the market and calls ``on_step`` like the server does.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from ib_async.decoder import Decoder
from ib_async.wrapper import Wrapper

from trader.exchange.account import Account
from trader.exchange.feature_market import MarketDataFeature
from trader.exchange.instruments import Universe, load_universe
from trader.exchange.market import Market, MarketConfig
from trader.exchange.matching import MatchingEngine
from trader.exchange.protocol import (
    ContractFields,
    FrameParser,
    ReqHistoricalData,
    ReqMktData,
    encode_error,
)
from trader.exchange.session_api import ExchangeCore

NS = 1_000_000_000
AAPL = 265598
REAL = load_universe()
ALWAYS = load_universe(always_open=True)
AAPL_C = ContractFields(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
AAPL_ID = ContractFields(conId=AAPL, exchange="SMART")
UNKNOWN = ContractFields(symbol="NOPE", secType="STK", exchange="SMART", currency="USD")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * NS


WEDNESDAY_RTH = utc(2026, 11, 18, 15, 0)  # 10:00 New York
SATURDAY = utc(2026, 11, 21, 15, 0)
MONDAY_PREMARKET = utc(2026, 11, 23, 9, 0)  # 04:00 New York: the trading session opens


# -- harness ----------------------------------------------------------------------------------------


class _ErrorTrap(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_ib_async_errors() -> Iterator[None]:
    trap = _ErrorTrap()
    logger = logging.getLogger("ib_async")
    logger.addHandler(trap)
    try:
        yield
    finally:
        logger.removeHandler(trap)
    if trap.records:
        r = trap.records[0]
        detail = logging.Formatter().formatException(r.exc_info) if r.exc_info else ""
        raise AssertionError(f"ib_async logged {r.levelname}: {r.getMessage()}\n{detail}")


class RecordingWrapper:
    """Records every wrapper call after binding it to the real ``Wrapper`` method's signature."""

    ib = SimpleNamespace(TimezoneTWS="")
    defaultTimezone = dt.UTC

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        signature = inspect.signature(getattr(Wrapper, name))

        def record(*args: Any) -> None:
            signature.bind(None, *args)
            self.calls.append((name, args))

        return record


@dataclass
class RecordingSession:
    core: ExchangeCore
    server_version: int = 178
    client_id: int = 1
    extensions: dict[str, Any] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    sends: int = 0

    def send(self, frame: bytes) -> None:
        self.data += frame
        self.sends += 1

    def send_error(self, req_id: int, code: int, text: str, advanced_order_reject_json: str = "") -> None:
        self.send(
            encode_error(req_id, code, text, advanced_order_reject_json, server_version=self.server_version)
        )

    def calls(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Decode (and forget) everything sent so far."""
        wrapper = RecordingWrapper()
        decoder: Any = cast(Any, Decoder)(wrapper, self.server_version)
        with no_ib_async_errors():
            for fields in FrameParser().feed(bytes(self.data)):
                decoder.interpret(fields)
        self.data.clear()
        return wrapper.calls


class Harness:
    def __init__(self, universe: Universe = ALWAYS, now: int = WEDNESDAY_RTH, **config: Any) -> None:
        self.now = now
        self.market = Market(universe, MarketConfig(**config))
        account = Account(universe)
        engine = MatchingEngine(universe, self.market, account)
        self.core = ExchangeCore(universe, self.market, engine, account.account_id, clock=lambda: self.now)
        self.feature = MarketDataFeature()
        self.session = RecordingSession(self.core)
        self.market.advance(now)

    def request(self, req: Any) -> list[tuple[str, tuple[Any, ...]]]:
        self.feature.handlers[type(req)](self.session, req)
        return self.session.calls()

    def step(self, seconds: float = 1.0) -> list[tuple[str, tuple[Any, ...]]]:
        self.now += int(seconds * NS)
        quotes = self.market.advance(self.now)
        self.feature.on_step(self.session, quotes, self.now)
        return self.session.calls()


def names(calls: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    return [c[0] for c in calls]


def ticks(
    calls: list[tuple[str, tuple[Any, ...]]], name: str = "priceSizeTick"
) -> dict[int, tuple[Any, ...]]:
    """tickType -> the arguments after it, for one kind of tick call (the last one wins)."""
    return {args[1]: args[2:] for n, args in calls if n == name}


def errors(calls: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[int, int, str]]:
    return [(a[0], a[1], a[2]) for n, a in calls if n == "error"]


def mkt(
    req_id: int, contract: ContractFields = AAPL_C, generic: str = "", snapshot: bool = False
) -> ReqMktData:
    return ReqMktData(req_id, contract, generic, snapshot, False, "")


def hist(
    req_id: int,
    *,
    end: str = "",
    duration: str = "1 D",
    bar_size: str = "1 min",
    what: str = "TRADES",
    rth: bool = True,
    fmt: int = 1,
    keep: bool = False,
    contract: ContractFields = AAPL_C,
) -> ReqHistoricalData:
    return ReqHistoricalData(req_id, contract, end, bar_size, duration, rth, what, fmt, keep, "")
