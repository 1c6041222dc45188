"""Logging: one file per service under <data-dir>/logs, JSON lines on demand, levels per component."""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from trader.config.trader import LoggingConfig
from trader.logs import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.getLogger("noisy.component").setLevel(logging.NOTSET)
    logging.getLogger("chatty.component").setLevel(logging.NOTSET)


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_when_json_and_component_levels_then_files_hold_what_is_allowed(tmp_path: Path) -> None:
    config = LoggingConfig(
        level="INFO",
        console=False,
        json=True,
        levels=types.MappingProxyType({"noisy.component": "ERROR", "chatty.component": "DEBUG"}),
    )
    log_file = setup_logging("svc", tmp_path, config)
    logging.getLogger("trader.x").info("order %s accepted", 7, extra={"order_id": 7})
    logging.getLogger("trader.x").debug("below the root level")
    logging.getLogger("noisy.component").warning("silenced by its component level")
    logging.getLogger("chatty.component").debug("allowed by its component level")
    for handler in logging.getLogger().handlers:
        handler.flush()

    assert log_file == tmp_path / "logs" / "svc.service.log"
    text = log_file.read_text()
    assert "INFO    trader.x: order 7 accepted" in text
    assert "allowed by its component level" in text
    assert "below the root level" not in text and "silenced" not in text
    lines = [json.loads(line) for line in (tmp_path / "logs" / "svc.service.jsonl").read_text().splitlines()]
    assert lines[0]["message"] == "order 7 accepted" and lines[0]["order_id"] == 7
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "trader.x"


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_when_called_twice_then_handlers_are_replaced_not_doubled(tmp_path: Path) -> None:
    config = LoggingConfig(console=False)
    setup_logging("svc", tmp_path, config)
    count = len(logging.getLogger().handlers)
    log_file = setup_logging("svc", tmp_path, config)
    assert len(logging.getLogger().handlers) == count
    logging.getLogger("x").warning("once")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert log_file.read_text().count("once") == 1


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_when_file_exceeds_max_bytes_then_it_rotates(tmp_path: Path) -> None:
    setup_logging("svc", tmp_path, LoggingConfig(console=False, max_bytes=2048, backup_count=2))
    for i in range(200):
        logging.getLogger("x").warning("line %d %s", i, "x" * 40)
    assert (tmp_path / "logs" / "svc.service.log.1").exists()
    assert not (tmp_path / "logs" / "svc.service.log.3").exists()
