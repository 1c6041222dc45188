"""Strategy parameters: :class:`Param` descriptors declared on a Strategy subclass, validated by
:func:`resolve_params` against a config's overrides.

```python
class SmaCrossover(Strategy):
    fast = Param(10, "fast SMA bars", min=2)
    slow = Param(30, "slow SMA bars", min=3)
    quantity = Param(10.0, "shares to hold when long", min=0)
    mode = Param("long", "long or long_short", choices=("long", "long_short"))
```

The type of a parameter is the type of its default (``int``, ``float``, ``bool`` or ``str``); an
integer is accepted for a ``float`` parameter (and converted), a ``bool`` never for a number. On an
instance, ``self.fast`` reads the resolved value (the default until the runtime resolved them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

from trader.config.schema import ConfigError

T = TypeVar("T", int, float, bool, str)

PARAM_TYPES: tuple[type, ...] = (bool, int, float, str)
VALUES_ATTR = "_strategy_params"
"""The instance attribute holding the resolved values (a dict set by :func:`apply_params`)."""


class Param(Generic[T]):
    """A strategy parameter: default (its type is the parameter's), doc, optional bounds or choices."""

    name: str

    def __init__(
        self,
        default: T,
        doc: str = "",
        *,
        min: float | None = None,
        max: float | None = None,
        choices: Iterable[T] | None = None,
    ) -> None:
        if type(default) not in PARAM_TYPES:
            raise TypeError(f"Param default must be an int, float, bool or str, not {default!r}")
        if (min is not None or max is not None) and type(default) not in (int, float):
            raise TypeError(f"Param min/max apply to int and float parameters, not {default!r}")
        self.default: T = default
        self.type: type = type(default)
        self.doc = doc
        self.min = min
        self.max = max
        self.choices: tuple[T, ...] | None = None if choices is None else tuple(choices)
        self.name = ""
        problem = self.check(default)
        if problem is not None:
            raise ValueError(f"Param default {default!r}: {problem}")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Param[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Param[T] | T:
        if instance is None:
            return self
        values: dict[str, Any] | None = instance.__dict__.get(VALUES_ATTR)
        if values is not None and self.name in values:
            value: T = values[self.name]
            return value
        return self.default

    def __set__(self, instance: object, value: T) -> None:
        raise AttributeError(f"parameter {self.name!r} is read-only: change it through the config (reload)")

    def convert(self, value: Any) -> tuple[Any, str | None]:
        """``(converted value, None)`` or ``(value, why it is wrong)``."""
        expected = self.type
        if expected is bool:
            ok = isinstance(value, bool)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok:
                value = float(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            return value, f"expected {_describe(expected)}, got {value!r}"
        return value, self.check(value)

    def check(self, value: Any) -> str | None:
        """Why ``value`` (of the right type) is out of range or not a choice, or None."""
        if self.min is not None and value < self.min:
            return f"must be >= {self.min:g}, got {value!r}"
        if self.max is not None and value > self.max:
            return f"must be <= {self.max:g}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(repr(c) for c in self.choices)}, got {value!r}"
        return None

    def describe(self) -> dict[str, Any]:
        """For status and docs: type, default, doc, bounds, choices."""
        return {
            "type": self.type.__name__,
            "default": self.default,
            "doc": self.doc,
            "min": self.min,
            "max": self.max,
            "choices": None if self.choices is None else list(self.choices),
        }

    def __repr__(self) -> str:
        return f"Param({self.default!r}, {self.doc!r})"


def _describe(tp: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]


def params_of(cls: type) -> dict[str, Param[Any]]:
    """The parameters declared on ``cls`` and its bases (a subclass's declaration wins)."""
    found: dict[str, Param[Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Param):
                found[name] = value
            elif name in found:  # a subclass replaced the parameter with something else
                del found[name]
    return found


def resolve_params(cls: type, overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Every parameter of ``cls``: its default, or the override, validated.

    An unknown key, a wrong type or a value out of range is a
    ``ConfigError(source, f"params.{key}", reason)``."""
    declared = params_of(cls)
    resolved: dict[str, Any] = {name: p.default for name, p in declared.items()}
    for key, value in overrides.items():
        param = declared.get(key)
        if param is None:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(source, f"params.{key}", f"unknown parameter (expected one of: {known})")
        converted, problem = param.convert(value)
        if problem is not None:
            raise ConfigError(source, f"params.{key}", problem)
        resolved[key] = converted
    return resolved


def apply_params(instance: object, values: Mapping[str, Any]) -> None:
    """Make ``values`` (from :func:`resolve_params`) what the instance's parameters read."""
    instance.__dict__[VALUES_ATTR] = dict(values)
