"""Refresh stored history through the trader: ``get_history`` for each symbol (the trader reads the
store, fetches only what is missing from IB under its pacing rules, and stores it).

Scheduled by pycron on weekday evenings (configs/pycron.yaml, job ``history``); by hand:
    python services/history_refresh.py --symbols AAPL,MSFT --days 5 --bar-size "1 min"
Exit status 0 when every symbol was refreshed, 1 when any failed (pycron reports ``run_failed``),
2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from trader.config import ConfigError
from trader.config.paths import resolve_config_path, resolve_data_dir
from trader.config.schema import load
from trader.config.trader import TraderConfig
from trader.messaging.curve import CurveKeyError
from trader.messaging.rpc import RpcClient, RpcClientError, RpcRemoteError

DEFAULT_SYMBOLS = "AAPL,MSFT,SPY"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default=DEFAULT_SYMBOLS, help="comma-separated (default: %(default)s)")
    parser.add_argument("--days", type=int, default=5, help="how far back (default: %(default)s)")
    parser.add_argument("--bar-size", default="1 min", help="IB bar size (default: %(default)s)")
    parser.add_argument("--config", help="trader config (default: $BOURSE_CONFIG, else configs/trader.yaml)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per symbol (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if not symbols or args.days < 1:
        print("error: --symbols needs at least one symbol and --days at least 1", file=sys.stderr)
        return 2
    try:
        path = resolve_config_path(args.config, os.environ, Path("configs/trader.yaml"))
        config = load(TraderConfig, path, os.environ)
        endpoint = config.zmq.rpc
        curve = config.zmq.curve.client_keys(resolve_data_dir(None, os.environ, config.data_dir))
    except (ConfigError, CurveKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    with RpcClient(endpoint, timeout=args.timeout, curve=curve) as client:
        for symbol in symbols:
            started = time.perf_counter()
            try:
                bars = client.call(
                    "get_history", symbol=symbol, days=args.days, bar_size=args.bar_size, timeout=args.timeout
                )
            except (RpcRemoteError, RpcClientError) as exc:
                failed += 1
                print(f"{symbol}: failed: {exc}", flush=True)
                continue
            elapsed = time.perf_counter() - started
            span = f"{bars.index[0]} .. {bars.index[-1]}" if len(bars) else "no bars"
            print(f"{symbol}: {len(bars)} bars of {args.bar_size} ({span}) in {elapsed:.1f}s", flush=True)
    print(f"history refresh: {len(symbols) - failed}/{len(symbols)} symbols refreshed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
