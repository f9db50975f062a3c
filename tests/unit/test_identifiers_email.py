"""Email normalization v1: the UID2 rules and every rejection with its reason."""

from __future__ import annotations

import pytest

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.email import NON_ASCII_REASON, normalize_email


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Jane.Doe@Example.COM\t", "jane.doe@example.com"),
        ("Jane.Doe+ads@GMail.com", "janedoe@gmail.com"),
        ("j.a.n.e+a+b@gmail.com", "jane@gmail.com"),
        ("jane+ads@example.com", "jane+ads@example.com"),  # only gmail.com drops +suffix
        ("jane.doe@googlemail.com", "jane.doe@googlemail.com"),  # gmail.com only
        ("jane.doe@mail.gmail.com", "jane.doe@mail.gmail.com"),
        ("a@b.co", "a@b.co"),
    ],
)
def test_normalizes_by_uid2_rules(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty value"),
        ("   \t ", "whitespace-only value"),
        ("\u3000", "whitespace-only value"),
        ("jane.doe.example.com", "missing '@' (expected local@domain)"),
        ("jane@doe@example.com", "more than one '@' (expected local@domain)"),
        ("@example.com", "empty local part before '@'"),
        ("jane@", "empty domain after '@'"),
        ("jane@localhost", "domain has no dot (expected e.g. example.com)"),
        ("jane doe@example.com", "whitespace or control characters inside the address"),
        ("jane\x00@example.com", "whitespace or control characters inside the address"),
        ("jane@.example.com", "domain has an empty label (leading, trailing or doubled dot)"),
        ("jane@example.com.", "domain has an empty label (leading, trailing or doubled dot)"),
        ("jane@example..com", "domain has an empty label (leading, trailing or doubled dot)"),
        ("+ads@gmail.com", "gmail.com local part is empty once dots and the +suffix are removed"),
        ("...@gmail.com", "gmail.com local part is empty once dots and the +suffix are removed"),
    ],
)
def test_rejects_malformed_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_email(raw)
    assert (caught.value.kind, caught.value.reason) == ("email", reason)


@pytest.mark.parametrize("raw", ["jöhn@example.com", "john@exämple.com", "ＪＯＨＮ@example.com"])
def test_rejects_internationalized_addresses(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_email(raw)
    assert caught.value.reason == NON_ASCII_REASON
    assert "internationalized addresses are not supported" in str(caught.value)
