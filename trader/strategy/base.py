"""What strategy authors subclass: :class:`Strategy`.

```python
from trader.strategy import Param, Strategy, sma


class SmaCrossover(Strategy):
    fast = Param(10, "fast SMA bars", min=2)
    slow = Param(30, "slow SMA bars", min=3)
    quantity = Param(10.0, "shares when long", min=0)

    def on_prices(self, prices: pd.DataFrame) -> None:
        symbol = prices.attrs["symbol"]
        fast, slow = sma(prices["close"], self.fast), sma(prices["close"], self.slow)
        if len(prices) >= self.slow:
            self.target(symbol, self.quantity if fast.iloc[-1] > slow.iloc[-1] else 0.0)
```

The runtime (:class:`trader.strategy.runtime.StrategyRuntime`) sets ``name``, ``instruments``,
``bar_size``, ``log`` and ``prices_stream`` before ``on_start``, and routes the calls below to the
strategy's state there. Hooks run one at a time (never concurrently); an exception in a hook puts
the strategy in ERROR and nothing it asked for in that hook is sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pandas as pd

if TYPE_CHECKING:
    import reactivex


class StrategyContext(Protocol):
    """What a strategy's calls are routed to (the runtime's per-strategy slot)."""

    def target(self, symbol: str, quantity: float) -> None: ...

    def place(
        self,
        symbol: str,
        action: str,
        quantity: float,
        *,
        limit: float | None,
        stop: float | None,
        tif: str,
        take_profit: float | None,
        stop_loss: float | None,
        client_order_id: str | None,
    ) -> str: ...

    def cancel(self, client_order_id: str) -> None: ...

    def position(self, symbol: str) -> float: ...

    def working_orders(self, symbol: str | None) -> list[dict[str, Any]]: ...

    def window(self, symbol: str) -> pd.DataFrame: ...

    def indicator(self, symbol: str, name: str, params: dict[str, Any]) -> Any: ...


class Strategy:
    """Base class of strategies. Override the hooks you need; declare parameters with ``Param``."""

    window_length: ClassVar[int] = 200
    """Rows kept per instrument (the runtime keeps ``max(window_length, warm-up bars)``)."""

    name: str = ""
    instruments: tuple[str, ...] = ()
    bar_size: str = ""
    """``"ticks"`` or IB's bar size (``"5 secs"``, ``"1 min"`` ...)."""
    log: logging.Logger = logging.getLogger("strategy")
    _context: StrategyContext | None = None
    _prices_stream: reactivex.Observable[pd.DataFrame] | None = None

    # -- hooks -----------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Once, when the strategy first runs (after its warm-up)."""

    def on_prices(self, prices: pd.DataFrame) -> None:
        """The rolling window of ONE instrument that just got a new bar (or ticks): index = bar
        start (UTC), columns open high low close volume (bars) or bid ask last bid_size ask_size
        last_size (ticks); ``prices.attrs["symbol"]`` is the symbol."""

    def on_fill(self, fill: dict[str, Any]) -> None:
        """One of this strategy's fills (the trader's fill record, docs/rpc.md), once per exec id."""

    def on_order(self, order: dict[str, Any]) -> None:
        """One of this strategy's order records, each time the order changed."""

    def on_stop(self) -> None:
        """When the runtime stops the strategy (the service shuts down)."""

    # -- the runtime's ---------------------------------------------------------------------------

    @property
    def prices_stream(self) -> reactivex.Observable[pd.DataFrame]:
        """Emits each DataFrame passed to ``on_prices`` (the same object, right after the hook);
        completes when the strategy stops. Subscribe in ``on_start``."""
        if self._prices_stream is None:
            raise RuntimeError(f"{type(self).__name__} is not in a runtime yet: no prices_stream")
        return self._prices_stream

    def _ctx(self) -> StrategyContext:
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} is not in a runtime yet: it cannot trade")
        return self._context

    # -- intents ---------------------------------------------------------------------------------

    def target(self, symbol: str, quantity: float) -> None:
        """Desired signed position in ``symbol``: the runtime places and cancels orders to reach it
        (never past it), re-planning on every price, order update and fill. Repeating it is free."""
        self._ctx().target(symbol, float(quantity))

    def buy(
        self,
        symbol: str,
        quantity: float,
        *,
        limit: float | None = None,
        stop: float | None = None,
        tif: str = "DAY",
        take_profit: float | None = None,
        stop_loss: float | None = None,
        client_order_id: str | None = None,
    ) -> str:
        """Buy ``quantity`` (MKT; LMT with ``limit``, STP with ``stop``, STP LMT with both; a bracket
        with ``take_profit`` / ``stop_loss``). Returns the client order id (generated unless given; a
        given id already known to the strategy is not placed again)."""
        return self._ctx().place(
            symbol,
            "BUY",
            quantity,
            limit=limit,
            stop=stop,
            tif=tif,
            take_profit=take_profit,
            stop_loss=stop_loss,
            client_order_id=client_order_id,
        )

    def sell(
        self,
        symbol: str,
        quantity: float,
        *,
        limit: float | None = None,
        stop: float | None = None,
        tif: str = "DAY",
        take_profit: float | None = None,
        stop_loss: float | None = None,
        client_order_id: str | None = None,
    ) -> str:
        """Sell ``quantity``; as :meth:`buy`."""
        return self._ctx().place(
            symbol,
            "SELL",
            quantity,
            limit=limit,
            stop=stop,
            tif=tif,
            take_profit=take_profit,
            stop_loss=stop_loss,
            client_order_id=client_order_id,
        )

    def cancel(self, client_order_id: str) -> None:
        """Cancel one of this strategy's orders (once: repeats while it is being cancelled are no-ops)."""
        self._ctx().cancel(client_order_id)

    # -- state -----------------------------------------------------------------------------------

    def position(self, symbol: str) -> float:
        """This strategy's attributed position in ``symbol`` (signed), from its fills."""
        return self._ctx().position(symbol)

    def working_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """This strategy's working orders (of ``symbol``, or all): the last order record of each
        plus ``remaining`` (what may still fill), ``cancel_requested`` and ``acknowledged``."""
        return self._ctx().working_orders(symbol)

    def window(self, symbol: str) -> pd.DataFrame:
        """The current rolling window of ``symbol`` (as passed to ``on_prices``)."""
        return self._ctx().window(symbol)

    def indicator(self, symbol: str, name: str, **params: Any) -> Any:
        """A named indicator (``sma``, ``ema``, ``rsi``, ``bollinger``, ``atr``) of ``symbol``'s
        window, computed once per window update: ``self.indicator("AAPL", "sma", n=20)``."""
        return self._ctx().indicator(symbol, name, params)
