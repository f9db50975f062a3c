"""The advertiser's list in one pass: blocks while reading, their preparation, the fast copy.

The oracles are the plain ways: the whole list prepared at once, and the matched lines picked
one by one in Python, as the CSV reader splits them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.advertiser import (
    CustomerList,
    _copy_rows,
    _listfile,
    merge_prepared,
    prepare_list,
    read_customer_list,
    read_customer_rows,
    write_matched_rows,
)
from cleanroom.advertiser._copy_rows import NotPlain, copy_plain_rows

HEADER = "record_id,email,phone,maid,marketing_consent\n"


def _list_text(rows: int) -> str:
    lines = [HEADER]
    for i in range(rows):
        consent = "no" if i % 7 == 3 else "yes"
        email = "" if i % 5 == 1 else f"User.{i}@Example.com"
        phone = "not a phone" if i % 11 == 2 else (f"+1 415 555 {i % 10000:04d}" if i % 3 else "")
        record = f"r{i}" if i % 13 != 4 else "r0"  # a duplicate id now and then
        lines.append(f"{record},{email},{phone},,{consent}\n")
    return "".join(lines)


@pytest.mark.parametrize("block", [1, 3, 50, 10_000])
def test_blocks_cover_the_kept_records_in_order(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_listfile, "BLOCK_RECORDS", block)
    path = tmp_path / "list.csv"
    path.write_text(_list_text(120), encoding="utf-8")
    blocks: list[CustomerList] = []
    whole = read_customer_list(path, blocks=blocks.append)
    assert all(len(b.rows) == block for b in blocks[:-1]) and 0 < len(blocks[-1].rows) <= block
    assert [r for b in blocks for r in b.rows] == whole.rows
    assert [n for b in blocks for n in b.lines] == whole.lines
    for kind, cells in whole.identifiers.items():
        assert [c for b in blocks for c in b.identifiers[kind]] == cells
    assert all(b.problems == () for b in blocks)
    # Prepared block by block as they came, the list is what it is prepared whole.
    parts = [prepare_list(b, default_region="US") for b in blocks]
    merged = merge_prepared(whole, parts)
    expected = prepare_list(whole, default_region="US")
    # Grouped by kind within each block rather than across the list: the same pairs.
    assert sorted(zip(merged.messages, merged.record_ids.tolist(), strict=True)) == sorted(
        zip(expected.messages, expected.record_ids.tolist(), strict=True)
    )
    assert (merged.records_sent, merged.rows_rejected) == (
        expected.records_sent,
        expected.rows_rejected,
    )
    assert merged.problems == expected.problems
    assert merged.identifiers_by_kind == expected.identifiers_by_kind


def test_rows_in_memory_come_in_blocks_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_listfile, "BLOCK_RECORDS", 4)
    rows = [{"email": f"u{i}@x.com", "marketing_consent": True} for i in range(10)]
    blocks: list[CustomerList] = []
    whole = read_customer_rows(rows, blocks=blocks.append)
    assert [len(b.rows) for b in blocks] == [4, 4, 2]
    assert [r for b in blocks for r in b.rows] == whole.rows == list(range(10))


def test_a_list_of_no_kept_record_gives_no_block(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(HEADER + "r1,a@x.com,,,no\n", encoding="utf-8")
    blocks: list[CustomerList] = []
    read_customer_list(path, blocks=blocks.append)
    assert blocks == []
    assert merge_prepared(read_customer_list(path), []).records_sent == 0


# -- copying matched rows of a plain list ------------------------------------------------------


def _matched_lines(data: bytes, wanted: set[int]) -> bytes:
    """The oracle: the header and wanted rows' lines, split as the CSV reader splits them."""
    text = data.decode("utf-8-sig")
    out, ordinal = [], -1
    for line in io.StringIO(text, newline=""):
        if not line.rstrip("\r\n"):
            continue
        if ordinal == -1 or ordinal in wanted:
            out.append(line if line.endswith(("\n", "\r")) else line + "\n")
        ordinal += 1
    return "".join(out).encode()


# Cells of a plain list: no quote, nothing that starts a formula.
_cell = st.one_of(st.just(""), st.from_regex(r"[a-z0-9 ][a-z0-9 @.;|_+=-]{0,5}", fullmatch=True))
_row = st.lists(_cell, min_size=1, max_size=4).map(",".join)


@given(
    rows=st.lists(st.one_of(_row, st.just(""), st.just("   ")), min_size=1, max_size=40),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    last_newline=st.booleans(),
    block=st.integers(min_value=1, max_value=64),
    data=st.data(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_plain_copy_equals_picking_the_lines_one_by_one(
    rows: list[str],
    newline: str,
    bom: bool,
    last_newline: bool,
    block: int,
    data: st.DataObject,
) -> None:
    text = newline.join(["h1,h2", *rows]) + (newline if last_newline else "")
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    wanted = data.draw(st.sets(st.integers(min_value=0, max_value=len(rows) + 2)))
    mask = np.zeros(len(rows) + 3, dtype=bool)
    mask[list(wanted)] = True
    out = io.BytesIO()
    original = _copy_rows._BLOCK_BYTES
    _copy_rows._BLOCK_BYTES = block  # blocks cut anywhere; restored below
    try:
        path = Path(_write_tmp(raw))
        copy_plain_rows(path, mask, ",", out)
    finally:
        _copy_rows._BLOCK_BYTES = original
    assert out.getvalue() == _matched_lines(raw, wanted)


def _write_tmp(raw: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(delete=False, suffix=".csv") as f:
        f.write(raw)
    return f.name


@pytest.mark.parametrize(
    "line",
    [
        'r1,"quoted",yes',
        "r1,=1+1,yes",
        "r1,+1,yes",
        "r1,-1,yes",
        "r1,@SUM(A1),yes",
        "r1,\tx,yes",
        "r1,a\rb,yes",
        "=r1,a,yes",
    ],
)
def test_a_list_that_is_not_plain_is_not_copied_line_by_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(f"id,email,marketing_consent\n{line}\n".encode())
    with pytest.raises(NotPlain):
        copy_plain_rows(path, np.ones(1, dtype=bool), ",", io.BytesIO())
    # ... and the CSV path writes it, neutralized, instead.
    out = tmp_path / "out.csv"
    assert write_matched_rows(path, out, [0]) == 1
    with out.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f))
    assert len(written) == 2 and not any(c.startswith(("=", "+", "-", "@")) for c in written[1])


def test_a_delimiter_that_is_a_trigger_is_no_formula(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"id\temail\tmarketing_consent\r\nr1\ta@x.com\tyes\r\n")
    out = io.BytesIO()
    assert copy_plain_rows(path, np.ones(1, dtype=bool), "\t", out) == 1
    assert out.getvalue() == path.read_bytes()
