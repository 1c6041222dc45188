"""The risk engine wired into the trader service: the gate's inputs, the kill switch, the breaker,
the risk commands, and carrying out what the engine asks (docs/risk.md, "Wiring").

:class:`RiskRuntime` owns the :class:`~trader.risk.RiskEngine` (built from ``risk:`` of
configs/trader.yaml, the runtime limit changes of ``<data-dir>/risk/limits.json`` and the states of
``<data-dir>/risk/state.json``) and the :class:`~trader.risk.RiskGate` every order passes.

* **Gate inputs.** :meth:`context_fields` gives the gate the account, IB's NetLiquidation (and its
  currency: the base currency), the FX rates IB reports (``ExchangeRate``), the currency of every
  instrument traded, and the marks: the last tick's mid (or trade), else IB's portfolio price, else
  the last price seen otherwise (a fill's, or the snapshot the OrderDesk takes for an order on an
  instrument without a mark): stale, but a price (without any, every amount limit refuses).
* **Kill switch.** Every ``kill_switch_poll_s`` (<= 1 s): ``<data-dir>/STOP`` present -> the account
  is HALTED and every Bourse order cancelled; ended halts (breaker, next trading day) resume.
* **Breaker.** After each fill and at least once a second (while IB is CONNECTED) the book's P&L at
  the marks goes to :meth:`RiskEngine.on_pnl`.
* **Actions** (:meth:`carry_out`): each is published on the events PUB (topic ``risk``); a
  CancelScope cancels the scope's working orders one by one through the OrderDesk (``account``:
  every order placed by Bourse; orders placed outside Bourse are left alone, so no
  reqGlobalCancel); a FlattenScope waits (briefly) for those cancels, then sends one market order
  per (strategy, instrument) closing the position, marked ``liquidation`` (admitted in any trading
  state as long as it only reduces). A Halt with a rule (breaker, kill switch, guard) is an alert:
  logged at ERROR and published with ``alert: true``.
* **Persistence.** Limit changes and state changes are saved at once (atomically); the breaker's
  day tracks at most once a second when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trader.book import Fill
from trader.book import Order as BookOrder
from trader.config.paths import kill_switch_file
from trader.risk import (
    ACCOUNT,
    Action,
    CancelScope,
    FlattenOrder,
    FlattenScope,
    Halt,
    LimitError,
    RiskConfig,
    RiskEngine,
    RiskGate,
    flatten_orders,
    live_trading_guard,
    snapshot_from_book,
    strategy_scope,
)
from trader.risk.actions import in_scope
from trader.risk.limits import parse_scope, strategy_of
from trader.risk.store import limits_file as limits_path
from trader.risk.store import load_overrides, load_state, save_overrides, save_state, state_file
from trader.service import mapping as mp

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

log = logging.getLogger("trader.service.risk")

RISK_TOPIC: Final = "risk"
PNL_INTERVAL_S: Final = 1.0
STATE_SAVE_INTERVAL_S: Final = 1.0
CANCEL_WAIT_S: Final = 3.0
"""How long a flatten waits for its scope's cancels before sending its market orders."""
GUARD_RULE: Final = "live_trading_guard"
NULL_WORDS: Final = frozenset({"null", "none", "off", "unlimited", ""})


class GuardRefused(RuntimeError):
    """The live-trading guard refused the connected account: the trader stops."""


def parse_value(value: float | int | str | None) -> float | int | None:
    """A limit value from the RPC (the CLI sends text): a number, or null / none / off: no limit.
    The engine checks the number itself (LimitError naming the key)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise LimitError(f"expected a number or null (no limit), got {value!r}")
    if isinstance(value, int | float):
        return value
    text = value.strip().replace("_", "").replace(",", "")
    if text.lower() in NULL_WORDS:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise LimitError(f"expected a number or null (no limit), got {value!r}") from None


class RiskRuntime:
    """See the module docstring. Built by the TraderApp; :meth:`start` runs its loops."""

    def __init__(self, app: TraderApp, config: RiskConfig, data_dir: Path) -> None:
        self.app = app
        self.config = config
        self.stop_file = kill_switch_file(data_dir)
        self.limits_file = limits_path(data_dir)
        self.state_file = state_file(data_dir)
        self.engine = RiskEngine(
            config, overrides=load_overrides(self.limits_file), state=load_state(self.state_file)
        )
        self.gate = RiskGate(engine=self.engine)
        self.last_prices: dict[int, float] = {}
        self.currencies: dict[int, str] = {}
        self.fatal = asyncio.Event()
        self.fatal_reason = ""
        self.kill_switch_present = False
        self.kill_switch_at: float | None = None
        self.actions_done = 0
        self._pnl_due = asyncio.Event()
        self._saved_state: dict[str, Any] = self.engine.state_record()
        self._last_state_save = 0.0
        self._jobs: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------------

    def tasks(self) -> list[tuple[Any, str]]:
        """The loops the app runs: the kill switch (and ended halts), the P&L for the breaker."""
        return [(self._kill_switch_loop, "risk-kill-switch"), (self._pnl_loop, "risk-pnl")]

    def restore(self) -> None:
        """Last fill prices and currencies from the restored book (marks of last resort)."""
        for fill in sorted(self.app.book.positions.fills(), key=lambda f: f.time_ns):
            self._note_fill(fill)
        self.poll_kill_switch()  # a STOP file left in place halts before IB is even connected

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        for job in list(self._jobs):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        self.save_state(force=True)

    # -- gate inputs --------------------------------------------------------------------------------

    def marks(self, extra: dict[int, float] | None = None) -> dict[int, float]:
        """Last prices seen (fills, snapshots), under IB's portfolio prices, under the ticks' marks
        (and ``extra``)."""
        out = dict(self.last_prices)
        out.update(mp.marks_of(self.app))
        if extra:
            out.update(extra)
        return out

    def account_values(self) -> tuple[float | None, str, dict[str, float]]:
        """(NetLiquidation, its currency: the base, FX rates to the base) from IB's account values."""
        session = self.app.session
        net: float | None = None
        base = "USD"
        fx: dict[str, float] = {}
        for value in session.ib.accountValues(session.account):
            number = _float(value.value)
            if number is None:
                continue
            if value.tag == "NetLiquidation" and value.currency and value.currency != "BASE":
                net, base = number, str(value.currency)
            elif value.tag == "ExchangeRate" and value.currency and value.currency != "BASE" and number > 0:
                fx[str(value.currency)] = number
        return net, base, fx

    def context_fields(self, extra_marks: dict[int, float] | None = None) -> dict[str, Any]:
        net, base, fx = self.account_values()
        return {
            "marks": self.marks(extra_marks),
            "account": self.app.session.account,
            "net_liquidation": net,
            "currencies": dict(self.currencies),
            "fx": fx,
            "base_currency": base,
        }

    def note_price(self, con_id: int, price: float) -> None:
        if price > 0 and math.isfinite(price):
            self.last_prices[con_id] = float(price)

    def note_contract(self, con_id: int, currency: str) -> None:
        if currency:
            self.currencies[con_id] = currency

    def on_fill(self, fill: Fill) -> None:
        """A booked fill: its price is the instrument's mark of last resort; check the P&L soon."""
        self._note_fill(fill)
        self._pnl_due.set()

    def _note_fill(self, fill: Fill) -> None:
        if fill.price > 0 and math.isfinite(fill.price):
            self.last_prices[fill.con_id] = float(fill.price)

    # -- the live-trading guard ---------------------------------------------------------------------

    def guard_connected(self, account: str) -> None:
        """Once connected: the guard with the session's account; a reason halts the account, is
        published, and stops the trader (:class:`GuardRefused`)."""
        reason = live_trading_guard(self.app.session.config.port, account, self.config.trading_mode)
        if reason is None:
            return
        now = time.time_ns()
        self.carry_out(self.engine.halt(ACCOUNT, reason, now, rule=GUARD_RULE))
        self.fatal_reason = reason
        self.fatal.set()
        raise GuardRefused(reason)

    def on_connected(self) -> None:
        """IB is CONNECTED (again): cancel what halted scopes still have working (a halt while IB
        was down could not cancel at IB), then check the P&L."""
        trading = self.engine.status(time.time_ns())["trading"]
        halted = [ACCOUNT] if trading["state"] == "halted" else []
        halted += [strategy_scope(s) for s, v in trading["strategies"].items() if v["state"] == "halted"]
        for scope in halted:
            if self._working(scope):
                log.warning("risk: %s is halted: cancelling its working orders", scope)
                self.cancel_scope(scope)
        self._pnl_due.set()

    # -- loops --------------------------------------------------------------------------------------

    def poll_kill_switch(self) -> None:
        present = self.stop_file.exists()
        if present and not self.kill_switch_present:
            self.kill_switch_at = time.time()
        self.kill_switch_present = present
        now = time.time_ns()
        self.carry_out([*self.engine.kill_switch(present, now), *self.engine.tick(now)])

    async def _kill_switch_loop(self) -> None:
        while True:
            try:
                self.poll_kill_switch()
            except Exception:
                log.exception("kill switch poll failed")
            await asyncio.sleep(self.config.kill_switch_poll_s)

    async def _pnl_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pnl_due.wait(), PNL_INTERVAL_S)
            self._pnl_due.clear()
            try:
                self.check_pnl()
            except Exception:
                log.exception("risk P&L check failed")

    def check_pnl(self) -> None:
        """The book's P&L at the marks to the breaker (only while IB is CONNECTED: a book that is
        not reconciled, or cancels and flattens that cannot be sent, decide nothing)."""
        app = self.app
        if not app.session.connected:
            return
        net, base, fx = self.account_values()
        snapshot = snapshot_from_book(
            app.book,
            self.marks(),
            account=app.session.account or None,
            net_liquidation=net,
            currencies=self.currencies,
            fx=fx,
            base_currency=base,
        )
        self.carry_out(self.engine.on_pnl(snapshot.book, time.time_ns()))
        self.save_state()

    # -- carrying out actions -----------------------------------------------------------------------

    def carry_out(self, actions: Iterable[Action]) -> list[dict[str, Any]]:
        """Publish each action (topic ``risk``), cancel, flatten; persist the states. The events."""
        events: list[dict[str, Any]] = []
        for action in actions:
            event = action.event()
            events.append(event)
            self.actions_done += 1
            if isinstance(action, Halt) and action.rule:
                log.error("RISK ALERT: %s halted: %s", action.scope, action.reason)
            else:
                log.warning("risk: %s %s: %s", event["type"], action.scope, action.reason)
            self.app.publish(RISK_TOPIC, dict(event))
            if isinstance(action, CancelScope):
                self.cancel_scope(action.scope)
            elif isinstance(action, FlattenScope):
                self._spawn(self._flatten(action), f"risk-flatten-{action.scope}")
        if events:
            self.save_state(force=True)
        return events

    def cancel_scope(self, scope: str) -> dict[str, Any]:
        """Cancel the scope's working orders placed by Bourse (``account``: all of them); orders
        placed outside Bourse are not ours to cancel."""
        cancelled: list[str] = []
        errors: dict[str, str] = {}
        for order in self._working(scope):
            try:
                self.app.desk.cancel(order.client_order_id)
                cancelled.append(order.client_order_id)
            except Exception as exc:  # too late, not connected, another client's: said, not raised
                errors[order.client_order_id] = str(exc)
        if errors:
            log.error("risk cancel %s: %d orders not cancelled: %s", scope, len(errors), errors)
            message = f"risk cancel {scope}: " + "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
            self.app.publish("error", {"source": "risk", "code": "cancel_failed", "message": message})
        return {"cancelled": cancelled, "errors": errors}

    def _working(self, scope: str) -> list[BookOrder]:
        return [
            o for o in self.app.book.working_orders() if not o.is_external and in_scope(scope, o.strategy)
        ]

    async def _flatten(self, action: FlattenScope) -> None:
        """After the scope's cancels are done (or ``CANCEL_WAIT_S``): a market order per (strategy,
        instrument) closing the scope's positions."""
        app = self.app
        for order in self._working(action.scope):
            await app.desk.wait(order.client_order_id, lambda o: o.state.is_done, CANCEL_WAIT_S)
        snapshot = snapshot_from_book(app.book, self.marks(), account=app.session.account or None)
        for flat in flatten_orders(action.scope, snapshot.book):
            try:
                await self.place_liquidation(flat, action.reason)
            except Exception as exc:
                log.exception("risk flatten %s %s failed", flat.strategy, flat.symbol)
                message = f"flatten {flat.strategy} {flat.action} {flat.quantity:g} {flat.symbol}: {exc}"
                app.publish("error", {"source": "risk", "code": "flatten_failed", "message": message})

    async def place_liquidation(self, flat: FlattenOrder, reason: str) -> None:
        from trader.service.orders import OrderSpec, PlaceRequest  # noqa: PLC0415 (orders imports the app)

        app = self.app
        contract = await app.contracts.by_con_id(flat.con_id)
        client_order_id = f"risk-flat-{flat.con_id}-{time.time_ns()}"
        spec = OrderSpec(flat.action, float(flat.quantity), "MKT")
        request = PlaceRequest(flat.strategy, client_order_id, contract, spec, liquidation=True)
        placed = await app.desk.place(request)
        order = placed.orders[0]
        log.warning(
            "risk flatten (%s): %s %s %g %s as %s: %s",
            reason,
            flat.strategy,
            flat.action,
            flat.quantity,
            flat.symbol,
            client_order_id,
            order.state,
        )
        self.app.publish(
            RISK_TOPIC,
            {
                "type": "risk.liquidation",
                "scope": strategy_scope(flat.strategy),
                "strategy": flat.strategy,
                "client_order_id": client_order_id,
                "con_id": flat.con_id,
                "symbol": flat.symbol,
                "action": flat.action,
                "quantity": flat.quantity,
                "reason": reason,
                "at_ns": time.time_ns(),
            },
        )

    def _spawn(self, job: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(job, name=name)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    # -- commands (RPC) -----------------------------------------------------------------------------

    def set_limit(self, key: str, value: float | int | str | None, scope: str = ACCOUNT) -> dict[str, Any]:
        """Change one limit at runtime (LimitError naming a bad key, value or scope); saved, published."""
        event = self.engine.set_limit(parse_scope(scope), key, parse_value(value), time.time_ns())
        save_overrides(self.limits_file, self.engine.overrides_record())
        log.warning("risk limit %s %s: %s -> %s", event["scope"], key, event["previous"], event["effective"])
        self.app.publish(RISK_TOPIC, dict(event))
        return event

    def command(self, what: str, scope: str = ACCOUNT, reason: str = "") -> dict[str, Any]:
        """``halt`` / ``reduce`` / ``resume`` a scope by hand; the actions carried out, the state."""
        scope = parse_scope(scope)
        now = time.time_ns()
        why = reason or f"{what} requested over RPC"
        if what == "halt":
            actions = self.engine.halt(scope, why, now)
        elif what == "reduce":
            actions = self.engine.reduce(scope, why, now)
        else:
            actions = self.engine.resume(scope, why, now)
        events = self.carry_out(actions)
        state = self.engine.status(now)["trading"]
        name = strategy_of(scope)
        if name is not None:
            state = state["strategies"].get(name, {"state": "active"})
        return {"scope": scope, "state": state, "events": events}

    def status(self) -> dict[str, Any]:
        """``risk_show``: the engine's status plus the current use of the counting limits."""
        now = time.time_ns()
        out = self.engine.status(now)
        usage: dict[str, dict[str, Any]] = {}
        working = [o for o in self.app.book.working_orders() if not o.is_external]
        names = {o.strategy for o in working} | set(out["trading"]["strategies"])
        names |= set(self.config.strategies)
        scopes = [ACCOUNT] + [strategy_scope(s) for s in sorted(names)]
        for scope in scopes:
            second, minute = self.engine.rates.counts(scope, now)
            usage[scope] = {
                "open_orders": sum(1 for o in working if in_scope(scope, o.strategy)),
                "orders_last_second": second,
                "orders_last_minute": minute,
            }
        out["usage"] = usage
        out["kill_switch_file"] = str(self.stop_file)
        out["kill_switch_file_present"] = self.stop_file.exists()
        return out

    # -- persistence --------------------------------------------------------------------------------

    def save_state(self, *, force: bool = False) -> None:
        """Save the states and day tracks when they changed (forced: now, else at most 1/s)."""
        record = self.engine.state_record()
        if record == self._saved_state:
            return
        now = time.monotonic()
        if not force and now - self._last_state_save < STATE_SAVE_INTERVAL_S:
            return
        try:
            save_state(self.state_file, record)
        except (OSError, ValueError):
            log.exception("saving the risk state to %s failed", self.state_file)
            return
        self._saved_state = record
        self._last_state_save = now


def _float(text: object) -> float | None:
    try:
        number = float(str(text))
    except ValueError:
        return None
    return number if math.isfinite(number) else None
