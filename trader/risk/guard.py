"""The live-trading guard: a live account needs ``risk.trading_mode: live``, said on purpose.

Paper is recognised by the port (TWS paper 7497, IB Gateway paper 4002, the paper exchange's) and
by the account (IB paper accounts start with ``D``: DU..., DF...). Live is TWS 7496, IB Gateway
4001, or any account id not starting with D. The trader calls the guard twice: at start with the
configured port and account (the account may still be empty), and once connected with the account
IB reports as managed; a reason is fatal (it refuses to start, or disconnects, saying why).
"""

from __future__ import annotations

from typing import Final

LIVE_PORTS: Final = {7496: "TWS live port 7496", 4001: "IB Gateway live port 4001"}


def live_trading_guard(port: int, account: str, trading_mode: str) -> str | None:
    """Why trading must not start (a live port or account without ``trading_mode: live``), or None."""
    if trading_mode == "live":
        return None
    why: list[str] = []
    if port in LIVE_PORTS:
        why.append(LIVE_PORTS[port])
    if account and not account.upper().startswith("D"):
        why.append(f"account {account} is not a paper account (paper accounts start with D)")
    if not why:
        return None
    return (
        f"live trading refused: {' and '.join(why)}, but risk.trading_mode is {trading_mode!r}; "
        "set risk.trading_mode: live in configs/trader.yaml to trade real money"
    )
