"""RPC round-trip latency: Bourse RPC vs raw pyzmq REQ/REP with msgpack dicts, servers in other processes.

    python bench/messaging_rpc.py [--calls 5000] [--warmup 500] [--rounds 20]

Every client makes sequential calls of ``echo(value=i)`` (an ``async def`` handler, run as its own
task; "sync hdl" calls a plain ``def`` twin, run inline); the rounds interleave the clients so
that machine noise hits them alike. Goal: our async p50 within 1.5x of raw REQ/REP. The "bare
asyncio" row is the floor of any asyncio design: a DEALER read through ``loop.add_reader`` and a
future per call, against a ROUTER echo server on the same kind of loop, with no framework at all.
The "CurveZMQ" row is AsyncRpcClient against the same server with CurveZMQ on (encryption and a
ZAP check of the client's key at connect time), to price what a remote shard pays per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import msgpack
import zmq

POLLIN = int(zmq.POLLIN)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trader.messaging.curve import CurveKeys, generate_keypair, load_keys  # noqa: E402
from trader.messaging.rpc import AsyncRpcClient, MethodRegistry, RpcClient, RpcServer  # noqa: E402


def _free_endpoint() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


# --------------------------------------------------------------------------- servers (child processes)


def serve_raw(endpoint: str) -> None:
    """The baseline: a REP socket answering msgpack dicts, no framework."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REP)
    sock.bind(endpoint)
    print("READY", flush=True)
    while True:
        req = msgpack.unpackb(sock.recv())
        sock.send(msgpack.packb({"id": req["id"], "ok": True, "result": req["params"]["value"]}))


def serve_floor(endpoint: str) -> None:
    """The asyncio floor: a ROUTER read through ``loop.add_reader``, echoing msgpack dicts, nothing else."""

    async def main() -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        sock.bind(endpoint)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            while cast(int, sock.get(zmq.EVENTS)) & POLLIN:
                identity, payload = sock.recv_multipart(zmq.NOBLOCK)
                req = msgpack.unpackb(payload)
                reply = msgpack.packb({"id": req["id"], "ok": True, "result": req["params"]["value"]})
                sock.send_multipart([identity, reply])

        loop.add_reader(cast(int, sock.get(zmq.FD)), readable)
        print("READY", flush=True)
        await asyncio.Future()

    asyncio.run(main())


def serve_rpc(endpoint: str, keys_dir: str | None = None) -> None:
    registry = MethodRegistry()

    @registry.method("echo")
    async def echo(value: Any) -> Any:
        return value

    @registry.method("echo_sync")
    def echo_sync(value: Any) -> Any:
        return value

    async def main() -> None:
        curve = load_keys(keys_dir, "server", authorized_dir=Path(keys_dir) / "clients") if keys_dir else None
        server = RpcServer(endpoint, registry, curve=curve)
        await server.start()
        print("READY", flush=True)
        await server.serve_forever()

    asyncio.run(main())


class _Server:
    def __init__(self, mode: str, *extra: str) -> None:
        self.endpoint = _free_endpoint()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, mode, self.endpoint, *extra],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "READY" not in line:
            self.stop()
            raise RuntimeError(f"{mode} server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- clients


def _request(i: int) -> dict[str, Any]:
    return {"id": str(i), "method": "echo", "params": {"value": i}, "deadline_ms": 0}


def _time_raw(sock: zmq.Socket[bytes], n: int, start: int) -> list[int]:
    out = []
    clock, pack, unpack = time.perf_counter_ns, msgpack.packb, msgpack.unpackb
    for i in range(start, start + n):
        t = clock()
        sock.send(pack(_request(i)))
        reply = unpack(sock.recv())
        out.append(clock() - t)
        assert reply["result"] == i
    return out


async def _time_async(client: AsyncRpcClient, n: int, start: int, method: str = "echo") -> list[int]:
    out = []
    clock, call = time.perf_counter_ns, client.call
    for i in range(start, start + n):
        t = clock()
        result = await call(method, value=i)
        out.append(clock() - t)
        assert result == i
    return out


def _time_blocking(client: RpcClient, n: int, start: int) -> list[int]:
    out = []
    clock, call = time.perf_counter_ns, client.call
    for i in range(start, start + n):
        t = clock()
        result = call("echo", value=i)
        out.append(clock() - t)
        assert result == i
    return out


class _FloorClient:
    """The asyncio floor of a client: one DEALER, one future per call, no framework."""

    def __init__(self, endpoint: str) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.future: asyncio.Future[Any] | None = None
        self.fd = cast(int, self.sock.get(zmq.FD))

    def _readable(self) -> None:
        while cast(int, self.sock.get(zmq.EVENTS)) & POLLIN:
            reply = msgpack.unpackb(self.sock.recv(zmq.NOBLOCK))
            if self.future is not None and not self.future.done():
                self.future.set_result(reply["result"])

    async def time(self, n: int, start: int) -> list[int]:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.fd, self._readable)
        out = []
        clock, pack, sock = time.perf_counter_ns, msgpack.packb, self.sock
        try:
            for i in range(start, start + n):
                t = clock()
                self.future = fut = loop.create_future()
                sock.send(pack(_request(i)))
                if cast(int, sock.get(zmq.EVENTS)) & POLLIN:
                    loop.call_soon(self._readable)
                result = await fut
                out.append(clock() - t)
                assert result == i
        finally:
            loop.remove_reader(self.fd)
        return out


def _curve_keys(folder: Path) -> CurveKeys:
    """A server keypair, an authorized client keypair; the client's keys."""
    generate_keypair(folder, "server")
    public, _ = generate_keypair(folder, "client")
    (folder / "clients").mkdir()
    (folder / "clients" / public.name).write_bytes(public.read_bytes())
    return load_keys(folder, "client", server_key=folder / "server.key")


def _pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def run(
    report: Callable[[str], None] | None = None, *, calls: int = 5000, warmup: int = 500, rounds: int = 20
) -> dict[str, float]:
    """Measure p50/p99 round trips in microseconds; returns them (and the p50 ratio to raw)."""
    say = report or print
    names = {
        "raw": "raw REQ/REP",
        "floor": "bare asyncio (floor)",
        "async": "AsyncRpcClient",
        "async_sync_handler": "AsyncRpcClient, sync hdl",
        "blocking": "RpcClient (blocking)",
        "curve": "AsyncRpcClient, CurveZMQ",
    }
    samples: dict[str, list[int]] = {key: [] for key in names}
    per_round = max(1, calls // rounds)
    with contextlib.ExitStack() as stack:  # everything started is stopped, whatever fails
        servers = []
        keys_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-keys-"))
        client_keys = _curve_keys(Path(keys_dir))
        for mode, extra in (
            ("--serve-raw", ()),
            ("--serve-floor", ()),
            ("--serve-rpc", ()),
            ("--serve-rpc", (keys_dir,)),
        ):
            servers.append(_Server(mode, *extra))
            stack.callback(servers[-1].stop)
        raw_server, floor_server, rpc_server, curve_server = servers
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
        stack.callback(raw.close, 0)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(raw_server.endpoint)
        floor = _FloorClient(floor_server.endpoint)
        stack.callback(floor.sock.close, 0)
        bclient = RpcClient(rpc_server.endpoint)
        stack.callback(bclient.close)
        aclient = AsyncRpcClient(rpc_server.endpoint)
        stack.callback(lambda: loop.run_until_complete(aclient.close()))
        cclient = AsyncRpcClient(curve_server.endpoint, curve=client_keys)
        stack.callback(lambda: loop.run_until_complete(cclient.close()))
        for r in range(rounds + 1):  # round 0 is the warm-up
            n, start = (warmup, 0) if r == 0 else (per_round, warmup + (r - 1) * per_round)
            got = {
                "raw": _time_raw(raw, n, start),
                "floor": loop.run_until_complete(floor.time(n, start)),
                "async": loop.run_until_complete(_time_async(aclient, n, start)),
                "async_sync_handler": loop.run_until_complete(_time_async(aclient, n, start, "echo_sync")),
                "blocking": _time_blocking(bclient, n, start),
                "curve": loop.run_until_complete(_time_async(cclient, n, start)),
            }
            if r:
                for key, values in got.items():
                    samples[key] += values

    base = _pct(samples["raw"], 0.5)
    say(
        f"RPC round trip, {per_round * rounds} sequential calls each after {warmup} warm-up, "
        f"servers in other processes (µs)"
    )
    say(f"{'client -> server':<26}{'p50':>9}{'p99':>9}{'p50 vs raw':>12}")
    results: dict[str, float] = {"n": float(per_round * rounds)}
    for key, values in samples.items():
        p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
        say(f"{names[key]:<26}{p50:>9.1f}{p99:>9.1f}{p50 / base:>11.2f}x")
        results[f"{key}_p50_us"] = p50
        results[f"{key}_p99_us"] = p99
        results[f"{key}_p50_ratio"] = p50 / base
    return results


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-raw":
        serve_raw(sys.argv[2])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-floor":
        serve_floor(sys.argv[2])
        return
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--serve-rpc":
        serve_rpc(sys.argv[2], sys.argv[3] if len(sys.argv) == 4 else None)
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    run(calls=args.calls, warmup=args.warmup, rounds=args.rounds)


if __name__ == "__main__":
    main()
