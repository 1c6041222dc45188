"""IB historical-data pacing rules, with time injected."""

from __future__ import annotations

from typing import Any

from trader.exchange.pacing import HistoricalPacing, HistoricalRequest, PacingRules, pacing_of

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def request(
    con_id: int = 265598, what: str = "TRADES", end: str = "", bar_seconds: int = 60
) -> HistoricalRequest:
    return HistoricalRequest(con_id, "SMART", what, (end, "1 D", "1 min", True, 1, False), bar_seconds)


def distinct(i: int, con_id: int = 265598) -> HistoricalRequest:
    """A request that differs from every other ``distinct(j)`` (its end date)."""
    return request(con_id, end=f"20261118 10:{i // 60:02d}:{i % 60:02d} US/Eastern")


def test_check_when_identical_within_15_seconds_then_violation() -> None:
    pacing = HistoricalPacing()
    assert pacing.check(request(), T0) is None
    assert pacing.check(request(), T0 + 14 * NS) == "identical request within 15 seconds"


def test_check_when_identical_after_15_seconds_then_accepted() -> None:
    pacing = HistoricalPacing()
    assert pacing.check(request(), T0) is None
    assert pacing.check(request(), T0 + 15 * NS) is None


def test_check_when_identical_but_other_contract_or_type_then_accepted() -> None:
    pacing = HistoricalPacing()
    assert pacing.check(request(), T0) is None
    assert pacing.check(request(con_id=272093), T0) is None
    assert pacing.check(request(what="MIDPOINT"), T0) is None


def test_check_when_sixth_request_for_one_series_within_2_seconds_then_violation() -> None:
    pacing = HistoricalPacing()
    for i in range(5):
        assert pacing.check(distinct(i), T0 + i * 300_000_000) is None
    reason = pacing.check(distinct(5), T0 + 1_900_000_000)
    assert reason is not None and "6 or more" in reason


def test_check_when_sixth_request_after_2_seconds_or_other_series_then_accepted() -> None:
    pacing = HistoricalPacing()
    for i in range(5):
        assert pacing.check(distinct(i), T0 + i * 100_000_000) is None
    assert pacing.check(distinct(5, con_id=272093), T0 + 500_000_000) is None
    assert pacing.check(distinct(6), T0 + 2 * NS) is None


def test_check_when_61st_request_within_10_minutes_then_violation() -> None:
    pacing = HistoricalPacing()
    for i in range(60):
        assert pacing.check(distinct(i), T0 + i * 9 * NS) is None
    reason = pacing.check(distinct(60), T0 + 599 * NS)
    assert reason is not None and "more than 60" in reason
    assert pacing.check(distinct(61), T0 + 600 * NS) is None  # the first one left the window


def test_check_when_refused_then_not_counted() -> None:
    pacing = HistoricalPacing()
    assert pacing.check(request(), T0) is None
    assert pacing.check(request(), T0 + 10 * NS) is not None
    assert pacing.check(request(), T0 + 15 * NS) is None


def test_violation_when_asked_then_nothing_is_recorded() -> None:
    pacing = HistoricalPacing()
    assert pacing.violation(request(), T0) is None
    assert pacing.violation(request(), T0) is None
    pacing.record(request(), T0)
    assert pacing.violation(request(), T0 + NS) is not None


def test_check_when_disabled_then_everything_passes_and_nothing_counts() -> None:
    pacing = HistoricalPacing(enabled=False)
    assert all(pacing.check(request(), T0) is None for _ in range(100))
    pacing.enabled = True
    assert pacing.check(request(), T0) is None


def test_check_when_small_bars_only_then_larger_bars_unpaced() -> None:
    pacing = HistoricalPacing(small_bars_only=True)
    assert pacing.check(request(bar_seconds=60), T0) is None
    assert pacing.check(request(bar_seconds=60), T0) is None
    assert pacing.check(request(bar_seconds=30), T0) is None
    assert pacing.check(request(bar_seconds=30), T0) is not None


def test_check_when_custom_rules_then_they_apply() -> None:
    pacing = HistoricalPacing(PacingRules(identical_window_ns=NS, window_limit=2))
    assert pacing.check(distinct(0), T0) is None
    assert pacing.check(distinct(0), T0 + NS) is None
    assert pacing.check(distinct(1), T0 + 2 * NS) is not None


def test_reset_when_called_then_history_forgotten() -> None:
    pacing = HistoricalPacing()
    pacing.check(request(), T0)
    pacing.reset()
    assert pacing.check(request(), T0) is None


def test_record_when_hours_pass_then_memory_stays_bounded() -> None:
    pacing = HistoricalPacing()
    for i in range(5000):
        pacing.check(distinct(i % 3600, con_id=i), T0 + i * 20 * NS)
    assert len(pacing._identical) < 100
    assert len(pacing._series) < 100


def test_pacing_of_when_called_twice_then_one_shared_instance() -> None:
    extensions: dict[str, Any] = {}
    first = pacing_of(extensions)
    assert pacing_of(extensions) is first
    assert extensions["pacing"] is first
