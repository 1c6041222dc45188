"""IB error codes by meaning: classification and actions (trader.ib.errors)."""

from __future__ import annotations

import pytest

from trader.ib.errors import (
    Action,
    Category,
    FarmKind,
    FarmState,
    classify,
    farm_status,
    is_pacing,
)


@pytest.mark.parametrize(
    ("code", "text", "category", "action"),
    [
        (
            1100,
            "Connectivity between IB and Trader Workstation has been lost.",
            Category.CONNECTIVITY,
            Action.WAIT,
        ),
        (1101, "Connectivity ... restored - data lost.", Category.CONNECTIVITY, Action.RESUBSCRIBE),
        (1102, "Connectivity ... restored - data maintained.", Category.CONNECTIVITY, Action.VERIFY),
        (1300, "TWS socket port has been reset", Category.CONNECTIVITY, Action.RECONNECT),
        (
            326,
            "Unable to connect as the client id is already in use.",
            Category.CLIENT_ID,
            Action.NEXT_CLIENT_ID,
        ),
        (200, "No security definition has been found for the request", Category.CONTRACT, Action.CONTRACT),
        (200, "The contract description specified for ES is ambiguous.", Category.CONTRACT, Action.CONTRACT),
        (201, "Order rejected - reason:margin", Category.ORDER, Action.ORDER_REJECTED),
        (202, "Order Canceled - reason:", Category.ORDER, Action.ORDER_CANCELLED),
        (103, "Duplicate order id", Category.ORDER, Action.NEXT_ORDER_ID),
        (10197, "No market data during competing live session", Category.SESSION, Action.COMPETING_SESSION),
        (354, "Requested market data is not subscribed.", Category.MARKET_DATA, Action.FALLBACK_DELAYED),
        (
            10089,
            "Requested market data requires additional subscription",
            Category.MARKET_DATA,
            Action.FALLBACK_DELAYED,
        ),
        (
            10090,
            "Part of requested market data is not subscribed.",
            Category.MARKET_DATA,
            Action.FALLBACK_DELAYED,
        ),
        (
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
            Category.MARKET_DATA,
            Action.DELAYED,
        ),
        (
            10168,
            "Requested market data is not subscribed. Delayed market data is not enabled.",
            Category.MARKET_DATA,
            Action.NO_MARKET_DATA,
        ),
        (100, "Max rate of messages per second has been exceeded.", Category.PACING, Action.RETRY_LATER),
        (
            420,
            "Invalid Real-time Query:Historical data request pacing violation",
            Category.PACING,
            Action.RETRY_LATER,
        ),
        (420, "Invalid Real-time Query:No market data permissions", Category.REQUEST, Action.FAIL),
        (
            2109,
            "Order Event Warning:Attribute 'Outside Regular Trading Hours' is ignored",
            Category.ORDER,
            Action.LOG,
        ),
        (321, "Error validating request", Category.REQUEST, Action.FAIL),
        (99999, "something new", Category.OTHER, Action.FAIL),
        (2199, "some warning", Category.OTHER, Action.LOG),
    ],
)
def test_classify_when_known_code_then_category_and_action(
    code: int, text: str, category: Category, action: Action
) -> None:
    error = classify(code, text, 7)
    assert (error.code, error.category, error.action) == (code, category, action)


@pytest.mark.parametrize(
    ("text", "action", "informational"),
    [
        (
            "Historical Market Data Service error message:Historical data request pacing violation",
            Action.RETRY_LATER,
            False,
        ),
        (
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
            Action.NO_DATA,
            True,
        ),
        (
            "Historical Market Data Service error message:API historical data query cancelled: 5",
            Action.CANCELLED,
            True,
        ),
        (
            "Historical Market Data Service error message:No market data permissions for NYSE STK",
            Action.FAIL,
            False,
        ),
    ],
)
def test_classify_when_162_then_the_text_decides(text: str, action: Action, informational: bool) -> None:
    error = classify(162, text, 3)
    assert error.action is action
    assert error.informational is informational
    assert is_pacing(162, text) is (action is Action.RETRY_LATER)


@pytest.mark.parametrize(
    ("code", "text", "name", "kind", "state"),
    [
        (2103, "Market data farm connection is broken:usfarm", "usfarm", FarmKind.MARKET, FarmState.BROKEN),
        (2104, "Market data farm connection is OK:usfarm.nj", "usfarm.nj", FarmKind.MARKET, FarmState.OK),
        (2105, "HMDS data farm connection is broken:ushmds", "ushmds", FarmKind.HMDS, FarmState.BROKEN),
        (2106, "HMDS data farm connection is OK:ushmds", "ushmds", FarmKind.HMDS, FarmState.OK),
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand.euhmds",
            "euhmds",
            FarmKind.HMDS,
            FarmState.INACTIVE,
        ),
        (
            2108,
            "Market data farm connection is inactive but should be available upon demand.cashfarm",
            "cashfarm",
            FarmKind.MARKET,
            FarmState.INACTIVE,
        ),
        (2119, "Market data farm is connecting:usfuture", "usfuture", FarmKind.MARKET, FarmState.CONNECTING),
        (
            2157,
            "Sec-def data farm connection is broken:secdefnj",
            "secdefnj",
            FarmKind.SECDEF,
            FarmState.BROKEN,
        ),
        (2158, "Sec-def data farm connection is OK:secdefil", "secdefil", FarmKind.SECDEF, FarmState.OK),
    ],
)
def test_classify_when_farm_notice_then_farm_name_kind_and_state(
    code: int, text: str, name: str, kind: FarmKind, state: FarmState
) -> None:
    error = classify(code, text)
    assert error.category is Category.FARM
    assert error.action is Action.FARM
    assert error.farm is not None
    assert (error.farm.name, error.farm.kind, error.farm.state) == (name, kind, state)
    assert error.informational is (state is not FarmState.BROKEN)
    assert error.system


def test_classify_when_2110_system_notice_then_wait_but_on_an_order_then_order_failure() -> None:
    text = "Connectivity between Trader Workstation and server is broken. It will be restored automatically."
    system = classify(2110, text, -1)
    assert (system.category, system.action) == (Category.CONNECTIVITY, Action.WAIT)
    on_order = classify(2110, text, 42)
    assert (on_order.category, on_order.action) == (Category.ORDER, Action.FAIL)


def test_farm_status_when_not_a_farm_code_then_none() -> None:
    assert farm_status(1100, "Connectivity lost") is None
    assert farm_status(2104, "garbled") is not None


def test_ib_error_when_printed_then_code_request_and_text() -> None:
    assert str(classify(200, "No security definition", 12)) == "IB 200 (reqId 12): No security definition"
    assert str(classify(1100, "Connectivity lost")) == "IB 1100: Connectivity lost"


def test_classify_when_connectivity_restored_then_informational_and_lost_is_not() -> None:
    assert classify(1102).informational
    assert classify(1101).informational
    assert not classify(1100).informational
