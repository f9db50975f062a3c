"""The phone fast path gives exactly what phonenumbers gives (parse + is_valid + E.164).

Inputs are generated in and around the fast path's grammar: digit soups with separators and
an optional '+', and real example numbers of every region and type, formatted national,
international and E.164, then perturbed. Default regions stress leading zeros (IT), national
prefix transforms (AR, BR, MX), shared country codes (NANP, GB, AU, ...) and the rest.

Run with many examples locally: CLEANROOM_FAST_PATH_EXAMPLES=20000 pytest <this file>.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.phone import (
    e164_fast_path,
    normalize_phone,
    normalize_phone_reference,
)
from cleanroom.identifiers.phone_plan import plan_for_region

EXAMPLES = int(os.environ.get("CLEANROOM_FAST_PATH_EXAMPLES", "2000"))

NANP_CARIBBEAN = ["AG", "AI", "AS", "BB", "BM", "BS", "DM", "DO", "GD", "GU", "JM", "KN"]
NANP_CARIBBEAN += ["KY", "LC", "MP", "MS", "PR", "SX", "TC", "TT", "VC", "VG", "VI"]
FOCUS_REGIONS = ["US", "GB", "DE", "FR", "IT", "IN", "BR", "AU", "CA", "JP", "MX", "AR"]
FOCUS_REGIONS += [*NANP_CARIBBEAN, "GG", "IM", "JE", "VA", "KZ", "RU", "SM", "CH", "NL", "ES"]
ALL_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)

SEPARATORS = [" ", "-", ".", "(", ")", "", "", ""]
NUMBER_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
FORMATS = [PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]


def _example_numbers() -> list[phonenumbers.PhoneNumber]:
    numbers = []
    for region in ALL_REGIONS:
        for number_type in NUMBER_TYPES:
            number = phonenumbers.example_number_for_type(region, number_type)
            if number is not None:
                numbers.append(number)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            numbers.append(number)
    return numbers


EXAMPLE_NUMBERS = _example_numbers()


def reference(value: str, region: str) -> str | None:
    """phonenumbers' own answer: the E.164 string, or None when it rejects the number."""
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def outcome(normalize_one: Callable[..., str | None], *args: object) -> tuple[str, str]:
    """("e164", result), ("invalid", reason) or, for the fast path only, ("fallback", "")."""
    try:
        result = normalize_one(*args)
    except InvalidIdentifier as exc:
        return ("invalid", exc.reason)
    return ("fallback", "") if result is None else ("e164", result)


@st.composite
def digit_soup(draw: st.DrawFn) -> str:
    digits = draw(st.text(alphabet="0123456789", min_size=2, max_size=20))
    pieces = [draw(st.sampled_from(["", "", "+", "(+", " +", "+ "]))]
    for digit in digits:
        pieces.append(draw(st.sampled_from(SEPARATORS)))
        pieces.append(digit)
    pieces.append(draw(st.sampled_from(["", "", ")", " ", "."])))
    return "".join(pieces)


@st.composite
def perturbed_example(draw: st.DrawFn) -> str:
    number = draw(st.sampled_from(EXAMPLE_NUMBERS))
    text = phonenumbers.format_number(number, draw(st.sampled_from(FORMATS)))
    change = draw(st.sampled_from(["none", "none", "swap", "drop", "add", "prefix", "unplus"]))
    digit_positions = [i for i, c in enumerate(text) if c.isdigit()]
    position = draw(st.sampled_from(digit_positions))
    digit = draw(st.sampled_from("0123456789"))
    if change == "swap":
        text = text[:position] + digit + text[position + 1 :]
    elif change == "drop":
        text = text[:position] + text[position + 1 :]
    elif change == "add":
        text = text[:position] + digit + text[position:]
    elif change == "prefix":
        text = draw(st.sampled_from(["0", "1", "00", "011", "+", "+1 ", "(0)", "44", "39"])) + text
    elif change == "unplus":
        text = text.replace("+", "")
    separator = draw(st.sampled_from([" ", "-", ".", "  ", " - "]))
    return text.replace(" ", separator)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    value=st.one_of(digit_soup(), perturbed_example()),
    region=st.one_of(st.sampled_from(FOCUS_REGIONS), st.sampled_from(ALL_REGIONS)),
)
def test_fast_path_agrees_with_phonenumbers(value: str, region: str) -> None:
    expected = reference(value, region)
    plan = plan_for_region(region)
    assert plan is not None
    kind, result = outcome(e164_fast_path, value, plan)
    if kind == "e164":
        assert result == expected
    elif kind == "invalid":
        assert expected is None
        # The fast path gives the reason phonenumbers' verdict maps to.
        assert outcome(normalize_phone_reference, value, region) == ("invalid", result)
    # With its fallback, normalize_phone is phonenumbers, whatever the fast path did.
    assert outcome(normalize_phone, value, region) == (
        ("invalid", outcome(normalize_phone_reference, value, region)[1])
        if expected is None
        else ("e164", expected)
    )


@pytest.mark.parametrize("number_format", FORMATS)
def test_fast_path_decides_nearly_all_example_numbers(number_format: int) -> None:
    # Guards the point of the fast path: formatted real numbers must rarely fall back.
    decided = 0
    for number in EXAMPLE_NUMBERS:
        region = phonenumbers.region_code_for_number(number) or "US"
        if region == "001":
            region = "US"
        plan = plan_for_region(region)
        assert plan is not None
        text = phonenumbers.format_number(number, number_format)
        if outcome(e164_fast_path, text, plan)[0] != "fallback":
            decided += 1
    assert decided >= 0.99 * len(EXAMPLE_NUMBERS)
