"""Bootstrap and run loop shared by every service's composition root."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from trader.config import ConfigError
from trader.config.paths import ensure_data_dir, resolve_config_path, resolve_data_dir
from trader.config.schema import load
from trader.config.trader import LoggingConfig
from trader.logs import setup_logging

C = TypeVar("C")
log = logging.getLogger("trader.service")


@dataclass(frozen=True, slots=True)
class Bootstrap(Generic[C]):
    """A service's resolved configuration, data directory and log file."""

    service: str
    config: C
    config_path: Path
    data_dir: Path
    log_file: Path


def service_arguments(description: str, default_config: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", help=f"configuration file (default: $BOURSE_CONFIG, else {default_config})"
    )
    parser.add_argument(
        "--data-dir", help="state directory (default: $BOURSE_DATA_DIR, else config, else ./data)"
    )
    return parser


def bootstrap(
    service: str,
    schema: type[C],
    args: argparse.Namespace,
    default_config: str,
    environ: Mapping[str, str] | None = None,
) -> Bootstrap[C]:
    """Load config (``--config`` > ``$BOURSE_CONFIG`` > default), resolve the data dir, set up logging.

    A configuration error is printed as its one line and the process exits with status 2.
    """
    env = os.environ if environ is None else environ
    path = resolve_config_path(args.config, env, Path(default_config))
    try:
        config = load(schema, path, env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    data_dir = ensure_data_dir(resolve_data_dir(args.data_dir, env, getattr(config, "data_dir", None)))
    logging_config = getattr(config, "logging", None) or LoggingConfig()
    log_file = setup_logging(service, data_dir, logging_config)
    log.info("%s starting: config %s, data dir %s, pid %d", service, path, data_dir, os.getpid())
    return Bootstrap(service, config, path, data_dir, log_file)


async def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[Any]], signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Run ``main(stop)``; SIGTERM/SIGINT set ``stop`` so ``main`` can shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await main(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
