"""Phone normalization v1: E.164 exactly as phonenumbers gives it (DESIGN §5).

The result is, by definition, ``format_number(parse(value, default_region), E164)`` for the
numbers ``is_valid_number`` accepts. Calling phonenumbers costs more per number than the tenth
of hash-to-curve + encrypt that the matcher may spend on normalization
(``benchmarks/normalize_quick.py`` measures both), so common inputs take a fast path that runs
the same steps on precompiled metadata (:mod:`cleanroom.identifiers.phone_plan`):

* accepted input: ASCII digits, the separators `` ()-.`` and one '+' before the first digit;
  nothing else (letters, extensions, '#', tabs, other plus or digit forms) — that goes to
  phonenumbers;
* international prefixes such as ``011``/``00`` and a '+' not followed by a known country
  code go to phonenumbers;
* everything else — country code after '+', the default region's own code written without
  '+', national prefix and carrier code stripping, possible lengths, the region a shared
  country code belongs to, validity — is reproduced step by step.

``tests/property/test_phone_fast_path.py`` checks the fast path against phonenumbers.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.phone_plan import (
    COUNTRY_CODE_DIGITS,
    MAX_NSN_LENGTH,
    MIN_NSN_LENGTH,
    LengthVerdict,
    NumberingPlan,
    country_validity,
    plan_for_country_code,
    plan_for_region,
)
from cleanroom.identifiers.rules import check_not_blank

__all__ = ["DEFAULT_REGION", "e164_fast_path", "normalize_phone", "normalize_phone_reference"]

#: Region assumed for numbers written without a country code, unless the policy says otherwise.
DEFAULT_REGION = "US"

# phonenumbers strips these anywhere in a number; for the fast path they carry no information.
_SEPARATORS = str.maketrans("", "", " ()-.")
# phonenumbers refuses longer input (_MAX_INPUT_STRING_LENGTH); let it say so.
_MAX_INPUT_LENGTH = 250
# Verdicts after which parse keeps the number with its national prefix stripped.
_STRIPPED_KEPT = (LengthVerdict.IS_POSSIBLE, LengthVerdict.TOO_LONG)

_PARSE_FAILURES = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown or missing country calling code",
    NumberParseException.NOT_A_NUMBER: "does not look like a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
    NumberParseException.TOO_LONG: "too long to be a phone number",
}


def normalize_phone(value: str, default_region: str = DEFAULT_REGION) -> str:
    """Normalize a phone number to E.164 with the leading '+'.

    Args:
        value: the number as written, national (``"(415) 555-2671"``) or international
            (``"+44 20 7946 0018"``).
        default_region: region of numbers written without a country code.

    Returns:
        The E.164 form, e.g. ``"+14155552671"``.

    Raises:
        InvalidIdentifier: empty, whitespace-only, not parseable as a number, or not a valid
            number of its country.
        InvalidInput: ``default_region`` is not a region phonenumbers knows.
    """
    home = plan_for_region(default_region)
    if home is not None:
        e164 = e164_fast_path(value, home)
        if e164 is not None:
            return e164
    return normalize_phone_reference(value, default_region)


def normalize_phone_reference(value: str, default_region: str = DEFAULT_REGION) -> str:
    """Normalize a phone number by calling phonenumbers (the definition the fast path follows).

    Args:
        value: the number as written.
        default_region: region of numbers written without a country code.

    Returns:
        The E.164 form.

    Raises:
        InvalidIdentifier: as :func:`normalize_phone`.
    """
    check_not_blank("phone", value)
    try:
        number = phonenumbers.parse(value, default_region)
    except NumberParseException as exc:
        reason = _PARSE_FAILURES.get(exc.error_type, "does not look like a phone number")
        raise InvalidIdentifier("phone", reason) from exc
    if not phonenumbers.is_valid_number(number):
        raise _not_valid(number.country_code or 0, default_region)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def e164_fast_path(value: str, home: NumberingPlan) -> str | None:
    """Run parse + is_valid_number + E.164 format on precompiled metadata.

    Args:
        value: the number as written.
        home: the compiled plan of the default region (:func:`phone_plan.plan_for_region`).

    Returns:
        The E.164 form, or ``None`` when the input is outside what the fast path reproduces
        and phonenumbers must decide.

    Raises:
        InvalidIdentifier: the number is certainly too short, too long or not valid, with the
            same reason :func:`normalize_phone_reference` gives.
    """
    if len(value) > _MAX_INPUT_LENGTH:
        return None
    compact = value.translate(_SEPARATORS)
    international = compact[:1] == "+"
    digits = compact[1:] if international else compact
    if len(digits) < 3 or not digits.isdigit() or not digits.isascii():
        return None  # non-digits, or so short that parse's viability rules decide

    # _maybe_extract_country_code
    if international:
        if digits[0] == "0":
            return None  # parse retries such numbers as national ones
        if digits[:1] in COUNTRY_CODE_DIGITS:
            code_length = 1
        elif digits[:2] in COUNTRY_CODE_DIGITS:
            code_length = 2
        elif digits[:3] in COUNTRY_CODE_DIGITS:
            code_length = 3
        else:
            return None
        plan = plan_for_country_code(digits[:code_length])
        if plan is None:
            return None
        national = digits[code_length:]
    else:
        idd = home.international_prefix
        if idd is not None and idd.match(digits):
            return None  # dialled with an international prefix such as 011 or 00
        plan = home
        national = digits
        own_code = home.country_code_digits
        if digits.startswith(own_code):
            # The default region's code written without '+': parse takes it as the country
            # code when that makes the number fit, or when the whole is too long.
            candidate = home.strip_national_prefix(digits[len(own_code) :])
            if (
                not home.matches_general(digits) and home.matches_general(candidate)
            ) or home.length_verdict(len(digits)) is LengthVerdict.TOO_LONG:
                main = plan_for_country_code(own_code)
                if main is None:
                    return None
                plan = main
                national = candidate

    # The rest of parse: strip a national prefix if what remains has a possible length.
    if len(national) < MIN_NSN_LENGTH:
        raise InvalidIdentifier("phone", _PARSE_FAILURES[NumberParseException.TOO_SHORT_NSN])
    candidate = plan.strip_national_prefix(national)
    if plan.length_verdict(len(candidate)) in _STRIPPED_KEPT:
        national = candidate
    if len(national) < MIN_NSN_LENGTH:
        raise InvalidIdentifier("phone", _PARSE_FAILURES[NumberParseException.TOO_SHORT_NSN])
    if len(national) > MAX_NSN_LENGTH:
        raise InvalidIdentifier("phone", _PARSE_FAILURES[NumberParseException.TOO_LONG])
    # The national number keeps its leading zeros (phonenumbers' "Italian leading zero"), so
    # the national significant number is exactly these digits.
    if not country_validity(plan.country_code).is_valid(national):
        raise _not_valid(plan.country_code, home.region)
    return "+" + plan.country_code_digits + national


def _not_valid(country_code: int, default_region: str) -> InvalidIdentifier:
    return InvalidIdentifier(
        "phone",
        f"not a valid number of country calling code +{country_code} "
        f"(read with default region {default_region})",
    )
