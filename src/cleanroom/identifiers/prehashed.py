"""Pre-hashed identifiers: SHA-256 of the normalized value, as hex or base64 (DESIGN §4).

UID2 and Customer Match accept lists that arrive already hashed; accepting the same encodings
lets such a list match the same people as a raw one.
"""

from __future__ import annotations

import base64
import binascii
import string

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.rules import TRIMMED_WHITESPACE, check_not_blank

__all__ = ["DIGEST_SIZE", "PREHASHED_KIND", "parse_prehashed"]

#: Bytes in a SHA-256 digest.
DIGEST_SIZE = 32
#: The kind named in errors of :func:`parse_prehashed`, which is not told the column's kind.
PREHASHED_KIND = "pre-hashed value"

_HEX_LENGTH = 2 * DIGEST_SIZE  # 64
_BASE64_LENGTH = 4 * ((DIGEST_SIZE + 2) // 3)  # 44, ending in one '='
_HEX_DIGITS = frozenset(string.hexdigits)


def parse_prehashed(value: str) -> bytes:
    """Decode a pre-hashed identifier to its 32-byte SHA-256 digest.

    Args:
        value: 64 hexadecimal characters (any case) or 44 characters of standard base64,
            surrounding whitespace allowed.

    Returns:
        The 32-byte digest.

    Raises:
        InvalidIdentifier: empty, whitespace-only, of the wrong length, or with characters
            outside the encoding.
    """
    text = value.strip(TRIMMED_WHITESPACE)
    if len(text) == _HEX_LENGTH:
        if not _HEX_DIGITS.issuperset(text):
            raise InvalidIdentifier(
                PREHASHED_KIND, "non-hexadecimal characters in a 64-character SHA-256 hex digest"
            )
        return bytes.fromhex(text)
    if len(text) == _BASE64_LENGTH:
        try:
            digest = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidIdentifier(
                PREHASHED_KIND, "invalid base64 in a 44-character SHA-256 base64 digest"
            ) from exc
        if len(digest) != DIGEST_SIZE:
            raise InvalidIdentifier(
                PREHASHED_KIND,
                f"base64 decodes to {len(digest)} bytes, a SHA-256 digest has {DIGEST_SIZE}",
            )
        return digest
    check_not_blank(PREHASHED_KIND, value)
    raise InvalidIdentifier(
        PREHASHED_KIND,
        f"wrong length for a SHA-256 digest: {len(text)} characters "
        f"(expected {_HEX_LENGTH} hexadecimal or {_BASE64_LENGTH} base64)",
    )
