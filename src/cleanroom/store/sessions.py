"""The ledger of match sessions: who matched what, when, and what it cost in privacy budget.

Every session the service sees gets one row in ``match_sessions``, in one of four states::

    open ──► completed     a count (or the ids) was released; epsilon charged, audience stored
      │
      └────► aborted       the client went away, the server stopped, or a check failed mid-way:
                           nothing charged, nothing stored (also: streams that never opened a
                           session, recorded in bulk without a mode)
    refused                the policy (or a malformed opening) refused it before any work

The ledger answers the policy's questions (:func:`spent_epsilon`, :func:`sessions_today`,
:func:`has_open_session`); a partial unique index makes "one open session per advertiser" hold
in the database itself, whatever the process. Writes here never touch the audit log: the caller
appends the audit entry in the same transaction (see :mod:`cleanroom.service.platform_sessions`).

Timestamps are integer Unix seconds (UTC), like every other table; "today" is the current UTC
calendar day.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from cleanroom.store.audiences import audience_members
from cleanroom.store.database import Database, unix_now
from cleanroom.store.fields import format_timestamp

__all__ = [
    "SESSION_STATES",
    "AudienceSummary",
    "SessionRecord",
    "abort_session",
    "attach_session_id",
    "audience_summaries",
    "audience_summary",
    "complete_session",
    "find_session",
    "has_open_session",
    "list_sessions",
    "open_sessions",
    "record_refused_session",
    "record_unopened_streams",
    "sessions_today",
    "spent_epsilon",
    "start_session",
]

SESSION_STATES: Final = ("open", "completed", "refused", "aborted")
"""Every state a session row can be in."""

_SECONDS_PER_DAY: Final = 86_400

_COLUMNS: Final = (
    "id, session_id, advertiser, mode, suite_id, epoch_id, state, started_at, finished_at, "
    "record_count, identifier_count, epsilon_charged, noise_applied, result_count, reported_as, "
    "audience_id, reason"
)


@dataclass(frozen=True)
class SessionRecord:
    """One row of the session ledger.

    Attributes:
        id: the row's number (the ledger's own id, present even for refused sessions).
        session_id: the protocol's random session id (hex), ``None`` if refused before it had one.
        advertiser: the advertiser's name, from its certificate.
        mode: ``count``, ``audience`` or ``ids``; ``None`` if the opening was unreadable.
        suite_id: the ciphersuite asked for, if known.
        epoch_id: the key epoch the session ran (or would have run) in, if there was one.
        state: one of :data:`SESSION_STATES`.
        started_at: Unix seconds when the session was asked for.
        finished_at: Unix seconds when it completed, was refused or aborted; ``None`` while open.
        record_count: records the advertiser announced, if known.
        identifier_count: elements of the advertiser's set, if known.
        epsilon_charged: privacy loss charged (0 unless completed with a noised release).
        noise_applied: whether the released count was noised; ``None`` unless completed.
        result_count: the released count; ``None`` below the threshold or unless completed.
        reported_as: the count as reported to people; ``None`` unless completed.
        audience_id: the stored audience (audience mode), else ``None``.
        reason: why it was refused or aborted.
    """

    id: int
    session_id: str | None
    advertiser: str
    mode: str | None
    suite_id: str | None
    epoch_id: int | None
    state: str
    started_at: int
    finished_at: int | None
    record_count: int | None
    identifier_count: int | None
    epsilon_charged: float
    noise_applied: bool | None
    result_count: int | None
    reported_as: str | None
    audience_id: int | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON object (timestamps in ISO 8601 UTC)."""
        data = dict(vars(self))
        data["started_at"] = format_timestamp(self.started_at)
        if self.finished_at is not None:
            data["finished_at"] = format_timestamp(self.finished_at)
        return data


@dataclass(frozen=True)
class AudienceSummary:
    """A stored audience as listed to the platform's operators.

    Attributes:
        id: the audience id.
        session_id: the protocol session id (hex) that produced it.
        advertiser: whose list it was matched against.
        size: members eligible now (a member whose consent expired or was revoked, who opted
            out or was deleted is never counted, swept yet or not).
        created_at: Unix seconds when it was stored.
    """

    id: int
    session_id: str
    advertiser: str
    size: int
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON object (``created`` in ISO 8601 UTC)."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "advertiser": self.advertiser,
            "size": self.size,
            "created": format_timestamp(self.created_at),
        }


def _require_transaction(conn: sqlite3.Connection, what: str) -> None:
    # A ledger change and its audit entry must commit or vanish together.
    if not conn.in_transaction:
        raise RuntimeError(f"{what} must run inside the transaction that audits it")


def _record(row: tuple[Any, ...]) -> SessionRecord:
    noise = row[12]
    return SessionRecord(
        id=int(row[0]),
        session_id=row[1],
        advertiser=str(row[2]),
        mode=row[3],
        suite_id=row[4],
        epoch_id=row[5],
        state=str(row[6]),
        started_at=int(row[7]),
        finished_at=row[8],
        record_count=row[9],
        identifier_count=row[10],
        epsilon_charged=float(row[11]),
        noise_applied=None if noise is None else bool(noise),
        result_count=row[13],
        reported_as=row[14],
        audience_id=row[15],
        reason=row[16],
    )


# -- ledger queries ---------------------------------------------------------------------------


def spent_epsilon(db: Database, advertiser: str, epoch_id: int) -> float:
    """Privacy loss the advertiser has been charged in a key epoch (completed sessions only).

    Args:
        db: the platform database.
        advertiser: the advertiser's name.
        epoch_id: the key epoch.

    Returns:
        The sum of ``epsilon_charged`` of its completed sessions in that epoch.
    """
    row = db.conn.execute(
        "SELECT COALESCE(SUM(epsilon_charged), 0.0) FROM match_sessions "
        "WHERE advertiser = ? AND epoch_id = ? AND state = 'completed'",
        (advertiser, epoch_id),
    ).fetchone()
    return float(row[0])


def sessions_today(db: Database, advertiser: str, *, now: int | None = None) -> int:
    """Sessions the advertiser opened in the current UTC day.

    Every session that opened counts (open, completed or aborted): an aborted session still
    made the platform stream its set. Refused sessions never opened and do not count.

    Args:
        db: the platform database.
        advertiser: the advertiser's name.
        now: the current Unix time (default: the clock), for tests.

    Returns:
        The number of sessions.
    """
    current = unix_now() if now is None else now
    day_start = current - current % _SECONDS_PER_DAY
    row = db.conn.execute(
        "SELECT COUNT(*) FROM match_sessions "
        "WHERE advertiser = ? AND started_at >= ? AND state != 'refused'",
        (advertiser, day_start),
    ).fetchone()
    return int(row[0])


def has_open_session(db: Database, advertiser: str) -> bool:
    """Whether the advertiser has a session open right now."""
    row = db.conn.execute(
        "SELECT 1 FROM match_sessions WHERE advertiser = ? AND state = 'open'", (advertiser,)
    ).fetchone()
    return row is not None


def open_sessions(db: Database) -> list[SessionRecord]:
    """Every session still open, oldest first (after a crash: those to mark aborted)."""
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM match_sessions WHERE state = 'open' ORDER BY id"
    ).fetchall()
    return [_record(row) for row in rows]


def find_session(db: Database, row_id: int) -> SessionRecord | None:
    """The session with ledger id ``row_id``, or ``None``."""
    row = db.conn.execute(
        f"SELECT {_COLUMNS} FROM match_sessions WHERE id = ?", (row_id,)
    ).fetchone()
    return None if row is None else _record(row)


def list_sessions(db: Database, *, advertiser: str | None = None) -> list[SessionRecord]:
    """Sessions in the order they were asked for, optionally of one advertiser only."""
    if advertiser is None:
        rows = db.conn.execute(f"SELECT {_COLUMNS} FROM match_sessions ORDER BY id").fetchall()
    else:
        rows = db.conn.execute(
            f"SELECT {_COLUMNS} FROM match_sessions WHERE advertiser = ? ORDER BY id",
            (advertiser,),
        ).fetchall()
    return [_record(row) for row in rows]


# -- ledger changes (inside the caller's transaction) -------------------------------------------


def start_session(
    db: Database,
    *,
    advertiser: str,
    mode: str,
    suite_id: str,
    epoch_id: int,
    record_count: int,
    identifier_count: int,
    now: int | None = None,
) -> int:
    """Record a session the policy allowed, as open; it holds the advertiser's one open slot.

    Args:
        db: the platform database, inside a write transaction.
        advertiser: the advertiser's name.
        mode: the session's mode.
        suite_id: its ciphersuite.
        epoch_id: the key epoch it runs in.
        record_count: records announced.
        identifier_count: elements of U announced.
        now: the current Unix time (default: the clock).

    Returns:
        The ledger id of the new row.

    Raises:
        sqlite3.IntegrityError: the advertiser already has an open session (check
            :func:`has_open_session` first, in the same transaction).
    """
    _require_transaction(db.conn, "start_session")
    cursor = db.conn.execute(
        "INSERT INTO match_sessions (advertiser, mode, suite_id, epoch_id, state, started_at, "
        "record_count, identifier_count) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
        (
            advertiser,
            mode,
            suite_id,
            epoch_id,
            unix_now() if now is None else now,
            record_count,
            identifier_count,
        ),
    )
    return int(cursor.lastrowid or 0)


def attach_session_id(db: Database, row_id: int, session_id: str) -> None:
    """Record the protocol session id of an open session, once the platform role made it."""
    db.conn.execute(
        "UPDATE match_sessions SET session_id = ? WHERE id = ? AND state = 'open'",
        (session_id, row_id),
    )


def record_refused_session(
    db: Database,
    *,
    advertiser: str,
    reason: str,
    mode: str | None = None,
    suite_id: str | None = None,
    epoch_id: int | None = None,
    record_count: int | None = None,
    identifier_count: int | None = None,
    now: int | None = None,
) -> int:
    """Record a session refused before it opened (nothing charged, nothing stored).

    Args:
        db: the platform database, inside a write transaction.
        advertiser: the advertiser's name.
        reason: why it was refused (the error's class and message).
        mode, suite_id, epoch_id, record_count, identifier_count: what is known of the request.
        now: the current Unix time (default: the clock).

    Returns:
        The ledger id of the new row.
    """
    _require_transaction(db.conn, "record_refused_session")
    at = unix_now() if now is None else now
    cursor = db.conn.execute(
        "INSERT INTO match_sessions (advertiser, mode, suite_id, epoch_id, state, started_at, "
        "finished_at, record_count, identifier_count, reason) "
        "VALUES (?, ?, ?, ?, 'refused', ?, ?, ?, ?, ?)",
        (advertiser, mode, suite_id, epoch_id, at, at, record_count, identifier_count, reason),
    )
    return int(cursor.lastrowid or 0)


def record_unopened_streams(
    db: Database, *, advertiser: str, reason: str, started_at: int, now: int | None = None
) -> int:
    """Record streams that ended before opening a session, as one aborted row for them all.

    They never said what they wanted (no mode, no counts) and cost no work, so the service
    records them in bulk, at most one row per advertiser per interval: one row per stream
    would let a client that opens and drops streams write rows as fast as it can.

    Args:
        db: the platform database, inside a write transaction.
        advertiser: the advertiser's name.
        reason: how many streams, and how each ended.
        started_at: Unix seconds when the first of them started.
        now: the current Unix time (default: the clock).

    Returns:
        The ledger id of the new row.
    """
    _require_transaction(db.conn, "record_unopened_streams")
    at = unix_now() if now is None else now
    cursor = db.conn.execute(
        "INSERT INTO match_sessions (advertiser, state, started_at, finished_at, reason) "
        "VALUES (?, 'aborted', ?, ?, ?)",
        (advertiser, started_at, at, reason),
    )
    return int(cursor.lastrowid or 0)


def complete_session(
    db: Database,
    row_id: int,
    *,
    epsilon_charged: float,
    noise_applied: bool,
    result_count: int | None,
    reported_as: str,
    audience_id: int | None = None,
    now: int | None = None,
) -> bool:
    """Mark an open session completed, charging what its release cost.

    Args:
        db: the platform database, inside a write transaction.
        row_id: the session's ledger id.
        epsilon_charged: privacy loss of the release.
        noise_applied: whether the count was noised.
        result_count: the released count, ``None`` below the threshold.
        reported_as: the count as reported.
        audience_id: the stored audience, in audience mode.
        now: the current Unix time (default: the clock).

    Returns:
        ``True`` if the session was open and is now completed; ``False`` if it was no longer
        open (aborted meanwhile): then nothing changed and the result must not be released.
    """
    _require_transaction(db.conn, "complete_session")
    changed = db.conn.execute(
        "UPDATE match_sessions SET state = 'completed', finished_at = ?, epsilon_charged = ?, "
        "noise_applied = ?, result_count = ?, reported_as = ?, audience_id = ? "
        "WHERE id = ? AND state = 'open'",
        (
            unix_now() if now is None else now,
            float(epsilon_charged),
            int(noise_applied),
            result_count,
            reported_as,
            audience_id,
            row_id,
        ),
    ).rowcount
    return changed == 1


def abort_session(db: Database, row_id: int, reason: str, *, now: int | None = None) -> bool:
    """Mark an open session aborted: nothing is charged and nothing stored.

    Args:
        db: the platform database, inside a write transaction.
        row_id: the session's ledger id.
        reason: why it was aborted.
        now: the current Unix time (default: the clock).

    Returns:
        ``True`` if the session was open and is now aborted; ``False`` if it had already
        completed or been aborted (then nothing changed, and nothing should be audited).
    """
    _require_transaction(db.conn, "abort_session")
    changed = db.conn.execute(
        "UPDATE match_sessions SET state = 'aborted', finished_at = ?, reason = ? "
        "WHERE id = ? AND state = 'open'",
        (unix_now() if now is None else now, reason, row_id),
    ).rowcount
    return changed == 1


# -- audiences, as the sessions produced them ----------------------------------------------------


_SUMMARIES = (
    "SELECT a.id, a.session_id, a.advertiser, a.created_at, "
    "(SELECT COUNT(*) FROM readable_audience_members AS m WHERE m.audience_id = a.id) "
    "FROM audiences AS a"
)


def audience_summaries(db: Database) -> list[AudienceSummary]:
    """Every stored audience, oldest first, each sized by its members eligible now."""
    rows = db.conn.execute(f"{_SUMMARIES} ORDER BY a.id").fetchall()
    return [AudienceSummary(int(r[0]), str(r[1]), str(r[2]), int(r[4]), int(r[3])) for r in rows]


def audience_summary(db: Database, audience_id: int) -> tuple[AudienceSummary, list[str]] | None:
    """One stored audience and its members eligible now (external ids, sorted), or ``None``.

    The size is the number of members listed: both come from one read.
    """
    conn = db.conn
    conn.execute("BEGIN")
    try:
        row = conn.execute(
            "SELECT id, session_id, advertiser, created_at FROM audiences WHERE id = ?",
            (audience_id,),
        ).fetchone()
        members = [] if row is None else audience_members(db, audience_id)
    finally:
        conn.execute("COMMIT")
    if row is None:
        return None
    summary = AudienceSummary(int(row[0]), str(row[1]), str(row[2]), len(members), int(row[3]))
    return summary, members
