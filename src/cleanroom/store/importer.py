"""Streaming import of the platform CSV (DESIGN §10): users, identifiers, consent.

One row per identifier: ``user_id,type,value,source,ads_matching_consent`` plus optional
``consent_at``, ``revoked_at`` and ``expires_at``. The file is checked whole first (UTF-8,
header; see :mod:`cleanroom.store.csvfile`), then read in chunks: each chunk is validated,
normalized one batch per identifier kind, and written in ONE transaction: its rows go into a
connection-local TEMP table, and a few set-based statements upsert users and identifiers from it
(SQLite then does the per-row work in C, which is what makes the import fast).

Idempotent by construction: users and identifiers are upserted on their natural keys, so a
re-run after a crash (or a second import of the same file) rewrites nothing that is already
there and a killed import is completed by running it again. Whole chunks commit or vanish, so no
row is ever half-written.

Consent merging never loosens on weaker evidence: a stored state is replaced by a *grant* only
when the row's ``consent_at`` is later than the stored time, so re-importing an old export cannot
undo a revocation made since; a withdrawal (``false``/``revoked``) applies unless the stored state
is dated later.
"""

from __future__ import annotations

import csv
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cleanroom.identifiers import DEFAULT_REGION, KINDS, normalize_batch
from cleanroom.store import audit
from cleanroom.store.changes import IMPORT_REPORTED, IMPORT_STARTED
from cleanroom.store.csvfile import CsvScan, RowRejection, open_rows, scan_csv
from cleanroom.store.database import Database, transaction, unix_now
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES, normalize_source
from cleanroom.store.fields import REVOKED, parse_consent, parse_timestamp

if TYPE_CHECKING:
    from _csv import Reader

__all__ = [
    "OPTIONAL_FIELDS",
    "REJECTION_REASONS",
    "REQUIRED_FIELDS",
    "ImportReport",
    "RowRejection",
    "import_platform_csv",
]

#: Columns the platform CSV must have (names can be mapped, see ``column_mapping``).
REQUIRED_FIELDS: tuple[str, ...] = ("user_id", "type", "value", "source", "ads_matching_consent")
#: Columns it may have.
OPTIONAL_FIELDS: tuple[str, ...] = ("consent_at", "revoked_at", "expires_at")

#: Why a row can be rejected, with what the report says about it.
REJECTION_REASONS: dict[str, str] = {
    "malformed_row": "malformed CSV row",
    "missing_user_id": "empty user id",
    "unknown_type": "unknown identifier type",
    "missing_source": "empty source",
    "bad_consent": "unreadable consent value",
    "bad_timestamp": "timestamp is not ISO 8601",
    "invalid_identifier": "invalid identifier",
    "user_deleted": "user was deleted",
}

#: Rows per transaction: big enough that commit and per-chunk queries are amortized, small
#: enough that a killed import loses little work and memory stays flat.
DEFAULT_CHUNK_ROWS = 50_000

#: Page cache during an import (KiB) and WAL pages between checkpoints (4 KiB each).
_IMPORT_CACHE_KIB = 256 * 1024
_IMPORT_CHECKPOINT_PAGES = 16_384
#: Page cache of the connection's TEMP database during an import (KiB): holds one staged chunk.
_IMPORT_TEMP_CACHE_KIB = 64 * 1024

#: Examples kept per reason in the report (all of them go to ``on_reject``).
_EXAMPLES_PER_REASON = 5

_KINDS = frozenset(KINDS)

_UNPARSED = object()
_TIMESTAMP_CACHE_SIZE = 4096

#: Distinct validation outcomes remembered between chunks (most files repeat a few dozen).
_PROFILE_CACHE_SIZE = 65_536

# Connection-local tables (never in the database file, so no migration): the accepted rows of
# the chunk being written, and the "profiles" they point to. A profile is what a row says besides
# its user and value: (type, source, consent state and times). Exports repeat a handful of them,
# so each row carries a small integer instead of five columns.
_CREATE_TEMP_TABLES = (
    """
    CREATE TEMP TABLE IF NOT EXISTS import_profiles (
        id         INTEGER PRIMARY KEY,
        type       TEXT NOT NULL,
        source     TEXT NOT NULL,
        consent    TEXT NOT NULL,
        consent_at INTEGER,
        expires_at INTEGER
    )
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS import_rows (
        line    INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        value   TEXT NOT NULL,
        profile INTEGER NOT NULL
    )
    """,
)
_DROP_TEMP_TABLES = (
    "DROP TABLE IF EXISTS temp.import_rows",
    "DROP TABLE IF EXISTS temp.import_profiles",
)

_INSERT_PROFILE = "INSERT INTO temp.import_profiles VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_ROW = "INSERT INTO temp.import_rows VALUES (?, ?, ?, ?)"

# Users in the order their first accepted row was staged (rowid order), as row-at-a-time upserts
# did. "WHERE true" is SQLite's required separator between INSERT … SELECT and ON CONFLICT.
_UPSERT_USERS = """
INSERT INTO users (external_id, created_at)
SELECT user_id, ? FROM temp.import_rows WHERE true ORDER BY rowid
ON CONFLICT (external_id) DO NOTHING
"""

# The row's user must exist and not be deleted (deleted users are also filtered before, to report
# them; this clause keeps the rule even against a deletion racing the import). Rows are inserted
# in (type, value) order, so each lands next to the previous one in the unique index instead of on
# a random page; rowid breaks ties in file order, so duplicates in a chunk merge as they did one
# row at a time.
_UPSERT_IDENTIFIERS = """
INSERT INTO identifiers (user_row, type, value, source, consent, consent_at, expires_at)
SELECT u.id, p.type, r.value, p.source, p.consent, p.consent_at, p.expires_at
FROM temp.import_rows AS r
JOIN temp.import_profiles AS p ON p.id = r.profile
JOIN users AS u ON u.external_id = r.user_id
WHERE u.deleted_at IS NULL
ORDER BY p.type, r.value, r.rowid
ON CONFLICT (type, value, user_row, source) DO UPDATE SET
    consent = excluded.consent, consent_at = excluded.consent_at, expires_at = excluded.expires_at
WHERE (excluded.consent, excluded.consent_at, excluded.expires_at)
        IS NOT (consent, consent_at, expires_at)
    AND CASE
        WHEN excluded.consent = 'granted' AND consent != 'granted'
            THEN excluded.consent_at IS NOT NULL
                AND (consent_at IS NULL OR excluded.consent_at > consent_at)
        ELSE excluded.consent_at IS NULL OR consent_at IS NULL OR excluded.consent_at >= consent_at
    END
"""

# Rows of this chunk whose identifier more than one user holds, in staging order. Most values
# have one stored row: the EXISTS (a second index entry for the value) rules them out with one
# index seek before any counting.
_SHARED_ROWS = """
SELECT line, type, holders FROM (
    SELECT r.rowid AS staged, r.line AS line, p.type AS type, (
        SELECT COUNT(DISTINCT i.user_row) FROM identifiers AS i
        WHERE i.type = p.type AND i.value = r.value
    ) AS holders
    FROM temp.import_rows AS r
    JOIN temp.import_profiles AS p ON p.id = r.profile
    WHERE EXISTS (
        SELECT 1 FROM identifiers AS i WHERE i.type = p.type AND i.value = r.value LIMIT 1 OFFSET 1
    )
)
WHERE holders > 1
ORDER BY staged
"""


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        path: the file imported.
        sha256: hex SHA-256 of the file.
        rows: data rows read.
        added: identifiers newly stored.
        updated: stored identifiers whose consent changed.
        unchanged: valid rows that were already stored as they are.
        rejected: rejected rows by reason.
        examples: the first few rejections per reason.
        never_permitted_with_consent: rows from a never-permitted source (two_factor, recovery,
            security, contact_upload) claiming consent; stored, never eligible.
        shared_identifiers: rows whose identifier is held by more than one user (both kept).
        shared_examples: ``(row, type, users)`` of the first few.
        users_added: users newly stored.
        source_unknown: rows whose source the platform has not registered (``platform
            sources``): stored, never eligible until the source is permitted.
        unknown_sources: those rows by source name (the first few names).
        unknown_source_examples: ``(row, source)`` of the first few.
    """

    path: str
    sha256: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[RowRejection] = field(default_factory=list)
    never_permitted_with_consent: int = 0
    shared_identifiers: int = 0
    shared_examples: list[tuple[int, str, int]] = field(default_factory=list)
    users_added: int = 0
    source_unknown: int = 0
    unknown_sources: Counter[str] = field(default_factory=Counter)
    unknown_source_examples: list[tuple[int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (also what the audit entry records, minus examples)."""
        return {
            "file": self.path,
            "sha256": self.sha256,
            "rows": self.rows,
            "users_added": self.users_added,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": dict(sorted(self.rejected.items())),
            "never_permitted_with_consent": self.never_permitted_with_consent,
            "shared_identifiers": self.shared_identifiers,
            "source_unknown": {
                "rows": self.source_unknown,
                "sources": dict(sorted(self.unknown_sources.items())),
            },
        }


class _Fault(NamedTuple):
    """Why a row's profile (type, source, consent, timestamps) makes it unusable."""

    field_name: str
    reason: str
    detail: str


class _Kind:
    """The accepted rows of one identifier kind in a chunk, in file order, ready to normalize."""

    __slots__ = ("kind", "lines", "profile_ids", "users", "values")

    def __init__(self, kind: str) -> None:
        # Parallel lists (not a tuple per row): staging then zips them in C.
        self.kind = kind
        self.values: list[str] = []
        self.lines: list[int] = []
        self.users: list[str] = []
        self.profile_ids: list[int] = []


#: What a profile resolves to: a fault, or (kind slot, profile id, from a never-permitted source
#: claiming consent, the source if the platform has not registered it).
_Resolved = _Fault | tuple[str, int, bool, str | None]

#: Names of unregistered sources kept in the report (all rows are counted).
_UNKNOWN_SOURCE_NAMES = 20


def import_platform_csv(
    db: Database,
    path: Path,
    *,
    column_mapping: Mapping[str, str] | None = None,
    default_region: str = DEFAULT_REGION,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int], object] | None = None,
    on_reject: Callable[[RowRejection], object] | None = None,
    on_start: Callable[[CsvScan], object] | None = None,
) -> ImportReport:
    """Import a platform CSV file.

    Args:
        db: the open platform database.
        path: the CSV file.
        column_mapping: field -> column name, for columns not named like the field.
        default_region: region of phone numbers written without a country code.
        chunk_rows: rows per transaction.
        progress: called with the number of rows just processed.
        on_reject: called with every rejected row (for a rejects file).
        on_start: called once the file passed its checks, before any write (for a progress
            bar's total).

    Returns:
        What was imported, updated and rejected.

    Raises:
        ImportFailed: the file cannot be read, is not UTF-8 or lacks a required column
            (nothing is written).
    """
    scan = scan_csv(path, REQUIRED_FIELDS, OPTIONAL_FIELDS, column_mapping)
    # An unknown region must fail here, before anything is written, not in the first chunk.
    normalize_batch("phone", ["+14155552671"], default_region=default_region)
    if on_start is not None:
        on_start(scan)
    report = ImportReport(path=str(path), sha256=scan.sha256)
    importer = _Importer(db, scan, report, default_region, on_reject)
    with transaction(db.conn):
        audit.append(db, IMPORT_STARTED, {"file": report.path, "sha256": report.sha256})
    users_before = _count(db.conn, "SELECT COUNT(*) FROM users")
    conn = db.conn
    # A bigger page cache keeps the (type, value) index in memory, and fewer WAL checkpoints
    # mean fewer fsyncs; both go back to their defaults when the import ends.
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    temp_cache_size = conn.execute("PRAGMA temp.cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = -{_IMPORT_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {_IMPORT_CHECKPOINT_PAGES}")
    # The staged chunk must stay in memory too (the TEMP database spills to a file beyond its
    # cache). temp_store is left alone: changing it would drop the connection's TEMP views.
    conn.execute(f"PRAGMA temp.cache_size = -{_IMPORT_TEMP_CACHE_KIB}")
    for statement in _CREATE_TEMP_TABLES:
        conn.execute(statement)
    try:
        with open_rows(scan.path) as reader:
            next(reader, None)  # the header, already mapped by the scan
            importer.run(reader, chunk_rows, progress)
    finally:
        for statement in _DROP_TEMP_TABLES:
            conn.execute(statement)
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
        conn.execute(f"PRAGMA temp.cache_size = {int(temp_cache_size)}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
    report.users_added = _count(db.conn, "SELECT COUNT(*) FROM users") - users_before
    with transaction(db.conn):
        audit.append(db, IMPORT_REPORTED, report.to_dict())
    return report


def _count(conn: sqlite3.Connection, query: str, *params: object) -> int:
    return int(conn.execute(query, params).fetchone()[0])


class _Importer:
    def __init__(
        self,
        db: Database,
        scan: CsvScan,
        report: ImportReport,
        default_region: str,
        on_reject: Callable[[RowRejection], object] | None,
    ) -> None:
        self.db = db
        self.scan = scan
        self.report = report
        self.default_region = default_region
        self.on_reject = on_reject
        self.deleted_users = {
            str(row[0])
            for row in db.conn.execute("SELECT external_id FROM users WHERE deleted_at IS NOT NULL")
        }
        self.registered_sources = {
            str(row[0]) for row in db.conn.execute("SELECT name FROM sources")
        }
        self.now = unix_now()
        columns = scan.columns
        self.i_user, self.i_value = columns["user_id"], columns["value"]
        self.timestamp_fields = [name for name in OPTIONAL_FIELDS if name in columns]
        # A row's profile key: its type, source, consent and timestamp texts, picked in C.
        self.profile_key: Callable[[list[str]], tuple[str, ...]] = itemgetter(
            columns["type"],
            columns["source"],
            columns["ads_matching_consent"],
            *(columns[name] for name in self.timestamp_fields),
        )
        self.profiles: dict[tuple[str, ...], _Resolved] = {}
        self.next_profile_id = 1
        # Profiles made since the last write, for the TEMP profile table.
        self.new_profiles: list[tuple[int, str, str, str, int | None, int | None]] = []
        self.timestamp_cache: dict[str, int | None] = {}

    def reject(self, line: int, field_name: str | None, reason: str, detail: str) -> None:
        column = None if field_name is None else self._column_name(field_name)
        rejection = RowRejection(line, column, reason, detail)
        count = self.report.rejected[reason]
        self.report.rejected[reason] = count + 1
        if count < _EXAMPLES_PER_REASON:
            self.report.examples.append(rejection)
        if self.on_reject is not None:
            self.on_reject(rejection)

    def _column_name(self, field_name: str) -> str:
        position = self.scan.columns.get(field_name)
        return field_name if position is None else self.scan.header[position].strip()

    def run(
        self,
        reader: Reader,
        chunk_rows: int,
        progress: Callable[[int], object] | None,
    ) -> None:
        report = self.report
        finished = False
        while not finished:
            chunk, rows, finished = self._read_chunk(reader, chunk_rows)
            self._write_chunk(chunk)
            report.rows += rows
            if progress is not None and rows:
                progress(rows)

    def _read_chunk(self, reader: Reader, chunk_rows: int) -> tuple[dict[str, _Kind], int, bool]:
        """Validate up to ``chunk_rows`` rows, queueing each under its kind or rejecting it.

        Returns:
            The chunk, the rows read (rejected and malformed included, blank lines not), and
            whether the file is finished.
        """
        chunk = {kind: _Kind(kind) for kind in KINDS}
        width = len(self.scan.header)
        reject = self.reject
        profiles, profile_key, resolve = self.profiles, self.profile_key, self._resolve
        i_user, i_value = self.i_user, self.i_value
        deleted_users = self.deleted_users
        never_permitted = 0
        taken = 0
        try:
            while True:
                try:
                    # The hot loop: one C-level key pick and one dict lookup validate the type,
                    # source, consent and timestamps of a row whose profile was seen before.
                    for row in reader:
                        if len(row) != width:
                            if not row:
                                continue  # a blank line is not a row
                            reject(
                                reader.line_num,
                                None,
                                "malformed_row",
                                f"{len(row)} fields, expected {width}",
                            )
                        else:
                            user_id = row[i_user].strip()
                            key = profile_key(row)
                            resolved = profiles.get(key)
                            if resolved is None:
                                resolved = resolve(key)
                            if not user_id:
                                reject(
                                    reader.line_num,
                                    "user_id",
                                    "missing_user_id",
                                    "user id is empty",
                                )
                            elif isinstance(resolved, _Fault):
                                reject(reader.line_num, *resolved)
                            elif user_id in deleted_users:
                                reject(
                                    reader.line_num,
                                    "user_id",
                                    "user_deleted",
                                    "the user was deleted; rows for it are refused",
                                )
                            else:
                                kind, profile_id, claims_never_permitted, unknown = resolved
                                queue = chunk[kind]
                                queue.values.append(row[i_value])
                                queue.lines.append(reader.line_num)
                                queue.users.append(user_id)
                                queue.profile_ids.append(profile_id)
                                never_permitted += claims_never_permitted
                                if unknown is not None:
                                    self._unknown_source(reader.line_num, unknown)
                        taken += 1
                        if taken >= chunk_rows:
                            return chunk, taken, False
                    return chunk, taken, True
                except csv.Error as exc:
                    taken += 1
                    reject(reader.line_num, None, "malformed_row", str(exc))
        finally:
            self.report.never_permitted_with_consent += never_permitted

    def _resolve(self, key: tuple[str, ...]) -> _Resolved:
        """Validate a profile not seen before, remember the outcome and return it."""
        checked = self._validate_profile(key)
        resolved: _Resolved
        if isinstance(checked, _Fault):
            resolved = checked
        else:
            kind, source, state, state_at, expires_at, claims_never_permitted = checked
            profile_id = self.next_profile_id
            self.next_profile_id += 1
            self.new_profiles.append((profile_id, kind, source, state, state_at, expires_at))
            unknown = None if source in self.registered_sources else source
            resolved = (kind, profile_id, claims_never_permitted, unknown)
        self.profiles[key] = resolved
        return resolved

    def _unknown_source(self, line: int, source: str) -> None:
        """Count a row whose source the platform has not registered (stored, never eligible)."""
        report = self.report
        report.source_unknown += 1
        names = report.unknown_sources
        if source in names or len(names) < _UNKNOWN_SOURCE_NAMES:
            names[source] += 1
        if len(report.unknown_source_examples) < _EXAMPLES_PER_REASON:
            report.unknown_source_examples.append((line, source))

    def _validate_profile(
        self, key: tuple[str, ...]
    ) -> _Fault | tuple[str, str, str, int | None, int | None, bool]:
        """Check a row's type, source, consent and timestamps, in that order; merge consent."""
        raw_kind, raw_source, raw_consent, *timestamps = key
        kind = raw_kind
        if kind not in _KINDS:
            kind = kind.strip().lower()
            if kind not in _KINDS:
                return _Fault(
                    "type", "unknown_type", f"{raw_kind!r} is not one of {', '.join(KINDS)}"
                )
        # Names are compared trimmed and lower-cased; an unregistered one is stored (and
        # reported), so permitting it later needs no re-import.
        source = normalize_source(raw_source)
        if not source:
            return _Fault("source", "missing_source", "source is empty")
        consent = parse_consent(raw_consent)
        if consent is None:
            return _Fault(
                "ads_matching_consent",
                "bad_consent",
                f"{raw_consent!r} is not true/false/yes/no/1/0/granted/revoked",
            )
        moments: dict[str, int] = {}
        for field_name, text in zip(self.timestamp_fields, timestamps, strict=True):
            if text:
                moment = self._timestamp(text)
                if moment is None:
                    return _Fault(
                        field_name, "bad_timestamp", f"{text!r} is not an ISO 8601 date or time"
                    )
                moments[field_name] = moment
        consent_at = moments.get("consent_at")
        revoked_at = moments.get("revoked_at")
        claims_never_permitted = False
        if consent is REVOKED or (
            revoked_at is not None and (consent_at is None or revoked_at >= consent_at)
        ):
            state, state_at = "revoked", revoked_at
        elif consent is True:
            state, state_at = "granted", consent_at
            claims_never_permitted = source in NEVER_PERMITTED_SOURCES
        else:
            state, state_at = "denied", consent_at
        return kind, source, state, state_at, moments.get("expires_at"), claims_never_permitted

    def _timestamp(self, text: str) -> int | None:
        # Exports repeat the same few timestamps; parse each distinct one once.
        cache = self.timestamp_cache
        moment = cache.get(text, _UNPARSED)
        if moment is _UNPARSED:
            moment = parse_timestamp(text)
            if len(cache) > _TIMESTAMP_CACHE_SIZE:
                cache.clear()
            cache[text] = moment
        return moment  # type: ignore[return-value]

    def _write_chunk(self, chunk: dict[str, _Kind]) -> None:
        report = self.report
        # Normalize first (rejections are reported in the order row-at-a-time writes gave them),
        # then stage the accepted rows kind by kind, in file order.
        staged: list[tuple[list[int], list[str], list[str], list[int]]] = []
        for queue in chunk.values():
            if not queue.values:
                continue
            kind, lines, users, profile_ids = (
                queue.kind,
                queue.lines,
                queue.users,
                queue.profile_ids,
            )
            batch = normalize_batch(kind, queue.values, default_region=self.default_region)
            for rejection in batch.rejected:
                line = lines[rejection.index]
                self.reject(line, "value", "invalid_identifier", f"{kind}: {rejection.reason}")
            if batch.rejected:
                kept = batch.indices
                lines = [lines[index] for index in kept]
                users = [users[index] for index in kept]
                profile_ids = [profile_ids[index] for index in kept]
            if lines:
                staged.append((lines, users, batch.values, profile_ids))
        accepted = sum(len(values) for _, _, values, _ in staged)
        conn = self.db.conn
        if accepted:
            with transaction(conn):
                if self.new_profiles:
                    conn.executemany(_INSERT_PROFILE, self.new_profiles)
                for lines, users, values, profile_ids in staged:
                    conn.executemany(
                        _INSERT_ROW, zip(lines, users, values, profile_ids, strict=True)
                    )
                conn.execute(_UPSERT_USERS, (self.now,))
                last_id = _count(conn, "SELECT COALESCE(MAX(id), 0) FROM identifiers")
                changed = conn.execute(_UPSERT_IDENTIFIERS).rowcount
                added = _count(conn, "SELECT COUNT(*) FROM identifiers WHERE id > ?", last_id)
                shared = conn.execute(_SHARED_ROWS).fetchall()
                conn.execute("DELETE FROM temp.import_rows")
            # Only once committed: a rolled-back chunk also rolls back its staged profiles.
            self.new_profiles.clear()
            report.added += added
            report.updated += changed - added
            report.unchanged += accepted - changed
            for line, kind, users_holding in shared:
                report.shared_identifiers += 1
                if len(report.shared_examples) < _EXAMPLES_PER_REASON:
                    report.shared_examples.append((int(line), str(kind), int(users_holding)))
        if len(self.profiles) > _PROFILE_CACHE_SIZE:
            # Bounded memory when nearly every row has its own timestamps.
            self.profiles.clear()
            with transaction(conn):
                conn.execute("DELETE FROM temp.import_profiles")
