"""The ``info`` dashboard's state and its rendering (pure: no sockets, no terminal).

:class:`DashboardState` is loaded from RPC results (:meth:`DashboardState.load`) and kept current
with events (:meth:`DashboardState.apply_event`) and ticks (:meth:`DashboardState.apply_ticks`);
:func:`render` draws one frame of it. The live loop is :mod:`trader.cli.dashboard`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trader.cli.pycron_cmd import STATE_STYLES, human_uptime
from trader.cli.status_cmd import IB_STYLES, trading_state

FILLS_KEPT = 50
SIDE_BY_SIDE = 130
"""The tables in two columns from this width on."""
DONE_STATES = {"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected", "Unknown"}


@dataclass
class DashboardState:
    """Everything the dashboard shows; changed only by :meth:`load`, :meth:`apply_event` and
    :meth:`apply_ticks` (no sockets: tests feed it directly)."""

    positions: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FILLS_KEPT))
    connection: dict[str, Any] = field(default_factory=dict)
    trading: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By tick topic: bid, ask, last, time (epoch s), con_id."""
    marks: dict[int, float] = field(default_factory=dict)
    last_error: str = ""
    reconcile: str = ""
    events: int = 0
    updated: float = 0.0

    def load(self, snapshot: Mapping[str, Any]) -> None:
        """The initial state: ``status``, ``positions``, ``orders``, ``fills``, ``subscriptions``
        (as the RPC returns them) and ``processes`` (:func:`pycron_processes`), each optional."""
        if "status" in snapshot:
            status = snapshot["status"]
            self.connection = dict(status.get("ib", {}))
            self.trading = trading_state(status)
        for position in snapshot.get("positions", []):
            self._position(position)
        for order in snapshot.get("orders", []):
            self._order(order)
        for fill in snapshot.get("fills", []):
            self.fills.append(fill)
        if "subscriptions" in snapshot:
            self.set_subscriptions(snapshot["subscriptions"])
        if "processes" in snapshot:
            self.processes = dict(snapshot["processes"])
        self.updated = time.time()

    def set_subscriptions(self, subs: Sequence[Mapping[str, Any]]) -> None:
        self.subscriptions = sorted(str(s.get("topic")) for s in subs)
        for sub in subs:
            self.prices.setdefault(str(sub.get("topic")), {"con_id": sub.get("con_id")})

    def apply_event(self, topic: str, payload: Mapping[str, Any]) -> None:
        """One event of the events PUB (topics and bodies of docs/rpc.md)."""
        self.events += 1
        self.updated = time.time()
        kind = topic.split(".", 1)[0]
        if kind == "order":
            self._order(payload)
        elif kind == "fill":
            if payload.get("kind") == "commission":
                for fill in self.fills:
                    if fill.get("exec_id") == payload.get("exec_id"):
                        fill.update(payload)
                        return
            self.fills.append(dict(payload))
        elif kind == "position":
            self._position(payload)
        elif kind == "connection":
            self.connection.update({k: v for k, v in payload.items() if k != "previous"})
        elif kind == "reconcile":
            self.reconcile = f"{payload.get('reason')}: {payload.get('count', 0)} findings"
        elif kind == "error":
            self.last_error = f"{payload.get('source')} {payload.get('code')}: {payload.get('message')}"

    def apply_ticks(self, topic: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Ticks of ``topic`` (rows of a tick batch, oldest first): keep the latest price fields."""
        if not rows:
            return
        price = self.prices.setdefault(topic, {})
        for row in rows:
            for key in ("bid", "ask", "last", "con_id"):
                value = row.get(key)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    price[key] = value
            price["time"] = _epoch(row.get("time"))
        mark = _mark(price)
        if mark is not None and price.get("con_id") is not None:
            self.marks[int(price["con_id"])] = mark
        self.updated = time.time()

    def _order(self, order: Mapping[str, Any]) -> None:
        key = str(order.get("client_order_id"))
        old = self.orders.get(key)
        if old is None or int(order.get("updated_ns") or 0) >= int(old.get("updated_ns") or 0):
            self.orders[key] = dict(order)

    def _position(self, position: Mapping[str, Any]) -> None:
        key = (str(position.get("account")), str(position.get("strategy")), int(position.get("con_id") or 0))
        self.positions[key] = dict(position)

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o.get("working", o.get("state") not in DONE_STATES)]

    def unrealized(self, position: Mapping[str, Any]) -> float | None:
        """At the latest tick's mark when there is one, else the position's own."""
        mark = self.marks.get(int(position.get("con_id") or 0))
        if mark is None:
            value = position.get("unrealized")
            return None if value is None else float(value)
        quantity = float(position.get("quantity") or 0)
        multiplier = float(position.get("multiplier") or 1)
        return (mark - float(position.get("avg_price") or 0)) * quantity * multiplier

    def pnl(self) -> dict[str, dict[str, float]]:
        """Realized, unrealized and total per strategy (and ``total``), from the positions."""
        out: dict[str, dict[str, float]] = {}
        for (_, strategy, _), position in sorted(self.positions.items()):
            for name in (strategy, "total"):
                row = out.setdefault(name, {"realized": 0.0, "unrealized": 0.0, "total": 0.0})
                realized, unrealized = float(position.get("realized") or 0), self.unrealized(position) or 0.0
                row["realized"] += realized
                row["unrealized"] += unrealized
                row["total"] += realized + unrealized
        if "total" in out:
            out["total"] = out.pop("total")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "trading": self.trading,
            "positions": list(self.positions.values()),
            "open_orders": self.open_orders(),
            "fills": list(self.fills),
            "pnl": self.pnl(),
            "prices": self.prices,
            "processes": self.processes,
        }


def _epoch(value: Any) -> float:
    if value is None:
        return time.time()
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    number = float(value)
    return number / 1e9 if number > 1e12 else number


def _mark(price: Mapping[str, Any]) -> float | None:
    bid, ask, last = price.get("bid"), price.get("ask"), price.get("last")
    if bid and ask and bid > 0 and ask > 0:
        return (float(bid) + float(ask)) / 2
    return float(last) if last and last > 0 else None


# --- rendering ------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):,.{digits}f}"


def _signed(value: float) -> Text:
    return Text(_num(value), style="green" if value > 0 else "red" if value < 0 else "")


def _table(title: str, columns: Sequence[str], rows: list[list[Any]], limit: int) -> Table:
    table = Table(title=title, title_justify="left", expand=True, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        left = column in ("strategy", "symbol", "id", "state", "order")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for row in rows[:limit]:
        table.add_row(*row)
    if not rows:
        table.add_row(*["-"] * len(columns))
    elif len(rows) > limit:
        table.caption = f"{len(rows) - limit} more"
    return table


def _header(state: DashboardState) -> Text:
    ib = state.connection
    ib_state = str(ib.get("state", "unknown"))
    line = Text.assemble(("Bourse ", "bold"), datetime.now().strftime("%H:%M:%S"), "  IB: ")
    line.append(ib_state, style=IB_STYLES.get(ib_state, "bold red"))
    if ib.get("since"):
        line.append(f" {human_uptime(max(0.0, time.time() - float(ib['since'])))}")
    line.append(f"  account {ib.get('account') or '-'}  client {ib.get('client_id', '-')}")
    trading = state.trading
    line.append(f"  trading: {trading.get('state', '-')}")
    if trading.get("note"):
        line.append(f" ({trading['note']})", style="dim")
    line.append("   q quits", style="dim")
    return line


def _processes(state: DashboardState) -> Text:
    procs = state.processes
    line = Text("processes: ", style="bold")
    if not procs:
        return line.append("-")
    if not procs.get("running"):
        return line.append(str(procs.get("error", "pycron is not running")), style="red")
    for job in procs.get("jobs", []):
        job_state = str(job.get("state"))
        line.append(f"{job.get('name')} ").append(job_state, style=STATE_STYLES.get(job_state, ""))
        line.append("  ")
    return line


def render(state: DashboardState, width: int, height: int) -> RenderableType:
    """One frame of ``state`` for a ``width`` x ``height`` screen."""
    rows = max(2, (height - 16) // 3)
    positions = [
        [
            p.get("strategy"),
            p.get("symbol"),
            _num(p.get("quantity"), 0),
            _num(p.get("avg_price")),
            _num(state.marks.get(int(p.get("con_id") or 0), p.get("mark"))),
            _signed(state.unrealized(p) or 0.0),
            _signed(float(p.get("realized") or 0)),
        ]
        for p in sorted(
            state.positions.values(), key=lambda p: (str(p.get("strategy")), str(p.get("symbol")))
        )
        if p.get("quantity")
    ]
    orders = [
        [
            o.get("client_order_id"),
            o.get("strategy"),
            o.get("symbol"),
            f"{o.get('action')} {_num(o.get('quantity'), 0)} {o.get('order_type')}",
            _num(o.get("limit_price") or o.get("aux_price")),
            _num(o.get("filled"), 0),
            o.get("state"),
        ]
        for o in sorted(state.open_orders(), key=lambda o: int(o.get("created_ns") or 0))
    ]
    fills = [
        [
            datetime.fromtimestamp(int(f.get("time_ns") or 0) / 1e9).strftime("%H:%M:%S"),
            f.get("strategy"),
            f.get("symbol"),
            f"{f.get('side')} {_num(f.get('shares'), 0)}",
            _num(f.get("price")),
            _num(f.get("commission")),
        ]
        for f in reversed(state.fills)
    ]
    pnl = [
        [name, _signed(r["realized"]), _signed(r["unrealized"]), _signed(r["total"])]
        for name, r in state.pnl().items()
    ]
    now = time.time()
    prices = [
        [
            topic,
            _num(p.get("bid")),
            _num(p.get("ask")),
            _num(p.get("last")),
            f"{human_uptime(now - p['time'])}" if p.get("time") else "-",
        ]
        for topic, p in sorted(state.prices.items())
    ]
    left = Group(
        _table(
            "positions",
            ("strategy", "symbol", "qty", "avg", "mark", "unrealized", "realized"),
            positions,
            rows,
        ),
        _table(
            "open orders", ("id", "strategy", "symbol", "order", "price", "filled", "state"), orders, rows
        ),
        _table("last fills", ("time", "strategy", "symbol", "side", "price", "comm."), fills, rows),
    )
    right = Group(
        _table("P&L", ("strategy", "realized", "unrealized", "total"), pnl, rows),
        _table("prices", ("symbol", "bid", "ask", "last", "age"), prices, 2 * rows),
    )
    if width >= SIDE_BY_SIDE:
        body: RenderableType = Table.grid(expand=True, padding=(0, 1))
        assert isinstance(body, Table)
        body.add_column(ratio=3)
        body.add_column(ratio=2)
        body.add_row(left, right)
    else:
        body = Group(left, right)
    footer = Text(f"events {state.events}", style="dim")
    for extra in (state.reconcile and f"  reconcile {state.reconcile}", state.last_error and "  last error "):
        if extra:
            footer.append(extra, style="dim")
    if state.last_error:
        footer.append(state.last_error, style="red")
    return Group(_header(state), _processes(state), body, footer)
