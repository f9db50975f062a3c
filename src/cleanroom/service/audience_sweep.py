"""The server's periodic audience sweep: deleting memberships that no read shows any more.

Reads of stored audiences filter by eligibility now, so an expired consent is never shown, swept
or not (:mod:`cleanroom.store.audiences`). The sweep keeps the tables to what reads show: every
``interval`` seconds it deletes the memberships whose identifiers are no longer eligible (expiry,
a denied source) and audits how many (``audience.sweep``, when it removed any). A failed sweep is
logged and tried again at the next tick; it never stops the server.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

from cleanroom.errors import CleanroomError
from cleanroom.store.audiences import AudienceSweep, sweep_audiences
from cleanroom.store.database import open_database

__all__ = ["DEFAULT_SWEEP_INTERVAL", "AudienceSweeper"]

logger = logging.getLogger(__name__)

DEFAULT_SWEEP_INTERVAL: Final = 60.0
"""Seconds between two sweeps of ``platform serve``."""


class AudienceSweeper:
    """Sweeps a platform database's audiences on a thread of its own until stopped.

    Args:
        db_path: the platform database.
        interval: seconds between sweeps (the first runs when started).
    """

    def __init__(self, db_path: Path, interval: float = DEFAULT_SWEEP_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError("the sweep interval must be positive")
        self._db_path = Path(db_path)
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> AudienceSweep:
        """Sweep now, on the calling thread."""
        with open_database(self._db_path) as db:
            sweep = sweep_audiences(db)
        if sweep.memberships_removed:
            logger.info(
                "audience sweep: removed %d memberships that lost eligibility, from %d audiences",
                sweep.memberships_removed,
                sweep.audiences,
            )
        return sweep

    def start(self) -> None:
        """Start sweeping every ``interval`` seconds."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="audience-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, waiting up to ``timeout`` seconds for a sweep under way."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep_once()
            except CleanroomError as exc:
                logger.warning("audience sweep failed (retried in %g s): %s", self._interval, exc)
            except Exception:
                logger.exception("audience sweep failed (retried in %g s)", self._interval)
            self._stopping.wait(self._interval)
