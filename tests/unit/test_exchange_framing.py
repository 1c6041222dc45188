"""Exchange protocol framing: handshake, frames, field formatting, message ids. No sockets.

The handshake tests drive the real ib_async 2.1.0 ``Client`` (its connection object replaced by a
byte recorder) against this module's server side, so the bytes both ways are the real ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import math
import re
import struct
import sys
from decimal import Decimal
from enum import IntEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async import IB
from ib_async.client import Client
from ib_async.decoder import Decoder

from trader.exchange.protocol import (
    MAX_FRAME_SIZE,
    UNSET_DOUBLE,
    UNSET_INTEGER,
    ClientHello,
    FrameParser,
    FramingError,
    HandshakeParser,
    IncomingMessageId,
    OutgoingMessageId,
    ProtocolError,
    StartApi,
    decode_request,
    encode_fields,
    encode_frame,
    encode_managed_accounts,
    encode_next_valid_id,
    encode_server_hello,
    format_connection_time,
    format_field,
    incoming_name,
    negotiate_version,
    outgoing_name,
    parse_client_hello,
)
from trader.exchange.protocol.requests import DECODERS

FIELD_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)


def frame(*fields: str) -> bytes:
    payload = "".join(f + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


# --- format_field / encode_fields ------------------------------------------------------------------


class _Color(IntEnum):
    RED = 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "1"),
        (False, "0"),
        (0, "0"),
        (-17, "-17"),
        (_Color.RED, "3"),
        (UNSET_INTEGER, ""),
        (150.25, "150.25"),
        (1e-05, "1e-05"),
        (100.0, "100.0"),
        (UNSET_DOUBLE, ""),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
        (Decimal("100"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.00012"), "0.00012"),
        (Decimal("Infinity"), "Infinity"),
        ("AAPL", "AAPL"),
        ("", ""),
        ("Société", "Société"),
    ],
)
def test_format_field_when_value_given_then_tws_text(value: object, expected: str) -> None:
    assert format_field(value) == expected  # type: ignore[arg-type]


def test_format_field_when_make_empty_false_then_unset_written_as_number() -> None:
    assert float(format_field(UNSET_DOUBLE, make_empty=False)) == UNSET_DOUBLE
    assert format_field(UNSET_INTEGER, make_empty=False) == str(2**31 - 1)


def test_format_field_when_string_contains_nul_then_value_error() -> None:
    with pytest.raises(ValueError, match="NUL"):
        format_field("a\0b")


def test_format_field_when_unsupported_type_then_type_error() -> None:
    with pytest.raises(TypeError):
        format_field([1, 2])  # type: ignore[arg-type]


def test_encode_fields_when_encoded_then_length_prefix_and_nul_terminated_fields() -> None:
    data = encode_fields(9, 1, 42, "é", None, True)
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert data[4:] == "9\x001\x0042\x00é\x00\x001\x00".encode()


def test_encode_frame_when_payload_too_large_then_value_error() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(b"x" * (MAX_FRAME_SIZE + 1))


# --- FrameParser -----------------------------------------------------------------------------------

MESSAGES = [
    ["9", "1", "42"],
    ["4", "2", "-1", "2104", "Market data farm OK", ""],
    [""],
    ["15", "1", "DU1,DU2"],
]
STREAM = b"".join(encode_fields(*m) for m in MESSAGES)


def test_frame_parser_when_frames_coalesced_then_all_returned_in_order() -> None:
    assert FrameParser().feed(STREAM) == MESSAGES


@pytest.mark.parametrize("split", range(len(STREAM) + 1))
def test_frame_parser_when_split_at_any_byte_then_same_frames(split: int) -> None:
    parser = FrameParser()
    frames = parser.feed(STREAM[:split]) + parser.feed(STREAM[split:])
    assert frames == MESSAGES
    assert parser.buffered == 0


def test_frame_parser_when_fed_byte_by_byte_then_frames_complete_on_their_last_byte() -> None:
    parser = FrameParser()
    got: list[list[str]] = []
    ends = []
    for i in range(len(STREAM)):
        new = parser.feed(STREAM[i : i + 1])
        if new:
            ends.append(i + 1)
        got += new
    assert got == MESSAGES
    lengths = [len(encode_fields(*m)) for m in MESSAGES]
    assert ends == [sum(lengths[: k + 1]) for k in range(len(lengths))]


def test_frame_parser_when_utf8_char_split_across_chunks_then_decoded() -> None:
    data = encode_fields("Société Générale")
    parser = FrameParser()
    cut = data.index("é".encode()) + 1  # inside the two-byte sequence
    assert parser.feed(data[:cut]) == []
    assert parser.feed(data[cut:]) == [["Société Générale"]]


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(st.lists(FIELD_TEXT, min_size=1, max_size=6), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_frame_parser_when_random_chunking_then_roundtrip(messages: list[list[str]], cuts: list[int]) -> None:
    stream = b"".join(encode_fields(*m) for m in messages)
    points = sorted({min(c, len(stream)) for c in cuts})
    parser = FrameParser()
    got: list[list[str]] = []
    prev = 0
    for p in [*points, len(stream)]:
        got += parser.feed(stream[prev:p])
        prev = p
    assert got == messages


def test_frame_parser_when_length_exceeds_max_then_framing_error_before_payload_arrives() -> None:
    parser = FrameParser(max_frame_size=1024)
    with pytest.raises(FramingError, match="exceeds the maximum"):
        parser.feed(struct.pack(">I", 1025))


def test_frame_parser_when_default_max_then_16_mib() -> None:
    parser = FrameParser()
    assert parser.feed(struct.pack(">I", MAX_FRAME_SIZE)) == []
    with pytest.raises(FramingError):
        FrameParser().feed(struct.pack(">I", MAX_FRAME_SIZE + 1))


def test_frame_parser_when_zero_length_then_framing_error() -> None:
    with pytest.raises(FramingError, match="empty frame"):
        FrameParser().feed(struct.pack(">I", 0))


def test_frame_parser_when_payload_not_utf8_then_framing_error() -> None:
    with pytest.raises(FramingError, match="UTF-8"):
        FrameParser().feed(struct.pack(">I", 3) + b"\xff\xfe\x00")


def test_frame_parser_when_trailing_nul_missing_then_framing_error() -> None:
    with pytest.raises(FramingError, match="NUL terminator"):
        FrameParser().feed(struct.pack(">I", 3) + b"9\x001")


def test_frame_parser_when_garbage_text_then_framing_error() -> None:
    with pytest.raises(ProtocolError):
        FrameParser().feed(b"GET / HTTP/1.1\r\n\r\n")


def test_frame_parser_when_failed_once_then_every_later_feed_raises() -> None:
    parser = FrameParser()
    good = encode_fields("9", "1", "1")
    with pytest.raises(FramingError):
        parser.feed(good + struct.pack(">I", 0))
    with pytest.raises(FramingError):
        parser.feed(good)


def test_frame_parser_when_good_frame_precedes_bad_one_then_error_raised() -> None:
    # the good frame is lost with the stream: the session closes the connection anyway
    with pytest.raises(FramingError):
        FrameParser().feed(encode_fields("1") + struct.pack(">I", 2) + b"ab")


# --- handshake -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"v157..178", ClientHello(157, 178, "")),
        (b"v157..178 +PACEAPI", ClientHello(157, 178, "+PACEAPI")),
        (b"v100..187", ClientHello(100, 187, "")),
        (b"v176", ClientHello(176, 176, "")),
        (b"v157..178\0", ClientHello(157, 178, "")),
    ],
)
def test_parse_client_hello_when_valid_then_range_and_options(payload: bytes, expected: ClientHello) -> None:
    assert parse_client_hello(payload) == expected


@pytest.mark.parametrize(
    "payload", [b"", b"157..178", b"v..178", b"vabc", b"v178..157", b"v1\xff", b"v157..178x"]
)
def test_parse_client_hello_when_malformed_then_framing_error(payload: bytes) -> None:
    with pytest.raises(FramingError):
        parse_client_hello(payload)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(157, 178, 178), (100, 200, 178), (150, 165, 165), (157, 157, 157), (178, 190, 178)],
)
def test_negotiate_version_when_ranges_overlap_then_min_of_maxima(low: int, high: int, expected: int) -> None:
    assert negotiate_version(ClientHello(low, high)) == expected


@pytest.mark.parametrize(("low", "high"), [(100, 156), (179, 190)])
def test_negotiate_version_when_no_overlap_then_protocol_error(low: int, high: int) -> None:
    with pytest.raises(ProtocolError, match="do not overlap"):
        negotiate_version(ClientHello(low, high))


HELLO = b"API\0" + struct.pack(">I", 18) + b"v157..178 +PACEAPI"


@pytest.mark.parametrize("split", range(len(HELLO) + 1))
def test_handshake_parser_when_split_at_any_byte_then_hello_once_complete(split: int) -> None:
    hs = HandshakeParser()
    first = hs.feed(HELLO[:split])
    assert first is None or split == len(HELLO)
    hello = first if first is not None else hs.feed(HELLO[split:])
    assert hello == ClientHello(157, 178, "+PACEAPI")
    assert hs.remainder == b""


def test_handshake_parser_when_frames_follow_in_same_chunk_then_kept_as_remainder() -> None:
    hs = HandshakeParser()
    start_api = encode_fields(71, 2, 0, "")
    assert hs.feed(HELLO + start_api) is not None
    assert FrameParser().feed(hs.remainder) == [["71", "2", "0", ""]]


@pytest.mark.parametrize("data", [b"GET /", b"APX\0", b"\0\0\0\x09v157..178", b"A\0"])
def test_handshake_parser_when_prefix_wrong_then_framing_error_immediately(data: bytes) -> None:
    with pytest.raises(FramingError, match="API"):
        HandshakeParser().feed(data)


def test_handshake_parser_when_length_out_of_range_then_framing_error() -> None:
    with pytest.raises(FramingError, match="length"):
        HandshakeParser().feed(b"API\0" + struct.pack(">I", 1 << 20))
    with pytest.raises(FramingError, match="length"):
        HandshakeParser().feed(b"API\0" + struct.pack(">I", 0))


def test_handshake_parser_when_fed_after_completion_then_framing_error() -> None:
    hs = HandshakeParser()
    hs.feed(HELLO)
    with pytest.raises(FramingError, match="already complete"):
        hs.feed(b"x")


def test_encode_server_hello_when_encoded_then_exactly_version_and_time_fields() -> None:
    when = dt.datetime(2026, 11, 21, 10, 15, tzinfo=ZoneInfo("America/New_York"))
    assert FrameParser().feed(encode_server_hello(178, when)) == [["178", "20261121 10:15:00 EST"]]
    assert FrameParser().feed(encode_server_hello(165, "x")) == [["165", "x"]]


def test_format_connection_time_when_naive_then_value_error() -> None:
    assert format_connection_time(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "20260102 03:04:05 UTC"
    with pytest.raises(ValueError, match="aware"):
        format_connection_time(dt.datetime(2026, 1, 2))


async def _connect_real_client(max_client_version: int, chunked: bool) -> tuple[IB, int, list[object]]:
    """Run ib_async's real connect sequence against this module's server side, without sockets."""
    ib = IB()
    client: Any = ib.client
    client.MaxClientVersion = max_client_version
    sent: list[bytes] = []

    async def no_socket(_host: str, _port: int) -> None:
        return None

    client.conn.connectAsync = no_socket
    client.conn.sendMsg = sent.append
    task = asyncio.create_task(client.connectAsync("127.0.0.1", 4002, 7, 5))
    # ib_async subscribes to its apiStart event a loop iteration after sending the hello; a real
    # socket always leaves it that time, so leave it here too.
    await asyncio.sleep(0.05)
    hs = HandshakeParser()
    hello = hs.feed(b"".join(sent))
    sent.clear()
    assert hello is not None
    version = negotiate_version(hello)
    reply = encode_server_hello(version, dt.datetime.now(dt.UTC))
    chunks = [reply[i : i + 1] for i in range(len(reply))] if chunked else [reply]
    for chunk in chunks:
        client._onSocketHasData(chunk)
    requests: list[object] = [decode_request(f, version) for f in FrameParser().feed(b"".join(sent))]
    client._onSocketHasData(encode_next_valid_id(1) + encode_managed_accounts(["DU111", "DU222"]))
    await asyncio.wait_for(task, 5)
    return ib, version, requests


@pytest.mark.parametrize(("max_version", "chunked"), [(178, False), (178, True), (165, False), (157, True)])
def test_handshake_when_real_ib_async_client_connects_then_ready_at_negotiated_version(
    max_version: int, chunked: bool
) -> None:
    ib, version, requests = asyncio.run(_connect_real_client(max_version, chunked))
    try:
        assert version == max_version
        assert ib.client.isReady()
        assert ib.client.serverVersion() == max_version
        assert ib.client.getAccounts() == ["DU111", "DU222"]
        assert requests == [StartApi(clientId=7, optCapab="")]
    finally:
        cast(Any, ib.client).disconnect()


def test_handshake_when_client_offers_connect_options_then_they_are_parsed() -> None:
    client: Any = cast(Any, Client)(object())
    client.setConnectOptions("+PACEAPI")
    hello_bytes = b"API\0" + client._prefix(
        b"v%d..%d %s" % (client.MinClientVersion, client.MaxClientVersion, client.connectOptions)
    )
    assert HandshakeParser().feed(hello_bytes) == ClientHello(157, 178, "+PACEAPI")


# --- message ids -----------------------------------------------------------------------------------


def test_outgoing_ids_when_compared_with_ib_async_decoder_then_identical_set() -> None:
    handlers = Decoder(object(), 178).handlers  # type: ignore[arg-type]
    assert set(handlers) == {int(m) for m in OutgoingMessageId}


def _client_message_ids() -> dict[str, int]:
    """Every Client method that sends, with the message id it sends (the first send() argument)."""
    out: dict[str, int] = {}
    for name, fn in inspect.getmembers(Client, inspect.isfunction):
        src = inspect.getsource(fn)
        m = re.search(r"self\.send\(\s*(\d+)|fields = \[\s*(\d+)", src)
        if m and name not in {"send", "sendMsg"}:
            out[name] = int(m.group(1) or m.group(2))
    return out


def test_incoming_ids_when_compared_with_ib_async_client_then_every_sent_id_named_and_decoded() -> None:
    sent = _client_message_ids()
    assert len(sent) >= 80
    for method, msg_id in sent.items():
        assert msg_id in {int(m) for m in IncomingMessageId}, method
        assert msg_id in DECODERS, method


@pytest.mark.parametrize(
    ("msg_id", "incoming", "outgoing"),
    [
        (3, "PLACE_ORDER", "ORDER_STATUS"),
        (71, "START_API", "POSITION_MULTI"),
        (9999, "UNKNOWN_9999", "UNKNOWN_9999"),
    ],
)
def test_names_when_looked_up_then_tws_names(msg_id: int, incoming: str, outgoing: str) -> None:
    assert incoming_name(msg_id) == incoming
    assert outgoing_name(msg_id) == outgoing


def test_unset_constants_when_compared_with_ib_async_then_equal() -> None:
    from ib_async.util import UNSET_DOUBLE as IB_UNSET_DOUBLE
    from ib_async.util import UNSET_INTEGER as IB_UNSET_INTEGER

    assert UNSET_DOUBLE == IB_UNSET_DOUBLE == sys.float_info.max
    assert UNSET_INTEGER == IB_UNSET_INTEGER
