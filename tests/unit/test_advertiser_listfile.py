"""Reading the advertiser list: columns, consent, row problems, and writing matched rows back."""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from cleanroom import _textfile
from cleanroom.advertiser import (
    _listfile,
    check_output_path,
    parse_column_mapping,
    read_customer_list,
    read_customer_rows,
    write_matched_rows,
)
from cleanroom.errors import ImportFailed

HEADER = "record_id,email,phone,maid,marketing_consent\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_reads_consenting_rows_and_drops_the_rest(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + "r1,a@example.com,,,yes\n"
        + "r2,b@example.com,,,no\n"
        + "r3,,(415) 555-2671,,\n"
        + "r4,d@example.com,+14155552672,,TRUE\n",
    )
    customers = read_customer_list(path)
    assert customers.records_read == 4
    assert customers.without_consent == 2
    assert customers.problems == ()
    assert customers.rows == [0, 3]
    assert customers.lines == [2, 5]
    assert customers.identifiers == {
        "email": ["a@example.com", "d@example.com"],
        "phone": ["", "+14155552672"],
        "maid": ["", ""],
    }


def test_identifier_columns_are_optional_but_one_is_needed(tmp_path: Path) -> None:
    customers = read_customer_list(_write(tmp_path, "phone,marketing_consent\n4155552671,1\n"))
    assert set(customers.identifiers) == {"phone"}
    assert customers.rows == [0]
    with pytest.raises(ImportFailed, match="no identifier column"):
        read_customer_list(_write(tmp_path, "record_id,marketing_consent\n1,yes\n"))


def test_header_names_are_matched_case_insensitively_and_mappable(tmp_path: Path) -> None:
    path = _write(tmp_path, " Email ,Opt In\nA@example.com,yes\n")
    customers = read_customer_list(path, column_mapping={"marketing_consent": "opt in"})
    assert customers.columns == {"email": "Email", "marketing_consent": "Opt In"}
    assert customers.identifiers["email"] == ["A@example.com"]


def test_no_consent_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="no marketing consent column 'marketing_consent'"):
        read_customer_list(_write(tmp_path, "record_id,email\n1,a@example.com\n"))


def test_a_mapped_column_that_is_missing_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER)
    with pytest.raises(ImportFailed, match=r"no column 'Tel' \(mapped for 'phone'\)"):
        read_customer_list(path, column_mapping={"phone": "Tel"})


def test_a_prehashed_kind_without_its_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "email,marketing_consent\n")
    with pytest.raises(ImportFailed, match="phone is marked pre-hashed but the list has no phone"):
        read_customer_list(path, prehashed={"phone"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="does not exist"):
        read_customer_list(tmp_path / "absent.csv")


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="cannot read the list"):
        read_customer_list(tmp_path)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    text = (HEADER + "r1,a@example.com,,,yes\n").encode() + b"r2,caf\xe9@example.com,,,yes\n"
    with pytest.raises(ImportFailed, match="not UTF-8 text: invalid byte at line 3"):
        read_customer_list(_write(tmp_path, text))


def test_empty_file_and_blank_header(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="is empty"):
        read_customer_list(_write(tmp_path, ""))
    with pytest.raises(ImportFailed, match="is empty"):
        read_customer_list(_write(tmp_path, ",,\n1,2,3\n"))


def test_duplicate_column_name(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="column 'Email' appears twice"):
        read_customer_list(_write(tmp_path, "email,Email,marketing_consent\n"))


def test_a_field_too_large_is_not_csv(tmp_path: Path) -> None:
    # Typically an unbalanced quote that swallows the rest of the file.
    with pytest.raises(ImportFailed, match="not readable as CSV near line 2"):
        read_customer_list(_write(tmp_path, HEADER + "r1," + "x" * 200_000 + ",,,yes\n"))


@pytest.mark.parametrize("line", [1, 3])
def test_a_line_too_long_to_hold_is_not_csv(tmp_path: Path, line: int) -> None:
    # A file with no line ends is one line as long as the file (read in pieces: test_textfile).
    lines = [HEADER, "r1,a@example.com,,,yes\n", "r2,b@example.com,,,yes\n"]
    lines[line - 1] = "x" * (2 * _textfile.MAX_LINE_CHARS) + "\n"
    with pytest.raises(ImportFailed, match=f"not readable as CSV near line {line}: field larger"):
        read_customer_list(_write(tmp_path, "".join(lines)))


def test_row_problems_are_reported_with_line_and_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + "r1,a@example.com,,,yes\n"  # line 2: kept
        + "r2,b@example.com,,yes\n"  # line 3: four fields
        + "r3,c@example.com,,,maybe\n"  # line 4: unreadable consent
        + ",d@example.com,,,yes\n"  # line 5: no record id
        + "r1,e@example.com,,,yes\n"  # line 6: same id as line 2
        + "r1,f@example.com,,,no\n",  # line 7: no consent: its id is never looked at
    )
    customers = read_customer_list(path)
    assert customers.records_read == 6
    assert customers.without_consent == 1
    assert customers.rows == [0]
    assert [(p.row, p.column, p.reason) for p in customers.problems] == [
        (3, None, "malformed_row"),
        (4, "marketing_consent", "bad_consent"),
        (5, "record_id", "missing_record_id"),
        (6, "record_id", "duplicate_record_id"),
    ]
    assert customers.problems[0].detail == "4 fields, the header has 5"
    assert customers.problems[3].detail == "the same id as row 2"


def test_without_record_id_column_rows_are_numbered_by_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "email,marketing_consent\na@example.com,no\n\nb@example.com,yes\n")
    customers = read_customer_list(path)
    # The blank line is not a row; the second data row is on line 4.
    assert customers.records_read == 2
    assert customers.rows == [1]
    assert customers.lines == [4]


def test_byte_order_mark_and_quoted_fields(tmp_path: Path) -> None:
    text = "\ufeff" + HEADER + 'r1,"a@example.com",,,"yes"\n"r,2","b@example.com",,,yes\n'
    customers = read_customer_list(_write(tmp_path, text))
    assert customers.header[0] == "record_id"
    assert customers.rows == [0, 1]


def test_progress_counts_every_row(tmp_path: Path) -> None:
    rows = "".join(f"r{i},a{i}@example.com,,,yes\n" for i in range(25_001))
    done: list[int] = []
    read_customer_list(_write(tmp_path, HEADER + rows), progress=done.append)
    assert sum(done) == 25_001


def test_column_mapping_parsing() -> None:
    assert parse_column_mapping(["email=E-mail", " phone = Tel "]) == {
        "email": "E-mail",
        "phone": "Tel",
    }
    with pytest.raises(ImportFailed, match="is not FIELD=NAME"):
        parse_column_mapping(["email"])
    with pytest.raises(ImportFailed, match="unknown field 'fax'"):
        parse_column_mapping(["fax=Fax"])
    with pytest.raises(ImportFailed, match="mapped twice"):
        parse_column_mapping(["email=A", "email=B"])


def test_matched_rows_are_written_unmodified_in_input_order(tmp_path: Path) -> None:
    text = (
        "Id,Email,Note,marketing_consent\n"
        "1,a@example.com,plain,yes\n"
        '2,b@example.com,"comma, and ""quotes""",yes\n'
        "\n"
        '3,c@example.com,"two\nlines",no\n'
        "4,d@example.com,,yes\n"
    )
    path = _write(tmp_path, text)
    out = tmp_path / "matched.csv"
    assert write_matched_rows(path, out, [3, 1]) == 2
    with out.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f))
    assert written == [
        ["Id", "Email", "Note", "marketing_consent"],
        ["2", "b@example.com", 'comma, and "quotes"', "yes"],
        ["4", "d@example.com", "", "yes"],
    ]
    assert not list(tmp_path.glob(".matched.csv.*"))  # no temporary left behind


def test_a_list_without_quotes_is_copied_line_for_line(tmp_path: Path) -> None:
    # No quote anywhere: the rows are copied as they are (CRLF kept), blank lines are no rows,
    # and a last line without its terminator still ends up on a line of its own.
    text = (
        "\ufeffId,Email,marketing_consent\r\n"
        "1,a@example.com,yes\r\n"
        "\r\n"
        "2, b@example.com ,yes\r\n"
        "   \n"
        "4,d@example.com,yes"
    )
    path = tmp_path / "list.csv"
    path.write_bytes(text.encode("utf-8"))
    out = tmp_path / "matched.csv"
    # Ordinals count rows as the CSV reader sees them: the line of spaces is row 2.
    assert write_matched_rows(path, out, [3, 1, 0]) == 3
    assert out.read_bytes() == (
        b"Id,Email,marketing_consent\r\n1,a@example.com,yes\r\n"
        b"2, b@example.com ,yes\r\n4,d@example.com,yes\n"
    )
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = [cells for cells in csv.reader(f) if cells]
    with out.open(encoding="utf-8", newline="") as f:
        assert list(csv.reader(f)) == [rows[0], rows[1], rows[2], rows[4]]


def test_matched_rows_given_as_an_array_write_the_same_file(tmp_path: Path) -> None:
    # The Advertiser hands over the result's array of matched rows as it is.
    path = _write(tmp_path, HEADER + "".join(f"r{i},u{i}@example.com,,,yes\n" for i in range(6)))
    as_tuple, as_array = tmp_path / "tuple.csv", tmp_path / "array.csv"
    assert write_matched_rows(path, as_tuple, (4, 0, 2)) == 3
    assert write_matched_rows(path, as_array, np.array([4, 0, 2], dtype=np.int64)) == 3
    assert as_array.read_bytes() == as_tuple.read_bytes()
    assert as_tuple.read_text(encoding="utf-8").splitlines()[1:] == [
        "r0,u0@example.com,,,yes",
        "r2,u2@example.com,,,yes",
        "r4,u4@example.com,,,yes",
    ]
    assert write_matched_rows(path, as_array, np.empty(0, dtype=np.int64)) == 0
    assert as_array.read_text(encoding="utf-8") == HEADER


def test_write_to_an_unwritable_place_leaves_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "r1,a@example.com,,,yes\n")
    with pytest.raises(ImportFailed, match="cannot write the matched rows"):
        write_matched_rows(path, tmp_path / "missing" / "out.csv", [0])


def test_output_path_checks(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER)
    check_output_path(tmp_path / "new.csv", path)
    with pytest.raises(ImportFailed, match="is the input list"):
        check_output_path(path, path)
    with pytest.raises(ImportFailed, match="is a directory"):
        check_output_path(tmp_path, path)
    with pytest.raises(ImportFailed, match="does not exist"):
        check_output_path(tmp_path / "no" / "out.csv", path)


# --- rows given in memory ----------------------------------------------------------------------


def test_rows_in_memory_are_read_as_the_same_file_would_be(tmp_path: Path) -> None:
    text = (
        HEADER
        + "r1,a@example.com,,,yes\n"
        + "r2,b@example.com,,,no\n"
        + "r3,,(415) 555-2671,,\n"
        + "r4,d@example.com,+14155552672,,TRUE\n"
        + "r4,e@example.com,,,yes\n"
    )
    from_file = read_customer_list(_write(tmp_path, text))
    with (tmp_path / "list.csv").open(encoding="utf-8", newline="") as f:
        from_rows = read_customer_rows(csv.DictReader(f))
    assert from_rows.path is None
    assert from_rows.header == from_file.header
    for name in ("records_read", "without_consent", "rows", "identifiers"):
        assert getattr(from_rows, name) == getattr(from_file, name), name
    # Positions from 1 where the file has line numbers (its header is line 1).
    assert from_rows.lines == [line - 1 for line in from_file.lines]
    assert [(p.row, p.reason) for p in from_rows.problems] == [(5, "duplicate_record_id")]


def test_values_in_memory_are_read_as_text() -> None:
    rows = [
        {"record_id": 1, "email": "a@example.com", "marketing_consent": True},
        {"record_id": 2, "email": None, "marketing_consent": 1},
        {"record_id": 3.5, "email": "c@example.com", "marketing_consent": False},
        {"record_id": 4, "marketing_consent": "yes"},  # a column left out: an empty cell
    ]
    customers = read_customer_rows(iter(rows))
    assert customers.header == ("record_id", "email", "marketing_consent")
    assert (customers.records_read, customers.without_consent) == (4, 1)
    assert customers.rows == [0, 1, 3]
    assert customers.identifiers == {"email": ["a@example.com", "", ""]}


def test_a_column_the_first_row_lacks_makes_a_malformed_row() -> None:
    rows = [
        {"email": "a@example.com", "marketing_consent": "yes"},
        {"email": "b@example.com", "marketing_consent": "yes", "phone": "4155552671"},
    ]
    customers = read_customer_rows(rows)
    assert customers.rows == [0]
    assert [(p.row, p.reason, p.detail) for p in customers.problems] == [
        (2, "malformed_row", "3 fields, the header has 2")
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "the rows given: none"),
        ([["a@example.com", "yes"]], "row 1 is a list, not a mapping"),
        ([{"email": "a@example.com", "marketing_consent": "yes"}, "x"], "row 2 is a str"),
        ([{1: "a@example.com", "marketing_consent": "yes"}], "column name that is not text"),
        ([{"email": b"a@example.com", "marketing_consent": "yes"}], "column 'email': a bytes"),
        ([{"record_id": "1", "marketing_consent": "yes"}], "the rows given: no identifier"),
    ],
)
def test_rows_in_memory_that_cannot_be_read_are_refused(rows: list[object], message: str) -> None:
    with pytest.raises(ImportFailed, match=message):
        read_customer_rows(rows)  # type: ignore[arg-type]


def test_a_mapping_of_an_unknown_field_or_kind_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "r1,a@example.com,,,yes\n")
    with pytest.raises(ImportFailed, match="unknown field 'mail'"):
        read_customer_list(path, column_mapping={"mail": "email"})
    with pytest.raises(ImportFailed, match="unknown identifier kind 'ssn'"):
        read_customer_rows([{"email": "a@example.com"}], prehashed={"ssn"})


# -- columns that look like identifiers, delimiters, files that are not CSV ------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("e_mail", "email"),
        ("E-Mail", "email"),
        ("Email Address", "email"),
        ("phone_number", "phone"),
        ("mobile", "phone"),
        ("PhoneNumber", "phone"),
        ("idfa", "maid"),
        ("gaid", "maid"),
    ],
)
def test_a_column_that_looks_like_an_identifier_is_refused_with_both_ways_on(
    tmp_path: Path, name: str, kind: str
) -> None:
    path = _write(tmp_path, f"record_id,{name},marketing_consent\nr1,x,yes\n")
    with pytest.raises(ImportFailed) as refused:
        read_customer_list(path)
    message = str(refused.value)
    assert f"column {name!r} looks like {kind} identifiers" in message
    quoted = f"'{kind}={name}'" if " " in name else f"{kind}={name}"
    assert f"--column {quoted}" in message
    assert "--ignore-column" in message
    # Read as suggested, it is that kind's column; ignored, the list has no identifier left.
    assert set(read_customer_list(path, column_mapping={kind: name}).identifiers) == {kind}
    with pytest.raises(ImportFailed, match="no identifier column"):
        read_customer_list(path, ignore_columns=[name])


def test_a_second_column_of_a_kind_is_refused_and_other_columns_are_listed(
    tmp_path: Path,
) -> None:
    text = "record_id,email,first_name,e_mail,has_email,marketing_consent\nr1,a@x.com,A,,1,yes\n"
    path = _write(tmp_path, text)
    with pytest.raises(ImportFailed, match="'e_mail' looks like email identifiers too, but email "):
        read_customer_list(path)
    customers = read_customer_list(path, ignore_columns=["E_MAIL"])
    assert customers.unused_columns == ("first_name", "e_mail", "has_email")
    assert customers.columns == {
        "record_id": "record_id",
        "email": "email",
        "marketing_consent": "marketing_consent",
    }
    with pytest.raises(ImportFailed, match="no column 'mail' to ignore"):
        read_customer_list(path, ignore_columns=["mail"])
    # The same rules for rows in memory.
    with pytest.raises(ImportFailed, match="the rows given: column 'e_mail' looks like"):
        read_customer_rows([{"email": "a@x.com", "e_mail": "", "marketing_consent": "yes"}])


def test_a_consent_column_under_another_name_is_suggested(tmp_path: Path) -> None:
    path = _write(tmp_path, "email,email_opt_in\na@x.com,yes\n")
    with pytest.raises(ImportFailed, match="read it with --column marketing_consent=email_opt_in"):
        read_customer_list(path)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_found_and_the_out_file_keeps_it(tmp_path: Path, delimiter: str) -> None:
    rows = [
        ["record_id", "email", "phone", "marketing_consent"],
        ["r1", "a@example.com", "+1 415 555 2671", "yes"],
        ["r2", "Doe, Jane <j@example.com>", "", "yes"],
        ["r3", "c@example.com", "", "no"],
    ]
    path = tmp_path / "list.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    customers = read_customer_list(path)
    assert customers.delimiter == delimiter
    assert customers.identifiers["email"] == ["a@example.com", "Doe, Jane <j@example.com>"]
    out = tmp_path / "out.csv"
    write_matched_rows(path, out, [0], delimiter=customers.delimiter)
    with out.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f, delimiter=delimiter))
    # A phone starting with "+" is neutralized for spreadsheets, whatever the delimiter.
    assert written == [rows[0], ["r1", "a@example.com", "'+1 415 555 2671", "yes"]]


def test_a_forced_delimiter_wins_and_a_wrong_one_says_what_it_read(tmp_path: Path) -> None:
    path = _write(tmp_path, "email;marketing_consent\na@example.com;yes\n")
    assert read_customer_list(path, delimiter=";").rows == [0]
    with pytest.raises(ImportFailed, match=r"no marketing consent column .* 'email;marketing"):
        read_customer_list(path, delimiter=",")
    with pytest.raises(ImportFailed, match=r"not one of , ; tab \|"):
        read_customer_list(path, delimiter=":")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "an Excel 97-2003 workbook"),
        (b"PK\x03\x04mimetypeapplication/vnd.oasis.opendocument.spreadsheet", "an OpenDocument"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"\x1f\x8b\x08\x00", "a gzip-compressed file"),
        ("email,marketing_consent\n".encode("utf-16"), "UTF-16 text"),
        (b"e\x00m\x00a\x00i\x00l\x00", "a binary file"),
    ],
)
def test_spreadsheets_and_other_binary_files_are_named(
    tmp_path: Path, head: bytes, kind: str
) -> None:
    path = _write(tmp_path, head + bytes(range(256)), name="customers.csv")
    with pytest.raises(ImportFailed, match=f"customers.csv is {kind}"):
        read_customer_list(path)


def test_an_excel_workbook_renamed_to_csv_is_named_as_such(tmp_path: Path) -> None:
    # The parts of a real .xlsx, in the order Excel writes them, compressed as it does.
    path = tmp_path / "customers.csv"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types>" + "<Override/>" * 40 + "</Types>")
        book.writestr("_rels/.rels", "<Relationships/>")
        book.writestr("xl/workbook.xml", "<workbook/>")
        book.writestr("xl/worksheets/sheet1.xml", "<row>email</row>" * 1000)
    with pytest.raises(ImportFailed) as refused:
        read_customer_list(path)
    assert str(refused.value) == (
        f"{path} is an Excel workbook (.xlsx), not a CSV file: save it as CSV first (in Excel: "
        "File > Save As > CSV UTF-8)"
    )


def test_only_rows_with_a_problem_are_taken_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rest of a plain list is taken a column at a time; this is what makes reading cheap.
    one_by_one: list[int] = []
    take_rows = _listfile._Records.take_rows

    def spy(records: _listfile._Records, rows: Iterable[list[str]], lines: Iterable[int]) -> None:
        lines = list(lines)
        one_by_one.extend(lines)
        take_rows(records, rows, lines)

    monkeypatch.setattr(_listfile._Records, "take_rows", spy)
    rows = [f"r{i},u{i}@example.com,,,{'no' if i % 3 else 'yes'}\n" for i in range(40)]
    rows[10] = "r10,u10@example.com,,,maybe\n"  # line 12
    rows[20] = ",u20@example.com,,,yes\n"  # line 22
    rows[30] = "r4,u30@example.com,,,yes\n"  # line 32: r4 had no consent, so this is no repeat
    rows[33] = "r0,u33@example.com,,,yes\n"  # line 35: r0 was kept on line 2
    customers = read_customer_list(_write(tmp_path, HEADER + "".join(rows)))
    assert one_by_one == [12, 22, 35]
    assert [(p.row, p.reason) for p in customers.problems] == [
        (12, "bad_consent"),
        (22, "missing_record_id"),
        (35, "duplicate_record_id"),
    ]
    assert customers.problems[2].detail == "the same id as row 2"
    assert 32 in customers.lines
