"""The instrument universe of the paper exchange: contracts, their sessions and market parameters.

``universe.yaml`` (shipped inside the package) lists calendars (weekly session templates),
per-secType defaults and the instruments. Loading is strict: every problem is a
:class:`~trader.config.ConfigError` naming the file and the key (``instruments[3].minTick: ...``).

Lookups mirror what TWS offers: by conId, by contract fields (reqContractDetails: empty fields are
wildcards) and a symbol search (reqMatchingSymbols).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from trader.config import ConfigError
from trader.config.schema import build, read_yaml
from trader.exchange.sessions import Calendar, always_open_calendar, parse_window

SecType = Literal["STK", "FUT", "CASH"]
SEC_TYPES: tuple[str, ...] = ("STK", "FUT", "CASH")
_ALIASES: dict[str, set[str]] = {"NASDAQ": {"ISLAND"}, "CME": {"GLOBEX"}}
"""Other names clients use for a venue (TWS still accepts GLOBEX for CME futures)."""


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be positive, got {value!r}"


def _rate(value: Any) -> str | None:
    return None if 0 < value <= 1 else f"must be in (0, 1], got {value!r}"


def _volatility(value: Any) -> str | None:
    return None if 0 < value <= 5 else f"must be an annual volatility in (0, 5], got {value!r}"


def _windows(value: Any) -> str | None:
    return None if value else "must list at least one window"


def _nonempty(value: Any) -> str | None:
    return None if value.strip() else "must not be empty"


def _optional(default: Any, check: Any) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """A calendar in universe.yaml: a zone and weekly windows (see :mod:`trader.exchange.sessions`)."""

    timeZone: str = field(metadata={"check": _nonempty})
    trading: tuple[str, ...] = field(
        metadata={"check": lambda v: None if v else "must list at least one window"}
    )
    liquid: tuple[str, ...] = ()
    """Regular trading hours; empty means the same as ``trading``."""
    holidays: tuple[str, ...] = ()
    """Trade dates without sessions, ``YYYY-MM-DD``."""


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One instrument of universe.yaml, after its secType defaults are merged in."""

    conId: int = field(metadata={"check": _positive})
    symbol: str = field(metadata={"check": _nonempty})
    secType: SecType
    exchange: str = field(metadata={"check": _nonempty})
    currency: str = field(metadata={"check": _nonempty})
    longName: str = field(metadata={"check": _nonempty})
    calendar: str = field(metadata={"check": _nonempty})
    price: float = field(metadata={"check": _positive})
    """Price at the market anchor (the synthetic process starts there)."""
    volatility: float = field(metadata={"check": _volatility})
    minTick: float = field(metadata={"check": _positive})
    multiplier: float = _optional(1.0, _positive)
    primaryExchange: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    lastTradeDateOrContractMonth: str = ""
    spreadTicks: int = _optional(1, _positive)
    displaySize: int = _optional(100, _positive)
    initMarginRate: float = _optional(0.5, _rate)
    maintMarginRate: float = _optional(0.25, _rate)
    sizeIncrement: float = _optional(1.0, _positive)
    stockType: str = ""
    industry: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class UniverseSpec:
    calendars: Mapping[str, CalendarSpec]
    instruments: tuple[Mapping[str, Any], ...]
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable contract with everything TWS reports about it and what the simulator needs.

    Field names follow TWS (``conId``, ``minTick`` ...) so the protocol layer maps them 1:1.
    """

    conId: int
    symbol: str
    secType: str
    exchange: str
    primaryExchange: str
    currency: str
    localSymbol: str
    tradingClass: str
    multiplier: float
    minTick: float
    longName: str
    lastTradeDateOrContractMonth: str
    price: float
    volatility: float
    spreadTicks: int
    displaySize: int
    initMarginRate: float
    maintMarginRate: float
    sizeIncrement: float
    stockType: str
    industry: str
    category: str
    calendar: Calendar = field(compare=False, repr=False)

    @property
    def timeZone(self) -> str:
        return self.calendar.time_zone

    @property
    def contractMonth(self) -> str:
        return self.lastTradeDateOrContractMonth[:6]

    @property
    def decimals(self) -> int:
        """Decimal places of a price on the tick grid (0.25 -> 2, 0.00005 -> 5)."""
        exponent = Decimal(repr(self.minTick)).normalize().as_tuple().exponent
        return max(0, -int(exponent))

    @property
    def ticks_per_unit(self) -> int:
        """1 / minTick when that is a whole number (0.01 -> 100), else 0."""
        inverse = 1.0 / self.minTick
        return round(inverse) if abs(inverse - round(inverse)) < 1e-9 * inverse else 0

    @property
    def multiplier_text(self) -> str:
        """The multiplier as TWS sends it: "" for stocks and cash, "50" for ES."""
        if self.secType in ("STK", "CASH"):
            return ""
        return f"{self.multiplier:g}"

    def tick_price(self, ticks: int) -> float:
        """The price of ``ticks`` ticks, as exactly as a float can hold it."""
        per_unit = self.ticks_per_unit
        return ticks / per_unit if per_unit else round(ticks * self.minTick, self.decimals)

    def on_tick(self, price: float) -> bool:
        """Is ``price`` a multiple of the minimum tick (within float noise)?"""
        ticks = price / self.minTick
        return abs(ticks - round(ticks)) < 1e-6

    def round_price(self, price: float, direction: Literal["nearest", "down", "up"] = "nearest") -> float:
        ticks = price / self.minTick
        if direction == "down":
            n = math.floor(ticks + 1e-9)
        elif direction == "up":
            n = math.ceil(ticks - 1e-9)
        else:
            n = math.floor(ticks + 0.5)
        return self.tick_price(n)

    def trading_hours(self, first: date, days: int = 7) -> str:
        """TWS ``tradingHours`` from ``first`` on: ``20261123:0400-20261123:2000;...``."""
        return self.calendar.hours(first, days, rth=False)

    def liquid_hours(self, first: date, days: int = 7) -> str:
        """TWS ``liquidHours`` (regular trading hours) from ``first`` on."""
        return self.calendar.hours(first, days, rth=True)


class Universe:
    """All instruments, indexed for the lookups TWS requests need."""

    def __init__(
        self, instruments: list[Instrument] | tuple[Instrument, ...], source: str = "universe"
    ) -> None:
        self.instruments: tuple[Instrument, ...] = tuple(instruments)
        self.source = source
        self._by_con_id = {i.conId: i for i in self.instruments}

    def __len__(self) -> int:
        return len(self.instruments)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self.instruments)

    def __contains__(self, con_id: object) -> bool:
        return con_id in self._by_con_id

    def __getitem__(self, con_id: int) -> Instrument:
        return self._by_con_id[con_id]

    def get(self, con_id: int) -> Instrument | None:
        return self._by_con_id.get(con_id)

    def lookup(
        self,
        symbol: str = "",
        sec_type: str = "",
        exchange: str = "",
        currency: str = "",
        *,
        con_id: int = 0,
        local_symbol: str = "",
        last_trade_date_or_contract_month: str = "",
        trading_class: str = "",
        multiplier: str = "",
        primary_exchange: str = "",
    ) -> list[Instrument]:
        """Instruments matching a (partial) contract, as reqContractDetails resolves one.

        Empty fields match anything; a conId decides alone when it is set. ``exchange`` matches
        the routing exchange or the primary exchange (``SMART``, ``NASDAQ`` and ``ISLAND`` all
        find AAPL; ``GLOBEX`` finds CME futures); a contract month (``202612``) matches the
        futures expiring in it.
        """
        if con_id:
            found = self._by_con_id.get(con_id)
            return [found] if found is not None else []

        def ok(inst: Instrument) -> bool:
            exchanges = {inst.exchange, inst.primaryExchange}
            exchanges |= _ALIASES.get(inst.exchange, set()) | _ALIASES.get(inst.primaryExchange, set())
            month = last_trade_date_or_contract_month
            mult = multiplier.strip()
            return (
                (not symbol or inst.symbol.upper() == symbol.upper())
                and (not sec_type or inst.secType == sec_type.upper())
                and (not exchange or exchange.upper() in exchanges)
                and (not currency or inst.currency == currency.upper())
                and (not local_symbol or inst.localSymbol.upper() == local_symbol.upper())
                and (not month or inst.lastTradeDateOrContractMonth.startswith(month))
                and (not trading_class or inst.tradingClass.upper() == trading_class.upper())
                and (not mult or _same_number(mult, inst.multiplier))
                and (not primary_exchange or primary_exchange.upper() in exchanges)
            )

        return [inst for inst in self.instruments if ok(inst)]

    def by_symbol(
        self, symbol: str, sec_type: str = "STK", exchange: str = "", currency: str = "USD"
    ) -> Instrument:
        """The one instrument with these fields; KeyError when none or several match."""
        found = self.lookup(symbol, sec_type, exchange, currency)
        if len(found) != 1:
            raise KeyError(f"{len(found)} instruments match {symbol} {sec_type} {exchange} {currency}")
        return found[0]

    def matching_symbols(self, pattern: str, limit: int = 16) -> list[Instrument]:
        """reqMatchingSymbols: exact symbol first, then symbol prefixes, then substrings of
        symbol or long name (case-insensitive), at most ``limit`` (TWS sends up to 16)."""
        needle = pattern.strip().upper()
        if not needle:
            return []
        ranked: list[tuple[int, str, int, Instrument]] = []
        for inst in self.instruments:
            sym, name = inst.symbol.upper(), inst.longName.upper()
            local = inst.localSymbol.upper()
            if needle in (sym, local):
                rank = 0
            elif sym.startswith(needle) or local.startswith(needle):
                rank = 1
            elif needle in sym or needle in local:
                rank = 2
            elif needle in name:
                rank = 3
            else:
                continue
            ranked.append((rank, sym, inst.conId, inst))
        ranked.sort(key=lambda r: r[:3])
        return [r[3] for r in ranked[:limit]]


def _same_number(text: str, value: float) -> bool:
    try:
        return math.isclose(float(text), value)
    except ValueError:
        return False


# -- loading ---------------------------------------------------------------------------------------


def load_universe(path: Path | None = None, *, always_open: bool = False) -> Universe:
    """Load and validate a universe file; the shipped ``trader/exchange/universe.yaml`` by default.

    ``always_open=True`` replaces every instrument's trading and liquid hours by a 24/7 calendar in
    the instrument's own time zone (see :func:`with_always_open_hours`)."""
    if path is not None:
        return parse_universe(read_yaml(path), str(path), always_open=always_open)
    ref = importlib.resources.files("trader.exchange") / "universe.yaml"
    with importlib.resources.as_file(ref) as shipped:
        return parse_universe(read_yaml(shipped), "universe.yaml", always_open=always_open)


def with_always_open_hours(universe: Universe) -> Universe:
    """The same instruments with trading and liquid hours replaced by a 24/7 calendar (one per
    time zone, so each instrument keeps its zone): the market quotes at any time, every instant is
    in regular trading hours, and bars have no session gaps. Sessions run local midnight to
    midnight, so DAY orders expire and MOC/LOC orders execute at local midnight."""
    calendars: dict[str, Calendar] = {}
    instruments = []
    for inst in universe:
        zone = inst.calendar.time_zone
        if zone not in calendars:
            calendars[zone] = always_open_calendar(zone)
        instruments.append(dataclasses.replace(inst, calendar=calendars[zone]))
    return Universe(instruments, universe.source)


def parse_universe(data: Any, source: str, *, always_open: bool = False) -> Universe:
    """Build a :class:`Universe` from parsed YAML; ``source`` names the file in errors.
    ``always_open``: see :func:`load_universe`."""
    if isinstance(data, Mapping):
        data = _dates_to_text(data)
    spec = build(UniverseSpec, data, source)
    calendars = {name: _calendar(name, cal, source) for name, cal in spec.calendars.items()}
    fields = {f.name for f in dataclasses.fields(InstrumentSpec)}
    for sec_type, defaults in spec.defaults.items():
        if sec_type not in SEC_TYPES:
            raise ConfigError(
                source, f"defaults.{sec_type}", f"unknown secType (expected one of: {', '.join(SEC_TYPES)})"
            )
        if not isinstance(defaults, Mapping):
            raise ConfigError(source, f"defaults.{sec_type}", f"expected a mapping, got {defaults!r}")
        for key in defaults:
            if key not in fields:
                raise ConfigError(
                    source,
                    f"defaults.{sec_type}.{key}",
                    f"unknown key (expected one of: {', '.join(sorted(fields))})",
                )
    instruments: list[Instrument] = []
    seen_con_ids: dict[int, int] = {}
    seen_contracts: dict[tuple[str, ...], int] = {}
    for i, raw in enumerate(spec.instruments):
        key = f"instruments[{i}]"
        inst = _instrument(raw, spec.defaults, calendars, source, key)
        if inst.conId in seen_con_ids:
            raise ConfigError(
                source,
                f"{key}.conId",
                f"duplicate conId {inst.conId} (also instruments[{seen_con_ids[inst.conId]}])",
            )
        contract = (
            inst.symbol,
            inst.secType,
            inst.exchange,
            inst.currency,
            inst.lastTradeDateOrContractMonth,
        )
        if contract in seen_contracts:
            raise ConfigError(
                source,
                key,
                f"duplicate contract {' '.join(contract)} (also instruments[{seen_contracts[contract]}])",
            )
        seen_con_ids[inst.conId], seen_contracts[contract] = i, i
        instruments.append(inst)
    if not instruments:
        raise ConfigError(source, "instruments", "must list at least one instrument")
    universe = Universe(instruments, source)
    return with_always_open_hours(universe) if always_open else universe


def _dates_to_text(value: Any) -> Any:
    """YAML reads 2026-01-01 as a date; the schema wants text (and says so on errors)."""
    if isinstance(value, Mapping):
        return {k: _dates_to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_to_text(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _calendar(name: str, spec: CalendarSpec, source: str) -> Calendar:
    key = f"calendars.{name}"
    windows = {}
    for kind in ("trading", "liquid"):
        texts = getattr(spec, kind) or spec.trading
        parsed = []
        for j, text in enumerate(texts):
            try:
                parsed.append(parse_window(text))
            except ValueError as exc:
                raise ConfigError(source, f"{key}.{kind}[{j}]", str(exc)) from None
        windows[kind] = parsed
    holidays = []
    for j, text in enumerate(spec.holidays):
        try:
            holidays.append(date.fromisoformat(text))
        except ValueError:
            raise ConfigError(
                source, f"{key}.holidays[{j}]", f"expected a date YYYY-MM-DD, got {text!r}"
            ) from None
    try:
        return Calendar(name, spec.timeZone, windows["trading"], windows["liquid"], holidays)
    except ValueError as exc:
        raise ConfigError(source, f"{key}.timeZone", str(exc)) from None


def _instrument(
    raw: Mapping[str, Any],
    defaults: Mapping[str, Mapping[str, Any]],
    calendars: Mapping[str, Calendar],
    source: str,
    key: str,
) -> Instrument:
    sec_type = raw.get("secType")
    base = defaults.get(sec_type, {}) if isinstance(sec_type, str) else {}
    merged = {**base, **raw}
    try:
        spec = build(InstrumentSpec, merged, source, key)
    except ConfigError as exc:
        name = exc.key.removeprefix(key + ".")
        if name in base and name not in raw:
            raise ConfigError(source, f"defaults.{sec_type}.{name}", exc.problem) from None
        raise
    calendar = calendars.get(spec.calendar)
    if calendar is None:
        raise ConfigError(
            source,
            f"{key}.calendar",
            f"unknown calendar {spec.calendar!r} (expected one of: {', '.join(sorted(calendars))})",
        )
    if spec.maintMarginRate > spec.initMarginRate:
        raise ConfigError(
            source,
            f"{key}.maintMarginRate",
            f"must not exceed initMarginRate ({spec.initMarginRate}), got {spec.maintMarginRate}",
        )
    if spec.secType == "FUT" and len(spec.lastTradeDateOrContractMonth) not in (6, 8):
        raise ConfigError(source, f"{key}.lastTradeDateOrContractMonth", "futures need YYYYMM or YYYYMMDD")
    ticks = spec.price / spec.minTick
    if abs(ticks - round(ticks)) > 1e-6:
        raise ConfigError(
            source, f"{key}.price", f"must be a multiple of minTick {spec.minTick}, got {spec.price}"
        )
    local_symbol = spec.localSymbol or spec.symbol
    trading_class = spec.tradingClass or ("NMS" if spec.primaryExchange == "NASDAQ" else spec.symbol)
    return Instrument(
        conId=spec.conId,
        symbol=spec.symbol,
        secType=spec.secType,
        exchange=spec.exchange,
        primaryExchange=spec.primaryExchange,
        currency=spec.currency,
        localSymbol=local_symbol,
        tradingClass=trading_class,
        multiplier=spec.multiplier,
        minTick=spec.minTick,
        longName=spec.longName,
        lastTradeDateOrContractMonth=spec.lastTradeDateOrContractMonth,
        price=spec.price,
        volatility=spec.volatility,
        spreadTicks=spec.spreadTicks,
        displaySize=spec.displaySize,
        initMarginRate=spec.initMarginRate,
        maintMarginRate=spec.maintMarginRate,
        sizeIncrement=spec.sizeIncrement,
        stockType=spec.stockType,
        industry=spec.industry,
        category=spec.category,
        calendar=calendar,
    )
