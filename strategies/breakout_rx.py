"""Channel breakout, written reactively: the strategy subscribes to ``self.prices_stream`` (each
window ``on_prices`` would get) in ``on_start`` and composes reactivex operators instead of
overriding ``on_prices``. What the operators call runs inside the runtime's hook, so a target set
there is planned like any other and an exception puts the strategy in ERROR.

Close above the highest high of the ``n`` bars before it -> long ``quantity``; below their lowest
low -> short ``quantity`` (flat with ``long_only``); inside the channel -> keep the position.
"""

from __future__ import annotations

import pandas as pd
from reactivex import operators as ops

from trader.strategy import Param, Strategy


class Breakout(Strategy):
    n = Param(20, "bars in the channel before the current bar", min=1)
    quantity = Param(100, "shares held when in a position", min=1)
    long_only = Param(False, "go flat instead of short on a downside break")

    def on_start(self) -> None:
        # The subscription lives as long as the strategy: the stream completes when it stops.
        self.prices_stream.pipe(
            ops.filter(self.has_channel),  # enough bars for a channel
            ops.map(self.signal),  # -> (symbol, +1 / -1 / 0)
            ops.filter(is_break),  # inside the channel: nothing to do
        ).subscribe(self.on_signal)

    def has_channel(self, prices: pd.DataFrame) -> bool:
        return len(prices) > self.n

    def signal(self, prices: pd.DataFrame) -> tuple[str, int]:
        close = prices["close"].iloc[-1]
        channel = prices.iloc[-1 - self.n : -1]  # the n bars before the current one
        if close > channel["high"].max():
            return prices.attrs["symbol"], 1
        if close < channel["low"].min():
            return prices.attrs["symbol"], -1
        return prices.attrs["symbol"], 0

    def on_signal(self, signal: tuple[str, int]) -> None:
        symbol, side = signal
        if side < 0 and self.long_only:
            self.target(symbol, 0)
        else:
            self.target(symbol, side * self.quantity)


def is_break(signal: tuple[str, int]) -> bool:
    return signal[1] != 0
