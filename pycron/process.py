"""Child processes of pycron: spawned in their own process group, output read line by line.

Every child is a session leader (``start_new_session``), so its pid is also its process group id
and :meth:`ChildProcess.signal_group` reaches the whole job, grandchildren included. A job's group
never outlives its leader: once the leader has exited, :meth:`ChildProcess.wait` SIGKILLs whatever
is left in the group. On Linux each child also gets ``PR_SET_PDEATHSIG=SIGTERM``, so a SIGKILLed
pycron does not leave its jobs running unsupervised.

Output is read from two pipes that pycron owns (not asyncio's subprocess pipes), so readers that a
stray grandchild keeps open can be closed after a bounded wait instead of leaking.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_LINE_BYTES = 64 * 1024
"""A longer line is handed on in pieces of this size (a child printing without newlines cannot
make pycron buffer without bound)."""
DRAIN_TIMEOUT_S = 2.0
"""How long :meth:`ChildProcess.wait` waits, after the group is gone, for the last output."""
COMMAND_OUTPUT_BYTES = 2048
"""How much of a command's output :func:`run_command` keeps (the end of it)."""
_PR_SET_PDEATHSIG = 1

_log = logging.getLogger("pycron.process")

OnLine = Callable[[str, str], object]
"""``on_line(stream, text)`` with ``stream`` ``"stdout"`` or ``"stderr"`` (its result is ignored)."""


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: ``code`` when it exited, ``signal`` (a positive number) when killed."""

    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From ``Popen.returncode`` (negative: killed by that signal)."""
        if returncode < 0:
            return cls(code=None, signal=-returncode)
        return cls(code=returncode, signal=None)

    def describe(self) -> str:
        """``exited with code 1`` / ``killed by SIGKILL``: for job logs and events."""
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        return f"exited with code {self.code}"


class SpawnError(Exception):
    """The process could not be started; the message is one line naming what was wrong."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of :func:`run_command`: ``code`` is None when it timed out or was killed."""

    code: int | None
    output: str
    """The last ~2 KiB of stdout and stderr, merged in the order written."""
    timed_out: bool


# --- spawning -------------------------------------------------------------------------------------


def _preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when pycron dies (best effort).

    The death signal is tied to the *thread* that forked, i.e. the event loop's thread. If pycron
    already died between fork and ``prctl``, the child terminates itself right away.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        try:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
        except Exception:  # best effort; never fail the exec over it
            pass

    return set_death_signal


def _spawn_error(argv: Sequence[str], cwd: Path | None, exc: OSError) -> SpawnError:
    """A one-line :class:`SpawnError` for the ``OSError`` that starting ``argv`` raised."""
    if cwd is not None and exc.filename is not None and str(exc.filename) == str(cwd):
        if isinstance(exc, FileNotFoundError):
            return SpawnError(f"working directory does not exist: {str(cwd)!r}")
        if isinstance(exc, NotADirectoryError):
            return SpawnError(f"working directory is not a directory: {str(cwd)!r}")
        return SpawnError(f"cannot enter working directory {str(cwd)!r}: {exc.strerror or exc}")
    command = argv[0] if argv else ""
    if isinstance(exc, FileNotFoundError):
        return SpawnError(f"command not found: {command!r}")
    if isinstance(exc, PermissionError):
        return SpawnError(f"permission denied: {command!r}")
    return SpawnError(f"cannot start {command!r}: {exc.strerror or exc}")


def _check_cwd(cwd: Path | None) -> None:
    if cwd is not None and not cwd.is_dir():
        if cwd.exists():
            raise SpawnError(f"working directory is not a directory: {str(cwd)!r}")
        raise SpawnError(f"working directory does not exist: {str(cwd)!r}")


class _LineReader(asyncio.Protocol):
    """Splits one pipe's bytes into lines and hands each to ``on_line``; ``done`` at end of file."""

    def __init__(self, stream: str, on_line: OnLine, done: asyncio.Future[None]) -> None:
        self._stream = stream
        self._on_line = on_line
        self._done = done
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline != -1 and newline - start <= MAX_LINE_BYTES:
                self._emit(bytes(buffer[start:newline]))
                start = newline + 1
            elif newline != -1 or len(buffer) - start > MAX_LINE_BYTES:
                self._emit(bytes(buffer[start : start + MAX_LINE_BYTES]))
                start += MAX_LINE_BYTES
            else:
                break
        del buffer[:start]

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()
        if not self._done.done():
            self._done.set_result(None)

    def _emit(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            self._on_line(self._stream, raw.decode("utf-8", errors="replace"))
        except Exception:
            _log.exception("on_line(%r, ...) failed; line dropped", self._stream)


class ChildProcess:
    """A spawned job process (the leader of its own process group)."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        readers: list[tuple[asyncio.ReadTransport, asyncio.Future[None]]],
    ) -> None:
        self._process = process
        self._readers = readers
        self.pid: int = process.pid
        self._status: ExitStatus | None = None
        self._group_gone = False
        self._waiter: asyncio.Task[ExitStatus] | None = None

    @property
    def running(self) -> bool:
        """True until the leader has exited (been reaped)."""
        return self._process.returncode is None

    @property
    def status(self) -> ExitStatus | None:
        """How the leader ended, once :meth:`wait` has seen it; else None."""
        return self._status

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group; False when nothing of it is left."""
        if self._group_gone:
            return False
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def kill_group(self) -> bool:
        """SIGKILL the whole process group; False when nothing of it is left."""
        return self.signal_group(signal.SIGKILL)

    async def wait(self) -> ExitStatus:
        """Wait for the leader to exit, kill what is left of its group, let the output drain.

        Any number of tasks may await this, any number of times; cancelling one waiter does not
        disturb the others.
        """
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait_once())
        return await asyncio.shield(self._waiter)

    async def _wait_once(self) -> ExitStatus:
        returncode = await self._process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        await _drain(self._readers, DRAIN_TIMEOUT_S)
        self._group_gone = True
        self._status = ExitStatus.from_returncode(returncode)
        return self._status


async def _drain(readers: list[tuple[asyncio.ReadTransport, asyncio.Future[None]]], limit_s: float) -> None:
    """Wait up to ``limit_s`` for the pipes to reach end of file, then close them regardless
    (a grandchild that left the group may still hold a pipe open)."""
    pending = [done for _, done in readers if not done.done()]
    if pending:
        await asyncio.wait(pending, timeout=limit_s)
    for transport, _ in readers:
        transport.close()


async def _open_reader(
    loop: asyncio.AbstractEventLoop, fd: int, stream: str, on_line: OnLine
) -> tuple[asyncio.ReadTransport, asyncio.Future[None]]:
    done: asyncio.Future[None] = loop.create_future()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: _LineReader(stream, on_line, done), pipe)
    except BaseException:
        pipe.close()
        raise
    return transport, done


async def spawn(
    argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], on_line: OnLine
) -> ChildProcess:
    """Start ``argv`` (no shell) in ``cwd`` with exactly ``env`` as its environment, in a new session.

    Each line of its stdout and stderr is passed to ``on_line(stream, text)`` on the event loop
    (utf-8, undecodable bytes replaced, newline stripped, lines over 64 KiB split). Raises
    :class:`SpawnError` when it cannot be started.
    """
    if not argv:
        raise SpawnError("empty command")
    _check_cwd(cwd)
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            preexec_fn=_preexec(),
        )
    except OSError as exc:
        for fd in (out_r, err_r):
            os.close(fd)
        raise _spawn_error(argv, cwd, exc) from exc
    finally:
        os.close(out_w)
        os.close(err_w)
    readers: list[tuple[asyncio.ReadTransport, asyncio.Future[None]]] = []
    try:
        readers.append(await _open_reader(loop, out_r, "stdout", on_line))
        out_r = -1
        readers.append(await _open_reader(loop, err_r, "stderr", on_line))
        err_r = -1
    except BaseException:
        for fd in (out_r, err_r):
            if fd != -1:
                os.close(fd)
        for transport, _ in readers:
            transport.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return ChildProcess(process, readers)


# --- one-off commands -----------------------------------------------------------------------------


class _TailReader(asyncio.Protocol):
    """Keeps the last :data:`COMMAND_OUTPUT_BYTES` of a pipe; ``done`` at end of file."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.tail = bytearray()
        self._done = done

    def data_received(self, data: bytes) -> None:
        self.tail += data
        if len(self.tail) > COMMAND_OUTPUT_BYTES:
            del self.tail[: len(self.tail) - COMMAND_OUTPUT_BYTES]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def run_command(
    argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout_s: float
) -> CommandResult:
    """Run ``argv`` to completion in its own process group, for at most ``timeout_s`` seconds.

    On timeout (or when the awaiting task is cancelled) the whole group is SIGKILLed; after a
    normal exit whatever the command left in its group is killed too. Raises :class:`SpawnError`
    when it cannot be started. Used for command probes and stop commands.
    """
    if not argv:
        raise SpawnError("empty command")
    _check_cwd(cwd)
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
            preexec_fn=_preexec(),
        )
    except OSError as exc:
        os.close(read_fd)
        raise _spawn_error(argv, cwd, exc) from exc
    finally:
        os.close(write_fd)
    done: asyncio.Future[None] = loop.create_future()
    reader = _TailReader(done)
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport: asyncio.ReadTransport | None = None
    timed_out = False
    try:
        transport, _ = await loop.connect_read_pipe(lambda: reader, pipe)
        try:
            returncode = await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            returncode = await process.wait()
    except BaseException:  # cancelled, or the pipe could not be watched: leave nothing behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if transport is None:
            pipe.close()
        else:
            transport.close()
        if process.returncode is None:
            await asyncio.shield(process.wait())
        raise
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await _drain([(transport, done)], DRAIN_TIMEOUT_S)
    output = reader.tail.decode("utf-8", errors="replace")
    code = None if timed_out or returncode < 0 else returncode
    return CommandResult(code=code, output=output, timed_out=timed_out)
