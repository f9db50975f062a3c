"""Helpers shared by the command groups: argument types, the --db subcommand, output, engines."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cleanroom.crypto import BatchEngine

__all__ = [
    "batch_engine",
    "db_command",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "print_json",
]


def db_command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand that works on the platform database (``--db PATH``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    parser.add_argument("--db", required=True, type=Path, help="the platform database file")
    return parser


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """An argparse type: a number above 0 (NaN refused)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a number of at least 0 (NaN refused)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def print_json(data: object) -> None:
    """Print ``data`` as one indented JSON object on stdout."""
    print(json.dumps(data, indent=2))


@contextmanager
def batch_engine(workers: int | None) -> Iterator[BatchEngine | None]:
    """An engine with ``--workers`` processes, closed afterwards; ``None``: the default engine."""
    if workers is None:
        yield None  # the process-wide default engine
        return
    engine = BatchEngine(workers=workers)
    try:
        yield engine
    finally:
        engine.close()
