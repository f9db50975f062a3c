"""Which identifiers may take part in matching: THE one definition (DESIGN §6).

An identifier is eligible only if all hold:

- its ``source`` is registered by the platform as permitted for ads (the ``sources`` table,
  ``cleanroom platform sources``); ``two_factor``, ``recovery``, ``security`` and
  ``contact_upload`` are never permitted, whatever the table or the consent flag says, and a
  source the platform never registered is stored but never eligible;
- it has an active ads-matching consent (granted, not revoked, not expired, not in the future);
- its user has no opt-out (``sale_opt_out``, ``targeted_ads_opt_out``) and is not deleted.

The rules live in one SQL view, ``identifier_eligibility``, installed as a TEMP view on every
connection by :func:`install_views` (so the rules are this module's, never a stale copy in an
old database file). ``eligible_identifiers`` filters it. Status counts, epoch precompute,
match-time filtering and every read of a stored audience go through these views, and nothing
else decides eligibility.

"Now" is the connection's clock, the SQL function ``cleanroom_now()`` that
:mod:`~cleanroom.store.database` registers (the system clock, unless a test gives another).
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_PERMITTED_SOURCES",
    "EXCLUSION_REASONS",
    "NEVER_PERMITTED_SOURCES",
    "NOW_SQL",
    "SOURCE_NAME",
    "eligible_identifier_ids",
    "eligible_identifiers_and_users",
    "install_views",
    "normalize_source",
    "sql_list",
]

#: Sources that collected an identifier for a purpose other than marketing. Their identifiers are
#: never used for ads, even with a consent flag set: the FTC's 2022 Twitter order and 2019
#: Facebook order forbid exactly that use of security-collected contact data, and
#: ``contact_upload`` numbers come from other users' address books, so their owners never agreed.
NEVER_PERMITTED_SOURCES: frozenset[str] = frozenset(
    {"two_factor", "recovery", "security", "contact_upload"}
)

#: Sources a new database registers as permitted (``platform init``): where a user gives an
#: identifier as their own, for an account or marketing. A platform permits its own names with
#: ``cleanroom platform sources permit``.
DEFAULT_PERMITTED_SOURCES: frozenset[str] = frozenset(
    {"signup", "profile", "checkout", "newsletter", "crm"}
)

#: What a source name the platform registers may look like (after trimming and lower-casing).
SOURCE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._:-]{0,63}")

#: Why an identifier is not eligible, in the order they are tested (an identifier is counted
#: under the first that applies).
EXCLUSION_REASONS: tuple[str, ...] = (
    "deleted",
    "source_unknown",
    "source_not_permitted",
    "opted_out",
    "revoked",
    "no_consent",
)


def normalize_source(name: str) -> str:
    """A source name as stored and compared: trimmed and lower-cased."""
    return name.strip().lower()


def sql_list(values: frozenset[str]) -> str:
    """``'a', 'b'``: constants of this package for an SQL ``IN (…)``, never input."""
    return ", ".join(f"'{v}'" for v in sorted(values))


#: The current time in SQL, as the connection's clock says. An uncorrelated scalar subquery:
#: SQLite evaluates it once per statement, so a whole query sees one "now".
NOW_SQL: Final = "(SELECT cleanroom_now())"

_VIEWS = f"""
DROP VIEW IF EXISTS temp.readable_audience_members;
DROP VIEW IF EXISTS temp.eligible_identifiers;
DROP VIEW IF EXISTS temp.identifier_eligibility;
CREATE TEMP VIEW identifier_eligibility AS
SELECT
    i.id       AS identifier_id,
    i.user_row AS user_row,
    i.type     AS type,
    i.value    AS value,
    i.source   AS source,
    CASE
        WHEN u.deleted_at IS NOT NULL OR i.value IS NULL THEN 'deleted'
        WHEN i.source NOT IN (SELECT name FROM main.sources) THEN 'source_unknown'
        WHEN i.source IN ({sql_list(NEVER_PERMITTED_SOURCES)})
            OR i.source NOT IN (SELECT name FROM main.sources WHERE permitted = 1)
            THEN 'source_not_permitted'
        WHEN u.sale_opt_out_at IS NOT NULL OR u.targeted_ads_opt_out_at IS NOT NULL
            THEN 'opted_out'
        WHEN i.consent = 'revoked' THEN 'revoked'
        WHEN i.consent != 'granted'
            OR (i.expires_at IS NOT NULL AND i.expires_at <= {NOW_SQL})
            OR (i.consent_at IS NOT NULL AND i.consent_at > {NOW_SQL})
            THEN 'no_consent'
        ELSE NULL
    END AS excluded_reason
FROM main.identifiers AS i JOIN main.users AS u ON u.id = i.user_row;

CREATE TEMP VIEW eligible_identifiers AS
SELECT identifier_id, user_row, type, value
FROM identifier_eligibility
WHERE excluded_reason IS NULL;

-- An audience member is readable while at least one identifier it matched through is eligible
-- now: every list, count and export of an audience reads this view, so a member whose consent
-- expired, was revoked, or whose user opted out or was deleted is never shown, whether or not
-- a sweep has removed the row yet.
CREATE TEMP VIEW readable_audience_members AS
SELECT m.audience_id AS audience_id, m.user_id AS user_id
FROM main.audience_members AS m
WHERE EXISTS (
    SELECT 1
    FROM main.audience_member_identifiers AS matched
    JOIN eligible_identifiers AS e ON e.identifier_id = matched.identifier_id
    WHERE matched.audience_id = m.audience_id AND matched.user_id = m.user_id
        AND e.user_row = m.user_id
);
"""


def install_views(conn: sqlite3.Connection) -> None:
    """Create the ``identifier_eligibility``, ``eligible_identifiers`` and
    ``readable_audience_members`` views on ``conn``.

    TEMP views live with the connection, so installing them never writes to the database.
    """
    conn.executescript(_VIEWS)


def eligible_identifier_ids(conn: sqlite3.Connection) -> NDArray[np.int64]:
    """Ids of every identifier eligible now, ascending, as one array (no per-row objects kept).

    Args:
        conn: a connection with the views installed.

    Returns:
        A sorted ``int64`` array of ``identifiers.id``.
    """
    (ids,) = _eligible_columns(conn, ("identifier_id",))
    return ids


def eligible_identifiers_and_users(
    conn: sqlite3.Connection,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Ids and user rows of every identifier eligible now, ascending by id.

    Args:
        conn: a connection with the views installed.

    Returns:
        ``(ids, user_rows)``: two aligned ``int64`` arrays.
    """
    ids, users = _eligible_columns(conn, ("identifier_id", "user_row"))
    return ids, users


#: Eligible identifiers read per query (bounded memory on large tables).
_ELIGIBLE_BLOCK = 1 << 20


def _eligible_columns(
    conn: sqlite3.Connection, columns: tuple[str, ...]
) -> list[NDArray[np.int64]]:
    """Integer columns of ``eligible_identifiers``, ascending by identifier id.

    SQLite packs each block into one JSON array per column, which ``json.loads`` parses in C: no
    cursor step and no Python int per row for the (up to millions of) rows.
    """
    # The column names are this module's constants, never input, so inlining them is safe.
    arrays = ", ".join(f"json_group_array({column})" for column in columns)
    query = (
        f"SELECT COUNT(*), {arrays} FROM (SELECT {', '.join(columns)} FROM eligible_identifiers "
        "WHERE identifier_id > ? ORDER BY identifier_id LIMIT ?)"
    )
    blocks: list[list[NDArray[np.int64]]] = []
    after = 0
    while True:
        count, *packed = conn.execute(query, (after, _ELIGIBLE_BLOCK)).fetchone()
        if not count:
            break
        block = [np.array(json.loads(text), dtype=np.int64) for text in packed]
        ids = block[columns.index("identifier_id")]
        if np.any(ids[1:] < ids[:-1]):
            # SQLite aggregates in the subquery's order, but does not promise it: never rely on it.
            order = np.argsort(ids, kind="stable")
            block = [column[order] for column in block]
            ids = block[columns.index("identifier_id")]
        blocks.append(block)
        after = int(ids[-1])
        if count < _ELIGIBLE_BLOCK:
            break
    if not blocks:
        return [np.empty(0, dtype=np.int64) for _ in columns]
    return [np.concatenate(parts) for parts in zip(*blocks, strict=True)]
