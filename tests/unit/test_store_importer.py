"""Importing the platform CSV: normalized, idempotent, every bad row reported, bad files refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom import _textfile
from cleanroom.errors import ImportFailed, InvalidInput
from cleanroom.store.csvfile import RowRejection
from cleanroom.store.database import Database, init_database
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.users import delete_user

HEADER = "user_id,type,value,source,ads_matching_consent,consent_at,revoked_at\n"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    with database:
        yield database


def _csv(tmp_path: Path, body: str, header: str = HEADER, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def _identifiers(db: Database) -> list[tuple[object, ...]]:
    return db.conn.execute(
        "SELECT u.external_id, i.type, i.value, i.source, i.consent, i.consent_at "
        "FROM identifiers i JOIN users u ON u.id = i.user_row ORDER BY i.id"
    ).fetchall()


def _dump(db: Database) -> list[list[tuple[object, ...]]]:
    return [
        db.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("users", "identifiers")
    ]


def test_rows_are_normalized_and_stored(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email, Jane.Doe@Example.COM ,signup,true,2024-01-02T03:04:05Z,\n"
        "u1,phone,(415) 555-2671,profile,YES,,\n"
        "u2,MAID,6D92078A-8246-4BA4-AE5B-76104861E7DC,crm,0,,\n",
    )
    report = import_platform_csv(db, path)
    assert (report.rows, report.added, report.users_added) == (3, 3, 2)
    assert not report.rejected
    assert sorted(_identifiers(db), key=str) == [
        ("u1", "email", "jane.doe@example.com", "signup", "granted", 1704164645),
        ("u1", "phone", "+14155552671", "profile", "granted", None),
        ("u2", "maid", "6d92078a-8246-4ba4-ae5b-76104861e7dc", "crm", "denied", None),
    ]


def test_same_file_twice_changes_nothing(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email,a@example.com,signup,true,2024-01-01,\n"
        "u2,phone,+14155552671,two_factor,true,,\n"
        "u3,email,c@example.com,signup,revoked,,2024-02-01\n",
    )
    import_platform_csv(db, path)
    before = _dump(db)
    report = import_platform_csv(db, path)
    assert (report.added, report.updated, report.unchanged, report.users_added) == (0, 0, 3, 0)
    assert _dump(db) == before


def test_every_bad_row_is_reported_with_row_column_and_reason(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email,ok@example.com,signup,true,,\n"  # line 2: fine
        ",email,x@example.com,signup,true,,\n"  # 3: no user
        "u3,fax,123,signup,true,,\n"  # 4
        "u4,email,y@example.com, ,true,,\n"  # 5
        "u5,email,z@example.com,signup,perhaps,,\n"  # 6
        "u6,email,w@example.com,signup,true,yesterday,\n"  # 7
        "u7,email,not-an-email,signup,true,,\n"  # 8
        "u8,email,short@example.com\n"  # 9
        "u9,phone,555-0000,signup,true,,\n",  # 10
    )
    seen: list[RowRejection] = []
    report = import_platform_csv(db, path, on_reject=seen.append)
    assert report.rows == 9 and report.added == 1
    got = {(r.row, r.column, r.reason) for r in seen}
    assert got == {
        (3, "user_id", "missing_user_id"),
        (4, "type", "unknown_type"),
        (5, "source", "missing_source"),
        (6, "ads_matching_consent", "bad_consent"),
        (7, "consent_at", "bad_timestamp"),
        (8, "value", "invalid_identifier"),
        (9, None, "malformed_row"),
        (10, "value", "invalid_identifier"),
    }
    assert report.rejected["invalid_identifier"] == 2
    assert all(r.detail for r in seen)
    assert "'fax'" in next(r.detail for r in seen if r.reason == "unknown_type")


def test_oversized_field_is_a_malformed_row_not_a_crash(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email,"
        + "a" * 200_000
        + "@example.com,signup,true,,\nu2,email,b@example.com,crm,1,,\n",
    )
    report = import_platform_csv(db, path)
    assert report.rejected == {"malformed_row": 1}
    assert report.added == 1


def test_a_line_too_long_to_hold_is_a_malformed_row_and_the_rest_is_imported(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_textfile, "MAX_LINE_CHARS", 100)  # the header's 70 characters fit
    long_row = "u1,email," + "a" * 100 + "@example.com,signup,true,,\n"
    path = _csv(tmp_path, long_row + "u2,email,b@example.com,crm,1,,\n")
    seen: list[RowRejection] = []
    report = import_platform_csv(db, path, on_reject=seen.append)
    assert report.rejected == {"malformed_row": 1}
    assert [(r.row, r.reason) for r in seen] == [(2, "malformed_row")]
    assert report.added == 1


def test_a_header_whose_open_quote_runs_on_past_the_field_limit_is_refused_cleanly(
    db: Database, tmp_path: Path
) -> None:
    rows = "u1,email,a@example.com,signup,true,,\n" * 5_000  # past 131,072 characters
    path = _csv(tmp_path, rows, header='user_id,"type,value,source,ads_matching_consent\n')
    with pytest.raises(ImportFailed, match="header not readable as CSV: field larger"):
        import_platform_csv(db, path)
    assert _identifiers(db) == []


def test_identifier_on_two_users_is_kept_and_reported(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email,shared@example.com,signup,true,,\nu2,email,SHARED@example.com,profile,true,,\n",
    )
    report = import_platform_csv(db, path)
    assert report.added == 2
    assert report.shared_identifiers == 2
    assert report.shared_examples[0] == (2, "email", 2)


def test_never_permitted_sources_claiming_consent_are_counted(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,phone,+14155552671,two_factor,true,,\n"
        "u1,phone,+14155552672,recovery,yes,,\n"
        "u1,phone,+14155552673,security,false,,\n"
        "u2,phone,+14155552674,contact_upload,granted,,\n",
    )
    report = import_platform_csv(db, path)
    assert report.never_permitted_with_consent == 3
    assert db.conn.execute("SELECT COUNT(*) FROM eligible_identifiers").fetchone()[0] == 0


def test_missing_required_column_fails_before_writing(db: Database, tmp_path: Path) -> None:
    path = _csv(tmp_path, "u1,email,a@example.com,true\n", header="user_id,type,value,consent\n")
    with pytest.raises(ImportFailed, match=r"missing required column.*'source'"):
        import_platform_csv(db, path)
    assert db.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1  # its creation
    assert _identifiers(db) == []


def test_columns_can_be_mapped(db: Database, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "u1,email,a@example.com,signup,true\n",
        header="uid,kind,identifier,origin,consent\n",
    )
    mapping = {
        "user_id": "uid",
        "type": "kind",
        "value": "identifier",
        "source": "origin",
        "ads_matching_consent": "consent",
    }
    assert import_platform_csv(db, path, column_mapping=mapping).added == 1


def test_non_utf8_file_fails_before_writing_and_names_the_line(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        HEADER.encode()
        + b"u1,email,a@example.com,signup,true,,\nu2,email,j\xe9@example.com,crm,1,,\n"
    )
    with pytest.raises(ImportFailed, match=r"not UTF-8.*line 3"):
        import_platform_csv(db, path)
    assert _identifiers(db) == []


def test_a_spreadsheet_is_named_as_such_before_writing(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with pytest.raises(ImportFailed, match=r"users.csv is an Excel 97-2003 workbook \(.xls\)"):
        import_platform_csv(db, path)
    path.write_text(HEADER + "u1,email,a@example.com,signup,true,,\n", encoding="utf-16")
    with pytest.raises(ImportFailed, match="is UTF-16 text, not UTF-8: re-save it as UTF-8"):
        import_platform_csv(db, path)
    assert _identifiers(db) == []


def test_byte_order_mark_is_accepted(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"u1,email,a@example.com,signup,1,,\n")
    assert import_platform_csv(db, path).added == 1


@pytest.mark.parametrize("make", ["missing", "directory", "empty"])
def test_unreadable_or_empty_file_is_a_clear_error(db: Database, tmp_path: Path, make: str) -> None:
    path = tmp_path / "x.csv"
    if make == "directory":
        path.mkdir()
    elif make == "empty":
        path.write_text("")
    with pytest.raises(ImportFailed, match=r"cannot read|empty"):
        import_platform_csv(db, path)


def test_unknown_region_fails_before_writing(db: Database, tmp_path: Path) -> None:
    path = _csv(tmp_path, "u1,phone,4155552671,signup,true,,\n")
    with pytest.raises(InvalidInput):
        import_platform_csv(db, path, default_region="ZZ")
    assert db.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1  # its creation


def test_reimporting_an_old_grant_does_not_undo_a_later_revocation(
    db: Database, tmp_path: Path
) -> None:
    old = _csv(tmp_path, "u1,email,a@example.com,signup,true,2024-01-01,\n", name="old.csv")
    import_platform_csv(db, old)
    newer = _csv(tmp_path, "u1,email,a@example.com,signup,false,,2024-03-01\n", name="new.csv")
    assert import_platform_csv(db, newer).updated == 1
    assert import_platform_csv(db, old).updated == 0
    assert _identifiers(db)[0][4] == "revoked"
    regrant = _csv(tmp_path, "u1,email,a@example.com,signup,true,2024-04-01,\n", name="re.csv")
    assert import_platform_csv(db, regrant).updated == 1
    assert _identifiers(db)[0][4] == "granted"


def test_undated_grant_does_not_loosen_a_stored_denial(db: Database, tmp_path: Path) -> None:
    import_platform_csv(db, _csv(tmp_path, "u1,email,a@example.com,signup,no,,\n", name="a.csv"))
    report = import_platform_csv(
        db, _csv(tmp_path, "u1,email,a@example.com,signup,yes,,\n", name="b.csv")
    )
    assert report.updated == 0
    assert _identifiers(db)[0][4] == "denied"


def test_rows_of_deleted_users_are_refused(db: Database, tmp_path: Path) -> None:
    path = _csv(tmp_path, "u1,email,a@example.com,signup,true,,\n")
    import_platform_csv(db, path)
    delete_user(db, "u1")
    report = import_platform_csv(db, path)
    assert report.rejected == {"user_deleted": 1}
    assert _identifiers(db) == [("u1", "email", None, "signup", "granted", None)]


def test_small_chunks_give_the_same_result(db: Database, tmp_path: Path) -> None:
    body = "".join(f"u{i // 3},email,person{i}@example.com,signup,true,,\n" for i in range(50))
    progress: list[int] = []
    report = import_platform_csv(db, _csv(tmp_path, body), chunk_rows=7, progress=progress.append)
    assert report.added == 50 and report.users_added == 17
    assert sum(progress) == 50 and max(progress) == 7


def test_import_is_audited(db: Database, tmp_path: Path) -> None:
    import_platform_csv(db, _csv(tmp_path, "u1,email,a@example.com,signup,true,,\n"))
    actions = [row[0] for row in db.conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == ["database.init", "import.started", "import"]


def test_a_source_the_platform_has_not_registered_is_stored_reported_and_never_eligible(
    db: Database, tmp_path: Path
) -> None:
    path = _csv(
        tmp_path,
        "u1,maid,6f1c5a3e-0d2b-4c1e-9a7f-2b3c4d5e6f70,app,true,,\n"  # 2
        "u2,maid,7f1c5a3e-0d2b-4c1e-9a7f-2b3c4d5e6f71, App ,true,,\n"  # 3: the same name
        "u3,email,ok@example.com,signup,true,,\n"  # 4
        "u4,email,kiosk@example.com,kiosk,true,,\n",  # 5
    )
    report = import_platform_csv(db, path)
    assert (report.added, report.source_unknown) == (4, 3)
    assert report.unknown_sources == {"app": 2, "kiosk": 1}
    assert report.unknown_source_examples == [(2, "app"), (3, "app"), (5, "kiosk")]
    assert report.to_dict()["source_unknown"] == {"rows": 3, "sources": {"app": 2, "kiosk": 1}}
    stored = {row[2]: row[3] for row in _identifiers(db)}
    assert stored["6f1c5a3e-0d2b-4c1e-9a7f-2b3c4d5e6f70"] == "app"
    assert stored["7f1c5a3e-0d2b-4c1e-9a7f-2b3c4d5e6f71"] == "app"  # trimmed, lower-cased
    eligible = db.conn.execute("SELECT COUNT(*) FROM eligible_identifiers").fetchone()[0]
    assert eligible == 1
