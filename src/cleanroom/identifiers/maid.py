"""Mobile advertising id (IDFA/GAID) normalization v1 (DESIGN §5)."""

from __future__ import annotations

import re

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.rules import TRIMMED_WHITESPACE, check_not_blank

__all__ = ["LIMIT_AD_TRACKING_MAID", "normalize_maid"]

#: The id iOS and Android report when the user has limited ad tracking: it names nobody.
LIMIT_AD_TRACKING_MAID = "00000000-0000-0000-0000-000000000000"

# Explicit ASCII classes: ``\w`` or ``str.isalnum`` would admit non-ASCII digits.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalize_maid(value: str) -> str:
    """Normalize a mobile advertising id to a lowercase, hyphenated UUID.

    Args:
        value: an IDFA or GAID in 8-4-4-4-12 hexadecimal form, any case, surrounding
            whitespace allowed.

    Returns:
        The lowercase hyphenated UUID.

    Raises:
        InvalidIdentifier: empty, whitespace-only, not a hyphenated UUID, or the all-zero
            (limit-ad-tracking) id.
    """
    maid = value.strip(TRIMMED_WHITESPACE).lower()
    if _UUID.fullmatch(maid) is None:
        check_not_blank("maid", value)
        raise InvalidIdentifier(
            "maid",
            "not a hyphenated UUID (expected 8-4-4-4-12 hexadecimal digits, "
            "e.g. 6d92078a-8246-4ba4-ae5b-76104861e7dc)",
        )
    if maid == LIMIT_AD_TRACKING_MAID:
        raise InvalidIdentifier("maid", "all-zero id (the device has limited ad tracking)")
    return maid
