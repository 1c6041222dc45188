"""TWS API socket framing: the connect handshake, length-prefixed frames, field formatting.

Wire format (both directions, after the handshake)::

    <4-byte big-endian payload length><field>\\0<field>\\0...<field>\\0

The payload is UTF-8; every field, the last one included, is terminated by a NUL.

Handshake (client -> server, once, before any frame)::

    b"API\\0" <4-byte length> b"v157..178"            (no trailing NUL)
    b"API\\0" <4-byte length> b"v157..178 +PACEAPI"   (optional connect options after a space)

Reply (server -> client, one ordinary frame with exactly two fields)::

    "178" \\0 "20261121 10:15:00 EST" \\0

ib_async (client.py ``_onSocketHasData``) takes the first frame with exactly two fields as the
handshake reply, reads the server version from the first one and ignores the connection time, then
sends START_API and waits for NEXT_VALID_ID and MANAGED_ACCTS before it reports "connected".

Pure: no sockets, no event loop.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

__all__ = [
    "API_PREFIX",
    "MAX_FRAME_SIZE",
    "MAX_HANDSHAKE_SIZE",
    "MAX_SUPPORTED_VERSION",
    "MIN_SUPPORTED_VERSION",
    "UNSET_DOUBLE",
    "UNSET_INTEGER",
    "ClientHello",
    "FieldValue",
    "FrameParser",
    "FramingError",
    "HandshakeParser",
    "ProtocolError",
    "encode_fields",
    "encode_frame",
    "encode_server_hello",
    "format_connection_time",
    "format_field",
    "negotiate_version",
    "parse_client_hello",
]

#: The server version this exchange implements; also the highest one it negotiates.
MAX_SUPPORTED_VERSION: Final = 178
#: The lowest client version this exchange accepts (ib_async 2.1.0 offers v157..178).
MIN_SUPPORTED_VERSION: Final = 157
#: Largest accepted frame payload (the length prefix excludes itself).
MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
#: Largest accepted handshake payload ("v157..178 +OPTIONS").
MAX_HANDSHAKE_SIZE: Final = 4096
API_PREFIX: Final = b"API\0"

#: TWS's "no value" markers (Java Integer.MAX_VALUE / Double.MAX_VALUE), as in ib_async.util.
UNSET_INTEGER: Final = 2**31 - 1
UNSET_DOUBLE: Final = sys.float_info.max

_LENGTH = struct.Struct(">I")

#: What :func:`format_field` accepts.
FieldValue = str | int | float | Decimal | bool | None


class ProtocolError(Exception):
    """The peer broke the TWS API protocol (bad frame, bad handshake, undecodable request)."""


class FramingError(ProtocolError):
    """The byte stream itself is broken; the connection cannot continue and must be closed."""


# ---------------------------------------------------------------------------------------------
# field formatting (server -> client)


def format_field(value: FieldValue, *, make_empty: bool = True) -> str:
    """Format one field the way TWS writes it and ib_async's decoder reads it.

    * ``None`` -> ``""``; ``bool`` -> ``"1"``/``"0"``; ``int`` (and IntEnum) -> decimal digits.
    * ``float`` -> shortest round-trip repr (``"150.25"``, ``"1e-05"``); infinities as Java writes
      them (``"Infinity"``/``"-Infinity"``; note the *client* writes ``"Infinite"``), NaN ``"NaN"``.
    * ``Decimal`` -> plain notation without exponent (``Decimal("1E+2")`` -> ``"100"``).
    * With ``make_empty`` (default) UNSET_INTEGER and UNSET_DOUBLE become ``""``, which ib_async
      parses back to the field's default (its UNSET for every field defaulting to UNSET). With
      ``make_empty=False`` they are written as numbers, as TWS does for e.g. PnL and commission
      reports where the client compares against UNSET_DOUBLE.
    * ``str`` is written as is; a NUL inside a string raises ``ValueError``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if make_empty and value == UNSET_INTEGER:
            return ""
        return str(int(value))
    if isinstance(value, float):
        if make_empty and value == UNSET_DOUBLE:
            return ""
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "Infinity" if value > 0 else "-Infinity"
        return format(value, "f")
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"field contains a NUL character: {value!r}")
        return value
    raise TypeError(f"cannot format {type(value).__name__} as a TWS field: {value!r}")


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its 4-byte big-endian length."""
    if len(payload) > MAX_FRAME_SIZE:
        raise ValueError(f"frame of {len(payload)} bytes exceeds the maximum of {MAX_FRAME_SIZE}")
    return _LENGTH.pack(len(payload)) + payload


def encode_fields(*fields: FieldValue, make_empty: bool = True) -> bytes:
    """One complete frame: the fields formatted by :func:`format_field`, each NUL-terminated."""
    text = "".join(format_field(f, make_empty=make_empty) + "\0" for f in fields)
    return encode_frame(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# incremental frame parser


class FrameParser:
    """Incremental parser of length-prefixed, NUL-separated frames.

    ``feed(data)`` returns the frames completed by ``data`` (zero or more, each a list of fields
    without the terminating NULs); partial frames stay buffered. Raises :class:`FramingError` on a
    zero or oversized length, a payload that is not UTF-8, or a payload not ending in NUL; after
    that the parser is unusable (every further ``feed`` raises) because the stream cannot be
    resynchronised.
    """

    __slots__ = ("_buffer", "_error", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[list[str]]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        buf = self._buffer
        frames: list[list[str]] = []
        offset = 0
        try:
            while len(buf) - offset >= 4:
                (length,) = _LENGTH.unpack_from(buf, offset)
                if length == 0:
                    raise FramingError("empty frame (length 0)")
                if length > self.max_frame_size:
                    raise FramingError(
                        f"frame length {length} exceeds the maximum of {self.max_frame_size} bytes"
                    )
                end = offset + 4 + length
                if len(buf) < end:
                    break
                frames.append(_split_payload(bytes(buf[offset + 4 : end])))
                offset = end
        except FramingError as exc:
            self._error = exc
            raise
        finally:
            del buf[:offset]
        return frames


def _split_payload(payload: bytes) -> list[str]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FramingError(f"frame payload is not valid UTF-8: {exc}") from None
    if not text.endswith("\0"):
        raise FramingError(f"frame payload does not end with a NUL terminator: {text[:80]!r}")
    return text[:-1].split("\0")


# ---------------------------------------------------------------------------------------------
# handshake


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The client's handshake: the version range it speaks and its connect options."""

    min_version: int
    max_version: int
    connect_options: str = ""


_HELLO_RE = re.compile(r"v(\d{1,6})(?:\.\.(\d{1,6}))?(?: (.*))?", re.DOTALL)


def parse_client_hello(payload: bytes) -> ClientHello:
    """Parse the handshake payload (after ``API\\0`` and the length), e.g. ``b"v157..178"``."""
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise FramingError(f"handshake is not ASCII: {payload[:80]!r}") from None
    match = _HELLO_RE.fullmatch(text.rstrip("\0"))
    if match is None:
        raise FramingError(f"malformed handshake version range: {text[:80]!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if low > high:
        raise FramingError(f"handshake version range is inverted: {text[:80]!r}")
    return ClientHello(low, high, (match.group(3) or "").strip())


def negotiate_version(
    hello: ClientHello,
    min_supported: int = MIN_SUPPORTED_VERSION,
    max_supported: int = MAX_SUPPORTED_VERSION,
) -> int:
    """The server version to announce: ``min(max_supported, client max)``.

    Raises :class:`ProtocolError` when the client's range does not overlap
    ``min_supported..max_supported`` (the session should then close the connection).
    """
    if hello.max_version < min_supported or hello.min_version > max_supported:
        raise ProtocolError(
            f"client versions v{hello.min_version}..{hello.max_version} do not overlap the "
            f"supported v{min_supported}..{max_supported}"
        )
    return min(max_supported, hello.max_version)


class HandshakeParser:
    """Incremental parser of the client handshake ``API\\0`` + one length-prefixed payload.

    ``feed(data)`` returns the :class:`ClientHello` once complete (``None`` until then); bytes that
    arrived after it are in :attr:`remainder`, to be fed to a :class:`FrameParser`. Raises
    :class:`FramingError` as soon as the bytes cannot be a handshake.
    """

    __slots__ = ("_buffer", "hello", "max_size", "remainder")

    def __init__(self, max_size: int = MAX_HANDSHAKE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self.hello: ClientHello | None = None
        self.remainder = b""

    def feed(self, data: bytes) -> ClientHello | None:
        if self.hello is not None:
            raise FramingError("handshake already complete; feed further bytes to a FrameParser")
        self._buffer += data
        buf = self._buffer
        prefix_len = len(API_PREFIX)
        if bytes(buf[:prefix_len]) != API_PREFIX[: min(len(buf), prefix_len)]:
            raise FramingError(f"connection does not start with b'API\\0': {bytes(buf[:16])!r}")
        if len(buf) < prefix_len + 4:
            return None
        (length,) = _LENGTH.unpack_from(buf, prefix_len)
        if length == 0 or length > self.max_size:
            raise FramingError(f"handshake length {length} out of range 1..{self.max_size}")
        end = prefix_len + 4 + length
        if len(buf) < end:
            return None
        self.hello = parse_client_hello(bytes(buf[prefix_len + 4 : end]))
        self.remainder = bytes(buf[end:])
        buf.clear()
        return self.hello


def format_connection_time(when: dt.datetime) -> str:
    """TWS's connection-time format, e.g. ``"20261121 10:15:00 EST"`` (``when`` must be aware)."""
    if when.tzinfo is None:
        raise ValueError("connection time must be timezone-aware")
    return when.strftime("%Y%m%d %H:%M:%S ") + (when.tzname() or "UTC")


def encode_server_hello(server_version: int, connection_time: dt.datetime | str) -> bytes:
    """The handshake reply frame: exactly two fields, the version and the connection time."""
    when = connection_time if isinstance(connection_time, str) else format_connection_time(connection_time)
    return encode_fields(server_version, when)
