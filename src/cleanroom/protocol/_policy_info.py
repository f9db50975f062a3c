"""The GetPolicy answer: built by the platform, checked by the advertiser before it hashes.

The advertiser trusts nothing in it: every number is checked for range before it is used, the
platform set's size against a ceiling of the client's own, and what the answer promises for the
session (its set's size, the identifiers per record) becomes the :class:`SessionTerms` the
advertiser's role holds the session to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cleanroom._output import quoted
from cleanroom.crypto import SUITE_IDS
from cleanroom.errors import (
    BudgetExhausted,
    InvalidMessage,
    LimitExceeded,
    PolicyRefused,
    VersionMismatch,
)
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import DEFAULT_SETTINGS, Mode, PolicySettings
from cleanroom.protocol._constants import (
    DEFAULT_MAX_PLATFORM_SET_SIZE,
    MAX_CHUNK_BYTES,
    PROTOCOL_VERSION,
)
from cleanroom.protocol._wire import mode_from_wire, mode_to_wire, pb

__all__ = ["SessionTerms", "check_policy_info", "policy_info", "session_terms"]

_REGION = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class SessionTerms:
    """What the advertiser holds a session to, from the GetPolicy answer and its own limits.

    Attributes:
        max_identifiers_per_record: most identifiers sent per customer (record tag); a customer
            with more (records linked by a shared identifier) sends its first ones only.
        platform_set_size: N as GetPolicy announced it; the session may announce it or less
            (consents revoked or expired in between), never more (``None``: not known, any N
            up to the ceiling).
        max_platform_set_size: the largest N this client accepts, whatever the platform says.
    """

    max_identifiers_per_record: int = DEFAULT_SETTINGS.max_identifiers_per_record
    platform_set_size: int | None = None
    max_platform_set_size: int = DEFAULT_MAX_PLATFORM_SET_SIZE


def session_terms(
    info: pb.PolicyInfo, *, max_platform_set_size: int = DEFAULT_MAX_PLATFORM_SET_SIZE
) -> SessionTerms:
    """The terms a checked GetPolicy answer sets for the session (see :func:`check_policy_info`)."""
    return SessionTerms(
        # 0: a platform that does not say; it then holds lists to the default.
        max_identifiers_per_record=info.max_identifiers_per_record
        or DEFAULT_SETTINGS.max_identifiers_per_record,
        platform_set_size=info.platform_set_size,
        max_platform_set_size=max_platform_set_size,
    )


# The same slack as the platform's budget check, so both sides agree at the boundary.
_BUDGET_SLACK = 1e-9


def policy_info(
    settings: PolicySettings,
    *,
    epoch_id: int,
    platform_set_size: int,
    spent_epsilon: float,
    sessions_today: int,
    suites: Sequence[str] = SUITE_IDS,
) -> pb.PolicyInfo:
    """Build the PolicyInfo the platform returns to one advertiser.

    Args:
        settings: the policy settings that apply to the advertiser.
        epoch_id: the current key epoch.
        platform_set_size: N, identifiers eligible now.
        spent_epsilon: privacy loss the advertiser spent in this epoch.
        sessions_today: sessions the advertiser opened today.
        suites: suites the platform has a set for, preferred first.

    Returns:
        The message.
    """
    return pb.PolicyInfo(
        protocol_version=PROTOCOL_VERSION,
        suites=list(suites),
        max_identifiers_per_record=settings.max_identifiers_per_record,
        normalization_version=NORMALIZATION_VERSION,
        modes_allowed=[mode_to_wire(m) for m in sorted(settings.modes_allowed)],
        min_upload_records=settings.min_upload_records,
        max_upload_records=settings.max_upload_records,
        min_reported_count=settings.min_reported_count,
        epsilon_per_release=settings.epsilon_per_release,
        epsilon_budget=settings.epsilon_budget,
        epsilon_remaining=max(0.0, settings.epsilon_budget - spent_epsilon),
        max_sessions_per_day=settings.max_sessions_per_day,
        sessions_remaining_today=max(0, settings.max_sessions_per_day - sessions_today),
        default_region=settings.default_region,
        epoch_id=epoch_id,
        platform_set_size=platform_set_size,
        max_chunk_bytes=MAX_CHUNK_BYTES,
    )


def check_policy_info(
    info: pb.PolicyInfo,
    *,
    mode: Mode,
    suite_id: str,
    record_count: int,
    max_platform_set_size: int = DEFAULT_MAX_PLATFORM_SET_SIZE,
) -> None:
    """Check, on the advertiser's side, that the answer is sane and the platform would accept.

    Saves hashing a whole list only to be refused; the platform checks again on its side.

    Args:
        info: the platform's GetPolicy answer.
        mode: the mode the advertiser wants.
        suite_id: the suite it wants.
        record_count: the records in its list.
        max_platform_set_size: the largest platform set the advertiser accepts.

    Raises:
        VersionMismatch: another protocol or normalization version, or the suite is not offered.
        InvalidMessage: a value no honest platform sends (a budget that is not a finite number
            at least 0, a malformed region code).
        PolicyRefused: the mode is not allowed or the list is too small.
        LimitExceeded: the list is too large, no session is left today, or the platform's set
            is larger than ``max_platform_set_size``.
        BudgetExhausted: the budget cannot pay for another release.
    """
    if info.protocol_version != PROTOCOL_VERSION:
        raise VersionMismatch(
            f"the platform speaks protocol version {info.protocol_version}, this client "
            f"{PROTOCOL_VERSION}"
        )
    if info.normalization_version != NORMALIZATION_VERSION:
        raise VersionMismatch(
            f"the platform normalizes identifiers with version {info.normalization_version}, "
            f"this client with version {NORMALIZATION_VERSION}"
        )
    _check_sane(info)
    if info.platform_set_size > max_platform_set_size:
        raise LimitExceeded(
            f"the platform announces a set of {info.platform_set_size:,} identifiers, more than "
            f"this client accepts ({max_platform_set_size:,}; --max-platform-set raises it: "
            "about 100 bytes of memory and one scalar multiplication per identifier)"
        )
    if suite_id not in info.suites:
        offered = ", ".join(quoted(suite) for suite in info.suites[:8]) or "none"
        raise VersionMismatch(f"the platform does not offer suite {suite_id} (offered: {offered})")
    allowed = {mode_from_wire(code) for code in info.modes_allowed}
    if mode not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise PolicyRefused(f"mode '{mode}' is not allowed for this advertiser (allowed: {names})")
    if record_count < info.min_upload_records:
        raise PolicyRefused(
            f"the list has {record_count} records, fewer than the minimum of "
            f"{info.min_upload_records}"
        )
    if record_count > info.max_upload_records:
        raise LimitExceeded(
            f"the list has {record_count} records, more than the maximum of "
            f"{info.max_upload_records}"
        )
    if info.sessions_remaining_today == 0:
        raise LimitExceeded("no session is left today")
    if mode is not Mode.IDS and info.epsilon_per_release > info.epsilon_remaining + _BUDGET_SLACK:
        raise BudgetExhausted(
            f"a release costs epsilon {info.epsilon_per_release:g}, only "
            f"{info.epsilon_remaining:g} of the budget is left in this key epoch"
        )


def _check_sane(info: pb.PolicyInfo) -> None:
    """Refuse values no honest platform sends, before any of them is used."""
    for name in ("epsilon_per_release", "epsilon_budget", "epsilon_remaining"):
        value = getattr(info, name)
        if not (math.isfinite(value) and value >= 0):
            raise InvalidMessage(f"the platform's policy has {name} = {value!r}")
    if info.default_region and not _REGION.fullmatch(info.default_region):
        raise InvalidMessage(
            f"the platform's policy has default_region {quoted(info.default_region)}, not a "
            "two-letter region code"
        )
