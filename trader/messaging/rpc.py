"""Bourse RPC: request/reply over ZeroMQ ROUTER (server) / DEALER (client), msgpack frames.

The one import path for users. This module holds the method registry and the param checking
(pure, unit-tested); the rest lives in :mod:`~trader.messaging.rpc_protocol` (error codes,
exceptions, frames, dedup cache), :mod:`~trader.messaging.rpc_server` and
:mod:`~trader.messaging.rpc_client`. The wire contract is in docs/wire.md ("RPC").

Server::

    registry = MethodRegistry()

    @registry.method("add")
    async def add(a: int, b: int) -> int:
        return a + b

    @registry.method("submit_order", shield=True)  # runs to completion even past its deadline
    async def submit_order(symbol: str, qty: float, limit: float | None = None) -> dict[str, Any]:
        if qty > MAX_QTY:
            raise RpcError("risk_refused", f"{qty} > {MAX_QTY}")  # goes back as is
        ...

    server = RpcServer("tcp://127.0.0.1:5555", registry)
    await server.serve_forever()

Client::

    async with AsyncRpcClient("tcp://127.0.0.1:5555") as rpc:
        assert await rpc.call("add", a=1, b=2) == 3
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from trader.messaging.rpc_client import AsyncRpcClient, RpcClient
from trader.messaging.rpc_protocol import (
    BAD_PARAMS,
    BUILTIN_METHODS,
    DEADLINE_EXCEEDED,
    DUPLICATE_ID,
    ERROR_CODES,
    INTERNAL,
    MALFORMED,
    MAX_METHOD_LENGTH,
    OVERLOADED,
    UNKNOWN_METHOD,
    DedupCache,
    RpcClientError,
    RpcDeadlineExceeded,
    RpcError,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    short_repr,
)
from trader.messaging.rpc_server import RpcServer

__all__ = [
    "BAD_PARAMS",
    "DEADLINE_EXCEEDED",
    "DUPLICATE_ID",
    "ERROR_CODES",
    "INTERNAL",
    "MALFORMED",
    "OVERLOADED",
    "UNKNOWN_METHOD",
    "AsyncRpcClient",
    "DedupCache",
    "MethodRegistry",
    "MethodSpec",
    "RpcClient",
    "RpcClientError",
    "RpcDeadlineExceeded",
    "RpcError",
    "RpcRemoteError",
    "RpcServer",
    "RpcTimeout",
    "RpcUnavailable",
    "compile_annotation",
]


# --------------------------------------------------------------------------- param checking

_INVALID: Final = object()
Converter = Callable[[Any], Any]
"""Returns the (possibly converted) value, or ``_INVALID``."""


def _identity(value: Any) -> Any:
    return value


def _exact(*types_: type) -> Converter:
    def check(value: Any) -> Any:
        return (
            value
            if isinstance(value, types_) and not (type(value) is bool and bool not in types_)
            else _INVALID
        )

    return check


def _as_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if isinstance(value, int) and type(value) is not bool:
        return float(value)
    return value if isinstance(value, float) else _INVALID


def _type_name(tp: Any) -> str:
    if tp is type(None) or tp is None:
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def compile_annotation(tp: Any) -> tuple[str, Converter]:
    """(description, converter) for a simple annotation; TypeError for the unsupported ones."""
    if tp is Any or tp is object or tp is inspect.Parameter.empty:
        return "any", _identity
    if tp is None or tp is type(None):
        return "None", lambda v: v if v is None else _INVALID
    if tp is float:
        return "float", _as_float
    if tp is bool:
        return "bool", lambda v: v if type(v) is bool else _INVALID
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        members = [compile_annotation(a) for a in args]

        def union(value: Any) -> Any:
            for _, conv in members:
                out = conv(value)
                if out is not _INVALID:
                    return out
            return _INVALID

        return " | ".join(d for d, _ in members), union
    if origin is Literal:
        allowed = args
        return (
            f"one of {list(allowed)!r}",
            lambda v: v if any(v == a and type(v) is type(a) for a in allowed) else _INVALID,
        )
    if origin in (list, typing.List) or tp is list:  # noqa: UP006
        return _container(tp, args[0] if args else Any)
    if origin in (tuple, typing.Tuple) or tp is tuple:  # noqa: UP006
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        desc, conv = _container(tp, item)
        return (
            desc,
            lambda v: (
                tuple(v) if isinstance(v, tuple) else (out if (out := conv(v)) is _INVALID else tuple(out))
            ),
        )
    if origin in (dict, typing.Dict) or tp is dict:  # noqa: UP006
        key_conv = compile_annotation(args[0])[1] if args else _identity
        val_conv = compile_annotation(args[1])[1] if args else _identity

        def mapping(value: Any) -> Any:
            if not isinstance(value, dict):
                return _INVALID
            if key_conv is _identity and val_conv is _identity:
                return value
            out = {}
            for k, v in value.items():
                ck, cv = key_conv(k), val_conv(v)
                if ck is _INVALID or cv is _INVALID:
                    return _INVALID
                out[ck] = cv
            return out

        return _type_name(tp), mapping
    if origin is not None or not isinstance(tp, type):
        raise TypeError(
            f"unsupported param annotation {tp!r}: use str, int, float, bool, list, dict, "
            "Optional/unions, Literal, Any or a class"
        )
    return tp.__name__, _exact(tp)


def _container(tp: Any, item: Any) -> tuple[str, Converter]:
    item_conv = compile_annotation(item)[1]

    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return _INVALID
        if item_conv is _identity:
            return value
        out = [item_conv(v) for v in value]
        return _INVALID if any(v is _INVALID for v in out) else out

    return _type_name(tp), check


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    required: bool
    expected: str
    convert: Converter
    default: Any = None


@dataclass(slots=True)
class MethodSpec:
    """A registered method: its handler, its checked params and whether it survives its deadline."""

    name: str
    handler: Callable[..., Any]
    params: dict[str, ParamSpec]
    var_keyword: bool
    shield: bool
    doc: str
    required: tuple[str, ...] = field(default=())
    trivial: bool = False
    """Every param is untyped/Any and there is ``**kwargs``: nothing to convert or reject."""
    untyped: bool = False
    """Every param is untyped/Any: only unknown names can be rejected."""

    @classmethod
    def from_handler(cls, name: str, handler: Callable[..., Any], *, shield: bool = False) -> MethodSpec:
        try:
            sig = inspect.signature(handler, eval_str=True)
        except (TypeError, ValueError, NameError) as exc:
            raise TypeError(f"cannot read the signature of handler {name!r}: {exc}") from exc
        params: dict[str, ParamSpec] = {}
        var_keyword = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_keyword = True
                continue
            if p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.POSITIONAL_ONLY:
                raise TypeError(f"handler {name!r}: positional-only param {p.name!r} cannot be sent by name")
            try:
                expected, convert = compile_annotation(p.annotation)
            except TypeError as exc:
                raise TypeError(f"handler {name!r}, param {p.name!r}: {exc}") from None
            required = p.default is p.empty
            params[p.name] = ParamSpec(p.name, required, expected, convert, None if required else p.default)
        spec = cls(name, handler, params, var_keyword, shield, inspect.getdoc(handler) or "")
        spec.required = tuple(n for n, p in params.items() if p.required)
        spec.untyped = all(p.convert is _identity for p in params.values())
        spec.trivial = var_keyword and spec.untyped
        return spec

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """The params to call the handler with; :class:`RpcError` ``bad_params`` naming the culprit."""
        for name in self.required:
            if name not in given:
                expected = self.params[name].expected
                raise RpcError(BAD_PARAMS, f"{self.name}: missing param {name!r} (expected {expected})")
        if self.trivial:
            return given
        if self.untyped and given.keys() <= self.params.keys():
            return given
        out = given
        for name, value in given.items():
            spec = self.params.get(name)
            if spec is None:
                if self.var_keyword:
                    continue
                accepted = ", ".join(self.params) or "no params"
                raise RpcError(BAD_PARAMS, f"{self.name}: unknown param {name!r} (accepted: {accepted})")
            converted = spec.convert(value)
            if converted is _INVALID:
                raise RpcError(
                    BAD_PARAMS,
                    f"{self.name}: param {name!r} expected {spec.expected}, "
                    f"got {type(value).__name__} {short_repr(value)}",
                )
            if converted is not value:
                if out is given:
                    out = dict(given)
                out[name] = converted
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": [
                {"name": p.name, "type": p.expected, "required": p.required} for p in self.params.values()
            ],
            "shield": self.shield,
            "doc": self.doc,
        }


class MethodRegistry:
    """The methods a server exposes; nothing is callable unless registered here.

    A handler is called with the request's params as keyword arguments, checked beforehand
    against its signature and simple annotations (``bad_params`` otherwise). An ``async def``
    handler runs as its own task, cancelled at the request's deadline unless ``shield=True``. A
    plain ``def`` handler runs inline in the server's loop, which is cheaper (no task, no trip
    through the loop) but blocks every other request while it runs: only for quick work that
    never waits, like reading in-memory state.
    """

    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec] = {}

    def register(self, name: str, handler: Callable[..., Any], *, shield: bool = False) -> MethodSpec:
        """Register ``handler`` (``async def`` or plain) as ``name``; ``shield`` = run past the deadline."""
        if not isinstance(name, str) or not 0 < len(name) <= MAX_METHOD_LENGTH:
            raise ValueError(f"method name must be a string of 1..{MAX_METHOD_LENGTH} characters")
        if name in BUILTIN_METHODS:
            raise ValueError(f"method name {name!r} is reserved for the built-in method")
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        spec = MethodSpec.from_handler(name, handler, shield=shield)
        self._methods[name] = spec
        return spec

    def method(
        self, name: str | None = None, *, shield: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@registry.method("submit_order", shield=True)``; name defaults to the function's."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name or fn.__name__, fn, shield=shield)
            return fn

        return decorate

    def get(self, name: str) -> MethodSpec | None:
        return self._methods.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    def __iter__(self) -> typing.Iterator[MethodSpec]:
        return iter(self._methods.values())

    def __len__(self) -> int:
        return len(self._methods)

    def names(self) -> list[str]:
        return sorted(self._methods)
