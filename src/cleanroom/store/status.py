"""A summary of the platform's data: users, identifiers, eligibility and the current epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cleanroom.store.database import Database
from cleanroom.store.eligibility import EXCLUSION_REASONS
from cleanroom.store.epochs import EpochInfo, current_epoch
from cleanroom.store.fields import format_timestamp

__all__ = ["PlatformStatus", "platform_status"]


@dataclass(frozen=True)
class PlatformStatus:
    """Counts as of now.

    Attributes:
        users: users not deleted.
        identifiers: identifier rows (eligible plus excluded).
        eligible_identifiers: identifiers that would take part in a match now.
        excluded: identifiers not eligible, by the first reason that applies
            (:data:`~cleanroom.store.eligibility.EXCLUSION_REASONS`; every reason present).
        epoch: the current key epoch, or ``None``.
    """

    users: int
    identifiers: int
    eligible_identifiers: int
    excluded: dict[str, int]
    epoch: EpochInfo | None

    def to_dict(self) -> dict[str, Any]:
        """The status as the JSON object ``cleanroom platform status --json`` prints."""
        epoch = None
        if self.epoch is not None:
            epoch = {
                "id": self.epoch.epoch_id,
                "size": self.epoch.size,
                "created_at": format_timestamp(self.epoch.created_at),
            }
        return {
            "users": self.users,
            "identifiers": self.identifiers,
            "eligible_identifiers": self.eligible_identifiers,
            "excluded": dict(self.excluded),
            "epoch": epoch,
        }


def platform_status(db: Database) -> PlatformStatus:
    """Count users, identifiers and exclusions from one consistent read.

    Eligibility comes from the same view matching uses, so the counts are what a match sees.
    """
    conn = db.conn
    conn.execute("BEGIN")
    try:
        users = int(
            conn.execute("SELECT COUNT(*) FROM users WHERE deleted_at IS NULL").fetchone()[0]
        )
        by_reason = dict(
            conn.execute(
                "SELECT excluded_reason, COUNT(*) FROM identifier_eligibility "
                "GROUP BY excluded_reason"
            ).fetchall()
        )
        epoch = current_epoch(db)
    finally:
        conn.execute("COMMIT")
    eligible = int(by_reason.pop(None, 0))
    excluded = {reason: int(by_reason.get(reason, 0)) for reason in EXCLUSION_REASONS}
    return PlatformStatus(
        users=users,
        identifiers=eligible + sum(excluded.values()),
        eligible_identifiers=eligible,
        excluded=excluded,
        epoch=epoch,
    )
