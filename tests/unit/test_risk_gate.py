"""The pre-trade gate: disconnected -> refused before any check; checks in order, first refusal
wins, named by their rule; a check that raises refuses (fail closed)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trader.book import Book
from trader.risk import NOT_CONNECTED, GateContext, OrderIntent, Refusal, RiskGate, require_connected
from trader.risk.gate import CHECK_FAILED

ORDER = OrderIntent("alpha", "o1", 265598, "AAPL", "STK", "BUY", 10.0, "LMT", 100.0)


def context(connected: bool = True, **kwargs: Any) -> GateContext:
    return GateContext(connected, "connected" if connected else "disconnected", "why", Book(), 1, **kwargs)


def test_gate_when_disconnected_then_refused_as_not_connected_before_any_check() -> None:
    called: list[str] = []

    def never(order: OrderIntent, ctx: GateContext) -> str | None:
        called.append("never")
        return None

    gate = RiskGate([never])
    refusal = gate.check(ORDER, context(connected=False))
    assert refusal is not None and refusal.rule == NOT_CONNECTED
    assert "disconnected" in refusal.reason and "why" in refusal.reason
    assert called == []
    assert gate.connection(context(connected=False)) == Refusal(
        NOT_CONNECTED, "IB session disconnected (why)"
    )
    assert gate.connection(context()) is None
    assert require_connected(ORDER, context()) is None


def test_gate_when_connected_and_no_checks_then_passes_and_counts() -> None:
    gate = RiskGate()
    assert gate.check(ORDER, context()) is None
    assert gate.check(ORDER, context(connected=False)) is not None
    assert gate.stats() == {"checks": [], "passed": 1, "refused": {NOT_CONNECTED: 1}}


def test_gate_when_checks_refuse_then_first_refusal_wins_named_by_rule() -> None:
    def max_quantity(order: OrderIntent, ctx: GateContext) -> str | None:
        return f"quantity {order.quantity:g} > limit 5" if order.quantity > 5 else None

    def notional(order: OrderIntent, ctx: GateContext) -> str | None:
        mark = ctx.marks.get(order.con_id, 0.0)
        return "notional too big" if order.quantity * mark > 1 else None

    class Named:
        rule = "named_rule"

        def __call__(self, order: OrderIntent, ctx: GateContext) -> str | None:
            return "always"

    gate = RiskGate([notional, max_quantity])
    gate.add(Named())
    assert gate.check(ORDER, context(marks={265598: 0.0})) == Refusal("max_quantity", "quantity 10 > limit 5")
    assert gate.check(ORDER, context(marks={265598: 1.0})) == Refusal("notional", "notional too big")
    small = OrderIntent("alpha", "o2", 1, "X", "STK", "SELL", 1.0, "MKT")
    assert small.signed_quantity == -1.0
    assert gate.check(small, context()) == Refusal("named_rule", "always")
    assert gate.stats()["checks"] == ["notional", "max_quantity", "named_rule"]
    assert str(Refusal("r", "x")) == "r: x"


def test_gate_when_a_check_raises_then_the_order_is_refused() -> None:
    def broken(order: OrderIntent, ctx: GateContext) -> str | None:
        raise KeyError("limits")

    refusal = RiskGate([broken]).check(ORDER, context())
    assert refusal is not None and refusal.rule == CHECK_FAILED
    assert "broken" in refusal.reason and "KeyError" in refusal.reason


@given(st.lists(st.one_of(st.none(), st.text(min_size=1, max_size=5)), max_size=6), st.booleans())
def test_gate_when_any_outcomes_then_the_first_refusal_in_order_or_none(
    outcomes: list[str | None], connected: bool
) -> None:
    def make(i: int, outcome: str | None) -> Any:
        def check(order: OrderIntent, ctx: GateContext) -> str | None:
            return outcome

        check.rule = f"rule{i}"  # type: ignore[attr-defined]
        return check

    refusal = RiskGate([make(i, o) for i, o in enumerate(outcomes)]).check(ORDER, context(connected))
    if not connected:
        assert refusal is not None and refusal.rule == NOT_CONNECTED
        return
    first = next(((i, o) for i, o in enumerate(outcomes) if o is not None), None)
    assert refusal == (None if first is None else Refusal(f"rule{first[0]}", first[1]))
