"""Numbering plans compiled once from phonenumbers' own metadata, for the phone fast path.

``phonenumbers.parse`` + ``is_valid_number`` + ``format_number`` spend most of their time on
every number re-deriving the same per-region facts (and recompiling regular expressions that
fall out of ``re``'s small cache). The fast path in :mod:`cleanroom.identifiers.phone` does the
same steps on the same metadata, so this module precomputes those facts per region: the
patterns compiled once, the possible-length verdicts tabulated, and the validity test of each
region merged into one regular expression per number length.

Every function here mirrors a named function of ``phonenumbers.phonenumberutil`` (the same
from 8.13, the floor in pyproject.toml, to 9.x) and says which; the property test
``tests/property/test_phone_fast_path.py`` checks the result against the phonenumbers
installed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    SUPPORTED_REGIONS,
    PhoneMetadata,
    PhoneNumberDesc,
    region_code_for_country_code,
)

from cleanroom.errors import InvalidInput

__all__ = [
    "COUNTRY_CODE_DIGITS",
    "MAX_NSN_LENGTH",
    "MIN_NSN_LENGTH",
    "CountryValidity",
    "LengthVerdict",
    "NumberingPlan",
    "country_validity",
    "plan_for_country_code",
    "plan_for_region",
]

# phonenumbers' _MIN_LENGTH_FOR_NSN and _MAX_LENGTH_FOR_NSN.
MIN_NSN_LENGTH = 2
MAX_NSN_LENGTH = 17
# Longest digit string a number of at most 250 characters (phonenumbers'
# _MAX_INPUT_STRING_LENGTH) can give, with room for a national-prefix transform.
_MAX_TABULATED_LENGTH = 300
# phonenumbers' id for the non-geographic "world" region of codes such as +800.
_NON_GEO_REGION = "001"

#: Every country calling code phonenumbers knows, as the digits written after '+'.
COUNTRY_CODE_DIGITS: frozenset[str] = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)


class LengthVerdict(enum.IntEnum):
    """phonenumbers' ValidationResult, as returned by ``_test_number_length``."""

    IS_POSSIBLE = 0
    IS_POSSIBLE_LOCAL_ONLY = 1
    TOO_SHORT = 3
    INVALID_LENGTH = 4
    TOO_LONG = 5


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """What parsing needs from one region's metadata (``PhoneMetadata``), compiled.

    Attributes:
        region: the region code of the metadata (``"001"`` for non-geographic codes).
        country_code: the region's country calling code.
        country_code_digits: the same, as the digits written after '+'.
        international_prefix: the region's IDD pattern (``011`` in the US), or ``None``.
        general: the general national-number pattern, or ``None`` (matches nothing).
        national_prefix: ``national_prefix_for_parsing``, or ``None``.
        national_prefix_transform: ``national_prefix_transform_rule``, or ``None``.
        length_verdicts: ``_test_number_length`` for every digit count up to a bound.
    """

    region: str
    country_code: int
    country_code_digits: str
    international_prefix: re.Pattern[str] | None
    general: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    national_prefix_transform: str | None
    length_verdicts: tuple[LengthVerdict, ...]

    def matches_general(self, number: str) -> bool:
        """``_match_national_number(number, general_desc, False)``: a full match."""
        return self.general is not None and self.general.fullmatch(number) is not None

    def length_verdict(self, length: int) -> LengthVerdict:
        """``_test_number_length`` (type UNKNOWN) for a national number of ``length`` digits."""
        if length < len(self.length_verdicts):
            return self.length_verdicts[length]
        # Every possible and local-only length in the metadata is below 20.
        return LengthVerdict.TOO_LONG

    def strip_national_prefix(self, number: str) -> str:
        """``_maybe_strip_national_prefix_carrier_code``, keeping only the number it returns."""
        prefix = self.national_prefix
        if not number or prefix is None:
            return number
        match = prefix.match(number)
        if match is None:
            return number
        viable_before = self.matches_general(number)
        transform = self.national_prefix_transform
        groups = match.groups()
        if not transform or groups[-1] is None:
            stripped = number[match.end() :]
        else:
            stripped = prefix.sub(transform, number, count=1)
        # Stripping must not turn a number that fits the plan into one that does not.
        if viable_before and not self.matches_general(stripped):
            return number
        return stripped


@dataclass(frozen=True, slots=True)
class _RegionValidity:
    """One region's part in ``region_code_for_number`` and ``is_valid_number_for_region``."""

    choosable: bool  # metadata_for_region(region) exists
    leading_digits: re.Pattern[str] | None
    country_code_matches: bool
    # Index: national significant number length. A full match means _number_type_helper
    # returns a type other than UNKNOWN; None means no number of that length can.
    typed_by_length: tuple[re.Pattern[str] | None, ...]

    def has_type(self, nsn: str) -> bool:
        pattern = self.typed_by_length[len(nsn)]
        return pattern is not None and pattern.fullmatch(nsn) is not None


@dataclass(frozen=True, slots=True)
class CountryValidity:
    """``is_valid_number`` for the numbers of one country calling code."""

    regions: tuple[_RegionValidity, ...]

    def is_valid(self, nsn: str) -> bool:
        """Whether phonenumbers deems this national significant number valid.

        Args:
            nsn: national significant number of 2 to 17 digits.
        """
        regions = self.regions
        if len(regions) == 1:
            only = regions[0]
            return only.country_code_matches and only.has_type(nsn)
        # _region_code_for_number_from_list: the first region whose leading digits match, or
        # (without leading digits) whose patterns accept the number, is the number's region.
        for region in regions:
            if not region.choosable:
                continue
            if region.leading_digits is not None:
                if region.leading_digits.match(nsn):
                    return region.country_code_matches and region.has_type(nsn)
            elif region.has_type(nsn):
                return region.country_code_matches
        return False


_plans_by_region: dict[str, NumberingPlan | None] = {}
_plans_by_country_code: dict[str, NumberingPlan | None] = {}
_validity_by_country_code: dict[int, CountryValidity] = {}
_compiled: dict[str, re.Pattern[str]] = {}


def plan_for_region(region: str) -> NumberingPlan | None:
    """The compiled plan of a default region, or ``None`` when the fast path cannot use it.

    Args:
        region: a region code phonenumbers supports, e.g. ``"US"``.

    Raises:
        InvalidInput: phonenumbers does not know the region.
    """
    try:
        return _plans_by_region[region]
    except KeyError:
        pass
    if region not in SUPPORTED_REGIONS:
        raise InvalidInput(
            f"unknown default region {region!r} for phone numbers "
            "(expected an upper-case ISO 3166 code phonenumbers supports, e.g. 'US')"
        )
    plan = _compile_plan(PhoneMetadata.metadata_for_region(region, None))
    _plans_by_region[region] = plan
    return plan


def plan_for_country_code(country_code_digits: str) -> NumberingPlan | None:
    """The plan parse uses once it has read a country calling code: its main region's."""
    try:
        return _plans_by_country_code[country_code_digits]
    except KeyError:
        pass
    country_code = int(country_code_digits)
    main_region = region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, main_region)
    plan = _compile_plan(metadata)
    _plans_by_country_code[country_code_digits] = plan
    return plan


def country_validity(country_code: int) -> CountryValidity:
    """The compiled ``is_valid_number`` test for numbers of one country calling code."""
    try:
        return _validity_by_country_code[country_code]
    except KeyError:
        pass
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    validity = CountryValidity(tuple(_compile_region(country_code, r) for r in regions))
    _validity_by_country_code[country_code] = validity
    return validity


def _compile_plan(metadata: PhoneMetadata | None) -> NumberingPlan | None:
    if metadata is None or metadata.country_code is None:
        return None
    general = metadata.general_desc
    if general is None or not general.possible_length:
        return None  # phonenumbers itself fails on such metadata; let it say so
    prefix = metadata.national_prefix_for_parsing or None
    transform = metadata.national_prefix_transform_rule or None
    prefix_pattern = _pattern(prefix) if prefix is not None else None
    if transform is not None and prefix_pattern is not None and prefix_pattern.groups == 0:
        return None  # phonenumbers would index an empty groups() tuple here
    local_only = general.possible_length_local_only
    possible = general.possible_length
    return NumberingPlan(
        region=metadata.id,
        country_code=metadata.country_code,
        country_code_digits=str(metadata.country_code),
        international_prefix=(
            _pattern(metadata.international_prefix) if metadata.international_prefix else None
        ),
        general=_pattern(general.national_number_pattern)
        if general.national_number_pattern
        else None,
        national_prefix=prefix_pattern,
        national_prefix_transform=transform,
        length_verdicts=tuple(
            _length_verdict(n, possible, local_only) for n in range(_MAX_TABULATED_LENGTH)
        ),
    )


def _length_verdict(
    length: int, possible: Sequence[int], local_only: Sequence[int]
) -> LengthVerdict:
    """``_test_number_length`` with type UNKNOWN, i.e. against the general description."""
    if length in local_only:
        return LengthVerdict.IS_POSSIBLE_LOCAL_ONLY
    if possible[0] == length:
        return LengthVerdict.IS_POSSIBLE
    if possible[0] > length:
        return LengthVerdict.TOO_SHORT
    if possible[-1] < length:
        return LengthVerdict.TOO_LONG
    if length in possible[1:]:
        return LengthVerdict.IS_POSSIBLE
    return LengthVerdict.INVALID_LENGTH


def _compile_region(country_code: int, region: str) -> _RegionValidity:
    chooser = PhoneMetadata.metadata_for_region(region.upper(), None)
    validator = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if region == _NON_GEO_REGION:
        code_matches = True
    else:
        code_matches = chooser is not None and chooser.country_code == country_code
    # In a shared-code list every region is geographic, so the metadata that picks the
    # region and the one that validates it are the same object.
    typed_from = validator if validator is not None else chooser
    return _RegionValidity(
        choosable=chooser is not None,
        leading_digits=(
            _pattern(chooser.leading_digits)
            if chooser is not None and chooser.leading_digits is not None
            else None
        ),
        country_code_matches=code_matches and validator is not None,
        typed_by_length=tuple(_typed_pattern(typed_from, n) for n in range(MAX_NSN_LENGTH + 1)),
    )


def _typed_pattern(metadata: PhoneMetadata | None, length: int) -> re.Pattern[str] | None:
    """One pattern that fully matches exactly the numbers ``_number_type_helper`` types.

    That helper needs the general description to match and then any one type description;
    mobile is skipped when the metadata says its pattern equals fixed line's. Each match
    also needs the length among the description's possible lengths, which is fixed here.
    The general test becomes a look-ahead anchored at the end, so one ``fullmatch`` does both.
    """
    if metadata is None or not _accepts_length(metadata.general_desc, length):
        return None
    assert metadata.general_desc is not None  # by _accepts_length
    types = [
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
        metadata.fixed_line,
    ]
    if not metadata.same_mobile_and_fixed_line_pattern:
        types.append(metadata.mobile)
    alternatives = [
        f"(?:{desc.national_number_pattern})"
        for desc in types
        if desc is not None and _accepts_length(desc, length)
    ]
    if not alternatives:
        return None
    general = metadata.general_desc.national_number_pattern
    return _pattern(f"(?=(?:{general})\\Z)(?:{'|'.join(alternatives)})")


def _accepts_length(desc: PhoneNumberDesc | None, length: int) -> bool:
    """``_is_number_matching_desc`` without the pattern: the parts that depend on length."""
    if desc is None or not desc.national_number_pattern:
        return False
    return not desc.possible_length or length in desc.possible_length


def _pattern(regex: str) -> re.Pattern[str]:
    # Same flags as phonenumbers' re_compile (none). Shared between regions with equal text.
    try:
        return _compiled[regex]
    except KeyError:
        compiled = _compiled[regex] = re.compile(regex)
        return compiled
