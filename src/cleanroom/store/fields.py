"""Parsing the values of consent and timestamp fields in platform CSV files.

Each parser returns ``None`` for a value it cannot read, so the importers can count and report
the row instead of stopping; the accepted spellings are defined here once.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "CONSENT_VALUES",
    "REVOKED",
    "format_timestamp",
    "parse_consent",
    "parse_timestamp",
]

#: Marker for the consent value ``revoked`` (consent was given once and withdrawn).
REVOKED = "revoked"

#: Accepted consent spellings (compared case-insensitively after trimming) and their meaning.
CONSENT_VALUES: dict[str, bool | str] = {
    "true": True,
    "yes": True,
    "1": True,
    "granted": True,
    "false": False,
    "no": False,
    "0": False,
    "revoked": REVOKED,
}


def parse_consent(value: str) -> bool | str | None:
    """Read a consent field.

    Returns:
        ``True`` (granted), ``False`` (not given), :data:`REVOKED`, or ``None`` when the value
        is none of :data:`CONSENT_VALUES`.
    """
    meaning = CONSENT_VALUES.get(value)
    if meaning is None:
        meaning = CONSENT_VALUES.get(value.strip().lower())
    return meaning


def parse_timestamp(value: str) -> int | None:
    """Read an ISO 8601 date or date-time as Unix seconds; a time without an offset is UTC.

    Returns:
        The Unix time in seconds, or ``None`` when the value is not ISO 8601.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def format_timestamp(unix_seconds: int) -> str:
    """Format Unix seconds as ISO 8601 UTC (``2024-05-01T12:00:00Z``)."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
