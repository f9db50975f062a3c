"""Stored audiences: the users an ``audience``-mode match found, kept for ad delivery.

The match service (a later issue) creates them; this module holds the storage so that consent
changes can already remove users from them (schema triggers) and be tested.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cleanroom.store.database import Database, unix_now

__all__ = ["audience_members", "store_audience"]


def store_audience(
    db: Database, session_id: str, advertiser: str, user_rows: NDArray[np.int64]
) -> int:
    """Store an audience; call inside the transaction that records the session.

    Args:
        db: the platform database (a write transaction must be open on ``db.conn``).
        session_id: the match session that produced it.
        advertiser: the advertiser's identity.
        user_rows: internal user ids (``users.id``, as in the epoch's index map); duplicates
            are stored once.

    Returns:
        The audience id.
    """
    conn = db.conn
    if not conn.in_transaction:
        raise RuntimeError("store_audience must run inside the session's transaction")
    members = np.unique(np.asarray(user_rows, dtype=np.int64))
    cursor = conn.execute(
        "INSERT INTO audiences (session_id, advertiser, created_at, size) VALUES (?, ?, ?, ?)",
        (session_id, advertiser, unix_now(), int(members.size)),
    )
    audience_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO audience_members (audience_id, user_id) VALUES (?, ?)",
        ((audience_id, int(user)) for user in members),
    )
    return audience_id


def audience_members(db: Database, audience_id: int) -> list[str]:
    """External ids of an audience's current members, sorted."""
    return [
        str(row[0])
        for row in db.conn.execute(
            "SELECT u.external_id FROM audience_members AS m JOIN users AS u ON u.id = m.user_id "
            "WHERE m.audience_id = ? ORDER BY u.external_id",
            (audience_id,),
        )
    ]
