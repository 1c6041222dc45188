"""Value types of the IB session: connection states, sync reasons and contexts, state changes,
farm info and counters (see :mod:`trader.ib.session`)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ib_async import IB

from trader.ib.errors import FarmStatus


class ConnectionState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    """No API connection (not started yet, or lost and waiting for the next attempt)."""
    CONNECTING = "connecting"
    """An attempt to connect is running."""
    SYNCING = "syncing"
    """The API connection is up; market data is being resubscribed and the book reconciled."""
    CONNECTED = "connected"
    """Up and reconciled: orders may be sent."""
    DEGRADED = "degraded"
    """The API socket is up but TWS lost IB (1100 / 2110): orders are refused until 1101/1102."""
    CLOSED = "closed"
    """:meth:`IbSession.close` was called."""


UP_STATES = frozenset({ConnectionState.SYNCING, ConnectionState.CONNECTED, ConnectionState.DEGRADED})
"""States with a live API socket."""


class SyncReason(enum.StrEnum):
    CONNECT = "connect"
    """The first connection of this session."""
    RECONNECT = "reconnect"
    """A new API connection after the previous one was lost (every subscription is gone)."""
    DATA_LOST = "data_lost"
    """1101: TWS is back with IB but market data and account subscriptions were dropped."""
    VERIFY = "verify"
    """1102 (or farms back after 2110): data was kept; check orders and positions."""

    @property
    def resubscribe(self) -> bool:
        """The subscriptions of the previous connection are gone and must be requested again."""
        return self is not SyncReason.VERIFY


@dataclass(frozen=True, slots=True)
class SyncContext:
    """What a resubscriber or reconcile hook is told about the sync it runs in."""

    reason: SyncReason
    ib: IB
    client_id: int
    account: str
    down_since: float | None
    """When the session stopped being CONNECTED (epoch seconds); None on the first connect."""
    connects: int
    """API connections made so far by this session (1 on the first)."""


SyncHook = Callable[[SyncContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StateChange:
    state: ConnectionState
    previous: ConnectionState
    since: float
    """Epoch seconds (the session's clock) when ``state`` was entered."""
    reason: str
    code: int | None = None
    """The IB code that caused it (1100, 1102 ...), if any."""


@dataclass(frozen=True, slots=True)
class FarmInfo:
    status: FarmStatus
    since: float


@dataclass(slots=True)
class SessionStats:
    attempts: int = 0
    connects: int = 0
    client_id_bumps: int = 0
    syncs: int = 0
    sync_failures: int = 0
    heartbeat_failures: int = 0
