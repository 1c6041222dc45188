"""IB-style commissions (fixed pricing), applied per order so minimums and caps count once.

* US stocks: 0.005 USD per share, at least 1.00 USD, at most 1 % of the trade value.
* Futures: a broker fee per contract (0.85 USD) plus the exchange fee of the product and a
  regulatory fee (configurable; the defaults approximate CME / NYMEX / COMEX fees).
* FX (IDEALPRO): 0.2 basis points of the value, at least 2.00 USD.

An order's executions are charged the difference of the schedule between the order's cumulative
quantity/value after and before the fill, so the order pays the schedule on its total (the minimum
on the first fill, nothing more for small later fills while the minimum still covers them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trader.exchange.instruments import Instrument

_DEFAULT_FUTURES_FEES = MappingProxyType({"ES": 1.38, "NQ": 1.38, "CL": 1.50, "GC": 1.55})


@dataclass(frozen=True, slots=True)
class CommissionSchedule:
    stock_per_share: float = 0.005
    stock_minimum: float = 1.0
    stock_maximum_pct: float = 1.0
    """Cap as a percentage of the trade value."""
    futures_per_contract: float = 0.85
    futures_exchange_fees: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_FUTURES_FEES)
    futures_default_exchange_fee: float = 1.20
    futures_regulatory_fee: float = 0.02
    fx_bps: float = 0.2
    fx_minimum: float = 2.0
    currency: str = "USD"

    def order_total(self, inst: Instrument, quantity: float, value: float) -> float:
        """What a whole order of ``quantity`` units worth ``value`` (currency) costs; 0 for nothing."""
        quantity, value = abs(quantity), abs(value)
        if quantity == 0:
            return 0.0
        if inst.secType == "FUT":
            fee = self.futures_exchange_fees.get(inst.symbol, self.futures_default_exchange_fee)
            return round(quantity * (self.futures_per_contract + fee + self.futures_regulatory_fee), 8)
        if inst.secType == "CASH":
            return round(max(value * self.fx_bps / 10_000.0, self.fx_minimum), 8)
        per_share = max(quantity * self.stock_per_share, self.stock_minimum)
        return round(min(per_share, value * self.stock_maximum_pct / 100.0), 8)

    def for_fill(
        self, inst: Instrument, filled_before: float, value_before: float, shares: float, price: float
    ) -> float:
        """The commission of one execution of ``shares`` at ``price`` of an order that had
        ``filled_before`` units worth ``value_before`` filled already."""
        value = abs(shares * price * inst.multiplier)
        after = self.order_total(inst, filled_before + shares, value_before + value)
        before = self.order_total(inst, filled_before, value_before)
        return round(max(0.0, after - before), 8)

    def estimate(self, inst: Instrument, quantity: float, price: float) -> float:
        """The commission of a whole order filled at ``price`` (what-if)."""
        return self.order_total(inst, quantity, quantity * price * inst.multiplier)
