"""How many identifiers were eligible over time: samples of the eligibility counts.

Eligibility changes without any write to the database (a consent expires) and through every
process that writes (imports, consent changes, sweeps), so the history is sampled from the
eligibility view itself rather than reconstructed from the audit log, whose entries carry
counts only at rotations and imports. The server records a sample when the counts changed
since the last one, or when the last one is older than :data:`HEARTBEAT_SECONDS`, so a flat
stretch costs one row per heartbeat. Samples hold counts only, never an identifier.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cleanroom.store.database import Database, transaction

__all__ = [
    "HEARTBEAT_SECONDS",
    "RETENTION_SECONDS",
    "EligibilitySample",
    "eligibility_samples",
    "record_eligibility_sample",
]

HEARTBEAT_SECONDS: Final = 3600
"""A sample is recorded at least this often while the server runs, even when nothing changed."""

RETENTION_SECONDS: Final = 400 * 86_400
"""Samples older than this are removed as new ones are recorded (a year and more)."""


@dataclass(frozen=True)
class EligibilitySample:
    """The eligibility counts at one moment.

    Attributes:
        at: Unix seconds.
        eligible: identifiers eligible then.
        excluded: identifiers not eligible, by reason.
    """

    at: int
    eligible: int
    excluded: dict[str, int]


def record_eligibility_sample(
    db: Database, eligible: int, excluded: Mapping[str, int], *, now: int
) -> bool:
    """Record the counts unless they equal the last sample's and it is recent.

    Args:
        db: the platform database.
        eligible: identifiers eligible now.
        excluded: identifiers not eligible now, by reason.
        now: the current Unix time.

    Returns:
        Whether a sample was recorded.
    """
    excluded_json = json.dumps(dict(sorted(excluded.items())), separators=(",", ":"))
    with transaction(db.conn) as conn:
        last = conn.execute(
            "SELECT at, eligible, excluded FROM eligibility_samples ORDER BY at DESC LIMIT 1"
        ).fetchone()
        if (
            last is not None
            and (int(last[1]), str(last[2])) == (eligible, excluded_json)
            and now - int(last[0]) < HEARTBEAT_SECONDS
        ):
            return False
        conn.execute(
            "INSERT OR REPLACE INTO eligibility_samples (at, eligible, excluded) VALUES (?, ?, ?)",
            (now, eligible, excluded_json),
        )
        conn.execute("DELETE FROM eligibility_samples WHERE at < ?", (now - RETENTION_SECONDS,))
    return True


def eligibility_samples(db: Database, *, since: int, points: int) -> list[EligibilitySample]:
    """Samples from ``since`` on, oldest first, thinned to at most about ``points``.

    Thinning keeps the last sample of each of ``points`` equal stretches of time, so the cost
    of a read is bounded by ``points`` whatever the sampling rate was.
    """
    now_row = db.conn.execute("SELECT MAX(at) FROM eligibility_samples").fetchone()
    if now_row[0] is None:
        return []
    width = max(1, -(-(int(now_row[0]) - since + 1) // max(1, points)))
    rows = db.conn.execute(
        "SELECT at, eligible, excluded FROM eligibility_samples WHERE at IN ("
        "SELECT MAX(at) FROM eligibility_samples WHERE at >= ? GROUP BY (at - ?) / ?) "
        "ORDER BY at",
        (since, since, width),
    ).fetchall()
    return [EligibilitySample(int(at), int(n), json.loads(ex)) for at, n, ex in rows]
