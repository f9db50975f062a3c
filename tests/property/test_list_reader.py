"""The list reader, a chunk at a time, gives exactly what the CSV reader gives row by row.

The reference is the reading the chunked one replaced: :func:`csv.reader` over the file, each
row with the reader's own line count after it (``RowByRowChunks``), taken one at a time
(``_Records.take_rows``), with the record ids in a dict. The chunked reader is held to it twice:
with plain blocks taken in C (``_plain_block.c``) but for the lines it hands back, and as it
reads where that module was not built, every block split and taken in Python.

Hypothesis writes lists with every anomaly the reader handles: short, long and blank rows (and
rows of spaces), quoted cells over several lines (``\\n``, ``\\r\\n``, ``\\r`` inside), quotes
left open at the end of the file, consent values readable, unreadable, empty and oddly cased,
empty, padded and repeated record ids, lists without a record id column and with one to three
identifier columns and a column nothing reads, in any order, a byte-order mark, each delimiter,
``\\n``/``\\r\\n``/``\\r`` line ends mixed or not, a missing last line end, and now and then a
NUL, a byte that is not UTF-8 or a field past the CSV reader's size limit. Text blocks, the odd
lines a plain block may hold as rows, CSV chunks, blocks of records, progress steps, the problems
stepped over in a run and the consent spellings remembered are all made small, so a few dozen
rows cross many boundaries of each.

Compared for every list: the whole :class:`CustomerList`, every block handed out (records and
counts) and every progress call; for a list that is refused, the error. Rows given in memory
are compared the same way. ``CLEANROOM_LIST_READER_EXAMPLES=N`` runs N examples per test.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from cleanroom.advertiser import CustomerList, _chunks, _consent, _listfile
from cleanroom.advertiser._chunks import Chunk, RowByRowChunks
from cleanroom.errors import ImportFailed

EXAMPLES = int(os.environ.get("CLEANROOM_LIST_READER_EXAMPLES", "250"))

KINDS = ["email", "phone", "maid"]
CONSENTS = ["yes", "no", "", "TRUE", " Yes ", "0", "1", "granted", "Revoked", "maybe", "2", "y"]
RECORD_IDS = ["r1", "r2", "r3", " r1", "r2 ", "", " ", "R1"]
CELLS = [
    "a@example.com",
    "+1 415 555 2671",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "",
    " ",
    "line\nbreak",
    "cr\ronly",
    "crlf\r\ninside",
    "ends with\n",
    'say "hi"',
    '"',
    "with,comma",
    "with;semicolon",
    "with\ttab",
    "with|pipe",
    "=1+1",
    "\ufeff",
    "é😀",
]


def _take_one_by_one(records: _listfile._Records, chunk: Chunk) -> None:
    assert chunk.rows is not None
    records.take_rows(chunk.rows, chunk.lines)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How small the reader's units are made for one example."""

    block_chars: int
    odd_lines_as_rows: int
    chunk_rows: int
    block_records: int
    progress_every: int
    problems_stepped_over: int
    consent_spellings: int
    field_size_limit: int


sizes = st.builds(
    Sizes,
    block_chars=st.sampled_from([1, 2, 5, 16, 40, 100, 300, 1 << 16]),
    odd_lines_as_rows=st.sampled_from([0, 1, 2, 64]),
    chunk_rows=st.integers(1, 9),
    block_records=st.integers(1, 7),
    progress_every=st.integers(1, 8),
    problems_stepped_over=st.integers(0, 3),
    consent_spellings=st.sampled_from([0, 1, 3, 1024]),
    field_size_limit=st.sampled_from([csv.field_size_limit()] * 8 + [20, 40]),
)


@dataclasses.dataclass(frozen=True)
class ListFile:
    content: bytes
    delimiter: str | None


@st.composite
def list_files(draw: st.DrawFn) -> ListFile:
    """A customer list with anomalies of every kind the reader handles."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
    fields = ["marketing_consent", *kinds]
    if draw(st.booleans()):
        fields.append("record_id")
    if draw(st.booleans()):
        fields.append("first_name")  # a column no field reads
    fields = draw(st.permutations(fields))
    header = [draw(st.sampled_from([name, name.upper(), f" {name} "])) for name in fields]
    cell_for = {
        "marketing_consent": st.sampled_from(CONSENTS),
        "record_id": st.sampled_from(RECORD_IDS) | st.integers(0, 40).map(lambda i: f"id{i}"),
    }
    text_cell = st.sampled_from(CELLS) | st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6
    )
    # Mostly rows without a problem, so that runs of them are long enough to matter.
    plain = st.tuples(*(cell_for.get(name, st.sampled_from(CELLS[:5])) for name in fields))
    odd = st.tuples(*(cell_for.get(name, text_cell) for name in fields))
    width = len(fields)
    row = st.one_of(
        plain.map(list),
        plain.map(list),
        plain.map(list),
        odd.map(list),
        st.lists(text_cell, max_size=width + 2),  # short, long, or of the header's width
        st.sampled_from([[], ["  "]]),  # a blank line; a line of spaces (a row of one cell)
    )
    clean = draw(st.integers(0, 2)) == 0
    if clean:
        # A clean list, which the C takes whole, with now and then what makes it hand a block
        # back: a repeated id, one str.strip trims further, a consent it does not know.
        rows = draw(st.lists(clean_rows(fields), min_size=8, max_size=80))
        if "record_id" in fields:
            at = fields.index("record_id")
            for number, cells in enumerate(rows):
                odd = [f" id{number}\x1f", "id0", f"\xa0id{number}", f"é{number}", f"{number}é", ""]
                cells[at] = draw(st.sampled_from([f"id{number}"] * 30 + odd))
    else:
        rows = draw(st.lists(row, min_size=draw(st.sampled_from([0, 5, 20, 40])), max_size=80))
    quoting = draw(st.sampled_from(["minimal", "raw"] if clean else ["minimal", "all", "raw"]))
    ends = ["\n", "\r\n"] if clean else ["\n", "\r\n", "\r"]
    endings = draw(st.lists(st.sampled_from(ends), min_size=1, max_size=3))
    lines = []
    for number, cells in enumerate([header, *rows]):
        if quoting == "raw":  # delimiters and quotes in cells as they come
            line = delimiter.join(cells)
        else:
            buffer = io.StringIO()
            style = csv.QUOTE_ALL if quoting == "all" and cells else csv.QUOTE_MINIMAL
            csv.writer(buffer, delimiter=delimiter, lineterminator="", quoting=style).writerow(
                cells
            )
            line = buffer.getvalue()
        lines.append(line + endings[number % len(endings)])
    text = "".join(lines)
    ending = draw(st.sampled_from(["kept", "kept", "dropped", "open quote"]))
    if ending == "dropped":
        text = text.rstrip("\r\n")
    elif ending == "open quote":  # a last cell whose closing quote never comes
        text += draw(st.sampled_from(['r9,"open\n', '"open', 'x,"a\r\nb\r\n']))
    text = draw(st.sampled_from(["", "", "\ufeff"])) + text
    damage = draw(st.sampled_from(["none"] * 14 + ["nul", "not utf-8"]))
    if damage == "nul":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\x00" + text[at:]
    data = text.encode("utf-8")
    if damage == "not utf-8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    return ListFile(data, draw(st.sampled_from([delimiter, delimiter, None])))


def clean_rows(fields: list[str]) -> st.SearchStrategy[list[str]]:
    """Rows of the header's width, mostly of two consent spellings, each readable (if ASCII)."""
    readable = [c for c in CONSENTS if _consent.parse_marketing_consent(c) is not None]
    consent = st.sampled_from(["yes"] * 90 + ["no"] * 30 + readable + ["\x1cYES", "yes\xa0"])
    cell = st.sampled_from([*CELLS[:5]] * 4 + ["é😀", "\ufeff", "x\ty"])
    return st.tuples(*(consent if name == "marketing_consent" else cell for name in fields)).map(
        list
    )


Outcome = tuple[object, ...]


def _outcome(read: Callable[..., CustomerList]) -> Outcome:
    blocks: list[CustomerList] = []
    progress: list[int] = []
    try:
        whole = read(blocks=blocks.append, progress=progress.append)
    except ImportFailed as refused:
        event(f"refused: {str(refused).split(': ', 1)[-1][:40]}")
        # What was handed out before a refusal depends on how far ahead the reader read.
        return ("refused", str(refused))
    event(f"read: {'some' if whole.rows else 'no'} records kept, {len(blocks)} blocks")
    return (
        dataclasses.asdict(whole),
        [dataclasses.asdict(block) for block in blocks],
        progress,
    )


def _all(read: Callable[..., CustomerList], sizes: Sizes) -> tuple[Outcome, Outcome, Outcome]:
    """The outcome of the chunked reader with and without its C, and of the reference, at the
    given sizes."""
    limit = csv.field_size_limit(sizes.field_size_limit)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_chunks, "BLOCK_CHARS", sizes.block_chars)
            patch.setattr(_chunks, "_ODD_LINES_AS_ROWS", sizes.odd_lines_as_rows)
            patch.setattr(_chunks, "CHUNK_ROWS", sizes.chunk_rows)
            patch.setattr(_listfile, "BLOCK_RECORDS", sizes.block_records)
            patch.setattr(_listfile, "_PROGRESS_EVERY", sizes.progress_every)
            patch.setattr(_listfile, "_PROBLEMS_STEPPED_OVER", sizes.problems_stepped_over)
            patch.setattr(_consent.ConsentCells, "LIMIT", sizes.consent_spellings)
            taken: list[tuple[int, bool]] = []  # a call each: rows taken, a line handed back
            take_plain = _listfile._c_take_plain
            if take_plain is not None:

                def counted(*args: Any) -> Any:
                    result = take_plain(*args)
                    taken.append((result[0], result[5] < len(args[0])))
                    return result

                patch.setattr(_listfile, "_c_take_plain", counted)
            chunked = _outcome(read)
            event(f"rows taken in C: {'some' if any(r for r, _ in taken) else 'none'}")
            event(f"lines handed back by the C: {'some' if any(b for _, b in taken) else 'none'}")
            patch.setattr(_listfile, "_c_take_plain", None)
            patch.setattr(_listfile, "_new_ids", dict)
            in_python = _outcome(read)
            patch.setattr(_listfile, "FileChunks", RowByRowChunks)
            patch.setattr(_chunks, "CHUNK_ROWS", 1)
            patch.setattr(_listfile._Records, "take_chunk", _take_one_by_one)
            reference = _outcome(read)
    finally:
        csv.field_size_limit(limit)
    return chunked, in_python, reference


@settings(max_examples=EXAMPLES)
@given(file=list_files(), sizes=sizes)
@example(
    file=ListFile(
        b"\xef\xbb\xbfrecord_id,email,marketing_consent\r\n"
        b"r1,a@example.com,yes\r\nr2,b@example.com,no\r\n\r\n"
        b'r3,"two\r\nlines",yes\r\nr1,c@example.com,yes\r\n,d@example.com,yes\r\n'
        b"r4,e@example.com,maybe\r\nr5,short\r\nr6,f@example.com,yes",
        ",",
    ),
    sizes=Sizes(40, 1, 2, 2, 3, 1, 1, csv.field_size_limit()),
)
def test_a_list_read_in_chunks_is_what_it_is_read_row_by_row(file: ListFile, sizes: Sizes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "customers.csv"
        path.write_bytes(file.content)

        def read(**callbacks: Callable[..., object]) -> CustomerList:
            return _listfile.read_customer_list(path, delimiter=file.delimiter, **callbacks)

        chunked, in_python, reference = _all(read, sizes)
    assert chunked == reference
    assert in_python == reference


values = st.one_of(
    st.sampled_from(CELLS + CONSENTS + RECORD_IDS),
    st.integers(-3, 3),
    st.sampled_from([0.5, -2.0, 1e20]),
    st.booleans(),
    st.none(),
)


@st.composite
def rows_in_memory(draw: st.DrawFn) -> list[dict[str, object]]:
    columns = draw(st.permutations(["record_id", "email", "phone", "marketing_consent"]))
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        present = draw(st.lists(st.sampled_from(columns), unique=True))
        row: dict[str, object] = {name: draw(values) for name in present}
        if draw(st.integers(0, 9)) == 0:
            row["maid"] = draw(values)  # a column the first row lacks: a malformed row
        if draw(st.integers(0, 39)) == 0:
            row["email"] = b"not text"  # a value that is refused
        rows.append(row)
    rows[0] = {name: rows[0].get(name) for name in columns}  # the first row names the columns
    return rows


@settings(max_examples=EXAMPLES // 4)
@given(rows=rows_in_memory(), sizes=sizes)
def test_rows_in_memory_read_in_chunks_are_what_they_are_read_row_by_row(
    rows: list[dict[str, object]], sizes: Sizes
) -> None:
    def read(**callbacks: Callable[..., object]) -> CustomerList:
        return _listfile.read_customer_rows(iter(rows), **callbacks)

    chunked, in_python, reference = _all(read, sizes)
    assert chunked == reference
    assert in_python == reference
