"""The exception tree of cleanroom.

Every error the library raises on purpose derives from :class:`CleanroomError`, so a caller (the
CLI, the gRPC adapter) catches one base. Errors caused by bad input also derive from
``ValueError`` so generic callers treat them as such::

    CleanroomError
    ├── InvalidInput (ValueError)          bad data from a caller or the other party
    │   ├── InvalidElement                 an encoded group element failed validation
    │   ├── InvalidIdentifier              an identifier could not be normalized
    │   └── InvalidKey                     key bytes of the wrong size or form
    └── UnknownSuite (ValueError)          a ciphersuite id this build does not implement

Messages never contain key material: an error names the row, the field and the reason.
"""

from __future__ import annotations

__all__ = [
    "CleanroomError",
    "InvalidElement",
    "InvalidIdentifier",
    "InvalidInput",
    "InvalidKey",
    "UnknownSuite",
]


class CleanroomError(Exception):
    """Base of every error cleanroom raises on purpose."""


class InvalidInput(CleanroomError, ValueError):
    """Input from a caller or from the other party is malformed."""


class InvalidElement(InvalidInput):
    """An encoded group element is malformed, off the curve, or of small order.

    Attributes:
        row: index of the first bad row in the array that was validated, or ``None``.
        reason: why it was rejected, in words.
    """

    def __init__(self, reason: str, row: int | None = None) -> None:
        self.row = row
        self.reason = reason
        where = f"element at row {row}: " if row is not None else "element: "
        super().__init__(where + reason)


class InvalidIdentifier(InvalidInput):
    """An identifier could not be normalized.

    Attributes:
        kind: the identifier type (``email``, ``phone``, ``maid``).
        reason: why it was rejected, in words a person understands.
    """

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"invalid {kind}: {reason}")


class InvalidKey(InvalidInput):
    """Key bytes are of the wrong size or form. The message never contains the bytes."""


class UnknownSuite(CleanroomError, ValueError):
    """The ciphersuite id is not one this build implements."""
