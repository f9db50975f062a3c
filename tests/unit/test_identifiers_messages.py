"""Messages hashed to the curve: b"cleanroom/v1/" + kind + b"/" + SHA-256(normalized)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers import hash_message, identifier_digest

EMAIL_DIGEST = hashlib.sha256(b"janedoe@gmail.com").digest()


def test_message_layout() -> None:
    assert hash_message("email", EMAIL_DIGEST) == b"cleanroom/v1/email/" + EMAIL_DIGEST


def test_kind_tag_keeps_kinds_apart() -> None:
    assert hash_message("email", EMAIL_DIGEST) != hash_message("phone", EMAIL_DIGEST)


def test_raw_digest_is_sha256_of_normalized_value() -> None:
    assert identifier_digest("email", " Jane.Doe+x@GMAIL.com") == EMAIL_DIGEST
    phone = hashlib.sha256(b"+14155552671").digest()
    assert identifier_digest("phone", "(415) 555-2671") == phone
    assert identifier_digest("phone", "020 7946 0018", default_region="GB") == (
        hashlib.sha256(b"+442079460018").digest()
    )


@pytest.mark.parametrize(
    ("kind", "raw", "normalized"),
    [
        ("email", "Jane.Doe+x@GMAIL.com", "janedoe@gmail.com"),
        ("phone", "1 (415) 555-2671", "+14155552671"),
        ("maid", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
    ],
)
def test_raw_and_prehashed_inputs_of_one_person_give_one_message(
    kind: str, raw: str, normalized: str
) -> None:
    digest = hashlib.sha256(normalized.encode()).digest()
    from_raw = hash_message(kind, identifier_digest(kind, raw))
    for encoded in (digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode()):
        from_prehashed = hash_message(kind, identifier_digest(kind, encoded, prehashed=True))
        assert from_prehashed == from_raw


def test_prehashed_errors_name_the_column_kind() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        identifier_digest("phone", "abc", prehashed=True)
    assert caught.value.kind == "phone"
    assert caught.value.reason.startswith("pre-hashed value: wrong length for a SHA-256 digest")


@pytest.mark.parametrize("prehashed", [False, True])
def test_unknown_kind(prehashed: bool) -> None:
    with pytest.raises(InvalidIdentifier, match="unknown identifier kind 'fax'"):
        identifier_digest("fax", EMAIL_DIGEST.hex(), prehashed=prehashed)
    with pytest.raises(InvalidIdentifier, match="unknown identifier kind 'fax'"):
        hash_message("fax", EMAIL_DIGEST)


def test_digest_must_be_32_bytes() -> None:
    with pytest.raises(InvalidIdentifier, match="digest is 31 bytes"):
        hash_message("email", EMAIL_DIGEST[:31])
