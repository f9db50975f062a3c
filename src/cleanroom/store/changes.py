"""Whether anything that decides eligibility changed since a point in the audit log.

Every change to identifiers, consent, opt-outs, users or epochs is audited in the transaction
that makes it (see :mod:`cleanroom.store.audit`), whichever process makes it. So the audit log's
last sequence number is a version of the data behind eligibility that any process can read in
O(1): a cache of something computed from eligible identifiers (the size of the matchable set,
which GetPolicy announces) stays valid while no entry since its build could have changed them.

Entries known not to touch eligibility (sessions, certificates) are skipped; any other action,
including one this module has never heard of, counts as a change.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["ELIGIBILITY_NEUTRAL_ACTIONS", "audit_head", "eligibility_changed_since"]

ELIGIBILITY_NEUTRAL_ACTIONS: Final = ("match.", "tls.")
"""Prefixes of audit actions that never change which identifiers are eligible."""

# The prefixes are this module's constants, never input, so inlining them is safe.
_CHANGES_SINCE: Final = (
    "SELECT 1 FROM audit_log WHERE seq > ? AND "
    + " AND ".join(f"action NOT LIKE '{prefix}%'" for prefix in ELIGIBILITY_NEUTRAL_ACTIONS)
    + " LIMIT 1"
)


def audit_head(conn: sqlite3.Connection) -> int:
    """The audit log's last sequence number (0 when it is empty)."""
    row = conn.execute("SELECT MAX(seq) FROM audit_log").fetchone()
    return 0 if row[0] is None else int(row[0])


def eligibility_changed_since(conn: sqlite3.Connection, seq: int) -> bool:
    """Whether an entry after ``seq`` may have changed eligibility.

    Reads only the entries after ``seq`` (the log's primary key), so checking again and again
    from the last head costs each entry once.
    """
    return conn.execute(_CHANGES_SINCE, (seq,)).fetchone() is not None
