"""Decoding of contracts, PLACE_ORDER and CANCEL_ORDER, mirroring ib_async 2.1.0 ``client.py``.

``decode_place_order`` follows ``Client.placeOrder`` line by line, including every branch on the
server version and on the values already read (BAG legs, delta-neutral order type, scale price
increment, hedge type, algo strategy, PEG BENCH / PEG BEST / PEG MID, conditions, IBKRATS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

from trader.exchange.protocol.fields import (
    ComboLegFields,
    ContractFields,
    DeltaNeutralContractFields,
    ExecutionConditionFields,
    MarginConditionFields,
    OrderConditionFields,
    OrderFields,
    PercentChangeConditionFields,
    PriceConditionFields,
    SoftDollarTierFields,
    TagValue,
    TimeConditionFields,
    VolumeConditionFields,
)
from trader.exchange.protocol.framing import UNSET_DOUBLE
from trader.exchange.protocol.ids import IncomingMessageId
from trader.exchange.protocol.reader import ApiRequest, FieldReader

__all__ = [
    "CancelOrder",
    "PlaceOrder",
    "decode_cancel_order",
    "decode_place_order",
    "read_combo_legs_short",
    "read_contract",
    "read_delta_neutral",
]


def read_contract(r: FieldReader) -> ContractFields:
    """The 12 fields ib_async writes for a ``Contract`` argument (``str()`` of each)."""
    return ContractFields(
        conId=r.int_("contract.conId"),
        symbol=r.str_("contract.symbol"),
        secType=r.str_("contract.secType"),
        lastTradeDateOrContractMonth=r.str_("contract.lastTradeDateOrContractMonth"),
        strike=r.float_("contract.strike"),
        right=r.str_("contract.right"),
        multiplier=r.str_("contract.multiplier"),
        exchange=r.str_("contract.exchange"),
        primaryExchange=r.str_("contract.primaryExchange"),
        currency=r.str_("contract.currency"),
        localSymbol=r.str_("contract.localSymbol"),
        tradingClass=r.str_("contract.tradingClass"),
    )


def read_combo_legs_short(r: FieldReader) -> tuple[ComboLegFields, ...]:
    """Leg count + (conId, ratio, action, exchange) per leg (reqMktData, reqHistoricalData)."""
    return tuple(
        ComboLegFields(
            conId=r.int_(f"comboLegs[{i}].conId"),
            ratio=r.int_(f"comboLegs[{i}].ratio"),
            action=r.str_(f"comboLegs[{i}].action"),
            exchange=r.str_(f"comboLegs[{i}].exchange"),
        )
        for i in range(r.count("len(comboLegs)"))
    )


def read_delta_neutral(r: FieldReader) -> DeltaNeutralContractFields | None:
    if not r.bool_("deltaNeutralContract present"):
        return None
    return DeltaNeutralContractFields(
        conId=r.int_("deltaNeutralContract.conId"),
        delta=r.float_("deltaNeutralContract.delta"),
        price=r.float_("deltaNeutralContract.price"),
    )


def _read_tag_values(r: FieldReader, what: str) -> tuple[TagValue, ...]:
    return tuple(
        TagValue(r.str_(f"{what}[{i}].tag"), r.str_(f"{what}[{i}].value"))
        for i in range(r.count(f"len({what})"))
    )


def _read_condition(r: FieldReader, i: int) -> OrderConditionFields:
    what = f"conditions[{i}]"
    cond_type = r.int_(f"{what}.condType")
    conj = r.str_(f"{what}.conjunction")
    if cond_type == 1:
        return PriceConditionFields(
            conjunction=conj,
            isMore=r.bool_(f"{what}.isMore"),
            price=r.float_(f"{what}.price"),
            conId=r.int_(f"{what}.conId"),
            exch=r.str_(f"{what}.exch"),
            triggerMethod=r.int_(f"{what}.triggerMethod"),
        )
    if cond_type == 3:
        return TimeConditionFields(
            conjunction=conj, isMore=r.bool_(f"{what}.isMore"), time=r.str_(f"{what}.time")
        )
    if cond_type == 4:
        return MarginConditionFields(
            conjunction=conj, isMore=r.bool_(f"{what}.isMore"), percent=r.int_(f"{what}.percent")
        )
    if cond_type == 5:
        return ExecutionConditionFields(
            conjunction=conj,
            secType=r.str_(f"{what}.secType"),
            exch=r.str_(f"{what}.exch"),
            symbol=r.str_(f"{what}.symbol"),
        )
    if cond_type == 6:
        return VolumeConditionFields(
            conjunction=conj,
            isMore=r.bool_(f"{what}.isMore"),
            volume=r.int_(f"{what}.volume"),
            conId=r.int_(f"{what}.conId"),
            exch=r.str_(f"{what}.exch"),
        )
    if cond_type == 7:
        return PercentChangeConditionFields(
            conjunction=conj,
            isMore=r.bool_(f"{what}.isMore"),
            changePercent=r.float_(f"{what}.changePercent"),
            conId=r.int_(f"{what}.conId"),
            exch=r.str_(f"{what}.exch"),
        )
    raise r.error(f"unknown order condition type {cond_type} in {what}", r.position - 2)


@dataclass(frozen=True, slots=True)
class PlaceOrder(ApiRequest):
    msgId: ClassVar[IncomingMessageId] = IncomingMessageId.PLACE_ORDER
    orderId: int
    contract: ContractFields
    order: OrderFields


@dataclass(frozen=True, slots=True)
class CancelOrder(ApiRequest):
    msgId: ClassVar[IncomingMessageId] = IncomingMessageId.CANCEL_ORDER
    orderId: int
    manualCancelOrderTime: str = ""  # sent from server version 169


def decode_cancel_order(r: FieldReader, server_version: int) -> CancelOrder:
    r.skip("version")
    order_id = r.int_("orderId")
    manual = r.str_("manualCancelOrderTime") if server_version >= 169 else ""
    return CancelOrder(order_id, manual)


def decode_place_order(r: FieldReader, server_version: int) -> PlaceOrder:  # noqa: PLR0915
    """Mirror of ``Client.placeOrder``: one read per field it writes, in the same order."""
    o: dict[str, object] = {}
    c: dict[str, object] = {}
    order_id = r.int_("orderId")
    contract = read_contract(r)
    c["secIdType"] = r.str_("contract.secIdType")
    c["secId"] = r.str_("contract.secId")

    def s(name: str) -> None:
        o[name] = r.str_(f"order.{name}")

    def i(name: str) -> None:
        o[name] = r.int_(f"order.{name}")

    def io(name: str) -> None:
        o[name] = r.int_opt(f"order.{name}")

    def f(name: str) -> None:
        o[name] = r.float_(f"order.{name}")

    def fo(name: str) -> None:
        o[name] = r.float_opt(f"order.{name}")

    def b(name: str) -> None:
        o[name] = r.bool_(f"order.{name}")

    s("action")
    o["totalQuantity"] = r.decimal_("order.totalQuantity")
    s("orderType")
    fo("lmtPrice")
    fo("auxPrice")
    for name in ("tif", "ocaGroup", "account", "openClose"):
        s(name)
    i("origin")
    s("orderRef")
    b("transmit")
    i("parentId")
    b("blockOrder")
    b("sweepToFill")
    i("displaySize")
    i("triggerMethod")
    b("outsideRth")
    b("hidden")

    if contract.secType == "BAG":
        c["comboLegs"] = tuple(
            ComboLegFields(
                conId=r.int_(f"comboLegs[{n}].conId"),
                ratio=r.int_(f"comboLegs[{n}].ratio"),
                action=r.str_(f"comboLegs[{n}].action"),
                exchange=r.str_(f"comboLegs[{n}].exchange"),
                openClose=r.int_(f"comboLegs[{n}].openClose"),
                shortSaleSlot=r.int_(f"comboLegs[{n}].shortSaleSlot"),
                designatedLocation=r.str_(f"comboLegs[{n}].designatedLocation"),
                exemptCode=r.int_(f"comboLegs[{n}].exemptCode"),
            )
            for n in range(r.count("len(comboLegs)"))
        )
        o["orderComboLegPrices"] = tuple(
            r.float_opt(f"order.orderComboLegs[{n}].price")
            for n in range(r.count("len(order.orderComboLegs)"))
        )
        o["smartComboRoutingParams"] = _read_tag_values(r, "order.smartComboRoutingParams")

    r.skip("sharesAllocation (deprecated)")
    f("discretionaryAmt")
    for name in ("goodAfterTime", "goodTillDate", "faGroup", "faMethod", "faPercentage"):
        s(name)
    if server_version < 177:
        s("faProfile")
    s("modelCode")
    i("shortSaleSlot")
    s("designatedLocation")
    i("exemptCode")
    i("ocaType")
    s("rule80A")
    s("settlingFirm")
    b("allOrNone")
    io("minQty")
    fo("percentOffset")
    b("eTradeOnly")
    b("firmQuoteOnly")
    fo("nbboPriceCap")
    i("auctionStrategy")
    for name in ("startingPrice", "stockRefPrice", "delta", "stockRangeLower", "stockRangeUpper"):
        fo(name)
    b("overridePercentageConstraints")
    fo("volatility")
    io("volatilityType")
    s("deltaNeutralOrderType")
    fo("deltaNeutralAuxPrice")
    if o["deltaNeutralOrderType"]:
        i("deltaNeutralConId")
        s("deltaNeutralSettlingFirm")
        s("deltaNeutralClearingAccount")
        s("deltaNeutralClearingIntent")
        s("deltaNeutralOpenClose")
        b("deltaNeutralShortSale")
        i("deltaNeutralShortSaleSlot")
        s("deltaNeutralDesignatedLocation")
    b("continuousUpdate")
    io("referencePriceType")
    fo("trailStopPrice")
    fo("trailingPercent")
    io("scaleInitLevelSize")
    io("scaleSubsLevelSize")
    fo("scalePriceIncrement")
    increment = o["scalePriceIncrement"]
    if isinstance(increment, float) and 0 < increment < UNSET_DOUBLE:
        fo("scalePriceAdjustValue")
        io("scalePriceAdjustInterval")
        fo("scaleProfitOffset")
        b("scaleAutoReset")
        io("scaleInitPosition")
        io("scaleInitFillQty")
        b("scaleRandomPercent")
    s("scaleTable")
    s("activeStartTime")
    s("activeStopTime")
    s("hedgeType")
    if o["hedgeType"]:
        s("hedgeParam")
    b("optOutSmartRouting")
    s("clearingAccount")
    s("clearingIntent")
    b("notHeld")
    c["deltaNeutralContract"] = read_delta_neutral(r)
    s("algoStrategy")
    if o["algoStrategy"]:
        o["algoParams"] = _read_tag_values(r, "order.algoParams")
    s("algoId")
    b("whatIf")
    s("orderMiscOptions")
    b("solicited")
    b("randomizeSize")
    b("randomizePrice")
    if o["orderType"] in {"PEG BENCH", "PEGBENCH"}:
        i("referenceContractId")
        b("isPeggedChangeAmountDecrease")
        f("peggedChangeAmount")
        f("referenceChangeAmount")
        s("referenceExchangeId")
    n_conditions = r.count("len(order.conditions)")
    if n_conditions:
        o["conditions"] = tuple(_read_condition(r, n) for n in range(n_conditions))
        b("conditionsIgnoreRth")
        b("conditionsCancelOrder")
    s("adjustedOrderType")
    fo("triggerPrice")
    fo("lmtPriceOffset")
    fo("adjustedStopPrice")
    fo("adjustedStopLimitPrice")
    fo("adjustedTrailingAmount")
    i("adjustableTrailingUnit")
    s("extOperator")
    o["softDollarTier"] = SoftDollarTierFields(
        name=r.str_("order.softDollarTier.name"), val=r.str_("order.softDollarTier.val")
    )
    fo("cashQty")
    for name in (
        "mifid2DecisionMaker",
        "mifid2DecisionAlgo",
        "mifid2ExecutionTrader",
        "mifid2ExecutionAlgo",
    ):
        s(name)
    b("dontUseAutoPriceForHedge")
    b("isOmsContainer")
    b("discretionaryUpToLimitPrice")
    b("usePriceMgmtAlgo")
    if server_version >= 158:
        io("duration")
    if server_version >= 160:
        io("postToAts")
    if server_version >= 162:
        b("autoCancelParent")
    if server_version >= 166:
        s("advancedErrorOverride")
    if server_version >= 169:
        s("manualOrderTime")
    if server_version >= 170:
        if contract.exchange == "IBKRATS":
            io("minTradeQty")
        if o["orderType"] in {"PEG BEST", "PEGBEST"}:
            io("minCompeteSize")
            fo("competeAgainstBestOffset")
            if o["competeAgainstBestOffset"] == math.inf:
                fo("midOffsetAtWhole")
                fo("midOffsetAtHalf")
        elif o["orderType"] in {"PEG MID", "PEGMID"}:
            fo("midOffsetAtWhole")
            fo("midOffsetAtHalf")
    r.finish()
    return PlaceOrder(
        orderId=order_id,
        contract=replace(contract, **c),  # type: ignore[arg-type]
        order=OrderFields(**o),  # type: ignore[arg-type]
    )
