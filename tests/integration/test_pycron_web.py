"""pycron's web API and ``cli.py pycron`` against a real ``python -m pycron`` running tiny jobs."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Child, Processes, free_port

pytestmark = pytest.mark.integration

SLEEPER = """
import sys, time
for i in range(1, 21):
    print(f"line {i}", flush=True)
print("to stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""
TICKER = """
import itertools, time
for i in itertools.count(1):
    print(f"tick {i}", flush=True)
    time.sleep(0.2)
"""
CRASHER = """
import sys
print("crashing", flush=True)
sys.exit(1)
"""
SLEEPER_JOB = {"command": ["python", "{dir}/sleeper.py"], "stop": {"timeout_s": 5}}
CRASHER_JOB = {
    "command": ["python", "{dir}/crasher.py"],
    "backoff": {"initial_s": 60, "max_s": 60, "jitter": 0},
}
TOKEN = "test-token-0123456789abcdef"
JOB_FIELDS = {"name", "state", "pid", "uptime_s", "restarts", "last_exit", "reason", "command", "log_file"}


@dataclass
class Pycron:
    child: Child
    url: str
    config: Path
    data_dir: Path

    def token_file(self) -> Path:
        return self.data_dir / "pycron.token"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Message
    """Case-insensitive, as HTTP header names are."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BOURSE_* setting of the developer's shell leaks into pycron or the CLI."""
    for key in list(os.environ):
        if key.startswith("BOURSE_"):
            monkeypatch.delenv(key)


def start_pycron(
    procs: Processes,
    tmp_path: Path,
    jobs: dict[str, dict[str, Any]],
    port: int = 0,
    env: dict[str, str] | None = None,
) -> Pycron:
    for name, source in (("sleeper.py", SLEEPER), ("ticker.py", TICKER), ("crasher.py", CRASHER)):
        (tmp_path / name).write_text(source)
    text = json.dumps(jobs).replace("{dir}", str(tmp_path))
    config = tmp_path / "pycron.yaml"
    config.write_text(f"web: {{port: {port}}}\njobs: {text}\n")  # JSON is YAML
    data_dir = tmp_path / "data"
    child = procs.python("-m", "pycron", "--config", str(config), "--data-dir", str(data_dir), env=env)
    match = child.wait_for_line(r"pycron ready: web (http://\S+)")
    return Pycron(child, match.group(1), config, data_dir)


def call(method: str, url: str, token: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    for key, value in {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}.items():
        request.add_header(key, value)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            body = response.read()
            status, reply_headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        with exc:
            body, status, reply_headers = exc.read(), exc.code, exc.headers
    is_json = str(reply_headers.get("Content-Type", "")).startswith("application/json")
    return Reply(status, json.loads(body) if is_json else body.decode(), reply_headers)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


def state(pycron: Pycron, name: str) -> Any:
    return call("GET", f"{pycron.url}/processes/{name}").body["state"]


def sse(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=20)


def sse_events(response: Any) -> Iterator[dict[str, str]]:
    """Each event of a server-sent event stream as ``{"id", "event", "data"}`` (comments skipped)."""
    event: dict[str, str] = {}
    while raw := response.readline():
        line = raw.decode().rstrip("\n")
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            event[key] = value


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "pycron", *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


# --- reading --------------------------------------------------------------------------------------


def test_processes_when_listed_then_each_job_document_has_its_fields(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB, "crasher": CRASHER_JOB})
    wait_for(lambda: state(pycron, "sleeper") == "ready", what="sleeper ready")

    reply = call("GET", f"{pycron.url}/processes")

    assert reply.status == 200 and reply.headers.get("Content-Type", "").startswith("application/json")
    assert [job["name"] for job in reply.body] == ["sleeper", "crasher"]
    sleeper = reply.body[0]
    assert set(sleeper) >= JOB_FIELDS
    assert sleeper["state"] == "ready" and isinstance(sleeper["pid"], int) and sleeper["restarts"] == 0
    assert reply.headers.get("Access-Control-Allow-Origin") is None


def test_process_when_named_then_its_document_and_when_unknown_then_404(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})

    assert call("GET", f"{pycron.url}/processes/sleeper").body["name"] == "sleeper"
    unknown = call("GET", f"{pycron.url}/processes/nope")
    assert unknown.status == 404
    assert unknown.body["ok"] is False and unknown.body["error"]["code"] == "unknown_job"
    assert "sleeper" in unknown.body["error"]["message"]


def test_logs_when_tail_then_the_last_lines_and_a_bad_tail_then_400(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    url = f"{pycron.url}/processes/sleeper/logs"
    wait_for(lambda: any(line["text"] == "to stderr" for line in call("GET", url).body), what="output")

    lines = call("GET", f"{url}?tail=3").body

    assert [(line["stream"], line["text"]) for line in lines] == [
        ("stdout", "line 19"),
        ("stdout", "line 20"),
        ("stderr", "to stderr"),
    ]
    assert {"seq", "at"} <= set(lines[0])
    bad = call("GET", f"{url}?tail=zero")
    assert bad.status == 400 and bad.body["error"]["code"] == "bad_request"
    assert bad.body["error"]["message"].startswith("tail: expected an integer from 1 to 2000")


def test_logs_when_follow_then_the_tail_then_live_lines_as_events(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"ticker": {"command": ["python", "{dir}/ticker.py"]}})
    wait_for(lambda: len(call("GET", f"{pycron.url}/processes/ticker/logs").body) >= 3, what="3 ticks")

    with sse(f"{pycron.url}/processes/ticker/logs?tail=2&follow=1") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = (event for event in sse_events(response) if '"stdout"' in event["data"])
        seen = [next(events) for _ in range(4)]  # 2 of the tail, then 2 live ones

    assert {event["event"] for event in seen} == {"log"}
    numbers = [int(json.loads(event["data"])["text"].removeprefix("tick ")) for event in seen]
    assert numbers == list(range(numbers[0], numbers[0] + 4))


# --- changing: the token --------------------------------------------------------------------------


def test_post_when_no_token_or_a_wrong_one_then_401_and_the_job_is_unchanged(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    wait_for(lambda: state(pycron, "sleeper") == "ready", what="sleeper ready")
    before = call("GET", f"{pycron.url}/processes/sleeper").body

    for token in (None, "wrong-token-0123456789"):
        reply = call("POST", f"{pycron.url}/processes/sleeper/stop", token=token)
        assert reply.status == 401
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
        message = reply.body["error"]["message"]
        assert "web.token" in message and "BOURSE_PYCRON_TOKEN" in message
        assert str(pycron.token_file()) in message

    after = call("GET", f"{pycron.url}/processes/sleeper").body
    assert (after["state"], after["pid"]) == ("ready", before["pid"])


def test_post_when_the_generated_token_then_stop_start_and_restart_work(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    assert stat.S_IMODE(pycron.token_file().stat().st_mode) == 0o600
    token = pycron.token_file().read_text().strip()
    wait_for(lambda: state(pycron, "sleeper") == "ready", what="sleeper ready")
    first_pid = call("GET", f"{pycron.url}/processes/sleeper").body["pid"]

    stopped = call("POST", f"{pycron.url}/processes/sleeper/stop?wait=10", token=token)
    assert stopped.status == 200, stopped.body
    assert (stopped.body["state"], stopped.body["pid"]) == ("stopped", None)

    started = call("POST", f"{pycron.url}/processes/sleeper/start?wait=10", token=token)
    assert started.body["state"] == "ready" and started.body["pid"] not in (None, first_pid)

    restarted = call("POST", f"{pycron.url}/processes/sleeper/restart?wait=10", token=token)
    assert restarted.body["state"] == "ready" and restarted.body["pid"] != started.body["pid"]

    bad_wait = call("POST", f"{pycron.url}/processes/sleeper/stop?wait=forever", token=token)
    assert bad_wait.status == 400 and bad_wait.body["error"]["message"].startswith("wait: expected seconds")


def test_post_when_the_token_is_in_the_environment_then_that_token_is_the_one(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB}, env={"BOURSE_PYCRON_TOKEN": TOKEN})

    assert not pycron.token_file().exists()
    assert call("POST", f"{pycron.url}/processes/sleeper/stop?wait=10", token="x" * 20).status == 401
    reply = call("POST", f"{pycron.url}/processes/sleeper/stop?wait=10", token=TOKEN)
    assert reply.status == 200 and reply.body["state"] == "stopped"


def test_method_when_get_on_a_post_route_or_post_on_a_get_route_then_405_and_nothing_changes(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    wait_for(lambda: state(pycron, "sleeper") == "ready", what="sleeper ready")
    token = pycron.token_file().read_text().strip()

    for action in ("start", "stop", "restart"):
        reply = call("GET", f"{pycron.url}/processes/sleeper/{action}")
        assert reply.status == 405 and reply.body["error"]["code"] == "method_not_allowed"
        assert reply.headers.get("Allow") == "POST"
    assert call("POST", f"{pycron.url}/processes", token=token).status == 405
    assert call("POST", f"{pycron.url}/health", token=token).status == 405
    assert state(pycron, "sleeper") == "ready"


# --- health, events, page -------------------------------------------------------------------------


def test_health_when_every_job_ready_then_200(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    pycron.child.wait_for_line("all jobs ready")

    reply = call("GET", f"{pycron.url}/health")

    assert reply.status == 200 and reply.body["ok"] is True
    assert reply.body["jobs"] == {"sleeper": "ready"} and reply.body["failing"] == []


def test_health_when_a_job_keeps_crashing_then_503_naming_it(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB, "crasher": CRASHER_JOB})
    wait_for(lambda: state(pycron, "crasher") == "backoff", what="crasher in backoff")

    reply = call("GET", f"{pycron.url}/health")

    assert reply.status == 503 and reply.body["ok"] is False
    assert reply.body["failing"] == ["crasher"]


def test_events_when_a_job_is_stopped_then_a_stopped_event_is_streamed_and_replayed(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})
    pycron.child.wait_for_line("all jobs ready")
    token = pycron.token_file().read_text().strip()

    with sse(f"{pycron.url}/events") as response:
        assert call("POST", f"{pycron.url}/processes/sleeper/stop", token=token).status == 200
        stopped = next(e for e in sse_events(response) if e["event"] == "stopped")
    document = json.loads(stopped["data"])
    assert document["job"] == "sleeper" and document["kind"] == "stopped"
    assert int(stopped["id"]) == document["seq"]

    with sse(f"{pycron.url}/events", headers={"Last-Event-ID": str(document["seq"] - 1)}) as response:
        assert json.loads(next(sse_events(response))["data"]) == document


def test_page_when_fetched_then_self_contained_html(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})

    reply = call("GET", f"{pycron.url}/")

    assert reply.status == 200 and reply.headers.get("Content-Type", "").startswith("text/html")
    assert "<table" in reply.body and "EventSource" in reply.body and "sessionStorage" in reply.body
    assert "src=" not in reply.body and "href=" not in reply.body and "@import" not in reply.body
    assert "default-src 'none'" in reply.headers.get("Content-Security-Policy", "")


# --- cli.py pycron --------------------------------------------------------------------------------


def test_cli_when_pycron_runs_then_info_stop_start_and_logs_work(procs: Processes, tmp_path: Path) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB}, port=free_port())
    pycron.child.wait_for_line("all jobs ready")
    where = ("--config", str(pycron.config), "--data-dir", str(pycron.data_dir))

    info = run_cli("info", "--json", *where)
    assert info.returncode == 0, info.stderr
    assert [job["state"] for job in json.loads(info.stdout)["result"]] == ["ready"]
    table = run_cli("info", *where)
    assert "sleeper" in table.stdout and "ready" in table.stdout

    stop = run_cli("stop", "sleeper", "--json", *where)
    assert stop.returncode == 0, stop.stderr
    assert json.loads(stop.stdout)["result"]["state"] == "stopped"
    start = run_cli("start", "sleeper", *where)
    assert start.returncode == 0 and start.stdout.startswith("sleeper: ready (pid "), start.stdout

    logs = run_cli("logs", "sleeper", "--tail", "2", "--json", *where)
    assert [line["text"] for line in json.loads(logs.stdout)["result"]][-1] == "to stderr"
    text = run_cli("logs", "sleeper", "--tail", "1", *where)
    assert text.stdout.endswith(" stderr | to stderr\n")

    unknown = run_cli("stop", "nope", *where)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: unknown job 'nope'")
    assert "Traceback" not in unknown.stderr


def test_cli_when_the_token_is_wrong_then_the_server_message_and_exit_1(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"sleeper": SLEEPER_JOB})

    result = run_cli("stop", "sleeper", "--url", pycron.url, "--token", "wrong-token-0123456789")

    assert result.returncode == 1
    assert result.stderr.startswith("error: POST /processes/sleeper/stop needs 'Authorization: Bearer")


def test_cli_when_logs_follow_then_lines_stream_until_ctrl_c_and_exit_0(
    procs: Processes, tmp_path: Path
) -> None:
    pycron = start_pycron(procs, tmp_path, {"ticker": {"command": ["python", "{dir}/ticker.py"]}})
    cli = procs.python(str(ROOT / "cli.py"), "pycron", "logs", "ticker", "--follow", "--url", pycron.url)

    first = int(cli.wait_for_line(r"stdout \| tick (\d+)$").group(1))
    cli.wait_for_line(rf"stdout \| tick {first + 2}$")
    cli.kill(signal.SIGINT)

    assert cli.popen.wait(10) == 0
    assert "Traceback" not in cli.read_rest() and "Aborted" not in "\n".join(cli.lines)


def test_cli_when_nothing_listens_then_one_line_and_exit_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run_cli("info", "--url", url)

    assert result.returncode == 2
    assert result.stderr == f"error: pycron is not running at {url} (start it with ./start.sh)\n"
    assert result.stdout == ""
