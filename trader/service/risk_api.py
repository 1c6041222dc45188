"""The trader's risk RPC methods (docs/rpc.md, "Risk"; docs/risk.md): show, set, halt, reduce,
resume. Errors: ``bad_params`` (an unknown limit, a bad value or scope: LimitError), ``conflict``
(a transition the state table refuses, or a resume while the STOP file is there)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from trader.messaging.rpc import MethodRegistry
from trader.risk import ACCOUNT

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp


def register(registry: MethodRegistry, app: TraderApp) -> None:
    from trader.service.trader_api import _method  # noqa: PLC0415 (trader_api imports this module)

    method = functools.partial(_method, registry)
    risk = app.risk

    @method("risk_show")
    def risk_show() -> dict[str, Any]:
        """Trading states (account, strategies, kill switch), the limits in force per scope, runtime
        changes, the trading day, the day's P&L per scope, the current use of the counting limits
        (open orders, orders in the last second / minute) and the gate's pass / refusal counts."""
        return risk.status()

    @method("risk_set")
    def risk_set(*, key: str, value: float | str | None, scope: str = ACCOUNT) -> dict[str, Any]:
        """Change one limit now (saved to <data-dir>/risk/limits.json; a risk.limit event): value
        a number, or null / "none" for no limit (a strategy scope: back to the default). scope:
        account, strategy:<name>, or strategy:* (the default strategy limits)."""
        return risk.set_limit(key, value, scope)

    @method("risk_halt")
    def risk_halt(*, scope: str = ACCOUNT, reason: str = "") -> dict[str, Any]:
        """HALTED: no new orders in the scope; its working orders are cancelled. Until risk_resume."""
        return risk.command("halt", scope, reason)

    @method("risk_reduce")
    def risk_reduce(*, scope: str = ACCOUNT, reason: str = "") -> dict[str, Any]:
        """REDUCING: only orders that reduce a position pass in the scope. Until risk_resume."""
        return risk.command("reduce", scope, reason)

    @method("risk_resume")
    def risk_resume(*, scope: str = ACCOUNT, reason: str = "") -> dict[str, Any]:
        """ACTIVE again (conflict when already active, or while the STOP file is present)."""
        return risk.command("resume", scope, reason)
