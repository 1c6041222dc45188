"""The pure part of RPC: frames, request parsing, replies, params, registry, dedup cache. No sockets."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Literal

import msgpack
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.messaging.codec import CodecError, Packer, decode, encode
from trader.messaging.rpc import MethodRegistry, MethodSpec, compile_annotation
from trader.messaging.rpc_protocol import (
    BAD_PARAMS,
    DEADLINE_EXCEEDED,
    DUPLICATE_ID,
    ERROR_CODES,
    INTERNAL,
    MALFORMED,
    MAX_ID_LENGTH,
    MAX_MESSAGE_LENGTH,
    OVERLOADED,
    UNKNOWN_METHOD,
    DedupCache,
    MalformedReply,
    MalformedRequest,
    Request,
    RpcClientError,
    RpcDeadlineExceeded,
    RpcError,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    encode_error,
    encode_ok,
    encode_request,
    parse_reply,
    parse_request,
    split_envelope,
)


def request_bytes(**overrides: Any) -> bytes:
    msg: dict[str, Any] = {"id": "r1", "method": "add", "params": {"a": 1}, "deadline_ms": 1_700_000_000_000}
    for key, value in overrides.items():
        if value is _DROP:
            msg.pop(key)
        else:
            msg[key] = value
    return msgpack.packb(msg)  # type: ignore[no-any-return]


_DROP = object()


# --------------------------------------------------------------------------- error codes and exceptions


def test_error_codes_when_listed_then_distinct_strings_in_one_set() -> None:
    codes = [MALFORMED, UNKNOWN_METHOD, BAD_PARAMS, INTERNAL, DEADLINE_EXCEEDED, DUPLICATE_ID, OVERLOADED]
    assert set(codes) == ERROR_CODES
    assert len(set(codes)) == len(codes)
    assert all(isinstance(c, str) and c == c.lower() for c in codes)


def test_exceptions_when_deadline_exceeded_remotely_then_both_remote_error_and_timeout() -> None:
    exc = RpcDeadlineExceeded(DEADLINE_EXCEEDED, "too late", method="slow", endpoint="tcp://x:1")
    assert isinstance(exc, RpcRemoteError) and isinstance(exc, RpcTimeout) and isinstance(exc, RpcClientError)
    assert exc.code == DEADLINE_EXCEEDED and exc.message == "too late"
    assert "slow on tcp://x:1" in str(exc)
    assert issubclass(RpcUnavailable, RpcClientError)
    err = RpcError("risk_refused", "max position")
    assert (err.code, err.message) == ("risk_refused", "max position")


# --------------------------------------------------------------------------- envelopes


@pytest.mark.parametrize(
    ("frames", "envelope", "body"),
    [
        ([b"id", b"payload"], [b"id"], [b"payload"]),  # DEALER
        ([b"id", b"", b"payload"], [b"id", b""], [b"payload"]),  # REQ
        ([b"id", b"hop", b"", b"payload"], [b"id", b"hop", b""], [b"payload"]),  # through a proxy
        ([b"id", b""], [b"id", b""], []),  # REQ with nothing
        ([b"id"], [b"id"], []),
        ([b"id", b"a", b"b"], [b"id"], [b"a", b"b"]),  # DEALER multipart: not one body frame
        ([b"id", b"", b"", b"x"], [b"id", b""], [b"", b"x"]),
    ],
)
def test_split_envelope_when_frames_then_envelope_up_to_first_delimiter(
    frames: list[bytes], envelope: list[bytes], body: list[bytes]
) -> None:
    assert split_envelope(frames) == (envelope, body)


# --------------------------------------------------------------------------- requests


def test_parse_request_when_well_formed_then_fields_returned() -> None:
    req = parse_request(request_bytes(extra="ignored"))
    assert req == Request("r1", "add", {"a": 1}, 1_700_000_000_000)


def test_parse_request_when_built_by_encode_request_then_round_trips() -> None:
    payload = encode_request("x", "m", {"when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}, 5)
    assert parse_request(payload) == Request("x", "m", {"when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}, 5)


@pytest.mark.parametrize(
    ("payload", "fragment", "readable_id"),
    [
        (b"\xc1", "not msgpack", None),
        (b"", "not msgpack", None),
        (msgpack.packb([1, 2]), "must be a map, got list", None),
        (msgpack.packb(7), "must be a map, got int", None),
        (request_bytes(id=_DROP), "id must be a string, got NoneType", None),
        (request_bytes(id=5), "id must be a string, got int", None),
        (request_bytes(id=""), "id must be 1..", None),
        (request_bytes(id="x" * (MAX_ID_LENGTH + 1)), f"got {MAX_ID_LENGTH + 1}", None),
        (request_bytes(method=_DROP), "method must be a string", "r1"),
        (request_bytes(method=""), "method must be a string", "r1"),
        (request_bytes(method=["add"]), "method must be a string", "r1"),
        (request_bytes(params=_DROP), "params must be a map, got NoneType", "r1"),
        (request_bytes(params=[1]), "params must be a map, got list", "r1"),
        (request_bytes(params={1: 2}), "param names must be strings, got 1", "r1"),
        (request_bytes(deadline_ms=_DROP), "deadline_ms must be an int", "r1"),
        (request_bytes(deadline_ms="soon"), "deadline_ms must be an int (Unix epoch ms), got str", "r1"),
        (request_bytes(deadline_ms=1.5), "got float", "r1"),
        (request_bytes(deadline_ms=True), "got bool", "r1"),
        (msgpack.packb(msgpack.ExtType(99, b"x")), "not msgpack", None),
    ],
)
def test_parse_request_when_malformed_then_says_what_and_keeps_readable_id(
    payload: bytes, fragment: str, readable_id: str | None
) -> None:
    with pytest.raises(MalformedRequest) as info:
        parse_request(payload)
    assert fragment in info.value.message
    assert info.value.request_id == readable_id


def test_parse_request_when_nested_too_deeply_then_malformed() -> None:
    with pytest.raises(MalformedRequest, match="not msgpack"):
        parse_request(b"\x91" * 5000 + b"\xc0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_request_when_random_bytes_then_request_or_malformed_only(payload: bytes) -> None:
    try:
        req = parse_request(payload)
    except MalformedRequest as exc:
        assert exc.request_id is None or isinstance(exc.request_id, str)
    else:
        assert isinstance(req.id, str) and isinstance(req.params, dict)


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
_junk = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "method", "params", "deadline_ms", "x"]), _junk))
def test_parse_request_when_map_of_junk_then_request_or_malformed_only(msg: dict[str, Any]) -> None:
    try:
        req = parse_request(msgpack.packb(msg))
    except MalformedRequest:
        return
    assert req == Request(msg["id"], msg["method"], msg["params"], msg["deadline_ms"])


# --------------------------------------------------------------------------- replies


def test_reply_when_ok_then_round_trips() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    reply = parse_reply(encode_ok("r1", {"frame": frame}))
    assert reply.id == "r1" and reply.ok
    pd.testing.assert_frame_equal(reply.result["frame"], frame)
    assert decode(encode_ok("r2", 3)) == {"id": "r2", "ok": True, "result": 3}


def test_reply_when_error_then_envelope_with_code_and_clipped_message() -> None:
    payload = encode_error(None, MALFORMED, "m" * (MAX_MESSAGE_LENGTH * 2))
    msg = decode(payload)
    assert msg["id"] is None and msg["ok"] is False and msg["error"]["code"] == MALFORMED
    assert len(msg["error"]["message"]) == MAX_MESSAGE_LENGTH
    reply = parse_reply(encode_error("r1", "risk_refused", "too big"))
    assert (reply.id, reply.ok, reply.code, reply.message) == ("r1", False, "risk_refused", "too big")


def test_encode_ok_when_result_unencodable_then_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_ok("r1", object())


@pytest.mark.parametrize(
    ("msg", "fragment"),
    [
        ([1], "must be a map"),
        ({"id": 3, "ok": True}, "id must be a string"),
        ({"id": "r", "ok": "yes"}, "ok must be a bool"),
        ({"id": "r", "ok": False}, "error map"),
        ({"id": "r", "ok": False, "error": {"message": "x"}}, "error map"),
    ],
)
def test_parse_reply_when_malformed_then_malformed_reply(msg: Any, fragment: str) -> None:
    with pytest.raises(MalformedReply, match=fragment):
        parse_reply(msgpack.packb(msg))
    with pytest.raises(MalformedReply, match="not msgpack"):
        parse_reply(b"\xc1")


@pytest.mark.parametrize(
    "value",
    [
        {"id": "a", "params": {"n": 1, "f": 1.5, "s": "x", "b": b"\x00", "l": [1, None, True]}},
        {"when": dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.UTC), "day": dt.date(2024, 3, 1)},
        {"ts": pd.Timestamp("2024-03-01 09:30", tz="America/New_York"), "px": decimal.Decimal("1.25")},
        {"arr": np.arange(5, dtype="i4"), "scalar": np.float32(1.5)},
        {"frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})},
    ],
)
def test_packer_when_encoding_then_same_bytes_as_codec_encode(value: Any) -> None:
    pack = Packer()
    assert pack(value) == encode(value)
    assert pack(value) == encode(value)  # reused packer keeps no state between frames


def test_packer_when_unencodable_then_codec_error_and_still_usable() -> None:
    pack = Packer()
    with pytest.raises(CodecError):
        pack({"x": object()})
    with pytest.raises(CodecError):
        pack({"x": 2**70})
    assert pack({"x": 1}) == encode({"x": 1})


# --------------------------------------------------------------------------- registry and params


def make_spec(fn: Any, name: str = "m") -> MethodSpec:
    return MethodSpec.from_handler(name, fn)


def bad_params(spec: MethodSpec, params: dict[str, Any]) -> str:
    with pytest.raises(RpcError) as info:
        spec.bind(params)
    assert info.value.code == BAD_PARAMS
    return info.value.message


def test_registry_when_registered_by_decorator_or_call_then_listed() -> None:
    registry = MethodRegistry()

    @registry.method("add")
    async def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    @registry.method(shield=True)
    def submit_order(symbol: str) -> str:
        return symbol

    registry.register("echo", lambda **kw: kw)
    assert registry.names() == ["add", "echo", "submit_order"]
    assert "add" in registry and len(registry) == 3
    spec = registry.get("submit_order")
    assert spec is not None and spec.shield
    assert registry.get("missing") is None
    assert add.__name__ == "add"  # the decorator returns the function itself
    described = registry.get("add").describe()  # type: ignore[union-attr]
    assert described == {
        "name": "add",
        "params": [
            {"name": "a", "type": "int", "required": True},
            {"name": "b", "type": "int", "required": True},
        ],
        "shield": False,
        "doc": "Adds.",
    }


def test_registry_when_name_duplicate_reserved_or_empty_then_value_error() -> None:
    registry = MethodRegistry()
    registry.register("x", lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x", lambda: None)
    for reserved in ("ping", "methods"):
        with pytest.raises(ValueError, match="reserved"):
            registry.register(reserved, lambda: None)
    with pytest.raises(ValueError, match="method name"):
        registry.register("", lambda: None)


def test_registry_when_handler_has_positional_only_or_odd_annotation_then_type_error() -> None:
    def positional(a: int, /) -> None: ...

    def odd(a: Any) -> None: ...

    odd.__annotations__["a"] = 5  # neither a type nor a typing construct
    with pytest.raises(TypeError, match="positional-only param 'a'"):
        make_spec(positional)
    with pytest.raises(TypeError, match="unsupported param annotation"):
        make_spec(odd)


def test_bind_when_param_missing_then_bad_params_naming_it_and_its_type() -> None:
    def fn(a: int, b: float = 1.0) -> None: ...

    assert bad_params(make_spec(fn, "add"), {}) == "add: missing param 'a' (expected int)"


def test_bind_when_param_unknown_then_bad_params_listing_accepted() -> None:
    def fn(a: int, b: float = 1.0) -> None: ...

    assert bad_params(make_spec(fn, "add"), {"a": 1, "c": 2}) == ("add: unknown param 'c' (accepted: a, b)")

    def untyped(a, b=None):  # type: ignore[no-untyped-def]
        ...

    assert "unknown param 'z'" in bad_params(make_spec(untyped), {"a": 1, "z": 2})


def test_bind_when_param_wrong_type_then_bad_params_naming_expected_and_got() -> None:
    def fn(a: int) -> None: ...

    assert bad_params(make_spec(fn, "add"), {"a": "x"}) == "add: param 'a' expected int, got str 'x'"
    assert "got bool True" in bad_params(make_spec(fn), {"a": True})
    assert "got float 1.0" in bad_params(make_spec(fn), {"a": 1.0})


def test_bind_when_float_param_gets_int_then_converted() -> None:
    def fn(x: float, y: float | None = None) -> None: ...

    bound = make_spec(fn).bind({"x": 2, "y": 3})
    assert bound == {"x": 2.0, "y": 3.0} and type(bound["x"]) is float
    given = {"x": 2.5}
    assert make_spec(fn).bind(given) is given  # nothing converted: no copy


@pytest.mark.parametrize(
    ("annotation", "good", "bad"),
    [
        (str, ["x", ""], [1, b"x", None]),
        (int, [0, -5, 2**63], [1.0, True, "1"]),
        (bool, [True, False], [0, 1, "true"]),
        (bytes, [b"x"], ["x"]),
        (list, [[], [1, "a"]], [{}, "ab"]),
        (dict, [{}, {"a": 1}], [[], "x"]),
        (list[int], [[1, 2], []], [[1, "2"], [True]]),
        (dict[str, float], [{"a": 1.5, "b": 2}], [{"a": "x"}, {1: 1.0}]),
        (int | None, [None, 3], ["3"]),
        (Any, [None, object(), [1]], []),
        (Literal["buy", "sell"], ["buy", "sell"], ["hold", 1]),
        (dt.datetime, [dt.datetime(2024, 1, 1)], ["2024-01-01", dt.date(2024, 1, 1)]),
        (pd.DataFrame, [pd.DataFrame()], [{}]),
        (tuple[int, ...], [[1, 2], (1,)], [[1, "x"]]),
    ],
)
def test_compile_annotation_when_checking_then_accepts_good_and_rejects_bad(
    annotation: Any, good: list[Any], bad: list[Any]
) -> None:
    description, convert = compile_annotation(annotation)
    invalid = convert(object()) if annotation is not Any else None
    for value in good:
        assert convert(value) is not invalid or annotation is Any, (annotation, value)
    for value in bad:
        assert convert(value) is invalid, (annotation, value, description)


def test_bind_when_union_and_nested_containers_then_described_in_message() -> None:
    def fn(qty: int | float, legs: list[dict[str, int]], side: Literal["buy", "sell"] = "buy") -> None: ...

    spec = make_spec(fn, "order")
    assert spec.bind({"qty": 1, "legs": [{"a": 1}]}) == {"qty": 1, "legs": [{"a": 1}]}
    assert "expected int | float, got str" in bad_params(spec, {"qty": "1", "legs": []})
    assert "param 'legs' expected list[dict[str, int]]" in bad_params(spec, {"qty": 1, "legs": [{"a": "x"}]})
    assert "expected one of ['buy', 'sell']" in bad_params(spec, {"qty": 1, "legs": [], "side": "hold"})


def test_bind_when_handler_takes_kwargs_then_extra_params_pass_through() -> None:
    def fn(a: int, **rest: Any) -> None: ...

    assert make_spec(fn).bind({"a": 1, "z": [1]}) == {"a": 1, "z": [1]}

    def anything(**rest: Any) -> None: ...

    given = {"q": 1}
    assert make_spec(anything).bind(given) is given


def test_bind_when_string_annotations_then_resolved() -> None:
    # this module uses "from __future__ import annotations": every annotation here is a string
    def fn(a: int, when: dt.datetime | None = None) -> None: ...

    assert fn.__annotations__["a"] == "int"
    assert "expected int" in bad_params(make_spec(fn), {"a": "1"})
    assert "expected datetime | None" in bad_params(make_spec(fn), {"a": 1, "when": "today"})


# --------------------------------------------------------------------------- dedup cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dedup_when_request_in_flight_then_duplicates_attach_once_per_envelope() -> None:
    cache = DedupCache(max_entries=10, ttl=120, clock=FakeClock())
    assert cache.lookup("r1", "count", 7).state == "new"
    entry = cache.begin("r1", "count", 7, [b"client-a"])
    seen = cache.lookup("r1", "count", 7)
    assert seen.state == "in_flight" and seen.in_flight is entry
    assert cache.attach(entry, [b"client-b"]) is True
    assert cache.attach(entry, [b"client-a"]) is False  # the same asker twice gets one reply
    assert cache.in_flight_count == 1 and cache.knows("r1")
    assert cache.finish("r1", b"reply") == [[b"client-a"], [b"client-b"]]
    assert cache.in_flight_count == 0


def test_dedup_when_finished_then_duplicate_gets_cached_reply_until_ttl() -> None:
    clock = FakeClock()
    cache = DedupCache(max_entries=10, ttl=120, clock=clock)
    cache.begin("r1", "count", 7, [b"a"])
    cache.finish("r1", b"reply")
    clock.now += 119.9
    seen = cache.lookup("r1", "count", 7)
    assert (seen.state, seen.reply) == ("done", b"reply")
    clock.now += 0.2
    assert not cache.knows("r1")
    assert cache.lookup("r1", "count", 7).state == "new"
    assert len(cache) == 0


def test_dedup_when_id_reused_by_different_request_then_conflict() -> None:
    cache = DedupCache(clock=FakeClock())
    cache.begin("r1", "count", 7, [b"a"])
    assert cache.lookup("r1", "other", 7).state == "conflict"
    conflict = cache.lookup("r1", "count", 8)
    assert conflict.state == "conflict" and "byte-identical" in conflict.message
    cache.finish("r1", b"reply")
    assert cache.lookup("r1", "count", 8).state == "conflict"
    assert "'count'" in cache.lookup("r1", "x", 7).message


def test_dedup_when_over_capacity_then_oldest_finished_evicted_in_flight_kept() -> None:
    clock = FakeClock()
    cache = DedupCache(max_entries=3, ttl=120, clock=clock)
    cache.begin("long", "m", 0, [b"x"])
    for i in range(5):
        cache.begin(f"r{i}", "m", i, [b"x"])
        clock.now += 1
        cache.finish(f"r{i}", f"reply{i}".encode())
    assert [cache.lookup(f"r{i}", "m", i).state for i in range(5)] == ["new", "new", "done", "done", "done"]
    assert cache.lookup("long", "m", 0).state == "in_flight"
    assert len(cache) == 4


def test_dedup_when_entries_expire_then_purged_on_next_finish() -> None:
    clock = FakeClock()
    cache = DedupCache(max_entries=100, ttl=10, clock=clock)
    for i in range(3):
        cache.begin(f"r{i}", "m", i, [b"x"])
        cache.finish(f"r{i}", b"r")
    clock.now += 11
    cache.begin("late", "m", 9, [b"x"])
    cache.finish("late", b"r")
    assert len(cache) == 1


def test_dedup_when_forgotten_or_unknown_then_envelopes_or_nothing() -> None:
    cache = DedupCache(clock=FakeClock())
    cache.begin("r1", "m", 1, [b"a"])
    assert list(cache.in_flight_ids()) == ["r1"]
    assert cache.forget("r1") == [[b"a"]]
    assert cache.forget("r1") == [] and cache.finish("r1", b"x") == []
    with pytest.raises(ValueError):
        DedupCache(max_entries=0)
