"""Mean reversion on Bollinger bands, written with explicit orders instead of targets.

Close below the lower band (n bars, k standard deviations) -> buy `quantity` with a limit at that
close; once long, close back at or above the middle band -> sell everything held. An entry order
still working when the price is back at the middle is cancelled. With explicit orders the strategy
itself must avoid sending the same order twice: it looks at position() and working_orders().

configs/strategies.yaml::

    meanrev:
      class: strategies/mean_reversion.py:MeanReversion
      instruments: [SPY]
      bar_size: 1 min
      warmup_bars: 20
      params: {n: 20, k: 2.0, quantity: 10}
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from trader.strategy import Param, Strategy, bollinger


class MeanReversion(Strategy):
    n = Param(20, "bars in the Bollinger moving average", min=2)
    k = Param(2.0, "band width in standard deviations", min=0.1)
    quantity = Param(100, "shares bought on an entry", min=1)
    use_limit = Param(True, "enter with a limit at the close (False: a market order)")

    def on_prices(self, prices: pd.DataFrame) -> None:
        if len(prices) < self.n:
            return
        symbol = prices.attrs["symbol"]
        close = float(prices["close"].iloc[-1])
        band = bollinger(prices["close"], self.n, self.k).iloc[-1]  # columns mid, upper, lower
        held = self.position(symbol)
        working = self.working_orders(symbol)  # order records (docs/rpc.md) still at the broker

        if held == 0 and not working and close < band["lower"]:
            self.buy(symbol, self.quantity, limit=close if self.use_limit else None)
        elif close >= band["mid"]:
            for order in working:  # an entry that did not fill before the reversion: drop it
                if order["action"] == "BUY":
                    self.cancel(order["client_order_id"])
            if held > 0 and not any(order["action"] == "SELL" for order in working):
                self.sell(symbol, held)  # exit at market

    def on_fill(self, fill: dict[str, Any]) -> None:
        # Each execution of this strategy's orders, once (partial fills arrive one by one).
        # position() already includes it when this hook runs.
        self.log.info(
            "%s %s %s @ %s -> position %s",
            fill["side"],
            fill["shares"],
            fill["symbol"],
            fill["price"],
            self.position(fill["symbol"]),
        )
