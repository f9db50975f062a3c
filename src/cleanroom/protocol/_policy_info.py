"""The GetPolicy answer: built by the platform, checked by the advertiser before it hashes."""

from __future__ import annotations

from collections.abc import Sequence

from cleanroom.crypto import SUITE_IDS
from cleanroom.errors import BudgetExhausted, LimitExceeded, PolicyRefused, VersionMismatch
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import Mode, PolicySettings
from cleanroom.protocol._constants import MAX_CHUNK_BYTES, PROTOCOL_VERSION
from cleanroom.protocol._wire import mode_from_wire, mode_to_wire, pb

__all__ = ["check_policy_info", "policy_info"]

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


def check_policy_info(info: pb.PolicyInfo, *, mode: Mode, suite_id: str, record_count: int) -> None:
    """Check, on the advertiser's side, that the platform would accept a session.

    Saves hashing a whole list only to be refused; the platform checks again on its side.

    Args:
        info: the platform's GetPolicy answer.
        mode: the mode the advertiser wants.
        suite_id: the suite it wants.
        record_count: the records in its list.

    Raises:
        VersionMismatch: another protocol or normalization version, or the suite is not offered.
        PolicyRefused: the mode is not allowed or the list is too small.
        LimitExceeded: the list is too large, or no session is left today.
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
    if suite_id not in info.suites:
        offered = ", ".join(info.suites) or "none"
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
