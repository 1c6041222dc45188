"""Import a strategy class named ``path/to/file.py:ClassName`` (configs/strategies.yaml ``class``).

The file is imported by path (``importlib.util.spec_from_file_location``): nothing is evaluated
but the module itself, and no package layout is needed. A relative path is looked up in the
current directory, then beside the config file's directory (``configs/../strategies/x.py``). A
file named by several strategies is imported once. Every failure is a :class:`ConfigError` naming
the config file and ``strategies.<name>.class``: the file is missing, importing it raised, it has
no such class, or the class is not a :class:`~trader.strategy.base.Strategy`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from trader.config.schema import ConfigError
from trader.strategy.base import Strategy

log = logging.getLogger("trader.strategy.loader")

_modules: dict[Path, ModuleType] = {}


def candidates(file: str, search: Sequence[Path]) -> list[Path]:
    """Where ``file`` may be: itself when absolute, else under each directory of ``search``."""
    path = Path(file).expanduser()
    if path.is_absolute():
        return [path]
    return [(base / path) for base in search]


def import_file(path: Path) -> ModuleType:
    """Import the Python file ``path`` as a module of its own (once per resolved path)."""
    resolved = path.resolve()
    cached = _modules.get(resolved)
    if cached is not None:
        return cached
    digest = hashlib.sha1(str(resolved).encode(), usedforsecurity=False).hexdigest()[:10]
    name = f"bourse_strategies.{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {resolved} (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, typing and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _modules[resolved] = module
    return module


def load_class(
    class_path: str,
    *,
    search: Sequence[Path],
    source: str,
    key: str,
) -> type[Strategy]:
    """The Strategy subclass ``class_path`` (``file.py:Class``); ConfigError(source, key, why)."""
    file, sep, class_name = class_path.partition(":")
    if not sep or not file.endswith(".py") or not class_name.isidentifier():
        raise ConfigError(source, key, f"expected `path/to/file.py:ClassName`, got {class_path!r}")
    places = candidates(file, search)
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        where = ", ".join(str(p) for p in places)
        raise ConfigError(source, key, f"no such file {file} (looked for {where})")
    try:
        module = import_file(found)
    except SyntaxError as exc:
        raise ConfigError(source, key, f"{found}: syntax error line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        log.exception("importing %s failed", found)
        raise ConfigError(source, key, f"importing {found} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        classes = sorted(
            n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__
        )
        hint = f" (classes there: {', '.join(classes)})" if classes else " (it defines no class)"
        raise ConfigError(source, key, f"{file} has no class {class_name}{hint}")
    if not inspect.isclass(cls) or not issubclass(cls, Strategy):
        raise ConfigError(
            source, key, f"{class_path} is not a strategy: it must subclass trader.strategy.base.Strategy"
        )
    if cls is Strategy:
        raise ConfigError(source, key, f"{class_path} is the Strategy base class itself, not a strategy")
    return cls
