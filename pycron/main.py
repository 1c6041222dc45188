"""``python -m pycron``: load the config, take the data dir's lock, serve the web API, run the jobs.

Prints ``pycron ready: web http://HOST:PORT`` once the web API listens and
``pycron: all jobs ready in N.NNs`` once every autostart job is READY. SIGTERM or SIGINT stops
every job in reverse dependency order and exits 0; a second SIGINT kills every process group at
once. A broken config, a busy port or a data dir already supervised is one ``error:`` line and
exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from pycron.config import PycronConfig, load_pycron, token_file
from pycron.supervisor import Supervisor
from pycron.web import serve
from trader.config.paths import ensure_data_dir, resolve_config_path, resolve_data_dir
from trader.config.schema import ConfigError
from trader.logs import setup_logging

log = logging.getLogger("pycron")

CONFIG_ENV = "BOURSE_PYCRON_CONFIG"
DEFAULT_CONFIG = Path("configs/pycron.yaml")
LOCK_FILE = "pycron.lock"
EXIT_USAGE = 2


class StartupError(Exception):
    """Something that stops pycron before it runs anything; printed as ``error: <message>``."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pycron", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"pycron YAML (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
    parser.add_argument(
        "--data-dir", help="state root (default: $BOURSE_DATA_DIR, else data_dir, else ./data)"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the config, print the start order, exit"
    )
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Path, PycronConfig]:
    path = resolve_config_path(args.config or environ.get(CONFIG_ENV), {}, DEFAULT_CONFIG)
    try:
        return path, load_pycron(path, environ)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None


def web_token(config: PycronConfig, data_dir: Path) -> str:
    """The configured token (config or $BOURSE_PYCRON_TOKEN), else the one in ``<data-dir>/pycron.token``,
    generated (mode 0600) at first start."""
    if config.web.token:
        return config.web.token
    path = token_file(data_dir)
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def take_lock(data_dir: Path) -> IO[str]:
    """One pycron per data dir: a second one would start every job twice."""
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "another process"
        handle.close()
        raise StartupError(
            f"{data_dir} is already supervised by pycron (pid {other}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def next_steps(url: str) -> str:
    return "\n".join(
        (
            f"Up. Processes: {url}/ (page), {url}/processes (JSON). Try:",
            "  ./cli.py pycron info              every process, its state, uptime and restarts",
            "  ./cli.py pycron logs trader -f    follow a process's output",
            "  ./cli.py ping                     the trader service's RPC",
            "Ctrl+C stops everything.",
        )
    )


async def run(config: PycronConfig, data_dir: Path, token: str) -> None:
    supervisor = Supervisor(config, data_dir)
    try:
        server, port = await serve(supervisor, config.web.host, config.web.port, token)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {config.web.host}:{config.web.port}: {exc.strerror or exc} "
            "(another pycron running? set web.port or BOURSE_WEB_PORT)"
        ) from None
    print(f"pycron ready: web http://{config.web.host}:{port}", flush=True)
    stop = asyncio.Event()
    interrupts = 0

    def on_signal(signum: int) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1 and signum == signal.SIGINT:
            log.warning("second Ctrl+C: killing every process group now")
            supervisor.kill_all()
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await supervisor.boot()
        ready = loop.create_task(supervisor.wait_until(lambda: supervisor.all_ready_after_s is not None, 1e9))
        stopping = loop.create_task(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            print(f"pycron: all jobs ready in {supervisor.all_ready_after_s:.2f}s", flush=True)
            print(next_steps(f"http://{config.web.host}:{port}"), flush=True)
        await stopping
        ready.cancel()
    finally:
        await supervisor.shutdown()
        server.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    print("pycron stopped", flush=True)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        path, config = load_config(args, env)
        if args.check:
            print(f"{path}: ok; start order: {' -> '.join(config.start_order())}")
            return 0
        data_dir = ensure_data_dir(resolve_data_dir(args.data_dir, env, config.data_dir))
        lock = take_lock(data_dir)
        setup_logging("pycron", data_dir, config.logging)
        log.info("pycron %d: config %s, data dir %s", os.getpid(), path, data_dir)
        token = web_token(config, data_dir)
        try:
            asyncio.run(run(config, data_dir, token))
        finally:
            lock.close()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
