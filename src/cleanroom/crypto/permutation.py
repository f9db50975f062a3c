"""Uniform random permutations from the OS CSPRNG."""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

__all__ = ["random_permutation"]


def random_permutation(n: int) -> NDArray[np.intp]:
    """Return a uniformly random permutation of ``range(n)`` drawn from ``os.urandom``.

    Sorting n random 64-bit keys gives every order with equal probability as long as the keys
    are distinct; on the rare tie (about n²/2^65) the keys are drawn again. Never a seeded PRNG:
    an order that could be replayed would let the other party undo the shuffle.

    Args:
        n: the size, >= 0.

    Returns:
        Array of shape ``(n,)`` holding each of ``0 .. n-1`` once.
    """
    while True:
        keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        if not np.any(ordered[1:] == ordered[:-1]):
            return order.astype(np.intp, copy=False)
