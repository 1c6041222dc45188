"""The account feature: positions, account updates, account summary, the multi variants, P&L.

Every request answers at once with the current state and its end message; subscriptions then
receive (per session, only what changed since that session last got it):

* on every fill: ``position``, ``positionMulti`` and ``updatePortfolio`` of the position (from the
  engine's ``PositionEvent``, zero when closed), then the ``updateAccountValue`` /
  ``accountUpdateMulti`` rows that changed, from one account snapshot at the fill's time;
* every ``update_interval`` (TWS: 3 minutes; configurable): account values and portfolio rows at
  the new marks, the account time, account-summary and multi rows that changed;
* every ``pnl_interval`` (about 1 s, like TWS): ``pnl`` / ``pnlSingle`` when they changed.

Account summary tags are TWS's (NetLiquidation, BuyingPower, ...) plus ``$LEDGER`` (the ledger keys
in BASE), ``$LEDGER:<CUR>`` and ``$LEDGER:ALL``. The account snapshot is computed once per time
stamp and shared by all sessions (``core.extensions["account"]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from trader.exchange.account import AccountSnapshot, AccountValue, PortfolioRow
from trader.exchange.events import AccountValueEvent, Event, PositionEvent
from trader.exchange.feature_orders import contract_of
from trader.exchange.instruments import Instrument
from trader.exchange.market import Quote
from trader.exchange.protocol import (
    ApiRequest,
    CancelAccountSummary,
    CancelAccountUpdatesMulti,
    CancelPnL,
    CancelPnLSingle,
    CancelPositions,
    CancelPositionsMulti,
    ContractFields,
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqPnL,
    ReqPnLSingle,
    ReqPositions,
    ReqPositionsMulti,
    encode_account_download_end,
    encode_account_summary,
    encode_account_summary_end,
    encode_account_update_multi,
    encode_account_update_multi_end,
    encode_pnl,
    encode_pnl_single,
    encode_position,
    encode_position_end,
    encode_position_multi,
    encode_position_multi_end,
    encode_update_account_time,
    encode_update_account_value,
    encode_update_portfolio,
)
from trader.exchange.session_api import ExchangeCore, Handler, Session

NS = 1_000_000_000
ValueKey = tuple[str, str]
"""(key or tag, currency)."""
RowValues = tuple[float, float, float, float, float, float]

SUMMARY_ALIASES: Mapping[str, str] = {
    "PreviousDayEquityWithLoanValue": "EquityWithLoanValue",
    "ReqTEquity": "RegTEquity",
    "ReqTMargin": "RegTMargin",
}
"""Summary tags answered with another account value's figure."""


@dataclass(slots=True)
class AccountSubscriptions:
    """One session's account subscriptions and what it was last sent."""

    updates: bool = False
    positions: bool = False
    summaries: dict[int, tuple[str, ...]] = field(default_factory=dict)
    multi: dict[int, bool] = field(default_factory=dict)
    """reqId -> ledgerAndNLV."""
    positions_multi: set[int] = field(default_factory=set)
    pnl: dict[int, tuple[float, ...] | None] = field(default_factory=dict)
    """reqId -> the last values sent."""
    pnl_single: dict[int, tuple[int, tuple[float, ...] | None]] = field(default_factory=dict)
    """reqId -> (conId, last values sent)."""
    sent_values: dict[ValueKey, str] = field(default_factory=dict)
    sent_rows: dict[int, RowValues] = field(default_factory=dict)
    sent_summary: dict[int, dict[ValueKey, str]] = field(default_factory=dict)
    sent_multi: dict[int, dict[ValueKey, str]] = field(default_factory=dict)
    next_update_ns: int = 0
    next_pnl_ns: int = 0


@dataclass(slots=True)
class _Snapshot:
    time_ns: int
    snapshot: AccountSnapshot
    marks: dict[int, float]


def ledger_keys(values: Iterable[AccountValue]) -> frozenset[str]:
    """The per-currency ("cash balance") keys: those TWS also reports in BASE."""
    return frozenset({v.key for v in values if v.currency == "BASE"} | {"Currency", "ExchangeRate"})


def summary_rows(tags: Sequence[str], values: Sequence[AccountValue], base: str) -> list[AccountValue]:
    """reqAccountSummary rows for ``tags`` (unknown tags are skipped, as TWS does)."""
    by_key: dict[str, list[AccountValue]] = {}
    for value in values:
        by_key.setdefault(value.key, []).append(value)
    ledger = ledger_keys(values)
    rows: list[AccountValue] = []
    for tag in tags:
        if tag.startswith("$LEDGER"):
            wanted = tag.partition(":")[2].upper() or "BASE"
            for value in values:
                same = value.currency or base
                if value.key in ledger and wanted in ("ALL", same):
                    rows.append(value)
            continue
        candidates = by_key.get(SUMMARY_ALIASES.get(tag, tag), [])
        pick = next((v for v in candidates if v.currency == base), None) or next(
            (v for v in candidates if v.currency == ""), None
        )
        if pick is not None:
            rows.append(AccountValue(tag, pick.value, pick.currency, pick.account))
        elif tag == "Leverage":
            rows.append(AccountValue(tag, _leverage(by_key), "", values[0].account if values else ""))
    return rows


def _leverage(by_key: Mapping[str, list[AccountValue]]) -> str:
    def first(key: str) -> float:
        found = by_key.get(key)
        return float(found[0].value) if found else 0.0

    nlv = first("NetLiquidation")
    return f"{first('GrossPositionValue') / nlv:.2f}" if nlv > 0 else "0.00"


def _row_values(row: PortfolioRow | PositionEvent) -> RowValues:
    cost = row.avgCost if isinstance(row, PositionEvent) else row.averageCost
    return (row.position, row.marketPrice, row.marketValue, cost, row.unrealizedPNL, row.realizedPNL)


class AccountFeature:
    name = "account"

    def __init__(
        self, *, update_interval_s: float = 3.0, pnl_interval_s: float = 1.0, time_zone: str = "US/Eastern"
    ) -> None:
        self.update_interval_ns = int(update_interval_s * NS)
        self.pnl_interval_ns = int(pnl_interval_s * NS)
        self.tz = ZoneInfo(time_zone)
        self.handlers: Mapping[type[ApiRequest], Handler] = {
            ReqPositions: self.req_positions,
            CancelPositions: self.cancel_positions,
            ReqAccountUpdates: self.req_account_updates,
            ReqAccountSummary: self.req_account_summary,
            CancelAccountSummary: self.cancel_account_summary,
            ReqAccountUpdatesMulti: self.req_account_updates_multi,
            CancelAccountUpdatesMulti: self.cancel_account_updates_multi,
            ReqPositionsMulti: self.req_positions_multi,
            CancelPositionsMulti: self.cancel_positions_multi,
            ReqPnL: self.req_pnl,
            CancelPnL: self.cancel_pnl,
            ReqPnLSingle: self.req_pnl_single,
            CancelPnLSingle: self.cancel_pnl_single,
        }

    # -- state --------------------------------------------------------------------------------------

    def subs(self, session: Session) -> AccountSubscriptions:
        subs = session.extensions.get(self.name)
        if not isinstance(subs, AccountSubscriptions):
            subs = session.extensions[self.name] = AccountSubscriptions()
        return subs

    def snapshot(self, core: ExchangeCore, now_ns: int | None = None) -> _Snapshot:
        """The account at ``now_ns`` (default: the clock), computed once per time stamp."""
        now = core.clock() if now_ns is None else now_ns
        cached = core.extensions.get(self.name)
        if isinstance(cached, _Snapshot) and cached.time_ns == now:
            return cached
        marks = core.engine.marks(now)
        snap = _Snapshot(now, core.engine.account.snapshot(marks), marks)
        core.extensions[self.name] = snap
        return snap

    def _account_ok(self, session: Session, account: str, req_id: int) -> bool:
        if account in ("", "All", session.core.account_id):
            return True
        session.send_error(
            req_id, 321, f"Error validating request.-'bO' : cause - Invalid account code {account!r}."
        )
        return False

    def _contract(self, inst: Instrument) -> ContractFields:
        return contract_of(inst, inst.primaryExchange or inst.exchange)

    # -- positions ----------------------------------------------------------------------------------

    def req_positions(self, session: Session, request: ReqPositions) -> None:
        self.subs(session).positions = True
        core = session.core
        for pos in core.engine.account.positions.values():
            if pos.quantity:
                inst = core.universe[pos.conId]
                session.send(
                    encode_position(core.account_id, self._contract(inst), pos.quantity, pos.avgCost)
                )
        session.send(encode_position_end())

    def cancel_positions(self, session: Session, request: CancelPositions) -> None:
        self.subs(session).positions = False

    def req_positions_multi(self, session: Session, request: ReqPositionsMulti) -> None:
        if not self._account_ok(session, request.account, request.reqId):
            return
        self.subs(session).positions_multi.add(request.reqId)
        core = session.core
        for pos in core.engine.account.positions.values():
            if pos.quantity:
                contract = self._contract(core.universe[pos.conId])
                session.send(
                    encode_position_multi(
                        request.reqId,
                        core.account_id,
                        request.modelCode,
                        contract,
                        position=pos.quantity,
                        avgCost=pos.avgCost,
                    )
                )
        session.send(encode_position_multi_end(request.reqId))

    def cancel_positions_multi(self, session: Session, request: CancelPositionsMulti) -> None:
        self.subs(session).positions_multi.discard(request.reqId)

    # -- account updates ----------------------------------------------------------------------------

    def req_account_updates(self, session: Session, request: ReqAccountUpdates) -> None:
        subs = self.subs(session)
        if not request.subscribe:
            subs.updates = False
            return
        if not self._account_ok(session, request.acctCode, -1):
            return
        subs.updates = True
        subs.sent_values.clear()
        subs.sent_rows.clear()
        snap = self.snapshot(session.core)
        self._push_updates(session, subs, snap)
        session.send(encode_account_download_end(session.core.account_id))
        subs.next_update_ns = snap.time_ns + self.update_interval_ns

    def _push_updates(self, session: Session, subs: AccountSubscriptions, snap: _Snapshot) -> None:
        """Account values and portfolio rows that changed since this session got them, then the
        account time."""
        core = session.core
        for value in snap.snapshot.values:
            key = (value.key, value.currency)
            if subs.sent_values.get(key) != value.value:
                subs.sent_values[key] = value.value
                session.send(
                    encode_update_account_value(value.key, value.value, value.currency, value.account)
                )
        for row in snap.snapshot.portfolio:
            values = _row_values(row)
            if subs.sent_rows.get(row.conId) != values:
                subs.sent_rows[row.conId] = values
                self._send_portfolio_row(session, core.universe[row.conId], values)
        when = datetime.fromtimestamp(snap.time_ns // NS, tz=self.tz)
        session.send(encode_update_account_time(f"{when:%H:%M}"))

    def _send_portfolio_row(self, session: Session, inst: Instrument, values: RowValues) -> None:
        position, price, value, cost, unrealized, realized = values
        session.send(
            encode_update_portfolio(
                contract_of(inst),
                position=position,
                marketPrice=price,
                marketValue=value,
                averageCost=cost,
                unrealizedPNL=unrealized,
                realizedPNL=realized,
                accountName=session.core.account_id,
            )
        )

    # -- account summary and multi ------------------------------------------------------------------

    def req_account_summary(self, session: Session, request: ReqAccountSummary) -> None:
        subs = self.subs(session)
        tags = tuple(t.strip() for t in request.tags.split(",") if t.strip())
        subs.summaries[request.reqId] = tags
        sent = subs.sent_summary[request.reqId] = {}
        snap = self.snapshot(session.core)
        self._push_summary(session, request.reqId, tags, sent, snap)
        session.send(encode_account_summary_end(request.reqId))
        subs.next_update_ns = min(subs.next_update_ns or snap.time_ns, snap.time_ns) + self.update_interval_ns

    def _push_summary(
        self, session: Session, req_id: int, tags: Sequence[str], sent: dict[ValueKey, str], snap: _Snapshot
    ) -> None:
        base = snap.snapshot.currency
        for row in summary_rows(tags, snap.snapshot.values, base):
            key = (row.key, row.currency)
            if sent.get(key) != row.value:
                sent[key] = row.value
                session.send(encode_account_summary(req_id, row.account, row.key, row.value, row.currency))

    def cancel_account_summary(self, session: Session, request: CancelAccountSummary) -> None:
        subs = self.subs(session)
        subs.summaries.pop(request.reqId, None)
        subs.sent_summary.pop(request.reqId, None)

    def req_account_updates_multi(self, session: Session, request: ReqAccountUpdatesMulti) -> None:
        if not self._account_ok(session, request.account, request.reqId):
            return
        subs = self.subs(session)
        subs.multi[request.reqId] = request.ledgerAndNLV
        sent = subs.sent_multi[request.reqId] = {}
        self._push_multi(
            session, request.reqId, request.ledgerAndNLV, sent, self.snapshot(session.core).snapshot.values
        )
        session.send(encode_account_update_multi_end(request.reqId))

    def _push_multi(
        self,
        session: Session,
        req_id: int,
        ledger_only: bool,
        sent: dict[ValueKey, str],
        values: Sequence[AccountValue],
    ) -> None:
        wanted = ledger_keys(values) | {"NetLiquidation"} if ledger_only else None
        for value in values:
            key = (value.key, value.currency)
            if (wanted is None or value.key in wanted) and sent.get(key) != value.value:
                sent[key] = value.value
                session.send(
                    encode_account_update_multi(
                        req_id, value.account, "", key=value.key, value=value.value, currency=value.currency
                    )
                )

    def cancel_account_updates_multi(self, session: Session, request: CancelAccountUpdatesMulti) -> None:
        subs = self.subs(session)
        subs.multi.pop(request.reqId, None)
        subs.sent_multi.pop(request.reqId, None)

    # -- P&L ----------------------------------------------------------------------------------------

    def req_pnl(self, session: Session, request: ReqPnL) -> None:
        if self._account_ok(session, request.account, request.reqId):
            subs = self.subs(session)
            subs.pnl[request.reqId] = None
            self._push_pnl(session, subs, self.snapshot(session.core))

    def cancel_pnl(self, session: Session, request: CancelPnL) -> None:
        self.subs(session).pnl.pop(request.reqId, None)

    def req_pnl_single(self, session: Session, request: ReqPnLSingle) -> None:
        if not self._account_ok(session, request.account, request.reqId):
            return
        if request.conId not in session.core.universe:
            session.send_error(request.reqId, 200, "No security definition has been found for the request")
            return
        subs = self.subs(session)
        subs.pnl_single[request.reqId] = (request.conId, None)
        self._push_pnl(session, subs, self.snapshot(session.core))

    def cancel_pnl_single(self, session: Session, request: CancelPnLSingle) -> None:
        self.subs(session).pnl_single.pop(request.reqId, None)

    def _push_pnl(self, session: Session, subs: AccountSubscriptions, snap: _Snapshot) -> None:
        pnl = snap.snapshot.pnl
        figures = (pnl.dailyPnL, pnl.unrealizedPnL, pnl.realizedPnL)
        for req_id, last in subs.pnl.items():
            if last != figures:
                subs.pnl[req_id] = figures
                session.send(encode_pnl(req_id, *figures))
        account = session.core.engine.account
        for req_id, (con_id, last_single) in subs.pnl_single.items():
            single = account.pnl_single(con_id, snap.marks)
            if single is None:
                position, values = 0, (0.0, 0.0, 0.0, 0.0)
            else:
                position = round(single.position)
                values = (single.dailyPnL, single.unrealizedPnL, single.realizedPnL, single.value)
            if last_single != (position, *values):
                subs.pnl_single[req_id] = (con_id, (position, *values))
                daily, unrealized, realized, value = values
                session.send(
                    encode_pnl_single(
                        req_id,
                        pos=position,
                        dailyPnL=daily,
                        unrealizedPnL=unrealized,
                        realizedPnL=realized,
                        value=value,
                    )
                )

    # -- hooks --------------------------------------------------------------------------------------

    def on_events(self, session: Session, events: Sequence[Event]) -> None:
        subs = session.extensions.get(self.name)
        if not isinstance(subs, AccountSubscriptions):
            return
        core = session.core
        changed_at: int | None = None
        for event in events:
            if isinstance(event, PositionEvent):
                inst = core.universe.get(event.conId)
                if inst is None:
                    continue
                if subs.updates:
                    values = _row_values(event)
                    subs.sent_rows[event.conId] = values
                    self._send_portfolio_row(session, inst, values)
                if subs.positions:
                    session.send(
                        encode_position(event.account, self._contract(inst), event.position, event.avgCost)
                    )
                for req_id in subs.positions_multi:
                    session.send(
                        encode_position_multi(
                            req_id,
                            event.account,
                            "",
                            self._contract(inst),
                            position=event.position,
                            avgCost=event.avgCost,
                        )
                    )
            elif isinstance(event, AccountValueEvent):
                changed_at = event.time_ns
        if changed_at is not None and (subs.updates or subs.multi):
            # Every changed value (and the rows at the fill's marks) from one snapshot at the fill's
            # time, diffed against what this session last got.
            snap = self.snapshot(core, changed_at)
            if subs.updates:
                self._push_updates(session, subs, snap)
            for req_id, ledger_only in subs.multi.items():
                self._push_multi(session, req_id, ledger_only, subs.sent_multi[req_id], snap.snapshot.values)

    def on_step(self, session: Session, quotes: Sequence[Quote], now_ns: int) -> None:
        subs = session.extensions.get(self.name)
        if not isinstance(subs, AccountSubscriptions):
            return
        if (subs.updates or subs.summaries or subs.multi) and now_ns >= subs.next_update_ns:
            subs.next_update_ns = now_ns + self.update_interval_ns
            snap = self.snapshot(session.core, now_ns)
            if subs.updates:
                self._push_updates(session, subs, snap)
            for req_id, tags in subs.summaries.items():
                self._push_summary(session, req_id, tags, subs.sent_summary[req_id], snap)
            for req_id, ledger_only in subs.multi.items():
                self._push_multi(session, req_id, ledger_only, subs.sent_multi[req_id], snap.snapshot.values)
        if (subs.pnl or subs.pnl_single) and now_ns >= subs.next_pnl_ns:
            subs.next_pnl_ns = now_ns + self.pnl_interval_ns
            self._push_pnl(session, subs, self.snapshot(session.core, now_ns))

    def on_close(self, session: Session) -> None:
        session.extensions.pop(self.name, None)
