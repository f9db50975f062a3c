"""Text for terminals and spreadsheets: escapes that cannot act, cells that cannot compute."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom._output import csv_writer, printable, spreadsheet_cell


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("user-42", "user-42"),
        ("Zoë Ünal 山田", "Zoë Ünal 山田"),  # letters of any script are left alone
        ("a b\u00a0c", "a b\u00a0c"),  # spaces too
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("two\nids", "two\\nids"),
        ("tab\there\r", "tab\\there\\r"),
        ("\x9b2J", "\\x9b2J"),  # C1 control sequence introducer
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),  # right-to-left override
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("back\\slash", "back\\\\slash"),
        ("\U000e0041tag", "\\U000e0041tag"),  # a tag character (format)
    ],
)
def test_printable_escapes_what_could_act_and_nothing_else(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text())
def test_printable_is_one_line_and_can_be_read_back(text: str) -> None:
    shown = printable(text)
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    # Unambiguous: Python's own escapes read it back (after the one format it does not use).
    assert shown.encode("latin-1", "backslashreplace").decode("unicode_escape") == text


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+14155552671", "'+14155552671"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (12, "12"),
    ],
)
def test_spreadsheet_cells_that_start_a_formula_get_a_leading_quote(
    value: object, cell: str
) -> None:
    assert spreadsheet_cell(value) == cell


def test_the_csv_writer_neutralizes_every_cell_of_every_row() -> None:
    stream = io.StringIO(newline="")
    writer = csv_writer(stream, lineterminator="\n")
    writer.writerow(["record_id", "email"])
    writer.writerows([["=1+1", "a@x.com"], ["r2", "@foo"]])
    assert list(csv.reader(io.StringIO(stream.getvalue()))) == [
        ["record_id", "email"],
        ["'=1+1", "a@x.com"],
        ["r2", "'@foo"],
    ]
