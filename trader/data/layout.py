"""Names in the store: libraries, symbol prefixes, bar-size normalisation, URI canonical form.

See docs/storage.md.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

ORDERS_LIB = "orders"
FILLS_LIB = "fills"
POSITIONS_LIB = "positions"
PORTFOLIO_LIB = "portfolio"
UNIVERSES_LIB = "universes"
TICKS_LIB = "ticks"
BARS_PREFIX = "bars_"
ACCOUNT_PREFIX = "account."
PNL_PREFIX = "pnl."
CONTRACT_PREFIX = "contract."
UNIVERSE_PREFIX = "universe."

_MAX_SYMBOL = 200
_BAD_SYMBOL_CHARS = frozenset("*&<>")
_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "h": "h", "hour": "h", "hours": "h",
    "d": "day", "day": "day", "days": "day",
    "w": "week", "week": "week", "weeks": "week",
    "month": "month", "months": "month",
}  # fmt: skip


def bars_library(bar_size: str) -> str:
    """Library name for an IB bar size: ``'1 min'`` -> ``'bars_1min'``, ``'5 mins'`` -> ``'bars_5min'``,
    ``'30 secs'`` -> ``'bars_30s'``, ``'1 hour'`` -> ``'bars_1h'``, ``'1 day'`` -> ``'bars_1day'``,
    ``'1 week'`` -> ``'bars_1week'``, ``'1 month'`` -> ``'bars_1month'``. Already-normalised forms
    (``'1min'``, ``'bars_1min'``) are accepted. Unknown sizes raise ``ValueError``."""
    text = str(bar_size).strip().lower()
    text = text.removeprefix(BARS_PREFIX)
    m = re.fullmatch(r"(\d+)\s*([a-z]+)", text)
    if not m or m[2] not in _UNITS or int(m[1]) <= 0:
        raise ValueError(f"unknown bar size {bar_size!r} (e.g. '1 min', '5 mins', '1 hour', '1 day')")
    return f"{BARS_PREFIX}{int(m[1])}{_UNITS[m[2]]}"


def con_id_symbol(con_id: int) -> str:
    """The symbol of an instrument: its IB conId as a decimal string."""
    try:
        value = operator.index(con_id)
    except TypeError:
        raise ValueError(f"con_id must be an int, got {con_id!r}") from None
    if isinstance(con_id, bool) or value <= 0:
        raise ValueError(f"con_id must be a positive int, got {con_id!r}")
    return str(value)


def check_symbol(name: str, what: str) -> str:
    """``name`` if it is a valid symbol part (printable ASCII, not ``*&<>``, <= 200 chars)."""
    if not isinstance(name, str) or not name or len(name) > _MAX_SYMBOL:
        raise ValueError(f"{what} must be a non-empty str of at most {_MAX_SYMBOL} chars, got {name!r}")
    bad = [c for c in name if not 32 <= ord(c) <= 126 or c in _BAD_SYMBOL_CHARS]
    if bad or name != name.strip():
        raise ValueError(f"{what} {name!r}: only printable ASCII without '*&<>' or edge spaces")
    return name


def normalise_uri(uri: str) -> str:
    """The canonical form of a store URI (lmdb paths absolute; their directory created)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise ValueError(f"store URI {uri!r} has no scheme (lmdb://..., s3://..., mem://)")
    if scheme != "lmdb":
        return uri
    path, q, query = rest.partition("?")
    if not path:
        raise ValueError(f"store URI {uri!r} has no path")
    resolved = Path(path).expanduser().resolve()
    resolved.mkdir(parents=True, exist_ok=True)
    return f"lmdb://{resolved.as_posix()}{q}{query}"
