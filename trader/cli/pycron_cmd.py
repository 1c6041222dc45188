"""``cli.py pycron ...``: a thin client of pycron's web API (the command runs inside pycron).

``--url`` defaults to ``http://<web.host>:<web.port>`` of the pycron config (``--config``, else
``$BOURSE_PYCRON_CONFIG``, else configs/pycron.yaml; ``BOURSE_WEB_PORT`` and the other overrides
apply). Start/stop/restart need the token: ``--token``, else ``$BOURSE_PYCRON_TOKEN``, else
``web.token``, else the file ``<data-dir>/pycron.token`` pycron generates.

Exit codes: 0 done, 1 pycron refused (its error message is printed), 2 pycron is not reachable.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from pycron.config import TOKEN_ENV, PycronConfig, load_pycron, token_file
from pycron.joblog import RING_LINES
from trader.cli.output import Outcome, emit, failure, json_option, success
from trader.config import ConfigError
from trader.config.paths import resolve_data_dir

CONFIG_ENV = "BOURSE_PYCRON_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pycron.yaml"
EXIT_UNREACHABLE = 2
TIMEOUT_S = 10.0
FOLLOW_IDLE_S = 60.0
"""``--follow`` gives up when nothing (not even a keepalive, sent every 15 s) came for this long."""
STATE_STYLES = {
    "ready": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "unhealthy": "dark_orange",
    "backoff": "dark_orange",
    "fatal": "bold red",
    "exited": "dim",
    "stopped": "dim",
}


class Unreachable(Exception):
    """Nothing answers at the URL (or it stopped answering)."""


@dataclass(slots=True)
class Target:
    """Where pycron is and how to authenticate, resolved lazily from the options."""

    url_option: str | None
    token_option: str | None
    config_option: str | None
    data_dir_option: str | None
    _config: PycronConfig | None = None

    def config(self) -> PycronConfig:
        if self._config is None:
            path = Path(self.config_option or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()
            self._config = load_pycron(path, os.environ)
        return self._config

    @property
    def url(self) -> str:
        if self.url_option:
            return self.url_option.rstrip("/")
        web = self.config().web
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(web.host, web.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{web.port}"

    def token(self) -> str | None:
        """``--token``, ``$BOURSE_PYCRON_TOKEN``, ``web.token``, then the token file; None if none."""
        if self.token_option:
            return self.token_option
        if os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV]
        config = self.config()
        if config.web.token:
            return config.web.token
        try:
            return self.token_path().read_text().strip() or None
        except OSError:
            return None

    def token_path(self) -> Path:
        return token_file(resolve_data_dir(self.data_dir_option, os.environ, self.config().data_dir))


class Refused(Exception):
    """pycron answered with an error document."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _open(target: Target, method: str, path: str, params: dict[str, Any], timeout: float) -> Any:
    """Send the request; the response object (caller closes). Raises Unreachable or Refused."""
    url = f"{target.url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if method == "POST" and (token := target.token()) is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        # no proxy from the environment: the token goes straight to pycron
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            err = json.loads(body)["error"]
            code, message = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", f"HTTP {exc.code} {exc.reason} from {url}"
        if exc.code == 401 and method == "POST":
            message += f" (the CLI looked in --token, ${TOKEN_ENV}, web.token and {_token_hint(target)})"
        raise Refused(exc.code, code, message) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise Unreachable(str(exc)) from None


def _token_hint(target: Target) -> str:
    try:
        return str(target.token_path())
    except ConfigError:
        return "<data-dir>/pycron.token"


def request(
    target: Target, method: str, path: str, params: dict[str, Any], timeout: float = TIMEOUT_S
) -> Any:
    """One request; the decoded JSON body."""
    with _open(target, method, path, params, timeout) as response:
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(str(exc)) from None
    try:
        return json.loads(body)
    except ValueError:
        raise Refused(200, "bad_response", f"not a JSON answer from {target.url}{path}") from None


def _outcome(call: Callable[[], Any], human: Callable[[Any], RenderableType]) -> Outcome:
    try:
        return success(call(), human=human)
    except Refused as exc:
        return failure(exc.message, code=exc.code)


def _run(target: Target, as_json: bool, call: Callable[[], Outcome | None]) -> None:
    """Resolve, call and print (None: nothing to print); an unreachable pycron is one line and
    exit 2."""
    try:
        outcome = call()
    except ConfigError as exc:
        emit(failure(str(exc), code="invalid_config"), as_json)
        return
    except Unreachable:
        url = _safe_url(target)
        message = f"pycron is not running at {url} (start it with ./start.sh)"
        try:
            emit(failure(message, code="unreachable"), as_json)
        except SystemExit:
            sys.exit(EXIT_UNREACHABLE)
        return
    if outcome is not None:
        emit(outcome, as_json)


def _safe_url(target: Target) -> str:
    try:
        return target.url
    except ConfigError:
        return "<unknown url>"


# --- rendering ------------------------------------------------------------------------------------


def human_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def _state(state: Any) -> Text:
    return Text(str(state), style=STATE_STYLES.get(str(state), ""))


def _last_exit(exit_doc: Any) -> str:
    if not exit_doc:
        return "-"
    how = f"signal {exit_doc['signal']}" if exit_doc.get("signal") else f"code {exit_doc.get('code')}"
    return f"{how} at {exit_doc.get('at')}"


def _table(jobs: list[dict[str, Any]]) -> RenderableType:
    table = Table(title="pycron")
    for column in ("name", "state", "pid", "uptime", "restarts", "last exit", "next run", "reason"):
        table.add_column(column, justify="right" if column in ("pid", "uptime", "restarts") else "left")
    for job in jobs:
        table.add_row(
            Text(str(job.get("name"))),
            _state(job.get("state")),
            str(job.get("pid") or "-"),
            human_uptime(job.get("uptime_s")),
            str(job.get("restarts", 0)),
            _last_exit(job.get("last_exit")),
            _next_run(job.get("schedules") or []),
            Text(str(job.get("reason") or "")),
        )
    return table


def _next_run(schedules: list[dict[str, Any]]) -> str:
    """The earliest scheduled action (``run 2026-11-23T23:30:00.000Z``), or ``-``."""
    upcoming = sorted((str(s.get("next")), str(s.get("action"))) for s in schedules if s.get("next"))
    return f"{upcoming[0][1]} {upcoming[0][0]}" if upcoming else "-"


def _state_line(job: dict[str, Any]) -> RenderableType:
    line = Text.assemble((str(job.get("name")), "bold"), ": ", _state(job.get("state")))
    if job.get("pid"):
        line.append(f" (pid {job['pid']}, up {human_uptime(job.get('uptime_s'))})")
    if job.get("reason"):
        line.append(f" - {job['reason']}")
    return line


def _log_text(line: dict[str, Any]) -> str:
    return f"{line.get('at')} {line.get('stream')} | {line.get('text')}"


# --- the commands ---------------------------------------------------------------------------------


def _target(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command shares: --url, --token, --config, --data-dir, --json."""
    fn = json_option(fn)
    fn = click.option("--data-dir", "data_dir", help="Data directory of pycron (for its token file).")(fn)
    fn = click.option(
        "--config",
        "config_path",
        help=f"pycron config for the default URL and token (default: ${CONFIG_ENV}, configs/pycron.yaml).",
    )(fn)
    fn = click.option(
        "--token", help=f"Token for start/stop/restart (default: ${TOKEN_ENV}, web.token, token file)."
    )(fn)
    return click.option(
        "--url", help="pycron's web API (default: http://<web.host>:<web.port> of the config)."
    )(fn)


def _make_target(opts: dict[str, Any]) -> Target:
    return Target(opts["url"], opts["token"], opts["config_path"], opts["data_dir"])


@click.group("pycron")
def pycron_group() -> None:
    """The supervisor: list jobs, start/stop/restart them, read their logs."""


@pycron_group.command("info")
@_target
def info_command(**opts: Any) -> None:
    """Every job: state, pid, uptime, restarts, last exit, reason."""
    target = _make_target(opts)
    _run(target, opts["as_json"], lambda: _outcome(lambda: request(target, "GET", "/processes", {}), _table))


def _action(action: str, name: str, wait: float, opts: dict[str, Any]) -> None:
    target = _make_target(opts)
    path = f"/processes/{urllib.parse.quote(name, safe='')}/{action}"

    def call() -> Any:
        return request(target, "POST", path, {"wait": f"{wait:g}"}, timeout=wait + TIMEOUT_S)

    _run(target, opts["as_json"], lambda: _outcome(call, _state_line))


def _wait_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--wait",
        type=click.FloatRange(0, 600),
        default=30.0,
        show_default=True,
        help="Seconds to wait for the job to settle (0: return at once).",
    )(fn)


@pycron_group.command("start")
@click.argument("name")
@_wait_option
@_target
def start_command(name: str, wait: float, **opts: Any) -> None:
    """Start a job (a FATAL or EXITED one too) and print its state."""
    _action("start", name, wait, opts)


@pycron_group.command("stop")
@click.argument("name")
@_wait_option
@_target
def stop_command(name: str, wait: float, **opts: Any) -> None:
    """Stop a job (its stop signal, then SIGKILL after the timeout) and print its state."""
    _action("stop", name, wait, opts)


@pycron_group.command("restart")
@click.argument("name")
@_wait_option
@_target
def restart_command(name: str, wait: float, **opts: Any) -> None:
    """Stop a job, then start it, and print its state."""
    _action("restart", name, wait, opts)


@pycron_group.command("logs")
@click.argument("name")
@click.option(
    "--tail", type=click.IntRange(1, RING_LINES), default=100, show_default=True, help="Last N lines."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl+C.")
@_target
def logs_command(name: str, tail: int, follow: bool, **opts: Any) -> None:
    """A job's last output lines (`at stream | text`); --follow streams new ones."""
    target = _make_target(opts)
    path = f"/processes/{urllib.parse.quote(name, safe='')}/logs"
    as_json = bool(opts["as_json"])

    def tail_lines() -> Outcome | None:
        """The lines; as they are, one per line (a job's text is not rich markup, nor wrapped)."""
        outcome = _outcome(lambda: request(target, "GET", path, {"tail": tail}), lambda _: "")
        if as_json or not outcome.ok:
            return outcome
        for line in outcome.data:
            click.echo(_log_text(line))
        return None

    def stream() -> Outcome | None:
        """Print each line as it comes (``--json``: one JSON document per line)."""
        try:
            with _open(target, "GET", path, {"tail": tail, "follow": 1}, FOLLOW_IDLE_S) as response:
                for line in _sse_data(response):
                    click.echo(json.dumps(line) if as_json else _log_text(line))
        except Refused as exc:
            return failure(exc.message, code=exc.code)
        return None

    try:
        _run(target, as_json, stream if follow else tail_lines)
    except KeyboardInterrupt:  # Ctrl+C ends --follow: not an error
        sys.exit(0)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def _sse_data(response: Any) -> Iterator[dict[str, Any]]:
    """The decoded ``data`` of each server-sent event until the server ends the stream."""
    data: list[str] = []
    while True:
        try:
            raw = response.readline()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(str(exc)) from None
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield json.loads("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
