"""Run ``python -m pycron`` on a YAML written by the test, talk to its web API, always stop it.

A :class:`PycronRun` is a real pycron process (its own session) on a free web port. Teardown sends
it SIGTERM (so it stops its jobs in order, as an operator's Ctrl+C would) and waits; if it does not
exit in time it and its group are SIGKILLed. Jobs are also started with PDEATHSIG, so none outlives
a killed pycron.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, Child, Processes, free_port

READY_LINE = r"pycron ready: web (http://\S+)"


@dataclass
class PycronRun:
    child: Child
    url: str
    data_dir: Path
    config: Path
    token: str = field(default="")

    def request(
        self, method: str, path: str, *, token: str | None = None, timeout: float = 30
    ) -> tuple[int, Any]:
        """``(status, decoded JSON body)``; an HTTP error status is returned, not raised."""
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            return exc.code, json.loads(body) if body.startswith(b"{") else body.decode()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (status, body)
        return body

    def post(self, path: str) -> Any:
        status, body = self.request("POST", path, token=self.token or self.read_token())
        assert status == 200, (status, body)
        return body

    def job(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.get(f"/processes/{name}")
        return body

    def read_token(self) -> str:
        return (self.data_dir / "pycron.token").read_text().strip()

    def wait_line(self, pattern: str, timeout: float = 30) -> str:
        return self.child.wait_for_line(pattern, timeout).group(0)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Signal pycron itself (not its group: it must stop its jobs) and return its exit status;
        its whole output is then in ``child.lines``."""
        if self.child.popen.poll() is None:
            self.child.popen.send_signal(sig)
        try:
            self.child.read_rest(timeout)
        except subprocess.TimeoutExpired:
            self.child.kill(signal.SIGKILL)
            raise
        return self.child.popen.wait(timeout)


StartPycron = Callable[..., PycronRun]


@pytest.fixture
def start_pycron(procs: Processes, tmp_path: Path) -> Iterator[StartPycron]:
    """``start_pycron(yaml_text, env=None, data_dir=None, args=())`` -> a running :class:`PycronRun`."""
    runs: list[PycronRun] = []

    def start(
        yaml_text: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        args: tuple[str, ...] = (),
        ready_timeout: float = 30,
    ) -> PycronRun:
        data = data_dir or tmp_path / "data"
        config = tmp_path / f"pycron{len(runs)}.yaml"
        config.write_text(textwrap.dedent(yaml_text))
        child = procs.spawn(
            [sys.executable, "-m", "pycron", "--config", str(config), "--data-dir", str(data), *args],
            env={"BOURSE_WEB_PORT": str(free_port()), **(env or {})},
        )
        url = child.wait_for_line(READY_LINE, ready_timeout).group(1)
        run = PycronRun(child, url, data, config)
        runs.append(run)
        return run

    try:
        yield start
    finally:
        for run in runs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.terminate()


def script(tmp_path: Path, name: str, body: str) -> str:
    """Write a small Python job script into ``tmp_path`` and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def pids_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist (a zombie counts as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


__all__ = ["ROOT", "PycronRun", "StartPycron", "pids_alive", "script", "start_pycron"]
