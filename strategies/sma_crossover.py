"""SMA crossover: long while the fast moving average of closes is above the slow one, short (or flat)
otherwise.

The target style: the strategy only says which position it wants; the runtime places, cancels and
re-plans orders until the position gets there. Repeating the same target on every bar is free: it
never doubles the position, and after a restart the restored position and open orders are counted.

configs/strategies.yaml::

    sma_fast:
      class: strategies/sma_crossover.py:SmaCrossover
      instruments: [AAPL]
      bar_size: 1 min
      warmup_bars: 30          # >= slow, so the first live bar can already trade
      params: {fast: 5, slow: 20, quantity: 10}
"""

from __future__ import annotations

import pandas as pd

from trader.strategy import Param, Strategy


class SmaCrossover(Strategy):
    # Parameters: the default's type is the parameter's type; the config's `params:` override them
    # (checked at load: an unknown name, a wrong type or a value out of range is a config error).
    fast = Param(10, "bars in the fast moving average", min=1)
    slow = Param(30, "bars in the slow moving average", min=2)
    quantity = Param(100, "shares held long (and short unless long_only)", min=1)
    long_only = Param(False, "go flat instead of short when fast <= slow")

    def on_start(self) -> None:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")  # -> ERROR state
        self.log.info("SMA %d/%d on %s", self.fast, self.slow, ", ".join(self.instruments))

    def on_prices(self, prices: pd.DataFrame) -> None:
        # `prices` is the rolling window (bars: open high low close volume) of the instrument that
        # just got a new bar; the newest bar is the last row.
        if len(prices) < self.slow:
            return  # not enough history yet: no opinion, no order
        symbol = prices.attrs["symbol"]
        # self.indicator computes on the window once per new bar (cached); the same as
        # trader.strategy.sma(prices["close"], n), a pandas Series (NaN before n bars).
        fast = self.indicator(symbol, "sma", n=self.fast).iloc[-1]
        slow = self.indicator(symbol, "sma", n=self.slow).iloc[-1]
        if fast > slow:
            self.target(symbol, self.quantity)
        else:
            self.target(symbol, 0 if self.long_only else -self.quantity)
