"""The current epoch's matchable set, kept between sessions while it provably has not changed.

Every match session streams V: the epoch's elements restricted to the identifiers eligible now
(:func:`~cleanroom.store.epochs.matchable_epoch`), a pass over every identifier of the database.
Sessions of many advertisers against one epoch would repeat that pass while nothing deciding
eligibility changed. :class:`MatchableCache` hands a session the set computed earlier only when
computing it again would give exactly the same set:

- the current epoch is the same one, at the same generation (no rotation or refresh since);
- no audit entry since the computation may have changed eligibility
  (:func:`~cleanroom.store.changes.eligibility_changed_since`): every change to identifiers,
  consent, opt-outs, deletions and sources is audited in the transaction that makes it,
  whichever process makes it;
- no bulk import was running when it was computed
  (:func:`~cleanroom.store.changes.bulk_import_running`): an import commits its chunks before it
  reports, so until then the log does not announce all it wrote; while one runs, nothing is kept;
- the clock has not passed the *horizon*, the first moment after the computation at which a
  consent expires or starts by the clock alone, without any write; nor gone back before the
  computation ended.

Otherwise the set is computed afresh. The kept arrays are read-only, so no session can change
what the next one is handed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

import numpy as np

from cleanroom.store.changes import audit_head, bulk_import_running, eligibility_changed_since
from cleanroom.store.database import Database
from cleanroom.store.epochs import MatchableEpoch, matchable_epoch, require_current_epoch

__all__ = ["MatchableCache", "consent_horizon"]

# The next moment, after ?, at which a consent expires or starts: MIN ignores NULLs, and a
# consent ending or starting at a time counts from that time on (see the eligibility view).
_HORIZON: Final = (
    "SELECT MIN(CASE WHEN expires_at > ?1 THEN expires_at END), "
    "MIN(CASE WHEN consent_at > ?1 THEN consent_at END) FROM identifiers"
)


def consent_horizon(db: Database, after: int) -> float:
    """The first time after ``after`` (Unix seconds) at which eligibility changes by the clock.

    Returns:
        That time, or infinity when no consent expires or starts after ``after``.
    """
    times = [t for t in db.conn.execute(_HORIZON, (after,)).fetchone() if t is not None]
    return float(min(times)) if times else float("inf")


@dataclass(frozen=True)
class _Entry:
    matchable: MatchableEpoch
    generation: int
    audit_seq: int  # the audit log's head read before the set was computed (or last rechecked)
    valid_from: int  # the clock when the computation ended
    horizon: float


class MatchableCache:
    """The current epoch's matchable set, computed again only when it may differ. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._entry: _Entry | None = None
        self.computations = 0
        """How many times the set was computed (for tests and metrics)."""

    def get(self, db: Database) -> MatchableEpoch:
        """What :func:`~cleanroom.store.epochs.matchable_epoch` would return now.

        Raises:
            StoreError: there is no current epoch, or its files are missing.
        """
        fresh = self._fresh(db)
        if fresh is not None:
            return fresh
        with self._compute_lock:  # one computation at a time; the others then find it fresh
            fresh = self._fresh(db)
            if fresh is not None:
                return fresh
            # Read before computing: a change that lands meanwhile makes the next call compute
            # again, never hides behind this entry.
            head = audit_head(db.conn)
            importing = bulk_import_running(db.conn)
            started = int(db.clock())
            matchable = matchable_epoch(db)
            self.computations += 1
            if importing:
                with self._lock:
                    self._entry = None
                return matchable
            horizon = consent_horizon(db, started)
            _freeze(matchable)
            entry = _Entry(matchable, matchable.epoch.generation, head, int(db.clock()), horizon)
            with self._lock:
                self._entry = entry
            return matchable

    def _fresh(self, db: Database) -> MatchableEpoch | None:
        with self._lock:
            entry = self._entry
        if entry is None:
            return None
        epoch = require_current_epoch(db)
        kept = entry.matchable.epoch
        if (kept.epoch_id, entry.generation) != (epoch.epoch_id, epoch.generation):
            return None
        if not entry.valid_from <= db.clock() < entry.horizon:
            return None
        head = audit_head(db.conn)
        if head != entry.audit_seq:
            if eligibility_changed_since(db.conn, entry.audit_seq):
                return None
            # Only sessions or certificates since: still fresh, and checked up to ``head``.
            with self._lock:
                if self._entry is entry:
                    self._entry = _Entry(
                        entry.matchable, entry.generation, head, entry.valid_from, entry.horizon
                    )
        return entry.matchable


def _freeze(matchable: MatchableEpoch) -> None:
    """Make every array of ``matchable`` read-only: it is shared by the sessions that follow."""
    arrays = (
        matchable.elements,
        matchable.user_rows,
        *matchable.other_owners,
        matchable.identifier_ids,
        matchable.other_identifiers,
    )
    for array in arrays:
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
