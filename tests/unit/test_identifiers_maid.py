"""MAID normalization v1: lowercase hyphenated UUIDs, no limit-ad-tracking id."""

from __future__ import annotations

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.maid import LIMIT_AD_TRACKING_MAID, normalize_maid


def test_lowercases_and_trims() -> None:
    raw = " 6D92078A-8246-4BA4-AE5B-76104861E7DC\n"
    assert normalize_maid(raw) == "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def test_rejects_limit_ad_tracking_id() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_maid(LIMIT_AD_TRACKING_MAID)
    assert caught.value.reason == "all-zero id (the device has limited ad tracking)"


@pytest.mark.parametrize(
    "raw",
    [
        "6d92078a82464ba4ae5b76104861e7dc",  # unhyphenated
        "6d92078a-8246-4ba4-ae5b-76104861e7d",  # short
        "6d92078a-8246-4ba4-ae5b-76104861e7dcc",  # long
        "6d92078g-8246-4ba4-ae5b-76104861e7dc",  # non-hex
        "{6d92078a-8246-4ba4-ae5b-76104861e7dc}",  # braces
        "6d92078a-8246-4ba4-ae5b-76104861e7d٣",  # non-ASCII digit
    ],
)
def test_rejects_malformed(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_maid(raw)
    assert caught.value.kind == "maid"
    assert caught.value.reason.startswith("not a hyphenated UUID")


@pytest.mark.parametrize(("raw", "reason"), [("", "empty value"), (" \t", "whitespace-only value")])
def test_rejects_blank(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_maid(raw)
    assert caught.value.reason == reason
