"""Response encoders against the real ib_async 2.1.0 ``Decoder``. No sockets.

Each encoded frame is split by ``FrameParser`` and handed to ``ib_async.decoder.Decoder`` with a
recording wrapper whose methods are checked against the real ``ib_async.wrapper.Wrapper``
signatures; the values the decoder hands over are compared with what was encoded. The decoder logs
and swallows its exceptions, so any ERROR record from an ``ib_async`` logger fails the test. The
last tests drive a real ``IB()`` (real Wrapper, real Client framing) through an order's life.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import inspect
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import IB, Order
from ib_async.decoder import Decoder
from ib_async.wrapper import Wrapper

from trader.exchange.protocol import (
    UNSET_DOUBLE,
    UNSET_INTEGER,
    BarFields,
    ComboLegFields,
    ContractDescriptionFields,
    ContractDetailsFields,
    ContractFields,
    DeltaNeutralContractFields,
    ExecutionConditionFields,
    ExecutionFields,
    FrameParser,
    HistoricalTickBidAskFields,
    HistoricalTickFields,
    HistoricalTickLastFields,
    MarginConditionFields,
    OrderFields,
    OrderStateFields,
    PercentChangeConditionFields,
    PriceConditionFields,
    SoftDollarTierFields,
    TagValue,
    TimeConditionFields,
    VolumeConditionFields,
    encode_account_download_end,
    encode_account_summary,
    encode_account_summary_end,
    encode_account_update_multi,
    encode_account_update_multi_end,
    encode_commission_report,
    encode_completed_order,
    encode_completed_orders_end,
    encode_contract_details,
    encode_contract_details_end,
    encode_current_time,
    encode_error,
    encode_exec_details,
    encode_exec_details_end,
    encode_family_codes,
    encode_head_timestamp,
    encode_historical_data,
    encode_historical_data_update,
    encode_historical_schedule,
    encode_historical_ticks,
    encode_historical_ticks_bid_ask,
    encode_historical_ticks_last,
    encode_managed_accounts,
    encode_market_data_type,
    encode_market_rule,
    encode_mkt_depth_exchanges,
    encode_news_providers,
    encode_next_valid_id,
    encode_open_order,
    encode_open_order_end,
    encode_order_bound,
    encode_order_status,
    encode_pnl,
    encode_pnl_single,
    encode_position,
    encode_position_end,
    encode_position_multi,
    encode_position_multi_end,
    encode_real_time_bar,
    encode_sec_def_opt_params,
    encode_sec_def_opt_params_end,
    encode_smart_components,
    encode_soft_dollar_tiers,
    encode_symbol_samples,
    encode_tick_by_tick_all_last,
    encode_tick_by_tick_bid_ask,
    encode_tick_by_tick_mid_point,
    encode_tick_generic,
    encode_tick_option_computation,
    encode_tick_price,
    encode_tick_req_params,
    encode_tick_size,
    encode_tick_snapshot_end,
    encode_tick_string,
    encode_update_account_time,
    encode_update_account_value,
    encode_update_mkt_depth,
    encode_update_mkt_depth_l2,
    encode_update_portfolio,
    encode_user_info,
    format_tws_time,
)

ALL_VERSIONS = tuple(range(157, 179))
FIELD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=8)

AAPL = ContractFields(
    conId=265598,
    symbol="AAPL",
    secType="STK",
    exchange="SMART",
    primaryExchange="NASDAQ",
    currency="USD",
    localSymbol="AAPL",
    tradingClass="NMS",
)
SPY_OPT = ContractFields(
    conId=7001,
    symbol="SPY",
    secType="OPT",
    lastTradeDateOrContractMonth="20261218",
    strike=500.5,
    right="C",
    multiplier="100",
    exchange="SMART",
    primaryExchange="",
    currency="USD",
    localSymbol="SPY   261218C00500500",
    tradingClass="SPY",
)


# --- harness -----------------------------------------------------------------------------------


class _ErrorTrap(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_ib_async_errors() -> Iterator[None]:
    """Fail on any ERROR logged by ib_async (its decoder logs and swallows exceptions)."""
    trap = _ErrorTrap()
    logger = logging.getLogger("ib_async")
    logger.addHandler(trap)
    try:
        yield
    finally:
        logger.removeHandler(trap)
    if trap.records:
        r = trap.records[0]
        detail = logging.Formatter().formatException(r.exc_info) if r.exc_info else ""
        raise AssertionError(f"ib_async logged {r.levelname}: {r.getMessage()}\n{detail}")


class RecordingWrapper:
    """Stands in for ib_async's Wrapper: records every call, after checking it binds to the real
    Wrapper method's signature (so a missing or extra argument fails)."""

    ib = SimpleNamespace(TimezoneTWS="")
    defaultTimezone = dt.UTC

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        real = getattr(Wrapper, name)
        signature = inspect.signature(real)

        def record(*args: Any) -> None:
            signature.bind(None, *args)
            self.calls.append((name, args))

        return record


def deliver(data: bytes, version: int = 178) -> list[tuple[str, tuple[Any, ...]]]:
    wrapper = RecordingWrapper()
    decoder: Any = cast(Any, Decoder)(wrapper, version)
    with no_ib_async_errors():
        for fields in FrameParser().feed(data):
            decoder.interpret(fields)
    return wrapper.calls


def one(data: bytes, version: int = 178) -> tuple[str, tuple[Any, ...]]:
    calls = deliver(data, version)
    assert len(calls) == 1, calls
    return calls[0]


def assert_contract(c: Any, expected: ContractFields, names: str) -> None:
    for name in names.split():
        assert getattr(c, name) == getattr(expected, name), name


CONTRACT_11 = (
    "conId symbol secType lastTradeDateOrContractMonth strike right multiplier exchange currency"
    " localSymbol tradingClass"
)


# --- simple messages ---------------------------------------------------------------------------

SIMPLE: list[tuple[str, bytes, tuple[str, tuple[Any, ...] | None]]] = [
    ("nextValidId", encode_next_valid_id(17), ("nextValidId", (17,))),
    ("managedAccounts", encode_managed_accounts(["DU1", "DU2"]), ("managedAccounts", ("DU1,DU2",))),
    ("currentTime", encode_current_time(1_795_000_000), ("currentTime", (1_795_000_000,))),
    (
        "updateAccountValue",
        encode_update_account_value("NetLiquidation", "100000.25", "USD", "DU1"),
        ("updateAccountValue", ("NetLiquidation", "100000.25", "USD", "DU1")),
    ),
    (
        "updateAccountValue-number",
        encode_update_account_value("CashBalance", Decimal("5.50"), "BASE", "DU1"),
        ("updateAccountValue", ("CashBalance", "5.50", "BASE", "DU1")),
    ),
    ("updateAccountTime", encode_update_account_time("15:30"), ("updateAccountTime", ("15:30",))),
    ("accountDownloadEnd", encode_account_download_end("DU1"), ("accountDownloadEnd", ("DU1",))),
    ("positionEnd", encode_position_end(), ("positionEnd", ())),
    (
        "accountSummary",
        encode_account_summary(3, "DU1", "BuyingPower", 400000.0, "USD"),
        ("accountSummary", (3, "DU1", "BuyingPower", "400000.0", "USD")),
    ),
    ("accountSummaryEnd", encode_account_summary_end(3), ("accountSummaryEnd", (3,))),
    ("positionMultiEnd", encode_position_multi_end(4), ("positionMultiEnd", (4,))),
    (
        "accountUpdateMulti",
        encode_account_update_multi(5, "DU1", "", key="NetLiquidation", value="1.5", currency="USD"),
        ("accountUpdateMulti", (5, "DU1", "", "NetLiquidation", "1.5", "USD")),
    ),
    ("accountUpdateMultiEnd", encode_account_update_multi_end(5), ("accountUpdateMultiEnd", (5,))),
    ("openOrderEnd", encode_open_order_end(), ("openOrderEnd", ())),
    ("completedOrdersEnd", encode_completed_orders_end(), ("completedOrdersEnd", ())),
    ("execDetailsEnd", encode_exec_details_end(6), ("execDetailsEnd", (6,))),
    ("contractDetailsEnd", encode_contract_details_end(7), ("contractDetailsEnd", (7,))),
    ("tickSnapshotEnd", encode_tick_snapshot_end(8), ("tickSnapshotEnd", (8,))),
    ("marketDataType", encode_market_data_type(8, 3), ("marketDataType", (8, 3))),
    ("tickSize", encode_tick_size(8, 0, Decimal(300)), ("tickSize", (8, 0, 300.0))),
    ("tickString", encode_tick_string(8, 45, "1795000000"), ("tickString", (8, 45, "1795000000"))),
    ("tickGeneric", encode_tick_generic(8, 49, 0), ("tickGeneric", (8, 49, 0.0))),
    (
        "tickReqParams",
        encode_tick_req_params(8, 0.01, "9c0001", 3),
        ("tickReqParams", (8, 0.01, "9c0001", 3)),
    ),
    (
        "headTimestamp",
        encode_head_timestamp(9, "19801212 14:30:00 US/Eastern"),
        ("headTimestamp", (9, "19801212 14:30:00 US/Eastern")),
    ),
    ("orderBound", encode_order_bound(9001, 0, 12), ("orderBound", (9001, 0, 12))),
    ("userInfo", encode_user_info(10, "brand"), ("userInfo", (10, "brand"))),
    (
        "secDefOptParamsEnd",
        encode_sec_def_opt_params_end(11),
        ("securityDefinitionOptionParameterEnd", (11,)),
    ),
    ("pnl", encode_pnl(12, 10.5, -3.25, 0.0), ("pnl", (12, 10.5, -3.25, 0.0))),
    ("pnl-unset", encode_pnl(12, None, None, None), ("pnl", (12, UNSET_DOUBLE, UNSET_DOUBLE, UNSET_DOUBLE))),
    (
        "pnlSingle",
        encode_pnl_single(
            13, pos=Decimal(100), dailyPnL=5.0, unrealizedPnL=None, realizedPnL=0.0, value=15000.0
        ),
        ("pnlSingle", (13, 100, 5.0, UNSET_DOUBLE, 0.0, 15000.0)),
    ),
    (
        "orderStatus",
        encode_order_status(
            5,
            "Filled",
            filled=Decimal(100),
            remaining=Decimal(0),
            avgFillPrice=150.25,
            permId=9001,
            parentId=0,
            lastFillPrice=150.25,
            clientId=7,
            whyHeld="",
            mktCapPrice=0.0,
        ),
        ("orderStatus", (5, "Filled", 100.0, 0.0, 150.25, 9001, 0, 150.25, 7, "", 0.0)),
    ),
    ("tickPrice", encode_tick_price(8, 1, 150.25, Decimal(300)), ("priceSizeTick", (8, 1, 150.25, 300.0))),
    (
        "tickPrice-attribs",
        encode_tick_price(8, 4, 150.5, 100, canAutoExecute=True, pastLimit=True, preOpen=True),
        ("priceSizeTick", (8, 4, 150.5, 100.0)),
    ),
    (
        "tickByTickMidPoint",
        encode_tick_by_tick_mid_point(14, 1795000000, 150.125),
        ("tickByTickMidPoint", (14, 1795000000, 150.125)),
    ),
    (
        "updateMktDepth",
        encode_update_mkt_depth(15, 0, operation=0, side=1, price=150.0, size=Decimal(200)),
        ("updateMktDepth", (15, 0, 0, 1, 150.0, 200.0)),
    ),
    (
        "updateMktDepthL2",
        encode_update_mkt_depth_l2(
            15, 1, marketMaker="NSDQ", operation=1, side=0, price=150.5, size=100, isSmartDepth=True
        ),
        ("updateMktDepthL2", (15, 1, "NSDQ", 1, 0, 150.5, 100.0, True)),
    ),
    (
        "commissionReport-closing",
        encode_commission_report(
            "0001.01", 1.25, "USD", realizedPNL=12.5, yield_=None, yieldRedemptionDate=0
        ),
        ("commissionReport", None),
    ),
]


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in SIMPLE], ids=[n for n, _, _ in SIMPLE])
def test_simple_message_when_decoded_by_ib_async_then_wrapper_gets_encoded_values(
    data: bytes, expected: tuple[str, tuple[Any, ...] | None]
) -> None:
    name, args = one(data)
    assert name == expected[0]
    if expected[1] is not None:
        assert args == expected[1]


@pytest.mark.parametrize("version", [157, 165, 166, 178])
def test_error_when_encoded_then_advanced_reject_json_only_from_166(version: int) -> None:
    name, args = one(encode_error(5, 201, "Order rejected", '{"r":1}', server_version=version), version)
    assert name == "error"
    assert args == (5, 201, "Order rejected", '{"r":1}' if version >= 166 else "")


def test_commission_report_when_opening_fill_then_unset_pnl_reaches_ib_async_as_unset() -> None:
    _, (report,) = one(encode_commission_report("0001.01", 1.0, "USD"))
    assert (report.execId, report.commission, report.currency) == ("0001.01", 1.0, "USD")
    assert report.realizedPNL == UNSET_DOUBLE and report.yield_ == UNSET_DOUBLE
    _, (closing,) = one(
        encode_commission_report("2", 0.5, "USD", realizedPNL=-3.5, yieldRedemptionDate=20261231)
    )
    assert (closing.realizedPNL, closing.yieldRedemptionDate) == (-3.5, 20261231)


def test_pnl_single_when_position_fractional_then_value_error() -> None:
    with pytest.raises(ValueError, match="int"):
        encode_pnl_single(1, pos=Decimal("0.5"), dailyPnL=0, unrealizedPnL=0, realizedPnL=0, value=0)


# --- account and positions ---------------------------------------------------------------------


def test_update_portfolio_when_decoded_then_contract_carries_primary_exchange() -> None:
    data = encode_update_portfolio(
        SPY_OPT,
        position=Decimal(-2),
        marketPrice=5.25,
        marketValue=-1050.0,
        averageCost=520.0,
        unrealizedPNL=-10.0,
        realizedPNL=0.0,
        accountName="DU1",
    )
    name, (c, *rest) = one(data)
    assert name == "updatePortfolio"
    assert_contract(
        c,
        SPY_OPT,
        CONTRACT_11.replace(" exchange", ""),
    )
    assert c.primaryExchange == SPY_OPT.primaryExchange and c.exchange == ""
    assert rest == [-2.0, 5.25, -1050.0, 520.0, -10.0, 0.0, "DU1"]


def test_position_when_decoded_then_account_contract_size_cost() -> None:
    name, (account, c, pos, cost) = one(encode_position("DU1", AAPL, Decimal("10.5"), 150.125))
    assert (name, account, pos, cost) == ("position", "DU1", 10.5, 150.125)
    assert_contract(c, AAPL, CONTRACT_11)


def test_position_multi_when_decoded_then_model_code_and_contract() -> None:
    name, args = one(encode_position_multi(4, "DU1", "MODEL", SPY_OPT, position=3, avgCost=510.0))
    assert name == "positionMulti"
    req_id, account, model, c, pos, cost = args
    assert (req_id, account, model, pos, cost) == (4, "DU1", "MODEL", 3.0, 510.0)
    assert_contract(c, SPY_OPT, CONTRACT_11)


def test_reference_lists_when_decoded_then_objects_match() -> None:
    _, (codes,) = one(encode_family_codes([("DU1", "F1"), ("DU2", "")]))
    assert [(c.accountID, c.familyCodeStr) for c in codes] == [("DU1", "F1"), ("DU2", "")]
    _, (req_id, tiers) = one(encode_soft_dollar_tiers(3, [SoftDollarTierFields("n", "v", "Name")]))
    assert req_id == 3 and [(t.name, t.val, t.displayName) for t in tiers] == [("n", "v", "Name")]
    _, (providers,) = one(encode_news_providers([("BZ", "Benzinga")]))
    assert [(p.code, p.name) for p in providers] == [("BZ", "Benzinga")]
    _, (req_id, comps) = one(encode_smart_components(4, [(1, "NYSE", "N"), (2, "ARCA", "P")]))
    assert [(c.bitNumber, c.exchange, c.exchangeLetter) for c in comps] == [
        (1, "NYSE", "N"),
        (2, "ARCA", "P"),
    ]
    _, (descs,) = one(encode_mkt_depth_exchanges([("NYSE", "STK", "NYSE", "Deep2", 1)]))
    assert [(d.exchange, d.secType, d.listingExch, d.serviceDataType, d.aggGroup) for d in descs] == [
        ("NYSE", "STK", "NYSE", "Deep2", 1)
    ]
    _, (rule_id, increments) = one(encode_market_rule(26, [(0, 0.01), (1000, 0.05)]))
    assert rule_id == 26 and [(i.lowEdge, i.increment) for i in increments] == [(0.0, 0.01), (1000.0, 0.05)]


def test_sec_def_opt_params_when_decoded_then_expirations_and_strikes() -> None:
    data = encode_sec_def_opt_params(
        1,
        exchange="SMART",
        underlyingConId=756733,
        tradingClass="SPY",
        multiplier="100",
        expirations=["20261218", "20270115"],
        strikes=[500, 505.5],
    )
    name, args = one(data)
    assert name == "securityDefinitionOptionParameter"
    assert args == (1, "SMART", "756733", "SPY", "100", ["20261218", "20270115"], [500.0, 505.5])


# --- market data -------------------------------------------------------------------------------


def test_tick_by_tick_when_last_and_bid_ask_then_attributes_from_masks() -> None:
    name, args = one(
        encode_tick_by_tick_all_last(
            1, 2, 1795000000, 150.25, Decimal(100), exchange="NYSE", specialConditions="@", unreported=True
        )
    )
    assert name == "tickByTickAllLast"
    req_id, tick_type, time, price, size, attrib, exchange, cond = args
    assert (req_id, tick_type, time, price, size, exchange, cond) == (
        1,
        2,
        1795000000,
        150.25,
        100.0,
        "NYSE",
        "@",
    )
    assert (attrib.pastLimit, attrib.unreported) == (False, True)
    name, args = one(
        encode_tick_by_tick_bid_ask(
            1, 1795000001, bidPrice=150.0, askPrice=150.5, bidSize=100, askSize=200, askPastHigh=True
        )
    )
    assert name == "tickByTickBidAsk"
    assert args[:6] == (1, 1795000001, 150.0, 150.5, 100.0, 200.0)
    assert (args[6].bidPastLow, args[6].askPastHigh) == (False, True)
    with pytest.raises(ValueError, match="1 or 2"):
        encode_tick_by_tick_all_last(1, 3, 0, 1.0, 1)


def test_tick_option_computation_when_not_computed_then_tws_sentinels() -> None:
    data = encode_tick_option_computation(
        1,
        13,
        0,
        impliedVol=0.2,
        delta=0.5,
        optPrice=None,
        pvDividend=0.0,
        gamma=None,
        vega=0.1,
        theta=-0.05,
        undPrice=500.0,
    )
    name, args = one(data)
    assert name == "tickOptionComputation"
    assert args == (1, 13, 0, 0.2, 0.5, -1.0, 0.0, -2.0, 0.1, -0.05, 500.0)


def test_real_time_bar_when_decoded_then_all_values() -> None:
    data = encode_real_time_bar(
        2, 1795000000, open_=1.5, high=2.0, low=1.0, close=1.75, volume=Decimal(1000), wap=1.6, count=12
    )
    assert one(data) == ("realtimeBar", (2, 1795000000, 1.5, 2.0, 1.0, 1.75, 1000.0, 1.6, 12))


BARS = [
    BarFields("20261120", 150.0, 152.5, 149.75, 151.0, Decimal(1_000_000), 150.9, 5000),
    BarFields("20261121 09:30:00 US/Eastern", 151.0, 151.5, 150.5, 151.25, 1200.5, 151.1, 17),
]


def test_historical_data_when_decoded_then_every_bar_then_end_with_dates() -> None:
    calls = deliver(encode_historical_data(3, BARS, "20261120 00:00:00 UTC", "20261121 16:00:00 UTC"))
    assert [c[0] for c in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    for (_, (req_id, bar)), expected in zip(calls, BARS, strict=False):
        assert req_id == 3
        assert (bar.date, bar.open, bar.high, bar.low, bar.close) == (
            expected.date,
            expected.open,
            expected.high,
            expected.low,
            expected.close,
        )
        assert (bar.volume, bar.average, bar.barCount) == (
            float(expected.volume),
            expected.average,
            expected.barCount,
        )
    assert calls[2] == ("historicalDataEnd", (3, "20261120 00:00:00 UTC", "20261121 16:00:00 UTC"))
    assert deliver(encode_historical_data(4, [], "", "")) == [("historicalDataEnd", (4, "", ""))]


def test_historical_data_update_when_decoded_then_bar_fields_in_their_order() -> None:
    name, (req_id, bar) = one(encode_historical_data_update(3, BARS[1]))
    assert (name, req_id) == ("historicalDataUpdate", 3)
    assert (bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.average, bar.barCount) == (
        "20261121 09:30:00 US/Eastern",
        151.0,
        151.5,
        150.5,
        151.25,
        1200.5,
        151.1,
        17,
    )


def test_historical_ticks_when_decoded_then_ticks_and_done() -> None:
    epoch = 1795000000
    when = dt.datetime.fromtimestamp(epoch, dt.UTC)
    _, (req_id, ticks, done) = one(encode_historical_ticks(5, [HistoricalTickFields(epoch, 1.5, 100)], True))
    assert (req_id, done) == (5, True) and [(t.time, t.price, t.size) for t in ticks] == [(when, 1.5, 100.0)]
    data = encode_historical_ticks_bid_ask(
        5, [HistoricalTickBidAskFields(epoch, 1.5, 1.6, 100, Decimal(200), bidPastLow=True)], False
    )
    _, (_, ticks_ba, done) = one(data)
    t = ticks_ba[0]
    assert (t.time, t.priceBid, t.priceAsk, t.sizeBid, t.sizeAsk, done) == (
        when,
        1.5,
        1.6,
        100.0,
        200.0,
        False,
    )
    assert (t.tickAttribBidAsk.bidPastLow, t.tickAttribBidAsk.askPastHigh) == (True, False)
    data = encode_historical_ticks_last(
        5, [HistoricalTickLastFields(epoch, 1.55, 10, "NYSE", "I", pastLimit=True)], True
    )
    _, (_, ticks_last, _) = one(data)
    tl = ticks_last[0]
    assert (tl.price, tl.size, tl.exchange, tl.specialConditions, tl.tickAttribLast.pastLimit) == (
        1.55,
        10.0,
        "NYSE",
        "I",
        True,
    )


def test_historical_schedule_when_decoded_then_sessions() -> None:
    sessions = [("20261120-09:30:00", "20261120-16:00:00", "20261120")]
    name, args = one(
        encode_historical_schedule(6, "20261120-09:30:00", "20261121-16:00:00", "US/Eastern", sessions)
    )
    assert name == "historicalSchedule"
    assert args[:4] == (6, "20261120-09:30:00", "20261121-16:00:00", "US/Eastern")
    assert [(s.startDateTime, s.endDateTime, s.refDate) for s in args[4]] == sessions


# --- contract data -----------------------------------------------------------------------------

DETAILS = ContractDetailsFields(
    contract=SPY_OPT,
    marketName="SPY",
    minTick=0.01,
    orderTypes="LMT,MKT,STP",
    validExchanges="SMART,CBOE",
    priceMagnifier=1,
    underConId=756733,
    longName="SPDR S&P 500 ETF — Société \\ test",
    contractMonth="202612",
    industry="Funds",
    category="Equity",
    subcategory="Index",
    timeZoneId="US/Eastern",
    tradingHours="20261123:0930-20261123:1600;20261122:CLOSED",
    liquidHours="20261123:0930-20261123:1600",
    evRule="",
    evMultiplier=0,
    secIdList=(TagValue("ISIN", "US78462F1030"),),
    aggGroup=2,
    underSymbol="SPY",
    underSecType="STK",
    marketRuleIds="26,26",
    realExpirationDate="20261218",
    lastTradeTime="16:00",
    stockType="",
    minSize=Decimal(1),
    sizeIncrement=Decimal(1),
    suggestedSizeIncrement=Decimal(100),
)


@pytest.mark.parametrize("version", [157, 162, 163, 164, 176, 178])
def test_contract_details_when_decoded_at_version_then_every_field_matches(version: int) -> None:
    name, (req_id, cd) = one(encode_contract_details(9, DETAILS, server_version=version), version)
    assert (name, req_id) == ("contractDetails", 9)
    assert_contract(cd.contract, SPY_OPT, CONTRACT_11 + " primaryExchange")
    for f in dataclasses.fields(ContractDetailsFields):
        if f.name in {
            "contract",
            "mdSizeMultiplier",
            "secIdList",
            "minSize",
            "sizeIncrement",
            "suggestedSizeIncrement",
        }:
            continue
        assert getattr(cd, f.name) == getattr(DETAILS, f.name), f.name
    assert [(t.tag, t.value) for t in cd.secIdList] == [("ISIN", "US78462F1030")]
    sizes = (cd.minSize, cd.sizeIncrement, cd.suggestedSizeIncrement)
    if version >= 164:
        assert sizes == (1.0, 1.0, 100.0)
    elif version == 163:
        assert sizes == (0.0, 0.0, 100.0)
    else:
        assert sizes == (0.0, 0.0, 0.0)


def test_contract_details_when_stock_without_expiry_then_empty_last_trade_fields() -> None:
    _, (_, cd) = one(
        encode_contract_details(
            1, ContractDetailsFields(contract=AAPL, longName="APPLE INC"), server_version=178
        )
    )
    assert cd.contract.lastTradeDateOrContractMonth == "" and cd.lastTradeTime == ""
    assert cd.longName == "APPLE INC" and cd.contract.primaryExchange == "NASDAQ"


@pytest.mark.parametrize("version", [175, 176, 178])
def test_symbol_samples_when_decoded_then_descriptions_and_issuer_from_176(version: int) -> None:
    descs = [
        ContractDescriptionFields(
            dataclasses.replace(AAPL, description="Apple", issuerId="e1"), ("OPT", "WAR")
        ),
        ContractDescriptionFields(dataclasses.replace(SPY_OPT, secType="STK", primaryExchange="ARCA")),
    ]
    name, (req_id, got) = one(encode_symbol_samples(2, descs, server_version=version), version)
    assert (name, req_id, len(got)) == ("symbolSamples", 2, 2)
    assert (got[0].contract.conId, got[0].contract.symbol, got[0].contract.primaryExchange) == (
        265598,
        "AAPL",
        "NASDAQ",
    )
    assert got[0].derivativeSecTypes == ["OPT", "WAR"] and got[1].derivativeSecTypes == []
    assert got[1].contract.primaryExchange == "ARCA"
    assert got[0].contract.issuerId == ("e1" if version >= 176 else "")
    assert got[0].contract.description == ("Apple" if version >= 176 else "")


# --- executions --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [157, 177, 178])
def test_exec_details_when_decoded_then_contract_execution_and_aware_time(version: int) -> None:
    when = dt.datetime(2026, 11, 21, 10, 15, 30, tzinfo=ZoneInfo("US/Eastern"))
    execution = ExecutionFields(
        execId="0000e0d5.6551d1c2.01.01",
        time=when,
        acctNumber="DU1",
        exchange="NYSE",
        side="BOT",
        shares=Decimal(100),
        price=150.25,
        permId=9001,
        clientId=7,
        orderId=5,
        liquidation=0,
        cumQty=Decimal(100),
        avgPrice=150.25,
        orderRef="entry",
        evRule="",
        evMultiplier=None,
        modelCode="",
        lastLiquidity=2,
        pendingPriceRevision=True,
    )
    name, (req_id, c, ex) = one(encode_exec_details(-1, SPY_OPT, execution, server_version=version), version)
    assert (name, req_id) == ("execDetails", -1)
    assert_contract(c, SPY_OPT, CONTRACT_11)
    assert ex.time == when
    for f in dataclasses.fields(ExecutionFields):
        if f.name in {"time", "pendingPriceRevision", "evMultiplier"}:
            continue
        expected = getattr(execution, f.name)
        assert getattr(ex, f.name) == (float(expected) if isinstance(expected, Decimal) else expected), f.name
    assert ex.evMultiplier == 0.0
    assert ex.pendingPriceRevision is (version >= 178)


def test_format_tws_time_when_utc_or_zoneinfo_then_ib_async_parses_same_instant() -> None:
    from ib_async.util import parseIBDatetime

    for when in (
        dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 21, 10, 0, tzinfo=ZoneInfo("America/New_York")),
        dt.datetime(2026, 11, 21, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    ):
        assert parseIBDatetime(format_tws_time(when)) == when
    with pytest.raises(ValueError, match="aware"):
        format_tws_time(dt.datetime(2026, 1, 1))


# --- openOrder / completedOrder ------------------------------------------------------------------

_KINDS = {f.name: str(f.type) for f in dataclasses.fields(OrderFields)}


def _ib_value(kind: str, v: Any) -> Any:
    """What ib_async's Order attribute holds after decoding an OrderFields value of ``kind``."""
    if kind in {"str", "bool", "int"}:
        return v
    if kind == "int | None":
        return UNSET_INTEGER if v is None else v
    if kind in {"float", "Decimal"}:
        return float(v)
    if kind in {"float | None", "Decimal | None"}:
        return UNSET_DOUBLE if v is None else float(v)
    raise AssertionError(kind)


def _names(text: str) -> list[str]:
    return text.split()


OPEN_ALWAYS = _names(
    """action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin orderRef
    clientId permId outsideRth hidden discretionaryAmt goodAfterTime faGroup faMethod faPercentage modelCode
    goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation exemptCode
    auctionStrategy startingPrice stockRefPrice delta stockRangeLower stockRangeUpper displaySize blockOrder
    sweepToFill allOrNone minQty ocaType eTradeOnly firmQuoteOnly nbboPriceCap parentId triggerMethod
    volatility volatilityType deltaNeutralOrderType deltaNeutralAuxPrice continuousUpdate
    referencePriceType trailStopPrice trailingPercent basisPoints basisPointsType scaleInitLevelSize
    scaleSubsLevelSize scalePriceIncrement hedgeType optOutSmartRouting clearingAccount clearingIntent notHeld
    algoStrategy solicited whatIf randomizeSize randomizePrice adjustedOrderType triggerPrice lmtPriceOffset
    adjustedStopPrice adjustedStopLimitPrice adjustedTrailingAmount adjustableTrailingUnit cashQty
    dontUseAutoPriceForHedge isOmsContainer discretionaryUpToLimitPrice usePriceMgmtAlgo"""
)
COMPLETED_ALWAYS = _names(
    """action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin orderRef
    permId outsideRth hidden discretionaryAmt goodAfterTime faGroup faMethod faPercentage modelCode
    goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation exemptCode startingPrice
    stockRefPrice delta stockRangeLower stockRangeUpper displaySize sweepToFill allOrNone minQty ocaType
    triggerMethod volatility volatilityType deltaNeutralOrderType deltaNeutralAuxPrice continuousUpdate
    referencePriceType trailStopPrice trailingPercent scaleInitLevelSize scaleSubsLevelSize
    scalePriceIncrement hedgeType clearingAccount clearingIntent notHeld algoStrategy solicited randomizeSize
    randomizePrice lmtPriceOffset cashQty dontUseAutoPriceForHedge isOmsContainer autoCancelDate
    filledQuantity refFuturesConId autoCancelParent shareholder imbalanceOnly routeMarketableToBbo
    parentPermId"""
)
OPEN_DN = _names(
    """deltaNeutralConId deltaNeutralSettlingFirm deltaNeutralClearingAccount deltaNeutralClearingIntent
    deltaNeutralOpenClose deltaNeutralShortSale deltaNeutralShortSaleSlot deltaNeutralDesignatedLocation"""
)
COMPLETED_DN = _names(
    "deltaNeutralConId deltaNeutralShortSale deltaNeutralShortSaleSlot deltaNeutralDesignatedLocation"
)
SCALE = _names(
    """scalePriceAdjustValue scalePriceAdjustInterval scaleProfitOffset scaleAutoReset scaleInitPosition
    scaleInitFillQty scaleRandomPercent"""
)
PEG_BENCH = _names(
    "referenceContractId isPeggedChangeAmountDecrease peggedChangeAmount referenceChangeAmount"
    " referenceExchangeId"
)
PEG_BEST_MID = _names("minTradeQty minCompeteSize competeAgainstBestOffset midOffsetAtWhole midOffsetAtHalf")


def transmitted(o: OrderFields, version: int, completed: bool) -> list[str]:
    """OrderFields names ib_async's decoder reads (openOrder or completedOrder) at ``version``."""
    names = list(COMPLETED_ALWAYS if completed else OPEN_ALWAYS)
    if version < 177:
        names.append("faProfile")
    if o.deltaNeutralOrderType:
        names += COMPLETED_DN if completed else OPEN_DN
    if o.scalePriceIncrement is not None and 0 < o.scalePriceIncrement < UNSET_DOUBLE:
        names += SCALE
    if o.hedgeType:
        names.append("hedgeParam")
    if o.orderType in {"PEG BENCH", "PEGBENCH"}:
        names += PEG_BENCH
    if o.conditions:
        names += ["conditionsIgnoreRth", "conditionsCancelOrder"]
    if not completed:
        names += [
            n for v, n in ((159, "duration"), (160, "postToAts"), (162, "autoCancelParent")) if version >= v
        ]
    if version >= 170:
        names += PEG_BEST_MID
    return names


def assert_order(ib_order: Any, o: OrderFields, version: int, completed: bool) -> None:
    sent = set(transmitted(o, version, completed))
    default = Order()
    for name, kind in _KINDS.items():
        if not hasattr(default, name) or kind.startswith("tuple") or name == "softDollarTier":
            continue
        got = getattr(ib_order, name)
        expected = _ib_value(kind, getattr(o, name)) if name in sent else getattr(default, name)
        if name == "scalePriceIncrement" and expected == 0:
            expected = UNSET_DOUBLE  # ib_async pre-converts it, then parse() maps a falsy 0.0 to UNSET
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got), name
        else:
            assert got == expected, f"{name}: {got!r} != {expected!r}"
    assert [leg.price for leg in ib_order.orderComboLegs] == [
        UNSET_DOUBLE if p is None else p for p in o.orderComboLegPrices
    ]
    assert [(t.tag, t.value) for t in ib_order.smartComboRoutingParams] == list(o.smartComboRoutingParams)
    algo = list(o.algoParams) if o.algoStrategy else []
    assert [(t.tag, t.value) for t in ib_order.algoParams] == algo
    assert len(ib_order.conditions) == len(o.conditions)
    for got_cond, cond in zip(ib_order.conditions, o.conditions, strict=True):
        assert dataclasses.asdict(got_cond) == dataclasses.asdict(cond)
    tier = ib_order.softDollarTier
    if not completed:
        assert (tier.name, tier.val, tier.displayName) == dataclasses.astuple(o.softDollarTier)


def assert_order_contract(c: Any, expected: ContractFields) -> None:
    assert_contract(c, expected, CONTRACT_11 + " comboLegsDescrip")
    assert [dataclasses.astuple(leg) for leg in c.comboLegs] == [
        dataclasses.astuple(leg) for leg in expected.comboLegs
    ]
    dnc = expected.deltaNeutralContract
    if dnc is None:
        assert c.deltaNeutralContract is None
    else:
        assert dataclasses.astuple(c.deltaNeutralContract) == dataclasses.astuple(dnc)


def assert_order_state(st_: Any, expected: OrderStateFields, completed: bool) -> None:
    names = (
        ["status", "completedTime", "completedStatus"]
        if completed
        else [f.name for f in dataclasses.fields(OrderStateFields) if not f.name.startswith("completed")]
    )
    for name in names:
        value = getattr(expected, name)
        assert getattr(st_, name) == (UNSET_DOUBLE if value is None else value), name


FULL_ORDER = OrderFields(
    clientId=7,
    permId=9001,
    action="BUY",
    totalQuantity=Decimal("100"),
    orderType="PEG BENCH",
    lmtPrice=150.25,
    tif="GTC",
    ocaGroup="OCA_1",
    ocaType=1,
    orderRef="entry",
    parentId=3,
    outsideRth=True,
    account="DU1",
    openClose="O",
    deltaNeutralOrderType="LMT",
    deltaNeutralConId=5,
    deltaNeutralSettlingFirm="F",
    deltaNeutralShortSale=True,
    deltaNeutralDesignatedLocation="DL",
    basisPoints=1.5,
    basisPointsType=2,
    scaleInitLevelSize=100,
    scalePriceIncrement=0.05,
    scalePriceAdjustValue=0.01,
    scaleAutoReset=True,
    hedgeType="D",
    hedgeParam="0.5",
    algoStrategy="Adaptive",
    algoParams=(TagValue("adaptivePriority", "Normal"),),
    smartComboRoutingParams=(TagValue("NonGuaranteed", "1"),),
    orderComboLegPrices=(1.0, None),
    referenceContractId=8314,
    isPeggedChangeAmountDecrease=True,
    peggedChangeAmount=0.5,
    referenceChangeAmount=0.25,
    referenceExchangeId="NYSE",
    conditions=(
        PriceConditionFields(price=101.5, conId=265598, exch="SMART", isMore=False, triggerMethod=2),
        TimeConditionFields(conjunction="o", time="20261121 15:00:00"),
        MarginConditionFields(percent=30),
        ExecutionConditionFields(secType="STK", exch="SMART", symbol="AAPL"),
        VolumeConditionFields(volume=10000, conId=265598, exch="SMART"),
        PercentChangeConditionFields(changePercent=2.5, conId=265598, exch="SMART"),
    ),
    conditionsIgnoreRth=True,
    conditionsCancelOrder=True,
    softDollarTier=SoftDollarTierFields("tier", "1", "Tier 1"),
    trailStopPrice=148.0,
    trailingPercent=1.0,
    cashQty=15000.0,
    filledQuantity=Decimal(40),
    autoCancelDate="20261231",
    parentPermId=9000,
    duration=60,
    postToAts=1,
    autoCancelParent=True,
    minTradeQty=10,
    minCompeteSize=5,
    competeAgainstBestOffset=math.inf,
    midOffsetAtWhole=0.01,
    midOffsetAtHalf=0.005,
)
BAG_CONTRACT = ContractFields(
    conId=28812380,
    symbol="SPY",
    secType="BAG",
    exchange="SMART",
    currency="USD",
    comboLegsDescrip="7001|1,7002|-1",
    comboLegs=(
        ComboLegFields(7001, 1, "BUY", "SMART", 0, 0, "", -1),
        ComboLegFields(7002, 1, "SELL", "SMART", 1, 2, "X", 3),
    ),
    deltaNeutralContract=DeltaNeutralContractFields(756733, 0.5, 500.0),
)
STATE = OrderStateFields(
    status="Submitted",
    commission=1.0,
    minCommission=0.5,
    maxCommission=2.0,
    commissionCurrency="USD",
    warningText="w",
)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("contract", [AAPL, BAG_CONTRACT], ids=["stk", "bag"])
def test_open_order_when_every_group_present_then_ib_async_order_matches(
    version: int, contract: ContractFields
) -> None:
    name, (order_id, c, o, st_) = one(
        encode_open_order(12, contract, FULL_ORDER, STATE, server_version=version), version
    )
    assert (name, order_id, o.orderId) == ("openOrder", 12, 12)
    assert_order(o, FULL_ORDER, version, completed=False)
    assert_order_contract(c, contract)
    assert_order_state(st_, STATE, completed=False)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_completed_order_when_every_group_present_then_ib_async_order_matches(version: int) -> None:
    state = OrderStateFields(
        status="Filled", completedTime="20261121 10:15:30 US/Eastern", completedStatus="Filled"
    )
    name, (c, o, st_) = one(
        encode_completed_order(BAG_CONTRACT, FULL_ORDER, state, server_version=version), version
    )
    assert name == "completedOrder"
    assert_order(o, FULL_ORDER, version, completed=True)
    assert_order_contract(c, BAG_CONTRACT)
    assert_order_state(st_, state, completed=True)


def test_open_order_when_minimal_then_unset_fields_decode_to_ib_async_unset() -> None:
    order = OrderFields(clientId=7, permId=9001, action="SELL", totalQuantity=Decimal(5), orderType="MKT")
    _, (_, _, o, st_) = one(
        encode_open_order(3, AAPL, order, OrderStateFields(status="PreSubmitted"), server_version=178)
    )
    assert (o.lmtPrice, o.auxPrice, o.minQty, o.volatility) == (
        UNSET_DOUBLE,
        UNSET_DOUBLE,
        UNSET_INTEGER,
        UNSET_DOUBLE,
    )
    assert (o.totalQuantity, o.transmit, o.openClose) == (5.0, True, "")
    assert st_.initMarginChange == "1.7976931348623157E308" and st_.commission == UNSET_DOUBLE


FLOATY = st.floats(allow_nan=False).filter(lambda x: x != UNSET_DOUBLE)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 2)
KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "str": FIELD_TEXT,
    "bool": st.booleans(),
    "int": INT32,
    "int | None": st.one_of(st.none(), INT32),
    "float": FLOATY,
    "float | None": st.one_of(st.none(), FLOATY),
    "Decimal": st.decimals(
        allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12, places=6
    ),
    "Decimal | None": st.one_of(
        st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=0, max_value=10**9)
    ),
}
SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "orderType": st.sampled_from(
        ["MKT", "LMT", "STP", "TRAIL", "PEG BENCH", "PEGBENCH", "PEG BEST", "PEG MID"]
    ),
    "deltaNeutralOrderType": st.sampled_from(["", "", "LMT"]),
    "hedgeType": st.sampled_from(["", "", "D", "B"]),
    "algoStrategy": st.sampled_from(["", "", "Adaptive"]),
    "scalePriceIncrement": st.one_of(st.none(), FLOATY),
}
TAGS = st.lists(st.builds(TagValue, FIELD_TEXT, FIELD_TEXT), max_size=3).map(tuple)
CONDITION = st.one_of(
    st.builds(PriceConditionFields, st.sampled_from("ao"), st.booleans(), FLOATY, INT32, FIELD_TEXT, INT32),
    st.builds(TimeConditionFields, st.sampled_from("ao"), st.booleans(), FIELD_TEXT),
    st.builds(MarginConditionFields, st.sampled_from("ao"), st.booleans(), INT32),
    st.builds(ExecutionConditionFields, st.sampled_from("ao"), FIELD_TEXT, FIELD_TEXT, FIELD_TEXT),
    st.builds(VolumeConditionFields, st.sampled_from("ao"), st.booleans(), INT32, INT32, FIELD_TEXT),
    st.builds(PercentChangeConditionFields, st.sampled_from("ao"), st.booleans(), FLOATY, INT32, FIELD_TEXT),
)


@st.composite
def order_fields(draw: st.DrawFn) -> OrderFields:
    values: dict[str, Any] = {}
    for name, kind in _KINDS.items():
        if kind in KIND_STRATEGIES:
            values[name] = draw(SPECIAL.get(name, KIND_STRATEGIES[kind]))
    values["algoParams"] = draw(TAGS)
    values["smartComboRoutingParams"] = draw(TAGS)
    values["orderComboLegPrices"] = tuple(draw(st.lists(st.one_of(st.none(), FLOATY), max_size=3)))
    values["conditions"] = tuple(draw(st.lists(CONDITION, max_size=3)))
    values["softDollarTier"] = SoftDollarTierFields(draw(FIELD_TEXT), draw(FIELD_TEXT), draw(FIELD_TEXT))
    return OrderFields(**values)


@st.composite
def contract_fields(draw: st.DrawFn) -> ContractFields:
    leg = st.builds(ComboLegFields, INT32, INT32, FIELD_TEXT, FIELD_TEXT, INT32, INT32, FIELD_TEXT, INT32)
    dnc = st.one_of(st.none(), st.builds(DeltaNeutralContractFields, INT32, FLOATY, FLOATY))
    return ContractFields(
        conId=draw(INT32),
        symbol=draw(FIELD_TEXT),
        secType=draw(FIELD_TEXT),
        lastTradeDateOrContractMonth=draw(FIELD_TEXT),
        strike=draw(FLOATY),
        right=draw(FIELD_TEXT),
        multiplier=draw(FIELD_TEXT),
        exchange=draw(FIELD_TEXT),
        currency=draw(FIELD_TEXT),
        localSymbol=draw(FIELD_TEXT),
        tradingClass=draw(FIELD_TEXT),
        comboLegsDescrip=draw(FIELD_TEXT),
        comboLegs=tuple(draw(st.lists(leg, max_size=2))),
        deltaNeutralContract=draw(dnc),
    )


STATES = st.builds(
    OrderStateFields,
    status=FIELD_TEXT,
    initMarginChange=FIELD_TEXT,
    commission=st.one_of(st.none(), FLOATY),
    commissionCurrency=FIELD_TEXT,
    warningText=FIELD_TEXT,
    completedTime=FIELD_TEXT,
    completedStatus=FIELD_TEXT,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(ALL_VERSIONS),
    order_id=INT32,
    contract=contract_fields(),
    order=order_fields(),
    state=STATES,
)
def test_open_order_when_any_field_values_then_ib_async_decodes_them_all(
    version: int, order_id: int, contract: ContractFields, order: OrderFields, state: OrderStateFields
) -> None:
    name, (got_id, c, o, st_) = one(
        encode_open_order(order_id, contract, order, state, server_version=version), version
    )
    assert (name, got_id) == ("openOrder", order_id)
    assert_order(o, order, version, completed=False)
    assert_order_contract(c, contract)
    assert_order_state(st_, state, completed=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(ALL_VERSIONS), contract=contract_fields(), order=order_fields(), state=STATES)
def test_completed_order_when_any_field_values_then_ib_async_decodes_them_all(
    version: int, contract: ContractFields, order: OrderFields, state: OrderStateFields
) -> None:
    name, (c, o, st_) = one(encode_completed_order(contract, order, state, server_version=version), version)
    assert name == "completedOrder"
    assert_order(o, order, version, completed=True)
    assert_order_contract(c, contract)
    assert_order_state(st_, state, completed=True)


# --- the real ib_async IB object -----------------------------------------------------------------


def _connected_ib(version: int = 178) -> Any:
    ib: Any = IB()
    ib.client._serverVersion = version
    ib.client.decoder.serverVersion = version
    ib.wrapper.clientId = 7
    return ib


def test_real_ib_when_order_lifecycle_streamed_byte_by_byte_then_trade_fill_position_and_account() -> None:
    ib = _connected_ib()
    order = OrderFields(
        clientId=7,
        permId=9001,
        action="BUY",
        totalQuantity=Decimal(100),
        orderType="LMT",
        lmtPrice=150.25,
        account="DU1",
        tif="DAY",
    )
    when = dt.datetime(2026, 11, 21, 15, 30, tzinfo=dt.UTC)
    fill = ExecutionFields(
        "0001.01",
        when,
        "DU1",
        "NYSE",
        "BOT",
        Decimal(100),
        150.0,
        9001,
        7,
        5,
        cumQty=Decimal(100),
        avgPrice=150.0,
    )
    stream = b"".join(
        [
            encode_open_order(5, AAPL, order, OrderStateFields(status="Submitted"), server_version=178),
            encode_order_status(
                5,
                "Submitted",
                filled=0,
                remaining=100,
                avgFillPrice=0.0,
                permId=9001,
                parentId=0,
                lastFillPrice=0.0,
                clientId=7,
            ),
            encode_exec_details(-1, AAPL, fill, server_version=178),
            encode_commission_report("0001.01", 1.0, "USD"),
            encode_order_status(
                5,
                "Filled",
                filled=100,
                remaining=0,
                avgFillPrice=150.0,
                permId=9001,
                parentId=0,
                lastFillPrice=150.0,
                clientId=7,
            ),
            encode_position("DU1", AAPL, Decimal(100), 150.01),
            encode_update_account_value("NetLiquidation", "100000.00", "USD", "DU1"),
            encode_update_portfolio(
                AAPL,
                position=100,
                marketPrice=151.0,
                marketValue=15100.0,
                averageCost=150.01,
                unrealizedPNL=99.0,
                realizedPNL=0.0,
                accountName="DU1",
            ),
            encode_account_download_end("DU1"),
            encode_error(-1, 2104, "Market data farm connection is OK:usfarm", server_version=178),
        ]
    )
    with no_ib_async_errors():
        for i in range(len(stream)):
            ib.client._onSocketHasData(stream[i : i + 1])
    (trade,) = ib.trades()
    assert (trade.order.orderId, trade.order.permId, trade.order.lmtPrice) == (5, 9001, 150.25)
    assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == 150.0
    assert trade.contract.conId == 265598
    (got_fill,) = trade.fills
    assert (got_fill.execution.shares, got_fill.execution.price, got_fill.execution.time) == (
        100.0,
        150.0,
        when,
    )
    assert (got_fill.commissionReport.commission, got_fill.commissionReport.realizedPNL) == (1.0, 0.0)
    (position,) = ib.positions()
    assert (position.account, position.contract.conId, position.position, position.avgCost) == (
        "DU1",
        265598,
        100.0,
        150.01,
    )
    values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
    assert values[("NetLiquidation", "USD")] == "100000.00"
    (item,) = ib.portfolio()
    assert (item.position, item.marketPrice, item.unrealizedPNL) == (100.0, 151.0, 99.0)


def test_real_ib_when_order_rejected_with_error_then_trade_cancelled_with_advanced_json() -> None:
    ib = _connected_ib()
    order = OrderFields(
        clientId=7, permId=9002, action="BUY", totalQuantity=Decimal(1), orderType="LMT", lmtPrice=1.0
    )
    ib.client._onSocketHasData(
        encode_open_order(6, AAPL, order, OrderStateFields(status="PreSubmitted"), server_version=178)
    )
    logging.getLogger(
        "ib_async.wrapper"
    ).disabled = True  # the wrapper logs the rejection at ERROR, as intended
    try:
        ib.client._onSocketHasData(
            encode_error(6, 201, "Order rejected - reason:", '{"x":1}', server_version=178)
        )
    finally:
        logging.getLogger("ib_async.wrapper").disabled = False
    (trade,) = ib.trades()
    assert trade.orderStatus.status == "Cancelled" and trade.advancedError == '{"x":1}'
    assert trade.log[-1].errorCode == 201


def test_real_ib_when_what_if_answered_then_order_state_with_margins_resolves_request() -> None:
    async def scenario() -> Any:
        ib = _connected_ib()
        future = ib.wrapper.startReq(8)
        preview = OrderFields(
            clientId=7, action="BUY", totalQuantity=Decimal(10), orderType="MKT", whatIf=True
        )
        state = OrderStateFields(
            status="PreSubmitted", initMarginChange="1500.0", maintMarginChange="1200.0", commission=1.0
        )
        with no_ib_async_errors():
            ib.client._onSocketHasData(encode_open_order(8, AAPL, preview, state, server_version=178))
        return await asyncio.wait_for(future, 1)

    result = asyncio.run(scenario())
    assert (result.initMarginChange, result.maintMarginChange, result.commission) == ("1500.0", "1200.0", 1.0)
