"""The trader service's store methods (docs/rpc.md, "Universes and stored history"): named universes
of instruments and the bars the store holds.

The trader owns the ArcticDB store (one writing process per LMDB store), so every other process --
the CLI first -- changes universes through these methods. Writes run on the store writer's thread
(``app.writer.call``, as the fills and the contract cache do); reads run in a worker thread
(``asyncio.to_thread``, as :mod:`trader.ib.history` reads bars), never on the event loop.

**Universe members** are stored as conIds (decimal strings; docs/storage.md allows contract keys or
conIds). Every symbol given is resolved first (``contract_of``: the contract cache, else IB), so an
unknown or ambiguous symbol is refused with IB's reason and nothing is written; a member is shown
with its contract (symbol, local symbol, type, exchange, currency), read from the contract cache.
"""

from __future__ import annotations

import asyncio
import functools
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pandas as pd
from ib_async import Contract

from trader.data.layout import BARS_PREFIX, bars_library
from trader.data.store import Store
from trader.ib.errors import NotConnected
from trader.messaging.rpc import BAD_PARAMS, MethodRegistry, RpcError
from trader.service.trader_api import _method, contract_of

if TYPE_CHECKING:
    from trader.service.trader_app import TraderApp

T = TypeVar("T")
UNKNOWN_UNIVERSE: Final = "unknown_universe"
CONFLICT: Final = "conflict"
MEMBER_LOOKUP_S: Final = 5.0
"""How long a member's contract may take to look up (cache, else IB) before it is shown bare."""
_SLUG = re.compile(r"(\d+)(s|min|h|day|week|month)")
_UNIT_NAMES: Final = {"s": "sec", "min": "min", "h": "hour", "day": "day", "week": "week", "month": "month"}


def bar_size_name(library: str) -> str:
    """IB's name of a bars library's size: ``bars_1min`` -> ``1 min``, ``bars_5s`` -> ``5 secs``."""
    slug = library.removeprefix(BARS_PREFIX)
    m = _SLUG.fullmatch(slug)
    if m is None:
        return slug
    count, unit = int(m[1]), _UNIT_NAMES[m[2]]
    plural = "s" if count > 1 and unit in ("sec", "min") else ""
    return f"{count} {unit}{plural}"


def utc(value: datetime | str | None, what: str) -> pd.Timestamp | None:
    """A bound as a UTC timestamp (naive: taken as UTC); ``bad_params`` when unreadable."""
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise RpcError(BAD_PARAMS, f"{what}: not a time: {value!r} ({exc})") from None
    if pd.isna(stamp):
        raise RpcError(BAD_PARAMS, f"{what}: not a time: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def series_summary(store: Store) -> list[dict[str, Any]]:
    """Every stored bar series: ``con_id``, ``bar_size``, ``library``, ``first``, ``last``, ``rows``
    (from each symbol's description: no data read)."""
    out: list[dict[str, Any]] = []
    for name in store.bar_sizes():
        lib = store.library(name)  # exists: listed
        for sym in sorted(lib.list_symbols(), key=lambda s: (len(s), s)):
            if not sym.isdigit():
                continue
            desc = lib.get_description(sym)
            first, last = desc.date_range
            empty = int(desc.row_count) == 0 or pd.isna(first)
            out.append(
                {
                    "con_id": int(sym),
                    "bar_size": bar_size_name(name),
                    "library": name,
                    "first": None if empty else pd.Timestamp(first).tz_convert("UTC"),
                    "last": None if empty else pd.Timestamp(last).tz_convert("UTC"),
                    "rows": int(desc.row_count),
                }
            )
    return out


def member_record(key: str, contract: Contract | None, error: str = "") -> dict[str, Any]:
    """One universe member as shown: its stored key and (when known) its contract."""
    record: dict[str, Any] = {"key": key, "con_id": int(key) if key.isdigit() else None}
    if contract is not None:
        record |= {
            "con_id": int(contract.conId),
            "symbol": contract.symbol,
            "local_symbol": contract.localSymbol,
            "sec_type": contract.secType,
            "exchange": contract.exchange,
            "primary_exchange": contract.primaryExchange,
            "currency": contract.currency,
        }
    if error:
        record["error"] = error
    return record


class DataMethods:
    """The methods over one app (registered by :func:`register`)."""

    def __init__(self, app: TraderApp) -> None:
        self.app = app

    def store(self) -> Store:
        if self.app.store is None:
            raise RpcError("store_error", "the store is not open yet")
        return self.app.store

    async def read(self, fn: functools.partial[T]) -> T:
        return await asyncio.to_thread(fn)

    async def write(self, fn: functools.partial[Any]) -> Any:
        if self.app.writer is None:
            raise RpcError("store_error", "the store is not open yet")
        return await self.app.writer.call(lambda _store: fn())

    async def members_of(self, name: str) -> list[str]:
        try:
            return await self.read(functools.partial(self.store().get_universe, name))
        except KeyError:
            raise RpcError(UNKNOWN_UNIVERSE, f"no universe {name!r}") from None
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, str(exc)) from None

    async def lookup(self, key: str) -> dict[str, Any]:
        """A member's record; a key that is not a conId is parsed as a contract key
        (``STK:AAPL:SMART:USD``)."""
        try:
            async with asyncio.timeout(MEMBER_LOOKUP_S):
                if key.isdigit():
                    return member_record(key, await self.app.contracts.by_con_id(int(key)))
                parts = key.split(":")
                if len(parts) >= 4:
                    sec_type, symbol, exchange, currency = parts[:4]
                    found = await self.app.contracts.resolve(symbol, sec_type, exchange, currency)
                    return member_record(key, found)
                return member_record(key, None, "not a conId or a contract key")
        except TimeoutError:
            return member_record(key, None, "contract not cached and IB did not answer in time")
        except Exception as exc:  # IB down, unknown contract: show the member bare
            return member_record(key, None, str(exc) or type(exc).__name__)

    async def resolved(
        self,
        symbols: list[str] | None,
        con_ids: list[int] | None,
        sec_type: str,
        exchange: str,
        currency: str,
    ) -> list[Contract]:
        """The contracts of the symbols and conIds; unknown_contract naming every one refused."""
        wanted: list[tuple[str | None, int | None]] = [(None, c) for c in con_ids or []]
        wanted += [(s, None) for s in symbols or []]
        if not wanted:
            raise RpcError(BAD_PARAMS, "give at least one symbol or con_id")
        found: list[Contract] = []
        refused: list[str] = []
        for symbol, con_id in wanted:
            try:
                found.append(
                    await contract_of(
                        self.app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency
                    )
                )
            except (RpcError, NotConnected, TimeoutError):
                raise
            except Exception as exc:
                refused.append(f"{symbol or con_id}: {exc}")
        if refused:
            raise RpcError("unknown_contract", "not a known instrument: " + "; ".join(refused))
        return found

    async def described(self, name: str, keys: list[str], **extra: Any) -> dict[str, Any]:
        members = [await self.lookup(k) for k in keys]
        return {"name": name, "count": len(keys), "members": members, **extra}

    async def save(self, name: str, keys: list[str]) -> None:
        try:
            await self.write(functools.partial(self.store().put_universe, name, keys))
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, str(exc)) from None

    async def list_universes(self) -> list[dict[str, Any]]:
        """Every universe: name and member count."""
        names = await self.read(functools.partial(self.store().list_universes))
        return [{"name": n, "count": len(await self.members_of(n))} for n in names]

    async def get_universe(self, *, name: str) -> dict[str, Any]:
        """A universe's members in order, each with its contract (from the contract cache)."""
        return await self.described(name, await self.members_of(name))

    async def put_universe(
        self,
        *,
        name: str,
        symbols: list[str] | None = None,
        con_ids: list[int] | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        replace: bool = True,
    ) -> dict[str, Any]:
        """Create (or, with replace, replace) a universe of these instruments, each resolved first
        (unknown_contract names every unknown one; nothing is written then)."""
        existing = await self.read(functools.partial(self.store().list_universes))
        if name in existing and not replace:
            raise RpcError(CONFLICT, f"universe {name!r} already exists (replace it, or add to it)")
        contracts = await self.resolved(symbols, con_ids, sec_type, exchange, currency)
        keys = list(dict.fromkeys(str(c.conId) for c in contracts))
        await self.save(name, keys)
        return await self.described(name, keys, created=name not in existing)

    async def universe_add(
        self,
        *,
        name: str,
        symbols: list[str] | None = None,
        con_ids: list[int] | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
    ) -> dict[str, Any]:
        """Append instruments to an existing universe (members already in it are skipped)."""
        keys = await self.members_of(name)
        contracts = await self.resolved(symbols, con_ids, sec_type, exchange, currency)
        new = [k for k in dict.fromkeys(str(c.conId) for c in contracts) if k not in keys]
        if new:
            await self.save(name, keys + new)
        return await self.described(name, keys + new, added=[int(k) for k in new])

    async def universe_remove(
        self, *, name: str, symbols: list[str] | None = None, con_ids: list[int] | None = None
    ) -> dict[str, Any]:
        """Remove members, named by conId or by symbol / local symbol (as the members show them,
        no IB request); every name must be a member, and a universe cannot become empty."""
        keys = await self.members_of(name)
        members = [await self.lookup(k) for k in keys]
        drop: set[str] = set()
        missing: list[str] = []
        names = [str(c) for c in con_ids or []] + list(symbols or [])
        if not names:
            raise RpcError(BAD_PARAMS, "give at least one symbol or con_id")
        for wanted in names:
            hits = {
                m["key"]
                for m in members
                if wanted in (m["key"], str(m["con_id"]))
                or wanted.upper()
                in (str(m.get("symbol", "")).upper(), str(m.get("local_symbol", "")).upper())
            }
            if not hits:
                missing.append(wanted)
            drop |= hits
        if missing:
            raise RpcError(BAD_PARAMS, f"not in universe {name!r}: {', '.join(missing)}")
        kept = [k for k in keys if k not in drop]
        if not kept:
            raise RpcError(BAD_PARAMS, f"that would leave universe {name!r} empty: delete it instead")
        await self.save(name, kept)
        return await self.described(
            name, kept, removed=[int(k) if k.isdigit() else k for k in keys if k in drop]
        )

    async def delete_universe(self, *, name: str) -> dict[str, Any]:
        """Delete a universe (unknown_universe if there is none)."""
        try:
            await self.write(functools.partial(self.store().delete_universe, name))
        except KeyError:
            raise RpcError(UNKNOWN_UNIVERSE, f"no universe {name!r}") from None
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, str(exc)) from None
        return {"deleted": name}

    async def history_summary(
        self, *, con_id: int | None = None, bar_size: str | None = None
    ) -> list[dict[str, Any]]:
        """What the store holds: per (conId, bar size) the first and last bar time and the row
        count, with the instrument's symbol when its contract is cached."""
        library = None
        if bar_size is not None:
            try:
                library = bars_library(bar_size)
            except ValueError as exc:
                raise RpcError(BAD_PARAMS, str(exc)) from None
        rows = [
            r
            for r in await self.read(functools.partial(series_summary, self.store()))
            if (con_id is None or r["con_id"] == con_id) and (library is None or r["library"] == library)
        ]
        symbols: dict[int, str] = {}
        for r in rows:
            if r["con_id"] not in symbols:
                member = await self.lookup(str(r["con_id"]))
                symbols[r["con_id"]] = str(member.get("local_symbol") or member.get("symbol") or "")
            r["symbol"] = symbols[r["con_id"]]
        return rows

    async def read_history(
        self,
        *,
        symbol: str | None = None,
        con_id: int | None = None,
        bar_size: str = "1 min",
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        expiry: str = "",
    ) -> pd.DataFrame:
        """The stored bars of an instrument and bar size with start <= time <= end (no IB request
        for the bars; a symbol is resolved through the contract cache): a DataFrame, index time
        UTC, open high low close volume wap count."""
        lo, hi = utc(start, "start"), utc(end, "end")
        try:
            bars_library(bar_size)
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, str(exc)) from None
        contract = await contract_of(
            self.app, symbol, con_id, sec_type=sec_type, exchange=exchange, currency=currency, expiry=expiry
        )
        try:
            return await self.read(
                functools.partial(self.store().read_bars, int(contract.conId), bar_size, lo, hi)
            )
        except ValueError as exc:
            raise RpcError(BAD_PARAMS, f"read_history: {exc}") from None


METHODS: Final = (
    "list_universes",
    "get_universe",
    "put_universe",
    "universe_add",
    "universe_remove",
    "delete_universe",
    "history_summary",
    "read_history",
)


def register(registry: MethodRegistry, app: TraderApp) -> None:
    """The universe and stored-history methods."""
    api = DataMethods(app)
    for name in METHODS:
        _method(registry, name)(getattr(api, name))
