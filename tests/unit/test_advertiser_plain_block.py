"""The C that takes plain blocks of a list whole, and the record ids it keeps.

What it takes is held to the Python reader by ``tests/property/test_list_reader.py``; here, that
it takes a clean list's blocks at all, and that whatever it hands back to the Python leaves no
trace: no id kept from a block it did not take.
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


def _take(text: str, ids: Any, *, first_line: int = 2, first_row: int = 0, **layout: Any) -> Any:
    at = {**LAYOUT, **layout}
    return take_plain(
        text,
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
    read, rows, lines, columns = _take(text, ids, first_line=10, first_row=7)
    assert (read, rows, lines) == (3, [7, 9], [10, 12])
    assert columns == (["a@example.com", "é@example.com"], ["", ""])
    # The stripped ids of the records kept; the row without consent gives nothing.
    assert len(ids) == 2 and ids.setdefault("r3", 0) == 12 and "r2" not in ids


def test_without_a_record_id_column_nothing_is_kept_but_the_records() -> None:
    ids = RecordIds()
    taken = _take(
        "a@example.com,yes\n,no\n", ids, width=2, consent_at=1, record_id_at=-1, kinds_at=(0,)
    )
    assert taken == (2, [0], [2], (["a@example.com"],))
    assert len(ids) == 0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("r1,a,,yes\n\nr2,b,,yes\n", "a blank line"),
        ("r1,a,,yes\nr2,b,yes\n", "a short line"),
        ("r1,a,,yes\nr2,b,,,yes\n", "a long line"),
        ("r1,a,,yes\nr2,b,,maybe\n", "a consent spelling not known"),
        ("r1,a,,yes\nr2,b,,yes\u00a0\n", "a consent that is not ASCII"),
        ("r1,a,,yes\n ,b,,yes\n", "an empty record id"),
        ("r1,a,,yes\nr0,b,,yes\n", "an id seen in an earlier block"),
        ("r1,a,,yes\nr2,b,,yes\nr1,c,,yes\n", "an id twice in the block"),
        ("r1,a,,yes\n\u00a0r2,b,,yes\n", "an id that str.strip trims further"),
        ("r1,a,,yes\nr2,b,,yes", "no line end at the end"),
    ],
)
def test_a_block_the_python_must_read_is_handed_back_untouched(text: str, why: str) -> None:
    ids = RecordIds()
    ids.setdefault("r0", 1)
    assert _take(text, ids) is None, why
    assert len(ids) == 1 and "r1" not in ids and "r2" not in ids


def test_rows_without_consent_are_not_read_further() -> None:
    # An empty id is a problem only on a record that is kept.
    ids = RecordIds()
    assert _take(" ,a,,no\nr1,b,,yes\n", ids) == (2, [1], [3], (["b"], [""]))


def test_the_reader_takes_a_clean_lists_blocks_in_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_chunks, "BLOCK_CHARS", 1 << 10)
    path = tmp_path / "customers.csv"
    body = "".join(f"r{n},u{n}@example.com,yes\r\n" for n in range(3000))
    path.write_text("record_id,email,marketing_consent\r\n" + body, newline="")
    taken: list[bool] = []

    def counted(*args: Any) -> Any:
        result = take_plain(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(_listfile, "_c_take_plain", counted)
    customers = _listfile.read_customer_list(path)
    assert len(customers.rows) == 3000 and customers.identifiers["email"][-1] == "u2999@example.com"
    # Only the first block goes to the Python, which learns the consent spelling.
    assert len(taken) > 50 and taken[0] is False and all(taken[1:])
    # A repeated id further down is still found, with the line of the first.
    path.write_text(
        "record_id,email,marketing_consent\r\n" + body + "r5,again@example.com,yes\r\n",
        newline="",
    )
    problems = _listfile.read_customer_list(path).problems
    assert [(p.row, p.reason, p.detail) for p in problems] == [
        (3002, "duplicate_record_id", "the same id as row 7")
    ]
