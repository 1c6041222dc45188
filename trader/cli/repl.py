"""The REPL: bare ``cli.py`` reads command lines at a ``bourse>`` prompt and runs each as if typed
after ``cli.py`` (same commands, options and output). History is kept in
``<data-dir>/cli_history``; Tab completes commands, sub-commands and options. ``exit``, ``quit``
or Ctrl+D leave; Ctrl+C abandons the current line or command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import types
from pathlib import Path

import click

from trader.cli.context import CliContext

PROMPT = "bourse> "
HISTORY_FILE = "cli_history"
HISTORY_LENGTH = 5000


def completions(group: click.Group, line: str, text: str) -> list[str]:
    """What may follow ``line`` (the buffer up to the cursor) when the current word is ``text``."""
    try:
        words = shlex.split(line[: len(line) - len(text)]) if line else []
    except ValueError:  # an open quote
        return []
    command: click.Command = group
    ctx = click.Context(group)
    for word in words:
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is None:
                break
            command = sub
    options: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option):
            options.extend(param.opts)
    candidates = [*options, "--help"]
    if isinstance(command, click.Group):
        candidates = [*command.list_commands(ctx), *candidates]
    return sorted(c for c in set(candidates) if c.startswith(text))


def run_repl(group: click.Group, state: CliContext) -> None:
    """Read and run lines until exit; every line runs with the session's global options."""
    from trader.cli.main import run  # noqa: PLC0415 - main imports this module

    history = state.resolved_data_dir() / HISTORY_FILE
    readline = _setup_readline(group, history)
    click.echo("Bourse shell: commands as after ./cli.py (help, exit). Tab completes.")
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            click.echo()
            break
        except KeyboardInterrupt:
            click.echo()
            continue
        if not line:
            continue
        if line in ("exit", "quit"):
            break
        if line in ("help", "?"):
            line = "--help"
        try:
            args = shlex.split(line)
        except ValueError as exc:
            click.echo(f"error: {exc}", err=True)
            continue
        run(args, dataclasses.replace(state))
    if readline is not None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(str(history))


def _setup_readline(group: click.Group, history: Path) -> types.ModuleType | None:
    try:
        import readline  # noqa: PLC0415 - not on every platform
    except ImportError:
        return None
    with contextlib.suppress(OSError):
        readline.read_history_file(str(history))
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer_delims(" \t\n")
    matches: list[str] = []

    def complete(text: str, index: int) -> str | None:
        if index == 0:
            matches[:] = completions(group, readline.get_line_buffer()[: readline.get_endidx()], text)
        return matches[index] if index < len(matches) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    return readline
