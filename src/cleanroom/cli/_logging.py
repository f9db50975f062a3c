"""Log output of long-running commands: a level, and text or JSON lines on stderr.

JSON lines are one object per record (``time`` in ISO 8601 UTC, ``level``, ``logger``,
``message``, and ``exception`` when there is one), for log collectors that parse fields rather
than text.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonLogFormatter",
    "add_log_options",
    "configure_logging",
    "quiet_dask_logs",
]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format`` to a command."""
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="least severe messages logged (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="log lines as text or as JSON objects (default: %(default)s)",
    )


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send log records at ``level`` and above to ``stream`` (stderr) as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)


# Dask's loggers, which it sets up itself when distributed is imported.
_DASK_LOGGERS: Final = ("distributed", "distributed.client", "distributed.gc", "tornado")


def quiet_dask_logs() -> None:
    """Keep Dask's own log records (tracebacks of its reconnection attempts) off stderr.

    When the scheduler is lost mid-job, Dask's client logs every failed reconnection with its
    traceback before cleanroom's error says, in one line, what happened. ``--verbose`` skips
    this. Importing ``distributed`` sets its loggers' levels, so it is imported first.
    """
    importlib.import_module("distributed")
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
