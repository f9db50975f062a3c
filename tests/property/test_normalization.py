"""Normalization v1 is idempotent: normalize(normalize(x)) == normalize(x)."""

from __future__ import annotations

import phonenumbers
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers import normalize

REGIONS = ["US", "GB", "DE", "FR", "IT", "IN", "BR", "AU", "CA", "JP", "MX", "AR", "JM", "PR"]

local_parts = st.text(alphabet="abcXYZ019.+_-", min_size=1, max_size=12)
domains = st.sampled_from(["gmail.com", "GMail.com", "example.com", "Mail.Example.org", "x.io"])
padding = st.sampled_from(["", " ", "\t", "  \n"])


def _normalized(kind: str, value: str, region: str = "US") -> str:
    try:
        return normalize(kind, value, region)
    except InvalidIdentifier:
        assume(False)
        raise


@settings(max_examples=500, deadline=None)
@given(local=local_parts, domain=domains, before=padding, after=padding)
def test_email_idempotent(local: str, domain: str, before: str, after: str) -> None:
    once = _normalized("email", before + local + "@" + domain + after)
    assert normalize("email", once) == once


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet="aZ9.+@ _-\té", max_size=16), domain=st.sampled_from(["", "@a.b"]))
def test_email_idempotent_on_messy_text(value: str, domain: str) -> None:
    try:
        once = normalize("email", value + domain)
    except InvalidIdentifier:
        return  # only accepted values have a normal form to keep
    assert normalize("email", once) == once


@st.composite
def formatted_phones(draw: st.DrawFn) -> tuple[str, str]:
    region = draw(st.sampled_from(REGIONS))
    number_type = draw(st.sampled_from([phonenumbers.PhoneNumberType.MOBILE, 0]))
    example = phonenumbers.example_number_for_type(region, number_type)
    assert example is not None
    number_format = draw(st.sampled_from([PhoneNumberFormat.NATIONAL, 1, 0]))
    text = phonenumbers.format_number(example, number_format)
    separator = draw(st.sampled_from([" ", "-", ".", ""]))
    default_region = draw(st.sampled_from([region, *REGIONS]))
    return text.replace(" ", separator), default_region


@settings(max_examples=400, deadline=None)
@given(phone=formatted_phones())
def test_phone_idempotent(phone: tuple[str, str]) -> None:
    value, region = phone
    once = _normalized("phone", value, region)
    # E.164 carries its country code, so the default region no longer matters.
    for again_region in (region, "US", "GB"):
        assert normalize("phone", once, again_region) == once


@settings(max_examples=300, deadline=None)
@given(value=st.uuids(), upper=st.booleans(), pad=padding)
def test_maid_idempotent(value: object, upper: bool, pad: str) -> None:
    text = str(value).upper() if upper else str(value)
    once = _normalized("maid", pad + text + pad)
    assert normalize("maid", once) == once
