"""Which column of the list holds which field, and columns that look like a field but are not read.

A column is read for a field when its name is the field's (compared case-insensitively) or the
one ``--column FIELD=NAME`` maps to it. A header with ``e_mail`` instead of ``email`` would
otherwise match on phones alone, silently: so a column that is not read and whose name looks
like an identifier field (``E-Mail``, ``phone_number``, ``mobile``, ``idfa``, ``gaid``, …) stops
the match before any work, with the two ways on: read it (``--column email=e_mail``) or say it
is to be left out (``--ignore-column e_mail``). Other columns that are not read (names, dates)
are listed in the report.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cleanroom.errors import ImportFailed
from cleanroom.identifiers import KINDS

__all__ = ["CONSENT_FIELD", "FIELDS", "RECORD_ID_FIELD", "ColumnMap", "looks_like", "map_columns"]

RECORD_ID_FIELD: Final = "record_id"
CONSENT_FIELD: Final = "marketing_consent"
FIELDS: Final = (RECORD_ID_FIELD, *KINDS, CONSENT_FIELD)
"""Every field a column can be mapped to, in the default column order."""

# Words of a column name (split at anything not a letter or digit, and at camelCase) that say
# which field it holds. The whole name with its separators removed is checked too ("e_mail").
_WORDS: Final[dict[str, frozenset[str]]] = {
    "email": frozenset({"email", "emails", "mail", "emailaddress", "mailaddress"}),
    "phone": frozenset(
        {
            "phone",
            "phones",
            "phonenumber",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cell",
            "cellphone",
            "cellnumber",
            "telephone",
            "tel",
            "msisdn",
        }
    ),
    "maid": frozenset(
        {
            "maid",
            "maids",
            "idfa",
            "gaid",
            "aaid",
            "adid",
            "ifa",
            "advertisingid",
            "mobileadid",
            "mobileadvertisingid",
            "deviceid",
        }
    ),
    CONSENT_FIELD: frozenset(
        {"consent", "marketingconsent", "optin", "optedin", "permission", "subscribed"}
    ),
}
# Words that make a name about an identifier rather than the identifier itself
# ("email_verified", "phone_country", "has_email"): such a column is never taken for one.
_QUALIFIERS: Final = frozenset(
    {
        "verified",
        "valid",
        "validated",
        "status",
        "type",
        "kind",
        "domain",
        "country",
        "region",
        "code",
        "has",
        "is",
        "count",
        "date",
        "time",
        "at",
        "source",
        "bounced",
        "unsubscribed",
        "optout",
        "optedout",
        "consent",
        "optin",
        "optedin",
        "permission",
        "subscribed",
    }
)
_CONSENT_PARTS: Final = ("consent", "optin", "optedin")
_SPLIT: Final = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z])(?=[A-Z])")


@dataclass(frozen=True)
class ColumnMap:
    """Where each field is in the header.

    Attributes:
        indexes: field -> position in the header, for every field read.
        unused: names of the header's columns that no field reads (ignored ones included), in
            header order.
    """

    indexes: Mapping[str, int]
    unused: tuple[str, ...]


def looks_like(name: str) -> str | None:
    """The field a column named ``name`` seems to hold, if any.

    An identifier kind (``email``, ``phone``, ``maid``) or ``marketing_consent``; a name about
    an identifier (``email_verified``, ``phone_country``) is none of them, and neither is a
    consent column named after a channel (``email_opt_in``): it is a consent column.
    """
    words = [word.lower() for word in _SPLIT.split(name.strip()) if word]
    joined = "".join(words)
    if not words:
        return None
    consent = _WORDS[CONSENT_FIELD]
    if any(word in consent for word in words) or any(part in joined for part in _CONSENT_PARTS):
        return CONSENT_FIELD
    if any(word in _QUALIFIERS for word in words) or "optout" in joined:
        return None
    for kind in KINDS:
        if joined in _WORDS[kind] or any(word in _WORDS[kind] for word in words):
            return kind
    close = difflib.get_close_matches(joined, KINDS, n=1, cutoff=0.8)
    return close[0] if close else None


def map_columns(
    source: str,
    header: Sequence[str],
    mapping: Mapping[str, str],
    prehashed: Collection[str],
    ignored: Collection[str] = (),
) -> ColumnMap:
    """Find each field's column, and refuse a header whose identifier columns would be missed.

    Args:
        source: the list as named in messages (its path, or "the rows given").
        header: the column names, in order.
        mapping: field -> column name, where the column is not named like the field.
        prehashed: identifier kinds whose column holds SHA-256 digests; each must be present.
        ignored: columns to leave out without a question, even if they look like a field.

    Returns:
        The fields' positions and the columns not read.

    Raises:
        ImportFailed: a duplicate column name; a mapped, ignored or pre-hashed column that is
            not there; no marketing-consent column; no identifier column; or a column that
            looks like an identifier field but is not read and not ignored.
    """
    position: dict[str, int] = {}
    for at, name in enumerate(header):
        key = name.strip().lower()
        if key in position:
            raise ImportFailed(f"{source}: column {name.strip()!r} appears twice in the header")
        position[key] = at
    shown = ", ".join(repr(name) for name in header)
    skipped: set[int] = set()
    for name in ignored:
        found = position.get(name.strip().lower())
        if found is None:
            raise ImportFailed(
                f"{source}: no column {name!r} to ignore (--ignore-column); the header has {shown}"
            )
        skipped.add(found)
    indexes: dict[str, int] = {}
    for field in FIELDS:
        column = mapping.get(field, field)
        found = position.get(column.strip().lower())
        if found is not None and found not in skipped:
            indexes[field] = found
        elif field in mapping:
            raise ImportFailed(
                f"{source}: no column {column!r} (mapped for {field!r}); the header has {shown}"
            )
    unread = [at for at in range(len(header)) if at not in indexes.values()]
    lookalikes = {at: looks_like(header[at]) for at in unread if at not in skipped}
    if CONSENT_FIELD not in indexes:
        hint = _consent_hint(header, lookalikes)
        raise ImportFailed(
            f"{source}: no marketing consent column {CONSENT_FIELD!r}; the header has {shown}. "
            f"Rows are sent only with consent: {hint}"
        )
    missed = [
        _lookalike_message(header[at].strip(), kind, header, indexes)
        for at, kind in lookalikes.items()
        if kind in KINDS
    ]
    if missed:
        raise ImportFailed(f"{source}: " + "; ".join(missed))
    if not any(kind in indexes for kind in KINDS):
        raise ImportFailed(
            f"{source}: no identifier column ({', '.join(KINDS)}); the header has {shown} "
            "(map other names with --column FIELD=NAME)"
        )
    for kind in prehashed:
        if kind not in indexes:
            raise ImportFailed(
                f"{source}: {kind} is marked pre-hashed but the list has no {kind} column"
            )
    return ColumnMap(indexes, tuple(header[at].strip() for at in unread))


def _option(flag: str, value: str) -> str:
    return f"{flag} {shlex.quote(value)}"


def _consent_hint(header: Sequence[str], lookalikes: Mapping[int, str | None]) -> str:
    candidates = [header[at].strip() for at, kind in lookalikes.items() if kind == CONSENT_FIELD]
    if candidates:
        return (
            "if "
            + " or ".join(repr(c) for c in candidates)
            + " holds it, read it with "
            + (_option("--column", f"{CONSENT_FIELD}={candidates[0]}"))
        )
    return f"map the column with --column {CONSENT_FIELD}=NAME"


def _lookalike_message(
    name: str, kind: str, header: Sequence[str], indexes: Mapping[str, int]
) -> str:
    read = indexes.get(kind)
    if read is None:
        return (
            f"column {name!r} looks like {kind} identifiers, but no column is read for {kind}: "
            f"read it with {_option('--column', f'{kind}={name}')}, or match without it with "
            f"{_option('--ignore-column', name)}"
        )
    return (
        f"column {name!r} looks like {kind} identifiers too, but {kind} is read from "
        f"{header[read].strip()!r} only: match without it with "
        f"{_option('--ignore-column', name)}, or read it instead with "
        f"{_option('--column', f'{kind}={name}')}"
    )
