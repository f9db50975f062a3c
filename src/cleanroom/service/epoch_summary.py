"""What GetPolicy announces of the current epoch (its id, suite and N), cached for every caller.

N is the size of the epoch's set filtered by eligibility now, which takes a pass over every
eligible identifier to compute: work that grows with N, too much to do for every GetPolicy call
of every advertiser. The summary is computed once and kept while it is fresh:

- the current epoch is the same one, at the same generation (no rotation or refresh since);
- no audit entry since its computation may have changed eligibility
  (:func:`cleanroom.store.changes.eligibility_changed_since`): every consent change, opt-out,
  deletion and import is audited in its own transaction, whichever process makes it;
- it is at most ``max_age`` seconds old: consents that expire, or start, by the clock alone
  change N without any write, and an import writes its rows between its two audit entries.

Each check reads two rows (the current epoch and the audit log's head), so an answer from the
cache costs O(1) whatever N is; a rebuild happens once, whoever asks meanwhile waits for it. A
match session computes the same set exactly when it opens (consent must hold at every session:
see :mod:`cleanroom.store.matchable_cache`) and hands its size to the cache, so the next
GetPolicy says what the last session saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cleanroom.store.changes import audit_head, eligibility_changed_since
from cleanroom.store.database import Database
from cleanroom.store.epochs import (
    EpochInfo,
    MatchableEpoch,
    matchable_epoch,
    require_current_epoch,
)

__all__ = ["DEFAULT_MAX_AGE", "EpochSummary", "EpochSummaryCache"]

DEFAULT_MAX_AGE: Final = 60.0
"""Seconds a summary is kept at most, for changes that no audit entry announces."""


@dataclass(frozen=True)
class EpochSummary:
    """The current epoch as GetPolicy announces it.

    Attributes:
        epoch_id: the current key epoch.
        suite_id: its suite.
        platform_set_size: N, identifiers of the epoch eligible now.
    """

    epoch_id: int
    suite_id: str
    platform_set_size: int


@dataclass(frozen=True)
class _Entry:
    summary: EpochSummary
    generation: int
    audit_seq: int  # the audit log's head when the summary was computed (or last rechecked)
    computed_at: float


class EpochSummaryCache:
    """The summary of the current epoch, computed when it may have changed. Thread-safe.

    Args:
        max_age: seconds a summary is kept at most.
        clock: seconds, monotonic; for tests.
        compute: the matchable set of the current epoch (a :class:`MatchableCache`'s ``get``
            shares the sessions' computation).
    """

    def __init__(
        self,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        compute: Callable[[Database], MatchableEpoch] = matchable_epoch,
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._compute = compute
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._entry: _Entry | None = None
        self.computations = 0
        """How many times the summary was computed (for tests and metrics)."""

    def get(self, db: Database) -> EpochSummary:
        """The current epoch's summary, from the cache while it is fresh.

        Raises:
            StoreError: there is no current epoch, or its files are unusable.
        """
        epoch = require_current_epoch(db)
        head = audit_head(db.conn)
        fresh = self._fresh(db, epoch, head)
        if fresh is not None:
            return fresh
        with self._compute_lock:  # one computation at a time; the others then find it fresh
            fresh = self._fresh(db, epoch, head)
            if fresh is not None:
                return fresh
            matchable = self._compute(db)
            self.computations += 1
            # Labelled with the head read before computing: a change that lands meanwhile makes
            # the next call compute again, never hides behind this entry.
            self.offer(matchable.epoch, head, len(matchable.user_rows))
            return self._summary_of(matchable.epoch, len(matchable.user_rows))

    def offer(self, epoch: EpochInfo, audit_seq: int, platform_set_size: int) -> None:
        """Keep a size computed elsewhere (a session's opening) for ``epoch`` as of ``audit_seq``.

        ``audit_seq`` must have been read before the set was computed.
        """
        entry = _Entry(
            self._summary_of(epoch, platform_set_size), epoch.generation, audit_seq, self._clock()
        )
        with self._lock:
            self._entry = entry

    def _fresh(self, db: Database, epoch: EpochInfo, head: int) -> EpochSummary | None:
        with self._lock:
            entry = self._entry
        if entry is None:
            return None
        if (entry.summary.epoch_id, entry.generation) != (epoch.epoch_id, epoch.generation):
            return None
        if self._clock() - entry.computed_at > self._max_age:
            return None
        if head != entry.audit_seq:
            if eligibility_changed_since(db.conn, entry.audit_seq):
                return None
            # Only sessions or certificates since: still fresh, and checked up to ``head``.
            with self._lock:
                if self._entry is entry:
                    self._entry = _Entry(entry.summary, entry.generation, head, entry.computed_at)
        return entry.summary

    @staticmethod
    def _summary_of(epoch: EpochInfo, size: int) -> EpochSummary:
        return EpochSummary(epoch.epoch_id, epoch.suite_id, size)
