"""Saving and restoring the matching engine (account, working orders, ids) as JSON-able data.

The service writes :meth:`MatchingEngine.to_dict` under its data directory and rebuilds the engine
with :meth:`MatchingEngine.from_dict` after a restart: positions, cash, working DAY/GTC orders
(expired ones are cancelled by the next ``on_time``), permId / execId counters, the next order
ids per client, the recent executions (reqExecutions) and the market's shocks and halts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from trader.exchange.events import CommissionReportEvent, ExecutionEvent
from trader.exchange.orders import WorkingOrder

if TYPE_CHECKING:
    from trader.exchange.matching import MatchingEngine

VERSION = 1
_EXECUTIONS_SAVED = 1000


def engine_state(engine: MatchingEngine) -> dict[str, Any]:
    working = [w for orders in engine._working.values() for w in orders.values() if not w.done]
    working.sort(key=lambda w: w.order.permId)
    recent = list(engine._executions)[-_EXECUTIONS_SAVED:]
    return {
        "version": VERSION,
        "account": engine.account.to_dict(),
        "orders": [w.to_dict() for w in working],
        "next_perm_id": engine.next_perm_id,
        "exec_seq": engine.exec_seq,
        "next_ids": {str(c): n for c, n in engine._next_ids.items()},
        "executions": [[dataclasses.asdict(e), dataclasses.asdict(r)] for e, r in recent],
        "market": engine.market.to_dict(),
    }


def restore_engine_state(engine: MatchingEngine, data: dict[str, Any]) -> None:
    """Load ``data`` (from :func:`engine_state`) into a freshly built engine."""
    version = data.get("version")
    if version != VERSION:
        raise ValueError(f"unsupported exchange state version {version!r} (expected {VERSION})")
    engine.next_perm_id = int(data["next_perm_id"])
    engine.exec_seq = int(data["exec_seq"])
    engine._next_ids = {int(c): int(n) for c, n in data.get("next_ids", {}).items()}
    for raw in data.get("orders", []):
        inst = engine.universe.get(int(raw["order"]["conId"]))
        if inst is None:
            continue
        wo = WorkingOrder.from_dict(raw, inst)
        engine._orders[wo.key] = wo
        engine._working.setdefault(inst.conId, {})[wo.key] = wo
    for raw_exec, raw_report in data.get("executions", []):
        engine._executions.append((ExecutionEvent(**raw_exec), CommissionReportEvent(**raw_report)))
    if "market" in data:
        engine.market.load_dict(data["market"])
