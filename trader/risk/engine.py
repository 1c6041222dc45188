"""The risk engine: limits, trading states, rate windows and the circuit breaker behind one facade.

Pure and synchronous: no I/O, no clock (every call takes ``now_ns``). The trader builds a
:class:`~trader.risk.snapshot.RiskSnapshot` per order and per P&L update, calls the engine, and
carries out the :mod:`~trader.risk.actions` it returns (publish the events, cancel, flatten);
persisting :meth:`RiskEngine.overrides_record` and :meth:`RiskEngine.state_record` after a change
is the trader's job too (:mod:`trader.risk.store`).

:meth:`RiskEngine.check` evaluates everything and refuses with every failing rule: the order's
sanity, the account's and its strategy's trading states, then every check of
:data:`~trader.risk.checks.CHECKS` in the account scope (its limits over the whole book) and in the
strategy scope (the strategy's limits over its own positions and orders). A check that raises is a
``check_failed`` violation: the engine fails closed.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

from trader.risk.actions import Action, CancelScope, Halt, Reduce, Resume
from trader.risk.breaker import Breaker, TradingDay
from trader.risk.checks import CHECKS, ScopeView, fmt, reduces, signed
from trader.risk.gate import CHECK_FAILED, OrderIntent, Refusal, Violation, refusal_of
from trader.risk.limits import (
    ACCOUNT,
    STRATEGY_DEFAULTS,
    RiskConfig,
    RiskLimits,
    parse_scope,
    strategy_of,
    strategy_scope,
    validate_limit,
)
from trader.risk.ratelimit import RateWindows
from trader.risk.snapshot import EPS, BookSnapshot, RiskSnapshot
from trader.risk.state import InvalidStateTransition, ScopeState, StateAction, TradingState

log = logging.getLogger("trader.risk")

TRADING_STATE = "trading_state"
LIQUIDATION = "liquidation"
INVALID_ORDER = "invalid_order"
KILL_SWITCH = "kill_switch"
KILL_SWITCH_REASON = "kill switch: STOP file present"


class RiskError(ValueError):
    """A risk command that cannot be done (e.g. resume while the STOP file is there)."""


class RiskEngine:
    def __init__(
        self,
        config: RiskConfig | None = None,
        *,
        overrides: Mapping[str, Mapping[str, float | int | None]] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """``overrides``: runtime limit changes (store.load_overrides); ``state``: a
        :meth:`state_record` (store.load_state), so a restart keeps halts and day baselines."""
        self.config = config or RiskConfig()
        self.day = TradingDay(self.config.trading_day_tz, self.config.trading_day_start)
        self.overrides: dict[str, dict[str, float | int | None]] = {}
        for scope, values in (overrides or {}).items():
            self.overrides[parse_scope(scope)] = {k: validate_limit(k, v) for k, v in values.items()}
        state = state or {}
        self.states: dict[str, ScopeState] = {
            s.scope: s for s in (ScopeState.from_record(r) for r in state.get("states", []))
        }
        self.states.setdefault(ACCOUNT, ScopeState(ACCOUNT))
        self.breaker = Breaker(self.day, Breaker.tracks_from_record(state.get("breaker", {})))
        self.kill_switch_engaged: bool = bool(state.get("kill_switch", False))
        self.rates = RateWindows()
        self._limits: dict[str, RiskLimits] = {}
        """limits_for's results; emptied by set_limit (and when ``config`` is replaced)."""
        self._limits_of: RiskConfig = self.config
        self._rules: dict[str, tuple[RiskLimits, tuple[str, ...]]] = {}
        self.passed = 0
        self.refused: dict[str, int] = {}

    # -- limits ------------------------------------------------------------------------------------

    def limits_for(self, scope: str) -> RiskLimits:
        """The limits in force in ``scope`` (config, then runtime changes)."""
        if self._limits_of is not self.config:
            self._limits.clear()
            self._limits_of = self.config
        found = self._limits.get(scope)
        if found is None:
            found = self._limits[scope] = self._limits_in(scope)
        return found

    def _rules_in(self, scope: str, limits: RiskLimits) -> tuple[str, ...]:
        """The rules of :data:`CHECKS` (in order) whose limit is set in ``scope``."""
        found = self._rules.get(scope)
        if found is None or found[0] is not limits:
            found = self._rules[scope] = (
                limits,
                tuple(rule for rule in CHECKS if getattr(limits, rule, None) is not None),
            )
        return found[1]

    def _limits_in(self, scope: str) -> RiskLimits:
        scope = parse_scope(scope)
        if scope == ACCOUNT:
            return self.config.limits.merged(self.overrides.get(ACCOUNT, {}))
        defaults = self.config.strategy_limits.merged(self.overrides.get(STRATEGY_DEFAULTS, {}))
        if scope == STRATEGY_DEFAULTS:
            return defaults
        strategy = strategy_of(scope) or ""
        limits = self.config.strategy_override(strategy).over(defaults)
        runtime = self.overrides.get(scope, {})
        return limits.merged({k: getattr(defaults, k) if v is None else v for k, v in runtime.items()})

    def set_limit(self, scope: str, key: str, value: float | int | None, now_ns: int) -> dict[str, Any]:
        """Change one limit at runtime; the change event (raises LimitError naming a bad key/value).
        ``None``: no limit (for a ``strategy:<name>`` scope: back to the default strategy limit)."""
        scope = parse_scope(scope)
        checked = validate_limit(key, value)
        previous = getattr(self.limits_for(scope), key)
        self.overrides.setdefault(scope, {})[key] = checked
        self._limits.clear()
        return {
            "type": "risk.limit",
            "scope": scope,
            "key": key,
            "value": checked,
            "previous": previous,
            "effective": getattr(self.limits_for(scope), key),
            "at_ns": now_ns,
        }

    def overrides_record(self) -> dict[str, dict[str, float | int | None]]:
        return copy.deepcopy(self.overrides)

    # -- trading states ----------------------------------------------------------------------------

    def state_of(self, scope: str) -> ScopeState:
        return self.states.get(scope) or ScopeState(parse_scope(scope))

    def _effective(self, scope: str, now_ns: int) -> ScopeState:
        state = self.state_of(scope)
        if state.state is TradingState.HALTED and state.until_ns is not None and now_ns >= state.until_ns:
            return ScopeState(scope)
        return state

    def _move(
        self, scope: str, action: StateAction, reason: str, now_ns: int, until_ns: int | None = None
    ) -> ScopeState:
        scope = parse_scope(scope)
        if scope == STRATEGY_DEFAULTS:
            raise RiskError("strategy:* names default limits, not a scope with a trading state")
        state = self.state_of(scope).apply(action, reason, now_ns, until_ns)
        self.states[scope] = state
        return state

    def halt(
        self, scope: str, reason: str, now_ns: int, *, until_ns: int | None = None, rule: str = ""
    ) -> list[Action]:
        """HALTED: no new orders in ``scope``; its working orders are to be cancelled."""
        state = self._move(scope, StateAction.HALT, reason, now_ns, until_ns)
        return [
            Halt(state.scope, reason, now_ns, state.until_ns, rule),
            CancelScope(state.scope, reason, now_ns),
        ]

    def reduce(self, scope: str, reason: str, now_ns: int) -> list[Action]:
        """REDUCING: only orders that reduce a position pass in ``scope``."""
        self._refuse_while_killed(scope, "reduce")
        state = self._move(scope, StateAction.REDUCE, reason, now_ns)
        return [Reduce(state.scope, reason, now_ns)]

    def resume(self, scope: str, reason: str, now_ns: int) -> list[Action]:
        """ACTIVE again (InvalidStateTransition when already active)."""
        self._refuse_while_killed(scope, "resume")
        state = self._move(scope, StateAction.RESUME, reason, now_ns)
        return [Resume(state.scope, reason, now_ns)]

    def _refuse_while_killed(self, scope: str, what: str) -> None:
        if scope == ACCOUNT and self.kill_switch_engaged:
            raise RiskError(
                f"cannot {what} the account: the kill switch STOP file is present; remove it first"
            )

    def kill_switch(self, present: bool, now_ns: int) -> list[Action]:
        """The STOP file's presence, polled: appearing halts the account and cancels everything;
        disappearing only allows a manual resume (nothing resumes by itself)."""
        if present and not self.kill_switch_engaged:
            self.kill_switch_engaged = True
            return self.halt(ACCOUNT, KILL_SWITCH_REASON, now_ns, rule=KILL_SWITCH)
        if not present and self.kill_switch_engaged:
            self.kill_switch_engaged = False
        return []

    def tick(self, now_ns: int) -> list[Action]:
        """End the halts whose time is up (the breaker's, at the next trading day's start)."""
        actions: list[Action] = []
        for scope, state in sorted(self.states.items()):
            if state.state is TradingState.HALTED and state.until_ns is not None and now_ns >= state.until_ns:
                reason = f"trading day {self.day.label(now_ns).isoformat()} started"
                self.states[scope] = state.apply(StateAction.RESUME, reason, now_ns)
                actions.append(Resume(scope, reason, now_ns))
        return actions

    # -- P&L and the breaker -----------------------------------------------------------------------

    def on_pnl(self, book: BookSnapshot, now_ns: int) -> list[Action]:
        """A P&L update (the account's and each strategy's cumulative P&L): halts that end, and the
        breaker's Halt (already in force) / CancelScope / FlattenScope for each breached scope."""
        actions = self.tick(now_ns)
        samples = [(ACCOUNT, book.total_pnl())]
        samples += [(strategy_scope(s), pnl) for s, pnl in sorted(book.pnl.items())]
        for scope, cumulative in samples:
            for action in self.breaker.observe(scope, cumulative, self.limits_for(scope), now_ns):
                if isinstance(action, Halt):
                    self._move(scope, StateAction.HALT, action.reason, now_ns, action.until_ns)
                    log.warning("%s", action.reason)
                actions.append(action)
        return actions

    # -- the pre-trade check -----------------------------------------------------------------------

    def check(self, order: OrderIntent, snapshot: RiskSnapshot, now_ns: int) -> Refusal | None:
        """None when the order may go (it is then counted in the rate windows), else a
        :class:`Refusal` naming every failing rule with its numbers."""
        violations = self.violations(order, snapshot, now_ns)
        refusal = refusal_of(violations)
        if refusal is None:
            self.admit(order, now_ns)
        else:
            self.count_refusal(refusal)
        return refusal

    def admit(self, order: OrderIntent, now_ns: int) -> None:
        """Count ``order`` as sent (rate windows, stats); :meth:`check` does it on a pass."""
        self.passed += 1
        if not order.liquidation:
            self.rates.record((ACCOUNT, strategy_scope(order.strategy)), now_ns)

    def count_refusal(self, refusal: Refusal) -> None:
        for rule in refusal.rules:
            self.refused[rule] = self.refused.get(rule, 0) + 1

    def violations(self, order: OrderIntent, snapshot: RiskSnapshot, now_ns: int) -> list[Violation]:
        """Every rule ``order`` fails (changes nothing)."""
        book, market = snapshot.book, snapshot.market
        own = strategy_scope(order.strategy)
        if not math.isfinite(order.quantity) or order.quantity <= 0 or order.action not in ("BUY", "SELL"):
            return [Violation(INVALID_ORDER, ACCOUNT, f"{order.action} {order.quantity!r} {order.symbol}")]
        # The strategy's share of the book: its positions and working orders in the book's order,
        # so the sums below take the same terms in the same order as over the whole book.
        mine = book.for_strategy(order.strategy)
        position = book.position(order.strategy, order.con_id)
        if order.liquidation:
            if reduces(position, order.signed_quantity):
                return []
            change = signed(order.signed_quantity)
            why = f"{order.symbol} order {change} does not reduce position {fmt(position)}"
            return [Violation(LIQUIDATION, own, why)]
        out: list[Violation] = []
        buying = order.signed_quantity > 0
        pending = math.fsum(
            w.remaining for w in mine.working if w.con_id == order.con_id and (w.remaining > 0) == buying
        )
        for scope in (ACCOUNT, own):
            if scope not in self.states:  # never moved: ACTIVE (limits_for checks the scope's name)
                continue
            state = self._effective(scope, now_ns)
            if not state.admits(order.signed_quantity, position, pending):
                rule = (
                    "only orders that reduce a position"
                    if state.state is TradingState.REDUCING
                    else "no new orders"
                )
                out.append(Violation(TRADING_STATE, scope, f"{state.describe()}: {rule}"))
        for scope, scoped in ((ACCOUNT, book), (own, mine)):
            limits = self.limits_for(scope)
            second, minute = self.rates.counts(scope, now_ns)
            day, peak = self.breaker.view(scope, scoped.total_pnl(), now_ns)
            view = ScopeView(scope, scoped, second, minute, day, peak)
            for rule in self._rules_in(scope, limits):
                check = CHECKS.get(rule)
                if check is None:
                    continue
                try:
                    reason = check(order, view, market, limits, now_ns)
                except Exception as exc:
                    log.exception("risk check %s failed on %s: refusing", rule, order.client_order_id)
                    out.append(
                        Violation(CHECK_FAILED, scope, f"check {rule} raised {type(exc).__name__}: {exc}")
                    )
                    continue
                if reason is not None:
                    out.append(Violation(rule, scope, reason))
        return out

    # -- status and persistence --------------------------------------------------------------------

    def status(self, now_ns: int) -> dict[str, Any]:
        """What ``risk show`` prints: states, limits in force, runtime changes, the day's P&L."""
        account = self._effective(ACCOUNT, now_ns)
        strategies = sorted(
            {strategy_of(s) or "" for s in self.states if s != ACCOUNT}
            | set(self.config.strategies)
            | {strategy_of(s) or "" for s in self.overrides if s not in (ACCOUNT, STRATEGY_DEFAULTS)}
        )
        limits = {ACCOUNT: self.limits_for(ACCOUNT).to_dict()}
        limits[STRATEGY_DEFAULTS] = self.limits_for(STRATEGY_DEFAULTS).to_dict()
        for name in strategies:
            limits[strategy_scope(name)] = self.limits_for(strategy_scope(name)).to_dict()
        return {
            "trading": {
                **_state_dict(account),
                "kill_switch": self.kill_switch_engaged,
                "strategies": {
                    strategy_of(scope): _state_dict(self._effective(scope, now_ns))
                    for scope in sorted(self.states)
                    if scope != ACCOUNT
                },
            },
            "trading_mode": self.config.trading_mode,
            "limits": limits,
            "overrides": self.overrides_record(),
            "trading_day": {
                "day": self.day.label(now_ns).isoformat(),
                "tz": self.config.trading_day_tz,
                "start": self.config.trading_day_start,
                "next_start_ns": self.day.next_start_ns(now_ns),
            },
            "day": {
                scope: {"pnl": t.last.total, "peak": t.peak, "tripped": t.tripped}
                for scope, t in sorted(self.breaker.tracks.items())
                if t.day == self.day.label(now_ns)
            },
            "checks": {"rules": list(CHECKS), "passed": self.passed, "refused": dict(self.refused)},
        }

    def state_record(self) -> dict[str, Any]:
        """What must survive a restart: trading states, the breaker's day tracks, the kill switch."""
        return {
            "states": [s.to_record() for _, s in sorted(self.states.items())],
            "breaker": self.breaker.to_record(),
            "kill_switch": self.kill_switch_engaged,
        }


def _state_dict(state: ScopeState) -> dict[str, Any]:
    return {
        "state": state.state.value,
        "reason": state.reason,
        "since_ns": state.since_ns,
        "until_ns": state.until_ns,
    }


__all__ = ["EPS", "InvalidStateTransition", "RiskEngine", "RiskError"]
