"""Risk limits and the trader config's ``risk:`` section.

Three layers of limits, each a :class:`RiskLimits` (``None`` = no limit):

* ``limits`` — the **account**: applied to the account's totals (every strategy's positions,
  working orders, P&L) and to every order.
* ``strategy_limits`` — **every strategy** by default: applied to that strategy's own positions,
  working orders, order rate and P&L.
* ``strategies.<name>`` — per-strategy **overrides** of ``strategy_limits``: a key given (not
  ``null``) replaces the default for that strategy; a key left out (or ``null``) inherits it.

An order must pass both its account's and its strategy's limits, so a strategy limit can tighten
the account's but never loosen it. Every limit defaults to ``None`` (no limit): a fresh install
trades unhindered until limits are configured (docs/risk.md suggests a starting set).

Scopes are strings: ``"account"``, ``"strategy:<name>"``, and ``"strategy:*"`` for the default
strategy limits (used by runtime changes).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trader.config.schema import Check, checked, in_range

ACCOUNT: Final = "account"
STRATEGY_PREFIX: Final = "strategy:"
STRATEGY_DEFAULTS: Final = "strategy:*"

TradingMode = Literal["paper", "live"]


class LimitError(ValueError):
    """A runtime limit change or a scope that is not valid; the message names the key."""


def _positive(value: Any) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        return f"must be a positive number or null (no limit), got {value!r}"
    return None


def _limit(doc: str) -> Any:
    return dataclasses.field(default=None, metadata={"check": _positive, "doc": doc})


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Pre-trade and intraday limits of one scope. ``None``: no limit (the default of every key).

    Quantities are in the instrument's units (shares, contracts, base-currency units of an FX pair);
    amounts are in the account's base currency: ``quantity * price * multiplier * fx rate``."""

    max_order_quantity: float | None = _limit("quantity of one order")
    max_order_notional: float | None = _limit("quantity x price x multiplier of one order")
    max_position_quantity: float | None = _limit(
        "absolute position per instrument, worst case with working orders"
    )
    max_position_notional: float | None = _limit("absolute position value per instrument, worst case")
    max_gross_exposure: float | None = _limit("sum of absolute position values, worst case")
    max_net_exposure: float | None = _limit("absolute sum of signed position values, worst case")
    max_leverage: float | None = _limit("gross exposure / net liquidation")
    max_open_orders: int | None = _limit("working orders, this one included (a bracket counts 3)")
    max_orders_per_second: int | None = _limit("orders admitted in any 1 s window")
    max_orders_per_minute: int | None = _limit("orders admitted in any 60 s window")
    max_daily_loss: float | None = _limit(
        "loss (realized + unrealized) since the trading day started; breach -> breaker"
    )
    max_drawdown: float | None = _limit("fall of day P&L from the day's peak; breach -> breaker")

    def to_dict(self) -> dict[str, float | int | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def merged(self, overrides: Mapping[str, float | int | None]) -> RiskLimits:
        """These limits with ``overrides`` (valid keys, checked values) replacing them."""
        changes: dict[str, Any] = {k: validate_limit(k, v) for k, v in overrides.items()}
        return dataclasses.replace(self, **changes)

    def over(self, base: RiskLimits) -> RiskLimits:
        """``base`` with every non-None key of ``self`` replacing it (an override layer)."""
        changes: dict[str, Any] = {k: v for k, v in self.to_dict().items() if v is not None}
        return dataclasses.replace(base, **changes)


LIMIT_KEYS: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(RiskLimits))
INT_KEYS: Final = frozenset({"max_open_orders", "max_orders_per_second", "max_orders_per_minute"})
LIMIT_DOCS: Final[Mapping[str, str]] = types.MappingProxyType(
    {f.name: f.metadata["doc"] for f in dataclasses.fields(RiskLimits)}
)


def validate_limit(key: str, value: Any) -> float | int | None:
    """``value`` as the limit ``key`` takes it, else :class:`LimitError` naming the key."""
    if key not in LIMIT_KEYS:
        raise LimitError(f"{key}: unknown limit (expected one of: {', '.join(LIMIT_KEYS)})")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LimitError(f"{key}: expected a number or null, got {value!r}")
    number: float | int
    if key in INT_KEYS:
        if not math.isfinite(value) or float(value) != int(value):
            raise LimitError(f"{key}: expected a whole number, got {value!r}")
        number = int(value)
    else:
        number = float(value)
    problem = _positive(number)
    if problem:
        raise LimitError(f"{key}: {problem}")
    return number


def strategy_scope(strategy: str) -> str:
    return STRATEGY_PREFIX + strategy


def parse_scope(scope: str) -> str:
    """``scope`` when valid (``account``, ``strategy:*``, ``strategy:<name>``), else LimitError."""
    if scope == ACCOUNT or (scope.startswith(STRATEGY_PREFIX) and len(scope) > len(STRATEGY_PREFIX)):
        return scope
    raise LimitError(f"scope {scope!r}: expected 'account', 'strategy:*' or 'strategy:<name>'")


def strategy_of(scope: str) -> str | None:
    """The strategy of a strategy scope (``*`` for the defaults), None for the account."""
    return scope[len(STRATEGY_PREFIX) :] if scope.startswith(STRATEGY_PREFIX) else None


# -- the config section ----------------------------------------------------------------------------


def _time_zone(value: Any) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"expected an IANA time zone like America/New_York, got {value!r}"
    return None


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _hhmm(value: Any) -> str | None:
    return None if _HHMM.match(value) else f"expected a time of day HH:MM (24 h), got {value!r}"


def _strategy_names(value: Any) -> str | None:
    for name in value:
        if not name or name == "*" or ":" in name:
            return f"{name!r} is not a strategy name"
    return None


def _checked_mapping(check: Check) -> Any:
    return dataclasses.field(default_factory=lambda: types.MappingProxyType({}), metadata={"check": check})


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """The ``risk:`` section of configs/trader.yaml."""

    trading_mode: TradingMode = "paper"
    """``live`` is required to trade a live account (TWS 7496 / Gateway 4001, or an account not
    starting with D); the trader refuses to start otherwise (see :mod:`trader.risk.guard`)."""
    limits: RiskLimits = field(default_factory=RiskLimits)
    """The account's limits."""
    strategy_limits: RiskLimits = field(default_factory=RiskLimits)
    """Every strategy's own limits, unless ``strategies`` overrides a key."""
    strategies: Mapping[str, RiskLimits] = _checked_mapping(_strategy_names)
    """Per-strategy overrides: a non-null key replaces ``strategy_limits``'s."""
    trading_day_tz: str = checked("America/New_York", _time_zone)
    trading_day_start: str = checked("17:00", _hhmm)
    """Local time a trading day starts (17:00 New York: the FX / CME daily roll, after the US
    equity close); the day that starts Monday 17:00 is Tuesday's."""
    kill_switch_poll_s: float = checked(0.25, in_range(0.01, 1.0))
    """How often the trader looks for the STOP file (at most 1 s: halts within one second)."""

    def strategy_override(self, strategy: str) -> RiskLimits:
        return self.strategies.get(strategy) or RiskLimits()
