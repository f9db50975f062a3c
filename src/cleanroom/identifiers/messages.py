"""The message hashed to the curve for one identifier (DESIGN §4).

``b"cleanroom/v1/" + kind + b"/" + SHA-256(normalized value)``: hashing the normalized value
first lets a list that arrives pre-hashed (as UID2 and Customer Match accept) match the same
person as a raw one, and the kind tag keeps an email and a phone that happen to share bytes
apart.
"""

from __future__ import annotations

import hashlib

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.normalize import normalize
from cleanroom.identifiers.phone import DEFAULT_REGION
from cleanroom.identifiers.prehashed import DIGEST_SIZE, parse_prehashed
from cleanroom.identifiers.rules import require_kind

__all__ = [
    "MESSAGE_PREFIX",
    "hash_message",
    "identifier_digest",
    "message_prefix",
    "normalized_digest",
]

#: Start of every message; the version names the message format of DESIGN §4.
MESSAGE_PREFIX = b"cleanroom/v1/"


def message_prefix(kind: str) -> bytes:
    """``b"cleanroom/v1/" + kind + b"/"``, the part of the message before the digest.

    Raises:
        InvalidIdentifier: the kind is unknown.
    """
    require_kind(kind)
    return MESSAGE_PREFIX + kind.encode("ascii") + b"/"


def normalized_digest(normalized: str) -> bytes:
    """SHA-256 of a normalized value (UTF-8; every v1 normalized value is ASCII)."""
    return hashlib.sha256(normalized.encode("utf-8")).digest()


def hash_message(kind: str, digest: bytes) -> bytes:
    """Build the message hashed to the curve.

    Args:
        kind: ``"email"``, ``"phone"`` or ``"maid"``.
        digest: the 32-byte SHA-256 of the normalized value.

    Returns:
        ``b"cleanroom/v1/" + kind + b"/" + digest``.

    Raises:
        InvalidIdentifier: the kind is unknown or the digest is not 32 bytes.
    """
    if len(digest) != DIGEST_SIZE:
        raise InvalidIdentifier(
            kind, f"digest is {len(digest)} bytes, a SHA-256 digest has {DIGEST_SIZE}"
        )
    return message_prefix(kind) + digest


def identifier_digest(
    kind: str, value: str, *, prehashed: bool = False, default_region: str = DEFAULT_REGION
) -> bytes:
    """SHA-256 of the normalized identifier, computed or, for a pre-hashed value, decoded.

    Args:
        kind: ``"email"``, ``"phone"`` or ``"maid"``.
        value: the raw identifier, or its SHA-256 in hex or base64 when ``prehashed``.
        prehashed: the value is already SHA-256 of the normalized identifier.
        default_region: region of phone numbers written without a country code.

    Returns:
        The 32-byte digest.

    Raises:
        InvalidIdentifier: unknown kind, or a value that cannot be normalized or decoded.
        InvalidInput: ``default_region`` is unknown (raw phones only).
    """
    if prehashed:
        require_kind(kind)
        try:
            return parse_prehashed(value)
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(kind, f"pre-hashed value: {exc.reason}") from exc
    return normalized_digest(normalize(kind, value, default_region))
