"""The platform's own source taxonomy: which collection sources may be used for ads.

Every platform names its sources its own way (``app``, ``web_signup``, ``loyalty`` …). The
``sources`` table registers each name as permitted or denied; an identifier is eligible only if
its source is registered and permitted (:mod:`~cleanroom.store.eligibility`). A source nobody
registered is stored but never eligible, and import reports it; permitting it later makes its
identifiers eligible at once, with no re-import. ``platform init`` registers
:data:`~cleanroom.store.eligibility.DEFAULT_PERMITTED_SOURCES` as permitted.

``two_factor``, ``recovery``, ``security`` and ``contact_upload`` can never be permitted: this
module refuses it, a trigger refuses it to any other writer, and the eligibility view excludes
them whatever the table says. Names are compared after trimming and lower-casing. Every change
is audited; denying a source also ends the audience memberships its identifiers carried.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from cleanroom.errors import InvalidInput
from cleanroom.store import audit
from cleanroom.store.database import Database, transaction, unix_now
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES, SOURCE_NAME, normalize_source
from cleanroom.store.fields import format_timestamp

__all__ = [
    "SOURCE_STATES",
    "SourceChange",
    "SourceInfo",
    "deny_sources",
    "list_sources",
    "permit_sources",
]

#: How a source name stands: registered permitted or denied, never permitted whatever anyone
#: asks, or only seen in the data (stored, never eligible).
SOURCE_STATES: Final = ("permitted", "denied", "never_permitted", "unregistered")


@dataclass(frozen=True)
class SourceInfo:
    """One source name as ``platform sources list`` shows it.

    Attributes:
        name: the source name (trimmed, lower-case).
        state: one of :data:`SOURCE_STATES`.
        identifiers: identifiers stored with this source.
        changed_at: Unix seconds of its last registration change (``None`` if unregistered).
    """

    name: str
    state: str
    identifiers: int
    changed_at: int | None

    def to_dict(self) -> dict[str, Any]:
        """The source as a JSON object."""
        return {
            "name": self.name,
            "state": self.state,
            "identifiers": self.identifiers,
            "changed_at": None if self.changed_at is None else format_timestamp(self.changed_at),
        }


@dataclass(frozen=True)
class SourceChange:
    """What ``sources permit`` or ``sources deny`` did.

    Attributes:
        names: the names asked for (normalized, sorted).
        changed: those whose registration changed (the others already stood so).
        identifiers: identifiers stored with these sources.
        memberships_left: audience memberships ended (deny only).
    """

    names: tuple[str, ...]
    changed: tuple[str, ...]
    identifiers: int
    memberships_left: int = 0


def list_sources(db: Database) -> list[SourceInfo]:
    """Every registered source, and every unregistered name found in the data, by name."""
    rows = db.conn.execute(
        """
        SELECT name, permitted, changed_at, (SELECT COUNT(*) FROM identifiers WHERE source = name)
        FROM sources
        UNION ALL
        SELECT source, NULL, NULL, COUNT(*) FROM identifiers
        WHERE source NOT IN (SELECT name FROM sources)
        GROUP BY source
        ORDER BY 1
        """
    ).fetchall()
    listed = []
    for name, permitted, changed_at, identifiers in rows:
        if permitted is None:
            state = "unregistered"
        elif name in NEVER_PERMITTED_SOURCES:
            state = "never_permitted"
        else:
            state = "permitted" if permitted else "denied"
        listed.append(SourceInfo(str(name), state, int(identifiers), changed_at))
    return listed


def permit_sources(db: Database, names: Iterable[str]) -> SourceChange:
    """Register sources as permitted for ads; their identifiers become eligible at once.

    Nothing changes unless every name can be permitted.

    Raises:
        InvalidInput: a name is empty or malformed, or is one of the never-permitted sources.
    """
    wanted = _check_names(names)
    refused = sorted(set(wanted) & NEVER_PERMITTED_SOURCES)
    if refused:
        raise InvalidInput(
            f"{', '.join(refused)} can never be permitted: identifiers collected for two-factor "
            "login, account recovery or security, or taken from other users' address books, "
            "are never used for ads. Nothing was changed"
        )
    return _register(db, wanted, permitted=True)


def deny_sources(db: Database, names: Iterable[str]) -> SourceChange:
    """Register sources as denied; their identifiers stop being eligible at once.

    The audience memberships that came through their identifiers end in the same transaction.

    Raises:
        InvalidInput: a name is empty or malformed.
    """
    return _register(db, _check_names(names), permitted=False)


def _check_names(names: Iterable[str]) -> tuple[str, ...]:
    normalized = []
    for raw in names:
        name = normalize_source(raw)
        if SOURCE_NAME.fullmatch(name) is None:
            raise InvalidInput(
                f"invalid source name {raw!r}: use 1 to 64 characters of a-z, 0-9, '.', '_', "
                "':' and '-', starting with a letter or digit. Nothing was changed"
            )
        normalized.append(name)
    if not normalized:
        raise InvalidInput("name at least one source")
    return tuple(sorted(set(normalized)))


def _register(db: Database, names: tuple[str, ...], *, permitted: bool) -> SourceChange:
    conn = db.conn
    listed = json.dumps(list(names))
    with transaction(conn):
        changed = tuple(
            str(row[0])
            for row in conn.execute(
                "SELECT value FROM json_each(?) WHERE value NOT IN "
                "(SELECT name FROM sources WHERE permitted = ?) ORDER BY value",
                (listed, int(permitted)),
            )
        )
        conn.execute(
            "INSERT INTO sources (name, permitted, changed_at) "
            "SELECT value, ?, ? FROM json_each(?) WHERE true "
            "ON CONFLICT (name) DO UPDATE SET permitted = excluded.permitted, "
            "changed_at = excluded.changed_at WHERE permitted != excluded.permitted",
            (int(permitted), unix_now(), listed),
        )
        identifiers = int(
            conn.execute(
                "SELECT COUNT(*) FROM identifiers WHERE source IN (SELECT value FROM json_each(?))",
                (listed,),
            ).fetchone()[0]
        )
        left = 0
        if not permitted:
            before = _memberships(conn)
            conn.execute(
                "DELETE FROM audience_member_identifiers WHERE identifier_id IN "
                "(SELECT id FROM identifiers WHERE source IN (SELECT value FROM json_each(?)))",
                (listed,),
            )
            left = before - _memberships(conn)
        change = SourceChange(names, changed, identifiers, left)
        audit.append(
            db,
            "source.permit" if permitted else "source.deny",
            {
                "sources": list(names),
                "changed": list(changed),
                "identifiers": identifiers,
                "audience_memberships_left": left,
            },
        )
    return change


def _memberships(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM audience_members").fetchone()[0])
