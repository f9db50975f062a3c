"""Reading the advertiser's customer list, and writing back the rows that matched (DESIGN §10).

The list is a CSV file with one row per customer (or the same rows given in memory as mappings,
:func:`read_customer_rows`); by default its columns are
``record_id,email,phone,maid,marketing_consent`` (names compared case-insensitively, mappable
with ``FIELD=NAME``). ``marketing_consent`` is required and at least one identifier column must
be present; ``record_id`` is optional and, when present, must be unique. The whole list is read
and checked before the session opens, so a list that cannot be used fails at once.

Rows without marketing consent are counted and dropped here, before any of their identifiers
is even looked at.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import itertools
import operator
import os
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TextIO

import numpy as np
from numpy.typing import NDArray

from cleanroom._output import csv_writer
from cleanroom._textfile import (
    DELIMITER_NAMES,
    HEAD_BYTES,
    bounded_lines,
    not_text_message,
    sniff_delimiter,
)
from cleanroom.advertiser._chunks import Chunk, FileChunks, PlainText, numbered_chunks
from cleanroom.advertiser._columns import CONSENT_FIELD, FIELDS, RECORD_ID_FIELD, map_columns
from cleanroom.advertiser._consent import ConsentCells, parse_marketing_consent
from cleanroom.advertiser._copy_rows import NotPlain, copy_plain_rows
from cleanroom.advertiser._problems import ListProblem
from cleanroom.errors import ImportFailed
from cleanroom.identifiers import KINDS

if TYPE_CHECKING:
    from _csv import Reader


class _IdLines(Protocol):
    """Record id -> the line of its record: a dict, or the C's RecordIds that behaves as one."""

    def setdefault(self, record_id: str, line: int, /) -> int: ...


# Plain blocks taken whole in C, and the ids seen held there (_plain_block.c); where it was not
# built, blocks are split and taken by the Python below, which is also the reference the C is
# held to, and the ids are a dict.
_new_ids: Callable[[], _IdLines]
# (rows read, their kept rows, lines, identifier columns; where the C stopped, in bytes and chars)
_Taken = tuple[int, list[int], list[int], tuple[list[str], ...], int, int]
_c_take_plain: Callable[..., _Taken] | None
try:
    from cleanroom.advertiser import _plain_block
except ImportError:  # pragma: no cover - built without a C compiler
    _new_ids, _c_take_plain = dict, None
else:
    _new_ids, _c_take_plain = _plain_block.RecordIds, _plain_block.take_plain

__all__ = [
    "CustomerList",
    "check_output_path",
    "parse_column_mapping",
    "read_customer_list",
    "read_customer_rows",
    "write_matched_rows",
]

_PROGRESS_EVERY = 10_000

_PROBLEMS_STEPPED_OVER = 32
"""Rows with a problem taken one by one out of rows taken as columns (or lines the C hands back
out of a plain block), before the rest of them is taken row by row (or split)."""

BLOCK_RECORDS: Final = 16_384
"""Kept records per block handed to a ``blocks`` callback while the list is read."""

BlockCallback = Callable[["CustomerList"], object]
"""Gets each block of kept records (a :class:`CustomerList` of those records only) as it is read."""

# What error messages call a list given in memory, where a file's would name its path.
_IN_MEMORY: Final = "the rows given"


@dataclass(frozen=True, eq=False)
class CustomerList:
    """The consenting, well-formed records of a list, with what was dropped and why.

    Attributes:
        path: the file; ``None`` for rows given in memory.
        header: the header row as read (for rows in memory: the first row's keys).
        columns: field -> column name as in the header, for every field present.
        records_read: data rows in the file (blank lines are not rows).
        without_consent: rows dropped because they carry no marketing consent.
        problems: rows dropped as unusable (malformed, unreadable consent, record id), in file
            order.
        rows: for each kept record, its position among the file's data rows (0-based); this is
            the record's id in the session and what :func:`write_matched_rows` takes.
        lines: for each kept record, its line number in the file (for rows in memory: its
            position, from 1).
        identifiers: kind -> the cell of that column for each kept record (``rows`` order), for
            each identifier column present.
        unused_columns: the header's columns that no field reads (ignored ones included).
        delimiter: the file's field delimiter (``,`` for rows in memory).
    """

    path: Path | None
    header: tuple[str, ...]
    columns: Mapping[str, str]
    records_read: int
    without_consent: int
    problems: tuple[ListProblem, ...]
    rows: list[int] = field(repr=False)
    lines: list[int] = field(repr=False)
    identifiers: Mapping[str, list[str]] = field(repr=False)
    unused_columns: tuple[str, ...] = ()
    delimiter: str = ","


def parse_column_mapping(specs: Sequence[str]) -> dict[str, str]:
    """Parse ``FIELD=NAME`` options mapping a field to a differently named column.

    Args:
        specs: the option values, e.g. ``["email=Email", "marketing_consent=opt_in"]``.

    Returns:
        Field -> column name.

    Raises:
        ImportFailed: a spec is not ``FIELD=NAME``, names an unknown field, or maps a field
            twice.
    """
    mapping: dict[str, str] = {}
    for spec in specs:
        name, sep, column = spec.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise ImportFailed(f"column mapping {spec!r} is not FIELD=NAME")
        if name not in FIELDS:
            raise ImportFailed(
                f"column mapping {spec!r}: unknown field {name!r} (fields: {', '.join(FIELDS)})"
            )
        if name in mapping:
            raise ImportFailed(f"column mapping: field {name!r} is mapped twice")
        mapping[name] = column
    return mapping


def read_customer_list(
    path: Path,
    *,
    column_mapping: Mapping[str, str] | None = None,
    prehashed: Collection[str] = (),
    ignore_columns: Collection[str] = (),
    delimiter: str | None = None,
    progress: Callable[[int], object] | None = None,
    blocks: BlockCallback | None = None,
) -> CustomerList:
    """Read and check the whole list; keep the consenting, well-formed records.

    Args:
        path: the CSV file (UTF-8, an optional byte-order mark is skipped).
        column_mapping: field -> column name, where the column is not named like the field.
        prehashed: identifier kinds whose column holds SHA-256 digests; each must be present.
        ignore_columns: columns to leave out, even if their names look like identifier fields
            (which otherwise stops the read: see :mod:`cleanroom.advertiser._columns`).
        delimiter: the field delimiter (``,`` ``;`` ``\\t`` ``|``); ``None``: found from the
            first lines.
        progress: called with the number of rows just read, for a progress bar.
        blocks: called with each :data:`BLOCK_RECORDS` kept records (the last block may be
            shorter) as soon as they are read, so their work can start before the list is read
            whole; each block is a :class:`CustomerList` of those records alone (its counts are
            those so far, its ``problems`` empty: the returned list has them all). A list
            refused part way through may have handed out blocks before the refusal.

    Returns:
        The kept records, the count of rows without consent, and the rows dropped as unusable.

    Raises:
        ImportFailed: the file is missing or unreadable, a spreadsheet or another binary file,
            not UTF-8, not CSV, empty, has a duplicate column name, has no marketing-consent
            column, no identifier column, no column that was mapped, ignored or marked
            pre-hashed, or a column that looks like an identifier field but is not read.
    """
    path = Path(path)
    mapping = _checked_mapping(column_mapping, prehashed)
    if delimiter is not None and delimiter not in DELIMITER_NAMES:
        raise ImportFailed(f"delimiter {delimiter!r} is not one of , ; tab |")
    delimiter = delimiter or _sniff(path)
    with _open_text(path) as stream:
        reader = csv.reader(bounded_lines(stream), delimiter=delimiter)
        chunks: FileChunks | None = None
        try:
            header = next(reader, None)
            if not header or not any(name.strip() for name in header):
                raise ImportFailed(f"{path} is empty: expected a header row")
            columns = map_columns(str(path), header, mapping, prehashed, ignore_columns)
            chunks = FileChunks(stream, delimiter, len(header), reader.line_num)
            customers = _read_records(
                path, iter(chunks), tuple(header), columns.indexes, progress, blocks
            )
        except UnicodeDecodeError as exc:
            raise ImportFailed(_not_utf8_message(path)) from exc
        except csv.Error as exc:
            line = reader.line_num if chunks is None else chunks.line_num
            raise ImportFailed(f"{path}: not readable as CSV near line {line}: {exc}") from exc
    return dataclasses.replace(customers, unused_columns=columns.unused, delimiter=delimiter)


def read_customer_rows(
    rows: Iterable[Mapping[str, object]],
    *,
    column_mapping: Mapping[str, str] | None = None,
    prehashed: Collection[str] = (),
    ignore_columns: Collection[str] = (),
    progress: Callable[[int], object] | None = None,
    blocks: BlockCallback | None = None,
) -> CustomerList:
    """Read and check a list given in memory, as :func:`read_customer_list` reads a file.

    Each row maps column names to values (``{"email": ..., "marketing_consent": True}``). The
    first row's keys are the columns; a later row may leave a column out (an empty cell), but
    not add one (a malformed row). Values are read as the text a CSV file would hold: ``None``
    as an empty cell, ``True``/``False`` as yes/no, numbers in decimal. A problem names the row
    by its position, from 1.

    Args:
        rows: the rows, each a mapping of column name -> value; read once, in order.
        column_mapping: field -> column name, where the column is not named like the field.
        prehashed: identifier kinds whose column holds SHA-256 digests; each must be present.
        ignore_columns: columns to leave out, even if their names look like identifier fields.
        progress: called with the number of rows just read, for a progress bar.
        blocks: called with each block of kept records as it is read, as by
            :func:`read_customer_list`.

    Returns:
        The kept records, the count of rows without consent, and the rows dropped as unusable.

    Raises:
        ImportFailed: no rows, a row that is not a mapping, a value that is not text, a number,
            a bool or ``None``, or columns as :func:`read_customer_list` refuses them.
    """
    mapping = _checked_mapping(column_mapping, prehashed)
    given = iter(rows)
    first = next(given, None)
    if first is None:
        raise ImportFailed(f"{_IN_MEMORY}: none; expected mappings of column name -> value")
    header = tuple(_row_keys(first, 1))
    columns = map_columns(_IN_MEMORY, header, mapping, prehashed, ignore_columns)
    chunks = numbered_chunks(_mapping_cells(header, itertools.chain([first], given)))
    customers = _read_records(None, chunks, header, columns.indexes, progress, blocks)
    return dataclasses.replace(customers, unused_columns=columns.unused)


def _sniff(path: Path) -> str:
    """The delimiter of the list file, after checking that it is text at all.

    Raises:
        ImportFailed: the file cannot be read, or is a spreadsheet or another binary file.
    """
    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
    except FileNotFoundError:
        raise ImportFailed(f"the list {path} does not exist") from None
    except OSError as exc:
        raise ImportFailed(f"cannot read the list {path}: {exc.strerror or exc}") from exc
    not_text = not_text_message(path, head)
    if not_text:
        raise ImportFailed(not_text)
    # A cut multi-byte character at the sample's end is no error here; the read reports any.
    return sniff_delimiter(head.decode("utf-8-sig", errors="replace"))


def _checked_mapping(
    column_mapping: Mapping[str, str] | None, prehashed: Collection[str]
) -> dict[str, str]:
    mapping = dict(column_mapping or {})
    for name in mapping:
        if name not in FIELDS:
            raise ImportFailed(
                f"column mapping: unknown field {name!r} (fields: {', '.join(FIELDS)})"
            )
    for kind in prehashed:
        if kind not in KINDS:
            raise ImportFailed(
                f"pre-hashed: unknown identifier kind {kind!r} (kinds: {', '.join(KINDS)})"
            )
    return mapping


def _row_keys(row: object, line: int) -> list[str]:
    if not isinstance(row, Mapping):
        raise ImportFailed(
            f"{_IN_MEMORY}: row {line} is a {type(row).__name__}, not a mapping of column "
            "name -> value"
        )
    keys = list(row)
    for key in keys:
        if not isinstance(key, str):
            raise ImportFailed(f"{_IN_MEMORY}: row {line} has a column name that is not text")
    return keys


def _mapping_cells(header: tuple[str, ...], rows: Iterable[object]) -> Iterator[list[str]]:
    columns = frozenset(header)
    for line, row in enumerate(rows, start=1):
        keys = _row_keys(row, line)
        assert isinstance(row, Mapping)  # checked by _row_keys
        cells = [_cell(row.get(name), line, name) for name in header]
        # A column the first row lacks makes the row longer than the header: a malformed row.
        cells += [_cell(row[key], line, key) for key in keys if key not in columns]
        yield cells


def _cell(value: object, line: int, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    raise ImportFailed(
        f"{_IN_MEMORY}: row {line}, column {column!r}: a {type(value).__name__} value; give "
        "text, a number, a bool or None"
    )


def _read_records(
    path: Path | None,
    chunks: Iterator[Chunk],
    header: tuple[str, ...],
    indexes: Mapping[str, int],
    progress: Callable[[int], object] | None,
    blocks: BlockCallback | None = None,
) -> CustomerList:
    records = _Records(path, header, indexes, blocks)
    for chunk in chunks:
        before = records.read
        records.take_chunk(chunk)
        if progress is not None:
            # The calls a count row by row makes: one at each multiple of _PROGRESS_EVERY.
            for _ in range(records.read // _PROGRESS_EVERY - before // _PROGRESS_EVERY):
                progress(_PROGRESS_EVERY)
    records.finish()
    if progress is not None:
        progress(records.read % _PROGRESS_EVERY)
    return records.whole()


class _Records:
    """The list as it is read: kept records, counts, problems, and the blocks handed out."""

    def __init__(
        self,
        path: Path | None,
        header: tuple[str, ...],
        indexes: Mapping[str, int],
        blocks: BlockCallback | None,
    ) -> None:
        self.path = path
        self.header = header
        self.width = len(header)
        self.consent_at = indexes[CONSENT_FIELD]
        self.record_id_at = indexes.get(RECORD_ID_FIELD)
        self.kind_at = {kind: indexes[kind] for kind in KINDS if kind in indexes}
        self.names = {name: header[at].strip() for name, at in indexes.items()}
        self.blocks = blocks
        self.rows: list[int] = []
        self.lines: list[int] = []
        self.identifiers: dict[str, list[str]] = {kind: [] for kind in self.kind_at}
        self.problems: list[ListProblem] = []
        # The record id of each kept record -> its line: a repeated id's problem names it.
        self.ids = _new_ids()
        self.read = 0
        self.without_consent = 0
        self.block_start = 0
        self.consent = ConsentCells()

    def take_rows(self, rows: Iterable[list[str]], lines: Iterable[int]) -> None:
        """Take rows one at a time: the reference that :meth:`take_chunk` must agree with."""
        for row, line in zip(rows, lines, strict=True):
            if not row:
                continue  # a blank line is not a row
            ordinal = self.read
            self.read += 1
            if len(row) != self.width:
                detail = f"{len(row)} fields, the header has {self.width}"
                self.problems.append(ListProblem(line, None, "malformed_row", detail))
                continue
            consent = parse_marketing_consent(row[self.consent_at])
            if consent is None:
                detail = "expected yes/no, true/false or 1/0"
                column = self.names[CONSENT_FIELD]
                self.problems.append(ListProblem(line, column, "bad_consent", detail))
                continue
            if not consent:
                # Dropped before anything else is read from the row (DESIGN §10).
                self.without_consent += 1
                continue
            if self.record_id_at is not None:
                record_id = row[self.record_id_at].strip()
                column = self.names[RECORD_ID_FIELD]
                if not record_id:
                    self.problems.append(ListProblem(line, column, "missing_record_id", "empty"))
                    continue
                first = self.ids.setdefault(record_id, line)
                if first != line:
                    detail = f"the same id as row {first}"
                    self.problems.append(ListProblem(line, column, "duplicate_record_id", detail))
                    continue
            self.rows.append(ordinal)
            self.lines.append(line)
            for kind, at in self.kind_at.items():
                self.identifiers[kind].append(row[at])
            if self.blocks is not None and len(self.rows) - self.block_start == BLOCK_RECORDS:
                self._hand_out_block(self.read, self.without_consent)

    def take_chunk(self, chunk: Chunk) -> None:
        """Take a chunk's rows as :meth:`take_rows` does, a column at a time where it can."""
        if chunk.plain is not None:
            assert isinstance(chunk.lines, range)
            if _c_take_plain is None:
                for part in chunk.plain.chunks(chunk.lines):
                    self.take_chunk(part)
            else:
                self._take_plain(chunk.plain, chunk.lines)
            return
        if chunk.columns is not None:
            self._take_columns(chunk.columns, chunk.lines)
            return
        assert chunk.rows is not None
        rows, lines = chunk.rows, chunk.lines
        if not all(rows):  # blank lines are not rows
            present = list(map(bool, rows))
            rows = list(itertools.compress(rows, present))
            lines = list(itertools.compress(lines, present))
        if not rows:
            return
        # Rows of the header's width are taken as columns; the others one at a time.
        widths = list(map(len, rows))
        if widths.count(self.width) == len(rows):
            self._take_columns(list(zip(*rows, strict=True)), lines)
            return
        start = 0
        for malformed in itertools.compress(itertools.count(), map(self.width.__ne__, widths)):
            if malformed > start:
                columns = list(zip(*rows[start:malformed], strict=True))
                self._take_columns(columns, lines[start:malformed])
            self.take_rows(rows[malformed : malformed + 1], lines[malformed : malformed + 1])
            start = malformed + 1
        if start < len(rows):
            self._take_columns(list(zip(*rows[start:], strict=True)), lines[start:])

    def _take_plain(self, plain: PlainText, lines: range) -> None:
        """Take plain text in C, but for the lines it hands back (a problem, a consent spelling
        not read yet), each taken here; after :data:`_PROBLEMS_STEPPED_OVER` of them, the rest
        of the text is."""
        assert _c_take_plain is not None
        text, delimiter, width = plain.text, plain.delimiter, plain.width
        start_byte = start_char = 0
        line = lines.start
        for _ in range(_PROBLEMS_STEPPED_OVER + 1):
            read, rows, kept_lines, columns, start_byte, start_char = _c_take_plain(
                text,
                start_byte,
                start_char,
                delimiter,
                width,
                line,
                self.read,
                self.consent_at,
                -1 if self.record_id_at is None else self.record_id_at,
                tuple(self.kind_at.values()),
                self.consent,
                self.ids,
            )
            self._keep(read, rows, kept_lines, columns)
            line += read  # the C takes no blank line: each line it took was a row
            if start_char == len(text):
                return
            end = text.index("\n", start_char) + 1
            one = PlainText(text[start_char:end], delimiter, width)
            for part in one.chunks(range(line, line + 1)):
                self.take_chunk(part)
            line += 1
            start_byte += len(one.text.encode())
            start_char = end
        if start_char < len(text):
            rest = PlainText(text[start_char:], delimiter, width)
            for part in rest.chunks(range(line, lines.stop)):
                self.take_chunk(part)

    def _take_columns(self, columns: Sequence[Sequence[str]], lines: Sequence[int]) -> None:
        """Take rows of the header's width, given as columns.

        Each column is read at once. The runs of rows between those with a problem (their
        consent, their record id) are taken whole, those rows by :meth:`take_rows`; after
        :data:`_PROBLEMS_STEPPED_OVER` of them, so is the rest.
        """
        unreadable = self.consent.unreadable
        consents = list(map(self.consent.__getitem__, columns[self.consent_at]))
        if self.consent.unreadable == unreadable:
            bad_consents: Iterator[int] = iter(())
        else:
            is_none = map(operator.is_, consents, itertools.repeat(None))
            bad_consents = itertools.compress(itertools.count(), is_none)
        ids: list[str] = []
        if self.record_id_at is not None:
            # Only the rows with consent: nothing else is read from the others.
            ids = list(map(str.strip, itertools.compress(columns[self.record_id_at], consents)))
        start = 0  # the run's first row
        first_id = 0  # the position in ids of its first row with consent
        bad_consent = next(bad_consents, len(consents))
        for _ in range(_PROBLEMS_STEPPED_OVER + 1):
            while bad_consent < start:
                bad_consent = next(bad_consents, len(consents))
            end = self._take_run(columns, lines, consents, ids, start, bad_consent, first_id)
            first_id += consents[start:end].count(True)
            if end == len(consents):
                return
            self.take_rows([[column[end] for column in columns]], lines[end : end + 1])
            first_id += consents[end] is True
            start = end + 1
        rest = [column[start:] for column in columns]
        self.take_rows(map(list, zip(*rest, strict=True)), lines[start:])

    def _take_run(
        self,
        columns: Sequence[Sequence[str]],
        lines: Sequence[int],
        consents: list[bool | None],
        ids: list[str],
        start: int,
        end: int,
        first_id: int,
    ) -> int:
        """Take the rows from ``start`` on, before ``end``, up to the first whose record id is
        empty or seen already; return where the rows taken end."""
        run = consents[start:end]
        kept_lines = list(itertools.compress(lines[start:end], run))
        if self.record_id_at is not None:
            new = self._add_new_ids(ids[first_id : first_id + len(kept_lines)], kept_lines)
            if new < len(kept_lines):
                del run[_nth_true(run, new) :]
                del kept_lines[new:]
        end = start + len(run)
        ordinal = self.read
        self._keep(
            len(run),
            list(itertools.compress(range(ordinal, ordinal + len(run)), run)),
            kept_lines,
            [list(itertools.compress(columns[at][start:end], run)) for at in self.kind_at.values()],
        )
        return end

    def _keep(
        self, read: int, rows: list[int], lines: list[int], columns: Sequence[list[str]]
    ) -> None:
        """Keep the records of ``read`` rows without a problem, the others lacking consent.

        Args:
            read: the rows read.
            rows, lines: each kept record's row and line.
            columns: the kept records' cells of each identifier column, in ``kind_at`` order.
        """
        read_before, kept_before = self.read, len(self.rows)
        self.rows.extend(rows)
        self.lines.extend(lines)
        for kind, cells in zip(self.kind_at, columns, strict=True):
            self.identifiers[kind].extend(cells)
        while self.blocks is not None and len(self.rows) - self.block_start >= BLOCK_RECORDS:
            # A block carries the counts as of the row of its last record.
            last = self.block_start + BLOCK_RECORDS - 1 - kept_before
            row = rows[last]
            self._hand_out_block(row + 1, self.without_consent + row - read_before - last)
        self.read += read
        self.without_consent += read - len(rows)

    def _add_new_ids(self, ids: list[str], lines: list[int]) -> int:
        """Record the leading ids that are neither empty nor seen before, each with its line;
        return how many."""
        setdefault = self.ids.setdefault
        for added, (record_id, line) in enumerate(zip(ids, lines, strict=True)):
            if not record_id or setdefault(record_id, line) != line:
                return added
        return len(ids)

    def _hand_out_block(self, read: int, without_consent: int) -> None:
        assert self.blocks is not None
        end = self.block_start + BLOCK_RECORDS
        self.blocks(self._customers(self.block_start, end, read, without_consent))
        self.block_start = end

    def finish(self) -> None:
        """Hand out the last, shorter block."""
        if self.blocks is not None and len(self.rows) > self.block_start:
            end = len(self.rows)
            self.blocks(self._customers(self.block_start, end, self.read, self.without_consent))
            self.block_start = end

    def whole(self) -> CustomerList:
        """The whole list as read, with every problem."""
        return CustomerList(
            path=self.path,
            header=self.header,
            columns=self.names,
            records_read=self.read,
            without_consent=self.without_consent,
            problems=tuple(self.problems),
            rows=self.rows,
            lines=self.lines,
            identifiers=self.identifiers,
        )

    def _customers(self, start: int, end: int, read: int, without_consent: int) -> CustomerList:
        # Sliced, so copied: a block must not grow with the lists it came from.
        return CustomerList(
            path=self.path,
            header=self.header,
            columns=self.names,
            records_read=read,
            without_consent=without_consent,
            problems=(),
            rows=self.rows[start:end],
            lines=self.lines[start:end],
            identifiers={kind: column[start:end] for kind, column in self.identifiers.items()},
        )


def _nth_true(flags: Iterable[object], n: int) -> int:
    """The position of the true flag with ``n`` true flags before it (there must be one)."""
    return next(itertools.islice(itertools.compress(itertools.count(), flags), n, None))


def check_output_path(out: Path, list_path: Path | None) -> None:
    """Check, before any work, that a file can be written to ``out``.

    Args:
        out: the file to write.
        list_path: the list being read, which must not be overwritten (``None``: rows given in
            memory).

    Raises:
        ImportFailed: ``out`` is the input file, a directory, or in a folder that does not
            exist.
    """
    if out.exists() and out.is_dir():
        raise ImportFailed(f"output {out} is a directory; give a file name")
    if (
        list_path is not None
        and out.exists()
        and list_path.exists()
        and out.resolve() == list_path.resolve()
    ):
        raise ImportFailed(f"output {out} is the input list; give another file name")
    if not out.parent.is_dir():
        raise ImportFailed(f"cannot write {out}: folder {out.parent} does not exist")


def write_matched_rows(
    list_path: Path,
    out: Path,
    matched_rows: Collection[int] | NDArray[np.integer],
    *,
    delimiter: str = ",",
) -> int:
    """Write the header and the matched rows of the list, in input order, in its format.

    Cells are as in the list, separated by its delimiter, except that one starting a
    spreadsheet formula gets a leading ``'`` (:func:`cleanroom._output.spreadsheet_cell`). The
    file is written under a temporary name and renamed into place, so ``out`` is never left
    half written.

    Args:
        list_path: the list that was read (re-read here, so it must be unchanged).
        out: the CSV file to write.
        matched_rows: positions among the data rows (:attr:`CustomerList.rows` values), or
            an array of them.
        delimiter: the list's delimiter (:attr:`CustomerList.delimiter`).

    Returns:
        The number of rows written (without the header).

    Raises:
        ImportFailed: the list cannot be re-read or ``out`` cannot be written.
    """
    if isinstance(matched_rows, np.ndarray):
        positions = matched_rows.astype(np.int64, copy=False).reshape(-1)
    else:
        positions = np.fromiter(matched_rows, dtype=np.int64, count=len(matched_rows))
    wanted = np.zeros(int(positions.max()) + 1 if len(positions) else 0, dtype=bool)
    wanted[positions] = True
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    written = 0
    try:
        try:
            with temporary.open("wb") as binary:
                written = copy_plain_rows(list_path, wanted, delimiter, binary)
        except NotPlain:
            # Quotes, formula cells or bare carriage returns: parse and write it as CSV.
            with temporary.open("w", encoding="utf-8", newline="") as f:
                written = _write_rows(list_path, wanted, delimiter, f)
        os.replace(temporary, out)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        temporary.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ImportFailed(f"cannot write the matched rows to {out}: {reason}") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return written


def _write_rows(list_path: Path, wanted: NDArray[np.bool_], delimiter: str, f: TextIO) -> int:
    """Write the header and the wanted rows through the CSV writer; return the rows written."""
    written = 0
    with _open_rows(list_path, delimiter) as reader:
        writer = csv_writer(f, delimiter=delimiter, lineterminator="\n")
        header = next(reader, None)
        if header is None:
            raise ImportFailed(f"{list_path} became empty while matching")
        writer.writerow(header)
        for ordinal, _, cells in _data_rows(reader):
            if ordinal < len(wanted) and wanted[ordinal]:
                writer.writerow(cells)
                written += 1
    return written


def _open_lines(path: Path) -> TextIO:
    # The same decoding and line splitting (\n, \r\n, \r; nothing else) as _open_rows.
    return path.open(encoding="utf-8-sig", newline="")


def _data_rows(reader: Reader) -> Iterator[tuple[int, int, list[str]]]:
    """Yield (position among data rows, line number, cells); blank lines are not rows."""
    ordinal = 0
    for cells in reader:
        if not cells:
            continue
        yield ordinal, reader.line_num, cells
        ordinal += 1


@contextmanager
def _open_rows(path: Path, delimiter: str) -> Iterator[Reader]:
    with _open_text(path) as stream:
        yield csv.reader(bounded_lines(stream), delimiter=delimiter)


@contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    try:
        # Opened here, not in a with-statement around the yield, so only a failure to open
        # becomes "cannot read"; errors in the caller's block keep their own type.
        stream = _open_lines(path)
    except FileNotFoundError:
        raise ImportFailed(f"the list {path} does not exist") from None
    except OSError as exc:
        raise ImportFailed(f"cannot read the list {path}: {exc.strerror or exc}") from exc
    with stream:
        yield stream


def _not_utf8_message(path: Path) -> str:
    """Say where the first byte that is not UTF-8 is (only computed when there is one)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, offset = 1, 0
    try:
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    line += block.count(b"\n", 0, exc.start)
                    return (
                        f"{path} is not UTF-8 text: invalid byte at line {line} (byte offset "
                        f"{offset + exc.start}); re-save it as UTF-8"
                    )
                line += block.count(b"\n")
                offset += len(block)
    except OSError:
        pass
    return f"{path} is not UTF-8 text; re-save it as UTF-8"
