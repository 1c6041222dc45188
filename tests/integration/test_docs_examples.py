"""Every ```python example in README.md and docs/*.md runs, against a real trader service and a real
tick publisher on free ports (the examples' default endpoints are rewritten to them)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, Processes, free_endpoint, free_port
from trader.messaging.pubsub import TickPublisher

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for number, match in enumerate(BLOCK.finditer(doc.read_text()), 1):
            yield f"{doc.relative_to(ROOT)}#{number}", match.group(1)


EXAMPLES = dict(examples())


def test_docs_when_scanned_then_they_hold_python_examples() -> None:
    assert len(EXAMPLES) >= 3, sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docs_example_when_run_against_live_services_then_it_exits_zero(
    name: str, procs: Processes, tmp_path: Path
) -> None:
    rpc, ticks, events = free_endpoint(), free_endpoint(), free_endpoint()
    env = {"BOURSE_ZMQ_RPC": rpc, "BOURSE_ZMQ_EVENTS": events, "BOURSE_DATA_DIR": str(tmp_path)}
    env["BOURSE_ZMQ_TICKS"] = free_endpoint()  # the service's own tick socket stays quiet
    env["BOURSE_IB_PORT"] = str(free_port())  # no TWS there: the trader retries in the background
    procs.python("services/trader_service.py", env=env).wait_for_line("trader service ready")
    code = (
        EXAMPLES[name]
        .replace("tcp://127.0.0.1:42001", rpc)
        .replace("tcp://127.0.0.1:42002", ticks)
        .replace("tcp://127.0.0.1:42003", events)
    )
    example = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        asyncio.run(publish_ticks_until_exit(ticks, example))
        out, err = example.communicate(timeout=30)
    finally:
        example.kill()
        example.wait()
    assert example.returncode == 0, f"{name} failed:\n{code}\n--- stdout\n{out}\n--- stderr\n{err}"


async def publish_ticks_until_exit(endpoint: str, example: subprocess.Popen[str]) -> None:
    """Publish AAPL ticks (for examples that subscribe) until the example process ends."""
    async with TickPublisher(endpoint, heartbeat_s=0.05) as publisher:
        price = 189.0
        for _ in range(3000):
            if example.poll() is not None:
                return
            price += 0.01
            publisher.publish("AAPL", {"bid": price, "ask": price + 0.02, "bid_size": 100})
            await asyncio.sleep(0.01)  # a tick source paced at 100/s, not a wait for an event
    raise AssertionError("the example did not finish within 30 s")
