"""The market-data feature (contracts, streaming quotes, market data types, halts, tick-by-tick,
the quote cache) and always-open hours, against the real ib_async ``Decoder``; no sockets (see
``tests/unit/exchange_market_harness.py``)."""

from __future__ import annotations

import itertools
from datetime import date
from typing import cast

import pytest

from tests.unit.exchange_market_harness import (
    AAPL,
    AAPL_C,
    ALWAYS,
    MONDAY_PREMARKET,
    NS,
    REAL,
    SATURDAY,
    UNKNOWN,
    WEDNESDAY_RTH,
    Harness,
    errors,
    mkt,
    names,
    ticks,
    utc,
)
from trader.exchange.feature_market import DELAY_NS, MarketSessionState
from trader.exchange.instruments import Universe
from trader.exchange.market import Market, MarketConfig
from trader.exchange.protocol import (
    CancelMktData,
    CancelTickByTickData,
    ContractFields,
    ReqContractDetails,
    ReqMarketDataType,
    ReqMarketRule,
    ReqMatchingSymbols,
    ReqSmartComponents,
    ReqTickByTickData,
)
from trader.exchange.quote_cache import QuoteCache

# -- always-open hours -----------------------------------------------------------------------------


def test_universe_when_always_open_then_every_instrument_trades_and_is_in_rth_on_a_saturday() -> None:
    for inst in ALWAYS:
        assert inst.calendar.is_open(SATURDAY, rth=False)
        assert inst.calendar.is_open(SATURDAY, rth=True)
        assert inst.timeZone == REAL[inst.conId].timeZone
    assert not REAL[AAPL].calendar.is_open(SATURDAY, rth=False)


def test_universe_when_always_open_then_market_quotes_every_instrument_on_a_holiday() -> None:
    christmas = utc(2026, 12, 25, 15)
    assert len(Market(ALWAYS).advance(christmas)) == len(ALWAYS)
    assert AAPL not in {q.conId for q in Market(REAL).advance(christmas)}


def test_hours_when_always_open_then_one_session_per_local_day() -> None:
    hours = ALWAYS[AAPL].trading_hours(date(2026, 11, 21), 2)
    assert hours == "20261121:0000-20261122:0000;20261122:0000-20261123:0000"
    assert ALWAYS[AAPL].liquid_hours(date(2026, 11, 21), 2) == hours


def test_bars_when_always_open_then_a_day_has_1440_minutes() -> None:
    market = Market(ALWAYS)
    end = utc(2026, 11, 21, 5)  # Saturday 00:00 New York
    bars = market.bars(AAPL, end, "1 D", "1 min", now_ns=SATURDAY)
    assert len(bars) == 1440
    steps = (bars.time_ns[1:] - bars.time_ns[:-1]) // NS
    assert set(steps.tolist()) == {60}


def test_engine_when_always_open_then_orders_are_in_rth_on_a_saturday() -> None:
    market = Market(ALWAYS)
    assert market.is_open(AAPL, SATURDAY, rth=True)
    assert not Market(REAL).is_open(AAPL, SATURDAY, rth=True)


# -- contracts --------------------------------------------------------------------------------------


def test_contract_details_when_stock_is_known_then_rich_details_and_end() -> None:
    h = Harness(REAL)
    calls = h.request(ReqContractDetails(7, AAPL_C))
    assert names(calls) == ["contractDetails", "contractDetailsEnd"]
    cd = calls[0][1][1]
    c = cd.contract
    assert (c.conId, c.symbol, c.secType, c.exchange, c.primaryExchange, c.currency) == (
        AAPL,
        "AAPL",
        "STK",
        "SMART",
        "NASDAQ",
        "USD",
    )
    assert (c.localSymbol, c.tradingClass) == ("AAPL", "NMS")
    assert cd.longName == "APPLE INC"
    assert cd.marketName == "NMS"
    assert cd.minTick == 0.01
    assert cd.timeZoneId == "US/Eastern"
    assert "LMT" in cd.orderTypes.split(",") and "SMART" in cd.validExchanges.split(",")
    assert cd.stockType == "COMMON"
    assert cd.industry == "Technology"
    assert cd.priceMagnifier == 1
    assert cd.minSize == 1 and cd.sizeIncrement == 1
    assert "20261118:0400-20261118:2000" in cd.tradingHours
    assert "20261118:0930-20261118:1600" in cd.liquidHours
    assert "20261121:CLOSED" in cd.liquidHours
    sessions = cd.liquidSessions()
    assert sessions and sessions[0].start.tzinfo is not None
    assert len(cd.marketRuleIds.split(",")) == len(cd.validExchanges.split(","))


def test_contract_details_when_future_by_month_then_contract_month_and_multiplier() -> None:
    h = Harness(REAL)
    calls = h.request(
        ReqContractDetails(
            8,
            ContractFields(symbol="ES", secType="FUT", exchange="CME", lastTradeDateOrContractMonth="202612"),
        )
    )
    cd = calls[0][1][1]
    assert cd.contract.localSymbol == "ESZ6"
    assert cd.contract.multiplier == "50"
    assert cd.contractMonth == "202612"
    assert cd.minTick == 0.25
    assert cd.underSecType == "IND"
    assert cd.timeZoneId == "US/Central"


def test_contract_details_when_unknown_then_error_200() -> None:
    calls = Harness().request(ReqContractDetails(9, UNKNOWN))
    assert errors(calls) == [(9, 200, "No security definition has been found for the request")]


def test_contract_details_when_only_sectype_then_one_per_match_and_end() -> None:
    calls = Harness().request(ReqContractDetails(10, ContractFields(secType="FUT")))
    assert names(calls).count("contractDetails") == 4
    assert names(calls)[-1] == "contractDetailsEnd"


@pytest.mark.parametrize("version", [157, 163, 164, 176, 178])
def test_contract_details_when_older_server_version_then_ib_async_decodes_them(version: int) -> None:
    h = Harness()
    h.session.server_version = version
    calls = h.request(ReqContractDetails(11, AAPL_C))
    assert calls[0][1][1].contract.conId == AAPL


def test_matching_symbols_when_prefix_then_exact_symbol_first() -> None:
    calls = Harness().request(ReqMatchingSymbols(12, "AAPL"))
    assert names(calls) == ["symbolSamples"]
    descriptions = calls[0][1][1]
    first = descriptions[0].contract
    assert (first.conId, first.symbol, first.primaryExchange, first.currency) == (
        AAPL,
        "AAPL",
        "NASDAQ",
        "USD",
    )
    assert first.description == "APPLE INC"


def test_market_rule_when_id_from_details_then_tick_increment() -> None:
    h = Harness()
    cd = h.request(ReqContractDetails(13, AAPL_C))[0][1][1]
    rule = int(cd.marketRuleIds.split(",")[0])
    calls = h.request(ReqMarketRule(rule))
    assert names(calls) == ["marketRule"]
    assert calls[0][1][0] == rule
    assert calls[0][1][1][0].increment == 0.01


def test_smart_components_when_bbo_exchange_from_tick_params_then_components() -> None:
    h = Harness()
    params = next(a for n, a in h.request(mkt(1)) if n == "tickReqParams")
    calls = h.request(ReqSmartComponents(14, params[2]))
    assert names(calls) == ["smartComponents"]


# -- streaming quotes -------------------------------------------------------------------------------


def test_mkt_data_when_open_then_type_params_then_values_of_the_market() -> None:
    h = Harness()
    calls = h.request(mkt(1))
    assert names(calls)[:2] == ["marketDataType", "tickReqParams"]
    assert calls[0][1] == (1, 1)
    assert calls[1][1][1] == 0.01
    q = h.market.last_quote(AAPL, h.now)
    stats = h.market.session_stats(AAPL, h.now)
    prices = ticks(calls)
    assert prices[1] == (q.bid, q.bidSize)
    assert prices[2] == (q.ask, q.askSize)
    assert prices[4] == (q.last, q.lastSize)
    assert prices[9][0] == stats.close and prices[14][0] == stats.open
    assert prices[6][0] == stats.high and prices[7][0] == stats.low
    assert ticks(calls, "tickSize")[8] == (q.volume,)
    assert ticks(calls, "tickString")[45] == (str(h.now // NS),)


def test_mkt_data_when_market_steps_then_each_quote_streams_bid_ask_last() -> None:
    h = Harness()
    h.request(mkt(1))
    for _ in range(5):
        calls = h.step()
        q = h.market.last_quote(AAPL, h.now)
        prices = ticks([c for c in calls if c[1][0] == 1])
        assert prices[4] == (q.last, q.lastSize)
        bid = prices.get(1)
        if bid is not None:
            assert bid == (q.bid, q.bidSize)
        assert ticks(calls, "tickString")[45] == (str(h.now // NS),)


def test_mkt_data_when_session_high_exceeded_then_high_tick() -> None:
    h = Harness()
    h.request(mkt(1))
    state = cast(MarketSessionState, h.session.extensions["market"])
    ticker = state.tickers[1]
    ticker.high = 0.0  # any last trade now makes a new high
    calls = h.step()
    assert ticks(calls)[6][0] == h.market.last_quote(AAPL, h.now).last


def test_mkt_data_when_snapshot_then_values_and_snapshot_end_and_no_stream() -> None:
    h = Harness()
    calls = h.request(mkt(2, snapshot=True))
    assert names(calls)[0] == "marketDataType" and names(calls)[-1] == "tickSnapshotEnd"
    assert 4 in ticks(calls)
    assert h.step() == []


def test_mkt_data_when_cancelled_then_no_more_ticks() -> None:
    h = Harness()
    h.request(mkt(1))
    assert h.step()
    assert h.request(CancelMktData(1)) == []
    assert h.step() == []


def test_mkt_data_when_unknown_contract_then_error_200() -> None:
    calls = Harness().request(mkt(3, UNKNOWN))
    assert errors(calls) == [(3, 200, "No security definition has been found for the request")]


def test_mkt_data_when_contract_ambiguous_then_error_200_names_it() -> None:
    calls = Harness().request(mkt(3, ContractFields(secType="STK", currency="USD")))
    (error,) = errors(calls)
    assert error[1] == 200 and "ambiguous" in error[2]


def test_mkt_data_when_request_id_in_use_then_error_322() -> None:
    h = Harness()
    h.request(mkt(1))
    assert errors(h.request(mkt(1)))[0][1] == 322


def test_mkt_data_when_live_on_closed_market_then_last_but_no_bid_ask() -> None:
    h = Harness(REAL, SATURDAY)
    calls = h.request(mkt(1))
    assert calls[0][1] == (1, 1)
    prices = ticks(calls)
    assert 4 in prices and 9 in prices
    assert 1 not in prices and 2 not in prices
    assert h.step() == []


def test_mkt_data_when_frozen_on_closed_market_then_last_quote_then_live_at_the_open() -> None:
    h = Harness(REAL, SATURDAY)
    h.request(ReqMarketDataType(2))
    calls = h.request(mkt(1))
    assert calls[0][1] == (1, 2)
    friday_close = h.market.last_quote(AAPL, SATURDAY)
    assert ticks(calls)[1] == (friday_close.bid, friday_close.bidSize)
    h.now = MONDAY_PREMARKET - NS
    calls = h.step()
    assert names(calls)[0] == "marketDataType" and calls[0][1] == (1, 1)
    assert ticks(calls)[4][0] == h.market.last_quote(AAPL, h.now).last


def test_mkt_data_when_delayed_then_delayed_tick_types_15_minutes_old() -> None:
    h = Harness()
    h.request(ReqMarketDataType(3))
    calls = h.request(mkt(1))
    assert calls[0][1] == (1, 3)
    old = h.market.quote_at(AAPL, h.now - DELAY_NS)
    prices = ticks(calls)
    assert prices[66] == (old.bid, old.bidSize)
    assert prices[67] == (old.ask, old.askSize)
    assert prices[68] == (old.last, old.lastSize)
    assert not {1, 2, 4} & prices.keys()
    assert ticks(calls, "tickString")[88] == (str((h.now - DELAY_NS) // NS),)
    calls = h.step()
    assert ticks(calls)[68][0] == h.market.quote_at(AAPL, h.now - DELAY_NS).last


def test_mkt_data_when_delayed_frozen_on_closed_market_then_type_4_with_last_delayed_quote() -> None:
    h = Harness(REAL, SATURDAY)
    h.request(ReqMarketDataType(4))
    calls = h.request(mkt(1))
    assert calls[0][1] == (1, 4)
    assert {66, 67, 68} <= ticks(calls).keys()


def test_mkt_data_when_delayed_on_closed_market_then_type_3_with_statistics_only() -> None:
    h = Harness(REAL, SATURDAY)
    h.request(ReqMarketDataType(3))
    calls = h.request(mkt(1))
    assert calls[0][1] == (1, 3)
    prices = ticks(calls)
    assert 75 in prices and 66 not in prices


def test_market_data_type_when_changed_mid_stream_then_type_message_and_delayed_ticks() -> None:
    h = Harness()
    h.request(mkt(1))
    calls = h.request(ReqMarketDataType(3))
    assert calls[0] == ("marketDataType", (1, 3))
    assert 68 in ticks(calls)
    assert 68 in ticks(h.step())


def test_market_data_type_when_invalid_then_error() -> None:
    assert errors(Harness().request(ReqMarketDataType(7)))[0][1] == 321


def test_mkt_data_when_halted_then_tick_49_and_quotes_stop_until_resumed() -> None:
    h = Harness()
    calls = h.request(mkt(1, generic="49"))
    assert ticks(calls, "tickGeneric")[49] == (0.0,)
    h.market.halt(AAPL, h.now)
    calls = h.step()
    assert ticks(calls, "tickGeneric") == {49: (1.0,)}
    assert ticks(calls) == {}
    assert h.step() == []
    h.market.resume(AAPL)
    calls = h.step()
    assert ticks(calls, "tickGeneric") == {49: (0.0,)}
    assert 4 in ticks(calls)


def test_mkt_data_when_halted_without_generic_49_then_halt_still_reported() -> None:
    h = Harness()
    h.request(mkt(1))
    h.market.halt(AAPL, h.now)
    assert ticks(h.step(), "tickGeneric") == {49: (1.0,)}


def test_mkt_data_when_delayed_and_halted_then_tick_90_and_no_quotes() -> None:
    h = Harness()
    h.request(ReqMarketDataType(3))
    h.request(mkt(1))
    h.market.halt(AAPL, h.now)
    calls = h.step()
    assert ticks(calls, "tickGeneric") == {90: (1.0,)}
    assert ticks(calls) == {}


def test_mkt_data_when_generic_ticks_233_236_221_then_rt_volume_shortable_mark() -> None:
    h = Harness()
    calls = h.request(mkt(1, generic="233,236,221"))
    assert 46 in ticks(calls, "tickGeneric") and 89 in ticks(calls, "tickSize")
    calls = h.step()
    q = h.market.last_quote(AAPL, h.now)
    rt = ticks(calls, "tickString")[48][0].split(";")
    assert float(rt[0]) == q.last and float(rt[3]) == q.volume
    assert ticks(calls)[37][0] == q.mid


def test_on_step_when_many_quotes_then_one_send_per_step() -> None:
    h = Harness()
    for i, inst in enumerate(ALWAYS):
        h.request(mkt(100 + i, ContractFields(conId=inst.conId)))
    h.session.sends = 0
    calls = h.step()
    assert h.session.sends == 1
    assert len({args[0] for n, args in calls if n == "priceSizeTick"}) == len(ALWAYS)


def test_on_close_when_session_ends_then_state_dropped() -> None:
    h = Harness()
    h.request(mkt(1))
    h.feature.on_close(h.session)
    assert "market" not in h.session.extensions
    assert h.step() == []


# -- tick by tick -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Last", "AllLast"])
def test_tick_by_tick_when_last_then_every_trade(kind: str) -> None:
    h = Harness()
    assert h.request(ReqTickByTickData(1, AAPL_C, kind, 0, False)) == []
    calls = h.step()
    q = h.market.last_quote(AAPL, h.now)
    (call,) = calls
    assert call[0] == "tickByTickAllLast"
    _, tick_type, time, price, size, _, exchange, _ = call[1]
    assert (tick_type, time, price, size, exchange) == (
        1 if kind == "Last" else 2,
        h.now // NS,
        q.last,
        q.lastSize,
        "NASDAQ",
    )


def test_tick_by_tick_when_bid_ask_then_quotes() -> None:
    h = Harness()
    h.request(ReqTickByTickData(1, AAPL_C, "BidAsk", 0, False))
    (call,) = h.step()
    q = h.market.last_quote(AAPL, h.now)
    assert call[0] == "tickByTickBidAsk"
    assert call[1][1:6] == (h.now // NS, q.bid, q.ask, q.bidSize, q.askSize)


def test_tick_by_tick_when_bid_ask_ignore_size_then_only_price_changes() -> None:
    h = Harness()
    h.request(ReqTickByTickData(1, AAPL_C, "BidAsk", 0, True))
    seen: list[tuple[float, float]] = []
    for _ in range(30):
        seen += [(a[2], a[3]) for n, a in h.step() if n == "tickByTickBidAsk"]
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_tick_by_tick_when_midpoint_then_mid_changes() -> None:
    h = Harness()
    h.request(ReqTickByTickData(1, AAPL_C, "MidPoint", 0, False))
    mids = []
    for _ in range(10):
        mids += [a[2] for n, a in h.step() if n == "tickByTickMidPoint"]
    assert mids
    assert all(a != b for a, b in itertools.pairwise(mids))


def test_tick_by_tick_when_number_of_ticks_then_history_first() -> None:
    h = Harness()
    calls = h.request(ReqTickByTickData(1, AAPL_C, "Last", 10, False))
    times = [a[2] for n, a in calls if n == "tickByTickAllLast"]
    assert len(times) == 10
    assert times == sorted(times) and times[-1] == h.now // NS
    assert [a[3] for n, a in calls][-1] == h.market.quote_at(AAPL, h.now).last
    assert names(h.step()) == ["tickByTickAllLast"]


def test_tick_by_tick_when_unknown_type_then_error_names_the_request() -> None:
    (error,) = errors(Harness().request(ReqTickByTickData(1, AAPL_C, "Trades", 0, False)))
    assert error[1] == 321 and "reqTickByTickData" in error[2]


def test_tick_by_tick_when_cancelled_then_stops() -> None:
    h = Harness()
    h.request(ReqTickByTickData(1, AAPL_C, "Last", 0, False))
    h.request(CancelTickByTickData(1))
    assert h.step() == []


# -- quote cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("universe", [REAL, ALWAYS], ids=["real", "always"])
def test_quote_cache_when_queried_forward_and_back_then_equal_to_the_market(universe: Universe) -> None:
    market = Market(universe, MarketConfig(step_ms=250, tick_rate=4))
    cache = QuoteCache(market)
    con_ids = [AAPL, universe.by_symbol("ES", "FUT").conId, 12087792]
    times = [WEDNESDAY_RTH + k * 3_607 * NS // 10 for k in range(0, 400, 7)]
    times += [SATURDAY, MONDAY_PREMARKET, MONDAY_PREMARKET + 1, WEDNESDAY_RTH - DELAY_NS, WEDNESDAY_RTH]
    for t in times:
        for con_id in con_ids:
            assert cache.quote(con_id, t) == market.quote_at(con_id, t)
            assert cache.last_quote(con_id, t) == market.last_quote(con_id, t)
            assert cache.session_stats(con_id, t) == market.session_stats(con_id, t)


def test_quote_cache_when_halted_then_the_markets_frozen_quote() -> None:
    market = Market(ALWAYS)
    cache = QuoteCache(market)
    market.halt(AAPL, WEDNESDAY_RTH)
    later = WEDNESDAY_RTH + 60 * NS
    assert cache.last_quote(AAPL, later) == market.last_quote(AAPL, later)
    assert cache.last_quote(AAPL, later).time_ns == WEDNESDAY_RTH


def test_mkt_data_when_a_new_session_starts_then_open_close_high_low_of_it() -> None:
    h = Harness(REAL, SATURDAY)
    h.request(ReqMarketDataType(2))
    h.request(mkt(1))
    h.now = MONDAY_PREMARKET - NS
    calls = h.step(1.5)
    stats = h.market.session_stats(AAPL, h.now)
    prices = ticks(calls)
    assert prices[14][0] == stats.open and prices[9][0] == stats.close
    assert prices[6][0] == stats.high and prices[7][0] == stats.low
    friday = REAL[AAPL].calendar.previous_session(h.now, rth=False)
    assert friday is not None and stats.close == h.market.close_price(AAPL, friday)
