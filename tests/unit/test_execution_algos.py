"""Execution algorithms (trader.execution.twap, trader.execution.iceberg) as pure state machines,
driven by a simulated exchange: fills of any size at any time, cancels racing with fills,
rejections. No sockets, no clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trader.book.states import DONE_STATES as BOOK_DONE_STATES
from trader.execution.algos import DONE_STATES, Action, CancelChild, Done, ModifyChild, PlaceChild, Plan
from trader.execution.builders import BadOrder
from trader.execution.iceberg import IcebergPlan
from trader.execution.twap import TwapPlan

START, END = 1000.0, 1060.0


@dataclass
class SimChild:
    client_order_id: str
    quantity: float
    order_type: str
    limit_price: float | None
    filled: float = 0.0
    state: str = "Submitted"
    cancel_pending: bool = False

    @property
    def working(self) -> bool:
        return self.state not in DONE_STATES

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled if self.working else 0.0


class Sim:
    """An exchange for one plan: carries out its actions and reports back what happens."""

    def __init__(self, plan: Plan, *, instant_market: bool = False) -> None:
        self.plan = plan
        self.children: dict[str, SimChild] = {}
        self.actions: list[Action] = []
        self.done: list[str] = []
        self.instant_market = instant_market
        self.max_working = 0.0

    # -- the plan's side ---------------------------------------------------------------------------

    def run(self, actions: Iterable[Action]) -> None:
        queue: deque[Action] = deque(actions)
        while queue:
            action = queue.popleft()
            self.actions.append(action)
            queue.extend(self._carry_out(action))
            self.check()

    def _carry_out(self, action: Action) -> list[Action]:
        match action:
            case PlaceChild(child_id, quantity, order_type, limit_price, _):
                assert child_id not in self.children and quantity > 0
                child = SimChild(child_id, quantity, order_type, limit_price)
                self.children[child_id] = child
                if self.instant_market and order_type == "MKT":
                    child.filled, child.state = quantity, "Filled"
                return self.report(child)
            case ModifyChild(child_id, quantity, limit_price):
                child = self.children[child_id]
                if child.working and not child.cancel_pending:
                    if quantity is not None:
                        assert quantity >= child.quantity, "a modification never lowers the quantity"
                        child.quantity = quantity
                    if limit_price is not None:
                        child.limit_price = limit_price
                return self.report(child)
            case CancelChild(child_id):
                self.children[child_id].cancel_pending = True
                return []
            case Done(reason):
                self.done.append(reason)
                return []
        raise AssertionError(action)

    def report(self, child: SimChild) -> list[Action]:
        return self.plan.on_child_update(
            child.client_order_id, child.filled, child.quantity - child.filled, child.state, 100.0
        )

    # -- the exchange's side -----------------------------------------------------------------------

    def fill(self, child: SimChild, quantity: float) -> None:
        if not child.working or quantity <= 0:
            return
        child.filled += min(quantity, child.quantity - child.filled)
        child.state = "Filled" if child.filled >= child.quantity else "PartiallyFilled"
        self.run(self.report(child))

    def confirm_cancel(self, child: SimChild) -> None:
        if child.working and child.cancel_pending:
            child.state = "Cancelled"
            self.run(self.report(child))

    def reject(self, child: SimChild) -> None:
        if child.working:
            child.state = "Rejected"
            self.run(self.report(child))

    @property
    def working(self) -> list[SimChild]:
        return [c for c in self.children.values() if c.working]

    @property
    def filled(self) -> float:
        return sum(c.filled for c in self.children.values())

    def check(self) -> None:
        """The invariants: never more committed than the parent; status agrees with the exchange."""
        committed = sum(c.quantity if c.working else c.filled for c in self.children.values())
        assert committed <= self.plan.quantity + 1e-9, f"{committed} committed of {self.plan.quantity}"
        assert self.filled <= self.plan.quantity + 1e-9
        assert len(self.done) <= 1
        self.max_working = max(self.max_working, sum(c.remaining for c in self.working))

    def drain(self, now: float) -> None:
        """Confirm every cancel, fill every market order, until the plan is done."""
        for _ in range(50):
            if self.done:
                return
            for child in self.working:
                if child.cancel_pending:
                    self.confirm_cancel(child)
                elif child.order_type == "MKT":
                    self.fill(child, child.remaining)
            self.run(self.plan.on_timer(now))
            now += 1.0


def twap(
    quantity: float = 100,
    slices: int = 4,
    style: str = "limit_at_touch",
    *,
    lot_size: float = 1.0,
    max_failures: int = 3,
    retry_delay: float = 1.0,
) -> TwapPlan:
    return TwapPlan(
        quantity,
        "BUY",
        START,
        END,
        slices,
        style,
        parent_id="p1",
        lot_size=lot_size,
        max_failures=max_failures,
        retry_delay=retry_delay,
    )


def places(actions: list[Action]) -> list[PlaceChild]:
    return [a for a in actions if isinstance(a, PlaceChild)]


# -- common ----------------------------------------------------------------------------------------


def test_done_states_when_compared_then_the_books() -> None:
    assert {str(s) for s in BOOK_DONE_STATES} == set(DONE_STATES)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: twap(quantity=0), "quantity must be a positive number"),
        (lambda: twap(quantity=10.5), "not a whole number of lots of 1"),
        (lambda: twap(quantity=150, lot_size=100), "quantity 150 is not a whole number of lots of 100"),
        (lambda: twap(slices=0), "slices must be a whole number >= 1"),
        (lambda: twap(style="vwap"), "style must be one of limit_at_touch, market"),
        (lambda: TwapPlan(1, "BUY", END, START, 2, parent_id="p"), "end must be after start"),
        (lambda: TwapPlan(1, "HOLD", START, END, 2, parent_id="p"), "side must be one of BUY, SELL"),
        (lambda: TwapPlan(1, "BUY", START, END, 2, parent_id="a b"), "parent_id must be"),
        (lambda: IcebergPlan(100, 0, "BUY", 10, parent_id="p"), "display must be a positive number"),
        (
            lambda: IcebergPlan(100, 200, "BUY", 10, parent_id="p"),
            "display 200 is more than the quantity 100",
        ),
        (lambda: IcebergPlan(100, 10, "BUY", -1, parent_id="p"), "limit_price must be a positive number"),
        (lambda: IcebergPlan(100, 10, "BUY", 10, parent_id="p", max_failures=0), "max_failures"),
    ],
)
def test_plan_when_params_invalid_then_bad_order(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(BadOrder, match=message):
        make()


def test_on_child_update_when_unknown_child_then_ignored() -> None:
    plan = twap()
    plan.start(START)
    assert plan.on_child_update("p1.99", 5, 0, "Filled") == []
    assert plan.filled == 0


# -- TWAP ------------------------------------------------------------------------------------------


def test_twap_schedule_when_slices_then_boundaries_and_lot_targets() -> None:
    plan = twap(quantity=1000, slices=3, lot_size=100)
    assert [plan.boundary(k) for k in range(4)] == [1000.0, 1020.0, 1040.0, 1060.0]
    assert [plan.slice_at(t) for t in (999, 1000, 1019.99, 1020, 1059, 1060, 5000)] == [-1, 0, 0, 1, 2, 2, 2]
    assert [plan.target(k) for k in (-1, 0, 1, 2)] == [0.0, 300.0, 700.0, 1000.0]


def test_twap_when_before_start_then_nothing_and_timer_at_start() -> None:
    plan = twap()
    assert plan.start(990) == []
    assert plan.status()["state"] == "pending" and plan.next_timer() == START
    assert plan.on_tick(995, 99.9, 100.1) == []


def test_twap_limit_when_first_quote_then_child_at_bid_for_first_slice() -> None:
    plan = twap(quantity=100, slices=4)
    assert plan.start(START) == []  # no quote yet: nothing to price a passive child at
    actions = plan.on_tick(START + 1, 99.9, 100.1)
    assert actions == [PlaceChild("p1.1", 25.0, "LMT", 99.9, "BUY")]
    assert plan.on_tick(START + 2, 99.8, 100.0) == []  # repriced only at boundaries
    assert plan.next_timer() == 1015.0


def test_twap_limit_when_sell_then_child_at_ask() -> None:
    plan = TwapPlan(10, "SELL", START, END, 2, parent_id="s")
    assert plan.on_tick(START, 99.9, 100.1) == [PlaceChild("s.1", 5.0, "LMT", 100.1, "SELL")]


def test_twap_limit_when_boundary_with_unfilled_child_then_modified_up_and_repriced() -> None:
    plan = twap(quantity=100, slices=4)
    plan.on_tick(START, 99.9, 100.1)
    plan.on_child_update("p1.1", 10, 15, "PartiallyFilled")
    actions = plan.on_tick(1015, 99.5, 99.7)
    assert actions == [ModifyChild("p1.1", 50.0, 99.5)]  # target 50: 10 filled + 40 more working
    assert plan.on_timer(1016) == []


def test_twap_limit_when_child_filled_then_next_child_at_boundary_only() -> None:
    plan = twap(quantity=100, slices=4)
    plan.on_tick(START, 99.9, 100.1)
    assert plan.on_child_update("p1.1", 25, 0, "Filled") == []
    assert places(plan.on_tick(1015, 99.9, 100.1)) == [PlaceChild("p1.2", 25.0, "LMT", 99.9, "BUY")]


def test_twap_limit_when_last_slice_then_cancel_then_market_for_the_rest() -> None:
    plan = twap(quantity=100, slices=4)
    plan.on_tick(START, 99.9, 100.1)
    plan.on_child_update("p1.1", 20, 5, "PartiallyFilled")
    plan.on_tick(1015, 99.9, 100.1)
    plan.on_tick(1030, 99.9, 100.1)
    assert plan.on_tick(1045, 99.9, 100.1) == [CancelChild("p1.1")]
    assert plan.on_timer(1046) == []  # waits for the cancel: the child could still fill
    actions = plan.on_child_update("p1.1", 30, 0, "Cancelled")
    assert actions == [PlaceChild("p1.2", 70.0, "MKT", None, "BUY")]
    assert plan.on_child_update("p1.2", 70, 0, "Filled") == [Done("filled")]
    assert plan.status()["state"] == "done" and plan.next_timer() is None


def test_twap_market_when_slices_then_market_children_catch_up() -> None:
    plan = twap(quantity=10, slices=3, style="market")
    assert plan.start(START) == [PlaceChild("p1.1", 3.0, "MKT", None, "BUY")]
    plan.on_child_update("p1.1", 1, 0, "Cancelled")  # someone else cancelled it: a failure
    assert plan.on_timer(START + 0.5) == []  # holding for retry_delay
    assert plan.on_timer(START + 1) == [PlaceChild("p1.2", 2.0, "MKT", None, "BUY")]
    plan.on_child_update("p1.2", 2, 0, "Filled")
    assert plan.on_timer(1020) == [PlaceChild("p1.3", 4.0, "MKT", None, "BUY")]  # target 7 (6.67)
    plan.on_child_update("p1.3", 4, 0, "Filled")
    assert plan.on_timer(1040) == [PlaceChild("p1.4", 3.0, "MKT", None, "BUY")]
    assert plan.on_child_update("p1.4", 3, 0, "Filled") == [Done("filled")]
    assert plan.filled == 10


def test_twap_when_one_slice_then_one_market_order() -> None:
    plan = twap(quantity=7, slices=1)
    assert plan.start(START) == [PlaceChild("p1.1", 7.0, "MKT", None, "BUY")]


def test_twap_when_children_rejected_then_fails_after_max_failures() -> None:
    plan = twap(quantity=10, slices=1, max_failures=2, retry_delay=5)
    plan.start(START)
    assert plan.on_child_update("p1.1", 0, 0, "Rejected") == []
    assert plan.next_timer() == START + 5
    assert plan.on_timer(START + 5) == [PlaceChild("p1.2", 10.0, "MKT", None, "BUY")]
    (done,) = plan.on_child_update("p1.2", 0, 0, "Rejected")
    assert isinstance(done, Done) and done.reason.startswith("failed: 2 children failed")
    assert "p1.1 Rejected" in done.reason and plan.on_timer(START + 100) == []


def test_twap_when_cancelled_then_cancels_working_and_done_after_confirmation() -> None:
    plan = twap(quantity=100, slices=4)
    plan.on_tick(START, 99.9, 100.1)
    assert plan.cancel() == [CancelChild("p1.1")]
    assert plan.cancel() == []  # once per child
    assert plan.status()["state"] == "cancelling"
    assert plan.on_tick(1015, 99.9, 100.1) == []
    assert plan.on_child_update("p1.1", 3, 0, "Cancelled") == [Done("cancelled")]
    assert plan.filled == 3 and plan.on_tick(1050, 99.9, 100.1) == []


def test_twap_status_when_running_then_one_parent_with_its_children() -> None:
    plan = twap(quantity=100, slices=4)
    plan.on_tick(START, 99.9, 100.1)
    plan.on_child_update("p1.1", 10, 15, "PartiallyFilled", avg_price=99.9)
    status = plan.status()
    assert {k: status[k] for k in ("client_order_id", "algo", "action", "quantity", "filled")} == {
        "client_order_id": "p1",
        "algo": "twap",
        "action": "BUY",
        "quantity": 100.0,
        "filled": 10.0,
    }
    assert (status["remaining"], status["working"], status["avg_fill_price"], status["state"]) == (
        90.0,
        15.0,
        99.9,
        "running",
    )
    assert status["params"] == {
        "start": START,
        "end": END,
        "slices": 4,
        "style": "limit_at_touch",
        "slice": 0,
        "target": 25.0,
        "next_boundary": 1015.0,
    }
    (child,) = status["children"]
    assert (child["client_order_id"], child["state"], child["remaining"], child["limit_price"]) == (
        "p1.1",
        "PartiallyFilled",
        15.0,
        99.9,
    )


# -- iceberg ---------------------------------------------------------------------------------------


def test_iceberg_when_started_then_one_display_child_at_the_limit() -> None:
    plan = IcebergPlan(250, 100, "SELL", 50.5, parent_id="ice")
    assert plan.start(0) == [PlaceChild("ice.1", 100.0, "LMT", 50.5, "SELL")]
    assert plan.on_child_update("ice.1", 60, 40, "PartiallyFilled") == []  # refreshed when filled
    assert plan.on_child_update("ice.1", 100, 0, "Filled") == [
        PlaceChild("ice.2", 100.0, "LMT", 50.5, "SELL")
    ]
    assert plan.on_child_update("ice.2", 100, 0, "Filled") == [PlaceChild("ice.3", 50.0, "LMT", 50.5, "SELL")]
    assert plan.on_child_update("ice.3", 50, 0, "Filled") == [Done("filled")]


def test_iceberg_when_repriced_then_working_child_modified_and_next_at_new_price() -> None:
    plan = IcebergPlan(200, 100, "BUY", 10, parent_id="ice")
    plan.start(0)
    assert plan.reprice(10.5) == [ModifyChild("ice.1", None, 10.5)]
    assert plan.on_child_update("ice.1", 100, 0, "Filled") == [PlaceChild("ice.2", 100.0, "LMT", 10.5, "BUY")]
    assert plan.status()["params"] == {"display": 100.0, "limit_price": 10.5}


def test_iceberg_when_child_rejected_then_retried_after_delay() -> None:
    plan = IcebergPlan(200, 100, "BUY", 10, parent_id="ice", retry_delay=2)
    plan.start(0)
    assert plan.on_child_update("ice.1", 0, 0, "Rejected") == []
    assert plan.on_timer(1) == [] and plan.next_timer() == 2
    assert plan.on_timer(2) == [PlaceChild("ice.2", 100.0, "LMT", 10, "BUY")]


# -- properties ------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exchange_step(sim: Sim, data: st.DataObject, *, fill_markets: bool) -> None:
    """Random fills of the working children; pending cancels confirmed (or not yet), maybe after
    a last fill (the race of a cancel with a fill)."""
    for child in list(sim.working):
        if not child.working:
            continue
        if child.order_type == "MKT" and fill_markets:
            sim.fill(child, data.draw(st.sampled_from([child.remaining, 0.0, 1.0]), label="mkt fill"))
        elif child.order_type == "LMT":
            sim.fill(child, data.draw(st.integers(0, int(child.remaining)), label="lmt fill"))
        if child.cancel_pending and data.draw(st.booleans(), label="confirm cancel"):
            sim.confirm_cancel(child)


@PROPERTY
@given(
    quantity=st.integers(1, 400),
    slices=st.integers(1, 8),
    style=st.sampled_from(["limit_at_touch", "market"]),
    data=st.data(),
)
def test_twap_when_any_fills_then_children_sum_exactly_to_quantity(
    quantity: int, slices: int, style: str, data: st.DataObject
) -> None:
    plan = twap(quantity=quantity, slices=slices, style=style)
    sim = Sim(plan)
    now = START - 5.0
    sim.run(plan.start(now))
    while now < END + 30:
        now += data.draw(st.sampled_from([0.5, 1.0, 3.0, 7.0, 15.0]), label="dt")
        bid = data.draw(st.sampled_from([None, 99.0, 99.5, 100.0]), label="bid")
        sim.run(plan.on_tick(now, bid, None if bid is None else bid + 0.1))
        _exchange_step(sim, data, fill_markets=True)
        sim.run(plan.on_timer(now))
    sim.drain(now)
    assert sim.done == ["filled"]
    assert sim.filled == quantity and plan.filled == quantity and not sim.working
    assert all(c.startswith("p1.") and c[3:].isdigit() for c in sim.children)


@PROPERTY
@given(quantity=st.integers(1, 400), slices=st.integers(1, 8), data=st.data())
def test_twap_when_markets_fill_at_once_then_done_by_the_end_time(
    quantity: int, slices: int, data: st.DataObject
) -> None:
    plan = twap(quantity=quantity, slices=slices)
    sim = Sim(plan, instant_market=True)
    sim.run(plan.start(START))
    now = START
    while not sim.done and now < END:
        now = min(END, now + data.draw(st.sampled_from([1.0, 2.5, 5.0]), label="dt"))
        sim.run(plan.on_tick(now, 100.0, 100.1))
        for child in list(sim.working):  # limits fill anyhow; cancels are confirmed at once
            if child.cancel_pending:
                sim.fill(child, data.draw(st.integers(0, int(child.remaining)), label="race"))
                sim.confirm_cancel(child)
            else:
                sim.fill(child, data.draw(st.integers(0, int(child.remaining)), label="fill"))
        sim.run(plan.on_timer(now))
    assert now <= END and sim.done == ["filled"] and sim.filled == quantity


@PROPERTY
@given(quantity=st.integers(1, 600), display=st.integers(1, 200), data=st.data())
def test_iceberg_when_any_fills_then_never_more_than_display_working(
    quantity: int, display: int, data: st.DataObject
) -> None:
    display = min(display, quantity)
    plan = IcebergPlan(quantity, display, "BUY", 10.0, parent_id="ice", max_failures=1000, retry_delay=0)
    sim = Sim(plan)
    sim.run(plan.start(0))
    for step in range(1, 40):  # random fills and rejections ...
        for child in sim.working:
            if data.draw(st.integers(0, 9), label="reject?") == 0:
                sim.reject(child)
            else:
                sim.fill(child, data.draw(st.integers(0, int(child.remaining)), label="fill"))
            assert len(sim.working) <= 1
        sim.run(plan.on_timer(float(step)))
        assert len(sim.working) <= 1
    while not sim.done:  # ... then whole fills until the end
        (child,) = sim.working
        sim.fill(child, child.remaining)
        assert len(sim.working) <= 1
    assert sim.max_working <= display
    assert sim.done == ["filled"] and sim.filled == quantity


@PROPERTY
@given(
    algo=st.sampled_from(["twap-limit", "twap-market", "iceberg"]),
    steps_before=st.integers(0, 20),
    data=st.data(),
)
def test_plan_when_cancelled_then_nothing_left_working(
    algo: str, steps_before: int, data: st.DataObject
) -> None:
    plan: Plan
    if algo == "iceberg":
        plan = IcebergPlan(500, 50, "SELL", 10.0, parent_id="p1")
    else:
        plan = twap(quantity=300, slices=6, style="market" if algo == "twap-market" else "limit_at_touch")
    sim = Sim(plan)
    now = START
    sim.run(plan.start(now))
    for _ in range(steps_before):
        now += 4.0
        sim.run(plan.on_tick(now, 99.9, 100.0))
        _exchange_step(sim, data, fill_markets=data.draw(st.booleans(), label="markets fill"))
    sim.run(plan.cancel())
    for _ in range(10):  # fills may still arrive before each cancel is confirmed
        now += 4.0
        _exchange_step(sim, data, fill_markets=True)
        sim.run(plan.on_tick(now, 99.9, 100.0))
    for child in sim.working:
        sim.confirm_cancel(child)
    placed = len(sim.children)
    sim.run(plan.on_timer(now + 100))
    assert not sim.working and len(sim.children) == placed
    assert sim.done in (["cancelled"], ["filled"])
    assert plan.status()["working"] == 0 and plan.status()["state"] == "done"
