"""The signed, hash-chained audit log: append, verify, and tampering of every kind detected.

The attacker here has write access to the database file but not the audit signing key: it
drops the triggers, rewrites rows, recomputes hashes (the algorithm is public) and moves the
recorded head, as someone editing the file would.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from _audit_tamper import drop_append_only_triggers, rewrite_and_rehash

from cleanroom._signing import SigningKey
from cleanroom.errors import AuditChainBroken, LedgerMismatch, StoreError
from cleanroom.store import audit, audit_key, sessions
from cleanroom.store.database import Database, init_database, transaction


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    with database:
        for n in range(2, 7):
            with transaction(database.conn):
                audit.append(database, "test.action", {"n": n, "user": f"u{n}"})
        yield database


def _verify(db: Database, *pinned: audit.PinnedEntry) -> audit.AuditVerification:
    return audit.verify(db, audit_key.read_public_key(db.audit_public_key_path), pinned)


def _tamper(db: Database, *statements: str) -> None:
    # An attacker with write access drops the append-only triggers first.
    drop_append_only_triggers(db.conn)
    for statement in statements:
        db.conn.execute(statement)


def test_entries_chain_sign_and_verify(db: Database) -> None:
    shown = list(audit.entries(db.conn))
    assert [e.seq for e in shown] == [1, 2, 3, 4, 5, 6]
    assert shown[0].action == "database.init" and shown[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(shown))
    assert all(e.signature is not None and len(e.signature) == 128 for e in shown)
    assert shown[2].details == {"n": 3, "user": "u3"}
    checked = _verify(db)
    assert (checked.entries, checked.first_signed, checked.last_at) == (6, 1, shown[-1].at)
    assert [e.seq for e in audit.entries(db.conn, limit=2)] == [5, 6]


def test_append_outside_a_transaction_is_refused(db: Database) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit.append(db, "x", {})


def test_append_without_the_signing_key_fails_and_writes_nothing(db: Database) -> None:
    db.audit_key_path.rename(db.audit_key_path.with_name("moved.key"))
    db._signing_key = None
    with (
        pytest.raises(StoreError, match=r"audit signing key .* is missing; .*CLEANROOM_AUDIT_KEY"),
        transaction(db.conn),
    ):
        audit.append(db, "x", {})
    assert len(list(audit.entries(db.conn))) == 6


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'x' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "INSERT OR REPLACE INTO audit_log SELECT seq, at, 'x', details, prev_hash, hash, "
        "signature FROM audit_log WHERE seq = 2",
        "REPLACE INTO audit_log SELECT seq, at, 'x', details, prev_hash, hash, signature "
        "FROM audit_log WHERE seq = 2",
        "INSERT INTO audit_log SELECT * FROM audit_log WHERE seq = 2 "
        "ON CONFLICT (seq) DO UPDATE SET action = 'x'",
        "INSERT INTO audit_log SELECT 9, at, action, details, prev_hash, hash, signature "
        "FROM audit_log WHERE seq = 2",
    ],
    ids=["update", "delete", "insert-or-replace", "replace", "upsert", "gap"],
)
def test_every_write_past_append_is_refused(db: Database, statement: str) -> None:
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.conn.execute(statement)
    assert _verify(db).entries == 6


def test_changed_entry_is_named(db: Database) -> None:
    _tamper(db, """UPDATE audit_log SET details = '{"n":3,"user":"someone else"}' WHERE seq = 3""")
    with pytest.raises(AuditChainBroken, match="entry 3") as caught:
        _verify(db)
    assert caught.value.entry == 3 and "changed" in caught.value.reason


def test_changed_and_rehashed_entry_is_caught_at_the_next_link(db: Database) -> None:
    entry = next(e for e in audit.entries(db.conn) if e.seq == 3)
    forged = audit._entry_hash(3, entry.at, "forged", '{"n":3}', entry.prev_hash)
    _tamper(
        db,
        f"UPDATE audit_log SET action = 'forged', details = '{{\"n\":3}}', hash = '{forged}' "
        "WHERE seq = 3",
    )
    with pytest.raises(AuditChainBroken, match="entry"):
        _verify(db)


def test_a_rewrite_with_every_later_hash_and_the_head_recomputed_fails_its_signature(
    db: Database,
) -> None:
    # The attack the hash chain alone cannot see: INSERT OR REPLACE past the dropped triggers,
    # then every later hash and the head recomputed. Without the key the signatures break.
    _tamper(db)
    rewrite_and_rehash(db.conn, 3, '{"n":3,"user":"someone else"}')
    with pytest.raises(AuditChainBroken, match="entry 3: its signature does not verify"):
        _verify(db)


def test_entries_signed_with_another_key_are_caught(db: Database) -> None:
    other = SigningKey.generate()
    db._signing_key = other
    with transaction(db.conn):
        audit.append(db, "forged", {})
    with pytest.raises(AuditChainBroken, match="entry 7: its signature does not verify"):
        _verify(db)


def test_a_removed_signature_is_caught(db: Database) -> None:
    _tamper(db, "UPDATE audit_log SET signature = NULL WHERE seq = 4")
    with pytest.raises(AuditChainBroken, match="entry 4: it is not signed"):
        _verify(db)


def test_unsigned_entries_at_the_start_without_a_signed_migration_are_caught(db: Database) -> None:
    _tamper(db, "UPDATE audit_log SET signature = NULL WHERE seq <= 2")
    with pytest.raises(AuditChainBroken, match="entry 3: the first signed entry"):
        _verify(db)


def test_deleting_every_entry_and_the_head_is_caught(db: Database) -> None:
    _tamper(db, "DELETE FROM audit_log", "DELETE FROM meta WHERE key = 'audit_head'")
    with pytest.raises(AuditChainBroken, match="the log is empty"):
        _verify(db)


def test_removed_entry_is_named(db: Database) -> None:
    _tamper(db, "DELETE FROM audit_log WHERE seq = 3")
    with pytest.raises(AuditChainBroken, match="entry 3 is missing"):
        _verify(db)


def test_removed_and_renumbered_entries_are_caught(db: Database) -> None:
    _tamper(
        db,
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3",
    )
    with pytest.raises(AuditChainBroken, match="entry 3"):
        _verify(db)


def test_reordered_entries_are_named(db: Database) -> None:
    _tamper(
        db,
        "UPDATE audit_log SET seq = 100 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 100",
    )
    with pytest.raises(AuditChainBroken, match="entry 3"):
        _verify(db)


def test_removed_newest_entry_is_caught_by_the_head(db: Database) -> None:
    _tamper(db, "DELETE FROM audit_log WHERE seq = 6")
    with pytest.raises(AuditChainBroken, match="entry 6") as caught:
        _verify(db)
    assert "removed" in caught.value.reason


def test_a_cut_tail_with_the_head_moved_back_is_caught_by_a_receipt_that_pins_it(
    db: Database,
) -> None:
    last = list(audit.entries(db.conn))[-1]
    pin = audit.PinnedEntry(last.seq, last.hash, {"n": 6}, "receipt r.json")
    assert _verify(db, pin).pinned == 1
    kept = next(e for e in audit.entries(db.conn) if e.seq == 3)
    _tamper(
        db,
        "DELETE FROM audit_log WHERE seq > 3",
        f"UPDATE meta SET value = '3:{kept.hash}' WHERE key = 'audit_head'",
    )
    # On its own the cut log is a consistent, signed prefix: only a pinned entry shows the cut.
    assert _verify(db).entries == 3
    with pytest.raises(AuditChainBroken, match=r"receipt r\.json holds entry 6, but the log ends"):
        _verify(db, pin)


def test_a_pinned_entry_rewritten_is_caught(db: Database) -> None:
    entry = next(e for e in audit.entries(db.conn) if e.seq == 4)
    pin = audit.PinnedEntry(4, entry.hash, {"n": 4}, "receipt r.json")
    changed = audit.PinnedEntry(4, entry.hash, {"n": 5}, "receipt s.json")
    with pytest.raises(AuditChainBroken, match=r"receipt s\.json says n = 5, entry 4 says 4"):
        _verify(db, changed)
    other = audit.PinnedEntry(4, "0" * 64, {}, "receipt t.json")
    with pytest.raises(AuditChainBroken, match="rewritten or rolled back"):
        _verify(db, other)
    assert _verify(db, pin).pinned == 1


# -- the session ledger against the signed log ------------------------------------------------


def _session(db: Database, advertiser: str, epsilon: float, *, epoch: int = 1) -> int:
    """A completed session, recorded in the ledger and the log as the service records it."""
    with transaction(db.conn):
        row = sessions.start_session(
            db,
            advertiser=advertiser,
            mode="count",
            suite_id="x25519-sha512-ell2-ro",
            epoch_id=epoch,
            record_count=1000,
            identifier_count=1000,
        )
    with transaction(db.conn):
        sessions.complete_session(
            db, row, epsilon_charged=epsilon, noise_applied=True, result_count=5, reported_as="5"
        )
        details = {"ledger_id": row, "advertiser": advertiser, "epoch": epoch}
        audit.append(db, "match.completed", {**details, "epsilon_charged": epsilon})
    return row


def test_the_ledger_agrees_with_the_signed_log(db: Database) -> None:
    for _ in range(3):
        _session(db, "acme", 0.5)
    _session(db, "globex", 1.0)
    checked = _verify(db)
    assert checked.sessions == 4
    assert checked.budgets == {("acme", 1): 1.5, ("globex", 1): 1.0}


def test_a_budget_given_back_in_the_ledger_is_caught(db: Database) -> None:
    for _ in range(3):
        _session(db, "acme", 0.5)
    db.conn.execute("UPDATE match_sessions SET epsilon_charged = 0")
    with pytest.raises(LedgerMismatch, match="acme has spent epsilon 0 in epoch 1") as caught:
        _verify(db)
    assert "1.5 by the signed log" in str(caught.value)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE match_sessions SET state = 'aborted' WHERE id = 1", "is aborted in the ledger"),
        ("DELETE FROM match_sessions WHERE id = 1", "which the ledger no longer has"),
        (
            "INSERT INTO match_sessions (advertiser, state, started_at, epsilon_charged) "
            "VALUES ('acme', 'completed', 0, 0.5)",
            "no signed entry records its end",
        ),
        ("UPDATE match_sessions SET advertiser = 'globex' WHERE id = 1", "another advertiser"),
    ],
    ids=["state", "deleted", "added", "advertiser"],
)
def test_a_ledger_changed_outside_the_platform_is_caught(
    db: Database, statement: str, message: str
) -> None:
    _session(db, "acme", 0.5)
    db.conn.execute(statement)
    with pytest.raises(LedgerMismatch, match=message):
        _verify(db)
