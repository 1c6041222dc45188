"""The one output and error path of every CLI command.

A command returns an :class:`Outcome` (the ok/error envelope shared with the RPC and the web API);
:func:`emit` prints it as rich tables for people or as JSON with ``--json``, and turns an error
into one clear line on stderr and a non-zero exit code: 1 for a refusal or a bad request, 2 when a
service is down (:data:`EXIT_UNAVAILABLE`). Commands that talk to a service raise
:class:`CliFailure` from deep inside; :func:`outcome_command` turns it into its Outcome.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.text import Text

from trader.cli.context import cli_context

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    data: Any = None
    error: str | None = None
    code: str = "error"
    human: Callable[[Any], RenderableType] | None = field(default=None, compare=False)
    exit_code: int = EXIT_ERROR
    """The process exit status of an error (0 when ok)."""

    def envelope(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "result": self.data}
        return {"ok": False, "error": {"code": self.code, "message": self.error}, "result": self.data}


class CliFailure(Exception):
    """Raised inside a command to end it with ``outcome`` (an error)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


def success(data: Any, human: Callable[[Any], RenderableType] | None = None) -> Outcome:
    return Outcome(True, data, human=human, exit_code=0)


def failure(
    message: str,
    data: Any = None,
    code: str = "error",
    human: Callable[[Any], RenderableType] | None = None,
    exit_code: int = EXIT_ERROR,
) -> Outcome:
    return Outcome(False, data, message, code, human, exit_code)


def unavailable(service: str, where: str, how: str = "start it with ./start.sh") -> Outcome:
    """A service that does not answer: one line naming it, where it was expected, and how to start it."""
    return failure(
        f"the {service} is not answering at {where} ({how})", code="unavailable", exit_code=EXIT_UNAVAILABLE
    )


def console() -> Console:
    """The console commands print to (stdout; width from the terminal, or $COLUMNS)."""
    return Console()


def emit(outcome: Outcome, as_json: bool | None = None) -> None:
    """Print ``outcome``; exit with its code when it is an error. ``as_json`` None: the global flag."""
    if as_json is None:
        as_json = cli_context().as_json
    if as_json:
        click.echo(json.dumps(outcome.envelope(), default=str, indent=2))
    else:
        if outcome.human is not None and outcome.data is not None:
            console().print(outcome.human(outcome.data))
        elif outcome.ok and outcome.data is not None:
            console().print(outcome.data)
        if not outcome.ok:
            err = Console(stderr=True, soft_wrap=True)
            for line in (outcome.error or "failed").splitlines():
                err.print(Text.assemble(("error: ", "bold red"), line), highlight=False)
    if not outcome.ok:
        sys.exit(outcome.exit_code)


def outcome_command(fn: Callable[..., Outcome | None]) -> Callable[..., None]:
    """Wrap a click callback that returns an Outcome (or None: it printed itself): emit it, and
    turn a :class:`CliFailure` raised anywhere inside into its error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            outcome = fn(*args, **kwargs)
        except CliFailure as exc:
            outcome = exc.outcome
        if outcome is not None:
            emit(outcome)

    return wrapper


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    return bool(value) or cli_context().as_json


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` (machine-readable output) to a command; the global ``--json`` also sets it."""
    return click.option(
        "--json", "as_json", is_flag=True, callback=_json_flag, help="Print machine-readable JSON."
    )(fn)
