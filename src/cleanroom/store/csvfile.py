"""Opening a CSV input file safely: checked whole before anything is written.

:func:`scan_csv` reads the file once as bytes, without parsing it as CSV: it checks that every
byte is UTF-8, counts lines for the progress bar, hashes the content for the audit log and maps
the header's columns. A file that is unreadable, not UTF-8 or missing a required column is thereby
refused before the first row is imported, so such a file never leaves a partial import behind.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cleanroom._textfile import bounded_lines, not_text_message
from cleanroom.errors import ImportFailed

if TYPE_CHECKING:
    from _csv import Reader

__all__ = ["CsvScan", "RowRejection", "open_rows", "parse_column_mapping", "scan_csv"]

_BLOCK = 1 << 20
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class RowRejection:
    """A row that was not imported.

    Attributes:
        row: line number in the file (the header is line 1).
        column: the column at fault, or ``None`` for the row as a whole.
        reason: one of :data:`REJECTION_REASONS`.
        detail: what exactly was wrong, in words.
    """

    row: int
    column: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class CsvScan:
    """What the pre-scan learned about an input file.

    Attributes:
        path: the file.
        sha256: hex SHA-256 of its bytes (recorded in the audit log).
        lines: number of physical lines (an upper bound on rows, for progress).
        header: the header row as read.
        columns: field name -> column index, for every required and present optional field.
    """

    path: Path
    sha256: str
    lines: int
    header: tuple[str, ...]
    columns: Mapping[str, int]


def parse_column_mapping(specs: Sequence[str], fields: Sequence[str]) -> dict[str, str]:
    """Parse ``FIELD=NAME`` options that map a field to a differently named column.

    Args:
        specs: the option values.
        fields: the field names that may be mapped.

    Returns:
        Field name -> column name.

    Raises:
        ImportFailed: a spec is not ``FIELD=NAME`` or names an unknown field.
    """
    mapping: dict[str, str] = {}
    for spec in specs:
        field_name, sep, column = spec.partition("=")
        field_name, column = field_name.strip(), column.strip()
        if not sep or not field_name or not column:
            raise ImportFailed(f"column mapping {spec!r} is not FIELD=NAME")
        if field_name not in fields:
            raise ImportFailed(
                f"column mapping {spec!r}: unknown field {field_name!r} "
                f"(expected one of {', '.join(fields)})"
            )
        mapping[field_name] = column
    return mapping


def scan_csv(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
) -> CsvScan:
    """Check an input file whole and map its header, before anything is written.

    Args:
        path: the CSV file.
        required: fields that must have a column.
        optional: fields that may have one.
        mapping: field -> column name where the column is not named like the field.

    Returns:
        The scan result.

    Raises:
        ImportFailed: the file cannot be read, is a spreadsheet or another binary file, is not
            UTF-8, is empty, has a header that is not CSV, has a duplicate column name or lacks
            a required column.
    """
    path = Path(path)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines = 0
    offset = 0
    try:
        with path.open("rb") as stream:
            while block := stream.read(_BLOCK):
                if offset == 0 and (not_text := not_text_message(path, block)):
                    raise ImportFailed(not_text)
                digest.update(block)
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    line = lines + block.count(b"\n", 0, exc.start) + 1
                    raise ImportFailed(
                        f"{path} is not UTF-8 text: invalid byte at line {line} "
                        f"(byte offset {offset + exc.start}); re-save it as UTF-8"
                    ) from exc
                lines += block.count(b"\n")
                offset += len(block)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise ImportFailed(
                    f"{path} is not UTF-8 text: it ends inside a multi-byte character"
                ) from exc
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    with open_rows(path) as rows:
        try:
            header = next(rows, None)
        except csv.Error as exc:  # an open quote in the header runs on into the rows
            raise ImportFailed(f"{path}: header not readable as CSV: {exc}") from exc
    if not header or not any(name.strip() for name in header):
        raise ImportFailed(f"{path} is empty: expected a header row")
    columns = _map_columns(path, header, required, optional, mapping or {})
    return CsvScan(path, digest.hexdigest(), lines, tuple(header), columns)


@contextmanager
def open_rows(path: Path) -> Iterator[Reader]:
    """Open a (scanned) CSV file as a csv reader; a UTF-8 byte-order mark is skipped."""
    try:
        # Opened here, not in a with-statement around the yield, so that only a failure to
        # open becomes "cannot read"; errors of the caller's block keep their own type.
        stream = Path(path).open(encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    with stream:
        yield csv.reader(bounded_lines(stream))


def _map_columns(
    path: Path,
    header: Sequence[str],
    required: Sequence[str],
    optional: Sequence[str],
    mapping: Mapping[str, str],
) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        key = name.strip().lower()
        if key in index:
            raise ImportFailed(f"{path}: column {name.strip()!r} appears twice in the header")
        index[key] = position
    columns: dict[str, int] = {}
    missing: list[str] = []
    for field_name in (*required, *optional):
        column = mapping.get(field_name, field_name)
        found = index.get(column.strip().lower())
        if found is not None:
            columns[field_name] = found
        elif field_name in required:
            missing.append(
                f"{field_name!r}" + (f" (mapped to {column!r})" if column != field_name else "")
            )
        elif field_name in mapping:
            raise ImportFailed(f"{path}: no column {column!r} (mapped for {field_name!r})")
    if missing:
        raise ImportFailed(
            f"{path}: missing required column(s) {', '.join(missing)}; the header has "
            f"{', '.join(repr(h) for h in header)} (map other names with --column FIELD=NAME)"
        )
    return columns
