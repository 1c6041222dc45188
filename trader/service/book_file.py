"""``<data-dir>/book/book.json``: the book's records, replaced atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from trader.jsonfile import write_json_atomic

log = logging.getLogger("trader.service.app")


class BookFile:
    """``<dir>/book.json``: the book's records, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "book.json"
        self.saves = 0
        self.last_save_s = 0.0

    def load(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data

    def move_aside(self, why: str) -> None:
        aside = self.path.with_name(f"book.broken-{time.time_ns()}.json")
        log.error(
            "book file %s unusable (%s): moved to %s; rebuilding from the store and IB", self.path, why, aside
        )
        with contextlib.suppress(OSError):
            self.path.rename(aside)

    def save(self, records: dict[str, Any], saved_ns: int) -> None:
        started = time.perf_counter()
        write_json_atomic(self.path, {"saved_ns": saved_ns, "book": records}, compact=True)
        self.saves += 1
        self.last_save_s = time.perf_counter() - started
