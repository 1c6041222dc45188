"""plan_target: reach a target position without ever overshooting it, and never twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.strategy import TargetPlan, WorkingOrder, plan_target

EPS = 1e-6


def test_plan_target_when_nothing_working_then_place_the_difference() -> None:
    assert plan_target(10, 0, []) == TargetPlan(place=10)
    assert plan_target(-5, 3, []) == TargetPlan(place=-8)


def test_plan_target_when_reached_then_nothing() -> None:
    assert plan_target(10, 10, []).idle


def test_plan_target_when_repeated_with_its_order_working_then_nothing_more() -> None:
    assert plan_target(10, 0, [WorkingOrder("a", 10)]).idle
    assert plan_target(10, 4, [WorkingOrder("a", 6)]).idle  # partially filled


def test_plan_target_when_part_working_then_place_the_rest() -> None:
    assert plan_target(10, 2, [WorkingOrder("a", 3)]) == TargetPlan(place=5)


def test_plan_target_when_working_against_then_cancel_and_place_nothing() -> None:
    plan = plan_target(-5, 0, [WorkingOrder("buy", 10), WorkingOrder("sell", -2)])
    assert plan == TargetPlan(cancel=("buy",))


def test_plan_target_when_working_would_overshoot_then_cancel_the_newest_and_wait() -> None:
    plan = plan_target(5, 0, [WorkingOrder("old", 4), WorkingOrder("new", 4)])
    assert plan == TargetPlan(cancel=("new",))


def test_plan_target_when_target_reached_with_orders_working_then_cancel_them_all() -> None:
    plan = plan_target(10, 10, [WorkingOrder("a", 2), WorkingOrder("b", -1), WorkingOrder("done", 0)])
    assert plan == TargetPlan(cancel=("a", "b"))


def test_plan_target_when_tiny_difference_then_nothing() -> None:
    assert plan_target(10, 10 - 1e-12, []).idle


# -- property: any sequence of targets, fills and cancels ------------------------------------------


@dataclass
class Order:
    remaining: float
    cancel_requested: bool = False


@dataclass
class Sim:
    target: float = 0.0
    position: float = 0.0
    working: dict[str, Order] = field(default_factory=dict)
    seq: int = 0
    placed: list[float] = field(default_factory=list)

    @property
    def exposure(self) -> float:
        return self.position + sum(o.remaining for o in self.working.values())

    def beyond(self) -> float:
        """How far ``position + working`` is past the target, on the far side from the position."""
        if self.position <= self.target:
            return max(0.0, self.exposure - self.target)
        return max(0.0, self.target - self.exposure)

    def replan(self) -> TargetPlan:
        working = [WorkingOrder(k, o.remaining) for k, o in self.working.items()]
        plan = plan_target(self.target, self.position, working)
        for k in plan.cancel:
            self.working[k].cancel_requested = True
        if plan.place:
            need = self.target - self.position
            assert plan.place * need > 0  # toward the target
            assert all(o.remaining * need >= 0 for o in self.working.values())  # nothing against
            self.seq += 1
            self.working[f"o{self.seq}"] = Order(plan.place)
            self.placed.append(plan.place)
            assert abs(self.exposure - self.target) <= EPS  # exactly the target, never past it
        return plan

    def pick(self, index: int) -> str | None:
        keys = list(self.working)
        return keys[index % len(keys)] if keys else None

    def fill(self, index: int, fraction: float) -> None:
        key = self.pick(index)
        if key is None:
            return
        order = self.working[key]
        quantity = order.remaining * fraction
        self.position += quantity
        order.remaining -= quantity
        if abs(order.remaining) <= 1e-9:
            del self.working[key]

    def cancelled(self, index: int, only_requested: bool) -> None:
        keys = [k for k, o in self.working.items() if o.cancel_requested or not only_requested]
        if keys:
            del self.working[keys[index % len(keys)]]


targets = st.integers(-20, 20).map(float) | st.floats(-20, 20, allow_nan=False).map(lambda x: round(x, 2))
actions = st.lists(
    st.one_of(
        st.tuples(st.just("target"), targets),
        st.tuples(st.just("fill"), st.integers(0, 9), st.sampled_from([0.25, 0.5, 1.0])),
        st.tuples(st.just("cancel_done"), st.integers(0, 9)),
        st.tuples(st.just("cancel_any"), st.integers(0, 9)),  # an unsolicited cancel or a reject
        st.tuples(st.just("tick"), st.just(0)),  # a price update: re-plan, nothing else
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(start=st.integers(-10, 10).map(float), actions=actions)
def test_plan_target_when_any_targets_fills_and_cancels_then_never_overshoots_nor_doubles(
    start: float, actions: list[tuple[Any, ...]]
) -> None:
    sim = Sim(target=start, position=start)
    for action in actions:
        before = sim.beyond()
        kind = action[0]
        if kind == "target":
            sim.target = action[1]
            before = sim.beyond()  # a new target may find orders past it: they must not grow
        elif kind == "fill":
            sim.fill(action[1], action[2])
        elif kind == "cancel_done":
            sim.cancelled(action[1], only_requested=True)
        elif kind == "cancel_any":
            sim.cancelled(action[1], only_requested=False)
        sim.replan()
        assert sim.beyond() <= before + EPS  # fills, cancels and placing never push past the target
        placed = len(sim.placed)
        assert not sim.replan().place  # repeating the same target places nothing more
        assert len(sim.placed) == placed
    # liveness: once every requested cancel is done and fills settle, the target is reached
    for _ in range(100):
        plan = sim.replan()
        for key in plan.cancel:
            del sim.working[key]
        if plan.idle:
            break
    assert abs(sim.exposure - sim.target) <= EPS
    assert all(o.remaining * (sim.target - sim.position) >= 0 for o in sim.working.values())


@pytest.mark.parametrize("fractions", [[1.0], [0.5, 1.0], [0.25, 0.25, 0.25, 1.0]])
def test_plan_target_when_its_orders_fill_then_position_lands_exactly_on_target(
    fractions: list[float],
) -> None:
    sim = Sim(target=0.0)
    sim.target = 12.0
    sim.replan()
    for fraction in fractions:
        sim.fill(0, fraction)
        sim.replan()
    assert sim.position == pytest.approx(12.0)
    assert sim.placed == [12.0]
    assert not sim.working
