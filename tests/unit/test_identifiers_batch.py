"""normalize_batch: accepted values with positions, rejections with reasons, never aborts."""

from __future__ import annotations

import hashlib

import pytest

from cleanroom.errors import InvalidIdentifier, InvalidInput
from cleanroom.identifiers import Rejection, hash_message, identifier_digest, normalize_batch


def test_bad_values_are_set_aside_not_fatal() -> None:
    batch = normalize_batch("email", ["A@Example.com", "", "nobody", "b@example.com", "  "])
    assert batch.kind == "email" and not batch.prehashed
    assert batch.indices == [0, 3]
    assert batch.values == ["a@example.com", "b@example.com"]
    assert batch.rejected == [
        Rejection(1, "", "empty value"),
        Rejection(2, "nobody", "missing '@' (expected local@domain)"),
        Rejection(4, "  ", "whitespace-only value"),
    ]


def test_digests_and_messages_follow_values() -> None:
    batch = normalize_batch("phone", ["(415) 555-2671", "x", "+44 20 7946 0018"])
    assert batch.values == ["+14155552671", "+442079460018"]
    assert batch.digests() == [hashlib.sha256(v.encode()).digest() for v in batch.values]
    assert batch.messages() == [hash_message("phone", d) for d in batch.digests()]


def test_phone_batch_uses_default_region_and_falls_back() -> None:
    values = ["020 7946 0018", "00 1 415 555 2671", "020 7946 001"]
    batch = normalize_batch("phone", values, default_region="GB")
    assert batch.values == ["+442079460018", "+14155552671"]
    assert [r.index for r in batch.rejected] == [2]
    assert batch.rejected[0].reason.startswith("not a valid number of country calling code +44")


def test_prehashed_batch_matches_raw_batch() -> None:
    raw = normalize_batch("maid", ["6D92078A-8246-4BA4-AE5B-76104861E7DC"])
    digest = raw.digests()[0]
    hashed = normalize_batch("maid", [digest.hex().upper(), "zz"], prehashed=True)
    assert hashed.prehashed
    assert hashed.values == [digest.hex()]
    assert hashed.messages() == raw.messages()
    assert hashed.rejected[0].index == 1
    assert hashed.rejected[0].reason.startswith("pre-hashed value: wrong length")


def test_batch_agrees_with_single_value_api() -> None:
    values = ["Jane.Doe@gmail.com", "x@y", "JOHN@EXAMPLE.ORG"]
    batch = normalize_batch("email", values)
    assert batch.digests() == [identifier_digest("email", values[i]) for i in batch.indices]


def test_empty_batch() -> None:
    batch = normalize_batch("phone", [])
    assert (batch.indices, batch.values, batch.rejected, batch.messages()) == ([], [], [], [])


def test_unknown_kind_rejects_the_whole_column() -> None:
    with pytest.raises(InvalidIdentifier, match="unknown identifier kind 'fax'"):
        normalize_batch("fax", ["1"])


def test_unknown_default_region_rejects_the_whole_column() -> None:
    with pytest.raises(InvalidInput, match="unknown default region 'XX'"):
        normalize_batch("phone", ["+1 415 555 2671"], default_region="XX")
