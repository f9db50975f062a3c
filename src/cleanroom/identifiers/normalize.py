"""One entry point that normalizes a value of any kind (DESIGN §5)."""

from __future__ import annotations

from cleanroom.identifiers.email import normalize_email
from cleanroom.identifiers.maid import normalize_maid
from cleanroom.identifiers.phone import DEFAULT_REGION, normalize_phone
from cleanroom.identifiers.rules import require_kind

__all__ = ["normalize"]


def normalize(kind: str, value: str, default_region: str = DEFAULT_REGION) -> str:
    """Normalize one identifier by the rules of normalization v1.

    Args:
        kind: ``"email"``, ``"phone"`` or ``"maid"``.
        value: the identifier as found in a list.
        default_region: region of phone numbers written without a country code (from the
            policy); ignored for other kinds.

    Returns:
        The normalized value: both parties produce exactly this string for the same person.

    Raises:
        InvalidIdentifier: the kind is unknown or the value cannot be normalized; ``reason``
            says why.
        InvalidInput: ``default_region`` is unknown (phones only).
    """
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, default_region)
    if kind == "maid":
        return normalize_maid(value)
    require_kind(kind)
    raise AssertionError(f"kind {kind!r} is in KINDS but has no normalizer")  # pragma: no cover
