"""Random permutations from the OS CSPRNG: every element once, fresh every time, uniform."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

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


def test_the_index_type_and_a_negative_length() -> None:
    assert random_permutation(3).dtype == np.intp
    with pytest.raises(ValueError, match="negative"):
        random_permutation(-1)


def test_a_tie_between_keys_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first draw gives two equal keys: keeping it would order them as they came. The
    # permutation comes from the second draw, whatever the first said.
    draws = iter([bytes(8) * 3, (2).to_bytes(8, "little") + bytes(8) + (1).to_bytes(8, "little")])
    monkeypatch.setattr(os, "urandom", lambda size: next(draws))
    assert random_permutation(3).tolist() == [1, 2, 0]
