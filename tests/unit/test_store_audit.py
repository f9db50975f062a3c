"""The hash-chained audit log: append, verify, and tampering of every kind detected."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.errors import AuditChainBroken
from cleanroom.store import audit
from cleanroom.store.database import Database, init_database, transaction


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    with database:
        for n in range(1, 6):
            with transaction(database.conn):
                audit.append(database.conn, "test.action", {"n": n, "user": f"u{n}"})
        yield database


def _tamper(db: Database, *statements: str) -> None:
    # An attacker with write access drops the append-only triggers first.
    conn = db.conn
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    for statement in statements:
        conn.execute(statement)


def test_entries_chain_and_verify(db: Database) -> None:
    shown = list(audit.entries(db.conn))
    assert [e.seq for e in shown] == [1, 2, 3, 4, 5]
    assert shown[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(shown))
    assert shown[2].details == {"n": 3, "user": "u3"}
    assert audit.verify(db.conn) == 5
    assert [e.seq for e in audit.entries(db.conn, limit=2)] == [4, 5]


def test_empty_log_verifies(tmp_path: Path) -> None:
    database, _ = init_database(tmp_path / "p.db")
    with database:
        assert audit.verify(database.conn) == 0


def test_append_outside_a_transaction_is_refused(db: Database) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit.append(db.conn, "x", {})


def test_log_is_append_only(db: Database) -> None:
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.conn.execute("UPDATE audit_log SET action = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.conn.execute("DELETE FROM audit_log WHERE seq = 2")


def test_changed_entry_is_named(db: Database) -> None:
    _tamper(db, """UPDATE audit_log SET details = '{"n":3,"user":"someone else"}' WHERE seq = 3""")
    with pytest.raises(AuditChainBroken, match="entry 3") as caught:
        audit.verify(db.conn)
    assert caught.value.entry == 3 and "changed" in caught.value.reason


def test_changed_and_rehashed_entry_is_caught_at_the_next_link(db: Database) -> None:
    entry = next(e for e in audit.entries(db.conn) if e.seq == 2)
    forged = audit._entry_hash(2, entry.at, "forged", '{"n":2}', entry.prev_hash)
    _tamper(
        db,
        f"UPDATE audit_log SET action = 'forged', details = '{{\"n\":2}}', hash = '{forged}' "
        "WHERE seq = 2",
    )
    with pytest.raises(AuditChainBroken, match="entry 3") as caught:
        audit.verify(db.conn)
    assert "does not follow entry 2" in caught.value.reason


def test_removed_entry_is_named(db: Database) -> None:
    _tamper(db, "DELETE FROM audit_log WHERE seq = 2")
    with pytest.raises(AuditChainBroken, match="entry 2 is missing"):
        audit.verify(db.conn)


def test_removed_and_renumbered_entries_are_caught(db: Database) -> None:
    _tamper(
        db,
        "DELETE FROM audit_log WHERE seq = 2",
        "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2",
    )
    with pytest.raises(AuditChainBroken, match="entry 2"):
        audit.verify(db.conn)


def test_reordered_entries_are_named(db: Database) -> None:
    _tamper(
        db,
        "UPDATE audit_log SET seq = 100 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 100",
    )
    with pytest.raises(AuditChainBroken, match="entry 3"):
        audit.verify(db.conn)


def test_removed_newest_entry_is_caught_by_the_head(db: Database) -> None:
    _tamper(db, "DELETE FROM audit_log WHERE seq = 5")
    with pytest.raises(AuditChainBroken, match="entry 5") as caught:
        audit.verify(db.conn)
    assert "removed" in caught.value.reason
