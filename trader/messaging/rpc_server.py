"""The RPC server: one ROUTER socket on asyncio, every request run as its own task.

Accepts DEALER peers (``[identity, payload]``) and REQ peers (``[identity, b"", payload]``); the
reply goes back with the envelope it came with. See docs/wire.md ("RPC") and
:mod:`trader.messaging.rpc_protocol` for the pure part (parsing, params, dedup).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import zmq

from trader.messaging.codec import CodecError, Packer
from trader.messaging.curve import CurveKeys, configure_server
from trader.messaging.rpc_protocol import (
    BAD_PARAMS,
    BUILTIN_METHODS,
    DEADLINE_EXCEEDED,
    DUPLICATE_ID,
    INTERNAL,
    MALFORMED,
    OVERLOADED,
    UNKNOWN_METHOD,
    DedupCache,
    InFlight,
    MalformedRequest,
    Request,
    RpcError,
    SocketPump,
    describe_exception,
    encode_error,
    encode_ok,
    now_ms,
    open_socket,
    parse_request,
    split_envelope,
)

if TYPE_CHECKING:  # at run time the server needs no import of the registry module
    from trader.messaging.rpc import MethodRegistry, MethodSpec

log = logging.getLogger("trader.messaging.rpc.server")

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


_MAX_PING_IDS = 100_000


class RpcServer:
    """Serves the methods of ``registry`` on a ROUTER socket bound to ``endpoint``.

    ``await start()`` binds; ``await serve_forever()`` (or ``asyncio.create_task`` of it) serves
    until :meth:`close`. Built-in methods: ``ping`` (optionally ``ids=[...]``: which of those ids
    the server does not know) and ``methods``.

    Per request, in this order: a duplicate id gets the cached reply or joins the running request;
    a request arriving at/after its deadline is refused unrun; unknown methods and bad params are
    refused; then ``async def`` handlers run as their own task (cancelled at the deadline unless
    registered with ``shield=True``) and plain ``def`` handlers run inline.

    ``curve``: speak CurveZMQ only, to the clients whose public keys are in
    ``curve.authorized_dir`` (:mod:`trader.messaging.curve`); None (the default): plain TCP.
    """

    def __init__(
        self,
        endpoint: str,
        registry: MethodRegistry,
        *,
        context: zmq.Context[Any] | None = None,
        server_id: str | None = None,
        dedup_entries: int = 10_000,
        dedup_ttl: float = 120.0,
        max_in_flight: int = 10_000,
        max_message_bytes: int | None = 256 * 1024 * 1024,
        hwm: int = 10_000,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.registry = registry
        self.server_id = server_id or secrets.token_hex(8)
        self.max_in_flight = max_in_flight
        self._context = context
        self._max_message_bytes = max_message_bytes
        self._hwm = hwm
        self._dedup = DedupCache(dedup_entries, dedup_ttl)
        self._pack = Packer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raw: zmq.Socket[Any] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._pump: SocketPump | None = None
        self._stopped: asyncio.Future[None] | None = None
        # id -> (task, loop-time deadline, handler coroutine) of the async handlers running
        self._running: dict[str, tuple[asyncio.Task[None], float, Coroutine[Any, Any, Any]]] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap; one loop timer for the earliest (see _arm)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._compact_at = 1024
        self._stopping = False
        self._closing = False
        self._started_at = time.monotonic()
        self.bound_endpoint = endpoint
        # stats
        self._requests = 0
        self._replies = 0
        self._executed = 0
        self._duplicates = 0
        self._errors: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the ROUTER socket and bind it (idempotent)."""
        if self._sock is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._raw, sock = open_socket(self._context, zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # A client that reconnects with the same explicit identity takes over its old connection
        # instead of being refused while the old (half-dead) one lingers.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.SNDHWM, self._hwm)
        sock.setsockopt(zmq.RCVHWM, self._hwm)
        if self._max_message_bytes is not None:
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)
        try:
            if self.curve is not None:
                configure_server(self._raw, self.curve)
            sock.bind(self.endpoint)
        except (zmq.ZMQError, ValueError):
            self._raw.close(linger=0)
            raise
        self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._started_at = time.monotonic()
        log.info(
            "rpc server %s listening on %s (%d methods)",
            self.server_id,
            self.bound_endpoint,
            len(self.registry),
        )

    async def serve_forever(self) -> None:
        """Serve requests until :meth:`close` (binds first if :meth:`start` was not awaited)."""
        await self.start()
        assert self._sock is not None and self._loop is not None
        if self._pump is not None:
            raise RuntimeError("serve_forever is already running")
        if self._stopping:
            return
        self._stopped = self._loop.create_future()
        self._pump = pump = SocketPump(self._loop, self._sock, self._on_frames)
        try:
            await asyncio.shield(self._stopped)
        finally:
            pump.close()
            self._pump = None

    async def close(self, grace: float = 0.0) -> None:
        """Stop receiving, give running handlers ``grace`` seconds, cancel the rest, close (LINGER 0)."""
        if self._stopping:
            return
        self._stopping = True
        if self._pump is not None:
            self._pump.close()
        if grace > 0 and self._running:
            await asyncio.wait([t for t, _, _ in self._running.values()], timeout=grace)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        pending = [t for t, _, _ in self._running.values() if not t.done()]
        for task, _, coro in self._running.values():
            task.cancel()
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()  # its task never started: no "never awaited" warning
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        if self._raw is not None:
            self._raw.close(linger=0)
            log.info("rpc server %s on %s closed", self.server_id, self.bound_endpoint)

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Counters for observability: requests, replies, executed, duplicates, errors by code."""
        return {
            "requests": self._requests,
            "replies": self._replies,
            "executed": self._executed,
            "duplicates": self._duplicates,
            "in_flight": self._dedup.in_flight_count,
            "errors": dict(self._errors),
            "uptime_s": time.monotonic() - self._started_at,
        }

    # ------------------------------------------------------------------ dispatch

    def _send(self, envelope: list[bytes], reply: bytes) -> None:
        sock = self._sock
        if sock is None or self._closing:
            return
        # ROUTER never blocks: a reply to a vanished or saturated peer is dropped by libzmq.
        try:
            for frame in envelope:
                sock.send(frame, _SNDMORE_NOBLOCK)
            sock.send(reply, _NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("rpc reply dropped: %s", exc)
            return
        self._replies += 1
        if self._pump is not None:
            self._pump.poke()

    def _send_error(self, envelope: list[bytes], rid: str | None, code: str, message: str) -> None:
        self._errors[code] += 1
        self._send(envelope, encode_error(rid, code, message, self._pack))

    def _on_frames(self, frames: list[bytes]) -> None:
        self._requests += 1
        try:
            if len(frames) == 2 and frames[1]:  # the common case: a DEALER's [identity, payload]
                envelope, payload = frames[:1], frames[1]
            else:
                envelope, body = split_envelope(frames)
                if len(body) != 1:
                    self._send_error(
                        envelope,
                        None,
                        MALFORMED,
                        f"expected one payload frame after the envelope, got {len(body)}",
                    )
                    return
                payload = body[0]
            try:
                req = parse_request(payload)
            except MalformedRequest as exc:
                log.debug("malformed request: %s", exc.message)
                self._send_error(envelope, exc.request_id, MALFORMED, exc.message)
                return
            self._dispatch(envelope, payload, req)
        except Exception:  # the loop must survive anything a peer can send
            log.exception("rpc server failed on a frame; still serving")

    def _dispatch(self, envelope: list[bytes], payload: bytes, req: Request) -> None:
        rid, method = req.id, req.method
        spec = self.registry.get(method)
        if spec is None:
            if method in BUILTIN_METHODS:
                self._builtin(envelope, req)
            else:
                self._send_error(
                    envelope,
                    rid,
                    UNKNOWN_METHOD,
                    f"unknown method {method!r} (the method 'methods' lists them)",
                )
            return
        digest = hash(payload)
        dedup = self._dedup
        seen = dedup.lookup(rid, method, digest)
        if seen.state == "done":
            self._duplicates += 1
            self._send(envelope, seen.reply)
            return
        if seen.in_flight is not None:
            self._duplicates += 1
            dedup.attach(seen.in_flight, envelope)
            return
        if seen.state == "conflict":
            self._send_error(envelope, rid, DUPLICATE_ID, seen.message)
            return
        remaining_ms = req.deadline_ms - now_ms()
        if remaining_ms <= 0:
            self._send_error(
                envelope,
                rid,
                DEADLINE_EXCEEDED,
                f"{method}: arrived {-remaining_ms} ms after its deadline; not run",
            )
            return
        try:
            params = spec.bind(req.params)
        except RpcError as exc:
            self._send_error(envelope, rid, exc.code, exc.message)
            return
        if dedup.in_flight_count >= self.max_in_flight:
            self._send_error(
                envelope, rid, OVERLOADED, f"{method}: {self.max_in_flight} requests already running; not run"
            )
            return
        entry = dedup.begin(rid, method, digest, envelope)
        self._executed += 1
        try:
            result = spec.handler(**params)
        except Exception as exc:
            self._finish(entry, self._error_reply(spec, rid, exc))
            return
        if isinstance(result, Coroutine):
            self._start(spec, entry, result, req.deadline_ms)
        else:
            self._finish(entry, self._ok_reply(spec, rid, result))

    def _start(
        self, spec: MethodSpec, entry: InFlight, coro: Coroutine[Any, Any, Any], deadline_ms: int
    ) -> None:
        """Run an async handler as its own task, so a slow one never holds up the others.

        (Running it eagerly up to its first suspension would save a trip through the loop, but
        then ``asyncio.current_task()`` is None there and ``asyncio.timeout``/``TaskGroup`` at the
        top of a handler fail. Python 3.12's eager tasks do it right; this is 3.11.)
        """
        loop = self._loop
        assert loop is not None
        when = math.inf if spec.shield else loop.time() + (deadline_ms - now_ms()) / 1000
        task = loop.create_task(self._run(spec, entry, coro, when))
        self._running[entry.id] = (task, when, coro)
        if spec.shield:
            return
        heapq.heappush(self._deadlines, (when, entry.id))
        if when < self._timer_at or len(self._deadlines) > self._compact_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        """One loop timer for the earliest deadline of the running handlers (not one per request)."""
        assert self._loop is not None
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._cancel_due)
        if len(self._deadlines) > self._compact_at:  # finished requests leave their deadline behind
            self._deadlines = [(w, rid) for rid, (_, w, _) in self._running.items() if w != math.inf]
            heapq.heapify(self._deadlines)
            self._compact_at = max(1024, 4 * len(self._deadlines))

    def _cancel_due(self) -> None:
        """Cancel the handlers whose deadline has come (they reply ``deadline_exceeded``)."""
        assert self._loop is not None
        self._timer, self._timer_at = None, math.inf
        now, heap = self._loop.time(), self._deadlines
        while heap and heap[0][0] <= now:
            when, rid = heapq.heappop(heap)
            running = self._running.get(rid)
            if running is None or running[1] != when:
                continue  # finished, or the id was run again since
            task, _, coro = running
            if inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:  # not started: _run sees to it
                task.cancel()
        if heap:
            self._arm(heap[0][0])

    async def _run(
        self, spec: MethodSpec, entry: InFlight, coro: Coroutine[Any, Any, Any], when: float
    ) -> None:
        try:
            if self._loop is not None and self._loop.time() >= when:  # the loop was too busy to start it
                coro.close()
                raise asyncio.CancelledError
            result = await coro
        except asyncio.CancelledError:
            if self._closing:
                self._dedup.forget(entry.id)
                raise
            log.info("rpc %s %s cancelled at its deadline", spec.name, entry.id)
            self._errors[DEADLINE_EXCEEDED] += 1
            reply = encode_error(
                entry.id, DEADLINE_EXCEEDED, f"{spec.name}: cancelled at its deadline", self._pack
            )
        except Exception as exc:
            reply = self._error_reply(spec, entry.id, exc)
        else:
            reply = self._ok_reply(spec, entry.id, result)
        finally:
            self._running.pop(entry.id, None)
        self._finish(entry, reply)

    def _finish(self, entry: InFlight, reply: bytes) -> None:
        for envelope in self._dedup.finish(entry.id, reply):
            self._send(envelope, reply)

    def _ok_reply(self, spec: MethodSpec, rid: str, result: Any) -> bytes:
        try:
            return encode_ok(rid, result, self._pack)
        except CodecError as exc:
            log.error("rpc %s %s: result cannot be encoded: %s", spec.name, rid, exc)
            self._errors[INTERNAL] += 1
            return encode_error(rid, INTERNAL, f"{spec.name}: result cannot be encoded: {exc}", self._pack)

    def _error_reply(self, spec: MethodSpec, rid: str, exc: BaseException) -> bytes:
        if isinstance(exc, RpcError):
            code, message = exc.code, exc.message
            log.info("rpc %s %s -> %s: %s", spec.name, rid, code, message)
        else:
            code, message = INTERNAL, f"{spec.name} raised {describe_exception(exc)}"
            log.error("rpc %s %s raised", spec.name, rid, exc_info=exc)
        self._errors[code] += 1
        return encode_error(rid, code, message, self._pack)

    # ------------------------------------------------------------------ built-ins

    def _builtin(self, envelope: list[bytes], req: Request) -> None:
        late_ms = now_ms() - req.deadline_ms
        if late_ms >= 0:
            self._send_error(
                envelope,
                req.id,
                DEADLINE_EXCEEDED,
                f"{req.method}: arrived {late_ms} ms after its deadline; not run",
            )
            return
        if req.method == "ping":
            result: Any = {
                "pong": True,
                "time_ns": time.time_ns(),
                "server_id": self.server_id,
                "uptime_s": time.monotonic() - self._started_at,
                "in_flight": self._dedup.in_flight_count,
            }
            ids = req.params.get("ids")
            if ids is not None:
                if (
                    not isinstance(ids, list)
                    or len(ids) > _MAX_PING_IDS
                    or not all(isinstance(i, str) for i in ids)
                ):
                    self._send_error(
                        envelope,
                        req.id,
                        BAD_PARAMS,
                        f"ping: ids must be a list of at most {_MAX_PING_IDS} strings",
                    )
                    return
                result["missing"] = [i for i in ids if not self._dedup.knows(i)]
        else:
            builtins = [
                {"name": "methods", "params": [], "shield": False, "doc": "The methods this server serves."},
                {
                    "name": "ping",
                    "params": [{"name": "ids", "type": "list[str] | None", "required": False}],
                    "shield": False,
                    "doc": "Liveness; with ids, lists those the server neither runs nor remembers (missing).",
                },
            ]
            result = sorted([*builtins, *(s.describe() for s in self.registry)], key=lambda m: m["name"])
        self._send(envelope, encode_ok(req.id, result, self._pack))
