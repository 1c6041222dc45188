"""Persistence: the ArcticDB store (libraries, symbols, typed read/write) and its async writer.

See docs/storage.md for the layout.
"""

from __future__ import annotations

from trader.data.layout import bars_library
from trader.data.store import Store, StoreError
from trader.data.writer import AsyncStoreWriter, StoreWriteError

__all__ = ["AsyncStoreWriter", "Store", "StoreError", "StoreWriteError", "bars_library"]
