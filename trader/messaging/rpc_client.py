"""RPC clients: :class:`AsyncRpcClient` (one DEALER, many concurrent calls) and blocking :class:`RpcClient`.

Liveness ("Lazy Pirate" with a delivery check): while calls are pending and nothing has been
received for ``heartbeat_interval``, the client sends ``ping`` with the ids of its pending calls.

* The reply proves the server alive and lists the ids it does not know (lost on the way, e.g.
  sent to a server that was then killed and restarted); those are resent with their original id
  and bytes, so the server's dedup cache guarantees they run at most once per server process.
* No reply within another interval: the socket is closed (LINGER 0), a new DEALER connects and
  every pending request is resent. After ``max_retries`` such reconnects with nothing received,
  every pending call fails with :class:`RpcUnavailable`; the next call starts afresh.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import math
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq

from trader.messaging.codec import CodecError, Packer, decode
from trader.messaging.curve import CurveKeys, configure_client
from trader.messaging.rpc_protocol import (
    DEADLINE_EXCEEDED,
    MalformedReply,
    RpcDeadlineExceeded,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    SocketPump,
    now_ms,
    open_socket,
    reply_from_message,
)

log = logging.getLogger("trader.messaging.rpc.client")

_NOBLOCK = int(zmq.NOBLOCK)


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    payload: bytes
    method: str
    timeout: float
    expires: float


class AsyncRpcClient:
    """Calls methods of an :class:`~trader.messaging.rpc_server.RpcServer` at ``endpoint``.

    Use from one event loop (the one of the first call)::

        async with AsyncRpcClient("tcp://127.0.0.1:5555") as rpc:
            total = await rpc.call("add", a=1, b=2)
            frame = await rpc.call("bars", {"symbol": "AAPL"}, timeout=10.0)

    ``curve``: connect with CurveZMQ, as ``curve.public`` to the server ``curve.server_public``
    (:mod:`trader.messaging.curve`). A server that refuses the key never answers: calls end in
    :class:`RpcTimeout` / :class:`RpcUnavailable`, as with a server that is down.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context[Any] | None = None,
        timeout: float = 5.0,
        heartbeat_interval: float = 0.5,
        max_retries: int = 3,
        hwm: int = 10_000,
        curve: CurveKeys | None = None,
    ) -> None:
        if timeout <= 0 or heartbeat_interval <= 0 or max_retries < 0:
            raise ValueError("timeout and heartbeat_interval must be > 0, max_retries >= 0")
        self.endpoint = endpoint
        self.timeout = timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_retries = max_retries
        if curve is not None and curve.server_public is None:
            raise ValueError("curve keys of an RPC client need server_public (the server's public key)")
        self.curve = curve
        self._context = context
        self._hwm = hwm
        self._prefix = secrets.token_hex(6) + ":"
        self._counter = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap of (loop time, id); see _arm
        self._compact_at = 1024
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pack = Packer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._raw: zmq.Socket[Any] | None = None
        self._pump: SocketPump | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._parked = False
        self._closed = False
        # liveness
        self._last_rx = 0.0
        self._busy_since = 0.0
        self._ping_id: str | None = None
        self._ping_sent_at: float | None = None
        self._retries = 0
        self._server_id: str | None = None
        # stats
        self._calls = self._replies = self._timeouts = self._pings = 0
        self._reconnects = self._resends = self._unavailable = 0

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("AsyncRpcClient is bound to the event loop of its first call")
        if self._pump is None:
            self._open_socket()
        if self._monitor_task is None:
            self._monitor_task = loop.create_task(self._monitor(), name=f"rpc-monitor {self.endpoint}")

    def _open_socket(self) -> None:
        assert self._loop is not None
        raw, sock = open_socket(self._context, zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self._hwm)
        sock.setsockopt(zmq.RCVHWM, self._hwm)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        if self.curve is not None:
            configure_client(sock, self.curve)
        sock.connect(self.endpoint)
        self._raw = raw
        self._pump = SocketPump(self._loop, sock, self._on_frames)

    def _close_socket(self) -> None:
        if self._pump is not None:
            self._pump.close()
            self._pump = None
        if self._raw is not None:
            self._raw.close(linger=0)
            self._raw = None

    async def close(self) -> None:
        """Fail pending calls with :class:`RpcUnavailable`, stop the tasks, close the socket (LINGER 0)."""
        if self._closed:
            return
        self._closed = True
        self._fail_all(f"client for {self.endpoint} closed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at, self._deadlines = None, math.inf, []
        self._close_socket()
        task, self._monitor_task = self._monitor_task, None
        if task is not None:
            task.cancel()
            if self._loop is asyncio.get_running_loop():
                await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> AsyncRpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (it is the request's deadline, sent to the server)
        **kwparams: Any,
    ) -> Any:
        """Call ``method`` with ``params`` and/or keyword params; returns its result.

        Raises :class:`RpcRemoteError` (``.code``, ``.message``) for an error reply,
        :class:`RpcTimeout` when no reply comes within ``timeout`` seconds (the request's deadline;
        :class:`RpcDeadlineExceeded` when the server says so), :class:`RpcUnavailable` when the server
        does not answer pings through ``max_retries`` reconnects.
        """
        if kwparams:
            body: Mapping[str, Any] = {**params, **kwparams} if params else kwparams
        else:
            body = params if params is not None else {}
        rid, entry = self._submit(method, body, timeout)
        try:
            return await entry.future
        finally:
            if self._pending.get(rid) is entry:  # the caller was cancelled
                del self._pending[rid]

    def _submit(self, method: str, body: Mapping[str, Any], timeout: float | None) -> tuple[str, _Pending]:
        """Send a request; its reply (or failure) resolves the returned entry's future."""
        if self._closed:
            raise RpcUnavailable(f"client for {self.endpoint} is closed")
        if self._monitor_task is None or self._loop is not asyncio.get_running_loop():
            self._start()
        loop = self._loop
        assert loop is not None
        seconds = self.timeout if timeout is None else timeout
        if not seconds > 0:
            raise ValueError(f"timeout must be > 0, got {seconds!r}")
        rid = self._prefix + str(next(self._counter))
        try:
            payload = self._pack(
                {"id": rid, "method": method, "params": body, "deadline_ms": now_ms() + int(seconds * 1000)}
            )
        except CodecError as exc:
            raise ValueError(f"params of {method} cannot be encoded: {exc}") from exc
        pending = self._pending
        now = loop.time()
        if not pending:
            self._busy_since = now
            if self._parked:
                self._parked = False
                self._wake.set()
        expires = now + seconds
        entry = _Pending(loop.create_future(), payload, method, seconds, expires)
        pending[rid] = entry
        heapq.heappush(self._deadlines, (expires, rid))
        if expires < self._timer_at or len(self._deadlines) > self._compact_at:
            self._arm(expires)
        self._calls += 1
        if not self._send(payload):
            del pending[rid]
            raise RpcUnavailable(f"{method}: send queue to {self.endpoint} is full ({self._hwm} messages)")
        return rid, entry

    def _discard(self, rid: str) -> None:
        self._pending.pop(rid, None)

    def stats(self) -> dict[str, int]:
        """Counters: calls, replies, timeouts, pings, reconnects, resends, unavailable, pending."""
        return {
            "calls": self._calls,
            "replies": self._replies,
            "timeouts": self._timeouts,
            "pings": self._pings,
            "reconnects": self._reconnects,
            "resends": self._resends,
            "unavailable": self._unavailable,
            "pending": len(self._pending),
        }

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109
        """The built-in ``ping``: ``{"pong": True, "time_ns", "server_id", "uptime_s", ...}``."""
        result: dict[str, Any] = await self.call("ping", timeout=timeout)
        return result

    # ------------------------------------------------------------------ socket I/O

    def _send(self, payload: bytes) -> bool:
        pump = self._pump
        if pump is None:
            return False
        try:
            pump.sock.send(payload, _NOBLOCK)
        except zmq.Again:
            return False
        pump.poke()
        return True

    def _on_frames(self, frames: list[bytes]) -> None:
        payload = frames[-1]
        self._replies += 1  # the monitor sees this change: the server is alive
        try:
            msg = decode(payload)
        except CodecError as exc:
            log.warning("rpc reply from %s ignored: %s", self.endpoint, exc)
            return
        if type(msg) is dict and msg.get("ok") is True:  # fast path: a result
            rid = msg.get("id")
            entry = self._pending.pop(rid, None) if type(rid) is str else None
            if entry is not None:
                if not entry.future.done():
                    entry.future.set_result(msg.get("result"))
                return
        self._on_reply(msg)

    def _on_reply(self, msg: Any) -> None:
        try:
            reply = reply_from_message(msg)
        except MalformedReply as exc:
            log.warning("rpc reply from %s ignored: %s", self.endpoint, exc)
            return
        rid = reply.id
        entry = self._pending.pop(rid, None) if rid is not None else None
        if entry is None:
            if rid is not None and rid == self._ping_id:
                self._on_ping_reply(reply.ok, reply.result)
            elif not reply.ok:
                log.debug("rpc error reply for no pending call: %s %s", reply.code, reply.message)
            return
        fut = entry.future
        if fut.done():
            return
        if reply.ok:
            fut.set_result(reply.result)
        elif reply.code == DEADLINE_EXCEEDED:
            fut.set_exception(
                RpcDeadlineExceeded(reply.code, reply.message, method=entry.method, endpoint=self.endpoint)
            )
        else:
            fut.set_exception(
                RpcRemoteError(reply.code, reply.message, method=entry.method, endpoint=self.endpoint)
            )

    # ------------------------------------------------------------------ timeouts

    def _arm(self, expires: float) -> None:
        """One loop timer for the earliest deadline (a timer per call costs ~2.5 µs); ids wait in a heap."""
        if expires < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            assert self._loop is not None
            self._timer_at = expires
            self._timer = self._loop.call_at(expires, self._expire_due)
        if len(self._deadlines) > self._compact_at:
            # Finished calls leave their deadline behind until it passes; compact now and then.
            self._deadlines = [(e.expires, r) for r, e in self._pending.items()]
            heapq.heapify(self._deadlines)
            self._compact_at = max(1024, 4 * len(self._deadlines))

    def _expire_due(self) -> None:
        assert self._loop is not None
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        heap, pending = self._deadlines, self._pending
        while heap and heap[0][0] <= now:
            _, rid = heapq.heappop(heap)
            entry = pending.get(rid)
            if entry is not None and entry.expires <= now:
                del pending[rid]
                if not entry.future.done():
                    self._timeouts += 1
                    entry.future.set_exception(
                        RpcTimeout(f"{entry.method} on {self.endpoint}: no reply within {entry.timeout:g}s")
                    )
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._expire_due)

    def _fail_all(self, message: str) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(RpcUnavailable(f"{entry.method}: {message}"))

    # ------------------------------------------------------------------ liveness

    async def _monitor(self) -> None:
        loop = self._loop
        assert loop is not None
        hb = self.heartbeat_interval
        seen = self._replies
        while not self._closed:
            if not self._pending:
                self._wake.clear()
                self._parked = True
                await self._wake.wait()
                continue
            now = loop.time()
            if self._replies != seen:  # something came in since the last look: the server is alive
                seen = self._replies
                self._last_rx, self._ping_sent_at, self._retries = now, None, 0
            if self._ping_sent_at is None:
                due = max(self._last_rx, self._busy_since) + hb
                if now >= due:
                    self._send_ping(now)
                    continue
            else:
                due = self._ping_sent_at + hb
                if now >= due:
                    self._reconnect_or_give_up(now)
                    continue
            await asyncio.sleep(due - now)

    def _send_ping(self, now: float) -> None:
        self._ping_id = f"{self._prefix}p{next(self._counter)}"
        self._ping_sent_at = now
        self._pings += 1
        payload = self._pack(
            {
                "id": self._ping_id,
                "method": "ping",
                "params": {"ids": list(self._pending)},
                "deadline_ms": now_ms() + int(2000 * self.heartbeat_interval),
            }
        )
        self._send(payload)

    def _on_ping_reply(self, ok: bool, result: Any) -> None:
        if not ok or not isinstance(result, dict):
            return
        server_id = result.get("server_id")
        if self._server_id is not None and server_id != self._server_id:
            log.warning(
                "rpc server at %s changed (%s -> %s): restarted", self.endpoint, self._server_id, server_id
            )
        self._server_id = server_id if isinstance(server_id, str) else None
        missing = result.get("missing")
        if not isinstance(missing, list):
            return
        for rid in missing:
            entry = self._pending.get(rid) if isinstance(rid, str) else None
            if entry is not None:
                log.info("rpc %s %s unknown to %s; resending", entry.method, rid, self.endpoint)
                self._resends += 1
                self._send(entry.payload)

    def _reconnect_or_give_up(self, now: float) -> None:
        self._ping_sent_at = None
        self._busy_since = now
        self._close_socket()
        if self._retries >= self.max_retries:
            self._unavailable += len(self._pending)
            log.warning("rpc server at %s unavailable: %d calls failed", self.endpoint, len(self._pending))
            self._retries = 0
            self._fail_all(
                f"no reply from {self.endpoint} to pings through {self.max_retries} reconnects "
                f"({(self.max_retries + 1) * 2 * self.heartbeat_interval:g}s); is the server running?"
            )
            self._open_socket()
            return
        self._retries += 1
        self._reconnects += 1
        log.info(
            "rpc server at %s silent; reconnect %d/%d, resending %d calls",
            self.endpoint,
            self._retries,
            self.max_retries,
            len(self._pending),
        )
        self._open_socket()
        for entry in self._pending.values():
            self._resends += 1
            self._send(entry.payload)


class RpcClient:
    """Blocking client: an :class:`AsyncRpcClient` on its own event loop in a daemon thread.

    Thread-safe: many threads may call at once.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context[Any] | None = None,
        timeout: float = 5.0,
        heartbeat_interval: float = 0.5,
        max_retries: int = 3,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"rpc-client {endpoint}", daemon=True
        )
        self._thread.start()
        self._client = AsyncRpcClient(
            endpoint,
            context=context,
            timeout=timeout,
            heartbeat_interval=heartbeat_interval,
            max_retries=max_retries,
            curve=curve,
        )
        self._closed = False

    @property
    def client(self) -> AsyncRpcClient:
        return self._client

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,
        **kwparams: Any,
    ) -> Any:
        """Same as :meth:`AsyncRpcClient.call`, blocking the calling thread."""
        if self._closed:
            raise RpcUnavailable(f"client for {self.endpoint} is closed")
        if kwparams:
            body: Mapping[str, Any] = {**params, **kwparams} if params else kwparams
        else:
            body = params if params is not None else {}
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        rids: list[str] = []
        client = self._client

        def relay(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                result.cancel()
            elif (exc := fut.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(fut.result())

        def submit() -> None:  # in the loop thread
            try:
                rid, entry = client._submit(method, body, timeout)
            except BaseException as exc:
                result.set_exception(exc)
                return
            rids.append(rid)
            entry.future.add_done_callback(relay)

        # Like run_coroutine_threadsafe(client.call(...)), minus a task per call.
        self._loop.call_soon_threadsafe(submit)
        seconds = client.timeout if timeout is None else timeout
        # The call always ends by its own deadline; this guard only covers a wedged loop thread.
        try:
            return result.result(seconds + 5.0)
        except concurrent.futures.TimeoutError:
            for rid in rids:
                self._loop.call_soon_threadsafe(client._discard, rid)
            raise RpcTimeout(
                f"{method} on {self.endpoint}: no reply within {seconds:g}s (loop stalled)"
            ) from None

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.call("ping", timeout=timeout)
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
