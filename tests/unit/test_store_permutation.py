"""Permutations from the OS CSPRNG."""

from __future__ import annotations

import numpy as np
import pytest

from cleanroom.store.permutation import random_permutation


@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_is_a_permutation(n: int) -> None:
    order = random_permutation(n)
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(n))


def test_draws_differ() -> None:
    # Two draws of 1000 coincide with probability 1/1000!: equality means a broken source.
    assert not np.array_equal(random_permutation(1000), random_permutation(1000))


def test_every_position_moves_sometimes() -> None:
    firsts = {int(random_permutation(4)[0]) for _ in range(200)}
    assert firsts == {0, 1, 2, 3}


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        random_permutation(-1)
