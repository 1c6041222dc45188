"""pycron's configuration: configs/pycron.yaml, strictly validated into frozen dataclasses.

Loading goes through :mod:`trader.config.schema`, so every problem is one line
``<file>: <key>: <problem>``: unknown keys, wrong types, out-of-range numbers, unknown signal
names, invalid regular expressions, unknown time zones, cron expressions, unknown ``depends_on``
names and dependency cycles. Nothing in the file is evaluated: commands are argv lists (never a
shell string), patterns are regular expressions, cron expressions are parsed, not executed.

Cross-job rules (dependency names, cycles, job names) are checked on the ``jobs`` mapping as a
whole, so their key reads ``jobs: <job>.<key>: ...``; everything inside one job is reported at its
own dotted key, e.g. ``jobs.trader.stop.signal``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import types
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from signal import Signals
from typing import Any, Literal

from pycron.cron import parse_cron
from pycron.windows import Window, parse_window
from trader.config.schema import ConfigError, checked, in_range, load
from trader.config.trader import LoggingConfig

TOKEN_ENV = "BOURSE_PYCRON_TOKEN"
"""Overrides ``web.token``; without either, the runner generates ``<data-dir>/pycron.token``."""
TOKEN_FILE = "pycron.token"
PYTHON = "python"
"""A command whose first word is ``python`` runs under the interpreter running pycron."""
MIN_TOKEN_LENGTH = 16

RestartPolicy = Literal["never", "on-failure", "always"]
ProbeType = Literal["started", "tcp", "http", "command", "log"]
ScheduleAction = Literal["start", "stop", "restart", "run"]
MissedPolicy = Literal["skip", "run-once"]
OverlapPolicy = Literal["skip", "queue", "kill"]

_JOB_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


# --- field checks ---------------------------------------------------------------------------------


def _argv(value: Any) -> str | None:
    if not value:
        return "expected a non-empty list like [python, services/x.py] (no shell: a list, not a string)"
    if not all(value):
        return f"empty argument in {list(value)!r}"
    return None


def _optional_argv(value: Any) -> str | None:
    return None if value is None else _argv(value)


def _signal_name(value: Any) -> str | None:
    if value in Signals.__members__:
        return None
    return f"unknown signal {value!r} (expected a name like SIGTERM, SIGINT, SIGQUIT, SIGKILL)"


def _regex(value: Any) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        return f"invalid regular expression {value!r}: {exc}"
    return None


def _time_zone(value: Any) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {value!r} (expected an IANA name like Europe/Paris, America/New_York, UTC)"
    return None


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if len(value) < MIN_TOKEN_LENGTH or any(c.isspace() for c in value):
        return f"must be at least {MIN_TOKEN_LENGTH} characters without spaces"
    return None


def _cron(value: Any) -> str | None:
    """A cron expression as :func:`pycron.cron.parse_cron` reads it."""
    if value is None:
        return None
    try:
        parse_cron(value)
    except ValueError as exc:
        return f"invalid cron expression {value!r}: {exc}"
    return None


def _clock(value: Any) -> str | None:
    if value is None or _CLOCK.fullmatch(value):
        return None
    return f"expected a time of day HH:MM or HH:MM:SS, got {value!r}"


def _seconds_of_day(clock: str) -> int:
    match = _CLOCK.fullmatch(clock)
    assert match is not None, clock
    hour, minute, second = match.group(1), match.group(2), match.group(3) or "0"
    return (int(hour) * 60 + int(minute)) * 60 + int(second)


def _required(check: Callable[[Any], str | None]) -> Any:
    """A required dataclass field (no default) with a check run on load."""
    return field(metadata={"check": check})


def _each(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """Run ``check`` on every item of a tuple, naming the index."""

    def run(items: Any) -> str | None:
        for index, item in enumerate(items):
            if reason := check(item):
                return f"[{index}].{reason}"
        return None

    return run


# --- dataclasses ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The web API (Tornado). Every change (start/stop/restart) needs ``Authorization: Bearer <token>``."""

    host: str = "127.0.0.1"
    port: int = checked(8081, in_range(0, 65535))
    """0 binds a free port (the runner reports it)."""
    token: str | None = checked(None, _token)
    """``$BOURSE_PYCRON_TOKEN`` wins; unset everywhere: generated into ``<data-dir>/pycron.token``."""


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """A readiness or health probe; ``type`` says which of the type-specific keys apply.

    * ``started``: passes once the process is running (the default readiness; not a health probe).
    * ``tcp``: a connection to ``host:port`` succeeds.
    * ``http``: ``GET url`` answers ``expect_status``.
    * ``command``: ``argv`` exits 0 within ``timeout_s`` (``python`` as for job commands).
    * ``log``: a line of the job's output (stdout or stderr) matches ``pattern`` (``re.search``):
      for readiness, any line since the spawn (e.g. IBC's ``Login has completed``); for health,
      a line since the previous check (a heartbeat the job must keep printing).

    Probed every ``interval_s``; failures during the first ``start_period_s`` (after the spawn for
    a readiness probe, after the job became READY for a health probe) do not
    count; ``failure_threshold`` consecutive failures after that make the probe fail.
    """

    type: ProbeType
    interval_s: float = checked(1.0, in_range(0.01, 86_400))
    timeout_s: float = checked(1.0, in_range(0.01, 3600))
    failure_threshold: int = checked(3, in_range(1, 1_000_000))
    start_period_s: float = checked(0.0, in_range(0, 86_400))
    host: str = "127.0.0.1"
    port: int | None = checked(None, lambda v: None if v is None else in_range(1, 65535)(v))
    url: str | None = None
    expect_status: int = checked(200, in_range(100, 599))
    argv: tuple[str, ...] = checked((), lambda v: _argv(v) if v else None)
    pattern: str | None = checked(None, _regex)

    @property
    def regex(self) -> re.Pattern[str]:
        """The compiled ``pattern`` of a log probe (compiled and checked on load; cached by ``re``)."""
        if self.pattern is None:
            raise ValueError(f"a {self.type} probe has no pattern")
        return re.compile(self.pattern)


@dataclass(frozen=True, slots=True)
class ReadinessConfig(ProbeConfig):
    """A readiness probe: as :class:`ProbeConfig`, with defaults suited to a service coming up.

    Probed every ``interval_s`` (0.5 s) from the spawn; failures in the first ``start_period_s``
    (30 s) do not count, then ``failure_threshold`` (10) in a row mean "not coming up": the job is
    stopped and its restart policy applies. A probe that passes once makes the job READY.
    """

    interval_s: float = checked(0.5, in_range(0.01, 86_400))
    failure_threshold: int = checked(10, in_range(1, 1_000_000))
    start_period_s: float = checked(30.0, in_range(0, 86_400))


_PROBE_KEYS: Mapping[str, tuple[str, ...]] = {
    "started": (),
    "tcp": ("port",),
    "http": ("url",),
    "command": ("argv",),
    "log": ("pattern",),
}
_PROBE_OPTIONAL: Mapping[str, tuple[str, ...]] = {"tcp": ("host",), "http": ("expect_status",)}
_PROBE_DEFAULTS = {
    "host": "127.0.0.1",
    "port": None,
    "url": None,
    "expect_status": 200,
    "argv": (),
    "pattern": None,
}


def _health(value: Any) -> str | None:
    if value.type == "started":
        return "type: 'started' is a readiness probe only (a health probe checks something)"
    return _probe(value)


def _probe(value: Any) -> str | None:
    """The keys a probe's ``type`` needs are there, and no key of another type is."""
    probe: ProbeConfig = value
    for key in _PROBE_KEYS[probe.type]:
        if getattr(probe, key) == _PROBE_DEFAULTS[key]:
            return f"{key}: required by a {probe.type} probe"
    allowed = (*_PROBE_KEYS[probe.type], *_PROBE_OPTIONAL.get(probe.type, ()))
    for key, default in _PROBE_DEFAULTS.items():
        if key not in allowed and getattr(probe, key) != default:
            return f"{key}: not used by a {probe.type} probe (type {probe.type} takes: {', '.join(allowed)})"
    if probe.type == "http" and not (probe.url or "").startswith(("http://", "https://")):
        return f"url: expected an http:// or https:// URL, got {probe.url!r}"
    return None


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Delay before restart n (0-based): ``min(max_s, initial_s * factor**n)``, then shortened at
    random by up to ``jitter`` (a fraction of the delay); n resets to 0 once the job has stayed up
    ``reset_after_s``."""

    initial_s: float = checked(1.0, in_range(0, 3600))
    max_s: float = checked(60.0, in_range(0, 86_400))
    factor: float = checked(2.0, in_range(1, 100))
    jitter: float = checked(0.1, in_range(0, 1))
    reset_after_s: float = checked(60.0, in_range(0, 86_400))


@dataclass(frozen=True, slots=True)
class CrashLoopConfig:
    """More than ``max_restarts`` restarts within ``window_s``: the job goes FATAL (an event) and
    stays down until started by hand."""

    max_restarts: int = checked(5, in_range(0, 1_000_000))
    window_s: float = checked(300.0, in_range(1, 7 * 86_400))


@dataclass(frozen=True, slots=True)
class StopConfig:
    """Graceful stop: ``command`` (if any) is run first; then, if the process is still running,
    ``signal`` goes to its process group; SIGKILL to the group ``timeout_s`` after the stop began."""

    signal: str = checked("SIGTERM", _signal_name)
    timeout_s: float = checked(10.0, in_range(0, 3600))
    command: tuple[str, ...] | None = checked(None, _optional_argv)

    @property
    def signum(self) -> Signals:
        return Signals[self.signal]


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """A cron entry in an explicit time zone. ``run`` starts the job as a one-off run; ``missed``
    says what happens to fire times missed while pycron was down, ``overlap`` what a ``run`` does
    while the previous run is still going, ``timeout_s`` when a run is stopped."""

    cron: str = _required(_cron)
    tz: str = _required(_time_zone)
    action: ScheduleAction = "run"
    missed: MissedPolicy = "skip"
    overlap: OverlapPolicy = "skip"
    timeout_s: float | None = checked(None, lambda v: None if v is None else in_range(0.001, 7 * 86_400)(v))


def _schedule(value: Any) -> str | None:
    entry: ScheduleConfig = value
    if entry.action != "run":
        if entry.overlap != "skip":
            return f"overlap: only a run schedule has an overlap policy (action is {entry.action})"
        if entry.timeout_s is not None:
            return f"timeout_s: only a run schedule has a timeout (action is {entry.action})"
    return None


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """A maintenance window, during which a failing probe neither restarts the job nor alerts.

    Either ``cron`` (when it opens) + ``duration``, or ``days`` + ``start`` + (``end`` or
    ``duration``); ``end`` before ``start`` runs past midnight. Always in ``tz``. ``duration`` is
    ``"1h30m"``-style text or seconds. :meth:`window` gives the :class:`pycron.windows.Window`.
    """

    tz: str = _required(_time_zone)
    cron: str | None = checked(None, _cron)
    days: tuple[str, ...] | str | None = None
    """Weekday names, numbers as text or ranges: ``[mon-fri]``, ``sun``, ``"*"`` (default: every day)."""
    start: str | None = checked(None, _clock)
    end: str | None = checked(None, _clock)
    duration: str | float | None = None

    def spec(self) -> dict[str, object]:
        """The mapping :func:`pycron.windows.parse_window` reads (``end`` turned into a duration)."""
        spec: dict[str, object] = {"tz": self.tz}
        if self.cron is not None:
            spec["cron"] = self.cron
        if self.days is not None:
            spec["days"] = list(self.days) if isinstance(self.days, tuple) else self.days
        if self.start is not None:
            spec["start"] = self.start
        if self.end is not None and self.start is not None:
            spec["duration"] = (_seconds_of_day(self.end) - _seconds_of_day(self.start)) % 86_400
        elif self.duration is not None:
            spec["duration"] = self.duration
        return spec

    def window(self) -> Window:
        return parse_window(self.spec())


def _window(value: Any) -> str | None:
    window: WindowConfig = value
    if window.cron is not None:
        for key in ("days", "start", "end"):
            if getattr(window, key) is not None:
                return f"{key}: give either cron + duration or days + start + end/duration, not both"
        if window.duration is None:
            return "duration: required with cron"
    else:
        if window.start is None:
            return "start: required (a window is cron + duration or days + start + end/duration)"
        if (window.end is None) == (window.duration is None):
            return "end: give either end or duration with start"
        if window.end is not None and window.end == window.start:
            return f"end: equal to start ({window.start}); a window needs a length"
    try:
        window.window()
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One supervised process.

    ``command`` is an argv list, never a shell string; a first word ``python`` means the
    interpreter running pycron (see :meth:`argv`). ``cwd`` is relative to pycron's working
    directory (the repository root); ``env`` is added to pycron's environment.
    """

    command: tuple[str, ...] = _required(_argv)
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    depends_on: tuple[str, ...] = ()
    """Started only once each of these is ready (its readiness probe passed), never on a timer."""
    autostart: bool = True
    """Started with pycron; false: only by hand or by a schedule."""
    restart: RestartPolicy = "on-failure"
    success_exit_codes: tuple[int, ...] = (0,)
    """Exit codes that are not a failure for ``restart: on-failure`` (and not a crash)."""
    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    crash_loop: CrashLoopConfig = field(default_factory=CrashLoopConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    readiness: ReadinessConfig = field(
        default_factory=lambda: ReadinessConfig("started"), metadata={"check": _probe}
    )
    """Ready when it first passes (default ``type: started``: once running). Dependents wait for it."""
    health: tuple[ProbeConfig, ...] = checked((), _each(_health))
    """Checked while running; a failed health probe restarts the job (outside maintenance)."""
    schedules: tuple[ScheduleConfig, ...] = checked((), _each(_schedule))
    maintenance: tuple[WindowConfig, ...] = checked((), _each(_window))

    def argv(self, python: str = sys.executable) -> tuple[str, ...]:
        """The command with a leading ``python`` replaced by ``python`` (the running interpreter)."""
        return resolve_python(self.command, python)


def resolve_python(command: Sequence[str], python: str = sys.executable) -> tuple[str, ...]:
    """``command`` with a first word ``python`` replaced by the interpreter path ``python``."""
    if command and command[0] == PYTHON:
        return (python, *command[1:])
    return tuple(command)


# --- cross-job rules ------------------------------------------------------------------------------


def _jobs(value: Any) -> str | None:
    """Job names, ``depends_on`` names and dependency cycles; a reason ``<job>.<key>: <problem>``."""
    jobs: Mapping[str, JobConfig] = value
    names = list(jobs)
    for name in names:
        if not _JOB_NAME.fullmatch(name):
            return f"{name}: bad job name (expected a-z, 0-9, '-' and '_', starting with a letter)"
    listed = ", ".join(names)
    for name, job in jobs.items():
        seen: set[str] = set()
        for dep in job.depends_on:
            if dep not in jobs:
                return f"{name}.depends_on: unknown job {dep!r} (jobs: {listed})"
            if dep in seen:
                return f"{name}.depends_on: {dep!r} is listed twice"
            seen.add(dep)
    cycle = find_cycle({name: job.depends_on for name, job in jobs.items()})
    if cycle:
        return f"{cycle[0]}.depends_on: dependency cycle {' -> '.join(cycle)}"
    return None


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, the first found in declaration order; else None."""
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                path.append(node)
                on_path.add(node)
            deps = graph.get(node, ())
            if index < len(deps):
                stack.append((node, index + 1))
                dep = deps[index]
                if dep in on_path:
                    return [*path[path.index(dep) :], dep]
                if dep not in done:
                    stack.append((dep, 0))
            else:
                path.pop()
                on_path.discard(node)
                done.add(node)
    return None


@dataclass(frozen=True, slots=True)
class PycronConfig:
    data_dir: str | None = None
    """Overridden by ``--data-dir`` and ``$BOURSE_DATA_DIR``; ``./data`` when unset everywhere.
    Process logs go to ``<data-dir>/logs/<job>.log``, rotated per ``logging``."""
    web: WebConfig = field(default_factory=WebConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    jobs: Mapping[str, JobConfig] = field(
        default_factory=lambda: types.MappingProxyType({}), metadata={"check": _jobs}
    )

    def start_order(self) -> tuple[str, ...]:
        """Every job after its dependencies; otherwise in the order of the file (stable)."""
        order: list[str] = []
        placed: set[str] = set()
        pending = list(self.jobs)
        while pending:
            for name in pending:
                if all(dep in placed for dep in self.jobs[name].depends_on):
                    break
            else:  # unreachable for a loaded config: cycles are rejected on load
                raise ValueError(f"dependency cycle among {', '.join(pending)}")
            pending.remove(name)
            placed.add(name)
            order.append(name)
        return tuple(order)

    def stop_order(self) -> tuple[str, ...]:
        """Dependents before their dependencies: the start order reversed."""
        return tuple(reversed(self.start_order()))

    def dependents(self, name: str) -> tuple[str, ...]:
        """Jobs that list ``name`` in ``depends_on``, in file order."""
        return tuple(other for other, job in self.jobs.items() if name in job.depends_on)


def token_file(data_dir: Path) -> Path:
    """Where the runner keeps a generated web token (mode 0600) when none is configured."""
    return data_dir / TOKEN_FILE


def load_pycron(path: Path, environ: Mapping[str, str] | None = None) -> PycronConfig:
    """Load ``path``; ``BOURSE_<SECTION>_<KEY>`` overrides apply, and ``$BOURSE_PYCRON_TOKEN``
    (when non-empty) replaces ``web.token``."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    config = load(PycronConfig, path, env)
    token = env.get(TOKEN_ENV)
    if token:
        if reason := _token(token):
            raise ConfigError(f"environment variable {TOKEN_ENV}", "web.token", reason)
        config = dataclasses.replace(config, web=dataclasses.replace(config.web, token=token))
    return config
