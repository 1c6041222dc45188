"""Execution wired into the trader service, without sockets: the service's order checks over the
builders (new types, FOK/OPG refused, lot sizing), the place_algo helpers, the CLI's durations, and
the AlgoRunner executing a plan's actions through a stand-in OrderDesk and book."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import click
import pytest
from ib_async import Contract

from trader.book import Book, OrderDenied, OrderRequest
from trader.book import Order as BookOrder
from trader.cli.algo_cmd import parse_duration
from trader.execution.iceberg import IcebergPlan
from trader.execution.twap import TwapPlan
from trader.service.algo_api import check_terms, end_time, make_plan
from trader.service.algo_runner import AlgoRunner, RunningAlgo
from trader.service.orders import (
    ORDER_TYPES,
    BadOrder,
    Modification,
    OrderSpec,
    PlaceRequest,
    TraderError,
    build_legs,
    check_spec,
    quantity_for_cash,
)

AAPL = Contract(conId=265598, symbol="AAPL", secType="STK", currency="USD", localSymbol="AAPL")


def built(spec: OrderSpec) -> Any:
    ids = itertools.count(1)
    (leg,) = build_legs(check_spec(spec), lambda s: f"alpha:o1{s}", lambda: next(ids))
    return leg.order


# -- the service's order checks -------------------------------------------------------------------


def test_check_spec_when_new_types_then_built_with_their_ib_fields() -> None:
    assert len(ORDER_TYPES) == 8
    trail = built(OrderSpec("SELL", 5, "trail_limit", trail_amount=2.0, limit_offset=0.5, tif="GTC"))
    assert (trail.orderType, trail.auxPrice, trail.lmtPriceOffset, trail.tif) == (
        "TRAIL LIMIT",
        2.0,
        0.5,
        "GTC",
    )
    moc = built(OrderSpec("BUY", 3, "MOC"))
    assert (moc.orderType, moc.tif) == ("MOC", "DAY")
    loc = built(OrderSpec("BUY", 3, "LOC", limit_price=99.5))
    assert (loc.orderType, loc.lmtPrice) == ("LOC", 99.5)


@pytest.mark.parametrize("tif", ["FOK", "OPG", "fok"])
def test_check_spec_when_fok_or_opg_then_bad_order_saying_why(tif: str) -> None:
    with pytest.raises(BadOrder, match=r"not supported by Bourse.*error 321"):
        check_spec(OrderSpec("BUY", 1, "LMT", limit_price=10, tif=tif))


def test_quantity_for_cash_when_lot_size_then_whole_lots() -> None:
    assert quantity_for_cash(10_000, 181.5) == 55.0
    assert quantity_for_cash(10_000, 181.5, lot_size=10) == 50.0
    with pytest.raises(BadOrder, match="less than one lot of 100"):
        quantity_for_cash(10_000, 181.5, lot_size=100)


# -- place_algo's helpers and the CLI's durations -------------------------------------------------


def test_end_time_when_duration_or_end_then_epoch_seconds() -> None:
    assert end_time(30.0, None, 1000.0) == 1030.0
    assert end_time(None, 2000.0, 1000.0) == 2000.0
    assert end_time(None, "1970-01-01T00:30:00Z", 1000.0) == 1800.0
    for duration, end in ((None, None), (1.0, 2000.0), (-1.0, None), (None, 10.0), (None, "soon")):
        with pytest.raises(BadOrder):
            end_time(duration, end, 1000.0)


def test_check_terms_when_params_of_the_other_algo_then_bad_order() -> None:
    check_terms("twap", duration_s=10, end=None, style="market", display=None, limit_price=None)
    check_terms("iceberg", duration_s=None, end=None, style="limit", display=5, limit_price=10)
    cases: list[dict[str, Any]] = [
        {"kind": "twap", "duration_s": 10, "end": None, "style": "limit", "display": 5, "limit_price": None},
        {
            "kind": "twap",
            "duration_s": 10,
            "end": None,
            "style": "vwap",
            "display": None,
            "limit_price": None,
        },
        {
            "kind": "twap",
            "duration_s": None,
            "end": None,
            "style": "limit",
            "display": None,
            "limit_price": None,
        },
        {
            "kind": "iceberg",
            "duration_s": None,
            "end": None,
            "style": "limit",
            "display": 5,
            "limit_price": None,
        },
        {"kind": "iceberg", "duration_s": 5, "end": None, "style": "limit", "display": 5, "limit_price": 10},
    ]
    for case in cases:
        with pytest.raises(BadOrder):
            check_terms(case.pop("kind"), **case)
    plan = make_plan(
        "twap", "p1", "BUY", 30, 1.0, duration_s=3, end=None, slices=3, style="limit",
        display=None, limit_price=None,
    )  # fmt: skip
    assert isinstance(plan, TwapPlan) and plan.style == "limit_at_touch" and plan.slices == 3


def test_parse_duration_when_units_then_seconds() -> None:
    assert [parse_duration(t) for t in ("90", "30s", "10m", "1.5h")] == [90.0, 30.0, 600.0, 5400.0]
    for text in ("", "0", "soon", "10d"):
        with pytest.raises(click.BadParameter):
            parse_duration(text)


# -- the runner over a stand-in desk --------------------------------------------------------------


@dataclass
class FakeSub:
    ticker: Any = None


@dataclass
class FakeMd:
    subscribed: list[str] = field(default_factory=list)

    def subscribe(self, owner: str, contract: Contract) -> FakeSub:
        self.subscribed.append(owner)
        return FakeSub()

    def unsubscribe(self, owner: str, contract: Contract) -> bool:
        self.subscribed.remove(owner)
        return True


class FakeDesk:
    """Registers orders in a real Book; refuses the quantities in ``refuse`` like the gate does."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.placed: list[PlaceRequest] = []
        self.cancelled: list[str] = []
        self.modified: list[tuple[str, Modification]] = []
        self.refuse: set[float] = set()

    async def place(self, request: PlaceRequest) -> None:
        self.placed.append(request)
        spec = request.spec
        order, _ = self.app.book.register(
            OrderRequest(
                request.strategy, request.client_order_id, 265598, "AAPL",
                "BUY" if spec.action == "BUY" else "SELL", spec.quantity, 1, spec.order_type,
                spec.limit_price,
            )
        )  # fmt: skip
        self.app.runner.on_order(order)
        if spec.quantity in self.refuse:
            self.app.book.apply(OrderDenied(request.client_order_id, "max_position_quantity: too much", 2))
            self.app.runner.on_order(self.app.book.order(request.client_order_id))
            raise TraderError("refused", "max_position_quantity: too much")

    def cancel(self, client_order_id: str, strategy: str | None = None) -> None:
        self.cancelled.append(client_order_id)

    def modify(self, client_order_id: str, change: Modification, strategy: str | None = None) -> None:
        self.modified.append((client_order_id, change))


class FakeApp:
    def __init__(self) -> None:
        self.book = Book()
        self.md = FakeMd()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.runner = AlgoRunner(self)  # type: ignore[arg-type]
        self.desk = FakeDesk(self)

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self.events.append((topic, body))


async def settle(app: FakeApp, algo: RunningAlgo) -> None:
    for _ in range(5):
        await app.runner.settled(algo, 1.0)
        await asyncio.sleep(0)


def test_runner_when_iceberg_child_refused_then_reported_rejected_and_published() -> None:
    async def body() -> None:
        app = FakeApp()
        app.desk.refuse = {10.0}
        plan = IcebergPlan(30, 10, "BUY", 100.0, parent_id="ice1", retry_delay=0.0, max_failures=1)
        algo = RunningAlgo("alpha", plan, AAPL)
        app.runner.start(algo)
        await settle(app, algo)
        assert [r.client_order_id for r in app.desk.placed] == ["ice1.1"]
        assert plan.children["ice1.1"].state == "Rejected"
        assert plan.done and plan.reason.startswith("failed")
        assert any("max_position_quantity" in e for e in algo.errors)
        assert app.events and app.events[-1][0] == "algo.alpha" and app.events[-1][1]["state"] == "done"
        assert app.md.subscribed == []  # unsubscribed once done
        assert algo.finished.is_set()

    asyncio.run(body())


def test_runner_when_cancelled_then_cancels_working_children_through_the_desk() -> None:
    async def body() -> None:
        app = FakeApp()
        plan = IcebergPlan(30, 10, "SELL", 100.0, parent_id="ice2")
        algo = RunningAlgo("alpha", plan, AAPL)
        app.runner.start(algo)
        await settle(app, algo)
        assert app.md.subscribed == ["algo:ice2"]
        app.runner.cancel("ice2")
        await settle(app, algo)
        assert app.desk.cancelled == ["ice2.1"] and plan.state == "cancelling"
        with pytest.raises(TraderError):
            app.runner.get("ice2", strategy="beta")
        assert app.runner.records(active_only=True)[0]["client_order_id"] == "ice2"

    asyncio.run(body())


def test_runner_when_twap_then_timer_armed_at_the_next_boundary() -> None:
    async def body() -> None:
        app = FakeApp()
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = time.time()
        plan = TwapPlan(30, "BUY", start, start + 30, 3, "market", parent_id="tw1")
        algo = RunningAlgo("alpha", plan, AAPL)
        app.runner.start(algo)
        await settle(app, algo)
        assert [r.spec.quantity for r in app.desk.placed] == [10.0]
        assert algo.timer is not None
        assert algo.timer.when() - now == pytest.approx(10.0, abs=0.5)
        app.runner.close()

    asyncio.run(body())


def test_runner_when_order_is_not_a_child_then_ignored() -> None:
    app = FakeApp()
    order = BookOrder("alpha", "other.1", 1, "AAPL", "BUY", 1.0, 1)
    app.runner.on_order(order)  # no algo "other": nothing happens
    assert app.events == []
