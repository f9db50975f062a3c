"""Eligibility (DESIGN §6): one view, every exclusion reason, never-permitted sources."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cleanroom.store import consent, eligibility
from cleanroom.store.database import Database, init_database, open_database
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.users import delete_user

ROWS = """user_id,type,value,source,ads_matching_consent,consent_at,revoked_at,expires_at
ok,email,ok@example.com,signup,true,,,
twofa,phone,+14155552671,two_factor,true,,,
recov,email,recov@example.com,recovery,true,,,
secur,email,secur@example.com,security,yes,,,
contacts,phone,+14155552672,contact_upload,1,,,
nocon,email,nocon@example.com,signup,false,,,
revoked,email,revoked@example.com,signup,true,2024-01-01,2024-02-01,
expired,email,expired@example.com,signup,true,2020-01-01,,2021-01-01
future,email,future@example.com,signup,true,2999-01-01,,
optout,email,optout@example.com,profile,true,,,
gone,email,gone@example.com,crm,true,,,
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    path = tmp_path / "in.csv"
    path.write_text(ROWS)
    import_platform_csv(database, path)
    consent.set_opt_out(database, "optout", "targeted_ads_opt_out", True)
    delete_user(database, "gone")
    with database:
        yield database


def _reasons(db: Database) -> dict[str, str | None]:
    return dict(
        db.conn.execute(
            "SELECT u.external_id, e.excluded_reason FROM identifier_eligibility e "
            "JOIN users u ON u.id = e.user_row"
        ).fetchall()
    )


def test_each_rule_excludes_with_its_reason(db: Database) -> None:
    assert _reasons(db) == {
        "ok": None,
        "twofa": "source_not_permitted",
        "recov": "source_not_permitted",
        "secur": "source_not_permitted",
        "contacts": "source_not_permitted",
        "nocon": "no_consent",
        "revoked": "revoked",
        "expired": "no_consent",
        "future": "no_consent",
        "optout": "opted_out",
        "gone": "deleted",
    }


def test_eligible_ids_are_the_views_eligible_rows(db: Database) -> None:
    ids = eligibility.eligible_identifier_ids(db.conn)
    rows = db.conn.execute("SELECT identifier_id FROM eligible_identifiers").fetchall()
    assert ids.tolist() == sorted(r[0] for r in rows)
    assert len(ids) == 1


def test_ids_and_users_read_in_blocks_equal_the_view(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five more eligible identifiers, two of them on one user, between the ineligible ones.
    more = tmp_path / "more.csv"
    more.write_text(
        "user_id,type,value,source,ads_matching_consent\n"
        + "".join(f"u{i // 2},email,more{i}@example.com,signup,true\n" for i in range(5))
    )
    import_platform_csv(db, more)
    expected = db.conn.execute(
        "SELECT identifier_id, user_row FROM eligible_identifiers ORDER BY identifier_id"
    ).fetchall()
    assert len(expected) == 6
    # Blocks smaller than the set, one that ends exactly on its last row, one larger.
    for block in (1, 4, 6, 7):
        monkeypatch.setattr(eligibility, "_ELIGIBLE_BLOCK", block)
        ids, users = eligibility.eligible_identifiers_and_users(db.conn)
        assert list(zip(ids.tolist(), users.tolist(), strict=True)) == expected
        assert eligibility.eligible_identifier_ids(db.conn).tolist() == [i for i, _ in expected]


def test_two_factor_with_consent_is_never_eligible_even_after_a_grant(db: Database) -> None:
    change = consent.grant(db, "twofa")
    assert change.identifiers == 1 and change.never_permitted == 1
    assert _reasons(db)["twofa"] == "source_not_permitted"


def test_source_lists_are_disjoint_and_cover_the_design() -> None:
    assert {
        "two_factor",
        "recovery",
        "security",
        "contact_upload",
    } == eligibility.NEVER_PERMITTED_SOURCES
    assert not eligibility.NEVER_PERMITTED_SOURCES & eligibility.DEFAULT_PERMITTED_SOURCES


def test_expiry_follows_the_connections_clock(db: Database) -> None:
    # "expired" expired in 2021 and "future" consents from 2999: what is eligible depends on
    # the moment asked, and every read asks the connection's clock.
    path = db.path
    at_2020 = int(datetime(2020, 6, 1, tzinfo=UTC).timestamp())
    at_3000 = int(datetime(3000, 1, 1, tzinfo=UTC).timestamp())
    with open_database(path, clock=lambda: at_2020) as then:
        assert _reasons(then)["expired"] is None and _reasons(then)["future"] == "no_consent"
    with open_database(path, clock=lambda: at_3000) as later:
        assert _reasons(later)["expired"] == "no_consent" and _reasons(later)["future"] is None


def test_views_are_per_connection_and_never_stored(db: Database) -> None:
    stored = db.conn.execute("SELECT name FROM main.sqlite_schema WHERE type = 'view'").fetchall()
    assert stored == []
