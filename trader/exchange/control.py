"""The control RPC of the paper exchange: faults on command, status, reset.

:class:`ExchangeControl` applies the faults of :mod:`trader.exchange.faults` to a running
:class:`~trader.exchange.server.ExchangeServer`; :func:`build_registry` exposes its methods over
the project's RPC (``trader.messaging.rpc``), and :func:`start_control` serves them on the
configured endpoint (``exchange.control_rpc``, default ``tcp://127.0.0.1:42010``). Every method is
a plain ``def`` run inline in the exchange's event loop, so each takes effect between two market
steps, and returns a dict saying what it did. Invalid parameters are ``bad_params`` errors naming
the culprit; ``reset`` without ``confirm=True`` is ``confirmation_required``.

=================  ==========================================================================
method             params
=================  ==========================================================================
status             (none)
drop               (none): close every client connection at once (as when TWS dies)
restart            seconds: drop all, refuse connections for that long, then accept again
connectivity       change: lost | restored | restored-data-lost (1100 / 1102 / 1101)
farm               name: usfarm | usopt | cashfarm | ushmds | secdefnj; state: ok | broken | inactive
reject_next        count=1 (0 clears), code=201, text=..., status=Inactive | Cancelled
pacing             enabled: bool (historical-data pacing, error 162)
delay              ms: every message to clients leaves that late (0 clears)
shock              symbol, percent: move the instrument at once
halt / resume      symbol
reset              confirm: bool, cash=None (initial cash of the config): forget account and orders
=================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import zmq

from trader.exchange.faults import CONFIRMATION_REQUIRED, FaultError, check_percent, find_instrument
from trader.exchange.pacing import pacing_of
from trader.exchange.server import ExchangeServer
from trader.messaging.rpc import BAD_PARAMS, MethodRegistry, RpcError, RpcServer

log = logging.getLogger("trader.exchange.control")

MAX_RESTART_S = 600.0


def _checked(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``fn`` (same signature, for the registry's param checks) raising :class:`FaultError` as
    the RPC's ``bad_params``."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except FaultError as exc:
            raise RpcError(BAD_PARAMS, str(exc)) from None

    return call


class ExchangeControl:
    """The fault and state commands over one server (usable without RPC, e.g. in tests)."""

    def __init__(self, server: ExchangeServer, *, hours: str = "always", initial_cash: float = 1e6) -> None:
        self.server = server
        self.core = server.core
        self.faults = server.faults
        self.hours = hours
        self.initial_cash = initial_cash

    def _now(self) -> int:
        return self.core.clock()

    # -- reading ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Server, clients, orders, market mode and the faults in effect."""
        core, now = self.core, self._now()
        engine, market = core.engine, core.market
        universe = core.universe
        halted = sorted(universe[int(c)].localSymbol for c in market.to_dict()["halts"])
        shocked = sorted(universe[int(c)].localSymbol for c in market.to_dict()["shocks"])
        return {
            **self.server.status(),
            "account": core.account_id,
            "orders": {
                "working": len(engine.open_orders(None, now)),
                "completed": len(engine.completed_orders()),
            },
            "market": {
                "hours": self.hours,
                "seed": market.config.seed,
                "step_ms": market.config.step_ms,
                "tick_rate": market.config.tick_rate,
                "halted": halted,
                "shocked": shocked,
            },
            "pacing": pacing_of(core.extensions).enabled,
            "faults": self.faults.snapshot(now),
            "active": self.faults.active(),
        }

    # -- connections --------------------------------------------------------------------------------

    def drop(self) -> dict[str, Any]:
        """Close every client connection at once (a reset, as when TWS dies)."""
        return {"dropped": self.server.disconnect_all("fault: drop")}

    def restart(self, seconds: float) -> dict[str, Any]:
        """A gateway restart: save, refuse connections for ``seconds`` (listener closed first, so
        nobody gets back in early), drop every connection; then accept again with a fresh TWS
        (connectivity and farms OK); order ids continue above every id used."""
        if not 0 < seconds <= MAX_RESTART_S:
            raise FaultError(f"seconds must be in (0, {MAX_RESTART_S:g}], got {seconds}")
        self.server.save(durable=True)
        self.faults.restart()
        self.server.discard_held()  # the reconnecting clients read the state afresh
        pacing_of(self.core.extensions).reset()
        self.server.refuse_connections(seconds)
        dropped = self.server.disconnect_all("fault: gateway restart")
        return {"dropped": dropped, "refusing_for_s": seconds}

    # -- notices ------------------------------------------------------------------------------------

    def connectivity(self, change: str) -> dict[str, Any]:
        """``lost`` (1100): hold reports, pause data, refuse order traffic; ``restored`` (1102):
        deliver the held reports, data carries on; ``restored-data-lost`` (1101): the same, and
        every market data subscription is dropped."""
        code, text = self.faults.set_connectivity(change, self._now())
        clients = self.server.broadcast_error(code, text)
        out: dict[str, Any] = {"connectivity": change, "code": code, "text": text, "clients": clients}
        if change != "lost":
            if change == "restored-data-lost":
                out["market_data_dropped"] = self.server.drop_market_data()
            out["released"] = self.server.release_held()
        return out

    def farm(self, name: str, state: str) -> dict[str, Any]:
        """A data farm changes state: its TWS notice to every client (2103-2108, 2157/2158)."""
        code, text = self.faults.set_farm(name, state)
        clients = self.server.broadcast_error(code, text)
        return {"farm": name, "state": state, "code": code, "text": text, "clients": clients}

    # -- orders -------------------------------------------------------------------------------------

    def reject_next(
        self,
        count: int = 1,
        code: int = 201,
        text: str = "Order rejected - reason:Rejected by the paper exchange (fault).",
        status: str = "Inactive",
    ) -> dict[str, Any]:
        """The next ``count`` new orders end with ``status`` and error ``code`` / ``text``
        (``count=0``: forget the queued rejections)."""
        queued = self.faults.queue_rejects(count, code, text, status)
        return {"queued": queued, "code": code, "text": text, "status": status}

    def delay(self, ms: int) -> dict[str, Any]:
        """Every message to every client leaves ``ms`` late (order kept); 0 clears."""
        self.server.delay_sends(self.faults.set_delay(ms))
        return {"delay_ms": ms}

    def pacing(self, enabled: bool) -> dict[str, Any]:
        """Historical-data pacing (error 162) on or off; switching resets its counters."""
        pacing = pacing_of(self.core.extensions)
        pacing.enabled = enabled
        pacing.reset()
        return {"pacing": enabled}

    # -- market -------------------------------------------------------------------------------------

    def shock(self, symbol: str, percent: float) -> dict[str, Any]:
        """Move an instrument by ``percent`` % at once; the new quote goes out at once (stops
        trigger on it) and the process carries on from the new level."""
        percent = check_percent(percent)
        inst = find_instrument(self.core.universe, symbol)
        market, now = self.core.market, self._now()
        before = market.quote_at(inst.conId, now).mid
        market.shock(inst.conId, percent, now)
        after = market.quote_at(inst.conId, now).mid
        self.server.step(now)
        self.server.save()
        return {
            "symbol": inst.localSymbol,
            "conId": inst.conId,
            "percent": percent,
            "before": before,
            "after": after,
        }

    def halt(self, symbol: str) -> dict[str, Any]:
        """Stop quoting an instrument (tick 49 = 1 to subscribers; orders wait) until resume."""
        inst = find_instrument(self.core.universe, symbol)
        self.core.market.halt(inst.conId, self._now())
        self.server.step()
        self.server.save()
        return {"symbol": inst.localSymbol, "conId": inst.conId, "halted": True}

    def resume(self, symbol: str) -> dict[str, Any]:
        inst = find_instrument(self.core.universe, symbol)
        was_halted = self.core.market.is_halted(inst.conId)
        self.core.market.resume(inst.conId)
        self.server.step()
        self.server.save()
        return {"symbol": inst.localSymbol, "conId": inst.conId, "halted": False, "was_halted": was_halted}

    # -- state --------------------------------------------------------------------------------------

    def reset(self, confirm: bool = False, cash: float | None = None) -> dict[str, Any]:
        """Forget the account (positions, cash, P&L) and every order: clients are dropped first
        (as an account reset needs a new login), order ids keep increasing."""
        if not confirm:
            raise RpcError(
                CONFIRMATION_REQUIRED, "reset forgets the account and every order: pass confirm=true"
            )
        amount = self.initial_cash if cash is None else cash
        if not 0 <= amount <= 1e12:
            raise FaultError(f"cash must be between 0 and 1e12, got {amount}")
        dropped = self.server.disconnect_all("fault: account reset")
        self.server.discard_held()
        self.core.engine.reset(amount)
        pacing_of(self.core.extensions).reset()
        self.server.save(durable=True)
        return {"dropped": dropped, "cash": amount}


def build_registry(control: ExchangeControl) -> MethodRegistry:
    """The control methods (names as in the module docstring)."""
    registry = MethodRegistry()
    for name, fn in (
        ("status", control.status),
        ("drop", control.drop),
        ("restart", control.restart),
        ("connectivity", control.connectivity),
        ("farm", control.farm),
        ("reject_next", control.reject_next),
        ("delay", control.delay),
        ("pacing", control.pacing),
        ("shock", control.shock),
        ("halt", control.halt),
        ("resume", control.resume),
        ("reset", control.reset),
    ):
        registry.register(name, _checked(fn))
    return registry


class ControlService:
    """The control RPC being served (see :func:`start_control`)."""

    def __init__(self, rpc: RpcServer, task: asyncio.Task[None]) -> None:
        self.rpc = rpc
        self.task = task
        self.endpoint = rpc.bound_endpoint

    async def close(self) -> None:
        await self.rpc.close(grace=0.5)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_control(control: ExchangeControl, endpoint: str) -> ControlService | None:
    """Serve the control RPC on ``endpoint``; ``None`` (logged) when it cannot bind: the exchange
    carries on without it rather than refusing to trade."""
    rpc = RpcServer(endpoint, build_registry(control), server_id="exchange-control")
    try:
        await rpc.start()
    except zmq.ZMQError as exc:
        log.error("control RPC unavailable: cannot bind %s: %s", endpoint, exc)
        return None
    task = asyncio.create_task(rpc.serve_forever(), name="exchange-control")
    log.info("control RPC on %s", rpc.bound_endpoint)
    return ControlService(rpc, task)
