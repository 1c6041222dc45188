#!/usr/bin/env python3
"""Composition root of the trader service: config, logging, the two PUB sockets, the trader app
(IB session, book, risk gate, store) and its RPC. Starts even while IB is down (it keeps trying).

Refuses to run (``error: <reason>``, exit 2) when the live-trading guard objects to the configured
port / account (before connecting) or to the account IB reports (once connected: the account is
halted and the service stops), when ``<data-dir>/risk/`` cannot be read, when an endpoint binds
beyond loopback without ``zmq.curve.enabled``, or when curve is enabled and a key is missing."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import NoReturn

from trader.config.trader import TraderConfig, ZmqConfig
from trader.messaging.curve import CurveKeyError, CurveKeys
from trader.messaging.pubsub import TickPublisher
from trader.messaging.rpc import RpcServer
from trader.risk import live_trading_guard
from trader.risk.store import RiskStoreError
from trader.service.runtime import bootstrap, run_until_signalled, service_arguments
from trader.service.trader_api import TraderState, build_registry
from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service")


class Refused(Exception):
    """The trader must not run (live-trading guard, unreadable risk state): the message says why."""


async def serve(stop: asyncio.Event, state: TraderState, curve: CurveKeys | None = None) -> None:
    zmq_config = state.config.zmq
    with (
        publisher(zmq_config.ticks, zmq_config, curve) as ticks,
        publisher(zmq_config.events, zmq_config, curve) as events,
    ):
        ticks.start()
        events.start()
        try:
            app = TraderApp(state, ticks, events)
        except RiskStoreError as exc:
            raise Refused(str(exc)) from None
        await app.start()
        server = RpcServer(zmq_config.rpc, build_registry(state, app), curve=curve)
        await server.start()
        serving = asyncio.create_task(server.serve_forever())
        ready = (
            f"trader service ready: rpc {zmq_config.rpc}, ticks {ticks.endpoint}, events {events.endpoint}"
            + (f", curve (clients from {curve.authorized_dir})" if curve is not None else "")
        )
        log.info(ready)
        print(ready, flush=True)
        fatal = asyncio.create_task(app.risk.fatal.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([fatal, stopping], return_when=asyncio.FIRST_COMPLETED)
        fatal.cancel()
        stopping.cancel()
        log.info("trader service stopping")
        await server.close(grace=1.0)
        serving.cancel()
        await app.close()
    log.info("trader service stopped")
    if app.risk.fatal_reason:
        raise Refused(app.risk.fatal_reason)


def publisher(endpoint: str, zmq_config: ZmqConfig, curve: CurveKeys | None = None) -> TickPublisher:
    return TickPublisher(
        endpoint,
        max_batch=zmq_config.tick_max_batch,
        linger_ms=zmq_config.tick_linger_ms,
        sndhwm=zmq_config.send_hwm,
        heartbeat_s=zmq_config.heartbeat_s,
        curve=curve,
    )


def transport_security(zmq_config: ZmqConfig, data_dir: Path) -> CurveKeys | None:
    """The trader's CurveZMQ keys (None: plain TCP); refuses a non-loopback bind without curve."""
    unsafe = zmq_config.unsafe_binds()
    if unsafe:
        refuse(
            f"{', '.join(unsafe)} binds beyond 127.0.0.1 without CurveZMQ: anyone who reaches it could "
            "trade; set zmq.curve.enabled (docs/strategies.md, running on other machines) or bind 127.0.0.1"
        )
    try:
        return zmq_config.curve.server_keys(data_dir)
    except CurveKeyError as exc:
        refuse(f"zmq.curve: {exc}")


def main() -> None:
    args = service_arguments("Bourse trader service", "configs/trader.yaml").parse_args()
    boot = bootstrap("trader", TraderConfig, args, "configs/trader.yaml")
    risk, ib = boot.config.risk, boot.config.ib
    reason = live_trading_guard(ib.port, ib.account, risk.trading_mode)  # before connecting
    if reason is not None:
        refuse(reason)
    curve = transport_security(boot.config.zmq, boot.data_dir)
    state = TraderState(boot.config, boot.config_path, boot.data_dir)
    try:
        asyncio.run(run_until_signalled(lambda stop: serve(stop, state, curve)))
    except Refused as exc:
        refuse(str(exc))


def refuse(reason: str) -> NoReturn:
    """``error: <reason>`` on stderr (and in the log), exit status 2."""
    log.error("trader refused to run: %s", reason)
    print(f"error: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
