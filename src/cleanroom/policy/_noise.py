"""Exact discrete Laplace noise on the OS CSPRNG.

Floating-point Laplace samplers leak through the gaps in their output (Mironov, CCS 2012), so
noise here is sampled exactly, with integer and rational arithmetic only, after Canonne, Kamath
and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020): Algorithm 1
(Bernoulli(exp(-γ)) for rational γ) and Algorithm 2 (discrete Laplace). Every random draw is a
uniform integer from :mod:`secrets`, never a seeded PRNG.

The discrete Laplace distribution with scale ``1/ε`` has ``P(X = x) ∝ exp(-ε·|x|)`` on the
integers; added to a count of sensitivity 1 it gives ε-differential privacy.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

__all__ = ["bernoulli_exp", "epsilon_fraction", "sample_discrete_laplace"]


def epsilon_fraction(epsilon: float) -> Fraction:
    """Return ε as the exact rational its decimal text says (``0.1`` -> ``1/10``).

    A float like 0.1 is really 3602879701896397/2**55; the policy author meant 1/10, and the
    small denominator also keeps the sampler fast.

    Raises:
        ValueError: ε is not a finite number > 0.
    """
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return Fraction(repr(float(epsilon)))


def _bernoulli(numerator: int, denominator: int) -> bool:
    """Return True with probability ``numerator/denominator`` (0 <= it <= 1)."""
    return secrets.randbelow(denominator) < numerator


def _bernoulli_exp_at_most_one(numerator: int, denominator: int) -> bool:
    """Bernoulli(exp(-γ)) for γ = numerator/denominator in [0, 1] (CKS 2020, Algorithm 1)."""
    k = 1
    # Counts how many of Bernoulli(γ/1), Bernoulli(γ/2), ... succeed in a row; the parity of
    # the stopping point is 1 with probability exactly exp(-γ) (alternating Taylor series).
    while _bernoulli(numerator, denominator * k):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction) -> bool:
    """Return True with probability exactly ``exp(-gamma)``.

    Args:
        gamma: a rational γ >= 0.

    Raises:
        ValueError: γ < 0.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    numerator, denominator = gamma.numerator, gamma.denominator
    # exp(-γ) = exp(-1)^floor(γ) · exp(-(γ - floor(γ))): each factor is a Bernoulli in [0, 1].
    while numerator > denominator:
        if not _bernoulli_exp_at_most_one(1, 1):
            return False
        numerator -= denominator
    return _bernoulli_exp_at_most_one(numerator, denominator)


def sample_discrete_laplace(epsilon: float) -> int:
    """Draw X with ``P(X = x) ∝ exp(-ε·|x|)``: discrete Laplace with scale 1/ε.

    CKS 2020, Algorithm 2, with scale t/s where ε = s/t exactly.

    Args:
        epsilon: the privacy parameter ε > 0 (its decimal text is taken as exact).

    Returns:
        The noise, an integer.

    Raises:
        ValueError: ε is not a finite number > 0.
    """
    eps = epsilon_fraction(epsilon)
    s, t = eps.numerator, eps.denominator
    while True:
        # X = U + t·V is geometric with parameter exp(-1/t): U uniform below t, accepted with
        # probability exp(-U/t), plus t times a geometric count of Bernoulli(exp(-1)) successes.
        u = secrets.randbelow(t)
        if not bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while _bernoulli_exp_at_most_one(1, 1):
            v += 1
        magnitude = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        # Rejecting "-0" keeps zero from being counted twice.
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude
