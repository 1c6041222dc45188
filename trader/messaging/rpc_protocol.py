"""The shared part of Bourse RPC: error codes, exceptions, frames, requests, replies, dedup cache.

All of it but :class:`SocketPump` (the small socket reader both ends share, at the end) is pure:
no socket, no event loop, unit-tested synchronously in tests/unit/test_rpc_protocol.py. The method
registry and param checking are in :mod:`trader.messaging.rpc`. The wire contract is in
docs/wire.md ("RPC").

Request (one msgpack map, one frame)::

    {"id": str, "method": str, "params": {name: value, ...}, "deadline_ms": int}

Reply::

    {"id": str, "ok": true, "result": any}
    {"id": str | nil, "ok": false, "error": {"code": str, "message": str}}
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, NoReturn, cast

import zmq

from trader.messaging.codec import CodecError, decode, encode

# --------------------------------------------------------------------------- error codes

MALFORMED: Final = "malformed"
"""Not a request: not msgpack, not a map, or a bad ``id``/``method``/``params``/``deadline_ms``."""
UNKNOWN_METHOD: Final = "unknown_method"
"""No method of that name is registered."""
BAD_PARAMS: Final = "bad_params"
"""A param is missing, unknown or of the wrong type; the message names it and what was expected."""
INTERNAL: Final = "internal"
"""The handler raised an unexpected exception (type and message in the error message)."""
DEADLINE_EXCEEDED: Final = "deadline_exceeded"
"""The request arrived at/after its deadline and was NOT run, or its handler was cancelled at the deadline."""
DUPLICATE_ID: Final = "duplicate_id"
"""The id was already used by a different request (different method or different bytes) recently."""
OVERLOADED: Final = "overloaded"
"""The server already runs its maximum number of requests; the request was NOT run."""

ERROR_CODES: Final = frozenset(
    {MALFORMED, UNKNOWN_METHOD, BAD_PARAMS, INTERNAL, DEADLINE_EXCEEDED, DUPLICATE_ID, OVERLOADED}
)
"""Codes the RPC layer itself produces; handlers may add domain codes (e.g. ``risk_refused``)."""

MAX_ID_LENGTH: Final = 256
MAX_METHOD_LENGTH: Final = 256
MAX_MESSAGE_LENGTH: Final = 4000
BUILTIN_METHODS: Final = frozenset({"ping", "methods"})


def now_ms() -> int:
    """Unix epoch milliseconds, the clock of ``deadline_ms``."""
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- exceptions


class RpcError(Exception):
    """Raised by a handler to return a domain error ``{"code": code, "message": message}`` as is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcClientError(Exception):
    """Base of every exception a client call raises."""


class RpcRemoteError(RpcClientError):
    """The server replied with an error envelope."""

    def __init__(self, code: str, message: str, *, method: str = "", endpoint: str = "") -> None:
        where = f" ({method} on {endpoint})" if method else ""
        super().__init__(f"{code}: {message}{where}")
        self.code = code
        self.message = message
        self.method = method
        self.endpoint = endpoint


class RpcTimeout(RpcClientError):
    """No reply before the call's timeout (its deadline)."""


class RpcDeadlineExceeded(RpcRemoteError, RpcTimeout):
    """The server reported ``deadline_exceeded``: both a remote error and a timeout."""


class RpcUnavailable(RpcClientError):
    """The server did not answer pings through ``max_retries`` reconnects, or the client is closed."""


class MalformedRequest(ValueError):
    """A frame that is not a valid request; ``request_id`` is its id when that could be read."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class MalformedReply(ValueError):
    """A reply frame the client cannot read."""


# --------------------------------------------------------------------------- frames


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split what a ROUTER received into (envelope, body).

    ``[identity, payload]`` (DEALER) -> ``([identity], [payload])``;
    ``[identity, ..., b"", payload]`` (REQ, or proxies) -> everything up to and including the first
    empty delimiter is the envelope. A valid body is exactly one frame.
    """
    for i in range(1, len(frames)):
        if not frames[i]:
            return frames[: i + 1], frames[i + 1 :]
    return frames[:1], frames[1:]


# --------------------------------------------------------------------------- requests


class Request(NamedTuple):
    id: str
    method: str
    params: dict[str, Any]
    deadline_ms: int


def _readable_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
        return value
    return None


def _clip(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break error reporting
        text = f"<{type(value).__name__}>"
    return _clip(text, limit)


def parse_request(payload: bytes) -> Request:
    """Decode and check one request frame; raises :class:`MalformedRequest` (never anything else)."""
    try:
        msg = decode(payload)
    except CodecError as exc:
        raise MalformedRequest(_clip(f"frame is not msgpack: {exc}")) from None
    if type(msg) is dict:  # fast path: a well-formed request
        rid, method = msg.get("id"), msg.get("method")
        params, deadline = msg.get("params"), msg.get("deadline_ms")
        if (
            type(rid) is str
            and type(method) is str
            and type(params) is dict
            and type(deadline) is int
            and 0 < len(rid) <= MAX_ID_LENGTH
            and 0 < len(method) <= MAX_METHOD_LENGTH
            and all(type(k) is str for k in params)
        ):
            return Request(rid, method, params, deadline)
    _explain_malformed(msg)


def _explain_malformed(msg: Any) -> NoReturn:
    """Raise the :class:`MalformedRequest` that says what is wrong with ``msg``."""
    if type(msg) is not dict:
        raise MalformedRequest(f"request must be a map, got {type(msg).__name__}")
    raw_id = msg.get("id")
    rid = _readable_id(raw_id)
    if rid is None:
        if isinstance(raw_id, str):
            raise MalformedRequest(f"id must be 1..{MAX_ID_LENGTH} characters, got {len(raw_id)}")
        raise MalformedRequest(f"id must be a string, got {type(raw_id).__name__}")
    method = msg.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_LENGTH:
        raise MalformedRequest(f"method must be a string of 1..{MAX_METHOD_LENGTH} characters", rid)
    params = msg.get("params")
    if type(params) is not dict:
        raise MalformedRequest(f"params must be a map, got {type(params).__name__}", rid)
    for key in params:
        if type(key) is not str:
            raise MalformedRequest(f"param names must be strings, got {short_repr(key)}", rid)
    deadline = msg.get("deadline_ms")
    raise MalformedRequest(f"deadline_ms must be an int (Unix epoch ms), got {type(deadline).__name__}", rid)


def encode_request(
    rid: str, method: str, params: Mapping[str, Any], deadline_ms: int, pack: Callable[[Any], bytes] = encode
) -> bytes:
    return pack({"id": rid, "method": method, "params": params, "deadline_ms": deadline_ms})


# --------------------------------------------------------------------------- replies


class Reply(NamedTuple):
    id: str | None
    ok: bool
    result: Any = None
    code: str = ""
    message: str = ""


def encode_ok(rid: str, result: Any, pack: Callable[[Any], bytes] = encode) -> bytes:
    """The success reply; raises :class:`CodecError` when ``result`` cannot go on the wire."""
    return pack({"id": rid, "ok": True, "result": result})


def encode_error(rid: str | None, code: str, message: str, pack: Callable[[Any], bytes] = encode) -> bytes:
    return pack({"id": rid, "ok": False, "error": {"code": code, "message": _clip(message)}})


def describe_exception(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}")


def parse_reply(payload: bytes) -> Reply:
    """Decode one reply frame; raises :class:`MalformedReply`."""
    try:
        msg = decode(payload)
    except CodecError as exc:
        raise MalformedReply(f"reply is not msgpack: {exc}") from None
    return reply_from_message(msg)


def reply_from_message(msg: Any) -> Reply:
    """Check a decoded reply; raises :class:`MalformedReply`."""
    if type(msg) is not dict:
        raise MalformedReply(f"reply must be a map, got {type(msg).__name__}")
    rid = msg.get("id")
    if rid is not None and not isinstance(rid, str):
        raise MalformedReply(f"reply id must be a string or nil, got {type(rid).__name__}")
    ok = msg.get("ok")
    if ok is True:
        return Reply(rid, True, msg.get("result"))
    if ok is not False:
        raise MalformedReply(f"reply ok must be a bool, got {type(ok).__name__}")
    error = msg.get("error")
    if type(error) is not dict or not isinstance(error.get("code"), str):
        raise MalformedReply("error reply needs an error map with a string code")
    message = error.get("message")
    return Reply(rid, False, None, error["code"], message if isinstance(message, str) else str(message))


# --------------------------------------------------------------------------- dedup cache


@dataclass(slots=True)
class InFlight:
    """A request being run; every envelope that asked for it gets the reply."""

    id: str
    method: str
    digest: int
    envelopes: list[list[bytes]]


class Lookup(NamedTuple):
    state: Literal["new", "in_flight", "done", "conflict"]
    in_flight: InFlight | None = None
    reply: bytes = b""
    message: str = ""


_NEW: Final = Lookup("new")


class DedupCache:
    """Recent request ids -> reply, so a resent request (same id, same bytes) is never run twice.

    In-flight entries live until :meth:`finish`; finished ones are kept ``ttl`` seconds, at most
    ``max_entries`` of them (oldest evicted first). ``clock`` is injected for tests.
    """

    def __init__(
        self, max_entries: int = 10_000, ttl: float = 120.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be >= 1 and ttl > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._in_flight: dict[str, InFlight] = {}
        # id -> (method, digest, reply, expires); insertion order is expiry order (constant ttl)
        self._done: OrderedDict[str, tuple[str, int, bytes, float]] = OrderedDict()
        self._purge_at = math.inf

    def lookup(self, rid: str, method: str, digest: int) -> Lookup:
        entry = self._in_flight.get(rid)
        if entry is not None:
            if entry.method != method or entry.digest != digest:
                return Lookup("conflict", message=self._conflict(rid, entry.method))
            return Lookup("in_flight", entry)
        done = self._done.get(rid)
        if done is None:
            return _NEW
        if done[3] <= self._clock():
            del self._done[rid]
            return _NEW
        if done[0] != method or done[1] != digest:
            return Lookup("conflict", message=self._conflict(rid, done[0]))
        return Lookup("done", reply=done[2])

    def _conflict(self, rid: str, method: str) -> str:
        return (
            f"id {short_repr(rid)} was already used by a different {method!r} request; ids must be unique "
            f"for {self.ttl:g}s and a resend must be byte-identical"
        )

    def begin(self, rid: str, method: str, digest: int, envelope: list[bytes]) -> InFlight:
        entry = InFlight(rid, method, digest, [envelope])
        self._in_flight[rid] = entry
        return entry

    @staticmethod
    def attach(entry: InFlight, envelope: list[bytes]) -> bool:
        """Add ``envelope`` to the askers of ``entry``; False when it is already one of them."""
        if envelope in entry.envelopes:
            return False
        entry.envelopes.append(envelope)
        return True

    def finish(self, rid: str, reply: bytes) -> list[list[bytes]]:
        """Record the reply of a finished request; returns the envelopes to send it to."""
        entry = self._in_flight.pop(rid, None)
        if entry is None:
            return []
        now = self._clock()
        done = self._done
        expires = now + self.ttl
        done[rid] = (entry.method, entry.digest, reply, expires)
        if self._purge_at == math.inf:
            self._purge_at = expires
        if len(done) > self.max_entries or now >= self._purge_at:
            self._purge(now)
        return entry.envelopes

    def _purge(self, now: float) -> None:
        done = self._done
        while done:
            oldest = next(iter(done.values()))
            if len(done) <= self.max_entries and oldest[3] > now:
                self._purge_at = oldest[3]
                return
            done.popitem(last=False)
        self._purge_at = math.inf

    def forget(self, rid: str) -> list[list[bytes]]:
        """Drop an in-flight request without a reply (server shutting down)."""
        entry = self._in_flight.pop(rid, None)
        return entry.envelopes if entry else []

    def in_flight_ids(self) -> Iterable[str]:
        return self._in_flight.keys()

    def knows(self, rid: str) -> bool:
        """Whether ``rid`` is in flight or has an unexpired reply (used by ``ping`` with ``ids``)."""
        if rid in self._in_flight:
            return True
        done = self._done.get(rid)
        return done is not None and done[3] > self._clock()

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    def __len__(self) -> int:
        return len(self._in_flight) + len(self._done)


# --------------------------------------------------------------------------- socket pump

_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_NOBLOCK: Final = int(zmq.NOBLOCK)
_pump_log = logging.getLogger("trader.messaging.rpc")


class SocketPump:
    """Reads a (synchronous) zmq socket from an asyncio loop through ``loop.add_reader`` on its FD.

    Why not ``zmq.asyncio``'s awaitable ``recv``: it costs a Future, a task wake-up and a dozen
    enum operations per message, which tripled the round trip in bench/messaging_rpc.py. The zmq
    FD is edge-triggered: it only signals a change, and any operation on the socket may consume
    that signal, so every read drains until ``EVENTS`` has no ``POLLIN`` and every send made
    outside a read re-checks ``EVENTS`` (:meth:`poke`). ``on_frames`` must not raise.
    """

    __slots__ = ("_busy", "_closed", "_events", "_fd", "_scheduled", "batch", "loop", "on_frames", "sock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket[bytes],
        on_frames: Callable[[list[bytes]], None],
        *,
        batch: int = 256,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_frames = on_frames
        self.batch = batch
        self._events: Callable[[int], int] = cast(Callable[[int], int], sock.get)  # int for EVENTS
        self._fd = cast(int, sock.getsockopt(zmq.FD))
        self._closed = False
        self._busy = False
        self._scheduled = True
        loop.add_reader(self._fd, self._readable)
        loop.call_soon(self._readable)  # the edge may have fired before we watched the FD

    def _readable(self) -> None:
        self._scheduled = False
        sock, on_frames, events = self.sock, self.on_frames, self._events
        self._busy = True
        try:
            for _ in range(self.batch):
                if self._closed or not events(_EVENTS) & _POLLIN:
                    return
                try:
                    frames = sock.recv_multipart(_NOBLOCK)
                except zmq.Again:
                    return
                try:
                    on_frames(frames)
                except Exception:
                    _pump_log.exception("rpc frame handler failed")
        finally:
            self._busy = False
        self._schedule()  # more queued: go on next loop iteration so other tasks run too

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._readable)

    def poke(self) -> None:
        """Re-check readiness after touching the socket outside :meth:`_readable`."""
        if not self._busy and not self._scheduled and not self._closed and self._events(_EVENTS) & _POLLIN:
            self._scheduled = True
            self.loop.call_soon(self._readable)

    def send(self, frames: list[bytes]) -> bool:
        """Send without blocking; False when the socket's queue is full (``zmq.Again``)."""
        try:
            self.sock.send_multipart(frames, _NOBLOCK)
        except zmq.Again:
            return False
        self.poke()
        return True

    def close(self) -> None:
        """Stop watching the FD (call before closing the socket)."""
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self._fd)


def open_socket(context: zmq.Context[Any] | None, kind: int) -> tuple[zmq.Socket[Any], zmq.Socket[bytes]]:
    """(socket to close, synchronous socket to use) of type ``kind``.

    ``context`` may be a plain or a ``zmq.asyncio`` context (default: the process-wide instance);
    with the latter the synchronous twin is a shadow of the same libzmq socket.
    """
    ctx = context if context is not None else zmq.Context.instance()
    raw = ctx.socket(kind)
    if type(raw) is zmq.Socket:
        return raw, raw
    return raw, zmq.Socket.shadow(raw.underlying)
