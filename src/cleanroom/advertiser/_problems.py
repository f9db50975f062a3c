"""What can be wrong with a row of the advertiser's list, said once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cleanroom.identifiers import KINDS

__all__ = ["REASONS", "ListProblem", "invalid_reason"]


@dataclass(frozen=True)
class ListProblem:
    """A problem found in one row of the list.

    Attributes:
        row: line number in the file (the header is line 1).
        column: the column at fault, as named in the header, or ``None`` for the whole row.
        reason: one of :data:`REASONS`.
        detail: what exactly was wrong, in words. Never the value itself: the report may be
            logged, and the row number is enough to find it.
    """

    row: int
    column: str | None
    reason: str
    detail: str


REASONS: Final[dict[str, str]] = {
    "malformed_row": "malformed CSV row",
    "bad_consent": "unreadable marketing consent value",
    "missing_record_id": "empty record id",
    "duplicate_record_id": "record id already seen on an earlier row",
    "no_identifier": "no identifier given",
    "no_valid_identifier": "no valid identifier",
    **{f"invalid_{kind}": f"invalid {kind}" for kind in KINDS},
}
"""Reason code -> what the report says. ``invalid_<kind>`` concerns one value: its record is
still sent if another of its identifiers is valid. Every other reason means the record is not
sent."""


def invalid_reason(kind: str) -> str:
    """Return the reason code of an invalid identifier of ``kind``."""
    return f"invalid_{kind}"
