"""What the dashboard and the metrics show, read from the platform database and cached briefly.

Every figure comes from the database (status, the session ledger, audiences, the audit log,
eligibility samples), so it is right across server restarts and for changes other processes
make (a consent revoked with the CLI, an import, a rotation). Reading costs time in proportion
to the identifiers (the eligibility counts) and the audit log (its verification), so a
:class:`SnapshotSource` keeps the last snapshot and reads again only when the database changed
(SQLite's ``data_version``) and the snapshot is at least ``min_age`` seconds old, or when it is
older than ``max_age`` (eligibility also changes with time alone: consents expire).

Nothing here holds an identifier, a user id or a member of an audience: counts, names of
advertisers, and audit entries reduced to their non-personal facts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cleanroom.errors import CleanroomError
from cleanroom.policy import Policy
from cleanroom.store import audit, sessions
from cleanroom.store.database import Database, open_database
from cleanroom.store.history import EligibilitySample, eligibility_samples
from cleanroom.store.ledger_summary import LedgerSummary, ledger_summary
from cleanroom.store.status import PlatformStatus, platform_status

__all__ = [
    "AdvertiserView",
    "AuditLine",
    "AuditView",
    "OperatorSnapshot",
    "SnapshotSource",
    "read_snapshot",
]

HISTORY_SECONDS: Final = 30 * 86_400
"""How far back the eligibility chart goes."""

_HISTORY_POINTS: Final = 120
_AUDIT_LINES: Final = 8

# Facts of an audit entry that may be shown: counts and names of advertisers, epochs, modes.
# Entries also hold user ids (consent changes) and file paths, which stay out.
_AUDIT_FACTS: Final = (
    "advertiser",
    "mode",
    "epoch",
    "suite",
    "size",
    "added",
    "retired",
    "rows",
    "users_added",
    "updated",
    "identifiers",
    "audiences_left",
    "reported_as",
    "epsilon_charged",
    "error",
    "valid_days",
)


@dataclass(frozen=True)
class AdvertiserView:
    """One advertiser as the privacy officer sees it.

    Attributes:
        name: the advertiser's name (from its certificate).
        sessions: its sessions by state.
        last_session_at: when its latest session was asked for (Unix seconds), if ever.
        epsilon_spent: ε charged in the current key epoch.
        epsilon_budget: its budget per key epoch, from the policy.
        audiences: audiences stored for it.
        audience_members: their sizes added up.
    """

    name: str
    sessions: dict[str, int]
    last_session_at: int | None
    epsilon_spent: float
    epsilon_budget: float
    audiences: int
    audience_members: int

    @property
    def epsilon_remaining(self) -> float:
        """What is left of the budget in the current epoch (never below 0)."""
        return max(0.0, self.epsilon_budget - self.epsilon_spent)

    @property
    def total_sessions(self) -> int:
        """Sessions in any state."""
        return sum(self.sessions.values())


@dataclass(frozen=True)
class AuditLine:
    """An audit entry reduced to what may be shown: no user id, no path, no identifier."""

    seq: int
    at: str
    action: str
    facts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AuditView:
    """The audit chain's state.

    The check is the store's own (:func:`cleanroom.store.audit.verify`, as ``platform audit
    verify`` runs it): the hash chain, every entry's signature by the audit key, and the
    session ledger against the signed entries.

    Attributes:
        verified: whether all of it verified.
        entries: entries checked (``None`` when verification failed).
        problem: what verification found, when it failed.
        last: the newest entries, newest first.
        last_signed_at: when the newest signed entry was written (ISO 8601 UTC).
        key_id: the audit key the signatures were checked with.
        sessions_checked: finished sessions found to agree with the ledger.
    """

    verified: bool
    entries: int | None
    problem: str | None
    last: list[AuditLine]
    last_signed_at: str | None = None
    key_id: str | None = None
    sessions_checked: int | None = None


@dataclass(frozen=True)
class OperatorSnapshot:
    """Everything the dashboard and the metrics show, as of ``taken_at``."""

    taken_at: float
    status: PlatformStatus
    ledger: LedgerSummary
    advertisers: list[AdvertiserView]
    audiences: list[sessions.AudienceSummary]
    audit: AuditView
    history: list[EligibilitySample]


def read_snapshot(db: Database, policy: Policy, *, now: float) -> OperatorSnapshot:
    """Read a snapshot from ``db``; budgets come from ``policy``."""
    status = platform_status(db)
    ledger = ledger_summary(db)
    audiences = sessions.audience_summaries(db)
    epoch_id = None if status.epoch is None else status.epoch.epoch_id
    names = sorted(set(ledger.advertisers) | set(policy.advertisers))
    advertisers = []
    for name in names:
        activity = ledger.advertisers.get(name)
        theirs = [a for a in audiences if a.advertiser == name]
        advertisers.append(
            AdvertiserView(
                name=name,
                sessions={} if activity is None else dict(activity.by_state),
                last_session_at=None if activity is None else activity.last_started_at,
                epsilon_spent=(
                    0.0
                    if activity is None or epoch_id is None
                    else activity.spent_by_epoch.get(epoch_id, 0.0)
                ),
                epsilon_budget=policy.for_advertiser(name).epsilon_budget,
                audiences=len(theirs),
                audience_members=sum(a.size for a in theirs),
            )
        )
    history = eligibility_samples(db, since=int(now) - HISTORY_SECONDS, points=_HISTORY_POINTS)
    return OperatorSnapshot(
        taken_at=now,
        status=status,
        ledger=ledger,
        advertisers=advertisers,
        audiences=audiences,
        audit=_audit_view(db),
        history=history,
    )


def _audit_view(db: Database) -> AuditView:
    checked: audit.AuditVerification | None
    try:
        checked, problem = audit.verify(db), None
    except CleanroomError as exc:
        checked, problem = None, str(exc)
    try:
        newest = list(audit.entries(db.conn, limit=_AUDIT_LINES))
    except CleanroomError:
        newest = []
    lines = [
        AuditLine(entry.seq, entry.at, entry.action, _facts(entry.details))
        for entry in reversed(newest)
    ]
    return AuditView(
        verified=checked is not None,
        entries=None if checked is None else checked.entries,
        problem=problem,
        last=lines,
        last_signed_at=None if checked is None else checked.last_at,
        key_id=None if checked is None else checked.key_id,
        sessions_checked=None if checked is None else checked.sessions,
    )


def _facts(details: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    facts = []
    for key in _AUDIT_FACTS:
        value = details.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float) or (isinstance(value, str) and len(value) <= 64):
            facts.append((key, f"{value:g}" if isinstance(value, float) else str(value)))
    return tuple(facts)


class SnapshotSource:
    """The latest snapshot of one platform database, read again only when it may have changed.

    Safe to use from several threads: one reads while the others wait for its result.

    Args:
        db_path: the platform database.
        policy: the platform's policy (budgets).
        min_age: seconds a snapshot is kept even though the database changed.
        max_age: seconds after which a snapshot is read again even though nothing was written.
        clock: the current Unix time, for tests.
    """

    def __init__(
        self,
        db_path: Path,
        policy: Policy,
        *,
        min_age: float = 2.0,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db_path = Path(db_path)
        self._policy = policy
        self._min_age = min_age
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._snapshot: OperatorSnapshot | None = None
        self._data_version: int | None = None

    def get(self) -> OperatorSnapshot:
        """The current snapshot (read now if the cached one may be stale).

        Raises:
            CleanroomError: the database cannot be opened or read.
        """
        with self._lock:
            now = self._clock()
            if self._db is None:
                self._db = open_database(self._db_path)
            version = int(self._db.conn.execute("PRAGMA data_version").fetchone()[0])
            cached = self._snapshot
            if cached is not None:
                age = now - cached.taken_at
                unchanged = version == self._data_version
                if age < self._min_age or (unchanged and age < self._max_age):
                    return cached
            self._snapshot = read_snapshot(self._db, self._policy, now=now)
            self._data_version = version
            return self._snapshot

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
