"""From parsed YAML to frozen dataclasses, strictly.

Unknown keys, wrong types and missing required keys are a :class:`ConfigError` whose one-line
message names the source (a file or an environment variable), the dotted key and what was expected.
Nothing is evaluated: values are data, never code.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")

Check = Callable[[Any], str | None]
"""A field check: returns why the value is wrong, or None."""


class ConfigError(ValueError):
    """A configuration problem, in one line: ``<source>: <key>: <what is wrong>``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def checked(default: Any, check: Check) -> Any:
    """A dataclass field with a default and a check run on load."""
    return dataclasses.field(default=default, metadata={"check": check})


def in_range(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}, got {value!r}"

    return check


def endpoint(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith(("tcp://", "ipc://", "inproc://")):
        return f"expected a ZeroMQ endpoint like tcp://127.0.0.1:42001, got {value!r}"
    return None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return f"a mapping of {_describe(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    if tp is float:
        return "a number"
    return {str: "a string", int: "an integer", bool: "true or false", Path: "a path"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    wrong = ConfigError(source, key, f"expected {_describe(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, source, key)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise wrong
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _convert(option, value, source, key)
            except ConfigError:
                continue
        raise wrong
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong
        item_type = get_args(tp)[0]
        return tuple(_convert(item_type, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise wrong
        key_type, value_type = get_args(tp)
        return types.MappingProxyType(
            {
                _convert(key_type, k, source, key): _convert(value_type, v, source, f"{key}.{k}")
                for k, v in value.items()
            }
        )
    if tp is type(None):
        if value is None:
            return None
        raise wrong
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise wrong
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong
    if tp is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise wrong
    if tp is Any:
        return value
    raise ConfigError(source, key, f"unsupported field type {tp!r} in the schema")


def build(cls: type[T], data: Any, source: str, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), validating every key and value."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, prefix or "(top level)", f"expected a mapping, got {data!r}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in data:
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(source, _join(prefix, str(name)), f"unknown key (expected one of: {known})")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in data:
            value = _convert(hints[name], data[name], source, key)
            check: Check | None = field.metadata.get("check")
            if check is not None and (reason := check(value)):
                raise ConfigError(source, key, reason)
            values[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, f"missing required key ({_describe(hints[name])})")
    return cls(**values)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely (no tags, no code); a missing or broken file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), "", f"invalid YAML: {where}{problem}") from None


def env_overrides(cls: type[Any], environ: Mapping[str, str], prefix: str = "BOURSE_") -> dict[str, Any]:
    """Overrides from ``BOURSE_<SECTION>_<KEY>`` variables for the sections of ``cls``.

    Values are parsed as YAML scalars (so ``7497`` is an integer and ``true`` a boolean), except
    for string fields, which take the text as is. A variable naming a known section but an unknown
    key is an error; variables of other sections belong to other configs and are left alone.
    A sub-section's key is reached the same way: ``BOURSE_ZMQ_CURVE_ENABLED`` is ``zmq.curve.enabled``.
    """
    hints = typing.get_type_hints(cls)
    sections = {
        f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])
    }
    overrides: dict[str, dict[str, Any]] = {}
    for var, text in sorted(environ.items()):
        if not var.startswith(prefix):
            continue
        rest = var[len(prefix) :].lower()
        for section, section_cls in sections.items():
            if not rest.startswith(section + "_"):
                continue
            key = rest[len(section) + 1 :]
            section_hints = typing.get_type_hints(section_cls)
            target = overrides.setdefault(section, {})
            nested = _nested_key(section_hints, key)
            if nested is not None:
                sub, sub_key, sub_hints = nested
                target = target.setdefault(sub, {})
                section_hints, key = sub_hints, sub_key
            elif key not in section_hints:
                known = ", ".join(f"{prefix}{section.upper()}_{k.upper()}" for k in sorted(section_hints))
                raise ConfigError(f"environment variable {var}", f"{section}.{key}", f"unknown key ({known})")
            value: Any = text if section_hints[key] is str else _parse_scalar(text, var)
            target[key] = value
    return overrides


def _nested_key(hints: Mapping[str, Any], key: str) -> tuple[str, str, dict[str, Any]] | None:
    """(sub-section, its key, its hints) when ``key`` is ``<sub>_<key>`` of a dataclass field."""
    if key in hints:
        return None
    for name, tp in hints.items():
        if dataclasses.is_dataclass(tp) and key.startswith(name + "_"):
            sub_hints = typing.get_type_hints(tp)
            sub_key = key[len(name) + 1 :]
            if sub_key in sub_hints:
                return name, sub_key, sub_hints
    return None


def _parse_scalar(text: str, var: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"environment variable {var}", "", f"cannot parse {text!r}") from None


def merge(base: Any, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``base`` (a YAML mapping) with section overrides applied on top."""
    merged: dict[str, Any] = dict(base) if isinstance(base, Mapping) else {}
    for section, values in overrides.items():
        current = merged.get(section)
        merged[section] = _merged(current if isinstance(current, Mapping) else {}, values)
    return merged


def _merged(current: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(current)
    for key, value in values.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, Mapping):
            out[key] = _merged(below, value)
        else:
            out[key] = value
    return out


def load(cls: type[T], path: Path, environ: Mapping[str, str] | None = None) -> T:
    """Load ``path`` into ``cls``, then apply ``BOURSE_<SECTION>_<KEY>`` overrides."""
    data = read_yaml(path)
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(str(path), "(top level)", f"expected a mapping, got {type(data).__name__}")
    env = os.environ if environ is None else environ
    overrides = env_overrides(cls, env)
    if not overrides:
        return build(cls, data, str(path))
    build(cls, data, str(path))  # errors in the file are reported against the file
    try:
        return build(cls, merge(data, overrides), str(path))
    except ConfigError as exc:  # then the override is at fault: name the variable
        section, _, key = exc.key.partition(".")
        parts = key.split(".")
        sub = overrides.get(section, {}).get(parts[0])
        nested = len(parts) > 1 and isinstance(sub, dict) and parts[1] in sub  # zmq.curve.enabled
        var = f"BOURSE_{section.upper()}_{'_'.join(parts[: 2 if nested else 1]).upper()}"
        raise ConfigError(f"environment variable {var}", exc.key, exc.problem) from None
