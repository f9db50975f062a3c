"""Random permutations from the OS CSPRNG: every element once, fresh every time, uniform."""

from __future__ import annotations

import collections
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import _permutation, random_permutation


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
    # chi-square with 7 degrees of freedom exceeds 45 with probability below 2e-7.
    assert chi2 < 45, counts
    assert math.isclose(counts.sum(), trials)


def test_every_order_of_four_is_as_likely() -> None:
    trials = 24_000
    orders = collections.Counter(tuple(random_permutation(4).tolist()) for _ in range(trials))
    assert len(orders) == 24
    expected = trials / 24
    chi2 = sum((count - expected) ** 2 / expected for count in orders.values())
    # chi-square with 23 degrees of freedom exceeds 80 with probability below 1e-7.
    assert chi2 < 80, orders


def test_the_index_type_and_a_negative_length() -> None:
    assert random_permutation(3).dtype == np.intp
    with pytest.raises(ValueError, match="negative"):
        random_permutation(-1)


def _reference_shuffle(n: int, words: bytes) -> list[int] | None:
    """The shuffle of _permutation.c in Python: its steps, word for word."""
    order = list(range(n))
    for step, i in enumerate(range(n - 1, 0, -1)):
        word = int.from_bytes(words[8 * step : 8 * step + 8], "little")
        product = word * (i + 1)
        low = product % 2**64
        if low < (2**64 - (i + 1)) % (i + 1):
            return None  # refused: low falls in the part of the range that would bias j
        j = product >> 64
        order[i], order[j] = order[j], order[i]
    return order


@settings(max_examples=300)
@given(
    st.integers(0, 40).flatmap(
        lambda n: st.tuples(
            st.just(n), st.binary(min_size=8 * max(n - 1, 0), max_size=8 * max(n - 1, 0))
        )
    )
)
def test_the_shuffle_follows_its_reference_word_for_word(drawn: tuple[int, bytes]) -> None:
    n, words = drawn
    order = np.empty(n, dtype=np.int64)
    expected = _reference_shuffle(n, words)
    assert _permutation.shuffle(order, words) is (expected is not None)
    if expected is not None:
        assert order.tolist() == expected


def test_a_refused_word_has_every_word_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # For the draw over 0..2, the word 0 is refused (2^64 mod 3 = 1 > 0 = its low half):
    # keeping it would favour position 0. The permutation comes from the second draw.
    second = (2**63).to_bytes(8, "little") + (2**63).to_bytes(8, "little")
    draws = iter([bytes(8) + (2**63).to_bytes(8, "little"), second])
    monkeypatch.setattr(os, "urandom", lambda size: next(draws))
    assert random_permutation(3).tolist() == _reference_shuffle(3, second) == [0, 2, 1]
    assert _reference_shuffle(3, bytes(16)) is None


def test_the_shuffle_refuses_buffers_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="n - 1 words"):
        _permutation.shuffle(np.empty(3, dtype=np.int64), bytes(8))
    with pytest.raises(TypeError):
        _permutation.shuffle(np.empty(3, dtype=np.int64).tobytes(), bytes(16))
