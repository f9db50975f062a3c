"""Uniformly random permutations from the OS CSPRNG.

Orders that must not let anyone link a position to an item use this: an epoch's ``V`` (no
position may reveal a user, e.g. by insertion order), the advertiser's ``U`` and the record
tags, the shuffled ``W``. A permutation drawn from a seeded PRNG (``numpy.random.Generator``
seeded from ``secrets``) is not acceptable: its whole output is a function of a 64–128-bit
state, far less than the log2(N!) bits of a permutation of millions, and a state recovered from
a leak or a weak seed reproduces the order, letting the other party undo the shuffle. Here every
step of a Fisher–Yates shuffle draws its own 64 bits from ``os.urandom`` (``_permutation.c``,
which says how a word becomes a position without bias); a word it must refuse, a chance of
about N²/2⁶⁵, has all the words drawn again, so every order is exactly equally likely.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from cleanroom.crypto import _permutation

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
    order = np.empty(n, dtype=np.int64)
    while not _permutation.shuffle(order, os.urandom(8 * max(n - 1, 0))):
        pass  # a refused word: every word is drawn again
    return order.astype(np.intp, copy=False)
