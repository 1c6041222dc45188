"""Historical bars from IB, paced, retried and cached.

:meth:`History.bars` returns a DataFrame in the store's bar schema (index ``time``: bar start, UTC;
columns open high low close volume wap count). A request goes

1. to the **store** (when one is given) if the bars it covers are there: the store keeps one
   contiguous covered span per conId and bar size (TRADES, all hours: ``useRTH`` off), so a
   request inside it is read from ArcticDB; a request up to "now" that starts inside it only asks
   IB for the missing tail;
2. to the **pacing limiter** (:mod:`trader.ib.pacing`, shared by every user of the IB login): an
   identical request made within 15 s gets that result, others wait until IB's rules allow them;
3. to **IB** (reqHistoricalDataAsync, epoch dates); a pacing violation (162) is retried after an
   exponential backoff with jitter, up to ``max_retries``; "no data" is an empty frame; any other
   error is :class:`HistoryError` with IB's code and text.

Completed bars fetched for the cacheable series are written back to the store (``write_bars``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import pandas as pd
from ib_async import BarData, Contract, util

from trader.data.store import Store
from trader.ib.backoff import Backoff, BackoffState, RandomSource
from trader.ib.errors import Action, IbError, NotConnected, classify
from trader.ib.pacing import PacingKey, PacingLimiter
from trader.ib.session import UP_STATES, IbSession

log = logging.getLogger("trader.ib.history")

COLUMNS: Final = ("open", "high", "low", "close", "volume", "wap", "count")
FORMAT_EPOCH: Final = 2
STORED_WHAT: Final = "TRADES"
_UNIT_SECONDS: Final = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
    "week": 7 * 86400,
    "weeks": 7 * 86400,
    "month": 28 * 86400,
    "months": 28 * 86400,
}
_DURATION_SECONDS: Final = {"S": 1, "D": 86400, "W": 7 * 86400, "M": 28 * 86400, "Y": 365 * 86400}
"""Calendar length of IB duration units, never longer than IB's (a coverage claim errs short)."""
_BAR = re.compile(r"^\s*(\d+)\s+([a-z]+)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$")


class HistoryError(RuntimeError):
    """IB refused or failed a historical data request."""

    def __init__(self, request: BarRequest, error: IbError | None, message: str = "") -> None:
        self.request = request
        self.error = error
        self.code = error.code if error else None
        text = message or (str(error) if error else "failed")
        super().__init__(f"historical data {request.describe()}: {text}")


class HistoryPacingError(HistoryError):
    """Still a pacing violation (162) after every retry."""


class HistoryTimeout(HistoryError):
    pass


def bar_seconds(bar_size: str) -> int:
    """Length of an IB bar size in seconds (``"5 mins"`` -> 300; a month counts 28 days)."""
    match = _BAR.match(bar_size.lower())
    if match is None or match.group(2) not in _UNIT_SECONDS:
        raise ValueError(f"unknown bar size {bar_size!r} (e.g. '1 min', '5 mins', '1 hour', '1 day')")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def duration_seconds(duration: str) -> int:
    """The calendar span an IB duration surely covers (``"2 D"`` -> 172800)."""
    match = _DURATION.match(duration.upper())
    if match is None:
        raise ValueError(f"invalid duration {duration!r} (e.g. '3600 S', '2 D', '1 W', '1 M', '1 Y')")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def duration_for(seconds: float) -> str:
    """The shortest IB duration covering ``seconds``."""
    whole = max(1, math.ceil(seconds))
    return f"{whole} S" if whole <= 86400 else f"{math.ceil(whole / 86400)} D"


@dataclass(frozen=True, slots=True)
class BarRequest:
    contract: Contract
    end: datetime | None = None
    """None: up to now."""
    duration: str = "1 D"
    bar_size: str = "1 min"
    what_to_show: str = "TRADES"
    use_rth: bool = False

    def __post_init__(self) -> None:
        if not self.contract.conId:
            raise ValueError(f"historical data needs a qualified contract (conId), got {self.contract!r}")
        if self.end is not None and self.end.tzinfo is None:
            raise ValueError("end must be timezone-aware")
        bar_seconds(self.bar_size)
        duration_seconds(self.duration)

    @property
    def end_text(self) -> str:
        return util.formatIBDatetime(self.end) if self.end is not None else ""

    @property
    def pacing_key(self) -> PacingKey:
        params = (self.end_text, self.duration.upper(), self.bar_size, self.use_rth, FORMAT_EPOCH, False)
        return PacingKey(self.contract.conId, self.contract.exchange, self.what_to_show, params)

    @property
    def intraday(self) -> bool:
        return bar_seconds(self.bar_size) < 86400

    @property
    def storable(self) -> bool:
        """Kept in the store: TRADES bars of all hours, intraday (daily bars depend on the session)."""
        return self.what_to_show.upper() == STORED_WHAT and not self.use_rth and self.intraday

    def describe(self) -> str:
        c = self.contract
        end = self.end.isoformat() if self.end else "now"
        return f"{c.localSymbol or c.symbol} {self.duration} of {self.bar_size} {self.what_to_show} to {end}"


@dataclass(slots=True)
class HistoryStats:
    requests: int = 0
    """Requests sent to IB."""
    from_store: int = 0
    tails: int = 0
    """Requests answered from the store plus a tail fetched from IB."""
    retries: int = 0
    written: int = 0
    """Bars written to the store."""


def empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS})
    frame["count"] = frame["count"].astype("int64")
    frame.index = pd.DatetimeIndex([], tz=UTC, name="time")
    return frame


def bars_frame(bars: list[BarData]) -> pd.DataFrame:
    """ib_async bars -> the store's bar schema (daily dates become UTC midnight)."""
    if not bars:
        return empty_bars()
    times = [_utc(bar.date) for bar in bars]
    frame = pd.DataFrame(
        {
            "open": [float(b.open) for b in bars],
            "high": [float(b.high) for b in bars],
            "low": [float(b.low) for b in bars],
            "close": [float(b.close) for b in bars],
            "volume": [float(b.volume) for b in bars],
            "wap": [float(b.average) for b in bars],
            "count": [int(b.barCount) for b in bars],
        },
        index=pd.DatetimeIndex(times, name="time"),
    )
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def _floor(stamp: pd.Timestamp, step: pd.Timedelta) -> pd.Timestamp:
    return pd.Timestamp(stamp.value // step.value * step.value, tz=UTC)


def _utc(value: date | datetime) -> pd.Timestamp:
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return pd.Timestamp(value.year, value.month, value.day, tz=UTC)


class History:
    """Historical bars through the pacing limiter, with retries and the store as a cache."""

    def __init__(
        self,
        session: IbSession,
        *,
        limiter: PacingLimiter | None = None,
        store: Store | None = None,
        backoff: Backoff | None = None,
        max_retries: int = 6,
        timeout_s: float = 60.0,
        rng: RandomSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.limiter = limiter or PacingLimiter()
        self.store = store
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=30.0)
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.rng: RandomSource = rng or random.Random()
        self.clock = clock
        self.stats = HistoryStats()
        self._pending: dict[int, tuple[Contract, asyncio.Future[IbError]]] = {}
        self._coverage: dict[tuple[int, str], tuple[pd.Timestamp, pd.Timestamp] | None] = {}
        session.ib.errorEvent += self._on_error

    async def bars(
        self,
        contract: Contract,
        *,
        end: datetime | None = None,
        duration: str = "1 D",
        bar_size: str = "1 min",
        what_to_show: str = "TRADES",
        use_rth: bool = False,
    ) -> pd.DataFrame:
        """Bars of ``contract`` (qualified) over ``duration`` up to ``end`` (None: now)."""
        return await self.fetch(BarRequest(contract, end, duration, bar_size, what_to_show, use_rth))

    async def fetch(self, request: BarRequest) -> pd.DataFrame:
        if self.store is not None and request.storable:
            return await self._through_store(request)
        return await self._paced(request)

    # -- the store ------------------------------------------------------------------------------------

    async def _through_store(self, request: BarRequest) -> pd.DataFrame:
        assert self.store is not None
        now = pd.Timestamp(self.clock(), unit="s", tz=UTC)
        end = now if request.end is None else min(pd.Timestamp(request.end).tz_convert(UTC), now)
        start = end - pd.Timedelta(seconds=duration_seconds(request.duration))
        covered = await self._covered(request)
        if covered is not None and covered[0] <= start and end <= covered[1]:
            self.stats.from_store += 1
            return await self._read(request, start, end)
        if request.end is None and covered is not None and covered[0] <= start < covered[1]:
            tail = BarRequest(
                request.contract,
                None,
                duration_for((now - covered[1]).total_seconds() + bar_seconds(request.bar_size)),
                request.bar_size,
                request.what_to_show,
                request.use_rth,
            )
            fresh = await self._paced(tail)
            self.stats.tails += 1
            await self._store(
                request, fresh, now - pd.Timedelta(seconds=duration_seconds(tail.duration)), now
            )
            stored = await self._read(request, start, covered[1])
            fresh = fresh[fresh.index >= covered[1]]
            return pd.concat([stored[~stored.index.isin(fresh.index)], fresh]).sort_index()
        frame = await self._paced(request)
        await self._store(request, frame, start, end)
        return frame

    async def _read(self, request: BarRequest, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Stored bars starting in [start, end)."""
        assert self.store is not None
        frame = await asyncio.to_thread(
            self.store.read_bars, request.contract.conId, request.bar_size, start, end - pd.Timedelta(1, "ns")
        )
        return frame

    async def _covered(self, request: BarRequest) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The span the store holds for the request's series (seeded from ``bars_range``)."""
        assert self.store is not None
        key = (request.contract.conId, request.bar_size)
        if key not in self._coverage:
            found = await asyncio.to_thread(self.store.bars_range, request.contract.conId, request.bar_size)
            bar = pd.Timedelta(seconds=bar_seconds(request.bar_size))
            self._coverage[key] = None if found is None else (found[0], found[1] + bar)
        return self._coverage[key]

    async def _store(
        self, request: BarRequest, frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
    ) -> None:
        """Write the completed bars of a fetch covering [start, end] when that keeps the stored
        span contiguous (a fetch apart from it is served but not kept)."""
        assert self.store is not None
        key = (request.contract.conId, request.bar_size)
        bar = pd.Timedelta(seconds=bar_seconds(request.bar_size))
        now = pd.Timestamp(self.clock(), unit="s", tz=UTC)
        # the bar forming now is not kept, and the span ends where it starts
        forming = frame.index[frame.index + bar > now]
        complete_end = min(end, forming[0] if len(forming) else _floor(now, bar))
        done = frame[frame.index + bar <= complete_end]
        covered = self._coverage.get(key)
        if covered is not None and (start > covered[1] or complete_end < covered[0]):
            log.debug("%s: not stored (apart from the stored span %s)", request.describe(), covered)
            return
        try:
            if len(done):
                self.stats.written += await asyncio.to_thread(
                    self.store.write_bars, request.contract.conId, request.bar_size, done
                )
        except Exception:
            log.exception("storing bars of %s failed", request.describe())
            return
        self._coverage[key] = (
            (start, complete_end)
            if covered is None
            else (min(start, covered[0]), max(complete_end, covered[1]))
        )

    # -- IB, paced and retried ------------------------------------------------------------------------

    async def _paced(self, request: BarRequest) -> pd.DataFrame:
        """Identical requests share one answer: each caller gets its own copy."""
        key = request.pacing_key
        frame = await self.limiter.cached_call(key, lambda: self._with_retries(request, key))
        return frame.copy()

    async def _with_retries(self, request: BarRequest, key: PacingKey) -> pd.DataFrame:
        retries = BackoffState(self.backoff, rng=self.rng, max_attempts=self.max_retries)
        while True:
            await self.limiter.acquire(key)
            try:
                return await self._request(request)
            except HistoryPacingError as exc:
                self.limiter.refused(key)
                delay = retries.next_delay()
                if delay is None:
                    raise
                self.stats.retries += 1
                log.warning("%s; retry %d in %.2f s", exc, retries.attempt, delay)
                await asyncio.sleep(delay)

    async def _request(self, request: BarRequest) -> pd.DataFrame:
        """One reqHistoricalData. Errors are matched to it by its contract object (a private copy):
        ib_async ends a request on an error but not on TWS's validation warnings (321), so an
        error of the request ends the wait itself."""
        session = self.session
        if session.state not in UP_STATES:
            raise NotConnected(session.state, session.since, session.reason, "historical data")
        self.stats.requests += 1
        contract = copy.copy(request.contract)
        failed: asyncio.Future[IbError] = asyncio.get_running_loop().create_future()
        self._pending[id(contract)] = (contract, failed)
        task = asyncio.ensure_future(
            session.ib.reqHistoricalDataAsync(
                contract,
                request.end_text,
                request.duration,
                request.bar_size,
                request.what_to_show,
                request.use_rth,
                formatDate=FORMAT_EPOCH,
                timeout=self.timeout_s,
            )
        )
        started = time.monotonic()
        try:
            waits: list[asyncio.Future[Any]] = [task, failed]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():  # an error ib_async does not end the request on
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise HistoryError(request, failed.result())
            bars = task.result()
        except ConnectionError as exc:
            raise NotConnected(session.state, session.since, str(exc), "historical data") from exc
        finally:
            self._pending.pop(id(contract), None)
            if not task.done():
                task.cancel()
        error = failed.result() if failed.done() else None
        if error is not None:
            if error.action is Action.RETRY_LATER:
                raise HistoryPacingError(request, error)
            if error.action in (Action.NO_DATA, Action.CANCELLED):
                return empty_bars()
            raise HistoryError(request, error)
        if not bars and time.monotonic() - started >= self.timeout_s:
            raise HistoryTimeout(request, None, f"no answer within {self.timeout_s:g} s")
        return bars_frame(list(bars))

    def _on_error(self, req_id: int, code: int, text: str, contract: Contract | None) -> None:
        pending = self._pending.get(id(contract)) if contract is not None else None
        if pending is None or pending[0] is not contract or pending[1].done():
            return
        error = classify(code, text, req_id)
        if error.action is Action.LOG:
            return  # 165 and other notices: the request goes on
        pending[1].set_result(error)

    def close(self) -> None:
        self.session.ib.errorEvent -= self._on_error
