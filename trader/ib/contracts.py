"""Contract resolution: a symbol (+ security type, exchange, currency ...) -> one qualified IB contract.

:class:`ContractResolver` asks TWS (reqContractDetails) and caches the answer in memory and, when
a :class:`~trader.data.store.Store` is given, in its ``universes`` library (``put_contract`` /
``get_contract``, keys like ``STK:AAPL:SMART:USD`` and ``conid:265598``), so a restart resolves
from the store without asking IB. No match is :class:`UnknownContract`; several matches are
:class:`AmbiguousContract` listing every candidate (e.g. a future without an expiry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Final

from ib_async import Contract, ContractDetails

from trader.data.store import Store
from trader.ib.errors import NotConnected, classify
from trader.ib.session import UP_STATES, IbSession

log = logging.getLogger("trader.ib.contracts")

CONTRACT_FIELDS: Final = (
    "conId",
    "symbol",
    "secType",
    "lastTradeDateOrContractMonth",
    "strike",
    "right",
    "multiplier",
    "exchange",
    "primaryExchange",
    "currency",
    "localSymbol",
    "tradingClass",
)
"""What is cached of a resolved contract (enough to trade and to request data with it)."""
MAX_LISTED: Final = 25


class ContractError(LookupError):
    """A contract could not be resolved to exactly one instrument."""


class UnknownContract(ContractError):
    def __init__(self, described: str, detail: str = "") -> None:
        self.described = described
        super().__init__(f"unknown contract {described}" + (f": {detail}" if detail else ""))


class AmbiguousContract(ContractError):
    def __init__(self, described: str, candidates: list[Contract]) -> None:
        self.described = described
        self.candidates = candidates
        listed = "; ".join(describe_candidate(c) for c in candidates[:MAX_LISTED])
        more = f"; ... and {len(candidates) - MAX_LISTED} more" if len(candidates) > MAX_LISTED else ""
        super().__init__(
            f"ambiguous contract {described}: {len(candidates)} candidates: {listed}{more} "
            "(give the local symbol, expiry, exchange or conId)"
        )


def describe_candidate(c: Contract) -> str:
    parts = [c.localSymbol or c.symbol, c.secType, c.primaryExchange or c.exchange, c.currency]
    if c.lastTradeDateOrContractMonth:
        parts.append(c.lastTradeDateOrContractMonth)
    return f"{' '.join(p for p in parts if p)} (conId {c.conId})"


def describe(contract: Contract) -> str:
    """``STK AAPL SMART USD`` (the fields that were given)."""
    fields = [
        contract.secType,
        contract.symbol or contract.localSymbol,
        contract.exchange,
        contract.currency,
        contract.lastTradeDateOrContractMonth,
        f"conId {contract.conId}" if contract.conId else "",
    ]
    return " ".join(f for f in fields if f) or "(empty contract)"


def cache_key(contract: Contract) -> str:
    """The store key of a request: ``STK:AAPL:SMART:USD`` (+ primary exchange, local symbol,
    expiry, multiplier, right, strike when given); ``conid:<n>`` when the conId is set."""
    if contract.conId:
        return f"conid:{contract.conId}"
    parts = [contract.secType, contract.symbol, contract.exchange, contract.currency]
    extra = [
        contract.primaryExchange,
        contract.localSymbol,
        contract.lastTradeDateOrContractMonth,
        contract.multiplier,
        contract.right,
        str(contract.strike) if contract.strike else "",
    ]
    if any(extra):
        parts += extra
    return ":".join(p.upper() for p in parts).replace(" ", "_")


def contract_to_dict(contract: Contract) -> dict[str, Any]:
    return {name: getattr(contract, name) for name in CONTRACT_FIELDS}


def contract_from_dict(data: dict[str, Any]) -> Contract:
    known = {f.name for f in dataclasses.fields(Contract)}
    return Contract.create(**{k: v for k, v in data.items() if k in known and k in CONTRACT_FIELDS})


class ContractResolver:
    """Resolves and caches contracts through an :class:`IbSession` (see the module docstring)."""

    def __init__(self, session: IbSession, store: Store | None = None, *, timeout_s: float = 10.0) -> None:
        self.session = session
        self.store = store
        self.timeout_s = timeout_s
        self._memory: dict[str, Contract] = {}
        self.requests = 0
        """reqContractDetails sent."""

    async def resolve(
        self,
        symbol: str,
        sec_type: str = "STK",
        exchange: str = "SMART",
        currency: str = "USD",
        *,
        primary_exchange: str = "",
        local_symbol: str = "",
        expiry: str = "",
        multiplier: str = "",
        refresh: bool = False,
    ) -> Contract:
        """The one contract of ``symbol`` (e.g. ``resolve("AAPL")``, ``resolve("ES", "FUT", "CME",
        expiry="202612")``, ``resolve("EUR", "CASH", "IDEALPRO", "USD")``)."""
        if not symbol.strip() and not local_symbol.strip():
            raise ValueError("resolve needs a symbol or a local symbol")
        contract = Contract(
            symbol=symbol.strip().upper(),
            secType=sec_type.strip().upper(),
            exchange=exchange.strip().upper(),
            currency=currency.strip().upper(),
            primaryExchange=primary_exchange.strip().upper(),
            localSymbol=local_symbol.strip(),
            lastTradeDateOrContractMonth=expiry.strip(),
            multiplier=multiplier.strip(),
        )
        return await self.resolve_contract(contract, refresh=refresh)

    async def by_con_id(self, con_id: int, *, refresh: bool = False) -> Contract:
        if con_id <= 0:
            raise ValueError(f"con_id must be positive, got {con_id}")
        return await self.resolve_contract(Contract(conId=con_id), refresh=refresh)

    async def resolve_contract(self, contract: Contract, *, refresh: bool = False) -> Contract:
        """The one qualified contract matching the (partial) ``contract``; empty fields match
        anything, as with reqContractDetails."""
        key = cache_key(contract)
        if not refresh:
            found = self._memory.get(key) or await self._from_store(key)
            if found is not None:
                self._memory[key] = found
                return found
        details, errors = await self._request(contract)
        described = describe(contract)
        if not details:
            raise UnknownContract(described, errors or "no security definition (IB 200)")
        candidates = [d.contract for d in details if d.contract is not None]
        if len(candidates) > 1:
            raise AmbiguousContract(described, candidates)
        resolved = candidates[0]
        self._memory[key] = resolved
        self._memory[cache_key(resolved)] = resolved
        await self._to_store(key, resolved)
        return resolved

    async def details(self, contract: Contract) -> list[ContractDetails]:
        """reqContractDetails, uncached (NotConnected when the session is down)."""
        details, _ = await self._request(contract)
        return details

    async def _request(self, contract: Contract) -> tuple[list[ContractDetails], str]:
        """The details IB sent and the errors it gave for the request (joined)."""
        session = self.session
        if session.state not in UP_STATES:
            raise NotConnected(session.state, session.since, session.reason, "contract details")
        ib = session.ib
        req_errors: list[str] = []

        def on_error(req_id: int, code: int, text: str, c: Contract | None) -> None:
            if c is contract or (c is not None and c == contract):
                req_errors.append(str(classify(code, text, req_id)))

        ib.errorEvent += on_error
        try:
            self.requests += 1
            result = await asyncio.wait_for(ib.reqContractDetailsAsync(contract), self.timeout_s)
        except ConnectionError as exc:
            raise NotConnected(session.state, session.since, str(exc), "contract details") from exc
        finally:
            ib.errorEvent -= on_error
        return list(result), "; ".join(req_errors)

    # -- the store ------------------------------------------------------------------------------------

    async def _from_store(self, key: str) -> Contract | None:
        if self.store is None:
            return None
        try:
            data = await asyncio.to_thread(self.store.get_contract, key)
        except Exception:
            log.exception("contract cache read %s failed", key)
            return None
        return contract_from_dict(data) if data else None

    async def _to_store(self, key: str, contract: Contract) -> None:
        if self.store is None:
            return
        data = contract_to_dict(contract)
        try:
            await asyncio.to_thread(self.store.put_contract, key, data)
            by_id = cache_key(Contract(conId=contract.conId))
            if by_id != key:
                await asyncio.to_thread(self.store.put_contract, by_id, data)
        except Exception:
            log.exception("contract cache write %s failed", key)
