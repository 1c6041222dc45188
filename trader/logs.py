"""One logging setup for every Bourse service and the CLI.

* console output on stderr (optional): rich on a terminal, plain ``LEVEL logger: message`` lines
  when stderr is a pipe (pycron captures them into ``<data-dir>/logs/<job>.log`` with timestamps),
* a size-rotated text file per service: ``<data-dir>/logs/<service>.service.log`` (the
  ``.service`` suffix keeps it apart from the job log pycron writes for the same name),
* optionally JSON lines beside it: ``<data-dir>/logs/<service>.service.jsonl``,
* a level per component (logger name) from the ``logging:`` section of the config.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

from trader.config.paths import logs_dir
from trader.config.trader import LoggingConfig

_TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_MARK = "_bourse_handler"
# Attributes every LogRecord has; anything else was passed with ``extra=`` and goes into JSON.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, data_dir: Path, config: LoggingConfig | None = None) -> Path:
    """Configure the root logger for ``service``; returns the path of its text log file.

    Calling it again replaces the handlers it installed before (never anyone else's).
    """
    config = config or LoggingConfig()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG)

    folder = logs_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / f"{service}.service.log"
    handlers: list[logging.Handler] = []

    text = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=config.max_bytes, backupCount=config.backup_count, encoding="utf-8"
    )
    text.setFormatter(logging.Formatter(_TEXT_FORMAT, _DATE_FORMAT))
    handlers.append(text)

    if config.json:
        jsonl = logging.handlers.RotatingFileHandler(
            folder / f"{service}.service.jsonl",
            maxBytes=config.max_bytes,
            backupCount=config.backup_count,
            encoding="utf-8",
        )
        jsonl.setFormatter(JsonLinesFormatter())
        handlers.append(jsonl)

    if config.console:
        console: logging.Handler
        if sys.stderr.isatty():
            console = RichHandler(
                console=Console(stderr=True), show_path=False, rich_tracebacks=True, log_time_format="[%X]"
            )
            console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        else:  # a pipe (pycron, a test): one plain line per record, no wrapping at 80 columns
            console = logging.StreamHandler(sys.stderr)
            console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(console)

    level = logging.getLevelNamesMapping()[config.level]
    for handler in handlers:
        setattr(handler, _MARK, True)
        handler.setLevel(logging.DEBUG)
        root.addHandler(handler)
    # The root level gates everything not configured per component.
    root.setLevel(level)
    for component, component_level in config.levels.items():
        logging.getLogger(component).setLevel(component_level)
    logging.captureWarnings(True)
    return log_file
