"""The exact discrete Laplace sampler has the distribution it claims.

Statistical checks use tolerances of about 6 standard errors (or a chi-square bound well beyond
its 1e-9 tail), so a correct sampler fails them with probability below 1e-8 per run, while a
sampler with the wrong scale, a bias or a doubled zero fails them for certain.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.policy import bernoulli_exp, epsilon_fraction, sample_discrete_laplace

SAMPLES = 40_000
SIGMAS = 6.0


def _pmf(epsilon: float, x: int) -> float:
    q = math.exp(-epsilon)
    return (1 - q) / (1 + q) * q ** abs(x)


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 0.1])
def test_mean_variance_zero_mass_and_shape(epsilon: float) -> None:
    draws = [sample_discrete_laplace(epsilon) for _ in range(SAMPLES)]
    q = math.exp(-epsilon)
    variance = 2 * q / (1 - q) ** 2
    mean = sum(draws) / SAMPLES
    assert abs(mean) < SIGMAS * math.sqrt(variance / SAMPLES)

    # The sample variance's standard error is sqrt((mu4 - sigma^4) / n); the fourth moment of
    # the discrete Laplace is at most 6 sigma^4 + sigma^2 (that of the continuous one plus the
    # lattice correction), a safe upper bound for the tolerance.
    sample_variance = sum(x * x for x in draws) / SAMPLES - mean**2
    tolerance = SIGMAS * math.sqrt((5 * variance**2 + variance) / SAMPLES)
    assert abs(sample_variance - variance) < tolerance

    p_zero = (1 - q) / (1 + q)
    zero_share = draws.count(0) / SAMPLES
    assert abs(zero_share - p_zero) < SIGMAS * math.sqrt(p_zero * (1 - p_zero) / SAMPLES)

    # Chi-square over the central values (each expected >= 50 times) plus the two tails.
    counts = Counter(draws)
    cells = [x for x in range(-200, 201) if _pmf(epsilon, x) * SAMPLES >= 50]
    lo, hi = min(cells), max(cells)
    tail = sum(_pmf(epsilon, x) for x in cells)
    observed = [counts[x] for x in cells]
    observed += [sum(c for x, c in counts.items() if x < lo or x > hi)]
    expected = [_pmf(epsilon, x) * SAMPLES for x in cells] + [(1 - tail) * SAMPLES]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    df = len(observed) - 1
    # Far beyond the 1 - 1e-9 quantile of chi-square(df) for these df (Wilson-Hilferty).
    assert chi2 < df + 14 * math.sqrt(2 * df) + 40


def test_symmetric_around_zero() -> None:
    draws = [sample_discrete_laplace(1.0) for _ in range(SAMPLES)]
    positive = sum(1 for x in draws if x > 0)
    negative = sum(1 for x in draws if x < 0)
    nonzero = positive + negative
    assert abs(positive - nonzero / 2) < SIGMAS * math.sqrt(nonzero / 4)


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(3, 10), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_rate(gamma: Fraction) -> None:
    p = math.exp(-float(gamma))
    hits = sum(bernoulli_exp(gamma) for _ in range(SAMPLES))
    assert abs(hits / SAMPLES - p) <= SIGMAS * math.sqrt(p * (1 - p) / SAMPLES)


@settings(max_examples=50)
@given(st.floats(min_value=1e-3, max_value=50, allow_nan=False, allow_infinity=False))
def test_samples_are_integers_for_any_epsilon(epsilon: float) -> None:
    x = sample_discrete_laplace(epsilon)
    assert isinstance(x, int)
    assert epsilon_fraction(epsilon) > 0


@settings(max_examples=50)
@given(st.decimals(min_value="0.001", max_value="100", places=3))
def test_epsilon_is_taken_at_its_decimal_value(value: object) -> None:
    assert epsilon_fraction(float(str(value))) == Fraction(str(value))


@pytest.mark.parametrize("epsilon", [0.0, -0.5, math.nan, math.inf])
def test_bad_epsilon_is_refused(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        sample_discrete_laplace(epsilon)


def test_negative_gamma_is_refused() -> None:
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        bernoulli_exp(Fraction(-1, 2))
