"""A cursor over one request's fields that reads them the way TWS does and names what is wrong."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from trader.exchange.protocol.framing import UNSET_DOUBLE, UNSET_INTEGER, ProtocolError
from trader.exchange.protocol.ids import IncomingMessageId

__all__ = ["ApiRequest", "FieldReader", "RequestDecodeError", "RequestDecoder", "simple_decoder"]


class ApiRequest:
    """Base of every decoded request; ``msgId`` is the message id it was decoded from."""

    __slots__ = ()
    msgId: ClassVar[IncomingMessageId]


class RequestDecodeError(ProtocolError):
    """A well-framed request whose fields do not decode (too few, too many, or a bad value).

    The frame boundary is intact, so the session may answer with a TWS error and carry on.
    """

    def __init__(self, message: str, *, msg_id: int, name: str, position: int) -> None:
        super().__init__(message)
        self.msg_id = msg_id
        self.name = name
        self.position = position


class FieldReader:
    """Reads ``fields[1:]`` in order (``fields[0]`` is the message id).

    ``*_opt`` readers return ``None`` for ``""`` and for TWS's UNSET numbers (TWS ``readIntMax`` /
    ``readDoubleMax``); the plain ones read ``""`` as 0 / False (TWS ``readInt`` / ``readDouble``).
    Floats accept ib_async's ``"Infinite"`` for +inf. Every error is a :class:`RequestDecodeError`
    naming the message, the 0-based field position and what was being read.
    """

    __slots__ = ("_fields", "_pos", "msg_id", "name")

    def __init__(self, fields: Sequence[str], msg_id: int, name: str) -> None:
        self._fields = fields
        self._pos = 1
        self.msg_id = msg_id
        self.name = name

    @property
    def position(self) -> int:
        return self._pos

    def error(self, what: str, position: int | None = None) -> RequestDecodeError:
        pos = self._pos if position is None else position
        return RequestDecodeError(
            f"{self.name} (msg id {self.msg_id}): {what}",
            msg_id=self.msg_id,
            name=self.name,
            position=pos,
        )

    def _next(self, what: str) -> str:
        if self._pos >= len(self._fields):
            raise self.error(
                f"ran out of fields at position {self._pos} reading {what!r} "
                f"(the message has {len(self._fields)} fields)"
            )
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def _bad(self, what: str, kind: str, raw: str) -> RequestDecodeError:
        pos = self._pos - 1
        return self.error(f"field {pos} ({what!r}) is not {kind}: {raw[:80]!r}", pos)

    def skip(self, what: str) -> None:
        self._next(what)

    def str_(self, what: str) -> str:
        return self._next(what)

    def int_(self, what: str) -> int:
        raw = self._next(what)
        if raw == "":
            return 0
        try:
            return int(raw)
        except ValueError:
            raise self._bad(what, "an integer", raw) from None

    def int_opt(self, what: str) -> int | None:
        raw = self._next(what)
        if raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise self._bad(what, "an integer", raw) from None
        return None if value == UNSET_INTEGER else value

    def bool_(self, what: str) -> bool:
        raw = self._next(what)
        if raw == "":
            return False
        try:
            return int(raw) != 0
        except ValueError:
            raise self._bad(what, "a boolean (0/1)", raw) from None

    def _float(self, what: str, raw: str) -> float:
        if raw == "Infinite":
            return math.inf
        try:
            return float(raw)
        except ValueError:
            raise self._bad(what, "a number", raw) from None

    def float_(self, what: str) -> float:
        raw = self._next(what)
        return 0.0 if raw == "" else self._float(what, raw)

    def float_opt(self, what: str) -> float | None:
        raw = self._next(what)
        if raw == "":
            return None
        value = self._float(what, raw)
        return None if value == UNSET_DOUBLE else value

    def decimal_(self, what: str) -> Decimal:
        raw = self._next(what)
        if raw == "":
            return Decimal(0)
        if raw == "Infinite":
            return Decimal("Infinity")
        try:
            return Decimal(raw)
        except InvalidOperation:
            raise self._bad(what, "a decimal number", raw) from None

    def count(self, what: str, limit: int = 10_000) -> int:
        """A repeat count (legs, params, conditions): 0..limit."""
        n = self.int_(what)
        if not 0 <= n <= limit:
            raise self._bad(what, f"a count in 0..{limit}", str(n))
        return n

    def finish(self) -> None:
        left = len(self._fields) - self._pos
        if left:
            raise self.error(
                f"{left} unexpected field(s) left over from position {self._pos}: "
                f"{list(self._fields[self._pos : self._pos + 5])!r}"
            )


#: Decodes the fields after the message id at a negotiated server version.
RequestDecoder = Callable[[FieldReader, int], ApiRequest]


def simple_decoder(
    cls: Callable[..., ApiRequest], *spec: tuple[str, str], version: bool = True
) -> RequestDecoder:
    """A decoder for a flat message: an optional version field, then ``(attribute, reader)`` pairs
    where reader is a :class:`FieldReader` method name (``"int_"``, ``"str_"``, ``"bool_"``...)."""

    def decode(r: FieldReader, _server_version: int) -> ApiRequest:
        if version:
            r.skip("version")
        values: dict[str, object] = {name: getattr(r, kind)(name) for name, kind in spec}
        return cls(**values)

    return decode
