"""Uniformly random permutations from the OS CSPRNG.

Orders that must not let anyone link a position to an item use this: an epoch's ``V`` (no
position may reveal a user, e.g. by insertion order), the advertiser's ``U`` and the record
tags, the shuffled ``W``. A permutation drawn from a seeded PRNG (``numpy.random.Generator``
seeded from ``secrets``) is not acceptable: its whole output is a function of a 64–128-bit
state, far less than the log2(N!) bits of a permutation of millions, and a state recovered from
a leak or a weak seed reproduces the order, letting the other party undo the shuffle. Here every
position draws its own 64 bits from ``os.urandom`` and the permutation is the order that sorts
those keys. Two equal keys (probability about N²/2⁶⁵, under 10⁻⁵ for N = 10⁷) would make the
relative order of those two entries follow their original order, so on a tie the keys are drawn
again: every order is exactly equally likely.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

__all__ = ["random_permutation"]


def random_permutation(n: int) -> NDArray[np.intp]:
    """Return a uniformly random permutation of ``range(n)`` drawn from ``os.urandom``.

    Args:
        n: the size, >= 0.

    Returns:
        Array ``p`` of shape ``(n,)`` holding each of ``0 .. n-1`` once: position ``j`` of the
        shuffled sequence holds item ``p[j]``.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError("a permutation length cannot be negative")
    while True:
        keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
        order = np.argsort(keys)  # ties are drawn again, so the sort need not be stable
        ordered = keys[order]
        if not np.any(ordered[1:] == ordered[:-1]):
            return order.astype(np.intp, copy=False)
