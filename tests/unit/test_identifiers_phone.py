"""Phone normalization v1: E.164 as phonenumbers gives it, fast path and fallback."""

from __future__ import annotations

import pytest

from cleanroom.errors import InvalidIdentifier, InvalidInput
from cleanroom.identifiers.phone import (
    e164_fast_path,
    normalize_phone,
    normalize_phone_reference,
)
from cleanroom.identifiers.phone_plan import plan_for_region


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 (415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("1-415-555-2671", "US", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+44 20 7946 0018", "US", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("44 20 7946 0018", "GB", "+442079460018"),  # own country code without '+'
        ("06 6982 1234", "IT", "+390669821234"),  # Italian leading zero kept
        ("+39 06 6982 1234", "US", "+390669821234"),
        ("030 123456", "DE", "+4930123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("416 555 0123", "CA", "+14165550123"),
        ("(268) 464-1234", "AG", "+12684641234"),  # NANP Caribbean
        ("011 15-2345-6789", "AR", "+5491123456789"),  # national prefix transform
        ("090-1234-5678", "JP", "+819012345678"),
        ("+800 1234 5678", "US", "+80012345678"),  # non-geographic code
    ],
)
def test_fast_path_normalizes(raw: str, region: str, e164: str) -> None:
    plan = plan_for_region(region)
    assert plan is not None
    assert e164_fast_path(raw, plan) == e164
    assert normalize_phone(raw, region) == e164
    assert normalize_phone_reference(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("011 44 20 7946 0018", "US", "+442079460018"),  # international prefix
        ("00 44 20 7946 0018", "DE", "+442079460018"),
        ("tel:+1-415-555-2671", "US", "+14155552671"),
        ("415 555 2671 ext. 12", "US", "+14155552671"),  # phonenumbers drops extensions
        ("415/555/2671", "US", "+14155552671"),  # separator outside the grammar
        ("１４１５５５５２６７１", "US", "+14155552671"),  # full-width digits
        ("1-800-FLOWERS", "US", "+18003569377"),  # vanity letters
    ],
)
def test_outside_fast_path_falls_back_to_phonenumbers(raw: str, region: str, e164: str) -> None:
    plan = plan_for_region(region)
    assert plan is not None
    assert e164_fast_path(raw, plan) is None
    assert normalize_phone(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", "empty value"),
        ("  \t ", "US", "whitespace-only value"),
        ("call me", "US", "does not look like a phone number"),
        ("+", "US", "does not look like a phone number"),
        ("+999 1234 5678", "US", "unknown or missing country calling code"),
        ("1", "US", "does not look like a phone number"),
        ("011 4", "US", "too short after the international prefix"),
        ("1" * 30, "US", "too long to be a phone number"),
        (
            "415 555 267",
            "US",
            "not a valid number of country calling code +1 (read with default region US)",
        ),
        (
            "555-0100",
            "US",
            "not a valid number of country calling code +1 (read with default region US)",
        ),
        (
            "020 7946 001",
            "GB",
            "not a valid number of country calling code +44 (read with default region GB)",
        ),
        (
            "+44 20 7946 001",
            "US",
            "not a valid number of country calling code +44 (read with default region US)",
        ),
    ],
)
def test_rejects_with_reason(raw: str, region: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_phone(raw, region)
    assert (caught.value.kind, caught.value.reason) == ("phone", reason)
    with pytest.raises(InvalidIdentifier) as reference:
        normalize_phone_reference(raw, region)
    assert reference.value.reason == reason


def test_fast_path_rejects_invalid_number_itself() -> None:
    plan = plan_for_region("US")
    assert plan is not None
    with pytest.raises(InvalidIdentifier, match=r"not a valid number .*\+1"):
        e164_fast_path("415 555 267", plan)


@pytest.mark.parametrize("region", ["XX", "us", "", "001"])
def test_unknown_default_region_is_a_configuration_error(region: str) -> None:
    with pytest.raises(InvalidInput, match="unknown default region"):
        normalize_phone("+1 415 555 2671", region)
