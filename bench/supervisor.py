#!/usr/bin/env python3
"""pycron benchmarks: start-up to all READY with the default config, beside a hand-rolled baseline.

    .venv/bin/python bench/supervisor.py [--runs 3]

* **pycron**: ``python -m pycron --config configs/pycron.yaml`` (paper exchange -> trader), fresh
  data dir, free ports, from process start to its ``all jobs ready`` line. Readiness is what
  the config says: the exchange's ready line (log probe), then the trader answering ``cli.py ping``
  (a command probe every 0.5 s).
* **baseline** (what the old start.sh did, the floor without a supervisor): the exchange started
  directly and awaited on its ready line, then the trader, polled with the same ``cli.py ping``
  back to back until it answers.
* **restart**: SIGKILL of the trader under pycron until it is READY again (the backoff's first
  delay is 1 s, jittered down by up to 10 %).
* **stop**: SIGTERM to pycron until it has exited with every job stopped.
* **pycron RSS** once everything is READY (``/proc/<pid>/status`` VmRSS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    port = free_port()

    def endpoint() -> str:
        return f"tcp://127.0.0.1:{free_port()}"

    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BOURSE_EXCHANGE_PORT": str(port),
        "BOURSE_IB_PORT": str(port),
        "BOURSE_EXCHANGE_CONTROL_RPC": endpoint(),
        "BOURSE_ZMQ_RPC": endpoint(),
        "BOURSE_ZMQ_TICKS": endpoint(),
        "BOURSE_ZMQ_EVENTS": endpoint(),
        "BOURSE_WEB_PORT": str(free_port()),
        "BOURSE_LOGGING_CONSOLE": "false",
    }


@contextmanager
def spawned(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float = 120) -> re.Match[str]:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := regex.search(line):
            return match
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"no line matching {pattern!r}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def pycron_run() -> dict[str, float]:
    env = environment()
    with tempfile.TemporaryDirectory() as data:
        started = time.perf_counter()
        argv = [PY, "-m", "pycron", "--config", "configs/pycron.yaml", "--data-dir", data]
        with spawned(argv, env) as proc:
            wait_line(proc, r"pycron: all jobs ready in")
            ready = time.perf_counter() - started
            rss = rss_mb(proc.pid)
            url = f"http://127.0.0.1:{env['BOURSE_WEB_PORT']}"
            trader = get(f"{url}/processes/trader")
            with urllib.request.urlopen(f"{url}/events", timeout=60) as stream:
                killed_at = time.perf_counter()
                os.kill(trader["pid"], signal.SIGKILL)
                for raw in stream:
                    if raw.startswith(b"data:") and b'"trader: ready' in raw:
                        break
            restart = time.perf_counter() - killed_at
            stop_at = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            stop = time.perf_counter() - stop_at
    return {"ready": ready, "restart": restart, "stop": stop, "rss": rss}


def baseline_run() -> float:
    env = environment()
    with tempfile.TemporaryDirectory() as data:
        started = time.perf_counter()
        with spawned([PY, "services/exchange_service.py", "--data-dir", data], env) as exchange:
            wait_line(exchange, r"exchange ready on")
            with spawned([PY, "services/trader_service.py", "--data-dir", data], env):
                ping = [PY, "cli.py", "ping", "--timeout", "1"]
                while subprocess.run(ping, cwd=ROOT, env=env, capture_output=True, check=False).returncode:
                    pass
                return time.perf_counter() - started


def spread(values: list[float], unit: str = "s") -> str:
    return f"median {statistics.median(values):.2f} {unit} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base, runs = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        base.append(baseline_run())
        runs.append(pycron_run())
    print(f"start-up to all READY, {args.runs} runs each (exchange -> trader answering ping):")
    print(f"  baseline (direct spawn + ping loop): {spread(base)}")
    print(f"  pycron (configs/pycron.yaml):        {spread([r['ready'] for r in runs])}")
    print(f"  trader SIGKILL -> READY again:       {spread([r['restart'] for r in runs])}")
    print(f"  SIGTERM -> pycron exited, all stopped: {spread([r['stop'] for r in runs])}")
    print(f"  pycron RSS when all READY:           {spread([r['rss'] for r in runs], 'MB')}")


if __name__ == "__main__":
    main()
