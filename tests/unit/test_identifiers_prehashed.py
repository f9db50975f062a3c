"""Pre-hashed values: 64 hex or 44 base64 characters of a SHA-256 digest."""

from __future__ import annotations

import base64
import hashlib

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.prehashed import PREHASHED_KIND, parse_prehashed

DIGEST = hashlib.sha256(b"janedoe@gmail.com").digest()


@pytest.mark.parametrize(
    "encoded",
    [
        DIGEST.hex(),
        DIGEST.hex().upper(),
        " " + DIGEST.hex() + "\n",
        base64.b64encode(DIGEST).decode(),
    ],
)
def test_decodes_hex_and_base64(encoded: str) -> None:
    assert parse_prehashed(encoded) == DIGEST


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("", "empty value"),
        ("   ", "whitespace-only value"),
        (DIGEST.hex()[:-1], "wrong length for a SHA-256 digest: 63 characters"),
        (DIGEST.hex() + "0", "wrong length for a SHA-256 digest: 65 characters"),
        ("janedoe@gmail.com", "wrong length for a SHA-256 digest: 17 characters"),
        ("g" + DIGEST.hex()[1:], "non-hexadecimal characters in a 64-character"),
        ("٣" + DIGEST.hex()[1:], "non-hexadecimal characters in a 64-character"),
        ("!" + base64.b64encode(DIGEST).decode()[1:], "invalid base64 in a 44-character"),
        (base64.b64encode(b"x" * 33).decode(), "base64 decodes to 33 bytes"),
    ],
)
def test_rejects_with_reason(encoded: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_prehashed(encoded)
    assert caught.value.kind == PREHASHED_KIND
    assert caught.value.reason.startswith(reason)
