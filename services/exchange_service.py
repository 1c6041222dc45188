#!/usr/bin/env python3
"""Composition root of the paper exchange: a TWS API server that stock ib_async connects to, and
its control RPC (faults, status, reset; ``cli.py exchange ...``).

python services/exchange_service.py [--port 7497] [--data-dir DIR] [--seed N]
                                    [--config configs/exchange.yaml] [--reset] [--control ENDPOINT]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys

from trader.config.exchange import ExchangeConfig
from trader.exchange.control import ExchangeControl, start_control
from trader.exchange.feature_market import MarketDataFeature
from trader.exchange.server import ExchangeServer, build_server
from trader.service.runtime import bootstrap, run_until_signalled, service_arguments

log = logging.getLogger("trader.exchange")


async def serve(stop: asyncio.Event, server: ExchangeServer, config: ExchangeConfig, control_at: str) -> None:
    try:
        host, port = await server.start()
    except OSError as exc:
        log.error("exchange cannot listen on %s:%d: %s", server.host, server.port, exc)
        raise SystemExit(1) from None
    control = ExchangeControl(server, hours=config.market.hours, initial_cash=config.account.initial_cash)
    rpc = await start_control(control, control_at) if control_at != "off" else None
    log.info("exchange ready on %s:%d", host, port)
    print(f"exchange ready on {host}:{port} (control: {rpc.endpoint if rpc else 'off'})", flush=True)
    await stop.wait()
    log.info("exchange stopping")
    if rpc is not None:
        await rpc.close()
    await server.close()
    log.info("exchange stopped")


def arguments() -> argparse.ArgumentParser:
    parser = service_arguments("Bourse paper exchange (TWS API)", "configs/exchange.yaml")
    parser.add_argument("--port", type=int, help="TWS API port (default: exchange.port; 0: a free one)")
    parser.add_argument("--seed", type=int, help="market seed (default: market.seed)")
    parser.add_argument("--reset", action="store_true", help="forget the saved account, orders and ids")
    parser.add_argument("--control", help="control RPC endpoint (default: exchange.control_rpc; off: none)")
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    boot = bootstrap("exchange", ExchangeConfig, args, "configs/exchange.yaml")
    config = boot.config
    if args.seed is not None:
        config = dataclasses.replace(config, market=dataclasses.replace(config.market, seed=args.seed))
    server = build_server(
        config, boot.data_dir, reset=args.reset, port=args.port, extra_features=[MarketDataFeature()]
    )
    control_at = args.control or config.exchange.control_rpc
    asyncio.run(run_until_signalled(lambda stop: serve(stop, server, config, control_at)))
    sys.exit(0)


if __name__ == "__main__":
    main()
