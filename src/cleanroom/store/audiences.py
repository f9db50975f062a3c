"""Stored audiences: the users an ``audience``-mode match found, kept for ad delivery.

Membership follows eligibility for the life of the data:

- a session's matched users are stored only if an identifier they matched through is eligible
  in the very transaction that stores them (:func:`store_audience`); users who lost
  eligibility while the session ran (revoked, deleted, opted out, expired) are left out and
  counted;
- every read goes through the ``readable_audience_members`` view
  (:mod:`~cleanroom.store.eligibility`): a member is shown, listed and counted only while an
  identifier it matched through is eligible now, so an expired consent leaves every audience at
  the second it expires, whether or not anything has been written since. There is no stored
  size to disagree: an audience's size is the number of its readable members;
- revocation, opt-out and deletion remove the user's memberships physically in the same
  transaction (schema triggers); :func:`sweep_audiences` removes the rest (expiry, a denied
  source), which reads already hide, and audits how many.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cleanroom.store import audit
from cleanroom.store.database import Database, transaction, unix_now

__all__ = [
    "AudienceSweep",
    "StoredAudience",
    "audience_members",
    "store_audience",
    "sweep_audiences",
]

_CANDIDATES = """
CREATE TEMP TABLE IF NOT EXISTS audience_candidates (
    user_id       INTEGER NOT NULL,
    identifier_id INTEGER NOT NULL
)
"""

# The candidates that are eligible now, in the storing transaction: what is stored.
_ELIGIBLE_CANDIDATES = """
SELECT DISTINCT c.user_id, c.identifier_id
FROM temp.audience_candidates AS c
JOIN eligible_identifiers AS e ON e.identifier_id = c.identifier_id AND e.user_row = c.user_id
"""


@dataclass(frozen=True)
class StoredAudience:
    """What :func:`store_audience` stored.

    Attributes:
        audience_id: the new audience's id.
        matched_users: distinct users the session matched.
        members: of those, users stored (eligible when stored).
    """

    audience_id: int
    matched_users: int
    members: int

    @property
    def left_out(self) -> int:
        """Matched users not stored: they lost eligibility while the session ran."""
        return self.matched_users - self.members


@dataclass(frozen=True)
class AudienceSweep:
    """What :func:`sweep_audiences` removed.

    Attributes:
        memberships_removed: memberships deleted (each was already hidden from every read).
        audiences: audiences that lost members.
    """

    memberships_removed: int
    audiences: int


def store_audience(
    db: Database,
    session_id: str,
    advertiser: str,
    user_rows: NDArray[np.int64],
    identifier_ids: NDArray[np.int64],
) -> StoredAudience:
    """Store an audience of the users still eligible; call inside the session's transaction.

    Args:
        db: the platform database (a write transaction must be open on ``db.conn``).
        session_id: the match session that produced it.
        advertiser: the advertiser's identity.
        user_rows: internal user ids (``users.id``) of the matched (user, identifier) pairs.
        identifier_ids: the identifier (``identifiers.id``) each user matched through, aligned
            with ``user_rows``; a user matched through several appears once per identifier.

    Returns:
        The audience's id and how many matched users it holds and left out.
    """
    conn = db.conn
    if not conn.in_transaction:
        raise RuntimeError("store_audience must run inside the session's transaction")
    users = np.asarray(user_rows, dtype=np.int64)
    identifiers = np.asarray(identifier_ids, dtype=np.int64)
    if users.shape != identifiers.shape:
        raise ValueError("user_rows and identifier_ids must be aligned")
    conn.execute(_CANDIDATES)
    conn.execute("DELETE FROM temp.audience_candidates")
    # One JSON array through json_each: SQLite reads the pairs in C, not one call per row.
    pairs = json.dumps(np.stack([users, identifiers], axis=1).tolist())
    conn.execute(
        "INSERT INTO temp.audience_candidates (user_id, identifier_id) "
        "SELECT value ->> 0, value ->> 1 FROM json_each(?)",
        (pairs,),
    )
    cursor = conn.execute(
        "INSERT INTO audiences (session_id, advertiser, created_at) VALUES (?, ?, ?)",
        (session_id, advertiser, unix_now()),
    )
    audience_id = int(cursor.lastrowid or 0)
    conn.execute(
        "INSERT INTO audience_members (audience_id, user_id) "
        f"SELECT DISTINCT ?, user_id FROM ({_ELIGIBLE_CANDIDATES})",
        (audience_id,),
    )
    conn.execute(
        "INSERT INTO audience_member_identifiers (audience_id, user_id, identifier_id) "
        f"SELECT ?, user_id, identifier_id FROM ({_ELIGIBLE_CANDIDATES})",
        (audience_id,),
    )
    conn.execute("DELETE FROM temp.audience_candidates")
    members = _count(
        conn, "SELECT COUNT(*) FROM audience_members WHERE audience_id = ?", audience_id
    )
    return StoredAudience(audience_id, int(np.unique(users).size), members)


def audience_members(db: Database, audience_id: int) -> list[str]:
    """External ids of an audience's members eligible now, sorted."""
    return [
        str(row[0])
        for row in db.conn.execute(
            "SELECT u.external_id FROM readable_audience_members AS m "
            "JOIN users AS u ON u.id = m.user_id WHERE m.audience_id = ? ORDER BY u.external_id",
            (audience_id,),
        )
    ]


def sweep_audiences(db: Database) -> AudienceSweep:
    """Delete the memberships that no read shows any more (expired consent, denied source).

    Reads never depend on this (they filter by eligibility now); it keeps the tables to what
    they show. A sweep that removed something is audited (``audience.sweep``, counts only).

    Returns:
        How many memberships were removed, from how many audiences.
    """
    conn = db.conn
    with transaction(conn):
        before = _sizes(conn)
        conn.execute(
            "DELETE FROM audience_member_identifiers WHERE NOT EXISTS ("
            "SELECT 1 FROM eligible_identifiers AS e "
            "WHERE e.identifier_id = audience_member_identifiers.identifier_id "
            "AND e.user_row = audience_member_identifiers.user_id)"
        )
        # Members with no identifier left at all (stored before identifiers were recorded and
        # whose identifiers were since erased) are no one's members either.
        conn.execute(
            "DELETE FROM audience_members WHERE NOT EXISTS ("
            "SELECT 1 FROM audience_member_identifiers AS matched "
            "WHERE matched.audience_id = audience_members.audience_id "
            "AND matched.user_id = audience_members.user_id)"
        )
        after = _sizes(conn)
        shrunk = {aid: size - after.get(aid, 0) for aid, size in before.items()}
        shrunk = {aid: removed for aid, removed in shrunk.items() if removed}
        sweep = AudienceSweep(sum(shrunk.values()), len(shrunk))
        if sweep.memberships_removed:
            audit.append(
                db,
                "audience.sweep",
                {"memberships_removed": sweep.memberships_removed, "audiences": sweep.audiences},
            )
    return sweep


def _sizes(conn: sqlite3.Connection) -> dict[int, int]:
    return {
        int(aid): int(size)
        for aid, size in conn.execute(
            "SELECT audience_id, COUNT(*) FROM audience_members GROUP BY audience_id"
        )
    }


def _count(conn: sqlite3.Connection, query: str, *params: object) -> int:
    return int(conn.execute(query, params).fetchone()[0])
