"""One TWS API connection: handshake, frames, request dispatch, and a non-blocking ordered output.

Life of a connection (an :class:`asyncio.Protocol`, so every step is synchronous on the loop):

1. handshake: ``API\\0`` + version range -> :func:`negotiate_version` -> the two-field reply;
2. frames -> :func:`decode_request` -> :meth:`ClientSession.dispatch`:
   * ``startApi`` binds the client id through the server (a client id in use: error 326, then
     the connection is closed, as TWS does) before the connect feature greets the client;
   * other requests go to the feature registered for their type (the server's table), or to
     the server's fallback (error 503 naming the request); nothing but startApi before startApi;
3. output: :meth:`ClientSession.send` appends to a :class:`SendBuffer`, which writes everything
   queued in one ``transport.write`` at the next loop turn (or later when sends are delayed by a
   fault) and never blocks. A client that stops reading is cut off once its backlog (queued +
   the transport's buffer) exceeds the limit.

Misbehaving clients never take the server down: a broken byte stream (bad handshake, bad length,
not UTF-8, ...) ends that connection only (logged); a well-framed request that does not decode
gets error 320 naming it and the connection carries on; a handler that raises is logged with its
traceback and answered with error 322.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from trader.exchange.feature_connect import request_id, request_name
from trader.exchange.protocol import (
    FrameParser,
    HandshakeParser,
    IncomingMessageId,
    ProtocolError,
    RequestDecodeError,
    StartApi,
    UnsupportedRequest,
    decode_request,
    encode_error,
    encode_server_hello,
    negotiate_version,
)
from trader.exchange.session_api import ExchangeCore

if TYPE_CHECKING:
    from trader.exchange.server import ExchangeServer

log = logging.getLogger("trader.exchange.session")

NS = 1_000_000_000
CLIENT_ID_IN_USE = (
    326,
    "Unable to connect as the client id is already in use. Retry with a unique client id.",
)
READ_ERROR = 320
"""TWS: "Error reading request" (a request whose fields do not decode)."""
PROCESSING_ERROR = 322
"""TWS: "Error processing request" (the handler failed)."""
_ZONE = ZoneInfo("US/Eastern")


class Transport(Protocol):
    """What :class:`SendBuffer` needs of an asyncio transport."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


class SendBuffer:
    """Ordered, non-blocking output of one connection, coalesced per loop turn, optionally delayed.

    ``push`` never blocks and never writes synchronously: frames wait in a deque until the flush
    the loop runs next (``call_soon``) or, with ``delay_s`` set, until each frame is due. When the
    backlog (queued bytes + the transport's unsent bytes) exceeds ``limit_bytes``, ``on_overflow``
    is called with it (the session then drops the client) and further pushes are ignored.
    """

    def __init__(
        self,
        transport: Transport,
        loop: asyncio.AbstractEventLoop,
        limit_bytes: int,
        on_overflow: Callable[[int], None],
        delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.limit_bytes = limit_bytes
        self.on_overflow = on_overflow
        self.delay = delay
        self._frames: deque[tuple[float, bytes]] = deque()
        self._queued = 0
        self._handle: asyncio.Handle | None = None
        self._due = 0.0
        self.overflowed = False
        self.bytes_written = 0

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def backlog(self) -> int:
        return self._queued + self.transport.get_write_buffer_size()

    def push(self, frame: bytes) -> None:
        if self.overflowed or self.transport.is_closing():
            return
        delay = self.delay()
        due = self.loop.time() + delay if delay > 0 else 0.0
        self._frames.append((due, frame))
        self._queued += len(frame)
        if self.backlog() > self.limit_bytes:
            self._overflow()
            return
        self._schedule()

    def _schedule(self) -> None:
        if not self._frames:
            return
        due = self._frames[0][0]
        if self._handle is not None:
            if due >= self._due:
                return
            self._handle.cancel()
        self._due = due
        if due <= 0.0:
            self._handle = self.loop.call_soon(self.flush)
        else:
            self._handle = self.loop.call_at(due, self.flush)

    def flush(self, *, everything: bool = False) -> None:
        """Write the frames that are due (all of them with ``everything``)."""
        self._handle = None
        if self.overflowed or self.transport.is_closing():
            self._frames.clear()
            self._queued = 0
            return
        now = self.loop.time()
        chunks: list[bytes] = []
        while self._frames and (everything or self._frames[0][0] <= now):
            chunks.append(self._frames.popleft()[1])
        if chunks:
            data = b"".join(chunks)
            self._queued -= len(data)
            self.bytes_written += len(data)
            self.transport.write(data)
            if self.backlog() > self.limit_bytes:
                self._overflow()
                return
        self._schedule()

    def _overflow(self) -> None:
        self.overflowed = True
        backlog = self.backlog()
        self._frames.clear()
        self._queued = 0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.on_overflow(backlog)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._frames.clear()
        self._queued = 0


class ClientSession(asyncio.Protocol):
    """One API client connection (implements :class:`trader.exchange.session_api.Session`)."""

    def __init__(self, server: ExchangeServer, conn_id: int) -> None:
        self.server = server
        self.core: ExchangeCore = server.core
        self.conn_id = conn_id
        self.client_id = -1
        self.server_version = 0
        self.extensions: dict[str, Any] = {}
        self.peer = "?"
        self.started = False
        self.closed = False
        self.close_reason = ""
        self.requests = 0
        self._handshake: HandshakeParser | None = HandshakeParser()
        self._frames = FrameParser()
        self._transport: asyncio.Transport | None = None
        self._out: SendBuffer | None = None

    def __repr__(self) -> str:
        return f"<ClientSession conn={self.conn_id} client={self.client_id} peer={self.peer}>"

    @property
    def label(self) -> str:
        client = f"client {self.client_id}" if self.started else "not started"
        return f"connection {self.conn_id} ({client}, {self.peer})"

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._out = SendBuffer(
            transport,
            asyncio.get_running_loop(),
            self.server.send_limit_bytes,
            self._on_overflow,
            lambda: self.server.send_delay_s,
        )
        self.server.session_opened(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._receive(data)
        except ProtocolError as exc:
            log.warning("%s: %s; closing the connection", self.label, exc)
            self.close(f"protocol error: {exc}")

    def eof_received(self) -> bool | None:
        pending = self._frames.buffered
        if pending:
            log.warning("%s: closed by the client in the middle of a frame (%d bytes)", self.label, pending)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._out is not None:
            self._out.cancel()
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "closed by the client")
        self.closed = True
        self.close_reason = reason
        self.server.session_closed(self)

    # -- input --------------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._handshake is not None:
            hello = self._handshake.feed(data)
            if hello is None:
                return
            self.server_version = negotiate_version(hello)
            data = self._handshake.remainder
            self._handshake = None
            now = datetime.fromtimestamp(self.core.clock() // NS, tz=_ZONE)
            self.send(encode_server_hello(self.server_version, now))
            log.debug(
                "%s: handshake v%d..%d -> v%d",
                self.label,
                hello.min_version,
                hello.max_version,
                self.server_version,
            )
            if not data:
                return
        for fields in self._frames.feed(data):
            if self.closed:
                return
            self.handle_frame(fields)

    def handle_frame(self, fields: list[str]) -> None:
        """Decode one request and dispatch it; a decoding problem is answered with error 320."""
        self.requests += 1
        try:
            request = decode_request(fields, self.server_version)
        except RequestDecodeError as exc:
            log.warning("%s: undecodable request: %s", self.label, exc)
            self.send_error(_request_id_of_fields(fields), READ_ERROR, f"Error reading request. {exc}")
            return
        self.dispatch(request)

    def dispatch(self, request: Any) -> None:
        """Run the handler of ``request`` (startApi binds the client id first)."""
        if isinstance(request, StartApi):
            if self.started:
                log.warning("%s: startApi again (client id %d); ignored", self.label, request.clientId)
                return
            if not self.server.bind_client(self, request.clientId):
                log.warning("%s: client id %d is already in use; closing", self.label, request.clientId)
                self.send_error(-1, *CLIENT_ID_IN_USE)
                self.close(f"client id {request.clientId} in use")
                return
            self.client_id = request.clientId
            self.started = True
        elif not self.started:
            self.send_error(
                request_id(request),
                PROCESSING_ERROR,
                f"Error processing request. {request_name(request)} before startApi.",
            )
            return
        handler = None if isinstance(request, UnsupportedRequest) else self.server.handler_for(type(request))
        if handler is None:
            handler = self.server.fallback
        try:
            handler(self, request)
        except Exception as exc:
            log.exception("%s: handler of %s failed", self.label, request_name(request))
            self.send_error(
                request_id(request),
                PROCESSING_ERROR,
                f"Error processing request. {request_name(request)}: {type(exc).__name__}: {exc}",
            )

    # -- output -------------------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self._out is not None and not self.closed:
            self._out.push(frame)

    def send_error(self, req_id: int, code: int, text: str, advanced_order_reject_json: str = "") -> None:
        self.send(
            encode_error(req_id, code, text, advanced_order_reject_json, server_version=self.server_version)
        )

    def flush(self) -> None:
        """Write everything queued now (delayed frames too)."""
        if self._out is not None:
            self._out.flush(everything=True)

    @property
    def backlog(self) -> int:
        return self._out.backlog() if self._out is not None else 0

    def close(self, reason: str) -> None:
        """Flush what is queued, then close (the client sees an orderly end of stream)."""
        if self.closed:
            return
        self.close_reason = reason
        self.flush()
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, discarding unsent output (a reset, as when TWS dies)."""
        if self._transport is None:
            return
        self.close_reason = reason
        self.closed = True
        if self._out is not None:
            self._out.cancel()
        self._transport.abort()

    def _on_overflow(self, backlog: int) -> None:
        log.warning(
            "%s: the client stopped reading (%d bytes waiting, limit %d); disconnecting it",
            self.label,
            backlog,
            self.server.send_limit_bytes,
        )
        self.abort(f"slow reader: {backlog} bytes waiting")


def _request_id_of_fields(fields: list[str]) -> int:
    """Best effort: the order id of a placeOrder / cancelOrder frame, else -1."""
    try:
        msg_id = int(fields[0])
        if msg_id == IncomingMessageId.PLACE_ORDER:
            return int(fields[1])
        if msg_id == IncomingMessageId.CANCEL_ORDER:
            return int(fields[2])
    except (ValueError, IndexError):
        pass
    return -1
