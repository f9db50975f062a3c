"""Random permutations: every element once, fresh every time, roughly uniform."""

from __future__ import annotations

import math

import numpy as np

from cleanroom.crypto import random_permutation


def test_is_a_permutation() -> None:
    for n in (0, 1, 2, 1000):
        order = random_permutation(n)
        assert sorted(order.tolist()) == list(range(n))


def test_differs_between_calls() -> None:
    # Two equal permutations of 1000 elements: probability 1/1000!.
    assert not np.array_equal(random_permutation(1000), random_permutation(1000))


def test_first_position_is_uniform() -> None:
    n, trials = 8, 8000
    counts = np.bincount([int(random_permutation(n)[0]) for _ in range(trials)], minlength=n)
    expected = trials / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # chi-square with 7 degrees of freedom exceeds 45 with probability below 1e-7.
    assert chi2 < 45, counts
    assert math.isclose(counts.sum(), trials)
