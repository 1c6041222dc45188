"""Persistence of the risk engine under ``<data-dir>/risk/``: runtime limit changes
(``limits.json``) and trading states with the breaker's day tracks (``state.json``).

JSON, written atomically (a temporary file in the same directory, fsync, ``os.replace``), so a
crash leaves the old file or the new one, never half of one. A missing file is an empty record; a
broken one is a :class:`RiskStoreError` naming the file (the trader refuses to start rather than
trade with forgotten limits or a forgotten halt).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from trader.jsonfile import write_json_atomic
from trader.risk.limits import LimitError, parse_scope, validate_limit

VERSION: Final = 1

Overrides = dict[str, dict[str, float | int | None]]
"""Runtime limit changes: scope -> limit key -> value (None: no limit; for a strategy, inherit)."""


class RiskStoreError(ValueError):
    pass


def risk_dir(data_dir: Path) -> Path:
    return data_dir / "risk"


def limits_file(data_dir: Path) -> Path:
    return risk_dir(data_dir) / "limits.json"


def state_file(data_dir: Path) -> Path:
    return risk_dir(data_dir) / "state.json"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RiskStoreError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise RiskStoreError(f"{path}: expected a JSON object with version {VERSION}")
    return data


def save_overrides(path: Path, overrides: Mapping[str, Mapping[str, float | int | None]]) -> None:
    write_json_atomic(path, {"version": VERSION, "overrides": {s: dict(v) for s, v in overrides.items()}})


def load_overrides(path: Path) -> Overrides:
    data = read_json(path)
    if data is None:
        return {}
    raw = data.get("overrides", {})
    if not isinstance(raw, dict):
        raise RiskStoreError(f"{path}: overrides: expected an object")
    out: Overrides = {}
    for scope, values in raw.items():
        try:
            if not isinstance(values, dict):
                raise LimitError(f"expected an object of limits, got {values!r}")
            out[parse_scope(scope)] = {key: validate_limit(key, value) for key, value in values.items()}
        except LimitError as exc:
            raise RiskStoreError(f"{path}: overrides.{scope}: {exc}") from None
    return out


def save_state(path: Path, record: Mapping[str, Any]) -> None:
    write_json_atomic(path, {"version": VERSION, **record})


def load_state(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if data is None:
        return {}
    data.pop("version")
    return data
