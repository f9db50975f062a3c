"""release_count: noise before the threshold, epsilon 0 shown as such, ids mode exact."""

from __future__ import annotations

import dataclasses

import pytest

from cleanroom.policy import DEFAULT_SETTINGS, Release, release_count, release_exact_count

NO_NOISE = dataclasses.replace(DEFAULT_SETTINGS, epsilon_per_release=0.0)


def test_no_noise_releases_the_exact_count_and_says_so() -> None:
    release = release_count(1234, NO_NOISE)
    assert release.count == 1234
    assert release.reported_as.startswith("1234 (exact: no noise")
    assert "test deployment" in release.reported_as
    assert (release.epsilon_charged, release.noise_applied) == (0.0, False)


def test_no_noise_still_thresholds() -> None:
    assert release_count(100, NO_NOISE).count == 100
    below = release_count(99, NO_NOISE)
    assert below.count is None
    assert below.reported_as.startswith("fewer than 100 (exact: no noise")


def test_noisy_release_is_charged_and_near_the_true_count() -> None:
    releases = [release_count(10_000, DEFAULT_SETTINGS) for _ in range(200)]
    assert all(r.noise_applied and r.epsilon_charged == 0.5 for r in releases)
    counts = [r.count for r in releases]
    assert all(c is not None and abs(c - 10_000) < 100 for c in counts)
    assert all(r.reported_as == str(r.count) for r in releases)
    # Noise is really there: 200 draws at scale 2 are not all equal (P < 1e-100).
    assert len(set(counts)) > 1


def test_threshold_is_applied_to_the_noisy_count() -> None:
    # True count 99 is below the threshold, but with noise added first it is released as a
    # number about 30% of the time (P(noise >= 1) at epsilon 0.5); 400 draws see both outcomes
    # except with probability below 1e-60.
    releases = [release_count(99, DEFAULT_SETTINGS) for _ in range(400)]
    released = [r for r in releases if r.count is not None]
    withheld = [r for r in releases if r.count is None]
    assert released and withheld
    assert all(r.count is not None and r.count >= 100 for r in released)
    assert all(r.reported_as == "fewer than 100" for r in withheld)
    # "fewer than 100" is computed from the noisy count too, so it is charged the same.
    assert all(r.epsilon_charged == 0.5 for r in withheld)


def test_threshold_zero_never_reports_a_negative_count() -> None:
    settings = dataclasses.replace(DEFAULT_SETTINGS, min_reported_count=0)
    counts = [release_count(0, settings).count for _ in range(100)]
    assert all(c is not None and c >= 0 for c in counts)


def test_ids_mode_release_is_exact_and_free() -> None:
    assert release_exact_count(7) == Release(
        count=7, reported_as="7 (exact: ids mode)", epsilon_charged=0.0, noise_applied=False
    )


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        release_count(-1, DEFAULT_SETTINGS)
    with pytest.raises(ValueError, match="negative"):
        release_exact_count(-1)
