#!/usr/bin/env python3
"""Composition root of a strategy service: one shard of configs/strategies.yaml.

python services/strategy_service.py --shard K [--strategies a,b] [--config FILE] [--data-dir DIR]

Hosts the strategies with ``shard: K`` (or only those named), talks to the trader over its RPC and
PUB sockets, serves its own RPC on ``tcp://<shards.host>:<shards.base_port + K>`` and prints
``strategy service ready: shard K (a, b) rpc tcp://...`` once they are restored, warmed up and
running. SIGTERM/SIGINT: every ``on_stop`` runs; orders are left working unless the strategy has
``cancel_on_stop: true``. A configuration error is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from trader.config.paths import ensure_data_dir, resolve_data_dir
from trader.config.schema import ConfigError
from trader.logs import setup_logging
from trader.messaging.curve import is_loopback
from trader.messaging.rpc import RpcServer
from trader.service.runtime import run_until_signalled
from trader.strategy.config import StrategiesConfig, load_strategies, strategies_config_path, trader_endpoints
from trader.strategy.feeds import StartupError
from trader.strategy.host import StrategyHost
from trader.strategy.host_api import build_registry
from trader.strategy.hosting import load_all, select

log = logging.getLogger("trader.strategy.service")


async def serve(stop: asyncio.Event, host: StrategyHost, config: StrategiesConfig, config_path: Path) -> None:
    endpoint = config.shards.endpoint(host.shard)
    server = RpcServer(endpoint, build_registry(host, config_path, os.environ))
    await server.start()  # answers ping/list/status while starting (state WARMING_UP ...)
    serving = asyncio.create_task(server.serve_forever())
    names = ", ".join(host.loaded) or "no strategies"
    try:
        try:
            started = await host.start(stop)
        except StartupError as exc:
            log.error("strategy service cannot start: %s", exc)
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        if started:
            ready = f"strategy service ready: shard {host.shard} ({names}) rpc {server.bound_endpoint}"
            log.info(ready)
            print(ready, flush=True)
            await stop.wait()
        log.info("strategy service stopping")
    finally:
        cancel = [name for name, spec in host.loaded.items() if spec.entry.cancel_on_stop]
        await host.close(cancel)
        await server.close(grace=0.5)
        serving.cancel()
    log.info("strategy service stopped")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Bourse strategy service (one shard)")
    parser.add_argument(
        "--shard", type=int, required=True, help="the shard K to host (strategies with shard: K)"
    )
    parser.add_argument(
        "--strategies", help="only these strategies (comma-separated; each must be on the shard)"
    )
    parser.add_argument(
        "--config",
        help="strategies config (default: $BOURSE_STRATEGIES_CONFIG, else configs/strategies.yaml)",
    )
    parser.add_argument(
        "--data-dir", help="state directory (default: $BOURSE_DATA_DIR, else config, else ./data)"
    )
    return parser


def main() -> None:
    args = arguments().parse_args()
    env = os.environ
    path = strategies_config_path(args.config, env)
    names = [n.strip() for n in args.strategies.split(",") if n.strip()] if args.strategies else None
    try:
        config = load_strategies(path, env)
        loaded = load_all(select(config, str(path), args.shard, names), path)
        data_dir = resolve_data_dir(args.data_dir, env, config.data_dir)
        endpoints = trader_endpoints(config, env, data_dir)
        own = config.shards.endpoint(args.shard)
        if not is_loopback(own):
            raise ConfigError(
                str(path),
                "shards.host",
                f"{own} binds beyond 127.0.0.1, and a shard's control RPC has no CurveZMQ: keep it on "
                "127.0.0.1 and run cli.py strategy on the shard's machine",
            )
    except ConfigError as exc:
        where = str(path) if exc.source == "strategies.yaml" else exc.source
        print(f"error: {ConfigError(where, exc.key, exc.problem)}", file=sys.stderr)
        raise SystemExit(2) from None
    data_dir = ensure_data_dir(data_dir)
    setup_logging(f"strategies-{args.shard}", data_dir, config.logging)
    log.info(
        "strategy service shard %d starting: config %s, trader %s%s, pid %d",
        args.shard, path, endpoints.rpc, " (curve)" if endpoints.curve else "", os.getpid(),
    )  # fmt: skip

    async def run(stop: asyncio.Event) -> None:
        host = StrategyHost(args.shard, loaded, endpoints, config.slow_hook_s)
        await serve(stop, host, config, path)

    asyncio.run(run_until_signalled(run))


if __name__ == "__main__":
    main()
