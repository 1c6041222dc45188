"""StrategyRuntime, pure: lifecycle, isolation, slow hooks, targets, restore, ids, intents, streams."""

from __future__ import annotations

import re
from typing import Any, cast

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as ops

from trader.messaging.rpc import MethodRegistry
from trader.strategy import (
    CancelOrder,
    Intent,
    Param,
    PlaceOrder,
    RuntimeEvent,
    Strategy,
    StrategyRuntime,
    StrategyState,
)

T0 = pd.Timestamp("2026-01-14 15:30", tz="UTC")
NOW = 1_768_404_600.0  # 2026-01-14 15:30 UTC


class Clock:
    """An injected clock: hooks may move it."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bar(i: int, close: float = 100.0) -> pd.DataFrame:
    index = pd.DatetimeIndex([T0 + pd.Timedelta(seconds=5 * i)], name="time")
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
        index=index,
    )


def history(n: int) -> pd.DataFrame:
    return pd.concat([bar(i - n, 100.0 + i) for i in range(n)])


def order_record(
    intent: PlaceOrder, *, filled: float = 0.0, state: str = "Submitted", exec_ids: tuple[str, ...] = ()
) -> dict[str, Any]:
    done = state in ("Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected")
    return {
        "client_order_id": intent.client_order_id,
        "strategy": intent.strategy,
        "symbol": intent.symbol,
        "con_id": 265598,
        "action": intent.action,
        "quantity": intent.quantity,
        "order_type": intent.order_type,
        "state": state,
        "filled": filled,
        "remaining": intent.quantity - filled,
        "working": not done,
        "exec_ids": list(exec_ids),
    }


def fill_record(
    intent: PlaceOrder, exec_id: str, shares: float, *, kind: str = "fill", signed: bool = True
) -> dict[str, Any]:
    side = "BOT" if intent.action == "BUY" else "SLD"
    record: dict[str, Any] = {
        "kind": kind,
        "exec_id": exec_id,
        "strategy": intent.strategy,
        "client_order_id": intent.client_order_id,
        "symbol": intent.symbol,
        "con_id": 265598,
        "side": side,
        "shares": shares,
        "price": 100.0,
        "commission": None,
    }
    if signed:
        record["quantity"] = shares if side == "BOT" else -shares
    return record


def places(intents: list[Intent]) -> list[PlaceOrder]:
    return [i for i in intents if isinstance(i, PlaceOrder)]


def cancels(intents: list[Intent]) -> list[CancelOrder]:
    return [i for i in intents if isinstance(i, CancelOrder)]


class Recorder(Strategy):
    """Records its hook calls; targets ``want`` on every bar when set."""

    want = Param(0.0, "target on every bar")
    use_target = Param(False, "set the target on every bar")

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frames: list[pd.DataFrame] = []
        self.fills: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []

    def on_start(self) -> None:
        self.calls.append("start")

    def on_prices(self, prices: pd.DataFrame) -> None:
        self.calls.append("prices")
        self.frames.append(prices)
        if self.use_target:
            self.target(prices.attrs["symbol"], self.want)

    def on_fill(self, fill: dict[str, Any]) -> None:
        self.calls.append("fill")
        self.fills.append(fill)

    def on_order(self, order: dict[str, Any]) -> None:
        self.calls.append("order")
        self.orders.append(order)

    def on_stop(self) -> None:
        self.calls.append("stop")


def runtime_with(
    *strategies: tuple[str, Strategy], clock: Clock | None = None, enabled: bool = True
) -> StrategyRuntime:
    runtime = StrategyRuntime(clock=clock or Clock(), slow_hook_s=0.5)
    for name, strategy in strategies:
        runtime.add(name, strategy, ["AAPL"], "5 secs", enabled=enabled)
    return runtime


def targeting(want: float) -> tuple[StrategyRuntime, Recorder]:
    strategy = Recorder()
    runtime = runtime_with(("tgt", strategy))
    runtime.set_params("tgt", {"want": want, "use_target": True})
    runtime.start("tgt")
    return runtime, strategy


# -- lifecycle ----------------------------------------------------------------------------------------


def test_lifecycle_when_warmed_up_and_started_then_installed_warming_up_running() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy))
    assert runtime.names() == ("rec",)
    assert runtime.status("rec")["state"] == StrategyState.INSTALLED
    runtime.warm_up("rec", "AAPL", history(30))
    assert runtime.status("rec")["state"] == StrategyState.WARMING_UP
    assert strategy.calls == []  # no hooks while warming up
    assert len(strategy.window("AAPL")) == 30
    assert runtime.start("rec") == []
    assert runtime.status("rec")["state"] == StrategyState.RUNNING
    assert strategy.calls == ["start"]
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert strategy.calls == ["start", "prices"]
    assert len(strategy.frames[0]) == 31
    assert strategy.frames[0].attrs["symbol"] == "AAPL"
    events = runtime.drain_events()
    assert [(e.kind, e.message) for e in events] == [
        ("state", "INSTALLED -> WARMING_UP"),
        ("state", "WARMING_UP -> RUNNING"),
    ]
    assert runtime.drain_events() == []


def test_start_when_added_disabled_then_disabled_until_enabled_and_window_kept_fresh() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy), enabled=False)
    runtime.start("rec")
    assert runtime.status("rec")["state"] == StrategyState.DISABLED
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert strategy.calls == []
    assert len(strategy.window("AAPL")) == 1
    runtime.enable("rec")
    assert runtime.status("rec")["state"] == StrategyState.RUNNING
    assert strategy.calls == ["start"]


def test_disable_when_cancel_orders_then_cancels_working_and_no_more_hooks() -> None:
    runtime, strategy = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    intents = runtime.disable("tgt", cancel_orders=True)
    assert intents == [CancelOrder("tgt", place.client_order_id)]
    assert runtime.status("tgt")["state"] == StrategyState.DISABLED
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []
    assert strategy.calls == ["start", "prices"]
    assert runtime.disable("tgt", cancel_orders=True) == []  # already being cancelled: not twice


def test_window_length_when_warmup_bars_larger_then_kept() -> None:
    class Short(Strategy):
        window_length = 5

    runtime = StrategyRuntime(clock=Clock(), id_prefix="t")
    short = Short()
    runtime.add("short", short, ["AAPL"], "5 secs", warmup_bars=20)
    runtime.warm_up("short", "AAPL", history(50))
    assert len(short.window("AAPL")) == 20
    runtime.add("tiny", Short(), ["AAPL"], "5 secs")
    runtime.warm_up("tiny", "AAPL", history(50))
    assert runtime.status("tiny")["window"] == {"AAPL": 5}


# -- isolation ---------------------------------------------------------------------------------------


class Faulty(Strategy):
    def on_prices(self, prices: pd.DataFrame) -> None:
        self.buy("AAPL", 1)  # asked for, then the hook fails: never sent
        self.target("AAPL", 50)
        raise ZeroDivisionError("bad maths")


def test_hook_when_raises_then_error_with_traceback_no_intents_and_others_unaffected() -> None:
    good = Recorder()
    runtime = runtime_with(("faulty", Faulty()), ("good", good))
    runtime.set_params("good", {"want": 3.0, "use_target": True})
    for name in runtime.names():
        runtime.start(name)
    runtime.drain_events()
    intents = runtime.on_prices("AAPL", "5 secs", bar(0))
    assert [(i.strategy, i.quantity) for i in places(intents)] == [("good", 3.0)]
    status = runtime.status("faulty")
    assert status["state"] == StrategyState.ERROR
    assert "ZeroDivisionError: bad maths" in status["last_error"]
    assert "Traceback" in status["last_error"]
    assert status["working_orders"] == []  # the buy of the failed hook is forgotten
    assert status["targets"] == {}
    (error,) = [e for e in runtime.drain_events() if e.kind == "error"]
    assert error.strategy == "faulty"
    assert "on_prices raised ZeroDivisionError" in error.message
    assert error.traceback is not None
    assert "bad maths" in error.traceback
    # later prices: the faulty one gets no hooks, the good one goes on
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []
    assert good.calls == ["start", "prices", "prices"]
    assert runtime.status("good")["state"] == StrategyState.RUNNING


def test_enable_when_in_error_then_running_again() -> None:
    runtime = runtime_with(("faulty", Faulty()))
    runtime.start("faulty")
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert runtime.status("faulty")["state"] == StrategyState.ERROR
    runtime.enable("faulty")
    assert runtime.status("faulty")["state"] == StrategyState.RUNNING


def test_on_start_when_raises_then_error() -> None:
    class BadStart(Strategy):
        def on_start(self) -> None:
            raise RuntimeError("no config")

    runtime = runtime_with(("bad", BadStart()))
    assert runtime.start("bad") == []
    assert runtime.status("bad")["state"] == StrategyState.ERROR
    assert "no config" in (runtime.status("bad")["last_error"] or "")


# -- slow hooks --------------------------------------------------------------------------------------


def test_hook_when_slower_than_the_limit_then_slow_hook_event_and_stats() -> None:
    clock = Clock()

    class Slow(Strategy):
        def on_prices(self, prices: pd.DataFrame) -> None:
            clock.now += 0.75 if len(prices) == 2 else 0.01

    runtime = runtime_with(("slow", Slow()), clock=clock)
    runtime.start("slow")
    runtime.drain_events()
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert runtime.drain_events() == []
    runtime.on_prices("AAPL", "5 secs", bar(1))
    (event,) = runtime.drain_events()
    assert event.kind == "slow_hook"
    assert event.strategy == "slow"
    assert "on_prices took 750.0 ms" in event.message
    assert runtime.status("slow")["state"] == StrategyState.RUNNING  # slow is not an error
    stats = runtime.status("slow")["hooks"]["on_prices"]
    assert stats["calls"] == 2
    assert stats["max_ms"] == pytest.approx(750.0)


# -- targets -----------------------------------------------------------------------------------------


def test_target_when_repeated_on_every_bar_then_one_order() -> None:
    runtime, _ = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    assert (place.action, place.quantity, place.order_type) == ("BUY", 10.0, "MKT")
    for i in range(1, 5):
        assert runtime.on_prices("AAPL", "5 secs", bar(i)) == []
    assert runtime.on_order(order_record(place)) == []


def test_target_when_fill_arrives_before_its_order_update_then_no_cancel_and_no_extra_order() -> None:
    runtime, strategy = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    assert runtime.on_order(order_record(place)) == []
    assert runtime.on_fill(fill_record(place, "e1", 4.0)) == []  # the order still says remaining 10
    assert strategy.position("AAPL") == 4.0
    assert strategy.working_orders("AAPL")[0]["remaining"] == 6.0
    assert runtime.on_order(order_record(place, filled=4.0, state="PartiallyFilled", exec_ids=("e1",))) == []
    assert strategy.working_orders("AAPL")[0]["remaining"] == 6.0
    assert runtime.on_order(order_record(place, filled=10.0, state="Filled", exec_ids=("e1", "e2"))) == []
    assert strategy.working_orders() == []  # done; its last fill has not come yet
    assert runtime.on_fill(fill_record(place, "e2", 6.0)) == []
    assert strategy.position("AAPL") == 10.0
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []


def test_working_orders_when_all_fills_in_before_the_filled_record_then_not_listed() -> None:
    runtime, strategy = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    assert runtime.on_order(order_record(place)) == []
    assert runtime.on_fill(fill_record(place, "e1", 10.0)) == []  # the Filled record comes later
    assert strategy.position("AAPL") == 10.0
    assert strategy.working_orders("AAPL") == []  # nothing left to fill: `if not working` moves on
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []  # and the target places nothing more


def test_target_when_changed_then_cancel_first_and_place_once_cancelled() -> None:
    runtime, strategy = targeting(10.0)
    (buy,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    runtime.on_order(order_record(buy))
    runtime.set_params("tgt", {"want": -5.0, "use_target": True})
    intents = runtime.on_prices("AAPL", "5 secs", bar(1))
    assert intents == [CancelOrder("tgt", buy.client_order_id)]
    assert runtime.on_prices("AAPL", "5 secs", bar(2)) == []  # being cancelled: still counts
    runtime.on_fill(fill_record(buy, "e1", 2.0))  # a fill raced the cancel
    intents = runtime.on_order(order_record(buy, filled=2.0, state="Cancelled", exec_ids=("e1",)))
    (sell,) = places(intents)
    assert (sell.action, sell.quantity) == ("SELL", 7.0)
    assert strategy.position("AAPL") == 2.0


def test_target_when_place_rejected_then_placed_again_at_next_replan() -> None:
    runtime, _ = targeting(10.0)
    (first,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    rejected = {
        "client_order_id": first.client_order_id,
        "strategy": "tgt",
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": 10.0,
        "state": "Rejected",
        "working": False,
        "filled": 0.0,
    }
    (second,) = places(runtime.on_order(rejected))
    assert second.client_order_id != first.client_order_id
    assert second.quantity == 10.0


def test_intent_failed_when_place_then_no_longer_working_and_cancel_asked_again() -> None:
    runtime, strategy = targeting(10.0)
    (first,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    assert runtime.intent_failed(first, "not_connected") == []
    assert strategy.working_orders() == []
    (second,) = places(runtime.on_prices("AAPL", "5 secs", bar(1)))
    runtime.on_order(order_record(second))
    runtime.set_params("tgt", {"want": 0.0, "use_target": True})
    (cancel,) = runtime.on_prices("AAPL", "5 secs", bar(2))
    assert isinstance(cancel, CancelOrder)
    assert runtime.on_prices("AAPL", "5 secs", bar(3)) == []
    runtime.intent_failed(cancel, "not_connected")
    assert runtime.on_prices("AAPL", "5 secs", bar(4)) == [cancel]


# -- restore -----------------------------------------------------------------------------------------


def test_restore_when_positions_and_open_orders_then_no_duplicate_order() -> None:
    before = StrategyRuntime(clock=Clock(), id_prefix="before")
    placed = PlaceOrder("tgt", "tgt-before-1", "AAPL", "BUY", 10.0)
    open_order = order_record(placed, filled=4.0, state="PartiallyFilled", exec_ids=("e1",))
    del before
    strategy = Recorder()
    runtime = runtime_with(("tgt", strategy))
    runtime.set_params("tgt", {"want": 10.0, "use_target": True})
    runtime.restore("tgt", {"AAPL": 4.0}, [open_order])
    runtime.start("tgt")
    assert runtime.on_prices("AAPL", "5 secs", bar(0)) == []  # 4 held + 6 working = the target
    assert runtime.on_fill(fill_record(placed, "e1", 4.0)) == []  # already in the position
    assert strategy.position("AAPL") == 4.0
    assert strategy.calls == ["start", "prices"]
    runtime.on_fill(fill_record(placed, "e2", 6.0))
    assert strategy.position("AAPL") == 10.0
    runtime.set_params("tgt", {"want": 12.0, "use_target": True})
    runtime.on_order(order_record(placed, filled=10.0, state="Filled", exec_ids=("e1", "e2")))
    (more,) = places(runtime.on_prices("AAPL", "5 secs", bar(1)))
    assert more.quantity == 2.0


def test_restore_when_buy_with_a_known_client_order_id_then_not_placed_again() -> None:
    class Entry(Strategy):
        def on_prices(self, prices: pd.DataFrame) -> None:
            self.buy("AAPL", 5, limit=99.5, client_order_id="entry-20260114")

    runtime = runtime_with(("entry", Entry()))
    runtime.start("entry")
    (first,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    assert first.client_order_id == "entry-20260114"
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []  # same id: once

    restarted = runtime_with(("entry", Entry()))
    restarted.restore("entry", {}, [order_record(first)])
    restarted.start("entry")
    assert restarted.on_prices("AAPL", "5 secs", bar(2)) == []
    done = runtime_with(("entry", Entry()))
    done.start("entry")
    done.on_order(order_record(first, filled=5.0, state="Filled"))
    assert done.on_prices("AAPL", "5 secs", bar(3)) == []  # done orders are remembered too


def test_restore_when_exec_ids_given_then_their_fills_not_counted_twice() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy))
    runtime.restore("rec", {"AAPL": -3.0}, [], exec_ids=["old"])
    runtime.start("rec")
    sold = PlaceOrder("rec", "rec-x-1", "AAPL", "SELL", 3.0)
    runtime.on_fill(fill_record(sold, "old", 3.0))
    assert strategy.position("AAPL") == -3.0
    assert strategy.fills == []


# -- fills -------------------------------------------------------------------------------------------


def test_on_fill_when_repeated_or_commission_then_counted_once() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy))
    runtime.start("rec")
    sell = PlaceOrder("rec", "rec-x-1", "AAPL", "SELL", 5.0)
    runtime.on_fill(fill_record(sell, "e1", 2.0, signed=False))  # side and shares only
    runtime.on_fill(fill_record(sell, "e1", 2.0))
    runtime.on_fill(fill_record(sell, "e1", 2.0, kind="commission"))
    runtime.on_fill(fill_record(sell, "e2", 3.0))
    assert strategy.position("AAPL") == -5.0
    assert [f["exec_id"] for f in strategy.fills] == ["e1", "e2"]
    assert runtime.status("rec")["fills"] == 2


def test_on_order_and_on_fill_when_other_strategy_then_ignored() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy))
    runtime.start("rec")
    other = PlaceOrder("other", "other-1", "AAPL", "BUY", 5.0)
    assert runtime.on_order(order_record(other)) == []
    assert runtime.on_fill(fill_record(other, "e1", 5.0)) == []
    assert strategy.calls == ["start"]
    assert strategy.position("AAPL") == 0.0


def test_on_order_when_its_own_then_hook_and_working_orders() -> None:
    strategy = Recorder()
    runtime = runtime_with(("rec", strategy))
    runtime.start("rec")
    mine = PlaceOrder("rec", "manual-1", "AAPL", "BUY", 5.0)  # placed from the CLI, say
    runtime.on_order(order_record(mine))
    assert strategy.orders[0]["client_order_id"] == "manual-1"
    (working,) = strategy.working_orders("AAPL")
    assert (working["remaining"], working["acknowledged"], working["state"]) == (5.0, True, "Submitted")
    assert strategy.working_orders("MSFT") == []


# -- ids and intents ---------------------------------------------------------------------------------


def test_client_order_ids_when_two_runtimes_same_clock_then_unique_and_formatted() -> None:
    ids: list[str] = []
    prefixes: set[str] = set()
    for _ in range(2):
        runtime, _strategy = targeting(1.0)
        prefixes.add(runtime.id_prefix)
        assert re.fullmatch(r"20260114153000[0-9a-f]{4}", runtime.id_prefix)
        for i in range(3):
            (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(i)))
            runtime.intent_failed(place)  # so the next bar places again
            ids.append(place.client_order_id)
    assert len(prefixes) == 2
    assert len(set(ids)) == 6
    assert all(re.fullmatch(r"tgt-20260114153000[0-9a-f]{4}-\d+", i) for i in ids)


def _place_order_spec() -> tuple[MethodRegistry, Any]:
    from trader.service import trader_api

    registry = MethodRegistry()
    trader_api._trading(registry, cast(Any, None))  # registers the handlers, calls nothing
    return registry, registry.get("place_order")


def test_place_order_params_when_any_order_kind_then_exactly_place_orders_params() -> None:
    class Orders(Strategy):
        def on_start(self) -> None:
            self.buy("AAPL", 10)
            self.sell("AAPL", 5, limit=101.5, tif="gtc")
            self.buy("AAPL", 3, stop=99.0)
            self.sell("AAPL", 2, limit=98.0, stop=98.5)
            self.buy("AAPL", 1, limit=100.0, take_profit=105.0, stop_loss=95.0)

    runtime = runtime_with(("orders", Orders()))
    intents = places(runtime.start("orders"))
    assert [i.order_type for i in intents] == ["MKT", "LMT", "STP", "STP LMT", "LMT"]
    registry, spec = _place_order_spec()
    for intent in intents:
        params = intent.params()
        assert set(params) <= set(spec.params)
        assert set(spec.required) <= set(params)
        assert None not in params.values()
        spec.bind(dict(params))  # the trader's own param check accepts them
    assert intents[1].params()["tif"] == "GTC"
    assert intents[4].params()["take_profit"] == 105.0
    cancel = registry.get("cancel_order")
    assert cancel is not None
    assert set(CancelOrder("orders", "x").params()) <= set(cancel.params)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.buy("AAPL", 0), "quantity must be > 0"),
        (lambda s: s.buy("AAPL", 1, tif="WEEK"), "tif"),
        (lambda s: s.buy("AAPL", 1, client_order_id="has space"), "client order id"),
        (lambda s: s.buy("AAPL", 1, client_order_id="x.tp"), "reserved"),
        (lambda s: s.target("AAPL", float("nan")), "NaN"),
    ],
)
def test_intent_when_invalid_then_hook_error(call: Any, match: str) -> None:
    class Bad(Strategy):
        def on_start(self) -> None:
            call(self)

    runtime = runtime_with(("bad", Bad()))
    assert runtime.start("bad") == []
    assert runtime.status("bad")["state"] == StrategyState.ERROR
    assert re.search(match, runtime.status("bad")["last_error"] or "")


def test_strategy_when_not_in_a_runtime_then_clear_errors() -> None:
    strategy = Recorder()
    with pytest.raises(RuntimeError, match="not in a runtime"):
        strategy.buy("AAPL", 1)
    with pytest.raises(RuntimeError, match="prices_stream"):
        _ = strategy.prices_stream


# -- streams, routing, status ------------------------------------------------------------------------


def test_prices_stream_when_subscribed_then_emits_each_frame_and_completes_on_stop() -> None:
    class Streaming(Strategy):
        def __init__(self) -> None:
            self.seen: list[pd.DataFrame] = []
            self.closes: list[float] = []
            self.completed = False
            self.hooked: list[pd.DataFrame] = []

        def on_start(self) -> None:
            self.prices_stream.subscribe(on_next=self.seen.append, on_completed=self._done)
            self.prices_stream.pipe(ops.map(self._last_close)).subscribe(self._close)

        @staticmethod
        def _last_close(frame: pd.DataFrame) -> float:
            return float(frame["close"].iloc[-1])

        def _close(self, close: float) -> None:
            self.closes.append(close)
            if close > 101.0:
                self.target("AAPL", 1.0)  # intents from a stream subscriber are sent too

        def _done(self) -> None:
            self.completed = True

        def on_prices(self, prices: pd.DataFrame) -> None:
            self.hooked.append(prices)

    strategy = Streaming()
    runtime = runtime_with(("stream", strategy))
    runtime.start("stream")
    assert runtime.on_prices("AAPL", "5 secs", bar(0, 100.0)) == []
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(1, 102.0)))
    assert place.quantity == 1.0
    assert len(strategy.seen) == 2
    assert all(a is b for a, b in zip(strategy.seen, strategy.hooked, strict=True))
    assert strategy.closes == [100.0, 102.0]
    runtime.stop()
    assert strategy.completed
    assert runtime.status("stream")["state"] == StrategyState.DISABLED
    assert runtime.on_prices("AAPL", "5 secs", bar(2)) == []


def test_prices_stream_when_subscriber_raises_then_strategy_error() -> None:
    class Broken(Strategy):
        def on_start(self) -> None:
            self.prices_stream.pipe(ops.map(lambda f: 1 / 0)).subscribe(lambda _: None)

    runtime = runtime_with(("broken", Broken()))
    runtime.start("broken")
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert runtime.status("broken")["state"] == StrategyState.ERROR
    assert "ZeroDivisionError" in (runtime.status("broken")["last_error"] or "")


def test_stop_when_running_then_on_stop_and_its_intents_returned() -> None:
    class Flatten(Recorder):
        def on_stop(self) -> None:
            super().on_stop()
            self.sell("AAPL", 1)

    strategy = Flatten()
    runtime = runtime_with(("flat", strategy))
    runtime.start("flat")
    (sell,) = places(runtime.stop("flat"))
    assert sell.action == "SELL"
    assert strategy.calls == ["start", "stop"]
    assert runtime.stop("flat") == []
    assert runtime.enable("flat") == []  # stopped for good


def test_on_prices_when_other_bar_size_or_symbol_then_not_routed_and_sizes_normalised() -> None:
    bars5, ticks = Recorder(), Recorder()
    runtime = StrategyRuntime(clock=Clock(), id_prefix="t")
    runtime.add("bars5", bars5, ["AAPL"], "5 sec")
    runtime.add("ticks", ticks, ["AAPL"], "ticks")
    for name in runtime.names():
        runtime.start(name)
    runtime.on_prices("AAPL", "1 min", bar(0))
    runtime.on_prices("MSFT", "5 secs", bar(0))
    assert bars5.frames == []
    runtime.on_prices("AAPL", "5 secs", bar(0))
    assert len(bars5.frames) == 1
    tick_frame = pd.DataFrame(
        {"time": pd.to_datetime([T0], utc=True), "bid": [1.0], "ask": [2.0], "last": [1.5]}
    )
    runtime.on_prices("AAPL", "ticks", tick_frame)
    assert ticks.frames[0]["last"].tolist() == [1.5]
    assert ticks.frames[0].index[0] == T0
    assert runtime.status("bars5")["bar_size"] == "5 secs"


def test_add_when_invalid_then_value_error() -> None:
    runtime = StrategyRuntime(clock=Clock(), id_prefix="t")
    strategy = Recorder()
    runtime.add("rec", strategy, ["AAPL"], "5 secs")
    with pytest.raises(ValueError, match="already"):
        runtime.add("rec", Recorder(), ["AAPL"], "5 secs")
    with pytest.raises(ValueError, match="already"):
        runtime.add("again", strategy, ["AAPL"], "5 secs")
    with pytest.raises(ValueError, match="strategy name"):
        runtime.add("bad name", Recorder(), ["AAPL"], "5 secs")
    with pytest.raises(ValueError, match="bar size"):
        runtime.add("weekly", Recorder(), ["AAPL"], "1 week")
    with pytest.raises(KeyError, match="no strategy"):
        runtime.status("nope")


def test_status_when_running_then_everything_an_operator_needs() -> None:
    runtime, _ = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    runtime.on_fill(fill_record(place, "e1", 4.0))
    status = runtime.status("tgt")
    assert status["name"] == "tgt"
    assert status["state"] == "RUNNING"
    assert status["instruments"] == ["AAPL"]
    assert status["bar_size"] == "5 secs"
    assert status["params"] == {"want": 10.0, "use_target": True}
    assert status["position"] == {"AAPL": 4.0}
    assert status["targets"] == {"AAPL": 10.0}
    assert status["working_orders"][0]["client_order_id"] == place.client_order_id
    assert status["working_orders"][0]["remaining"] == 6.0
    assert status["last_error"] is None
    assert status["hooks"]["on_prices"]["calls"] == 1
    assert set(status["hooks"]["on_prices"]) == {"calls", "total_ms", "max_ms"}
    assert [s["name"] for s in runtime.list()] == ["tgt"]
    assert isinstance(runtime.drain_events()[0], RuntimeEvent)


def test_target_when_order_reports_fills_before_their_fill_events_then_no_extra_order() -> None:
    runtime, strategy = targeting(10.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    partial = order_record(place, filled=4.0, state="PartiallyFilled", exec_ids=("e1",))
    assert runtime.on_order(partial) == []  # 4 executed, its fill not here yet: still 10 on the way
    assert runtime.on_prices("AAPL", "5 secs", bar(1)) == []
    assert runtime.on_order(order_record(place, filled=10.0, state="Filled", exec_ids=("e1", "e2"))) == []
    assert strategy.working_orders() == []
    assert runtime.on_prices("AAPL", "5 secs", bar(2)) == []  # done, but its fills are still to come
    runtime.on_fill(fill_record(place, "e2", 6.0))
    runtime.on_fill(fill_record(place, "e1", 4.0))
    assert strategy.position("AAPL") == 10.0
    assert runtime.status("tgt")["working_orders"] == []
    assert runtime.on_prices("AAPL", "5 secs", bar(3)) == []


def test_on_order_when_a_stale_record_comes_after_done_then_ignored() -> None:
    runtime, strategy = targeting(5.0)
    (place,) = places(runtime.on_prices("AAPL", "5 secs", bar(0)))
    runtime.set_params("tgt", {"want": 0.0, "use_target": True})
    (cancel,) = runtime.on_prices("AAPL", "5 secs", bar(1))
    assert isinstance(cancel, CancelOrder)
    cancelled = order_record(place, state="Cancelled") | {"updated_ns": 3}
    assert runtime.on_order(cancelled) == []
    pending_cancel = order_record(place, state="PendingCancel") | {"updated_ns": 2}  # the RPC reply, late
    assert runtime.on_order(pending_cancel) == []
    assert strategy.working_orders() == []
    assert strategy.orders == [cancelled]  # the hook saw the newer record only


# -- property: a fake trader delivering order and fill events in any order -------------------------


class FakeTrader:
    """Executes, cancels and reports orders; events are queued and delivered in any order."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.position = 0.0
        self.execs = 0

    def exposure(self) -> float:
        sign = {"BUY": 1.0, "SELL": -1.0}
        working: float = sum(
            sign[o["action"]] * (o["quantity"] - o["filled"]) for o in self.orders.values() if o["working"]
        )
        return self.position + working

    def send(self, intent: Intent) -> None:
        if isinstance(intent, PlaceOrder):
            assert intent.client_order_id not in self.orders  # never the same id twice
            record = order_record(intent)
            self.orders[intent.client_order_id] = record
        else:
            record = self.orders[intent.client_order_id]
            if not record["working"]:
                return
            record["state"] = "PendingCancel"
        self.queue.append(("order", dict(record)))

    def execute(self, index: int, fraction: float) -> None:
        working = [o for o in self.orders.values() if o["working"]]
        if not working:
            return
        order = working[index % len(working)]
        shares = (order["quantity"] - order["filled"]) * fraction
        self.execs += 1
        exec_id = f"e{self.execs}"
        order["filled"] += shares
        order["remaining"] = order["quantity"] - order["filled"]
        order["exec_ids"] = [*order["exec_ids"], exec_id]
        if order["remaining"] <= 1e-9:
            order["state"], order["working"] = "Filled", False
        self.position += shares if order["action"] == "BUY" else -shares
        intent = PlaceOrder("tgt", order["client_order_id"], "AAPL", order["action"], order["quantity"])
        self.queue.append(("order", dict(order)))
        self.queue.append(("fill", fill_record(intent, exec_id, shares)))

    def confirm_cancels(self) -> None:
        for order in self.orders.values():
            if order["state"] == "PendingCancel":
                order["state"], order["working"] = "Cancelled", False
                self.queue.append(("order", dict(order)))


def _beyond(exposure: float, position: float, target: float) -> float:
    return max(0.0, exposure - target) if position <= target else max(0.0, target - exposure)


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("target"), st.integers(-15, 15).map(float)),
        st.tuples(st.just("execute"), st.integers(0, 5), st.sampled_from([0.5, 1.0])),
        st.tuples(st.just("deliver"), st.integers(0, 20)),
        st.tuples(st.just("cancels"), st.just(0)),
        st.tuples(st.just("bar"), st.just(0)),
    ),
    max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_runtime_when_events_in_any_order_then_never_overshoots_and_settles_on_target(
    steps: list[tuple[Any, ...]],
) -> None:
    runtime, strategy = targeting(0.0)
    trader = FakeTrader()
    target = 0.0
    bars = iter(range(10_000))

    def send(intents: list[Intent]) -> None:
        for intent in intents:
            before = _beyond(trader.exposure(), trader.position, target)
            trader.send(intent)
            assert _beyond(trader.exposure(), trader.position, target) <= before + 1e-9

    def deliver(index: int) -> None:
        kind, record = trader.queue.pop(index % len(trader.queue))
        send(runtime.on_order(record) if kind == "order" else runtime.on_fill(record))

    for step in steps:
        if step[0] == "target":
            target = step[1]
            runtime.set_params("tgt", {"want": target, "use_target": True})
            send(runtime.on_prices("AAPL", "5 secs", bar(next(bars))))
        elif step[0] == "execute":
            trader.execute(step[1], step[2])
        elif step[0] == "deliver" and trader.queue:
            deliver(step[1])
        elif step[0] == "cancels":
            trader.confirm_cancels()
        else:
            send(runtime.on_prices("AAPL", "5 secs", bar(next(bars))))
    for _ in range(50):  # settle: every event delivered, cancels confirmed, a bar
        while trader.queue:
            deliver(0)
        trader.confirm_cancels()
        while trader.queue:
            deliver(0)
        send(runtime.on_prices("AAPL", "5 secs", bar(next(bars))))
        for _ in range(5):
            trader.execute(0, 1.0)
        if not trader.queue and not any(o["working"] for o in trader.orders.values()):
            break
    assert trader.position == pytest.approx(target)
    assert strategy.position("AAPL") == pytest.approx(trader.position)
