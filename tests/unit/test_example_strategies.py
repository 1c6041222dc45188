"""The example strategies in strategies/, driven through the pure StrategyRuntime with synthetic bars
(no sockets): the intents (orders, cancels) they produce on a rising then falling market."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategies.breakout_rx import Breakout
from strategies.mean_reversion import MeanReversion
from strategies.momentum import Momentum
from strategies.sma_crossover import SmaCrossover
from trader.config.schema import ConfigError
from trader.strategy import CancelOrder, Intent, PlaceOrder, Strategy, StrategyRuntime, StrategyState

SYMBOL = "AAPL"
BAR_SIZE = "1 min"


def bars(closes: Sequence[float], start: str = "2026-01-05 14:30") -> pd.DataFrame:
    """One-minute bars (UTC) with these closes; high/low half a dollar around the close."""
    close = np.asarray(closes, dtype=float)
    index = pd.date_range(start, periods=len(close), freq="1min", tz="UTC")
    return pd.DataFrame(
        {"open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1000.0},
        index=index,
    )


def rising_then_falling(n: int = 40) -> list[float]:
    """100, 101 ... up for n bars, then down again as far."""
    up = [100.0 + i for i in range(n)]
    return up + up[-2::-1]


class Broker:
    """Stands in for the trader: records every intent and, when ``fills``, fills each order at once
    (at its limit, else at the current close) with the order and fill events the trader sends."""

    def __init__(self, runtime: StrategyRuntime, *, fills: bool = True) -> None:
        self.runtime = runtime
        self.fills = fills
        self.intents: list[Intent] = []
        self.close = 0.0
        self._exec = itertools.count(1)

    def feed(self, frame: pd.DataFrame) -> None:
        """Bar after bar, as the strategy service would deliver them."""
        for i in range(len(frame)):
            self.close = float(frame["close"].iloc[i])
            self.handle(self.runtime.on_prices(SYMBOL, BAR_SIZE, frame.iloc[i : i + 1]))

    def handle(self, intents: list[Intent]) -> None:
        for intent in intents:
            self.intents.append(intent)
            if isinstance(intent, CancelOrder):
                record = {"client_order_id": intent.client_order_id, "strategy": intent.strategy}
                self.handle(self.runtime.on_order(record | {"state": "Cancelled", "working": False}))
            elif self.fills:
                self.fill(intent)
            else:
                self.handle(self.runtime.on_order(order_record(intent, "Submitted", filled=0.0)))

    def fill(self, order: PlaceOrder) -> None:
        exec_id = f"exec-{next(self._exec)}"
        price = order.limit_price if order.limit_price is not None else self.close
        sign = 1.0 if order.action == "BUY" else -1.0
        fill = {
            "kind": "fill",
            "exec_id": exec_id,
            "strategy": order.strategy,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": "BOT" if sign > 0 else "SLD",
            "shares": order.quantity,
            "quantity": sign * order.quantity,
            "price": price,
        }
        self.handle(self.runtime.on_order(order_record(order, "Submitted", filled=0.0)))
        self.handle(self.runtime.on_fill(fill))
        self.handle(self.runtime.on_order(order_record(order, "Filled", order.quantity, [exec_id])))

    def orders(self) -> list[tuple[str, float, str]]:
        """(action, quantity, order type) of every order placed, in order."""
        return [(i.action, i.quantity, i.order_type) for i in self.intents if isinstance(i, PlaceOrder)]


def order_record(
    order: PlaceOrder, state: str, filled: float, exec_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """The trader's order record (docs/rpc.md), reduced to what the runtime reads."""
    return {
        "client_order_id": order.client_order_id,
        "strategy": order.strategy,
        "symbol": order.symbol,
        "action": order.action,
        "quantity": order.quantity,
        "order_type": order.order_type,
        "limit_price": order.limit_price,
        "state": state,
        "filled": filled,
        "remaining": order.quantity - filled,
        "working": state not in ("Filled", "Cancelled"),
        "exec_ids": list(exec_ids),
    }


def runtime_with(strategy: Strategy, params: dict[str, Any], name: str = "example") -> StrategyRuntime:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="test")
    runtime.add(name, strategy, [SYMBOL], BAR_SIZE)
    runtime.set_params(name, params)
    assert runtime.start(name) == []
    assert runtime.status(name)["state"] == StrategyState.RUNNING
    return runtime


# -- SmaCrossover ------------------------------------------------------------------------------------

SMA_PARAMS = {"fast": 3, "slow": 8, "quantity": 10}


def test_sma_crossover_when_market_rises_then_falls_then_long_then_short() -> None:
    runtime = runtime_with(SmaCrossover(), SMA_PARAMS)
    broker = Broker(runtime)

    broker.feed(bars(rising_then_falling()))

    assert broker.orders() == [("BUY", 10.0, "MKT"), ("SELL", 20.0, "MKT")]
    assert runtime.status("example")["position"] == {SYMBOL: -10.0}
    assert {e.kind for e in runtime.drain_events()} == {"state"}  # no error, no slow hook


def test_sma_crossover_when_long_only_then_falls_back_to_flat() -> None:
    runtime = runtime_with(SmaCrossover(), SMA_PARAMS | {"long_only": True})
    broker = Broker(runtime)

    broker.feed(bars(rising_then_falling()))

    assert broker.orders() == [("BUY", 10.0, "MKT"), ("SELL", 10.0, "MKT")]
    assert runtime.status("example")["position"] == {SYMBOL: 0.0}


def test_sma_crossover_when_orders_do_not_fill_then_repeated_targets_place_once() -> None:
    runtime = runtime_with(SmaCrossover(), SMA_PARAMS)
    broker = Broker(runtime, fills=False)

    broker.feed(bars(rising_then_falling(40)[:40]))  # the same target +10 on 33 bars

    assert broker.orders() == [("BUY", 10.0, "MKT")]


def test_sma_crossover_when_restarted_with_position_then_places_nothing_more() -> None:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="restart")
    runtime.add("sma", SmaCrossover(), [SYMBOL], BAR_SIZE, warmup_bars=30)
    runtime.set_params("sma", SMA_PARAMS)
    runtime.restore("sma", positions={SYMBOL: 10.0}, open_orders=[])
    closes = rising_then_falling()
    runtime.warm_up("sma", SYMBOL, bars(closes[:20]))  # history: no hooks, no orders
    assert runtime.start("sma") == []
    broker = Broker(runtime)

    broker.feed(bars(closes[20:40], start="2026-01-05 14:50"))  # still rising: target +10 = held

    assert broker.orders() == []


def test_sma_crossover_when_fast_not_below_slow_then_error_without_orders() -> None:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="test")
    runtime.add("bad", SmaCrossover(), [SYMBOL], BAR_SIZE)
    runtime.set_params("bad", {"fast": 8, "slow": 8})

    assert runtime.start("bad") == []
    assert runtime.on_prices(SYMBOL, BAR_SIZE, bars(rising_then_falling())) == []
    status = runtime.status("bad")
    assert status["state"] == StrategyState.ERROR
    assert "fast (8) must be below slow (8)" in status["last_error"]


def test_sma_crossover_when_param_unknown_or_out_of_range_then_config_error() -> None:
    runtime = StrategyRuntime(clock=lambda: 0.0, id_prefix="test")
    runtime.add("sma", SmaCrossover(), [SYMBOL], BAR_SIZE)

    with pytest.raises(ConfigError, match=r"params\.fastt"):
        runtime.set_params("sma", {"fastt": 3})
    with pytest.raises(ConfigError, match=r"params\.slow"):
        runtime.set_params("sma", {"slow": 1})


# -- Momentum ----------------------------------------------------------------------------------------

MOMENTUM_PARAMS = {"lookback": 5, "threshold": 0.02, "quantity": 10}


def test_momentum_when_market_rises_then_falls_then_long_then_short() -> None:
    runtime = runtime_with(Momentum(), MOMENTUM_PARAMS)
    broker = Broker(runtime)

    broker.feed(bars(rising_then_falling()))

    assert broker.orders() == [("BUY", 10.0, "MKT"), ("SELL", 20.0, "MKT")]
    assert runtime.status("example")["position"] == {SYMBOL: -10.0}


def test_momentum_when_moves_stay_inside_threshold_then_no_orders() -> None:
    runtime = runtime_with(Momentum(), MOMENTUM_PARAMS)
    broker = Broker(runtime)

    broker.feed(bars([100.0 + 0.1 * (i % 7) for i in range(60)]))  # at most 0.6% over 5 bars

    assert broker.orders() == []


def test_momentum_when_long_only_then_flat_on_the_way_down() -> None:
    runtime = runtime_with(Momentum(), MOMENTUM_PARAMS | {"long_only": True})
    broker = Broker(runtime)

    broker.feed(bars(rising_then_falling()))

    assert broker.orders() == [("BUY", 10.0, "MKT"), ("SELL", 10.0, "MKT")]


# -- MeanReversion -----------------------------------------------------------------------------------

MEANREV_PARAMS = {"n": 10, "k": 2.0, "quantity": 10}
QUIET = [100.0 + 0.2 * (i % 2) for i in range(20)]  # a tight band around 100.1


def test_mean_reversion_when_close_drops_below_band_then_buys_at_limit_and_exits_at_mid() -> None:
    runtime = runtime_with(MeanReversion(), MEANREV_PARAMS)
    broker = Broker(runtime)

    broker.feed(bars([*QUIET, 98.0, 98.5, 99.0, 100.5, 100.6]))

    assert broker.orders() == [("BUY", 10.0, "LMT"), ("SELL", 10.0, "MKT")]
    entry = next(i for i in broker.intents if isinstance(i, PlaceOrder))
    assert entry.limit_price == 98.0
    assert entry.params()["order_type"] == "LMT"
    assert runtime.status("example")["position"] == {SYMBOL: 0.0}


def test_mean_reversion_when_entry_unfilled_at_mid_then_cancels_it() -> None:
    runtime = runtime_with(MeanReversion(), MEANREV_PARAMS)
    broker = Broker(runtime, fills=False)

    broker.feed(bars([*QUIET, 98.0, 97.0, 100.5, 100.6]))  # one entry (working), then reversion

    assert broker.orders() == [("BUY", 10.0, "LMT")]
    cancels = [i for i in broker.intents if isinstance(i, CancelOrder)]
    assert [c.client_order_id for c in cancels] == [broker.intents[0].client_order_id]
    assert runtime.status("example")["working_orders"] == []


def test_mean_reversion_when_market_order_param_then_buys_at_market() -> None:
    runtime = runtime_with(MeanReversion(), MEANREV_PARAMS | {"use_limit": False})
    broker = Broker(runtime)

    broker.feed(bars([*QUIET, 98.0]))

    assert broker.orders() == [("BUY", 10.0, "MKT")]


# -- Breakout (reactive) -----------------------------------------------------------------------------


def test_breakout_when_market_rises_then_falls_then_long_then_short() -> None:
    runtime = runtime_with(Breakout(), {"n": 5, "quantity": 10})
    broker = Broker(runtime)

    broker.feed(bars(rising_then_falling()))

    assert broker.orders() == [("BUY", 10.0, "MKT"), ("SELL", 20.0, "MKT")]
    assert runtime.status("example")["position"] == {SYMBOL: -10.0}
