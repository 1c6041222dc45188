"""The IB side of the trader service, over ib_async.

* :mod:`~trader.ib.session` — ``IbSession``: one ``IB`` kept connected (backoff, 326, 1100/1101/1102,
  heartbeat), sync hooks (resubscribe, reconcile), ``require_connected()`` / ``NotConnected``;
* :mod:`~trader.ib.errors` — IB error codes by meaning (``classify``), ``NotConnected``;
* :mod:`~trader.ib.backoff` — exponential backoff with full jitter (pure);
* :mod:`~trader.ib.contracts` — ``ContractResolver``: symbol -> qualified contract, cached in the store;
* :mod:`~trader.ib.market_data` — ``MarketData``: reference-counted subscriptions, delayed fallback, ticks;
* :mod:`~trader.ib.pacing` — ``PacingLimiter``: IB's historical pacing rules (pure core);
* :mod:`~trader.ib.history` — ``History``: paced, retried historical bars cached in the store.
"""
