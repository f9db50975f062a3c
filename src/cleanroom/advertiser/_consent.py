"""Reading the advertiser list's marketing-consent column (DESIGN §10).

Only an explicit yes sends a record: an empty cell is no consent, and a value that is neither
yes nor no is reported as a bad row rather than guessed at.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONSENT_NO", "CONSENT_YES", "ConsentCells", "parse_marketing_consent"]

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


class ConsentCells(dict[str, bool | None]):
    """:func:`parse_marketing_consent` of cells, remembered by spelling: ``cells[value]``.

    A consent column repeats a few spellings, so a list is read with a lookup per cell. Only the
    first :attr:`LIMIT` spellings are kept, so a column of distinct junk cannot make it grow.
    Unreadable values (``None``) are never kept but counted in :attr:`unreadable`, so a reader
    knows whether a column it looked up had one without looking at every result again.
    """

    LIMIT: Final = 1024

    def __init__(self) -> None:
        super().__init__()
        self.unreadable = 0

    def __missing__(self, value: str) -> bool | None:
        consent = parse_marketing_consent(value)
        if consent is None:
            self.unreadable += 1
        elif len(self) < self.LIMIT:
            self[value] = consent
        return consent
