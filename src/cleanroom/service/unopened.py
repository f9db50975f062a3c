"""Streams that never opened a session, in the ledger and the audit log without flooding them.

A ``Match`` stream that ends before its opening message (its deadline passed, or the client
closed or cancelled it) asked for nothing and cost the platform nothing but a thread for a few
seconds; a client can make such streams as fast as it can connect. Each one is counted, and an
advertiser's are written as ONE aborted ledger row and ONE ``match.aborted`` audit entry per
interval: the first at once, the rest when the interval since the last write has passed (by a
timer, or at :meth:`UnopenedStreams.flush` when the server stops). However fast the streams
come, an advertiser adds at most one row per interval, and none is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from cleanroom.store import audit, sessions
from cleanroom.store.database import Database, transaction, unix_now

__all__ = ["UnopenedStreams"]

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    reasons: Counter[str] = field(default_factory=Counter)
    first_at: int | None = None  # Unix seconds of the first stream not yet written
    written_at: float = float("-inf")  # monotonic seconds of the last write
    timer: threading.Timer | None = None


class UnopenedStreams:
    """Counts streams that ended unopened and writes them in bulk. Thread-safe.

    Args:
        connect: a fresh database connection, as a context manager.
        interval: seconds between two writes for one advertiser (0: one write per stream).
        clock: seconds, monotonic; for tests.
        now: Unix seconds, for the ledger; for tests.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[Database]],
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], int] = unix_now,
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._stopped = False

    def note(self, advertiser: str, how: str) -> None:
        """Count one stream of ``advertiser`` that ended unopened; ``how`` says how it ended."""
        with self._lock:
            pending = self._pending.setdefault(advertiser, _Pending())
            pending.reasons[how] += 1
            if pending.first_at is None:
                pending.first_at = self._now()
            wait = pending.written_at + self._interval - self._clock()
            if wait <= 0 or self._stopped:
                # Taken in the same lock that found it due: a stream ending a moment later
                # waits for the next write instead of joining this one.
                reasons, first_at = self._take(pending)
            else:
                reasons, first_at = Counter(), None
                if pending.timer is None:
                    pending.timer = threading.Timer(wait, self._write, args=(advertiser,))
                    pending.timer.daemon = True
                    pending.timer.start()
        self._record(advertiser, reasons, first_at)

    def flush(self) -> None:
        """Write everything counted and not yet written (the server is stopping)."""
        with self._lock:
            self._stopped = True
            advertisers = list(self._pending)
        for advertiser in advertisers:
            self._write(advertiser)

    def _write(self, advertiser: str) -> None:
        with self._lock:
            reasons, first_at = self._take(self._pending[advertiser])
        self._record(advertiser, reasons, first_at)

    def _take(self, pending: _Pending) -> tuple[Counter[str], int | None]:
        """What ``pending`` counted, now marked written (under the lock)."""
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        reasons, first_at = pending.reasons, pending.first_at
        pending.reasons, pending.first_at = Counter(), None
        pending.written_at = self._clock()
        return reasons, first_at

    def _record(self, advertiser: str, reasons: Counter[str], first_at: int | None) -> None:
        if not reasons or first_at is None:
            return
        streams = sum(reasons.values())
        reason = "; ".join(
            f"{count} stream{'s' if count > 1 else ''} {how}"
            for how, count in sorted(reasons.items())
        )
        try:
            with self._connect() as db, transaction(db.conn):
                ledger_id = sessions.record_unopened_streams(
                    db, advertiser=advertiser, reason=reason, started_at=first_at, now=self._now()
                )
                audit.append(
                    db,
                    "match.aborted",
                    {
                        "ledger_id": ledger_id,
                        "session": None,
                        "advertiser": advertiser,
                        "mode": None,
                        "epoch": None,
                        "streams": streams,
                        "reason": reason,
                    },
                )
        except Exception:
            # Never on the caller's path to the client: the count is logged instead.
            logger.exception("could not record %d unopened streams of %s", streams, advertiser)
            return
        logger.info("streams of %s that never opened a session: %s", advertiser, reason)
