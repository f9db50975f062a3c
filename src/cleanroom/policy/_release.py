"""Releasing a count: discrete Laplace noise first, then the reporting threshold (DESIGN §7)."""

from __future__ import annotations

from dataclasses import dataclass

from cleanroom.policy._noise import sample_discrete_laplace
from cleanroom.policy._settings import PolicySettings

__all__ = ["Release", "release_count", "release_exact_count"]

# Shown with every count released without noise, so nobody mistakes a test deployment's exact
# count for a private one.
NO_NOISE_NOTE = "exact: no noise, epsilon_per_release = 0, test deployment"


@dataclass(frozen=True)
class Release:
    """A count as it is released to both parties.

    Attributes:
        count: the released count, or ``None`` when it fell below the reporting threshold.
        reported_as: the count in words for people, e.g. ``"1234"`` or ``"fewer than 100"``.
        epsilon_charged: privacy loss charged to the advertiser's budget for it.
        noise_applied: whether differential-privacy noise was added.
    """

    count: int | None
    reported_as: str
    epsilon_charged: float
    noise_applied: bool


def release_count(true_count: int, settings: PolicySettings) -> Release:
    """Noise a count, then threshold it, as the policy says.

    The threshold is applied to the *noisy* count, so whether a count is "too small" is itself
    differentially private, not a one-bit oracle on the true count. The release is charged
    ``epsilon_per_release`` whether it yields a number or "fewer than N": both are computed from
    the noisy count, so both spend the same privacy loss.

    Args:
        true_count: the exact count (sensitivity 1: one person changes it by at most one).
        settings: the advertiser's policy settings.

    Returns:
        The release.

    Raises:
        ValueError: ``true_count`` is negative.
    """
    if true_count < 0:
        raise ValueError(f"a count cannot be negative, got {true_count}")
    epsilon = settings.epsilon_per_release
    noisy = true_count + sample_discrete_laplace(epsilon) if epsilon > 0 else true_count
    threshold = settings.min_reported_count
    # Threshold 0 means none: every count is released, never "fewer than 0".
    if threshold > 0 and noisy < threshold:
        count, reported_as = None, f"fewer than {threshold}"
    else:
        # With threshold 0 every count is released; clamping a negative noisy count to 0 is
        # post-processing, so it costs no privacy.
        count = max(noisy, 0)
        reported_as = str(count)
    if epsilon == 0:
        reported_as = f"{reported_as} ({NO_NOISE_NOTE})"
    return Release(
        count=count, reported_as=reported_as, epsilon_charged=epsilon, noise_applied=epsilon > 0
    )


def release_exact_count(true_count: int) -> Release:
    """Release a count exactly, without noise or threshold or charge: for ``ids`` mode.

    In ids mode the advertiser learns which of its records matched, so it knows the count
    anyway; noising it would protect nothing.

    Raises:
        ValueError: ``true_count`` is negative.
    """
    if true_count < 0:
        raise ValueError(f"a count cannot be negative, got {true_count}")
    return Release(
        count=true_count,
        reported_as=f"{true_count} (exact: ids mode)",
        epsilon_charged=0.0,
        noise_applied=False,
    )
