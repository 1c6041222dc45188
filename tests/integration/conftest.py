"""Fixtures of the integration tests: the paper exchange as a process, the ib_async log guard, and
pycron (``start_pycron``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli_fixtures import cli_system
from tests.integration.exchange_fixtures import ExchangeProcess, IbLogGuard, start_exchange
from tests.integration.pycron_fixtures import start_pycron
from tests.integration.test_trader_orders import TraderProcess, start_trader
from tests.support import Processes


@pytest.fixture(scope="module")
def exchange_env() -> dict[str, str]:
    """Extra environment (``BOURSE_<SECTION>_<KEY>`` overrides) of the module's exchange; a test
    module overrides this fixture to tune it."""
    return {}


@pytest.fixture(scope="module")
def exchange(
    tmp_path_factory: pytest.TempPathFactory, exchange_env: dict[str, str]
) -> Iterator[ExchangeProcess]:
    """One exchange service per test module (fresh data dir, free port, fast market); tests use
    fresh client ids. At the end it must still be running with no traceback in its log."""
    procs = Processes()
    try:
        process = start_exchange(procs, tmp_path_factory.mktemp("exchange"), env=exchange_env)
        yield process
        process.assert_healthy()
    finally:
        procs.stop_all()


@pytest.fixture
def exchange_dir(tmp_path: Path) -> Path:
    """A data directory for a test that starts (and restarts) its own exchange."""
    return tmp_path / "exchange-data"


@pytest.fixture
def ib_log_guard() -> Iterator[IbLogGuard]:
    """Fails the test on any ``ib_async`` log record at ERROR or above that the test did not
    announce with ``ib_log_guard.allow(regex)``: ib_async swallows decoder and handler errors and
    only logs them, so this is how a malformed message from the exchange shows up."""
    guard = IbLogGuard()
    logger = logging.getLogger("ib_async")
    logger.addHandler(guard)
    try:
        yield guard
    finally:
        logger.removeHandler(guard)
    unexpected = guard.unexpected()
    if unexpected:
        pytest.fail("ib_async logged errors:\n  " + "\n  ".join(unexpected), pytrace=False)


__all__ = ["cli_system", "start_pycron"]


@pytest.fixture(scope="module")
def trader(exchange: ExchangeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraderProcess]:
    """A trader service (IB client 0) on the module's exchange; at the end it must still be running
    with no traceback in its log. A module may define its own ``trader`` (other settings)."""
    procs = Processes()
    try:
        process = start_trader(procs, tmp_path_factory.mktemp("trader"), exchange.port)
        yield process
        assert process.child.popen.poll() is None, "the trader service died"
        assert "Traceback" not in process.log_text(), process.log_text()[-4000:]
    finally:
        procs.stop_all()
