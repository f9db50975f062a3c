"""What an input file is before it is parsed as CSV: not text at all, UTF-16, or which delimiter;
and its lines as the CSV reader takes them, none too long to hold.

A spreadsheet renamed to ``.csv`` is the commonest wrong file there is; read as text it fails
with "not UTF-8", which sends its owner looking for an encoding problem. :func:`binary_kind` names
it from its first bytes instead, so the error can say what the file is and how to save it as CSV.
Lists exported from a spreadsheet in much of Europe are separated by semicolons, others by tabs
or pipes: :func:`sniff_delimiter` finds which from the first lines. A text file with no line
ends (a dump, a minified export) is one line as long as the file: :func:`bounded_lines` hands the
reader such a line as a field too large, without reading it whole.

The lowest layer of the package (it imports nothing of cleanroom), so both the advertiser's list
and the platform's imports use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Final, TextIO

__all__ = [
    "DELIMITER_NAMES",
    "HEAD_BYTES",
    "MAX_LINE_CHARS",
    "SAVE_AS_CSV",
    "binary_kind",
    "bounded_lines",
    "not_text_message",
    "parse_delimiter",
    "sniff_delimiter",
]

HEAD_BYTES: Final = 64 * 1024
"""How much of a file is looked at: enough for the header and dozens of rows."""

DELIMITER_NAMES: Final = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""The delimiters a list may use, and what they are called in messages."""

MAX_LINE_CHARS: Final = 1 << 24
"""Characters from which a line is not read whole: 16 Mi, the length of 64 fields at the CSV
reader's field size limit, far beyond any row of a list."""

SAVE_AS_CSV: Final = "save it as CSV first (in Excel: File > Save As > CSV UTF-8)"
"""What to do with a spreadsheet, said once."""

_SNIFF_LINES: Final = 50
_ZIP: Final = b"PK\x03\x04"
_OLE2: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003, Word 97-2003, ...
_SIGNATURES: Final = (
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def binary_kind(head: bytes) -> str | None:
    """Name the kind of file whose first bytes are ``head``, if it is not UTF-8 text.

    Args:
        head: the file's first bytes (:data:`HEAD_BYTES` of them is plenty).

    Returns:
        What the file is, as a phrase ("an Excel workbook (.xlsx)", "UTF-16 text", ...), or
        ``None`` when it may be text (whether it is UTF-8 is for the reader to find out).
    """
    if head.startswith(_ZIP):
        if b"xl/" in head:
            return "an Excel workbook (.xlsx)"
        if b"opendocument.spreadsheet" in head:
            return "an OpenDocument spreadsheet (.ods)"
        if b"word/" in head or b"opendocument.text" in head:
            return "a word-processor document (.docx or .odt)"
        return "a ZIP archive"
    if head.startswith(_OLE2):
        return "an Excel 97-2003 workbook (.xls) or another Office file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if b"\x00" in head:
        # Text has no NUL bytes; UTF-16 without its byte-order mark has one in every ASCII
        # character.
        return "a binary file (or UTF-16 text)"
    return None


def not_text_message(name: object, head: bytes) -> str | None:
    """Why the file ``name`` whose first bytes are ``head`` cannot be read as CSV, if it cannot.

    Returns:
        One sentence naming what the file is and what to do ("… is an Excel workbook (.xlsx),
        not a CSV file: save it as CSV first …"), or ``None`` when it may be text.
    """
    kind = binary_kind(head)
    if kind is None:
        return None
    if kind == "UTF-16 text":
        return f"{name} is UTF-16 text, not UTF-8: re-save it as UTF-8"
    return f"{name} is {kind}, not a CSV file: {SAVE_AS_CSV}"


def parse_delimiter(text: str) -> str:
    """Read a delimiter as given on a command line: ``,`` ``;`` ``|``, or ``tab`` (``\\t``).

    Raises:
        ValueError: anything else.
    """
    value = "\t" if text.strip().lower() in ("tab", "\\t", "\t") else text
    if value not in DELIMITER_NAMES:
        raise ValueError(f"delimiter {text!r} is not one of , ; tab |")
    return value


def sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV file whose beginning is ``sample`` (``,`` if none fits better).

    Each candidate of :data:`DELIMITER_NAMES` splits the header; among those that split it into
    at least two fields, the one that gives the most of the following rows the header's width
    wins, then the one that gives the header most fields, then the first in ``, ; tab |``. A
    list with a single column is read with ``,``.

    Args:
        sample: the file's first characters (a cut last line is ignored).
    """
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines.pop()  # cut off by the sample's size
    lines = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    best, best_score = ",", (-1, 0)
    for delimiter in DELIMITER_NAMES:
        try:
            rows = list(csv.reader(io.StringIO("".join(lines)), delimiter=delimiter))
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(row) == width for row in rows[1:]), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def bounded_lines(stream: TextIO) -> Iterator[str]:
    """The lines of ``stream`` (opened with ``newline=""``) for the CSV reader, each held whole
    only if it is shorter than :data:`MAX_LINE_CHARS`.

    A longer line is read in pieces of that many characters and dropped, and in its place comes
    one cell longer than the reader's field size limit: the reader refuses it as it refuses any
    field that long, with that line's number, and goes on with the next line. Reading it whole
    would take memory in proportion to the file.
    """
    readline, limit = stream.readline, MAX_LINE_CHARS
    while line := readline(limit):
        if len(line) < limit:
            yield line
            continue
        while len(line) == limit and not line.endswith("\n"):  # the rest of that line
            line = readline(limit)
        yield "x" * (csv.field_size_limit() + 1) + "\n"
