"""The session ledger summed up for the platform's operators: counts, costs and durations.

Every figure is an aggregate over ``match_sessions`` read in one consistent snapshot, so it
holds across server restarts and whichever process wrote the rows. The cost of a read grows
with the number of sessions (a few per advertiser per day), never with the platform's users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cleanroom.store.database import Database
from cleanroom.store.sessions import SessionRecord, find_session

__all__ = [
    "DURATION_BUCKETS",
    "AdvertiserActivity",
    "DurationHistogram",
    "LedgerSummary",
    "ledger_summary",
]

DURATION_BUCKETS: Final[tuple[float, ...]] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Upper bounds (seconds) of the session duration histogram; the ledger keeps whole seconds."""

_RECENT_SESSIONS: Final = 15


@dataclass(frozen=True)
class DurationHistogram:
    """Durations of completed sessions of one mode.

    Attributes:
        buckets: ``(upper bound, sessions that took at most that long)``, cumulative.
        count: sessions.
        total_seconds: their durations added up.
    """

    buckets: tuple[tuple[float, int], ...]
    count: int
    total_seconds: float


@dataclass
class AdvertiserActivity:
    """One advertiser's sessions.

    Attributes:
        advertiser: its name.
        by_state: sessions by state (``completed``, ``refused``, ``aborted``, ``open``).
        last_started_at: when its latest session was asked for.
        spent_by_epoch: ε charged per key epoch.
    """

    advertiser: str
    by_state: dict[str, int] = field(default_factory=dict)
    last_started_at: int | None = None
    spent_by_epoch: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerSummary:
    """The ledger summed up.

    Attributes:
        sessions: ``(advertiser, mode, state) -> sessions``; mode ``unknown`` when the opening
            could not be read.
        refusals: ``(advertiser, error class) -> refused sessions``.
        durations: completed sessions' durations by mode.
        records: records announced by completed sessions, by mode.
        identifiers: elements of the advertisers' sets in completed sessions, by mode (each one
            multiplied by the platform key).
        advertisers: activity per advertiser, by name.
        recent: the latest sessions, newest first.
    """

    sessions: dict[tuple[str, str, str], int]
    refusals: dict[tuple[str, str], int]
    durations: dict[str, DurationHistogram]
    records: dict[str, int]
    identifiers: dict[str, int]
    advertisers: dict[str, AdvertiserActivity]
    recent: list[SessionRecord]


def ledger_summary(db: Database) -> LedgerSummary:
    """Sum the ledger up, from one consistent read."""
    conn = db.conn
    conn.execute("BEGIN")
    try:
        counts = conn.execute(
            "SELECT advertiser, COALESCE(mode, 'unknown'), state, COUNT(*), MAX(started_at) "
            "FROM match_sessions GROUP BY 1, 2, 3"
        ).fetchall()
        # reason is "ErrorClass: message"; the class is the bounded part.
        refusals = conn.execute(
            "SELECT advertiser, CASE WHEN instr(reason, ':') > 0 "
            "THEN substr(reason, 1, instr(reason, ':') - 1) ELSE 'unknown' END, COUNT(*) "
            "FROM match_sessions WHERE state = 'refused' GROUP BY 1, 2"
        ).fetchall()
        spent = conn.execute(
            "SELECT advertiser, epoch_id, SUM(epsilon_charged) FROM match_sessions "
            "WHERE state = 'completed' AND epoch_id IS NOT NULL GROUP BY 1, 2"
        ).fetchall()
        bucket_sums = ", ".join(f"SUM(d <= {bound})" for bound in DURATION_BUCKETS)
        durations = conn.execute(
            f"SELECT mode, COUNT(*), SUM(d), SUM(records), SUM(identifiers), {bucket_sums} "
            "FROM (SELECT mode, finished_at - started_at AS d, record_count AS records, "
            "identifier_count AS identifiers FROM match_sessions WHERE state = 'completed') "
            "GROUP BY mode"
        ).fetchall()
        recent_ids = [
            int(row[0])
            for row in conn.execute(
                "SELECT id FROM match_sessions ORDER BY id DESC LIMIT ?", (_RECENT_SESSIONS,)
            )
        ]
        recent = [record for i in recent_ids if (record := find_session(db, i)) is not None]
    finally:
        conn.execute("COMMIT")

    advertisers: dict[str, AdvertiserActivity] = {}
    sessions: dict[tuple[str, str, str], int] = {}
    for advertiser, mode, state, count, last in counts:
        sessions[(advertiser, mode, state)] = int(count)
        activity = advertisers.setdefault(advertiser, AdvertiserActivity(advertiser))
        activity.by_state[state] = activity.by_state.get(state, 0) + int(count)
        if activity.last_started_at is None or int(last) > activity.last_started_at:
            activity.last_started_at = int(last)
    for advertiser, epoch_id, total in spent:
        activity = advertisers.setdefault(advertiser, AdvertiserActivity(advertiser))
        activity.spent_by_epoch[int(epoch_id)] = float(total)
    histograms, records, identifiers = {}, {}, {}
    for mode, count, total, record_total, identifier_total, *cumulative in durations:
        histograms[mode] = DurationHistogram(
            tuple(zip(DURATION_BUCKETS, (int(c) for c in cumulative), strict=True)),
            int(count),
            float(total or 0),
        )
        records[mode] = int(record_total or 0)
        identifiers[mode] = int(identifier_total or 0)
    return LedgerSummary(
        sessions=sessions,
        refusals={(a, error): int(n) for a, error, n in refusals},
        durations=histograms,
        records=records,
        identifiers=identifiers,
        advertisers=dict(sorted(advertisers.items())),
        recent=recent,
    )
