"""The platform's policy: settings, their defaults, and loading them from TOML (DESIGN §7).

A policy file sets the platform-wide values at top level and per-advertiser overrides in
``[advertisers.NAME]`` tables; every key is optional and an empty file (or none) gives the
defaults. ``ids`` mode may be enabled only in an advertiser's own table, so no advertiser learns
which of its records matched unless the platform said so for that advertiser by name::

    epsilon_per_release = 0.5
    modes_allowed = ["count", "audience"]

    [advertisers.acme]
    modes_allowed = ["count", "audience", "ids"]
    epsilon_budget = 4.0
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import phonenumbers

from cleanroom.errors import InvalidInput, InvalidPolicy
from cleanroom.identifiers import DEFAULT_REGION
from cleanroom.tls import validate_advertiser_name

__all__ = [
    "DEFAULT_SETTINGS",
    "LARGEST_COUNT",
    "Mode",
    "Policy",
    "PolicySettings",
    "load_policy",
    "parse_policy",
    "policy_from_mapping",
]


class Mode(StrEnum):
    """What each party learns in a session (DESIGN §2)."""

    COUNT = "count"
    """Both learn the noised, thresholded number of the advertiser's records that matched."""
    AUDIENCE = "audience"
    """The platform learns which of its users matched; both learn the noised user count."""
    IDS = "ids"
    """The advertiser learns which of its records matched; the platform learns how many."""


@dataclass(frozen=True)
class PolicySettings:
    """The policy values that apply to one advertiser (or the platform-wide defaults).

    Attributes:
        min_upload_records: fewest records a list may have; a list of one is a membership test.
        max_upload_records: most records a list may have (bounds the platform's work and memory).
        max_identifiers_per_record: most identifiers one record (one record tag) may carry in the
            advertiser's set; with ``max_upload_records`` it bounds the set's size, and it is
            checked before any of the set is multiplied.
        min_reported_count: a noisy count below it is reported as "fewer than <it>".
        epsilon_per_release: privacy loss of one released count; 0 means no noise (test only).
        epsilon_budget: total privacy loss allowed per advertiser per key epoch.
        modes_allowed: modes the advertiser may open sessions in.
        max_sessions_per_day: sessions per advertiser per day.
        default_region: region for phone numbers written without a country code.
    """

    min_upload_records: int = 1000
    max_upload_records: int = 10_000_000
    max_identifiers_per_record: int = 3
    min_reported_count: int = 100
    epsilon_per_release: float = 0.5
    epsilon_budget: float = 8.0
    modes_allowed: frozenset[Mode] = frozenset({Mode.COUNT, Mode.AUDIENCE})
    max_sessions_per_day: int = 20
    default_region: str = DEFAULT_REGION

    @property
    def noise_applied(self) -> bool:
        """Whether released counts are noised (``epsilon_per_release > 0``)."""
        return self.epsilon_per_release > 0


DEFAULT_SETTINGS: Final = PolicySettings()
"""The defaults DESIGN §7 lists, defined once, here."""


@dataclass(frozen=True)
class Policy:
    """A whole policy: platform-wide settings and per-advertiser overrides.

    Attributes:
        defaults: the settings of any advertiser without its own table.
        advertisers: each named advertiser's effective settings (defaults with its overrides).
    """

    defaults: PolicySettings = DEFAULT_SETTINGS
    advertisers: Mapping[str, PolicySettings] = field(default_factory=dict)

    def for_advertiser(self, advertiser: str) -> PolicySettings:
        """Return the settings that apply to ``advertiser``."""
        return self.advertisers.get(advertiser, self.defaults)


def load_policy(path: Path | None) -> Policy:
    """Load a policy file; ``None`` means no file: the defaults.

    Args:
        path: the TOML file, or ``None``.

    Returns:
        The policy.

    Raises:
        InvalidPolicy: the file cannot be read, is not TOML, or holds an unknown key, a value of
            the wrong type or out of range (the message names the key).
    """
    if path is None:
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidPolicy(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse a policy from TOML text.

    Args:
        text: the TOML document; empty means all defaults.
        source: where it came from, for error messages.

    Returns:
        The policy.

    Raises:
        InvalidPolicy: not TOML, or an unknown key, wrong type or value out of range.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPolicy(f"policy {source} is not valid TOML: {exc}") from exc
    return policy_from_mapping(data)


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    """Build a policy from an already parsed mapping (the shape of the TOML file).

    Raises:
        InvalidPolicy: an unknown key, a wrong type or a value out of range.
    """
    top = dict(data)
    advertiser_tables = top.pop("advertisers", {})
    defaults = _apply(DEFAULT_SETTINGS, top, prefix="", allow_ids=False)
    if not isinstance(advertiser_tables, Mapping):
        raise InvalidPolicy("policy key 'advertisers': must be a table of [advertisers.NAME]")
    advertisers: dict[str, PolicySettings] = {}
    for name, table in advertiser_tables.items():
        prefix = f"advertisers.{name}."
        if not isinstance(table, Mapping):
            raise InvalidPolicy(f"policy key '{prefix[:-1]}': must be a table")
        try:  # a table no certificate can name would never apply
            validate_advertiser_name(name)
        except InvalidInput as exc:
            raise InvalidPolicy(f"policy table [{prefix[:-1]}]: {exc}") from None
        advertisers[name] = _apply(defaults, table, prefix=prefix, allow_ids=True)
    return Policy(defaults=defaults, advertisers=advertisers)


def _apply(
    base: PolicySettings, table: Mapping[str, Any], *, prefix: str, allow_ids: bool
) -> PolicySettings:
    """Return ``base`` with the keys of ``table`` applied, each checked."""
    changes: dict[str, Any] = {}
    for key, value in table.items():
        check = _CHECKS.get(key)
        if check is None:
            known = ", ".join(sorted(_CHECKS))
            raise InvalidPolicy(f"unknown policy key '{prefix}{key}' (known keys: {known})")
        changes[key] = check(f"{prefix}{key}", value)
    modes = changes.get("modes_allowed")
    if modes is not None and Mode.IDS in modes and not allow_ids:
        raise InvalidPolicy(
            f"policy key '{prefix}modes_allowed': 'ids' may be allowed only per advertiser, "
            "in an [advertisers.NAME] table"
        )
    settings = dataclasses.replace(base, **changes)
    if settings.min_upload_records > settings.max_upload_records:
        raise InvalidPolicy(
            f"policy keys '{prefix}min_upload_records' and '{prefix}max_upload_records': "
            f"the minimum ({settings.min_upload_records}) is above the maximum "
            f"({settings.max_upload_records})"
        )
    return settings


LARGEST_COUNT: Final = (1 << 63) - 1
"""The largest count of anything (records, identifiers, rows, ids) the platform takes: SQLite's
INTEGER and numpy's int64 hold no more."""

# What GetPolicy's uint32 fields carry.
_LARGEST_SMALL_COUNT: Final = (1 << 32) - 1


def _count(key: str, value: Any, most: int = LARGEST_COUNT) -> int:
    # bool is an int subclass in Python, but `true` is never a meaningful count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(f"policy key '{key}': must be an integer, got {value!r}")
    if value < 0:
        raise InvalidPolicy(f"policy key '{key}': must not be negative, got {value}")
    if value > most:
        raise InvalidPolicy(f"policy key '{key}': must be at most {most}, got {value}")
    return value


def _small_count(key: str, value: Any) -> int:
    return _count(key, value, _LARGEST_SMALL_COUNT)


def _positive_small_count(key: str, value: Any) -> int:
    count = _small_count(key, value)
    if count < 1:
        raise InvalidPolicy(f"policy key '{key}': must be at least 1, got {count}")
    return count


def _epsilon(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPolicy(f"policy key '{key}': must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidPolicy(f"policy key '{key}': must be a finite number >= 0, got {value}")
    return float(value)


def _modes(key: str, value: Any) -> frozenset[Mode]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise InvalidPolicy(f"policy key '{key}': must be a list of mode names, got {value!r}")
    valid = ", ".join(m.value for m in Mode)
    for name in value:
        if name not in {m.value for m in Mode}:
            raise InvalidPolicy(f"policy key '{key}': unknown mode {name!r} (modes: {valid})")
    return frozenset(Mode(name) for name in value)


def _region(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidPolicy(f"policy key '{key}': must be a region code string, got {value!r}")
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPolicy(
            f"policy key '{key}': {value!r} is not a supported ISO 3166-1 alpha-2 region code"
        )
    return value


# One checker per key; the keys of this table are the keys a policy may have.
_CHECKS: Final[dict[str, Callable[[str, Any], Any]]] = {
    "min_upload_records": _count,
    "max_upload_records": _count,
    "max_identifiers_per_record": _positive_small_count,
    "min_reported_count": _count,
    "epsilon_per_release": _epsilon,
    "epsilon_budget": _epsilon,
    "modes_allowed": _modes,
    "max_sessions_per_day": _small_count,
    "default_region": _region,
}
