"""The ```py examples of docs/paper-exchange.md run against a real exchange process: the stock
ib_async session and the control RPC example. Their ``127.0.0.1``, port 7497 and control endpoint
are rewritten to the test exchange's; each must exit 0 with no ib_async ERROR record but TWS's
cancel confirmation (202, which ib_async logs at ERROR and the example announces).

(The examples are fenced ```py, not ```python: tests/integration/test_docs_examples.py runs the
latter against the trader service, which these examples do not talk to.)
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.integration.exchange_fixtures import ExchangeProcess
from tests.support import ROOT

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "paper-exchange.md"
BLOCK = re.compile(r"^```py\n(.*?)^```", re.S | re.M)
EXAMPLES = {f"paper-exchange.md#{n}": m.group(1) for n, m in enumerate(BLOCK.finditer(DOC.read_text()), 1)}
TWS_ADDRESS = '"127.0.0.1", 7497'
CONTROL = "tcp://127.0.0.1:42010"
LOGGING = (
    "import logging\n"
    "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')\n"
)
ANNOUNCED = re.compile(r"^ERROR ib_async[\w.]*: Error 202, reqId \d+: Order Canceled - reason:$")


def test_paper_exchange_doc_when_scanned_then_ib_async_and_rpc_examples() -> None:
    assert len(EXAMPLES) >= 2, sorted(EXAMPLES)
    assert any('ib.connect("127.0.0.1", 7497, clientId=' in code for code in EXAMPLES.values())
    assert any(CONTROL in code for code in EXAMPLES.values())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_paper_exchange_example_when_run_against_exchange_then_exits_0_without_ib_errors(
    name: str, exchange: ExchangeProcess
) -> None:
    original = EXAMPLES[name]
    assert TWS_ADDRESS in original or CONTROL in original, f"{name} talks to neither the exchange nor its RPC"
    code = original.replace(TWS_ADDRESS, f'"{exchange.host}", {exchange.port}')
    code = code.replace(CONTROL, exchange.control)
    result = subprocess.run(
        [sys.executable, "-c", LOGGING + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    errors = [
        line
        for line in output.splitlines()
        if line.startswith(("ERROR", "CRITICAL", "Traceback")) and not ANNOUNCED.match(line)
    ]
    assert result.returncode == 0 and not errors, f"{name}:\n{code}\n--- output\n{output}"
