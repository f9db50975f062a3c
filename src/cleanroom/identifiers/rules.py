"""The facts of normalization v1 that every identifier kind shares.

Both parties must produce byte-identical normalized values, so the version, the kinds and the
checks common to all kinds are defined here once and imported everywhere else.
"""

from __future__ import annotations

from cleanroom.errors import InvalidIdentifier

__all__ = [
    "KINDS",
    "NORMALIZATION_VERSION",
    "TRIMMED_WHITESPACE",
    "check_not_blank",
    "require_kind",
]

#: Identifier kinds in the order the advertiser list names its columns (DESIGN §10).
KINDS: tuple[str, ...] = ("email", "phone", "maid")

#: The normalization version the platform publishes in its policy (DESIGN §5).
NORMALIZATION_VERSION = 1

#: Characters trimmed from both ends of a value. ASCII only, so a value with surrounding
#: Unicode spaces is not silently accepted as something the other side would not produce.
TRIMMED_WHITESPACE = " \t\n\r\f\v"


def require_kind(kind: str) -> None:
    """Check that ``kind`` is one of :data:`KINDS`.

    Raises:
        InvalidIdentifier: the kind is not one normalization v1 knows.
    """
    if kind not in KINDS:
        raise InvalidIdentifier(
            kind, f"unknown identifier kind {kind!r} (expected one of {', '.join(KINDS)})"
        )


def check_not_blank(kind: str, value: str) -> None:
    """Reject an empty or whitespace-only value with a reason saying which.

    Raises:
        InvalidIdentifier: the value is empty or holds only whitespace.
    """
    if not value:
        raise InvalidIdentifier(kind, "empty value")
    if not value.strip(TRIMMED_WHITESPACE) or value.isspace():
        raise InvalidIdentifier(kind, "whitespace-only value")
