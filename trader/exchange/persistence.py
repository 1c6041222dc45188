"""The exchange's state on disk: ``<data-dir>/exchange/state.json``, written atomically.

The file holds :meth:`MatchingEngine.to_dict` (account, positions, working orders, order id and
permId counters, recent executions, shocks and halts). The server saves it after every batch of
events that changed orders or fills (right away when idle; bursts coalesced to one save per
``save_interval_s``, 0.25 s, so the latest state is on disk within that) and durably on
shutdown; the service restores it at start unless ``--reset``. A file that cannot be read is
moved aside (``state.json.broken-<time>``) and logged, and the exchange starts fresh rather than
refusing to start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from trader.exchange.account import Account
from trader.exchange.commissions import CommissionSchedule
from trader.exchange.instruments import Universe
from trader.exchange.market import Market
from trader.exchange.matching import EngineConfig, MatchingEngine

log = logging.getLogger("trader.exchange.persistence")

STATE_FILE = "state.json"


def state_path(data_dir: Path) -> Path:
    return data_dir / "exchange" / STATE_FILE


class StateStore:
    """Atomic JSON saves of the engine state (temp file + rename; fsync on request)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saves = 0
        self.last_save_s = 0.0
        """Duration of the last save, seconds."""

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (or it was broken and moved aside)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as exc:
            self._move_aside(f"unreadable ({exc})")
            return None
        return data

    def save(self, data: dict[str, Any], *, durable: bool = False) -> None:
        """Replace the file with ``data`` in one rename; ``durable`` also fsyncs file and folder."""
        started = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.saves += 1
        self.last_save_s = time.perf_counter() - started

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _move_aside(self, why: str) -> None:
        target = self.path.with_name(f"{self.path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        log.error("exchange state %s is %s; moved to %s, starting fresh", self.path, why, target.name)
        with contextlib.suppress(OSError):
            os.replace(self.path, target)


def open_engine(
    store: StateStore,
    universe: Universe,
    market: Market,
    *,
    account_id: str,
    initial_cash: float,
    config: EngineConfig,
    reset: bool = False,
    commissions: CommissionSchedule | None = None,
) -> MatchingEngine:
    """The engine restored from ``store`` or, on ``reset`` / no state, a fresh one."""
    if reset:
        store.remove()
        log.info("exchange state reset: fresh account %s with %.2f", account_id, initial_cash)
    data = None if reset else store.load()
    if data is not None:
        try:
            engine = MatchingEngine.from_dict(data, universe, market, commissions, config)
        except (KeyError, TypeError, ValueError) as exc:
            store._move_aside(f"not a state this exchange can restore ({exc!r})")
        else:
            if engine.account.account_id != account_id:
                log.warning(
                    "restored account %s although the configuration names %s; keeping %s "
                    "(start with --reset to switch)",
                    engine.account.account_id,
                    account_id,
                    engine.account.account_id,
                )
            log.info(
                "exchange state restored from %s: %d positions, %d working orders, cash %.2f",
                store.path,
                sum(1 for p in engine.account.positions.values() if p.quantity),
                len(engine.open_orders()),
                engine.account.cash,
            )
            return engine
    account = Account(universe, account_id, initial_cash)
    return MatchingEngine(universe, market, account, commissions, config)
