"""Text on its way to a terminal or a spreadsheet, made safe from what it carries.

User ids, record ids, error messages and names come from imported files, from the other party
or from certificates; printed raw, an escape sequence acts on the operator's terminal and a
newline makes one id look like two, and a CSV cell such as ``=HYPERLINK(…)`` runs as a formula
when the file is opened in a spreadsheet. Every human-readable line that shows such text goes
through :func:`printable`, and every CSV file cleanroom writes goes through :func:`csv_writer`.
JSON output needs neither: the encoder escapes control characters itself.

The lowest layer of the package (it imports nothing of cleanroom), so every layer can use it.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from typing import Any, Final, TextIO

__all__ = [
    "FORMULA_TRIGGERS",
    "NEUTRALIZED_CSV_HELP",
    "csv_writer",
    "printable",
    "quoted",
    "spreadsheet_cell",
]

# Control (C0, DEL, C1), format (bidi overrides, zero-width, …) and line/paragraph separators:
# characters that move the cursor, reorder or hide text, or end a line on some terminal.
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED_ESCAPES: Final = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}

FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""

NEUTRALIZED_CSV_HELP: Final = (
    "cells starting with = + - @, a tab or a carriage return are written with a leading ' so "
    "that spreadsheets show them as text, not formulas"
)
"""The sentence every ``--help`` that writes a CSV file includes."""


def _escape(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with control, format and separator characters shown as escapes.

    A backslash is doubled, so the result is unambiguous: one value prints as one line, and
    every character of it can be read back from what is shown. Ordinary text (letters of any
    script, punctuation, spaces) is unchanged.
    """
    if text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    return "".join(map(_escape, text))


def quoted(text: str, limit: int = 64) -> str:
    """Text another party chose, for an error message: quoted and cut after ``limit``.

    It must not flood a message or a log; it is escaped once, by :func:`printable`, where the
    message is shown.
    """
    cut = "…" if len(text) > limit else ""
    return f"'{text[:limit]}{cut}'"


def spreadsheet_cell(value: object) -> str:
    """The text of one CSV cell, with a leading ``'`` if it would start a formula.

    ``None`` is an empty cell; anything else is written as its ``str``.
    """
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


class _NeutralizingWriter:
    """A ``csv.writer`` whose every cell passes through :func:`spreadsheet_cell`."""

    def __init__(self, stream: TextIO, **fmtparams: Any) -> None:
        self._writer = csv.writer(stream, **fmtparams)

    def writerow(self, row: Iterable[object]) -> Any:
        return self._writer.writerow([spreadsheet_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream: TextIO, **fmtparams: Any) -> _NeutralizingWriter:
    """A CSV writer for files people open in spreadsheets: formulas are neutralized.

    Args:
        stream: the open text file (opened with ``newline=""``).
        fmtparams: passed to :func:`csv.writer` (e.g. ``lineterminator``).
    """
    return _NeutralizingWriter(stream, **fmtparams)
