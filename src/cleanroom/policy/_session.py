"""Deciding whether a session may open, before the platform does any work for it."""

from __future__ import annotations

from dataclasses import dataclass

from cleanroom.errors import BudgetExhausted, InvalidInput, LimitExceeded, PolicyRefused
from cleanroom.policy._settings import Mode, Policy, PolicySettings

__all__ = ["SessionDecision", "check_session"]

# Budgets are sums of floats such as 0.1; without slack the 80th release of 0.1 against a budget
# of 8.0 could be refused because 80 × 0.1 sums to 8.000000000000002.
_BUDGET_SLACK = 1e-9


@dataclass(frozen=True)
class SessionDecision:
    """A session the policy allows, with what it needs to release the result.

    Attributes:
        advertiser: the advertiser's name (from its certificate).
        mode: the session's mode.
        settings: the policy settings that apply to the advertiser.
        record_count: the number of records the advertiser announced.
        spent_epsilon: privacy loss already spent by the advertiser in this key epoch.
    """

    advertiser: str
    mode: Mode
    settings: PolicySettings
    record_count: int
    spent_epsilon: float

    @property
    def epsilon_to_charge(self) -> float:
        """Privacy loss the session is charged if it releases a count (0 in ids mode)."""
        return 0.0 if self.mode is Mode.IDS else self.settings.epsilon_per_release

    def epsilon_remaining(self, charged: float) -> float:
        """Return the budget left after a release charged ``charged``."""
        return max(0.0, self.settings.epsilon_budget - self.spent_epsilon - charged)


def check_session(
    policy: Policy,
    advertiser: str,
    mode: Mode,
    n: int,
    spent_epsilon: float,
    sessions_today: int,
    open_session: bool,
) -> SessionDecision:
    """Check a session request against the policy; cheap, so run it before any work.

    Args:
        policy: the platform's policy.
        advertiser: the advertiser's name (from its certificate).
        mode: the requested mode.
        n: the number of records in the advertiser's list.
        spent_epsilon: privacy loss the advertiser spent in the current key epoch.
        sessions_today: sessions the advertiser opened today (not counting this one).
        open_session: whether the advertiser has another session open right now.

    Returns:
        The decision to go ahead, carrying the settings that apply.

    Raises:
        PolicyRefused: the mode is not allowed for the advertiser, another of its sessions is
            open, or the list is smaller than ``min_upload_records``.
        LimitExceeded: the list is larger than ``max_upload_records`` or the advertiser has used
            ``max_sessions_per_day``.
        BudgetExhausted: the release would take the advertiser over ``epsilon_budget``.
        InvalidInput: a negative number was passed.
    """
    if n < 0 or sessions_today < 0 or spent_epsilon < 0:
        raise InvalidInput("list size, sessions and spent epsilon cannot be negative")
    settings = policy.for_advertiser(advertiser)
    if mode not in settings.modes_allowed:
        allowed = ", ".join(sorted(settings.modes_allowed)) or "none"
        raise PolicyRefused(
            f"mode '{mode}' is not allowed for advertiser {advertiser!r} (allowed: {allowed})"
        )
    if open_session:
        raise PolicyRefused(
            f"advertiser {advertiser!r} already has a session open; one at a time is allowed"
        )
    if sessions_today >= settings.max_sessions_per_day:
        raise LimitExceeded(
            f"advertiser {advertiser!r} has opened {sessions_today} sessions today, the most "
            f"allowed per day is {settings.max_sessions_per_day}"
        )
    if n < settings.min_upload_records:
        raise PolicyRefused(
            f"the list has {n} records, fewer than the minimum of {settings.min_upload_records}"
        )
    if n > settings.max_upload_records:
        raise LimitExceeded(
            f"the list has {n} records, more than the maximum of {settings.max_upload_records}"
        )
    decision = SessionDecision(
        advertiser=advertiser,
        mode=mode,
        settings=settings,
        record_count=n,
        spent_epsilon=spent_epsilon,
    )
    charge = decision.epsilon_to_charge
    if spent_epsilon + charge > settings.epsilon_budget + _BUDGET_SLACK:
        raise BudgetExhausted(
            f"advertiser {advertiser!r} has spent epsilon {spent_epsilon:g} of its budget of "
            f"{settings.epsilon_budget:g} in this key epoch; a release costs {charge:g}"
        )
    return decision
