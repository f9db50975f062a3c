"""The platform database's schema: tables, triggers, identity and migrations.

The file identifies itself with ``PRAGMA application_id`` (so a random SQLite file is never
mistaken for ours) and records its schema version in ``PRAGMA user_version``. Tables hold
only facts; the eligibility rules are a view created per connection by
:mod:`cleanroom.store.eligibility`, so changing a rule never needs a migration.

Timestamps are integer Unix seconds (UTC): they compare correctly in SQL, whatever the format of
the file they came from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from cleanroom.errors import NotOurDatabase
from cleanroom.store.eligibility import (
    DEFAULT_PERMITTED_SOURCES,
    NEVER_PERMITTED_SOURCES,
    sql_list,
)

__all__ = [
    "APPLICATION_ID",
    "CONSENT_STATES",
    "SCHEMA_VERSION",
    "check_identity",
    "create_schema",
    "migrate",
]

#: ``PRAGMA application_id`` of a cleanroom platform database: ASCII "CLRM".
APPLICATION_ID = 0x434C524D

#: The schema version this build writes (``PRAGMA user_version``).
SCHEMA_VERSION = 4

#: Stored states of an identifier's ads-matching consent.
CONSENT_STATES: tuple[str, ...] = ("granted", "denied", "revoked")

_SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- external_id is the platform's own user id; id is the internal key every other table uses.
-- A deleted user stays as a tombstone (deleted_at) so that re-importing an old export cannot
-- bring the user back; the user's identifier values are erased.
CREATE TABLE users (
    id                      INTEGER PRIMARY KEY,
    external_id             TEXT NOT NULL UNIQUE,
    created_at              INTEGER NOT NULL,
    sale_opt_out_at         INTEGER,
    targeted_ads_opt_out_at INTEGER,
    deleted_at              INTEGER
) STRICT;

-- One row per (identifier, source): the same phone number given for two-factor login and in a
-- profile are two rows, each with its own consent, so security-collected data never inherits a
-- marketing consent. value is the normalized value, NULL once the user is deleted.
CREATE TABLE identifiers (
    id         INTEGER PRIMARY KEY,
    user_row   INTEGER NOT NULL REFERENCES users(id),
    type       TEXT NOT NULL,
    value      TEXT,
    source     TEXT NOT NULL,
    consent    TEXT NOT NULL,  -- one of CONSENT_STATES (no CHECK: it costs imports ~20%)
    consent_at INTEGER,
    expires_at INTEGER,
    UNIQUE (type, value, user_row, source)
) STRICT;
CREATE INDEX identifiers_by_user ON identifiers (user_row);

CREATE TABLE key_epochs (
    id           INTEGER PRIMARY KEY,
    suite_id     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('current', 'retired')),
    created_at   INTEGER NOT NULL,
    refreshed_at INTEGER,
    retired_at   INTEGER,
    generation   INTEGER NOT NULL DEFAULT 0,
    size         INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX one_current_epoch ON key_epochs (state) WHERE state = 'current';

CREATE TABLE audiences (
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    advertiser TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    size       INTEGER NOT NULL
) STRICT;

-- user_id is users.id (the internal key the epoch's index -> user map holds).
CREATE TABLE audience_members (
    audience_id INTEGER NOT NULL REFERENCES audiences(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (audience_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX audience_members_by_user ON audience_members (user_id);

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    action    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

-- Losing consent, opting out or being deleted removes a user from every stored audience, in
-- the same transaction as the change, whichever code path made it.
CREATE TRIGGER consent_loss_leaves_audiences
AFTER UPDATE OF consent ON identifiers
WHEN OLD.consent = 'granted' AND NEW.consent != 'granted'
BEGIN
    DELETE FROM audience_members WHERE user_id = NEW.user_row;
END;

CREATE TRIGGER opt_out_leaves_audiences
AFTER UPDATE OF sale_opt_out_at, targeted_ads_opt_out_at ON users
WHEN NEW.sale_opt_out_at IS NOT NULL OR NEW.targeted_ads_opt_out_at IS NOT NULL
BEGIN
    DELETE FROM audience_members WHERE user_id = NEW.id;
END;

CREATE TRIGGER deletion_leaves_audiences
AFTER UPDATE OF deleted_at ON users
WHEN NEW.deleted_at IS NOT NULL
BEGIN
    DELETE FROM audience_members WHERE user_id = NEW.id;
END;

CREATE TRIGGER audience_size_follows_members
AFTER DELETE ON audience_members
BEGIN
    UPDATE audiences SET size = size - 1 WHERE id = OLD.audience_id;
END;

-- The chain detects tampering; these triggers stop accidents.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
"""

# Version 2: the ledger of match sessions (cleanroom.store.sessions). At most one open session
# per advertiser, enforced here so that it holds whichever process opens the session.
_SESSIONS_V2 = """
CREATE TABLE match_sessions (
    id               INTEGER PRIMARY KEY,
    session_id       TEXT UNIQUE,   -- the protocol's session id (hex); NULL if refused before
    advertiser       TEXT NOT NULL,
    mode             TEXT,          -- NULL if the opening message could not be read
    suite_id         TEXT,
    epoch_id         INTEGER,
    state            TEXT NOT NULL
                     CHECK (state IN ('open', 'completed', 'refused', 'aborted')),
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    record_count     INTEGER,
    identifier_count INTEGER,
    epsilon_charged  REAL NOT NULL DEFAULT 0,
    noise_applied    INTEGER,
    result_count     INTEGER,
    reported_as      TEXT,
    audience_id      INTEGER,
    reason           TEXT
) STRICT;
CREATE INDEX match_sessions_by_advertiser ON match_sessions (advertiser, started_at);
CREATE UNIQUE INDEX one_open_session_per_advertiser ON match_sessions (advertiser)
    WHERE state = 'open';
"""

# Version 3: how many identifiers were eligible over time (cleanroom.store.history), sampled
# by the server; excluded holds the counts by reason as a JSON object.
_ELIGIBILITY_HISTORY_V3 = """
CREATE TABLE eligibility_samples (
    at       INTEGER PRIMARY KEY,
    eligible INTEGER NOT NULL,
    excluded TEXT NOT NULL
) STRICT;
"""
# Version 4: consent for the life of the data, and a log that a database writer cannot rewrite.
#
# - sources: the platform's own source names; only a registered, permitted source is eligible.
#   The never-permitted four are registered denied, and no statement can permit them.
# - audit_log.signature: each entry's Ed25519 signature (cleanroom.store.audit); entries
#   written before this version are covered by the signed migration entry that follows them.
#   INSERT OR REPLACE, REPLACE and UPSERT go through BEFORE INSERT, so requiring the next
#   sequence number closes them (a REPLACE deletes without firing delete triggers).
# - audience_member_identifiers: which identifiers each member matched through; a member is
#   readable only while one of them is eligible (cleanroom.store.audiences). Members stored
#   before this version matched through any of their identifiers. The stored size goes: it is
#   counted from the readable members, so it cannot disagree with them.
_NOW_SQL = "CAST(strftime('%s', 'now') AS INTEGER)"
_NEVER = sql_list(NEVER_PERMITTED_SOURCES)
_DEFAULT_SOURCES = ", ".join(
    [f"('{name}', 1, {_NOW_SQL})" for name in sorted(DEFAULT_PERMITTED_SOURCES)]
    + [f"('{name}', 0, {_NOW_SQL})" for name in sorted(NEVER_PERMITTED_SOURCES)]
)
_LIFE_OF_THE_DATA_V4 = f"""
CREATE TABLE sources (
    name       TEXT PRIMARY KEY,
    permitted  INTEGER NOT NULL CHECK (permitted IN (0, 1)),
    changed_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER never_permitted_sources_stay_denied BEFORE INSERT ON sources
WHEN NEW.permitted != 0 AND NEW.name IN ({_NEVER})
BEGIN
    SELECT RAISE(ABORT, 'two_factor, recovery, security and contact_upload can never be permitted');
END;

CREATE TRIGGER never_permitted_sources_stay_denied_on_update BEFORE UPDATE ON sources
WHEN NEW.permitted != 0 AND NEW.name IN ({_NEVER})
BEGIN
    SELECT RAISE(ABORT, 'two_factor, recovery, security and contact_upload can never be permitted');
END;

INSERT INTO sources (name, permitted, changed_at) VALUES {_DEFAULT_SOURCES};

ALTER TABLE audit_log ADD COLUMN signature TEXT;

CREATE TRIGGER audit_log_append_only BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: an entry takes the next sequence number');
END;

CREATE TABLE audience_member_identifiers (
    audience_id   INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    identifier_id INTEGER NOT NULL REFERENCES identifiers(id),
    PRIMARY KEY (audience_id, user_id, identifier_id),
    FOREIGN KEY (audience_id, user_id)
        REFERENCES audience_members (audience_id, user_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX audience_member_identifiers_by_identifier
    ON audience_member_identifiers (identifier_id);

INSERT INTO audience_member_identifiers (audience_id, user_id, identifier_id)
SELECT m.audience_id, m.user_id, i.id
FROM audience_members AS m JOIN identifiers AS i ON i.user_row = m.user_id;

-- A member whose last matched identifier is gone leaves the audience.
CREATE TRIGGER member_without_identifiers_leaves
AFTER DELETE ON audience_member_identifiers
WHEN NOT EXISTS (
    SELECT 1 FROM audience_member_identifiers
    WHERE audience_id = OLD.audience_id AND user_id = OLD.user_id
)
BEGIN
    DELETE FROM audience_members WHERE audience_id = OLD.audience_id AND user_id = OLD.user_id;
END;

-- Expiry needs no write to take effect (reads filter it), but once a consent has lapsed, any
-- change to the identifier (a re-grant, a re-import) first ends the memberships it carried:
-- a lapse is a loss of eligibility, however soon consent is given again.
CREATE TRIGGER lapsed_consent_leaves_audiences
AFTER UPDATE OF consent, consent_at, expires_at ON identifiers
WHEN (OLD.expires_at IS NOT NULL AND OLD.expires_at <= {_NOW_SQL})
    OR (NEW.expires_at IS NOT NULL AND NEW.expires_at <= {_NOW_SQL})
BEGIN
    DELETE FROM audience_member_identifiers WHERE identifier_id = NEW.id;
END;

DROP TRIGGER audience_size_follows_members;
ALTER TABLE audiences DROP COLUMN size;
"""

#: Migrations from version ``v`` to ``v + 1``, applied in order by :func:`migrate`.
_MIGRATIONS: dict[int, str] = {
    1: _SESSIONS_V2,
    2: _ELIGIBILITY_HISTORY_V3,
    3: _LIFE_OF_THE_DATA_V4,
}


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every table of the current schema and stamp the file as ours, atomically.

    Args:
        conn: an autocommit connection (``isolation_level=None``) to an empty database.
    """
    _run_script(
        conn,
        _SCHEMA_V1
        + "".join(_MIGRATIONS[step] for step in range(1, SCHEMA_VERSION))
        + f"PRAGMA application_id = {APPLICATION_ID};\nPRAGMA user_version = {SCHEMA_VERSION};\n",
    )


def check_identity(conn: sqlite3.Connection, where: str) -> int:
    """Check that the database is a cleanroom platform database this build can read.

    Args:
        conn: an open connection.
        where: the database path, for messages.

    Returns:
        The file's schema version (possibly older than :data:`SCHEMA_VERSION`).

    Raises:
        NotOurDatabase: not SQLite, another application's database, or a newer schema.
    """
    try:
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise NotOurDatabase(f"{where} is not a SQLite database ({exc})") from exc
    if application_id != APPLICATION_ID:
        raise NotOurDatabase(
            f"{where} is not a cleanroom platform database "
            f"(application_id {application_id:#x}, expected {APPLICATION_ID:#x}); "
            "create one with 'cleanroom platform init'"
        )
    if version > SCHEMA_VERSION:
        raise NotOurDatabase(
            f"{where} has schema version {version}, newer than this build's {SCHEMA_VERSION}; "
            "upgrade cleanroom"
        )
    if version < 1:
        raise NotOurDatabase(f"{where} has no cleanroom schema (version {version})")
    return version


def migrate(
    conn: sqlite3.Connection,
    version: int,
    finish: Callable[[sqlite3.Connection], object] | None = None,
) -> None:
    """Bring a database of schema ``version`` up to :data:`SCHEMA_VERSION`, one step at a time.

    Each step and its version stamp commit together, so an interrupted migration resumes.

    Args:
        conn: an autocommit connection.
        version: the file's schema version.
        finish: called inside the last step's transaction, after its DDL (to record the
            migration in the audit log, so that it commits or vanishes with it).
    """
    for step in range(version, SCHEMA_VERSION):
        last = step + 1 == SCHEMA_VERSION
        _run_script(
            conn,
            _MIGRATIONS[step] + f"PRAGMA user_version = {step + 1};\n",
            finish if last else None,
        )


def _run_script(
    conn: sqlite3.Connection,
    script: str,
    finish: Callable[[sqlite3.Connection], object] | None = None,
) -> None:
    """Run a DDL script as one transaction (``executescript`` would otherwise commit per step)."""
    try:
        conn.executescript("BEGIN IMMEDIATE;\n" + script)
        if finish is not None:
            finish(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
