"""Small JSON state files replaced atomically: the one way Bourse writes them.

:func:`write_json_atomic` writes a temporary file in the same directory, fsyncs it, renames it over
the target and fsyncs the directory, so a crash leaves either the old file or the new one, never
half of one. Used for the book, the trader's subscriptions, the risk limits and states, and
pycron's schedule book.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, *, compact: bool = False, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` as JSON in one rename. ``compact``: no indentation (large
    files); ``durable``: fsync the file and its directory (off only where losing the last write is
    harmless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if compact:
                json.dump(data, fh, separators=(",", ":"), allow_nan=False)
            else:
                json.dump(data, fh, indent=1, sort_keys=True, allow_nan=False)
                fh.write("\n")
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
