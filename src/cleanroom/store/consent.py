"""Consent changes: grants, revocations and opt-outs, one at a time or from a CSV file.

Every change is a plain UPDATE of the facts the eligibility view reads, so it applies to the
next match at once, without a new epoch. The schema's triggers remove a user from every stored
audience in the same transaction as a revocation or opt-out, whichever path made it.

Bulk file (one row per change): ``user_id,purpose,value`` plus optional ``type`` (limit an
``ads_matching`` change to one identifier type) and ``at`` (when it happened, ISO 8601; default
now). ``purpose`` is ``ads_matching`` (value true grants, false/revoked revokes),
``sale_opt_out`` or ``targeted_ads_opt_out`` (value true opts out, false withdraws the opt-out).
A change dated before the stored state is stale and skipped, so replaying a file is harmless.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleanroom.errors import InvalidInput, UnknownUser
from cleanroom.identifiers import KINDS
from cleanroom.store import audit
from cleanroom.store.changes import CONSENT_IMPORT_REPORTED, CONSENT_IMPORT_STARTED
from cleanroom.store.csvfile import RowRejection, open_rows, scan_csv
from cleanroom.store.database import Database, transaction, unix_now
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES
from cleanroom.store.fields import parse_consent, parse_timestamp

__all__ = [
    "CONSENT_FILE_OPTIONAL",
    "CONSENT_FILE_REQUIRED",
    "OPT_OUTS",
    "PURPOSES",
    "ConsentChange",
    "ConsentImportReport",
    "grant",
    "import_consent_csv",
    "revoke",
    "set_opt_out",
    "user_row",
]

#: User-level opt-outs (DESIGN §6) and the ``users`` column recording each.
OPT_OUTS: dict[str, str] = {
    "sale_opt_out": "sale_opt_out_at",
    "targeted_ads_opt_out": "targeted_ads_opt_out_at",
}

#: What a bulk consent row can change.
PURPOSES: tuple[str, ...] = ("ads_matching", *OPT_OUTS)

CONSENT_FILE_REQUIRED: tuple[str, ...] = ("user_id", "purpose", "value")
CONSENT_FILE_OPTIONAL: tuple[str, ...] = ("type", "at")

_CHUNK_ROWS = 10_000
_EXAMPLES_PER_REASON = 5
_KINDS = frozenset(KINDS)
_NEVER_PERMITTED_SQL = ", ".join(f"'{s}'" for s in sorted(NEVER_PERMITTED_SOURCES))

# A change older than what is stored is stale: the stored state is the newer fact.
_GRANT = """
UPDATE identifiers SET consent = 'granted', consent_at = :at, expires_at = NULL
WHERE user_row = :user AND (:type IS NULL OR type = :type) AND value IS NOT NULL
    AND (consent_at IS NULL OR consent_at <= :at)
    AND NOT (consent = 'granted' AND consent_at IS :at AND expires_at IS NULL)
"""
_REVOKE = """
UPDATE identifiers SET consent = 'revoked', consent_at = :at
WHERE user_row = :user AND (:type IS NULL OR type = :type) AND value IS NOT NULL
    AND consent != 'revoked' AND (consent_at IS NULL OR consent_at <= :at)
"""


@dataclass(frozen=True)
class ConsentChange:
    """The effect of one consent command.

    Attributes:
        user_id: the user's external id.
        identifiers: identifiers whose consent changed (0 for opt-outs).
        never_permitted: of those granted, how many come from a never-permitted source and
            stay ineligible.
        audiences_left: stored audiences the user was removed from.
    """

    user_id: str
    identifiers: int = 0
    never_permitted: int = 0
    audiences_left: int = 0


@dataclass
class ConsentImportReport:
    """What a bulk consent import did.

    Attributes:
        path: the file.
        sha256: its hex SHA-256.
        rows: data rows read.
        identifiers_changed: identifier consents changed by ``ads_matching`` rows.
        users_changed: users whose opt-outs changed.
        stale: valid rows that changed nothing (already so, or older than the stored state).
        rejected: rejected rows by reason.
        examples: the first few rejections per reason.
    """

    path: str
    sha256: str
    rows: int = 0
    identifiers_changed: int = 0
    users_changed: int = 0
    stale: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: list[RowRejection] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "file": self.path,
            "sha256": self.sha256,
            "rows": self.rows,
            "identifiers_changed": self.identifiers_changed,
            "users_changed": self.users_changed,
            "stale": self.stale,
            "rejected": dict(sorted(self.rejected.items())),
        }


def user_row(conn: sqlite3.Connection, user_id: str) -> int:
    """The internal row id of a live user.

    Raises:
        UnknownUser: no such user, or the user was deleted.
    """
    row = conn.execute(
        "SELECT id, deleted_at FROM users WHERE external_id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise UnknownUser(f"no user {user_id!r} in the platform database")
    if row[1] is not None:
        raise UnknownUser(f"user {user_id!r} was deleted")
    return int(row[0])


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in _KINDS:
        raise InvalidInput(f"unknown identifier type {kind!r} (expected one of {', '.join(KINDS)})")


def _memberships(conn: sqlite3.Connection, row: int) -> int:
    """Audiences the user is a member of, as reads show them (eligible memberships only)."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM readable_audience_members WHERE user_id = ?", (row,)
        ).fetchone()[0]
    )


def grant(db: Database, user_id: str, *, kind: str | None = None) -> ConsentChange:
    """Grant ads-matching consent on a user's identifiers (of one type when ``kind`` is given).

    Identifiers from never-permitted sources record the grant but stay ineligible.

    Raises:
        UnknownUser: no such live user.
        InvalidInput: unknown identifier type.
    """
    _check_kind(kind)
    conn = db.conn
    with transaction(conn):
        row = user_row(conn, user_id)
        params = {"user": row, "type": kind, "at": unix_now()}
        changed = conn.execute(_GRANT, params).rowcount
        never_permitted = int(
            conn.execute(
                "SELECT COUNT(*) FROM identifiers WHERE user_row = :user AND consent_at = :at "
                f"AND (:type IS NULL OR type = :type) AND source IN ({_NEVER_PERMITTED_SQL})",
                params,
            ).fetchone()[0]
        )
        change = ConsentChange(user_id, changed, never_permitted if changed else 0)
        audit.append(
            db,
            "consent.grant",
            {"user": user_id, "type": kind, "identifiers": change.identifiers},
        )
    return change


def revoke(db: Database, user_id: str, *, kind: str | None = None) -> ConsentChange:
    """Revoke ads-matching consent; the user leaves every stored audience.

    Raises:
        UnknownUser: no such live user.
        InvalidInput: unknown identifier type.
    """
    _check_kind(kind)
    conn = db.conn
    with transaction(conn):
        row = user_row(conn, user_id)
        before = _memberships(conn, row)
        changed = conn.execute(_REVOKE, {"user": row, "type": kind, "at": unix_now()}).rowcount
        # Any revocation ends the user's stored audiences, even when nothing was granted
        # before: which identifier matched is not recorded, so the safe side is to leave.
        conn.execute("DELETE FROM audience_members WHERE user_id = ?", (row,))
        change = ConsentChange(user_id, changed, 0, before)
        audit.append(
            db,
            "consent.revoke",
            {
                "user": user_id,
                "type": kind,
                "identifiers": changed,
                "audiences_left": before,
            },
        )
    return change


def set_opt_out(db: Database, user_id: str, opt_out: str, active: bool) -> ConsentChange:
    """Record (``active``) or withdraw a user's opt-out.

    Args:
        db: the platform database.
        user_id: the user's external id.
        opt_out: ``sale_opt_out`` or ``targeted_ads_opt_out``.
        active: ``True`` to opt out (the user leaves stored audiences), ``False`` to withdraw.

    Raises:
        UnknownUser: no such live user.
        InvalidInput: unknown opt-out.
    """
    column = OPT_OUTS.get(opt_out)
    if column is None:
        raise InvalidInput(f"unknown opt-out {opt_out!r} (expected one of {', '.join(OPT_OUTS)})")
    conn = db.conn
    with transaction(conn):
        row = user_row(conn, user_id)
        before = _memberships(conn, row)
        if active:
            conn.execute(
                f"UPDATE users SET {column} = COALESCE({column}, ?) WHERE id = ?",
                (unix_now(), row),
            )
        else:
            conn.execute(f"UPDATE users SET {column} = NULL WHERE id = ?", (row,))
        left = before - _memberships(conn, row)
        audit.append(
            db,
            "opt_out.set" if active else "opt_out.clear",
            {"user": user_id, "opt_out": opt_out, "audiences_left": left},
        )
    return ConsentChange(user_id, 0, 0, left)


def import_consent_csv(
    db: Database,
    path: Path,
    *,
    column_mapping: Mapping[str, str] | None = None,
    progress: Callable[[int], object] | None = None,
    on_reject: Callable[[RowRejection], object] | None = None,
) -> ConsentImportReport:
    """Apply a file of consent changes, in chunks, each chunk one transaction.

    Raises:
        ImportFailed: the file cannot be read, is not UTF-8 or lacks a required column
            (nothing is written).
    """
    scan = scan_csv(path, CONSENT_FILE_REQUIRED, CONSENT_FILE_OPTIONAL, column_mapping)
    report = ConsentImportReport(path=str(path), sha256=scan.sha256)
    columns = scan.columns
    width = len(scan.header)
    now = unix_now()

    def reject(line: int, field_name: str | None, reason: str, detail: str) -> None:
        column = None if field_name is None else scan.header[columns[field_name]].strip()
        rejection = RowRejection(line, column, reason, detail)
        if report.rejected[reason] < _EXAMPLES_PER_REASON:
            report.examples.append(rejection)
        report.rejected[reason] += 1
        if on_reject is not None:
            on_reject(rejection)

    # Its chunks commit one by one before the report: this entry tells readers that one runs.
    with transaction(db.conn):
        audit.append(db, CONSENT_IMPORT_STARTED, {"file": report.path, "sha256": report.sha256})
    # (line, user_id, purpose, granted, kind, at)
    pending: list[tuple[int, str, str, bool, str | None, int]] = []
    with open_rows(scan.path) as reader:
        next(reader, None)
        while True:
            try:
                for row in reader:
                    line = reader.line_num
                    if not row:
                        continue
                    report.rows += 1
                    if len(row) != width:
                        reject(line, None, "malformed_row", f"{len(row)} fields, expected {width}")
                    else:
                        change = _parse_change(row, line, columns, reject, now)
                        if change is not None:
                            pending.append(change)
                    if len(pending) >= _CHUNK_ROWS:
                        _apply_changes(db.conn, pending, report, reject)
                        if progress is not None:
                            progress(len(pending))
                        pending = []
                break
            except csv.Error as exc:
                report.rows += 1
                reject(reader.line_num, None, "malformed_row", str(exc))
    _apply_changes(db.conn, pending, report, reject)
    if progress is not None and pending:
        progress(len(pending))
    with transaction(db.conn):
        audit.append(db, CONSENT_IMPORT_REPORTED, report.to_dict())
    return report


def _parse_change(
    row: list[str],
    line: int,
    columns: Mapping[str, int],
    reject: Callable[[int, str | None, str, str], None],
    now: int,
) -> tuple[int, str, str, bool, str | None, int] | None:
    user_id = row[columns["user_id"]].strip()
    if not user_id:
        reject(line, "user_id", "missing_user_id", "user id is empty")
        return None
    purpose = row[columns["purpose"]].strip().lower()
    if purpose not in PURPOSES:
        reject(
            line,
            "purpose",
            "unknown_purpose",
            f"{row[columns['purpose']]!r} is not one of {', '.join(PURPOSES)}",
        )
        return None
    value = parse_consent(row[columns["value"]])
    if value is None:
        reject(
            line,
            "value",
            "bad_consent",
            f"{row[columns['value']]!r} is not true/false/yes/no/1/0/granted/revoked",
        )
        return None
    kind: str | None = None
    if "type" in columns and row[columns["type"]].strip():
        kind = row[columns["type"]].strip().lower()
        if kind not in _KINDS:
            reject(line, "type", "unknown_type", f"{kind!r} is not one of {', '.join(KINDS)}")
            return None
    at = now
    if "at" in columns and row[columns["at"]].strip():
        moment = parse_timestamp(row[columns["at"]])
        if moment is None:
            reject(line, "at", "bad_timestamp", f"{row[columns['at']]!r} is not ISO 8601")
            return None
        at = moment
    return line, user_id, purpose, value is True, kind, at


def _apply_changes(
    conn: sqlite3.Connection,
    changes: list[tuple[int, str, str, bool, str | None, int]],
    report: ConsentImportReport,
    reject: Callable[[int, str | None, str, str], None],
) -> None:
    if not changes:
        return
    with transaction(conn):
        users = {
            str(external): (int(row), deleted)
            for external, row, deleted in conn.execute(
                "SELECT external_id, id, deleted_at FROM users "
                "WHERE external_id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted({change[1] for change in changes})),),
            )
        }
        for line, user_id, purpose, granted, kind, at in changes:
            found = users.get(user_id)
            if found is None:
                reject(line, "user_id", "unknown_user", f"no user {user_id!r}")
                continue
            row, deleted = found
            if deleted is not None:
                reject(line, "user_id", "user_deleted", f"user {user_id!r} was deleted")
                continue
            if purpose == "ads_matching":
                params = {"user": row, "type": kind, "at": at}
                changed = conn.execute(_GRANT if granted else _REVOKE, params).rowcount
                if not granted:
                    conn.execute("DELETE FROM audience_members WHERE user_id = ?", (row,))
                report.identifiers_changed += changed
            else:
                column = OPT_OUTS[purpose]
                if granted:
                    changed = conn.execute(
                        f"UPDATE users SET {column} = ? WHERE id = ? AND {column} IS NULL",
                        (at, row),
                    ).rowcount
                else:
                    changed = conn.execute(
                        f"UPDATE users SET {column} = NULL WHERE id = ? AND {column} <= ?",
                        (row, at),
                    ).rowcount
                report.users_changed += changed
            if not changed:
                report.stale += 1
