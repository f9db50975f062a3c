"""normalize() dispatch and the facts of normalization v1 (the API is pinned in test_public_api)."""

from __future__ import annotations

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers import KINDS, NORMALIZATION_VERSION, normalize


def test_kinds_and_version() -> None:
    assert KINDS == ("email", "phone", "maid")
    assert NORMALIZATION_VERSION == 1


@pytest.mark.parametrize(
    ("kind", "raw", "normalized"),
    [
        ("email", " USER@Example.com ", "user@example.com"),
        ("phone", "415.555.2671", "+14155552671"),
        ("maid", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
    ],
)
def test_dispatches_by_kind(kind: str, raw: str, normalized: str) -> None:
    assert normalize(kind, raw) == normalized


def test_default_region_reaches_phones() -> None:
    assert normalize("phone", "0491 570 006", default_region="AU") == "+61491570006"


def test_unknown_kind() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize("fax", "+1 415 555 2671")
    assert caught.value.kind == "fax"
    assert (
        caught.value.reason == "unknown identifier kind 'fax' (expected one of email, phone, maid)"
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("raw", "reason"), [("", "empty value"), (" \t ", "whitespace-only value")]
)
def test_blank_values_of_every_kind(kind: str, raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize(kind, raw)
    assert (caught.value.kind, caught.value.reason) == (kind, reason)
