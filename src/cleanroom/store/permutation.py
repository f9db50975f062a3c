"""Uniformly random permutations from the OS CSPRNG.

The order of an epoch's ``V`` must not let anyone link a position to a user (e.g. by insertion
order). A permutation drawn from a seeded PRNG (``numpy.random.Generator`` seeded from
``secrets``) is not acceptable: its whole output is a function of a 64–128-bit state, far less
than the log2(N!) bits of a permutation of millions, and a state recovered from a leak or a
weak seed reproduces the order. Here every position draws its own 64 bits from ``os.urandom``
and the permutation is the order that sorts those keys. Two equal keys (probability about
N²/2⁶⁵, under 10⁻⁵ for N = 10⁷) would only make the relative order of those two entries follow
their original order, a negligible bias.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

__all__ = ["random_permutation"]


def random_permutation(n: int) -> NDArray[np.int64]:
    """A uniformly random permutation of ``range(n)`` driven by ``os.urandom``.

    Args:
        n: its length.

    Returns:
        ``int64`` array ``p`` such that position ``j`` of the shuffled sequence holds item
        ``p[j]``.
    """
    if n < 0:
        raise ValueError("a permutation length cannot be negative")
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64, copy=False)
