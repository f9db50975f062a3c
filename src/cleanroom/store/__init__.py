"""The platform's data: users, identifiers, consent, key epochs, audiences and the audit log.

One SQLite file in WAL mode (see :mod:`~cleanroom.store.database` for the files beside it)::

    db, created = init_database(path)            # or: db = open_database(path)
    import_platform_csv(db, "users.csv")         # streaming, idempotent, chunked
    revoke(db, "user-17")                        # effective for the next match at once
    rotate(db)                                   # new key epoch, V precomputed
    epoch = matchable_epoch(db)                  # V restricted to identifiers eligible now
    audit.append(db, "match.completed", {...})  # inside the session's transaction
    sessions.spent_epsilon(db, "acme", epoch.epoch.epoch_id)  # the match-session ledger

Eligibility (DESIGN §6) is defined once, in :mod:`~cleanroom.store.eligibility`.
"""

from __future__ import annotations

from cleanroom.store import audit, sessions
from cleanroom.store.audiences import (
    AudienceSweep,
    StoredAudience,
    audience_members,
    store_audience,
    sweep_audiences,
)
from cleanroom.store.consent import grant, import_consent_csv, revoke, set_opt_out
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.eligibility import (
    DEFAULT_PERMITTED_SOURCES,
    EXCLUSION_REASONS,
    NEVER_PERMITTED_SOURCES,
    eligible_identifier_ids,
)
from cleanroom.store.epochs import (
    EpochInfo,
    MatchableEpoch,
    current_epoch,
    epoch_key,
    matchable_epoch,
    refresh,
    rotate,
)
from cleanroom.store.importer import ImportReport, import_platform_csv
from cleanroom.store.sources import SourceInfo, deny_sources, list_sources, permit_sources
from cleanroom.store.status import PlatformStatus, platform_status
from cleanroom.store.users import delete_user

__all__ = [
    "DEFAULT_PERMITTED_SOURCES",
    "EXCLUSION_REASONS",
    "NEVER_PERMITTED_SOURCES",
    "AudienceSweep",
    "Database",
    "EpochInfo",
    "ImportReport",
    "MatchableEpoch",
    "PlatformStatus",
    "SourceInfo",
    "StoredAudience",
    "audience_members",
    "audit",
    "current_epoch",
    "delete_user",
    "deny_sources",
    "eligible_identifier_ids",
    "epoch_key",
    "grant",
    "import_consent_csv",
    "import_platform_csv",
    "init_database",
    "list_sources",
    "matchable_epoch",
    "open_database",
    "permit_sources",
    "platform_status",
    "refresh",
    "revoke",
    "rotate",
    "sessions",
    "set_opt_out",
    "store_audience",
    "sweep_audiences",
    "transaction",
]
