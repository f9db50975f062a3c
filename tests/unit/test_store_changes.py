"""The audit log as a version of eligibility: which entries count as a change."""

from __future__ import annotations

from pathlib import Path

from cleanroom.store import audit
from cleanroom.store.changes import audit_head, eligibility_changed_since
from cleanroom.store.database import init_database, transaction


def test_only_entries_known_to_leave_eligibility_alone_are_skipped(tmp_path: Path) -> None:
    db, _ = init_database(tmp_path / "platform.db")
    with db:
        start = audit_head(db.conn)
        assert not eligibility_changed_since(db.conn, start)
        with transaction(db.conn):
            audit.append(db, "match.completed", {"ledger_id": 1})
            audit.append(db, "match.aborted", {"ledger_id": 2})
            audit.append(db, "tls.issue", {"advertiser": "acme"})
        assert audit_head(db.conn) == start + 3
        assert not eligibility_changed_since(db.conn, start)
        for action in ("consent.revoke", "something.new"):  # unknown actions count as changes
            with transaction(db.conn):
                audit.append(db, action, {})
            assert eligibility_changed_since(db.conn, start)
            assert not eligibility_changed_since(db.conn, audit_head(db.conn))
