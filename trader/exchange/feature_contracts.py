"""Contract data for the market-data feature: reqContractDetails, reqMatchingSymbols, reqMarketRule
and reqSmartComponents, answered from the instrument universe.

Contract details are filled the way TWS fills them for the instrument class (market name, order
types the paper exchange accepts, valid exchanges, trading and liquid hours for the next week in
the instrument's zone, size increments ...). Market rule ids are synthetic (one per distinct
minimum tick: ``MARKET_RULE_BASE + n``) and answered by reqMarketRule with a single increment.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Final

from trader.exchange.instruments import Instrument, Universe
from trader.exchange.protocol import (
    ContractDescriptionFields,
    ContractDetailsFields,
    ContractFields,
    ReqContractDetails,
    ReqMarketRule,
    ReqMatchingSymbols,
    ReqSmartComponents,
    encode_contract_details,
    encode_contract_details_end,
    encode_market_rule,
    encode_smart_components,
    encode_symbol_samples,
)
from trader.exchange.session_api import Session

NO_SECURITY: Final = (200, "No security definition has been found for the request")
MARKET_RULE_BASE: Final = 9000
BBO_EXCHANGE: Final = "9c0001"
"""The SMART component map id sent in tickReqParams (answered by reqSmartComponents)."""
SMART_COMPONENTS: Final = ((0, "NASDAQ", "Q"), (1, "NYSE", "N"), (2, "ARCA", "P"), (3, "BATS", "Z"))

ORDER_TYPES: Final = "ACTIVETIM,AD,DAY,GTC,IOC,LIT,LMT,LOC,MKT,MOC,OCA,RTH,STP,STPLMT,TRAIL,TRAILLMT,WHATIF"
"""The order types and attributes the paper exchange's matching engine accepts, as TWS names them."""
VALID_EXCHANGES: Final[dict[str, str]] = {
    "STK": "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,ISLAND,DRCTEDGE,BEX,BATS,EDGEA,BYX,IEX,EDGX,"
    "PEARL,MEMX,PSX",
    "CASH": "IDEALPRO",
}
HOURS_DAYS: Final = 7
"""Days of tradingHours / liquidHours sent (from yesterday, as TWS does)."""


def contract_fields(inst: Instrument) -> ContractFields:
    """The ib_async ``Contract`` fields of an instrument."""
    return ContractFields(
        conId=inst.conId,
        symbol=inst.symbol,
        secType=inst.secType,
        lastTradeDateOrContractMonth=inst.lastTradeDateOrContractMonth,
        multiplier=inst.multiplier_text,
        exchange=inst.exchange,
        primaryExchange=inst.primaryExchange,
        currency=inst.currency,
        localSymbol=inst.localSymbol,
        tradingClass=inst.tradingClass,
        description=inst.longName,
    )


def resolve(universe: Universe, c: ContractFields) -> list[Instrument]:
    """The instruments a request's contract designates (reqContractDetails semantics)."""
    return universe.lookup(
        c.symbol,
        c.secType,
        c.exchange,
        c.currency,
        con_id=c.conId,
        local_symbol=c.localSymbol,
        last_trade_date_or_contract_month=c.lastTradeDateOrContractMonth,
        trading_class=c.tradingClass,
        multiplier=c.multiplier,
        primary_exchange=c.primaryExchange,
    )


def resolve_one(universe: Universe, c: ContractFields) -> Instrument | None:
    """The single instrument of a market-data request's contract, None when none or ambiguous."""
    found = resolve(universe, c)
    return found[0] if len(found) == 1 else None


def market_rule_ids(universe: Universe) -> dict[float, int]:
    """Synthetic market rule id per distinct minimum tick."""
    ticks = sorted({inst.minTick for inst in universe})
    return {tick: MARKET_RULE_BASE + i for i, tick in enumerate(ticks)}


def contract_details(inst: Instrument, universe: Universe, now_ns: int) -> ContractDetailsFields:
    """Everything TWS's contractDetails carries for ``inst``, hours from yesterday on."""
    first = inst.calendar.local_date(now_ns) - timedelta(days=1)
    valid = VALID_EXCHANGES.get(inst.secType, inst.exchange)
    rule = market_rule_ids(universe)[inst.minTick]
    is_future = inst.secType == "FUT"
    size_increment = Decimal(repr(inst.sizeIncrement)).normalize()
    return ContractDetailsFields(
        contract=contract_fields(inst),
        marketName=inst.tradingClass,
        minTick=inst.minTick,
        orderTypes=ORDER_TYPES,
        validExchanges=valid,
        priceMagnifier=1,
        underConId=0,
        longName=inst.longName,
        contractMonth=inst.contractMonth if is_future else "",
        industry=inst.industry,
        category=inst.category,
        subcategory="",
        timeZoneId=inst.timeZone,
        tradingHours=inst.trading_hours(first, HOURS_DAYS),
        liquidHours=inst.liquid_hours(first, HOURS_DAYS),
        evRule="",
        evMultiplier=0,
        mdSizeMultiplier=1,
        aggGroup=1,
        underSymbol=inst.symbol if is_future else "",
        underSecType="IND" if is_future else "",
        marketRuleIds=",".join([str(rule)] * len(valid.split(","))),
        realExpirationDate=inst.lastTradeDateOrContractMonth if is_future else "",
        stockType=inst.stockType if inst.secType == "STK" else "",
        minSize=size_increment,
        sizeIncrement=size_increment,
        suggestedSizeIncrement=size_increment,
    )


def on_contract_details(session: Session, req: ReqContractDetails) -> None:
    core = session.core
    found = resolve(core.universe, req.contract)
    if not found:
        session.send_error(req.reqId, *NO_SECURITY)
        return
    now = core.clock()
    frames = [
        encode_contract_details(
            req.reqId, contract_details(inst, core.universe, now), server_version=session.server_version
        )
        for inst in found
    ]
    frames.append(encode_contract_details_end(req.reqId))
    session.send(b"".join(frames))


def on_matching_symbols(session: Session, req: ReqMatchingSymbols) -> None:
    found = session.core.universe.matching_symbols(req.pattern)
    descriptions = [
        ContractDescriptionFields(contract=_description_contract(inst), derivativeSecTypes=())
        for inst in found
    ]
    session.send(encode_symbol_samples(req.reqId, descriptions, server_version=session.server_version))


def _description_contract(inst: Instrument) -> ContractFields:
    return ContractFields(
        conId=inst.conId,
        symbol=inst.symbol,
        secType=inst.secType,
        primaryExchange=inst.primaryExchange or inst.exchange,
        currency=inst.currency,
        description=inst.longName,
    )


def on_market_rule(session: Session, req: ReqMarketRule) -> None:
    for tick, rule in market_rule_ids(session.core.universe).items():
        if rule == req.marketRuleId:
            session.send(encode_market_rule(rule, [(0, tick)]))
            return
    session.send_error(
        -1, 321, f"Error validating request:-'ch' : cause - unknown market rule id {req.marketRuleId}"
    )


def on_smart_components(session: Session, req: ReqSmartComponents) -> None:
    if req.bboExchange != BBO_EXCHANGE:
        session.send_error(
            req.reqId,
            321,
            f"Error validating request:-'cl' : cause - unknown BBO exchange {req.bboExchange!r}",
        )
        return
    session.send(encode_smart_components(req.reqId, SMART_COMPONENTS))
