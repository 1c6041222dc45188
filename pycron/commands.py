"""Every pycron command, implemented once and shared by the web API and ``cli.py pycron``.

A :class:`Command` reads its parameters as text (query-string style) from a mapping and runs
against a :class:`~pycron.api.SupervisorApi`; :data:`COMMANDS` is the immutable registry.
:func:`execute` never raises: it returns a :class:`Result` carrying either the command's result or
an error code with the HTTP status it maps to:

* ``unknown_command`` (404): no command of that name;
* ``unknown_job`` (404): no job of that name (the message lists the jobs);
* ``bad_request`` (400): a missing, unknown or malformed parameter (the message names it and the
  expected form);
* ``internal`` (500): anything else; the traceback goes to the ``pycron.commands`` logger.
"""

from __future__ import annotations

import logging
import math
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pycron.api import SupervisorApi, UnknownJob
from pycron.joblog import RING_LINES

log = logging.getLogger("pycron.commands")

DEFAULT_TAIL = 100
MAX_TAIL = RING_LINES
MAX_WAIT_S = 600.0

UNKNOWN_COMMAND = "unknown_command"
UNKNOWN_JOB = "unknown_job"
BAD_REQUEST = "bad_request"
INTERNAL = "internal"

STATUS: Mapping[str, int] = types.MappingProxyType(
    {UNKNOWN_COMMAND: 404, UNKNOWN_JOB: 404, BAD_REQUEST: 400, INTERNAL: 500}
)
"""The HTTP status of each error code."""

Runner = Callable[[SupervisorApi, Mapping[str, str]], Awaitable[Any]]


class BadParameter(ValueError):
    """A parameter is missing or malformed; the message names it and the expected form."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    mutating: bool
    """Changes a job (start/stop/restart): the web API requires the token and POST."""
    run: Runner
    params: tuple[str, ...] = ()
    """The parameters the command reads; any other one is a ``bad_request``."""


@dataclass(frozen=True, slots=True)
class Result:
    """A command's result (``ok``) or its error ``code``/``message`` and the HTTP ``status``."""

    ok: bool
    result: Any = None
    code: str | None = None
    message: str | None = None
    status: int = 200

    def envelope(self) -> dict[str, Any]:
        """``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``."""
        if self.ok:
            return {"ok": True, "result": self.result}
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


def ok(result: Any) -> Result:
    return Result(True, result)


def error(code: str, message: str) -> Result:
    return Result(False, code=code, message=message, status=STATUS.get(code, 500))


# --- parameters -----------------------------------------------------------------------------------


def _name(params: Mapping[str, str]) -> str:
    name = params.get("name")
    if not name:
        raise BadParameter("name: required (a job name, e.g. trader)")
    return name


def _int(params: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = params.get(key)
    if text is None or text == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise BadParameter(f"{key}: expected an integer from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{key}: expected an integer from {low} to {high}, got {value}")
    return value


def _seconds(params: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    text = params.get(key)
    if text is None or text == "":
        return default
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise BadParameter(f"{key}: expected seconds from {low:g} to {high:g} (e.g. 30 or 2.5), got {text!r}")
    return value


def _tail(params: Mapping[str, str]) -> int:
    return _int(params, "tail", DEFAULT_TAIL, 1, MAX_TAIL)


def _wait(params: Mapping[str, str]) -> float:
    return _seconds(params, "wait", 0.0, 0.0, MAX_WAIT_S)


# --- the commands ---------------------------------------------------------------------------------


async def _list(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    return api.describe_all()


async def _status(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    return api.describe(_name(params))


async def _logs(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    name, tail = _name(params), _tail(params)
    return api.logs(name, tail)


async def _start(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    name, wait = _name(params), _wait(params)
    return await api.start(name, wait)


async def _stop(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    name, wait = _name(params), _wait(params)
    return await api.stop(name, wait)


async def _restart(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    name, wait = _name(params), _wait(params)
    return await api.restart(name, wait)


async def _health(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    return api.health()


async def _events(api: SupervisorApi, params: Mapping[str, str]) -> Any:
    return api.events.recent(_tail(params))


COMMANDS: Mapping[str, Command] = types.MappingProxyType(
    {
        command.name: command
        for command in (
            Command("list", "Every job's document, in start order.", False, _list),
            Command("status", "One job's document.", False, _status, ("name",)),
            Command("logs", "The last `tail` lines of a job's output.", False, _logs, ("name", "tail")),
            Command(
                "start",
                "Start a job; wait up to `wait` seconds for it to settle.",
                True,
                _start,
                ("name", "wait"),
            ),
            Command(
                "stop",
                "Stop a job; wait up to `wait` seconds for it to be down.",
                True,
                _stop,
                ("name", "wait"),
            ),
            Command(
                "restart", "Stop then start a job; `wait` as for start.", True, _restart, ("name", "wait")
            ),
            Command("health", "Whether every autostart job is ready.", False, _health),
            Command("events", "The last `tail` events.", False, _events, ("tail",)),
        )
    }
)


async def execute(api: SupervisorApi, command: str, params: Mapping[str, str]) -> Result:
    """Run ``command`` with ``params``; every failure is a :class:`Result`, never an exception."""
    spec = COMMANDS.get(command)
    if spec is None:
        return error(UNKNOWN_COMMAND, f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        takes = ", ".join(spec.params) or "no parameters"
        return error(BAD_REQUEST, f"{unknown[0]}: unknown parameter of {command} (it takes: {takes})")
    try:
        return ok(await spec.run(api, params))
    except BadParameter as exc:
        return error(BAD_REQUEST, str(exc))
    except UnknownJob as exc:
        return error(UNKNOWN_JOB, str(exc))
    except Exception as exc:
        log.exception("pycron command %s %s failed", command, dict(params))
        return error(INTERNAL, f"{command} failed: {type(exc).__name__}: {exc}")
