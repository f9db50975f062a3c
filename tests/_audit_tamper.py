"""What someone with write access to the database file does to its audit log (shared by tests).

It does not hold the audit signing key, which lives outside the database; it knows the hash
algorithm, which is public.
"""

from __future__ import annotations

import sqlite3

from cleanroom.store import audit

#: The triggers that keep the log append-only, which such a writer drops first.
APPEND_ONLY_TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "audit_log_append_only")


def drop_append_only_triggers(conn: sqlite3.Connection) -> None:
    """``DROP TRIGGER`` every trigger that keeps the log append-only."""
    for trigger in APPEND_ONLY_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")


def rewrite_and_rehash(conn: sqlite3.Connection, seq: int, details_json: str) -> None:
    """Replace entry ``seq``'s details, recompute every later hash and the recorded head.

    Entries are rewritten with ``INSERT OR REPLACE`` (the triggers must be dropped first) and
    keep their old signatures: without the key there is nothing better to put there.
    """
    rows = conn.execute(
        "SELECT seq, at, action, details, signature FROM audit_log WHERE seq >= ? ORDER BY seq",
        (seq,),
    ).fetchall()
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (seq - 1,)).fetchone()
    prev_hash = audit.GENESIS_HASH if prev is None else str(prev[0])
    for row_seq, at, action, details, signature in rows:
        if row_seq == seq:
            details = details_json
        digest = audit._entry_hash(row_seq, at, action, details, prev_hash)
        conn.execute(
            "INSERT OR REPLACE INTO audit_log (seq, at, action, details, prev_hash, hash, "
            "signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row_seq, at, action, details, prev_hash, digest, signature),
        )
        prev_hash = digest
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{rows[-1][0]}:{prev_hash}",)
    )
