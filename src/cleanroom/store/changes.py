"""Whether anything that decides eligibility changed since a point in the audit log.

Every change to identifiers, consent, opt-outs, users or epochs is audited in the transaction
that makes it (see :mod:`cleanroom.store.audit`), whichever process makes it. So the audit log's
last sequence number is a version of the data behind eligibility that any process can read in
O(1): a cache of something computed from eligible identifiers (the size of the matchable set,
which GetPolicy announces) stays valid while no entry since its build could have changed them.

Entries known not to touch eligibility (sessions, certificates) are skipped; any other action,
including one this module has never heard of, counts as a change.

A bulk import is the exception to "audited in the transaction that makes it": it commits its rows
chunk by chunk between a ``*.started`` entry and its report, so while one runs, the log does not
yet announce everything that was written (:func:`bulk_import_running`).
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = [
    "BULK_IMPORTS",
    "CONSENT_IMPORT_REPORTED",
    "CONSENT_IMPORT_STARTED",
    "ELIGIBILITY_NEUTRAL_ACTIONS",
    "IMPORT_REPORTED",
    "IMPORT_STARTED",
    "audit_head",
    "bulk_import_running",
    "eligibility_changed_since",
]

ELIGIBILITY_NEUTRAL_ACTIONS: Final = ("match.", "tls.")
"""Prefixes of audit actions that never change which identifiers are eligible."""

IMPORT_STARTED: Final = "import.started"
IMPORT_REPORTED: Final = "import"
CONSENT_IMPORT_STARTED: Final = "consent.import.started"
CONSENT_IMPORT_REPORTED: Final = "consent.import"

BULK_IMPORTS: Final = {
    IMPORT_STARTED: IMPORT_REPORTED,
    CONSENT_IMPORT_STARTED: CONSENT_IMPORT_REPORTED,
}
"""The audit action a bulk import appends before its first chunk -> the one of its report."""

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


# The action names are this module's constants, never input, so inlining them is safe.
_RUNNING_IMPORTS: Final = (
    "SELECT "
    + " OR ".join(
        f"COALESCE(MAX(CASE WHEN action = '{started}' THEN seq END), 0)"
        f" > COALESCE(MAX(CASE WHEN action = '{report}' THEN seq END), 0)"
        for started, report in BULK_IMPORTS.items()
    )
    + " FROM audit_log WHERE action IN ("
    + ", ".join(f"'{action}'" for pair in BULK_IMPORTS.items() for action in pair)
    + ")"
)


def bulk_import_running(conn: sqlite3.Connection) -> bool:
    """Whether a bulk import started and has not reported (running, or stopped half way).

    Its chunks may already be committed without an entry of their own: a copy of anything
    computed from eligible identifiers cannot be trusted to stay current until it reports.
    """
    return bool(conn.execute(_RUNNING_IMPORTS).fetchone()[0])
