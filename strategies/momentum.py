"""Momentum: the return over the last `lookback` bars decides the position.

Return above `threshold` -> long `quantity`; below -`threshold` -> short `quantity` (or flat with
`long_only`); in between -> keep whatever is held (a dead band that saves round trips on noise).

configs/strategies.yaml::

    momentum:
      class: strategies/momentum.py:Momentum
      instruments: [AAPL, MSFT]       # one strategy, several instruments: on_prices is per instrument
      bar_size: 5 mins
      warmup_bars: 25
      params: {lookback: 20, threshold: 0.02, quantity: 50}
"""

from __future__ import annotations

import pandas as pd

from trader.strategy import Param, Strategy


class Momentum(Strategy):
    lookback = Param(20, "bars over which the return is measured", min=1)
    threshold = Param(0.01, "return (0.01 = 1%) needed to go long or short", min=0.0)
    quantity = Param(100, "shares held when in a position", min=1)
    long_only = Param(False, "go flat instead of short on negative momentum")

    def on_prices(self, prices: pd.DataFrame) -> None:
        close = prices["close"]
        if len(close) <= self.lookback:
            return  # the window needs lookback + 1 closes
        ret = close.iloc[-1] / close.iloc[-1 - self.lookback] - 1.0
        symbol = prices.attrs["symbol"]
        if ret > self.threshold:
            self.target(symbol, self.quantity)
        elif ret < -self.threshold:
            self.target(symbol, 0 if self.long_only else -self.quantity)
        # in the dead band: no call, so the current target (and position) stays as it is
