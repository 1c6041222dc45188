#!/usr/bin/env python3
"""Messaging benchmarks, each beside a baseline measured in the same run on the same machine.

    .venv/bin/python bench/messaging.py            # both
    .venv/bin/python bench/messaging.py rpc        # RPC round trip vs raw pyzmq REQ/REP
    .venv/bin/python bench/messaging.py fanout     # tick fan-out vs a raw per-message pyzmq loop

Figures are recorded in bench/README.md.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import messaging_fanout
import messaging_rpc


def main() -> None:
    which = sys.argv[1:] or ["rpc", "fanout"]
    print(f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}\n")
    if "rpc" in which:
        messaging_rpc.run(print)
        print()
    if "fanout" in which:
        messaging_fanout.run(print)


if __name__ == "__main__":
    main()
