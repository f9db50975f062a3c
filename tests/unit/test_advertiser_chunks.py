"""A list file's rows in chunks: plain text as it is (split, as columns), the rest through the
CSV reader."""

from __future__ import annotations

import csv
import io

import pytest

from cleanroom.advertiser import _chunks
from cleanroom.advertiser._chunks import Chunk, FileChunks, line_numbers, numbered_chunks


def _chunks_of(text: str, width: int, delimiter: str = ",", *, split: bool = True) -> list[Chunk]:
    """The chunks of the text after its header; with ``split``, plain text split into rows."""
    stream = io.StringIO(text, newline="")
    header = next(csv.reader(stream, delimiter=delimiter))
    assert len(header) == width
    chunks = list(FileChunks(stream, delimiter, width, line_num=1))
    if not split:
        return chunks
    return [
        part
        for chunk in chunks
        for part in ([chunk] if chunk.plain is None else chunk.plain.chunks(range(*_span(chunk))))
    ]


def _span(chunk: Chunk) -> tuple[int, int]:
    assert isinstance(chunk.lines, range)
    return chunk.lines.start, chunk.lines.stop


def _rows(chunks: list[Chunk]) -> list[tuple[int, list[str]]]:
    """(line, cells) of every row, whichever way each chunk holds them."""
    found = []
    for chunk in chunks:
        rows = chunk.rows
        if rows is None:
            rows = [list(row) for row in zip(*chunk.columns or (), strict=True)]
        found += list(zip(chunk.lines, rows, strict=True))
    return found


def _as_csv_reads(text: str, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader)
    return [(reader.line_num, cells) for cells in reader]


def test_a_plain_list_comes_out_as_columns_block_by_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_chunks, "BLOCK_CHARS", 20)
    text = "id;email\r\n" + "".join(f"r{i};u{i}@example.com\r\n" for i in range(9))
    plain = _chunks_of(text, 2, ";", split=False)
    assert len(plain) > 1 and all(chunk.plain is not None for chunk in plain)
    assert plain[0].plain is not None and plain[0].plain.text == "r0;u0@example.com\r\n"
    chunks = _chunks_of(text, 2, ";")
    assert len(chunks) == len(plain) and all(chunk.rows is None for chunk in chunks)
    assert _rows(chunks) == _as_csv_reads(text, ";")
    assert chunks[0].columns == [["r0"], ["u0@example.com"]]


def test_odd_lines_of_a_plain_block_come_as_rows_between_runs_of_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "x,y\na,b\nc,d\n\ne\nf,g\nh,i,j\n"
    chunks = _chunks_of(text, 2)
    assert [(list(c.lines), c.rows, c.columns) for c in chunks] == [
        ([2, 3], None, [["a", "c"], ["b", "d"]]),
        ([4], [[]], None),
        ([5], [["e"]], None),
        ([6], None, [["f"], ["g"]]),
        ([7], [["h", "i", "j"]], None),
    ]
    # Past a few such lines, the block comes as rows.
    monkeypatch.setattr(_chunks, "_ODD_LINES_AS_ROWS", 2)
    chunks = _chunks_of(text, 2)
    assert len(chunks) == 1 and chunks[0].columns is None
    assert _rows(chunks) == _as_csv_reads(text)


@pytest.mark.parametrize(
    "body",
    [
        "a,b\n\n   \nc,d\n",  # a blank line (no cells) and a line of spaces (one cell)
        "a,b,c\nd\n",  # not every line the header's width
        "a,b\rc,d\r\ne,f\n",  # a carriage return alone ends a line too
        'a,"b\nc"\nd,"e ""quoted"""\n',  # quotes, one over two lines
        'a,"b\r\nc\rd"\ne,f',  # line breaks of each kind in a quoted cell; no last line end
        'a,b\nc,"never closed\n',  # the quote runs to the end of the file
        "a,b\nc,\x00\n",  # a NUL, which marks line ends while plain text is split
    ],
)
def test_other_text_is_read_as_the_csv_reader_reads_it(body: str) -> None:
    text = "x,y\n" + body
    assert _rows(_chunks_of(text, 2)) == _as_csv_reads(text)


def test_a_line_longer_than_a_block_or_a_field_may_be(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chunks, "BLOCK_CHARS", 8)
    text = "x,y\n" + "a," + "b" * 50 + "\nc,d\n"
    assert _rows(_chunks_of(text, 2)) == [(2, ["a", "b" * 50]), (3, ["c", "d"])]
    limit = csv.field_size_limit(20)
    try:
        chunks = FileChunks(io.StringIO(text[4:], newline=""), ",", 2, line_num=1)
        with pytest.raises(csv.Error, match="field larger than field limit"):
            list(chunks)
        assert chunks.line_num == 2
    finally:
        csv.field_size_limit(limit)


def test_line_numbers_count_the_breaks_in_quoted_cells() -> None:
    rows = [["a"], ["b\r\nc", "d\re"], [], ["f\ng"]]
    assert line_numbers(rows, 1, 8) == [2, 5, 6, 8]
    assert line_numbers([["a"], ["b"]], 3, 5) == range(4, 6)
    # A quote left open at the end of the file keeps the last line's end: it ends where the
    # reader is.
    assert line_numbers([["a\nb"], ["open\n"]], 1, 4) == [3, 4]


def test_rows_in_memory_are_numbered_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_chunks, "CHUNK_ROWS", 2)
    chunks = list(numbered_chunks(iter([["a"], ["b"], ["c"]])))
    assert [(list(chunk.lines), chunk.rows) for chunk in chunks] == [
        ([1, 2], [["a"], ["b"]]),
        ([3], [["c"]]),
    ]


def test_a_list_of_one_column_keeps_its_blank_lines_apart() -> None:
    text = "x\na\n\nb\n"
    assert _rows(_chunks_of(text, 1)) == _as_csv_reads(text) == [(2, ["a"]), (3, []), (4, ["b"])]
