"""The rows of a list file after its header, in chunks, as the CSV reader reads them.

Most lists are plain: no quote character, so every line is one row whose cells are the line cut
at the delimiter. Such text is read a block at a time and handed on as it is (:class:`PlainText`),
for the list reader to take in C where it can, or to split with string methods, the block's
cells coming out column by column without a list per row. Only the rest (quotes, NULs, carriage
returns that do not end a line, a line longer than a field may be) goes through the CSV reader.
What comes out is what :func:`csv.reader` gives, with the line number it would report after each
row; ``tests/property/test_list_reader.py`` holds it to :class:`RowByRowChunks`, which is that.
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from cleanroom._textfile import bounded_lines

__all__ = [
    "CHUNK_ROWS",
    "Chunk",
    "FileChunks",
    "PlainText",
    "RowByRowChunks",
    "line_numbers",
    "numbered_chunks",
]

BLOCK_CHARS: Final = 1 << 16
"""Characters of text read at a time: below the CSV reader's default field size limit, so that
plain blocks are not sent to the reader for being longer than a field may be."""

CHUNK_ROWS: Final = 256
"""Rows read at a time through the CSV reader. Few enough that the rows held at once do not set
off the cyclic garbage collector (its youngest generation is collected every 700 new
containers)."""

_ODD_LINES_AS_ROWS: Final = 64
"""Lines not of the header's width (blank ones included) in a plain block beyond which the block
comes out as rows rather than runs of columns between them."""

# Stands for a line end while a block is split at its delimiters: a plain block has no NUL.
_LINE_MARK: Final = "\x00"


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows: as rows, as columns (where every row has the same width), or as the
    plain text they were read from.

    Attributes:
        lines: the line each row ends on (for rows in memory: its position, from 1); for plain
            text, each line's number, blank lines included.
        rows: each row's cells (a blank line has none), or ``None``.
        columns: each column's cells, one per row, or ``None``.
        plain: the lines as plain text, or ``None``; :meth:`PlainText.chunks` gives their rows.
    """

    lines: Sequence[int]
    rows: list[list[str]] | None = None
    columns: Sequence[Sequence[str]] | None = None
    plain: PlainText | None = None


@dataclass(frozen=True)
class PlainText:
    """Whole lines of a list file that are plain: no quote, no NUL, every carriage return part of
    a ``\\r\\n`` line end, so every line is one row whose cells are the line cut at the delimiter.

    Attributes:
        text: the lines, each ending in ``\\n`` or ``\\r\\n``.
        delimiter: the field delimiter.
        width: the header's width (at least 2).
    """

    text: str = field(repr=False)
    delimiter: str
    width: int

    def chunks(self, lines: range) -> list[Chunk]:
        """The rows of the text, whose lines are numbered ``lines``.

        The lines of the header's width come out as columns, a run at a time; the others
        (blank, shorter, longer) as rows, unless there are many.
        """
        text, width, delimiter = self.text, self.width, self.delimiter
        line_end = "\n"
        if "\r" in text:
            if text.count("\r\n") == len(lines):
                line_end = "\r\n"
            else:  # some lines end in "\n" alone
                text = text.replace("\r\n", "\n")
        count = len(lines)
        stride = width + 1
        # Line ends become "<delimiter>NUL<delimiter>": a NUL cell after every ``width`` cells
        # then shows that every line has ``width`` cells.
        cells = text.replace(line_end, f"{delimiter}{_LINE_MARK}{delimiter}").split(delimiter)
        if len(cells) == stride * count + 1 and cells[width::stride].count(_LINE_MARK) == count:
            return [self._columns(cells, 0, lines)]
        # Line k's cells are those between the marks ending lines k - 1 and k.
        marks = list(
            itertools.compress(
                itertools.count(), map(operator.eq, cells, itertools.repeat(_LINE_MARK))
            )
        )
        starts = [0, *map((1).__add__, marks)]
        del starts[-1]
        widths = list(map(operator.sub, marks, starts))
        odd = list(itertools.compress(itertools.count(), map(width.__ne__, widths)))
        if len(odd) > _ODD_LINES_AS_ROWS:
            return [Chunk(lines, rows=list(map(self._row, itertools.repeat(cells), starts, marks)))]
        chunks = []
        start = 0
        for at in [*odd, count]:
            if at > start:
                chunks.append(self._columns(cells, starts[start], lines[start:at]))
            if at < count:
                chunks.append(
                    Chunk(lines[at : at + 1], rows=[self._row(cells, starts[at], marks[at])])
                )
            start = at + 1
        return chunks

    def _columns(self, cells: list[str], start: int, lines: range) -> Chunk:
        """The lines from ``cells[start]`` on, each of the header's width, as columns."""
        stride = self.width + 1
        end = start + stride * len(lines)
        return Chunk(
            lines, columns=[cells[at:end:stride] for at in range(start, start + self.width)]
        )

    @staticmethod
    def _row(cells: list[str], start: int, end: int) -> list[str]:
        row = cells[start:end]
        # The CSV reader gives no cells for an empty line, where split gives one empty cell.
        return [] if row == [""] else row


class FileChunks:
    """The rows of an open list file after its header, in chunks.

    Args:
        stream: the file, opened as :func:`csv.reader` needs it (``newline=""``) and read up to
            the end of the header.
        delimiter: the field delimiter.
        width: the header's width; plain text whose lines all have it comes out as columns.
        line_num: the lines read so far (the header's).

    Attributes:
        line_num: the lines read so far, as :attr:`csv.Reader.line_num` counts them; after a
            :class:`csv.Error`, the line it was raised on.
    """

    def __init__(self, stream: TextIO, delimiter: str, width: int, line_num: int) -> None:
        self.line_num = line_num
        self._stream = stream
        self._delimiter = delimiter
        self._width = width
        self._text = ""  # read but not yet taken; it starts at a line start

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            more = self._stream.read(BLOCK_CHARS)
            text = self._text + more
            if not text:
                return
            # Whole lines only, but for the end of the file, whose last line may have no end.
            end = text.rfind("\n") + 1 if more else len(text)
            block, self._text = text[:end], text[end:]
            chunks = self._plain(block) if block else None
            if chunks is None:
                yield from self._through_csv(block)
            else:
                yield from chunks

    def _plain(self, block: str) -> list[Chunk] | None:
        """The block as one plain chunk; ``None`` if it is not plain text."""
        # No longer than a field may be, it cannot hold a field the CSV reader would refuse.
        if '"' in block or _LINE_MARK in block or len(block) > csv.field_size_limit():
            return None
        if self._width < 2:  # a blank line (no cells) would pass for one empty cell
            return None
        if not block.endswith("\n"):  # the file's last line: "\r" or nothing ends it
            block += "\n"
        if "\r" in block and block.count("\r") != block.count("\r\n"):
            return None  # a "\r" alone ends a line, but not a block split at "\n"
        first = self.line_num + 1
        count = block.count("\n")
        self.line_num += count
        plain = PlainText(block, self._delimiter, self._width)
        return [Chunk(range(first, first + count), plain=plain)]

    def _through_csv(self, block: str) -> Iterator[Chunk]:
        """Read the block, the text read after it, and the rows running on past them, as CSV."""
        # Completed with the rest of its last line, so the reader reads whole lines throughout.
        rest = bounded_lines(self._stream)
        text = block + self._text + next(rest, "")
        self._text = ""
        source = io.StringIO(text, newline="")
        reader = csv.reader(itertools.chain(source, rest), delimiter=self._delimiter)
        start = self.line_num
        # The text is not empty, and the reader reads rows until it has read all of it.
        while True:
            before = self.line_num
            try:
                rows = list(itertools.islice(reader, CHUNK_ROWS))
            finally:
                self.line_num = start + reader.line_num
            yield Chunk(line_numbers(rows, before, self.line_num), rows=rows)
            if source.tell() == len(text):
                return


class RowByRowChunks:
    """The reference :class:`FileChunks` is held to: the CSV reader over the file, one row a
    chunk, each with the reader's own line count after it. Takes the same arguments."""

    def __init__(self, stream: TextIO, delimiter: str, width: int, line_num: int) -> None:
        del width  # every row comes as cells
        self._reader = csv.reader(stream, delimiter=delimiter)
        self._header_lines = line_num

    @property
    def line_num(self) -> int:
        return self._header_lines + self._reader.line_num

    def __iter__(self) -> Iterator[Chunk]:
        for cells in self._reader:
            yield Chunk([self.line_num], rows=[cells])


def line_numbers(rows: list[list[str]], before: int, after: int) -> Sequence[int]:
    """The line each row ends on, from the reader's line count before and after the rows.

    Asking the reader after each row would cost a step per row. A row takes one line, and one
    more per line break inside its quoted cells (``\\r\\n`` is one break): the reader reads
    whole lines, cut at ``\\n``, ``\\r\\n`` or ``\\r``, and only a quoted cell holds their ends.
    The exception is the file's last row, whose cell a missing closing quote leaves holding the
    last line's end: the last row ends where the reader is.
    """
    if after - before == len(rows):
        return range(before + 1, after + 1)
    lines = list(itertools.accumulate(map(_lines_taken, rows), initial=before))
    del lines[0]
    lines[-1] = after
    return lines


def _lines_taken(row: list[str]) -> int:
    return 1 + sum(cell.count("\n") + cell.count("\r") - cell.count("\r\n") for cell in row)


def numbered_chunks(rows: Iterator[list[str]]) -> Iterator[Chunk]:
    """Rows numbered by their position, from 1, in chunks of :data:`CHUNK_ROWS`."""
    first = 1
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        yield Chunk(range(first, first + len(chunk)), rows=chunk)
        first += len(chunk)
