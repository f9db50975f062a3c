"""Log lines of long-running commands: the level, and JSON objects one per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cleanroom.cli._logging import configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_fields_and_an_exception() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = logging.getLogger("cleanroom.test")
    log.debug("not at info")
    log.info("session %s opened", "ab12")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "session ab12 opened"
    assert (first["level"], first["logger"]) == ("info", "cleanroom.test")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: bad" in second["exception"]


def test_text_lines_at_warning_leave_out_info() -> None:
    stream = io.StringIO()
    configure_logging("warning", "text", stream)
    logging.getLogger("cleanroom.test").info("quiet")
    logging.getLogger("cleanroom.test").warning("loud")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING cleanroom.test: loud")
