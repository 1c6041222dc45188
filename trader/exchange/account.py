"""The paper account: cash, positions, P&L and Reg-T style margins, consistent with every fill.

Accounting (all in the base currency, USD; every instrument of the universe is USD-quoted):

* stocks and FX pay their notional: ``cash -= qty * price * multiplier + commission``, and count
  ``qty * mark * multiplier`` in the net liquidation value;
* futures only move cash by realized P&L and commissions; their open P&L
  ``qty * (mark * multiplier - basis)`` counts in the net liquidation value.

So after any fill, NLV changes by exactly ``(mark - price) * qty * multiplier - commission``.
``avgCost`` is IB's: per unit, multiplier included, commissions included; realized P&L of a closing
trade is IB's too: ``(price * multiplier - avgCost) * closed - closing commission``. Daily P&L is
the change of each position's value since the start of the day plus its cash flows of the day.
Margins: ``|qty| * mark * multiplier`` times the instrument's initial / maintenance rates (Reg-T
50 % / 25 % for stocks in the shipped universe). Nothing here reads the clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from trader.exchange.instruments import Instrument, Universe
from trader.exchange.sessions import NS

Marks = Mapping[int, float]
"""Mark price by conId (what positions are valued at)."""


@dataclass(slots=True)
class Position:
    conId: int
    quantity: float = 0.0
    avgCost: float = 0.0
    """IB's average cost: per unit, multiplier and commissions included."""
    basis: float = 0.0
    """Average price per unit with the multiplier, without commissions."""
    realized: float = 0.0
    """Realized P&L of the day (IB style, net of commissions)."""
    day_value: float = 0.0
    """Contribution to the net liquidation value at the start of the day."""
    day_flow: float = 0.0
    """Cash the position brought in (+) or took (-) during the day."""


@dataclass(frozen=True, slots=True)
class FillResult:
    position: Position
    realized: float | None
    """IB realized P&L of the fill (None when it only opened or added)."""


@dataclass(frozen=True, slots=True)
class AccountValue:
    """An updateAccountValue row."""

    key: str
    value: str
    currency: str
    account: str


@dataclass(frozen=True, slots=True)
class PortfolioRow:
    """An updatePortfolio row."""

    conId: int
    position: float
    marketPrice: float
    marketValue: float
    averageCost: float
    unrealizedPNL: float
    realizedPNL: float
    account: str


@dataclass(frozen=True, slots=True)
class PnL:
    """reqPnL."""

    dailyPnL: float
    unrealizedPnL: float
    realizedPnL: float


@dataclass(frozen=True, slots=True)
class PnLSingle:
    """reqPnLSingle."""

    conId: int
    position: float
    dailyPnL: float
    unrealizedPnL: float
    realizedPnL: float
    value: float


@dataclass(frozen=True, slots=True)
class Margins:
    init: float
    maint: float


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Margin and equity before and after a hypothetical trade (whatIf orders)."""

    before: Margins
    after: Margins
    equity_before: float
    equity_after: float

    def texts(self) -> tuple[str, str, str, str, str, str, str, str, str]:
        """TWS's nine OrderState strings: init/maint/equity before, change, after."""
        b, a = self.before, self.after
        values = (
            *(b.init, b.maint, self.equity_before),
            *(a.init - b.init, a.maint - b.maint, self.equity_after - self.equity_before),
            *(a.init, a.maint, self.equity_after),
        )
        b_init, b_maint, b_eq, c_init, c_maint, c_eq, a_init, a_maint, a_eq = (f"{v:.2f}" for v in values)
        return b_init, b_maint, b_eq, c_init, c_maint, c_eq, a_init, a_maint, a_eq


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Everything TWS reports about the account, computed at one set of marks."""

    account: str
    currency: str
    cash: float
    net_liquidation: float
    gross_position_value: float
    stock_market_value: float
    futures_pnl: float
    unrealized_pnl: float
    realized_pnl: float
    daily_pnl: float
    init_margin: float
    maint_margin: float
    equity_with_loan: float
    available_funds: float
    excess_liquidity: float
    buying_power: float
    portfolio: tuple[PortfolioRow, ...]

    @property
    def pnl(self) -> PnL:
        return PnL(self.daily_pnl, self.unrealized_pnl, self.realized_pnl)

    @property
    def values(self) -> tuple[AccountValue, ...]:
        """The updateAccountValue rows (key, value text, currency), as TWS names them."""
        acct, cur = self.account, self.currency

        def money(key: str, value: float, *currencies: str) -> list[AccountValue]:
            return [AccountValue(key, f"{value:.2f}", c, acct) for c in currencies or (cur,)]

        cushion = self.excess_liquidity / self.net_liquidation if self.net_liquidation > 0 else 0.0
        rows = [
            AccountValue("AccountCode", acct, "", acct),
            AccountValue("AccountType", "INDIVIDUAL", "", acct),
            AccountValue("AccountReady", "true", "", acct),
            AccountValue("Currency", cur, cur, acct),
            AccountValue("ExchangeRate", "1.00", cur, acct),
            *money("NetLiquidation", self.net_liquidation),
            *money("NetLiquidationByCurrency", self.net_liquidation, "BASE", cur),
            *money("TotalCashValue", self.cash),
            *money("TotalCashBalance", self.cash, "BASE", cur),
            *money("CashBalance", self.cash, "BASE", cur),
            *money("SettledCash", self.cash),
            *money("AccruedCash", 0.0),
            *money("GrossPositionValue", self.gross_position_value),
            *money("StockMarketValue", self.stock_market_value, "BASE", cur),
            *money("FuturesPNL", self.futures_pnl, "BASE", cur),
            *money("UnrealizedPnL", self.unrealized_pnl, "BASE", cur),
            *money("RealizedPnL", self.realized_pnl, "BASE", cur),
            *money("EquityWithLoanValue", self.equity_with_loan),
            *money("InitMarginReq", self.init_margin),
            *money("MaintMarginReq", self.maint_margin),
            *money("FullInitMarginReq", self.init_margin),
            *money("FullMaintMarginReq", self.maint_margin),
            *money("LookAheadInitMarginReq", self.init_margin),
            *money("LookAheadMaintMarginReq", self.maint_margin),
            *money("AvailableFunds", self.available_funds),
            *money("FullAvailableFunds", self.available_funds),
            *money("LookAheadAvailableFunds", self.available_funds),
            *money("ExcessLiquidity", self.excess_liquidity),
            *money("FullExcessLiquidity", self.excess_liquidity),
            *money("LookAheadExcessLiquidity", self.excess_liquidity),
            *money("BuyingPower", self.buying_power),
            *money("RegTEquity", self.equity_with_loan),
            *money("RegTMargin", self.init_margin),
            *money("SMA", max(0.0, self.available_funds)),
            AccountValue("Cushion", f"{cushion:.6f}", "", acct),
            AccountValue("DayTradesRemaining", "-1", "", acct),
        ]
        return tuple(rows)


class Account:
    """A single-currency margin account (IB paper account ids look like DU1234567)."""

    def __init__(
        self,
        universe: Universe,
        account_id: str = "DU1234567",
        cash: float = 1_000_000.0,
        currency: str = "USD",
        time_zone: str = "US/Eastern",
    ) -> None:
        self.universe = universe
        self.account_id = account_id
        self.currency = currency
        self.initial_cash = cash
        self.cash = cash
        self.tz = ZoneInfo(time_zone)
        self.positions: dict[int, Position] = {}
        self.day = ""
        """The trading day the daily P&L counts from (local date of the account's zone)."""

    # -- fills ---------------------------------------------------------------------------------

    def apply_fill(self, inst: Instrument, quantity: float, price: float, commission: float) -> FillResult:
        """Book a fill of ``quantity`` (signed: + bought, - sold) at ``price``, paying ``commission``."""
        if quantity == 0:
            raise ValueError("a fill needs a quantity")
        pos = self.positions.get(inst.conId)
        if pos is None:
            pos = self.positions[inst.conId] = Position(inst.conId)
        unit = price * inst.multiplier
        q0 = pos.quantity
        size = abs(quantity)
        closing = min(size, abs(q0)) if q0 and (q0 > 0) != (quantity > 0) else 0.0
        opening = size - closing
        commission_close = commission * closing / size
        realized: float | None = None
        gross = 0.0
        if closing:
            side = 1.0 if q0 > 0 else -1.0
            gross = (unit - pos.basis) * closing * side
            realized = (unit - pos.avgCost) * closing * side - commission_close
            pos.quantity = q0 - side * closing
            pos.realized += realized
        if opening:
            direction = 1.0 if quantity > 0 else -1.0
            held = abs(pos.quantity)
            total = held + opening
            # IB: a long's cost includes its commission, a short's proceeds are net of it.
            opening_commission = direction * (commission - commission_close)
            pos.avgCost = (pos.avgCost * held + unit * opening + opening_commission) / total
            pos.basis = (pos.basis * held + unit * opening) / total
            pos.quantity = direction * total
        if abs(pos.quantity) < 1e-12:
            pos.quantity = pos.avgCost = pos.basis = 0.0
        flow = gross - commission if inst.secType == "FUT" else -quantity * unit - commission
        self.cash += flow
        pos.day_flow += flow
        return FillResult(pos, realized)

    def deposit(self, amount: float) -> None:
        """Add (or withdraw, negative) cash; not counted as P&L."""
        self.cash += amount

    # -- valuation -----------------------------------------------------------------------------

    def _mark(self, pos: Position, inst: Instrument, marks: Marks) -> float:
        mark = marks.get(pos.conId)
        if mark is None:
            return pos.basis / inst.multiplier if pos.quantity else 0.0
        return mark

    def contribution(self, pos: Position, marks: Marks) -> float:
        """What the position adds to the net liquidation value."""
        inst = self.universe[pos.conId]
        value = pos.quantity * self._mark(pos, inst, marks) * inst.multiplier
        return value - pos.quantity * pos.basis if inst.secType == "FUT" else value

    def net_liquidation(self, marks: Marks) -> float:
        return self.cash + sum(self.contribution(p, marks) for p in self.positions.values())

    def margins(self, marks: Marks, extra: Mapping[int, float] | None = None) -> Margins:
        """Initial and maintenance margin, optionally with hypothetical position changes."""
        quantities = {c: p.quantity for c, p in self.positions.items()}
        for con_id, qty in (extra or {}).items():
            quantities[con_id] = quantities.get(con_id, 0.0) + qty
        init = maint = 0.0
        for con_id, qty in quantities.items():
            if not qty:
                continue
            inst = self.universe[con_id]
            mark = marks.get(con_id)
            if mark is None:
                pos = self.positions.get(con_id)
                mark = pos.basis / inst.multiplier if pos is not None and pos.quantity else inst.price
            value = abs(qty) * mark * inst.multiplier
            init += value * inst.initMarginRate
            maint += value * inst.maintMarginRate
        return Margins(init, maint)

    def what_if(self, inst: Instrument, change: float, commission: float, marks: Marks) -> WhatIf:
        """Figures of trading ``change`` (signed) at the marks: margins before/after, and the
        equity with loan before and after paying the commission."""
        equity = self.net_liquidation(marks)
        after = self.margins(marks, {inst.conId: change})
        return WhatIf(self.margins(marks), after, equity, equity - commission)

    def row(self, pos: Position, marks: Marks) -> PortfolioRow:
        inst = self.universe[pos.conId]
        mark = self._mark(pos, inst, marks)
        value = pos.quantity * mark * inst.multiplier
        return PortfolioRow(
            pos.conId,
            pos.quantity,
            mark,
            value,
            pos.avgCost,
            value - pos.quantity * pos.avgCost,
            pos.realized,
            self.account_id,
        )

    def portfolio(self, marks: Marks) -> list[PortfolioRow]:
        """Open positions (updatePortfolio / reqPositions rows)."""
        return [self.row(p, marks) for p in self.positions.values() if p.quantity]

    def pnl_single(self, con_id: int, marks: Marks) -> PnLSingle | None:
        pos = self.positions.get(con_id)
        if pos is None:
            return None
        row = self.row(pos, marks)
        daily = self.contribution(pos, marks) + pos.day_flow - pos.day_value
        return PnLSingle(con_id, pos.quantity, daily, row.unrealizedPNL, pos.realized, row.marketValue)

    def pnl(self, marks: Marks) -> PnL:
        return self.snapshot(marks).pnl

    def snapshot(self, marks: Marks) -> AccountSnapshot:
        rows = self.portfolio(marks)
        nlv = self.net_liquidation(marks)
        margins = self.margins(marks)
        gross = stock = futures = 0.0
        for row in rows:
            inst = self.universe[row.conId]
            if inst.secType == "FUT":
                futures += row.marketValue - row.position * self.positions[row.conId].basis
            else:
                gross += abs(row.marketValue)
                if inst.secType == "STK":
                    stock += row.marketValue
        daily = sum(self.contribution(p, marks) + p.day_flow - p.day_value for p in self.positions.values())
        available = nlv - margins.init
        return AccountSnapshot(
            account=self.account_id,
            currency=self.currency,
            cash=self.cash,
            net_liquidation=nlv,
            gross_position_value=gross,
            stock_market_value=stock,
            futures_pnl=futures,
            unrealized_pnl=sum(r.unrealizedPNL for r in rows),
            realized_pnl=sum(p.realized for p in self.positions.values()),
            daily_pnl=daily,
            init_margin=margins.init,
            maint_margin=margins.maint,
            equity_with_loan=nlv,
            available_funds=available,
            excess_liquidity=nlv - margins.maint,
            buying_power=max(0.0, available) * 4.0,
            portfolio=tuple(rows),
        )

    def values(self, marks: Marks) -> tuple[AccountValue, ...]:
        return self.snapshot(marks).values

    # -- days, persistence ---------------------------------------------------------------------

    def day_of(self, now_ns: int) -> str:
        """The trading day of ``now_ns`` for daily P&L: the date in the account's zone."""
        return datetime.fromtimestamp(now_ns // NS, tz=self.tz).date().isoformat()

    def roll_day(self, day: str, marks: Marks) -> None:
        """Start a new day: daily P&L and realized P&L restart from the current marks."""
        self.day = day
        for con_id in [c for c, p in self.positions.items() if not p.quantity]:
            del self.positions[con_id]
        for pos in self.positions.values():
            pos.day_value = self.contribution(pos, marks)
            pos.day_flow = 0.0
            pos.realized = 0.0

    def reset(self, cash: float | None = None) -> None:
        """Back to a fresh account: no positions, ``cash`` (the initial cash by default)."""
        if cash is not None:
            self.initial_cash = cash
        self.cash = self.initial_cash
        self.positions.clear()
        self.day = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "currency": self.currency,
            "initial_cash": self.initial_cash,
            "cash": self.cash,
            "day": self.day,
            "positions": [dataclasses.asdict(p) for p in self.positions.values()],
        }

    @classmethod
    def from_dict(cls, universe: Universe, data: Mapping[str, Any], time_zone: str = "US/Eastern") -> Account:
        account = cls(
            universe, str(data["account_id"]), float(data["initial_cash"]), str(data["currency"]), time_zone
        )
        account.cash = float(data["cash"])
        account.day = str(data.get("day", ""))
        for raw in data.get("positions", []):
            pos = Position(**raw)
            if pos.conId in universe:
                account.positions[pos.conId] = pos
        return account
