"""Reading the advertiser list's marketing-consent column (DESIGN §10).

Only an explicit yes sends a record: an empty cell is no consent, and a value that is neither
yes nor no is reported as a bad row rather than guessed at.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONSENT_NO", "CONSENT_YES", "parse_marketing_consent"]

CONSENT_YES: Final = frozenset({"true", "yes", "y", "1", "granted", "opted_in", "opt-in"})
"""Spellings of consent given (compared case-insensitively after trimming)."""

CONSENT_NO: Final = frozenset(
    {"", "false", "no", "n", "0", "denied", "revoked", "opted_out", "opt-out"}
)
"""Spellings of no consent; an empty cell means none was recorded."""


def parse_marketing_consent(value: str) -> bool | None:
    """Read one marketing-consent cell.

    Args:
        value: the cell as read.

    Returns:
        ``True`` for consent, ``False`` for none, ``None`` for a value that is neither.
    """
    key = value.strip().lower()
    if key in CONSENT_YES:
        return True
    if key in CONSENT_NO:
        return False
    return None
