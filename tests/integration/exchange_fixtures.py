"""Helpers for tests that run the paper exchange as a real process and talk to it with ib_async.

* :func:`start_exchange` starts ``services/exchange_service.py`` on a free port with its own data
  directory and a fast market (4 quotes/s), and waits for its ready line;
* :func:`connect` / :func:`connected` give a real ``ib_async.IB`` with a fresh client id;
* :class:`IbLogGuard` collects ``ib_async`` log records at ERROR (ib_async swallows decoder errors
  and only logs them) so a test fails on any it did not expect;
* :class:`RawClient` speaks the TWS protocol on a plain socket (garbage, malformed requests);
* :func:`anchor_price` gives an instrument's universe price, to place orders far from (or through)
  the market without market data: the synthetic prices stay within a few times of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ib_async import IB

from tests.support import Child, Processes, free_endpoint, free_port
from trader.exchange.instruments import load_universe
from trader.exchange.protocol import encode_fields

T = TypeVar("T")

ACCOUNT = "DU1234567"
FAST_MARKET_ENV = {
    "BOURSE_MARKET_STEP_MS": "250",
    "BOURSE_MARKET_TICK_RATE": "4",
    "BOURSE_MARKET_HOURS": "always",
    "BOURSE_LOGGING_CONSOLE": "false",  # logs go to <data-dir>/logs/exchange.service.log, not the pipe
}
_client_ids = itertools.count(11)
_UNIVERSE = load_universe()


def next_client_id() -> int:
    """A client id no other test of this session used."""
    return next(_client_ids)


def anchor_price(symbol: str, sec_type: str = "STK") -> float:
    return _UNIVERSE.by_symbol(symbol, sec_type).price


def con_id(symbol: str, sec_type: str = "STK") -> int:
    return _UNIVERSE.by_symbol(symbol, sec_type).conId


@dataclass
class ExchangeProcess:
    """A running exchange service."""

    host: str
    port: int
    data_dir: Path
    child: Child
    args: list[str] = field(default_factory=list)
    control: str = ""
    """The control RPC endpoint (always a free port in tests, never the default 42010)."""

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "exchange.service.log"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def assert_healthy(self) -> None:
        """Still running, and no traceback in its log (the server survives every client)."""
        assert self.child.popen.poll() is None, f"exchange exited with {self.child.popen.returncode}"
        assert "Traceback" not in self.log_text(), self.log_text()[-4000:]


def start_exchange(
    procs: Processes,
    data_dir: Path,
    *,
    port: int | None = None,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> ExchangeProcess:
    """Start ``services/exchange_service.py`` and wait until it listens."""
    port = free_port() if port is None else port
    argv = ["--port", str(port), "--data-dir", str(data_dir), *args]
    full_env = {"BOURSE_EXCHANGE_CONTROL_RPC": free_endpoint(), **FAST_MARKET_ENV, **(env or {})}
    child = procs.python("services/exchange_service.py", *argv, env=full_env)
    match = child.wait_for_line(r"exchange ready on ([\d.]+):(\d+)", timeout=timeout)
    control = full_env["BOURSE_EXCHANGE_CONTROL_RPC"]
    return ExchangeProcess(match.group(1), int(match.group(2)), data_dir, child, argv, control)


async def connect(exchange: ExchangeProcess, client_id: int | None = None, within: float = 5.0) -> IB:
    ib = IB()
    await ib.connectAsync(
        exchange.host,
        exchange.port,
        clientId=next_client_id() if client_id is None else client_id,
        timeout=within,
    )
    return ib


@contextlib.asynccontextmanager
async def connected(exchange: ExchangeProcess, client_id: int | None = None) -> AsyncIterator[IB]:
    ib = await connect(exchange, client_id)
    try:
        yield ib
    finally:
        ib.disconnect()


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a test body on a fresh event loop with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(predicate: Callable[[], bool], ib: IB, within: float = 5.0, what: str = "") -> None:
    """Await ib_async updates until ``predicate()`` holds (no sleeping in steps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_next_update(ib), remaining)


async def _next_update(ib: IB) -> None:
    await ib.updateEvent


async def next_event(event: Any, within: float = 5.0) -> Any:
    """The next emit of an eventkit event (e.g. ``trade.filledEvent``), with a deadline."""

    async def wait() -> Any:
        return await event

    return await asyncio.wait_for(wait(), within)


class IbLogGuard(logging.Handler):
    """Collects ``ib_async`` records at ERROR and above; :meth:`allow` whitelists expected ones."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.allowed: list[re.Pattern[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def allow(self, pattern: str) -> None:
        """Expect records whose message matches ``pattern`` (regex, searched)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        messages = [f"{r.name}: {r.getMessage()}" for r in self.records]
        return [m for m in messages if not any(p.search(m) for p in self.allowed)]


class RawClient:
    """A bare TWS API client on a socket: handshake, startApi, frames in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.server_version = 0

    @classmethod
    async def open(cls, exchange: ExchangeProcess) -> RawClient:
        reader, writer = await asyncio.open_connection(exchange.host, exchange.port)
        return cls(reader, writer)

    async def start(self, client_id: int) -> list[list[str]]:
        """Handshake and startApi; returns the frames up to nextValidId and managedAccounts."""
        payload = b"v157..178"
        self.writer.write(b"API\0" + struct.pack(">I", len(payload)) + payload)
        hello = await self.read_frame()
        self.server_version = int(hello[0])
        self.send(71, 2, client_id, "")
        frames = [await self.read_frame()]
        while not {"9", "15"} <= {f[0] for f in frames}:
            frames.append(await self.read_frame())
        return frames

    def send(self, *fields: Any) -> None:
        self.writer.write(encode_fields(*fields))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, within: float = 5.0) -> list[str]:
        header = await asyncio.wait_for(self.reader.readexactly(4), within)
        (length,) = struct.unpack(">I", header)
        payload = await asyncio.wait_for(self.reader.readexactly(length), within)
        return payload.decode().split("\0")[:-1]

    async def read_until(self, predicate: Callable[[list[str]], bool], within: float = 5.0) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.read_frame(max(0.01, deadline - loop.time()))
            if predicate(frame):
                return frame

    async def closed_by_peer(self, within: float = 5.0) -> bool:
        """True when the server ends the connection (EOF or reset) within ``within`` seconds."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), within):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
