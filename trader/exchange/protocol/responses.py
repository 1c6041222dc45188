"""Server -> client messages: connection, errors, account, portfolio, positions, PnL, reference lists.

Every ``encode_*`` returns one complete frame (bytes, length prefix included) holding exactly the
fields ib_async 2.1.0's ``decoder.py`` reads, with the message version numbers TWS sends. Only the
encoders whose layout depends on the negotiated version take a keyword-only ``server_version``
(here: :func:`encode_error`). Order messages are in :mod:`.responses_orders`, market data and
contract data in :mod:`.responses_market`.

Numbers: ``None`` (and UNSET_INTEGER / UNSET_DOUBLE) are sent as ``""``, which ib_async reads as
the field's default; PnL values are the exception (TWS sends UNSET_DOUBLE literally for "not
available", and so do we for ``None``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

from trader.exchange.protocol.fields import ContractFields, SoftDollarTierFields
from trader.exchange.protocol.framing import UNSET_DOUBLE, FieldValue, encode_fields
from trader.exchange.protocol.ids import OutgoingMessageId as O

__all__ = [
    "Number",
    "contract_fields",
    "encode_account_download_end",
    "encode_account_summary",
    "encode_account_summary_end",
    "encode_account_update_multi",
    "encode_account_update_multi_end",
    "encode_current_time",
    "encode_error",
    "encode_family_codes",
    "encode_managed_accounts",
    "encode_news_providers",
    "encode_next_valid_id",
    "encode_pnl",
    "encode_pnl_single",
    "encode_position",
    "encode_position_end",
    "encode_position_multi",
    "encode_position_multi_end",
    "encode_soft_dollar_tiers",
    "encode_update_account_time",
    "encode_update_account_value",
    "encode_update_portfolio",
    "encode_user_info",
    "format_tws_time",
]

#: A price, size or amount as the encoders accept it.
Number = float | int | Decimal


def format_tws_time(when: dt.datetime) -> str:
    """``"20261121 15:30:00 US/Eastern"`` (``"... UTC"`` unless ``when`` is in a ZoneInfo zone).

    The form TWS uses for execution times and intraday bar dates; ib_async's ``parseIBDatetime``
    reads it back as an aware datetime. ``when`` must be timezone-aware.
    """
    if when.tzinfo is None:
        raise ValueError("TWS times must be timezone-aware")
    if isinstance(when.tzinfo, ZoneInfo):
        return f"{when:%Y%m%d %H:%M:%S} {when.tzinfo.key}"
    return f"{when.astimezone(dt.UTC):%Y%m%d %H:%M:%S} UTC"


def contract_fields(c: ContractFields, *, primary_exchange: bool = False) -> list[FieldValue]:
    """The 11 contract fields of execDetails, position, positionMulti, openOrder, completedOrder
    (``primary_exchange=True``: updatePortfolio, which sends primaryExchange where the others send
    exchange)."""
    return [
        c.conId,
        c.symbol,
        c.secType,
        c.lastTradeDateOrContractMonth,
        c.strike,
        c.right,
        c.multiplier,
        c.primaryExchange if primary_exchange else c.exchange,
        c.currency,
        c.localSymbol,
        c.tradingClass,
    ]


def encode_next_valid_id(orderId: int) -> bytes:
    """NEXT_VALID_ID; with MANAGED_ACCTS, what ib_async waits for after START_API."""
    return encode_fields(O.NEXT_VALID_ID, 1, orderId)


def encode_managed_accounts(accounts: Sequence[str]) -> bytes:
    """MANAGED_ACCTS; ib_async requires at least one account before it reports connected."""
    return encode_fields(O.MANAGED_ACCTS, 1, ",".join(accounts))


def encode_error(
    reqId: int,
    errorCode: int,
    errorString: str,
    advancedOrderRejectJson: str = "",
    *,
    server_version: int,
) -> bytes:
    """ERR_MSG. ``reqId`` is the request id or order id, -1 for connection-level messages.
    ``advancedOrderRejectJson`` is on the wire from server version 166.

    ib_async treats codes 2100..2199 and {105, 110, 165, 321, 329, 399, 404, 434, 492, 10167} as
    warnings; any other code for an order id cancels the trade (``Cancelled``), and for a pending
    request ends it with a RequestError."""
    fields: list[FieldValue] = [O.ERR_MSG, 2, reqId, errorCode, errorString]
    if server_version >= 166:
        fields.append(advancedOrderRejectJson)
    return encode_fields(*fields)


def encode_current_time(time: int) -> bytes:
    """CURRENT_TIME, ``time`` in epoch seconds."""
    return encode_fields(O.CURRENT_TIME, 1, time)


def encode_update_account_value(key: str, val: str | Number, currency: str, accountName: str) -> bytes:
    """ACCT_VALUE (reqAccountUpdates stream), e.g. ("NetLiquidation", "100000.00", "USD", "DU1")."""
    return encode_fields(O.ACCT_VALUE, 2, key, val, currency, accountName)


def encode_update_portfolio(
    contract: ContractFields,
    *,
    position: Number,
    marketPrice: Number,
    marketValue: Number,
    averageCost: Number,
    unrealizedPNL: Number,
    realizedPNL: Number,
    accountName: str,
) -> bytes:
    """PORTFOLIO_VALUE (reqAccountUpdates stream); carries primaryExchange, not exchange."""
    return encode_fields(
        O.PORTFOLIO_VALUE,
        8,
        *contract_fields(contract, primary_exchange=True),
        position,
        marketPrice,
        marketValue,
        averageCost,
        unrealizedPNL,
        realizedPNL,
        accountName,
    )


def encode_update_account_time(timeStamp: str) -> bytes:
    """ACCT_UPDATE_TIME, e.g. ``"15:30"``."""
    return encode_fields(O.ACCT_UPDATE_TIME, 1, timeStamp)


def encode_account_download_end(accountName: str) -> bytes:
    """ACCT_DOWNLOAD_END: completes ib_async's reqAccountUpdates (awaited during connect)."""
    return encode_fields(O.ACCT_DOWNLOAD_END, 1, accountName)


def encode_position(account: str, contract: ContractFields, position: Number, avgCost: Number) -> bytes:
    return encode_fields(O.POSITION_DATA, 3, account, *contract_fields(contract), position, avgCost)


def encode_position_end() -> bytes:
    """POSITION_END: completes ib_async's reqPositions (awaited during connect)."""
    return encode_fields(O.POSITION_END, 1)


def encode_account_summary(reqId: int, account: str, tag: str, value: str | Number, currency: str) -> bytes:
    return encode_fields(O.ACCOUNT_SUMMARY, 1, reqId, account, tag, value, currency)


def encode_account_summary_end(reqId: int) -> bytes:
    return encode_fields(O.ACCOUNT_SUMMARY_END, 1, reqId)


def encode_position_multi(
    reqId: int,
    account: str,
    modelCode: str,
    contract: ContractFields,
    *,
    position: Number,
    avgCost: Number,
) -> bytes:
    return encode_fields(
        O.POSITION_MULTI,
        1,
        reqId,
        account,
        *contract_fields(contract),
        position,
        avgCost,
        modelCode,
    )


def encode_position_multi_end(reqId: int) -> bytes:
    return encode_fields(O.POSITION_MULTI_END, 1, reqId)


def encode_account_update_multi(
    reqId: int, account: str, modelCode: str, *, key: str, value: str | Number, currency: str
) -> bytes:
    return encode_fields(O.ACCOUNT_UPDATE_MULTI, 1, reqId, account, modelCode, key, value, currency)


def encode_account_update_multi_end(reqId: int) -> bytes:
    """Completes ib_async's reqAccountUpdatesMulti (awaited during connect, one per account)."""
    return encode_fields(O.ACCOUNT_UPDATE_MULTI_END, 1, reqId)


def _pnl_value(value: Number | None) -> FieldValue:
    return UNSET_DOUBLE if value is None else value


def encode_pnl(
    reqId: int,
    dailyPnL: Number | None,
    unrealizedPnL: Number | None,
    realizedPnL: Number | None,
) -> bytes:
    """PNL; ``None`` is sent as UNSET_DOUBLE (TWS's "not available"), which ib_async passes on."""
    return encode_fields(
        O.PNL,
        reqId,
        _pnl_value(dailyPnL),
        _pnl_value(unrealizedPnL),
        _pnl_value(realizedPnL),
        make_empty=False,
    )


def encode_pnl_single(
    reqId: int,
    *,
    pos: int | Decimal,
    dailyPnL: Number | None,
    unrealizedPnL: Number | None,
    realizedPnL: Number | None,
    value: Number | None,
) -> bytes:
    """PNL_SINGLE. ib_async parses ``pos`` with ``int()``, so it must be integral."""
    if isinstance(pos, Decimal):
        if pos != pos.to_integral_value():
            raise ValueError(f"ib_async reads pnlSingle position as int; got {pos}")
        pos = int(pos)
    return encode_fields(
        O.PNL_SINGLE,
        reqId,
        pos,
        _pnl_value(dailyPnL),
        _pnl_value(unrealizedPnL),
        _pnl_value(realizedPnL),
        _pnl_value(value),
        make_empty=False,
    )


def encode_family_codes(codes: Sequence[tuple[str, str]]) -> bytes:
    """FAMILY_CODES: (accountID, familyCodeStr) pairs."""
    return encode_fields(O.FAMILY_CODES, len(codes), *(v for pair in codes for v in pair))


def encode_soft_dollar_tiers(reqId: int, tiers: Sequence[SoftDollarTierFields]) -> bytes:
    flat = [v for t in tiers for v in (t.name, t.val, t.displayName)]
    return encode_fields(O.SOFT_DOLLAR_TIERS, reqId, len(tiers), *flat)


def encode_news_providers(providers: Sequence[tuple[str, str]]) -> bytes:
    """NEWS_PROVIDERS: (code, name) pairs."""
    return encode_fields(O.NEWS_PROVIDERS, len(providers), *(v for p in providers for v in p))


def encode_user_info(reqId: int, whiteBrandingId: str) -> bytes:
    return encode_fields(O.USER_INFO, reqId, whiteBrandingId)
