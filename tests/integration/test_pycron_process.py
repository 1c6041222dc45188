"""pycron child processes, with real Python children: output lines per stream, exit statuses,
process-group signals, grandchildren that must not outlive their job, spawn errors, one-off
commands with timeouts, and the parent-death signal. Every test kills what it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pytest

from pycron.process import ChildProcess, ExitStatus, SpawnError, run_command, spawn
from tests.support import ROOT, Processes

pytestmark = pytest.mark.integration

T = TypeVar("T")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
PY = sys.executable

SLEEPER = """
import os, time
os.write(1, f"{os.getpid()}\\n".encode())  # one write: siblings' lines never interleave
time.sleep(120)
"""

FAMILY = """
import subprocess, sys, time
for _ in range(2):
    subprocess.Popen([sys.executable, sys.argv[1]])
print("leader up", flush=True)
time.sleep(120)
"""

ORPHANING = """
import subprocess, sys
grandchild = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE)
assert grandchild.stdout is not None
print("grandchild", grandchild.stdout.readline().decode().strip(), flush=True)
sys.exit(0)
"""


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def script(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


class Output:
    """Collects ``on_line`` calls; tests await a condition on them instead of sleeping."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, stream: str, text: str) -> None:
        self.lines.append((stream, text))
        self._changed.set()

    def of(self, stream: str) -> list[str]:
        return [text for name, text in self.lines if name == stream]

    async def until(self, done: Callable[[], bool], within_s: float = 15.0) -> None:
        async with asyncio.timeout(within_s):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def pids(self, stream: str = "stdout") -> list[int]:
        return [int(text.split()[-1]) for text in self.of(stream) if text.split()[-1].isdigit()]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphaned zombie may wait for a lazy init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def gone(pids: Iterable[int], within_s: float = 5.0) -> list[int]:
    """Wait up to ``within_s`` for every pid to be gone; the ones still alive."""
    deadline = time.monotonic() + within_s
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if alive(pid)]
        if left:
            await asyncio.sleep(0.02)
    return left


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def cleanup(child: ChildProcess | None, pids: Iterable[int] = ()) -> None:
    if child is not None:
        child.kill_group()
        await child.wait()
    kill_all(pids)


# --- output ---------------------------------------------------------------------------------------


def test_spawn_when_child_writes_both_streams_then_lines_arrive_in_order_per_stream(tmp_path: Path) -> None:
    source = """
import sys
for i in range(200):
    print(f"out {i}", flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
print("no newline at the end", end="")
"""
    path = script(tmp_path, "talk.py", source)

    async def scenario() -> tuple[ExitStatus, Output]:
        output = Output()
        child = await spawn([PY, path], cwd=tmp_path, env=ENV, on_line=output)
        try:
            return await child.wait(), output
        finally:
            await cleanup(child)

    status, output = run(scenario())

    assert status == ExitStatus(code=0, signal=None)
    assert output.of("stdout") == [f"out {i}" for i in range(200)] + ["no newline at the end"]
    assert output.of("stderr") == [f"err {i}" for i in range(200)]


def test_spawn_when_line_is_huge_or_not_utf8_then_split_at_64k_and_replaced(tmp_path: Path) -> None:
    source = """
import sys
sys.stdout.buffer.write(b"x" * (2 * 65536 + 10) + b"\\n" + b"bad \\xff byte\\n")
"""
    path = script(tmp_path, "huge.py", source)

    async def scenario() -> Output:
        output = Output()
        child = await spawn([PY, path], cwd=None, env=ENV, on_line=output)
        try:
            await child.wait()
        finally:
            await cleanup(child)
        return output

    lines = run(scenario()).of("stdout")

    assert [len(line) for line in lines[:3]] == [65536, 65536, 10]
    assert lines[3] == "bad \ufffd byte"


def test_spawn_when_env_given_then_it_is_the_whole_environment(tmp_path: Path) -> None:
    path = script(
        tmp_path, "env.py", "import os\nprint(sorted(k for k in os.environ if k.startswith('PYCRON_T')))"
    )

    async def scenario() -> list[str]:
        output = Output()
        child = await spawn([PY, path], cwd=None, env={"PYCRON_TEST": "1"}, on_line=output)
        try:
            await child.wait()
        finally:
            await cleanup(child)
        return output.of("stdout")

    assert run(scenario()) == ["['PYCRON_TEST']"]


# --- exit statuses --------------------------------------------------------------------------------


def test_wait_when_child_exits_with_code_then_code_reported_to_every_waiter(tmp_path: Path) -> None:
    path = script(tmp_path, "exit.py", "import sys\nsys.exit(7)")

    async def scenario() -> tuple[list[ExitStatus], ExitStatus, bool]:
        child = await spawn([PY, path], cwd=None, env=ENV, on_line=Output())
        try:
            statuses = await asyncio.gather(child.wait(), child.wait())
            again = await child.wait()
        finally:
            await cleanup(child)
        return list(statuses), again, child.running

    statuses, again, running = run(scenario())

    assert statuses == [ExitStatus(code=7, signal=None)] * 2
    assert again == ExitStatus(code=7, signal=None)
    assert not running


def test_wait_when_group_signalled_then_signal_reported(tmp_path: Path) -> None:
    path = script(tmp_path, "sleep.py", SLEEPER)

    async def scenario() -> tuple[bool, ExitStatus, bool]:
        output = Output()
        child = await spawn([PY, path], cwd=None, env=ENV, on_line=output)
        try:
            await output.until(lambda: bool(output.of("stdout")))
            assert child.running
            sent = child.signal_group(signal.SIGTERM)
            status = await child.wait()
        finally:
            await cleanup(child)
        return sent, status, child.signal_group(signal.SIGTERM)

    sent, status, sent_after_exit = run(scenario())

    assert sent
    assert status == ExitStatus(code=None, signal=signal.SIGTERM)
    assert not sent_after_exit


# --- process groups -------------------------------------------------------------------------------


def test_signal_group_when_child_has_grandchildren_then_none_survive(tmp_path: Path) -> None:
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    leader = script(tmp_path, "family.py", FAMILY)

    async def scenario() -> tuple[int, list[int], list[int]]:
        output = Output()
        child: ChildProcess | None = None
        try:
            child = await spawn([PY, leader, sleeper], cwd=None, env=ENV, on_line=output)
            await output.until(lambda: len(output.pids()) == 2 and "leader up" in output.of("stdout"))
            family = [child.pid, *output.pids()]
            assert all(alive(pid) for pid in family)
            child.signal_group(signal.SIGTERM)
            await child.wait()
            return child.pid, output.pids(), await gone(family)
        finally:
            await cleanup(child, output.pids())

    leader_pid, grandchildren, survivors = run(scenario())

    assert len(set(grandchildren)) == 2
    assert leader_pid not in grandchildren
    assert survivors == []


def test_wait_when_leader_exits_before_grandchild_then_grandchild_killed(tmp_path: Path) -> None:
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    leader = script(tmp_path, "orphaning.py", ORPHANING)

    async def scenario() -> tuple[ExitStatus, list[int], list[int], float]:
        output = Output()
        child: ChildProcess | None = None
        try:
            child = await spawn([PY, leader, sleeper], cwd=None, env=ENV, on_line=output)
            started = time.monotonic()
            # the grandchild keeps the job's stderr pipe open: wait() only returns early if it
            # killed the group before waiting for the output to drain
            status = await child.wait()
            took = time.monotonic() - started
            return status, output.pids(), await gone(output.pids()), took
        finally:
            await cleanup(child, output.pids())

    status, grandchildren, survivors, took = run(scenario())

    assert status == ExitStatus(code=0, signal=None)
    assert len(grandchildren) == 1
    assert survivors == []
    assert took < 1.5


# --- spawn errors ---------------------------------------------------------------------------------


def test_spawn_when_command_missing_then_spawn_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-command")

    with pytest.raises(SpawnError, match=r"^command not found: '.*no-such-command'$"):
        run(spawn([missing], cwd=None, env=ENV, on_line=Output()))


def test_spawn_when_not_executable_then_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)

    with pytest.raises(SpawnError, match=r"^permission denied: '.*/x'$"):
        run(spawn([str(path)], cwd=None, env=ENV, on_line=Output()))


def test_spawn_when_cwd_missing_then_spawn_error(tmp_path: Path) -> None:
    nowhere = tmp_path / "nope"

    with pytest.raises(SpawnError, match=r"^working directory does not exist: '.*nope'$"):
        run(spawn([PY, "-c", "pass"], cwd=nowhere, env=ENV, on_line=Output()))


# --- run_command ----------------------------------------------------------------------------------


def test_run_command_when_exits_then_code_and_merged_output(tmp_path: Path) -> None:
    source = (
        "import sys\nprint('to out', flush=True)\nprint('to err', file=sys.stderr, flush=True)\nsys.exit(4)"
    )
    path = script(tmp_path, "cmd.py", source)

    result = run(run_command([PY, path], cwd=tmp_path, env=ENV, timeout_s=10))

    assert (result.code, result.timed_out) == (4, False)
    assert result.output.splitlines() == ["to out", "to err"]


def test_run_command_when_output_is_long_then_keeps_the_end(tmp_path: Path) -> None:
    path = script(tmp_path, "chatty.py", "for i in range(5000):\n    print(f'line {i}')")

    result = run(run_command([PY, path], cwd=None, env=ENV, timeout_s=10))

    assert result.code == 0
    assert 1000 < len(result.output) <= 2048
    assert result.output.splitlines()[-1] == "line 4999"


def test_run_command_when_slower_than_timeout_then_group_killed(tmp_path: Path) -> None:
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    leader = script(tmp_path, "family.py", FAMILY)

    async def scenario() -> tuple[bool, int | None, list[int], list[int]]:
        pids: list[int] = []
        try:
            result = await run_command([PY, leader, sleeper], cwd=None, env=ENV, timeout_s=1.5)
            pids = [int(line) for line in result.output.split() if line.isdigit()]
            return result.timed_out, result.code, pids, await gone(pids)
        finally:
            kill_all(pids)

    timed_out, code, grandchildren, survivors = run(scenario())

    assert timed_out
    assert code is None
    assert len(grandchildren) == 2
    assert survivors == []


def test_run_command_when_command_missing_then_spawn_error(tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="command not found"):
        run(run_command([str(tmp_path / "nothing")], cwd=None, env=ENV, timeout_s=5))


# --- parent death ---------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_spawn_when_supervisor_is_sigkilled_then_child_terminated(tmp_path: Path, procs: Processes) -> None:
    sleeper = script(tmp_path, "sleeper.py", SLEEPER)
    supervisor = script(
        tmp_path,
        "supervisor.py",
        f"""
import asyncio, os, sys
from pycron.process import spawn

async def main() -> None:
    child = await spawn([sys.executable, {sleeper!r}], cwd=None, env=dict(os.environ), on_line=print)
    print("child", child.pid, flush=True)
    await child.wait()

asyncio.run(main())
""",
    )
    fake = procs.python(supervisor, env={"PYTHONPATH": str(ROOT)})
    pid = int(fake.wait_for_line(r"child (\d+)").group(1))
    try:
        assert alive(pid)
        os.kill(fake.pid, signal.SIGKILL)  # the supervisor only: its child is in another group

        assert run(gone([pid])) == []
    finally:
        kill_all([pid])
