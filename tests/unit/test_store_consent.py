"""Consent changes: effective at once, users leave stored audiences, bulk files reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cleanroom.errors import ImportFailed, InvalidInput, UnknownUser
from cleanroom.store import audit, consent, sessions
from cleanroom.store.audiences import audience_members, store_audience, sweep_audiences
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.users import delete_user

ROWS = """user_id,type,value,source,ads_matching_consent
alice,email,alice@example.com,signup,true
alice,phone,+14155552671,profile,true
bob,email,bob@example.com,signup,true
carol,email,carol@example.com,signup,true
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    path = tmp_path / "in.csv"
    path.write_text(ROWS)
    import_platform_csv(database, path)
    with transaction(database.conn):
        # Audience 1: everyone (alice through email and phone); audience 2: alice and bob.
        store_audience(database, "s1", "adv", *_matched(database, "alice", "bob", "carol"))
        store_audience(database, "s2", "adv", *_matched(database, "alice", "bob"))
    with database:
        yield database


def _matched(db: Database, *users: str) -> tuple[np.ndarray, np.ndarray]:
    """(user, identifier) pairs of every identifier of ``users``, as a match would give them."""
    pairs = db.conn.execute(
        "SELECT i.user_row, i.id FROM identifiers AS i JOIN users AS u ON u.id = i.user_row "
        f"WHERE u.external_id IN ({', '.join('?' * len(users))})",
        users,
    ).fetchall()
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _eligible_users(db: Database) -> set[str]:
    return {
        r[0]
        for r in db.conn.execute(
            "SELECT DISTINCT u.external_id FROM eligible_identifiers e "
            "JOIN users u ON u.id = e.user_row"
        )
    }


def _audience_size(db: Database, audience: int) -> int:
    return next(a.size for a in sessions.audience_summaries(db) if a.id == audience)


def test_revoke_is_effective_at_once_and_leaves_audiences(db: Database) -> None:
    change = consent.revoke(db, "alice")
    assert change.identifiers == 2 and change.audiences_left == 2
    assert _eligible_users(db) == {"bob", "carol"}
    assert audience_members(db, 1) == ["bob", "carol"]
    assert audience_members(db, 2) == ["bob"]
    assert _audience_size(db, 1) == 2


def test_revoke_of_one_type_keeps_the_others(db: Database) -> None:
    consent.revoke(db, "alice", kind="phone")
    types = db.conn.execute("SELECT type FROM eligible_identifiers e").fetchall()
    assert ("phone",) not in types
    assert "alice" in _eligible_users(db)
    assert "alice" not in audience_members(db, 1)


def test_grant_after_revoke_restores_eligibility(db: Database) -> None:
    consent.revoke(db, "bob")
    assert consent.grant(db, "bob").identifiers == 1
    assert "bob" in _eligible_users(db)
    assert consent.grant(db, "bob").identifiers == 0


def test_opt_outs_exclude_and_leave_audiences(db: Database) -> None:
    for kind in consent.OPT_OUTS:
        consent.set_opt_out(db, "carol", kind, True)
        assert "carol" not in _eligible_users(db)
        assert "carol" not in audience_members(db, 1)
        consent.set_opt_out(db, "carol", kind, False)
        assert "carol" in _eligible_users(db)


def test_deleted_user_leaves_audiences(db: Database) -> None:
    deletion = delete_user(db, "bob")
    assert deletion.identifiers_erased == 1 and deletion.audiences_left == 2
    assert audience_members(db, 2) == ["alice"]
    assert delete_user(db, "bob").already_deleted


def test_unknown_or_deleted_users_and_bad_arguments_are_clear_errors(db: Database) -> None:
    with pytest.raises(UnknownUser, match="no user 'dave'"):
        consent.revoke(db, "dave")
    with pytest.raises(UnknownUser):
        delete_user(db, "dave")
    delete_user(db, "bob")
    with pytest.raises(UnknownUser, match="deleted"):
        consent.grant(db, "bob")
    with pytest.raises(InvalidInput, match="unknown identifier type"):
        consent.grant(db, "alice", kind="fax")
    with pytest.raises(InvalidInput, match="unknown opt-out"):
        consent.set_opt_out(db, "alice", "newsletter", True)


def test_changes_are_audited(db: Database) -> None:
    consent.revoke(db, "alice")
    consent.set_opt_out(db, "bob", "sale_opt_out", True)
    delete_user(db, "carol")
    actions = [r[0] for r in db.conn.execute("SELECT action FROM audit_log ORDER BY seq")][-3:]
    assert actions == ["consent.revoke", "opt_out.set", "user.delete"]


def test_bulk_consent_file(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "changes.csv"
    path.write_text(
        "user_id,purpose,value,type,at\n"
        "alice,ads_matching,false,phone,2030-01-01\n"
        "bob,sale_opt_out,true,,\n"
        "carol,ads_matching,revoked,,\n"
        "dave,ads_matching,true,,\n"
        "alice,newsletter,true,,\n"
        "alice,ads_matching,sometimes,,\n"
        "alice,ads_matching,true,fax,\n"
        "alice,ads_matching,true,,noon\n"
        "alice,ads_matching\n"
    )
    report = consent.import_consent_csv(db, path)
    assert report.rows == 9
    assert report.identifiers_changed == 2 and report.users_changed == 1
    assert report.rejected == {
        "unknown_user": 1,
        "unknown_purpose": 1,
        "bad_consent": 1,
        "unknown_type": 1,
        "bad_timestamp": 1,
        "malformed_row": 1,
    }
    assert _eligible_users(db) == {"alice"}
    assert audience_members(db, 1) == []
    # Replaying the file changes nothing; an older grant is stale.
    again = consent.import_consent_csv(db, path)
    assert again.identifiers_changed == 0 and again.users_changed == 0
    older = tmp_path / "older.csv"
    older.write_text("user_id,purpose,value,type,at\nalice,ads_matching,true,phone,2029-01-01\n")
    assert consent.import_consent_csv(db, older).stale == 1


def test_bulk_file_missing_column_fails_before_writing(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "changes.csv"
    path.write_text("user_id,value\nalice,false\n")
    before = db.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    with pytest.raises(ImportFailed, match="'purpose'"):
        consent.import_consent_csv(db, path)
    assert db.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == before
    assert "alice" in _eligible_users(db)


def test_a_lapsed_consent_granted_again_does_not_bring_the_membership_back(
    db: Database, tmp_path: Path
) -> None:
    # Re-importing bob's row with an expiry in the past (consent still true) hides him at once;
    # granting again makes him eligible, but not a member again: the lapse ended it.
    path = tmp_path / "lapsed.csv"
    path.write_text(
        "user_id,type,value,source,ads_matching_consent,expires_at\n"
        "bob,email,bob@example.com,signup,true,2020-01-01\n"
    )
    import_platform_csv(db, path)
    assert "bob" not in audience_members(db, 1) and _audience_size(db, 1) == 2
    assert consent.grant(db, "bob").identifiers == 1
    assert "bob" in _eligible_users(db)
    assert audience_members(db, 1) == ["alice", "carol"] and _audience_size(db, 1) == 2


def test_an_expired_member_is_hidden_before_any_sweep_and_swept_with_an_audit_entry(
    db: Database,
) -> None:
    db.conn.execute(
        "UPDATE identifiers SET expires_at = ? WHERE value = 'carol@example.com'",
        (db.clock() + 60,),
    )
    assert "carol" in audience_members(db, 1)
    later = db.clock() + 61
    with open_database(db.path, clock=lambda: later) as after:
        assert audience_members(after, 1) == ["alice", "bob"]
        assert _audience_size(after, 1) == 2
        stored = after.conn.execute("SELECT COUNT(*) FROM audience_members").fetchone()[0]
        swept = sweep_audiences(after)
        assert (swept.memberships_removed, swept.audiences) == (1, 1)
        assert after.conn.execute("SELECT COUNT(*) FROM audience_members").fetchone()[0] == (
            stored - 1
        )
        entry = list(audit.entries(after.conn))[-1]
        assert entry.action == "audience.sweep" and entry.details["memberships_removed"] == 1
        assert sweep_audiences(after).memberships_removed == 0  # nothing left: nothing audited
        assert list(audit.entries(after.conn))[-1].seq == entry.seq
