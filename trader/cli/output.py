"""The one output and error path of every CLI command.

A command returns an :class:`Outcome` (the ok/error envelope shared with the RPC and the web API);
:func:`emit` prints it as rich tables for people or as JSON with ``--json``, and turns an error
into one clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.text import Text

EXIT_ERROR = 1


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    data: Any = None
    error: str | None = None
    code: str = "error"
    human: Callable[[Any], RenderableType] | None = field(default=None, compare=False)

    def envelope(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "result": self.data}
        return {"ok": False, "error": {"code": self.code, "message": self.error}, "result": self.data}


def success(data: Any, human: Callable[[Any], RenderableType] | None = None) -> Outcome:
    return Outcome(True, data, human=human)


def failure(
    message: str, data: Any = None, code: str = "error", human: Callable[[Any], RenderableType] | None = None
) -> Outcome:
    return Outcome(False, data, message, code, human)


def emit(outcome: Outcome, as_json: bool) -> None:
    """Print ``outcome``; exit non-zero when it is an error."""
    if as_json:
        click.echo(json.dumps(outcome.envelope(), default=str, indent=2))
    else:
        if outcome.human is not None and outcome.data is not None:
            Console().print(outcome.human(outcome.data))
        elif outcome.ok and outcome.data is not None:
            Console().print(outcome.data)
        if not outcome.ok:
            err = Console(stderr=True, soft_wrap=True)
            for line in (outcome.error or "failed").splitlines():
                err.print(Text.assemble(("error: ", "bold red"), line), highlight=False)
    if not outcome.ok:
        sys.exit(EXIT_ERROR)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` (machine-readable output) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)
