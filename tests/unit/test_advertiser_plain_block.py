"""The C that takes plain blocks of a list, and the record ids it keeps.

What it takes is held to the Python reader by ``tests/property/test_list_reader.py``; here, that
it takes a clean list's blocks at all, that it stops at each line only the Python can read,
keeping nothing of it, and that the reader goes on past such lines in C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cleanroom.advertiser import _chunks, _listfile

_plain_block = pytest.importorskip(
    "cleanroom.advertiser._plain_block", reason="the C extensions were not built"
)
RecordIds = _plain_block.RecordIds
take_plain = _plain_block.take_plain

# record_id,email,phone,marketing_consent
LAYOUT = {"width": 4, "consent_at": 3, "record_id_at": 0, "kinds_at": (1, 2)}
KNOWN = {"yes": True, "no": False, "Y": True}


def _take(
    text: str,
    ids: Any,
    *,
    start: tuple[int, int] = (0, 0),
    first_line: int = 2,
    first_row: int = 0,
    **layout: Any,
) -> Any:
    at = {**LAYOUT, **layout}
    return take_plain(
        text,
        *start,
        ",",
        at["width"],
        first_line,
        first_row,
        at["consent_at"],
        at["record_id_at"],
        at["kinds_at"],
        dict(KNOWN),
        ids,
    )


def test_record_ids_keep_the_first_line_of_each_id() -> None:
    ids = RecordIds()
    assert ids.setdefault("r1", 2) == 2
    assert ids.setdefault("r1", 9) == 2
    assert ids.setdefault("é1", 3) == 3
    assert ids.setdefault("e1", 4) == 4
    assert len(ids) == 3 and "r1" in ids and "é1" in ids and "r2" not in ids and 1 not in ids
    with pytest.raises(TypeError):
        ids.setdefault(b"r1", 5)


def test_record_ids_grow_and_find_every_id() -> None:
    ids = RecordIds()
    count = 200_000
    for n in range(count):
        assert ids.setdefault(f"id{n}", n + 2) == n + 2
    assert len(ids) == count
    assert all(ids.setdefault(f"id{n}", 0) == n + 2 for n in range(0, count, 997))
    assert "id200000" not in ids


def test_a_clean_block_is_taken_whole() -> None:
    ids = RecordIds()
    text = "r1,a@example.com,,yes\r\n r2 ,,+1 415 555 2671,no\n r3\x1f,é@example.com,,Y\n"
    read, rows, lines, columns, stop_byte, stop_char = _take(text, ids, first_line=10, first_row=7)
    assert (read, rows, lines) == (3, [7, 9], [10, 12])
    assert (stop_byte, stop_char) == (len(text.encode()), len(text))
    assert columns == (["a@example.com", "é@example.com"], ["", ""])
    # The stripped ids of the records kept; the row without consent gives nothing.
    assert len(ids) == 2 and ids.setdefault("r3", 0) == 12 and "r2" not in ids


def test_without_a_record_id_column_nothing_is_kept_but_the_records() -> None:
    ids = RecordIds()
    taken = _take(
        "a@example.com,yes\n,no\n", ids, width=2, consent_at=1, record_id_at=-1, kinds_at=(0,)
    )
    assert taken == (2, [0], [2], (["a@example.com"],), 22, 22)
    assert len(ids) == 0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("r1,é,,yes\n\nr2,b,,yes\n", "a blank line"),
        ("r1,é,,yes\nr2,b,yes\n", "a short line"),
        ("r1,é,,yes\nr2,b,,,yes\n", "a long line"),
        ("r1,é,,yes\nr2,b,,maybe\n", "a consent spelling not known"),
        ("r1,é,,yes\nr2,b,,yes\u00a0\n", "a consent that is not ASCII"),
        ("r1,é,,yes\n ,b,,yes\n", "an empty record id"),
        ("r1,é,,yes\nr0,b,,yes\n", "an id seen in an earlier block"),
        ("r1,é,,yes\nr1,b,,yes\n", "an id twice in the block"),
        ("r1,é,,yes\n\u00a0r2,b,,yes\n", "an id that str.strip trims further"),
    ],
)
def test_the_c_stops_at_a_line_only_the_python_reads(text: str, why: str) -> None:
    ids = RecordIds()
    ids.setdefault("r0", 1)
    read, rows, lines, columns, stop_byte, stop_char = _take(text, ids)
    # The first line is taken; the second is for the Python, and nothing of it is kept.
    assert (read, rows, lines, columns) == (1, [0], [2], (["é"], [""])), why
    assert (stop_byte, stop_char) == (len("r1,é,,yes\n".encode()), len("r1,é,,yes\n"))
    assert len(ids) == 2 and "r1" in ids and "r2" not in ids
    # Called again after that line, it takes what follows.
    after = text.index("\n", stop_char) + 1
    rest = _take(text, ids, start=(len(text[:after].encode()), after), first_line=4, first_row=2)
    assert rest[4:] == (len(text.encode()), len(text))


def test_a_call_starts_only_at_a_line_start_of_whole_lines() -> None:
    with pytest.raises(ValueError, match="whole lines"):
        _take("r1,a,,yes\nr2,b,,yes", RecordIds())
    with pytest.raises(ValueError, match="whole lines"):
        _take("r1,a,,yes\n", RecordIds(), start=(3, 3))


def test_rows_without_consent_are_not_read_further() -> None:
    # An empty id is a problem only on a record that is kept.
    ids = RecordIds()
    assert _take(" ,a,,no\nr1,b,,yes\n", ids)[:4] == (2, [1], [3], (["b"], [""]))


def test_the_reader_takes_a_clean_lists_blocks_in_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_chunks, "BLOCK_CHARS", 1 << 10)
    path = tmp_path / "customers.csv"
    body = "".join(f"r{n},u{n}@example.com,yes\r\n" for n in range(3000))
    path.write_text("record_id,email,marketing_consent\r\n" + body, newline="")
    taken: list[int] = []

    def counted(*args: Any) -> Any:
        result = take_plain(*args)
        taken.append(result[0])
        return result

    monkeypatch.setattr(_listfile, "_c_take_plain", counted)
    customers = _listfile.read_customer_list(path)
    assert len(customers.rows) == 3000 and customers.identifiers["email"][-1] == "u2999@example.com"
    # Only the first line goes to the Python, which learns the consent spelling.
    assert len(taken) > 50 and sum(taken) == 3000 - 1 and taken[0] == 0
    # A repeated id further down is still found, with the line of the first.
    path.write_text(
        "record_id,email,marketing_consent\r\n" + body + "r5,again@example.com,yes\r\n",
        newline="",
    )
    problems = _listfile.read_customer_list(path).problems
    assert [(p.row, p.reason, p.detail) for p in problems] == [
        (3002, "duplicate_record_id", "the same id as row 7")
    ]
