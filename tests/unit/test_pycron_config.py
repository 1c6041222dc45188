"""pycron's configuration: the shipped file, dependency order, and one-line errors for every mistake."""

from __future__ import annotations

import dataclasses
import signal
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pycron.config import PycronConfig, find_cycle, load_pycron, resolve_python, token_file
from pycron.windows import in_window
from tests.support import ROOT
from trader.config import ConfigError
from trader.config.files import check_all

SHIPPED = ROOT / "configs" / "pycron.yaml"
TOKEN = "0123456789abcdef0123"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pycron.yaml"
    path.write_text(text)
    return path


def jobs(tmp_path: Path, *lines: str) -> PycronConfig:
    return load_pycron(write(tmp_path, "jobs:\n" + "".join(f"  {line}\n" for line in lines)), {})


def test_shipped_file_when_loaded_then_exchange_then_trader_with_their_probes() -> None:
    config = load_pycron(SHIPPED, {})
    assert (config.web.host, config.web.port, config.web.token) == ("127.0.0.1", 8081, None)
    exchange, trader = config.jobs["exchange"], config.jobs["trader"]
    assert exchange.command == ("python", "services/exchange_service.py")
    assert (exchange.readiness.type, exchange.readiness.pattern) == ("log", "exchange ready on")
    assert trader.depends_on == ("exchange",)
    assert trader.readiness.type == "command"
    assert trader.readiness.argv == ("python", "cli.py", "ping", "--timeout", "1")
    assert trader.restart == "on-failure" and trader.crash_loop.max_restarts > 0
    assert trader.stop.signum is signal.SIGTERM
    assert config.start_order() == ("exchange", "trader", "history", "strategies-0", "strategies-1")
    assert config.stop_order() == ("strategies-1", "strategies-0", "history", "trader", "exchange")
    assert config.dependents("exchange") == ("trader",)
    assert config.dependents("trader") == ("history", "strategies-0", "strategies-1")
    history = config.jobs["history"]
    assert (history.autostart, history.restart, history.depends_on) == (False, "never", ("trader",))
    assert [(s.action, s.tz, s.missed) for s in history.schedules] == [
        ("run", "America/New_York", "run-once")
    ]


def test_shipped_file_when_checked_by_config_check_then_ok() -> None:
    results = {result.path.name: result.error for result in check_all(ROOT / "configs", {})}
    assert results["pycron.yaml"] is None and results["pycron_docker.yaml"] is None


def test_docker_file_when_loaded_then_display_vnc_tws_trader_with_ib_maintenance_windows() -> None:
    config = load_pycron(ROOT / "configs" / "pycron_docker.yaml", {})
    assert config.start_order() == ("xvfb", "vnc", "tws", "trader", "strategies-0", "strategies-1", "history")
    tws = config.jobs["tws"]
    assert tws.command[-1] == "-inline" and tws.env["DISPLAY"] == ":1"
    assert (tws.readiness.type, tws.readiness.pattern) == ("log", "Login has completed")
    assert [probe.type for probe in tws.health] == ["tcp"]
    windows = [window.window() for window in tws.maintenance]
    eastern = ZoneInfo("America/New_York")

    def inside(year: int, month: int, day: int, hour: int, minute: int) -> bool:
        when = datetime(year, month, day, hour, minute, tzinfo=eastern)
        return any(in_window(w, when) for w in windows)

    assert inside(2026, 11, 24, 23, 50) and inside(2026, 11, 25, 0, 30)  # nightly restart, Tue->Wed
    assert not inside(2026, 11, 25, 0, 50) and not inside(2026, 11, 24, 23, 40)
    assert inside(2026, 11, 22, 6, 0) and not inside(2026, 11, 22, 7, 30)  # Sunday re-login


def test_config_when_loaded_then_it_is_immutable() -> None:
    config = load_pycron(SHIPPED, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.web.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.jobs["x"] = config.jobs["trader"]  # type: ignore[index]


def test_job_when_only_command_given_then_defaults_apply(tmp_path: Path) -> None:
    job = jobs(tmp_path, "a: {command: [python, a.py]}").jobs["a"]
    assert job.readiness.type == "started" and job.health == () and job.depends_on == ()
    assert (job.restart, job.success_exit_codes, job.autostart) == ("on-failure", (0,), True)
    assert (job.backoff.initial_s, job.backoff.max_s, job.backoff.factor) == (1.0, 60.0, 2.0)
    assert job.stop.signal == "SIGTERM" and job.stop.command is None
    assert job.argv("/venv/bin/python") == ("/venv/bin/python", "a.py")
    assert resolve_python(["pythonista", "x"], "/p") == ("pythonista", "x")


def test_start_order_when_no_constraint_then_file_order_is_kept(tmp_path: Path) -> None:
    config = jobs(
        tmp_path,
        "web: {command: [w], depends_on: [db, cache]}",
        "z: {command: [z]}",
        "cache: {command: [c]}",
        "db: {command: [d]}",
        "worker: {command: [k], depends_on: [db]}",
    )
    assert config.start_order() == ("z", "cache", "db", "web", "worker")
    assert config.stop_order() == ("worker", "web", "db", "cache", "z")


def test_log_probe_when_loaded_then_its_pattern_is_a_regex(tmp_path: Path) -> None:
    config = jobs(tmp_path, "tws: {command: [t], readiness: {type: log, pattern: 'Login has completed'}}")
    assert config.jobs["tws"].readiness.regex.search("IBC: Login has completed")


def test_schedules_and_windows_when_valid_then_loaded_with_their_time_zone(tmp_path: Path) -> None:
    config = jobs(
        tmp_path,
        "tws:",
        "    command: [t]",
        "    schedules:",
        "      - {cron: '0 6 * * mon-fri', tz: America/New_York, action: restart}",
        "      - {cron: '30 17 * * *', tz: Europe/Paris, action: run,",
        "         missed: run-once, overlap: kill, timeout_s: 60}",
        "    maintenance:",
        "      - {tz: America/New_York, days: [mon-fri], start: '23:45', end: '00:15'}",
        "      - {tz: UTC, cron: '0 5 * * sun', duration: 1h}",
    )
    job = config.jobs["tws"]
    assert [s.action for s in job.schedules] == ["restart", "run"]
    assert job.schedules[1].missed == "run-once" and job.schedules[1].timeout_s == 60
    overnight, weekly = (window.window() for window in job.maintenance)
    assert overnight.duration == timedelta(minutes=30) and str(overnight.tz) == "America/New_York"
    assert weekly.duration == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "jobs:\n  trader: {command: [t], comand: [x]}\n",
            "pycron.yaml: jobs.trader.comand: unknown key (expected one of: autostart, backoff, command",
        ),
        ("wbe: {}\n", "pycron.yaml: wbe: unknown key (expected one of: data_dir, jobs, logging, web)"),
        (
            "jobs:\n  trader: {command: [t], autostart: yes please}\n",
            "jobs.trader.autostart: expected true or false",
        ),
        (
            "jobs:\n  trader: {command: [t], backoff: {max_s: soon}}\n",
            "jobs.trader.backoff.max_s: expected a number",
        ),
        (
            "jobs:\n  trader: {command: [t], backoff: {jitter: 2}}\n",
            "jobs.trader.backoff.jitter: must be between 0",
        ),
        (
            "jobs:\n  trader: {command: [t], restart: sometimes}\n",
            "jobs.trader.restart: expected one of 'never'",
        ),
        ("jobs:\n  trader: {cwd: .}\n", "pycron.yaml: jobs.trader.command: missing required key"),
        (
            "jobs:\n  trader: {command: python services/trader_service.py}\n",
            "pycron.yaml: jobs.trader.command: expected a list of a string, got 'python services/trader",
        ),
        ("jobs:\n  trader: {command: []}\n", "pycron.yaml: jobs.trader.command: expected a non-empty list"),
        (
            "jobs:\n  trader: {command: [t], env: {PORT: 1}}\n",
            "pycron.yaml: jobs.trader.env.PORT: expected a string",
        ),
        (
            "jobs:\n  exchange: {command: [e]}\n  trader: {command: [t], depends_on: [exchnge]}\n",
            "pycron.yaml: jobs: trader.depends_on: unknown job 'exchnge' (jobs: exchange, trader)",
        ),
        (
            "jobs:\n  a: {command: [a], depends_on: [b]}\n  b: {command: [b], depends_on: [c]}\n"
            "  c: {command: [c], depends_on: [a]}\n",
            "pycron.yaml: jobs: a.depends_on: dependency cycle a -> b -> c -> a",
        ),
        (
            "jobs:\n  a: {command: [a], depends_on: [a]}\n",
            "pycron.yaml: jobs: a.depends_on: dependency cycle a -> a",
        ),
        ("jobs:\n  Trader: {command: [t]}\n", "pycron.yaml: jobs: Trader: bad job name"),
        (
            "jobs:\n  trader: {command: [t], stop: {signal: SIGTREM}}\n",
            "pycron.yaml: jobs.trader.stop.signal: unknown signal 'SIGTREM'",
        ),
        (
            "jobs:\n  tws: {command: [t], readiness: {type: log, pattern: 'Login (has'}}\n",
            "pycron.yaml: jobs.tws.readiness.pattern: invalid regular expression 'Login (has': missing )",
        ),
        (
            "jobs:\n  tws: {command: [t], readiness: {type: udp}}\n",
            "pycron.yaml: jobs.tws.readiness.type: expected one of 'started', 'tcp'",
        ),
        (
            "jobs:\n  tws: {command: [t], readiness: {type: tcp}}\n",
            "pycron.yaml: jobs.tws.readiness: port: required by a tcp probe",
        ),
        (
            "jobs:\n  tws: {command: [t], health: [{type: tcp, port: 1, url: 'http://x/'}]}\n",
            "pycron.yaml: jobs.tws.health: [0].url: not used by a tcp probe",
        ),
        (
            "jobs:\n  tws: {command: [t], health: [{type: http, url: 'localhost:80'}]}\n",
            "pycron.yaml: jobs.tws.health: [0].url: expected an http:// or https:// URL",
        ),
        (
            "jobs:\n  tws: {command: [t], health: [{type: started}]}\n",
            "pycron.yaml: jobs.tws.health: [0].type: 'started' is a readiness probe only",
        ),
        (
            "jobs:\n  tws: {command: [t], schedules: [{cron: '0 6 * * *', tz: Europe/Pariss}]}\n",
            "pycron.yaml: jobs.tws.schedules[0].tz: unknown time zone 'Europe/Pariss'",
        ),
        (
            "jobs:\n  tws: {command: [t], schedules: [{cron: '0 6 * *', tz: UTC}]}\n",
            "pycron.yaml: jobs.tws.schedules[0].cron: invalid cron expression '0 6 * *'",
        ),
        (
            "jobs:\n  tws: {command: [t], schedules: [{cron: '0 6 * * *'}]}\n",
            "jobs.tws.schedules[0].tz: missing required key",
        ),
        (
            "jobs:\n  tws:\n    command: [t]\n"
            "    schedules: [{cron: '0 6 * * *', tz: UTC, action: stop, timeout_s: 5}]\n",
            "pycron.yaml: jobs.tws.schedules: [0].timeout_s: only a run schedule has a timeout",
        ),
        (
            "jobs:\n  tws: {command: [t], maintenance: [{tz: UTC, cron: '0 5 * * *'}]}\n",
            "pycron.yaml: jobs.tws.maintenance: [0].duration: required with cron",
        ),
        (
            "jobs:\n  tws:\n    command: [t]\n"
            "    maintenance: [{tz: UTC, days: [sun], start: '25:00', end: '01:00'}]\n",
            "pycron.yaml: jobs.tws.maintenance[0].start: expected a time of day HH:MM",
        ),
        (
            "jobs:\n  tws:\n    command: [t]\n"
            "    maintenance: [{tz: UTC, days: [mon-fry], start: '23:00', end: '01:00'}]\n",
            "pycron.yaml: jobs.tws.maintenance: [0].",
        ),
        ("web: {token: short}\n", "pycron.yaml: web.token: must be at least 16 characters"),
        ("web: {port: 70000}\n", "pycron.yaml: web.port: must be between 0 and 65535, got 70000"),
    ],
)
def test_config_when_file_is_wrong_then_one_line_error_names_file_job_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pycron(write(tmp_path, text), {})
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "pycron.yaml") + ": ")
    assert "\n" not in str(caught.value)
    results = check_all(tmp_path, {})  # cli.py config check reports the same line
    assert [result.error for result in results] == [str(caught.value)]


def test_token_when_env_set_then_it_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"web: {{token: {TOKEN}}}\n")
    assert load_pycron(path, {}).web.token == TOKEN
    assert (
        load_pycron(path, {"BOURSE_PYCRON_TOKEN": "from-the-environment-1"}).web.token
        == "from-the-environment-1"
    )
    assert load_pycron(path, {"BOURSE_PYCRON_TOKEN": ""}).web.token == TOKEN
    assert load_pycron(path, {"BOURSE_WEB_PORT": "9000"}).web.port == 9000
    with pytest.raises(
        ConfigError, match=r"^environment variable BOURSE_PYCRON_TOKEN: web.token: must be at least"
    ):
        load_pycron(path, {"BOURSE_PYCRON_TOKEN": "short"})
    assert token_file(tmp_path) == tmp_path / "pycron.token"


def test_find_cycle_when_graph_is_acyclic_or_not_then_the_first_cycle_is_named() -> None:
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    assert find_cycle({"x": [], "a": ["x", "a"]}) == ["a", "a"]
