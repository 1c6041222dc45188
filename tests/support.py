"""Shared test plumbing: free ports and child processes that are always cleaned up.

Tests never use the default ports of DESIGN.md; they ask the OS for free ones. Every process a test
starts goes through :class:`Processes`, which kills the whole process group on teardown, even when
the test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_endpoint() -> str:
    """A ``tcp://127.0.0.1:<port>`` endpoint on a free port."""
    return f"tcp://127.0.0.1:{free_port()}"


class Child:
    """A child process started in its own session, with its stdout read line by line."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.popen = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._partial = b""
        self._eof = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Block until a line of output matches ``pattern``; fail with the output seen so far.

        Reads the pipe's file descriptor directly (no buffered readline), so several lines that
        arrive in one chunk are all seen.
        """
        regex = re.compile(pattern)
        checked = 0
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                for line in self.lines[checked:]:
                    if match := regex.search(line):
                        return match
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    break
                if not sel.select(remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._eof = True
                    if self._partial:
                        self.lines.append(self._partial.decode(errors="replace"))
                        self._partial = b""
                    continue
                *complete, self._partial = (self._partial + chunk).split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in complete)
        output = "\n".join(self.lines[-40:])
        raise AssertionError(f"no line matching {pattern!r} from {self.args} within {timeout}s:\n{output}")

    def read_rest(self, timeout: float = 10.0) -> str:
        """Wait for exit and return all output."""
        out, _ = self.popen.communicate(timeout=timeout)
        rest = self._partial + (out or b"")
        self._partial = b""
        self.lines.extend(rest.decode(errors="replace").splitlines())
        return "\n".join(self.lines)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the child's whole process group (it is its own session leader)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        self.kill(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            return self.popen.wait(timeout)


class Processes:
    """Starts children for one test and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def python(self, *args: str, env: dict[str, str] | None = None) -> Child:
        """Start ``python <args>`` with the interpreter running the tests."""
        return self.spawn([sys.executable, *args], env=env)

    def spawn(self, args: Sequence[str], env: dict[str, str] | None = None) -> Child:
        """Start any command (in its own session, killed with its group at teardown)."""
        child = Child(args, env=env)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.kill(signal.SIGKILL)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(5)
            if child.popen.stdout:
                child.popen.stdout.close()


def processes_fixture() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()
