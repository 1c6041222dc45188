#!/usr/bin/env python3
"""Composition root of the trader service: config, logging, the two PUB sockets, the trader app
(IB session, book, risk gate, store) and its RPC. Starts even while IB is down (it keeps trying)."""

from __future__ import annotations

import asyncio
import logging

from trader.config.trader import TraderConfig, ZmqConfig
from trader.messaging.pubsub import TickPublisher
from trader.messaging.rpc import RpcServer
from trader.service.runtime import bootstrap, run_until_signalled, service_arguments
from trader.service.trader_api import TraderState, build_registry
from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service")


async def serve(stop: asyncio.Event, state: TraderState) -> None:
    zmq_config = state.config.zmq
    with publisher(zmq_config.ticks, zmq_config) as ticks, publisher(zmq_config.events, zmq_config) as events:
        ticks.start()
        events.start()
        app = TraderApp(state, ticks, events)
        await app.start()
        server = RpcServer(zmq_config.rpc, build_registry(state, app))
        await server.start()
        serving = asyncio.create_task(server.serve_forever())
        ready = (
            f"trader service ready: rpc {zmq_config.rpc}, ticks {ticks.endpoint}, events {events.endpoint}"
        )
        log.info(ready)
        print(ready, flush=True)
        await stop.wait()
        log.info("trader service stopping")
        await server.close(grace=1.0)
        serving.cancel()
        await app.close()
    log.info("trader service stopped")


def publisher(endpoint: str, zmq_config: ZmqConfig) -> TickPublisher:
    return TickPublisher(
        endpoint,
        max_batch=zmq_config.tick_max_batch,
        linger_ms=zmq_config.tick_linger_ms,
        sndhwm=zmq_config.send_hwm,
        heartbeat_s=zmq_config.heartbeat_s,
    )


def main() -> None:
    args = service_arguments("Bourse trader service", "configs/trader.yaml").parse_args()
    boot = bootstrap("trader", TraderConfig, args, "configs/trader.yaml")
    state = TraderState(boot.config, boot.config_path, boot.data_dir)
    asyncio.run(run_until_signalled(lambda stop: serve(stop, state)))


if __name__ == "__main__":
    main()
