#!/usr/bin/env python3
"""Bourse command line. ``./cli.py --help`` lists the commands.

Run directly (``./cli.py``), it re-executes itself under the project's ``.venv`` (made by
``./start.sh`` or ``./test.sh``) when started by another interpreter, so no activation is needed.
"""

import os
import sys
from pathlib import Path

_VENV = Path(__file__).resolve().parent / ".venv"
_REEXEC = "BOURSE_CLI_REEXEC"

_PYTHON = _VENV / "bin" / "python"
_OTHER_INTERPRETER = Path(sys.prefix).resolve() != _VENV.resolve()

if __name__ == "__main__" and _OTHER_INTERPRETER and not os.environ.get(_REEXEC) and _PYTHON.exists():
    os.environ[_REEXEC] = "1"  # once: never a loop
    os.execv(str(_PYTHON), [str(_PYTHON), *sys.argv])

from trader.cli.main import main  # noqa: E402 - after the venv re-exec

if __name__ == "__main__":
    main()
