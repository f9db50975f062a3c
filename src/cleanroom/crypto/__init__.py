"""Group operations of the matching protocol: ciphersuites, keys, batch encryption.

``get_suite(id)`` returns a :class:`Suite`: hash to curve (RFC 9380), key generation, element
validation and the commutative encryption ``E_k``, one chunk at a time. :class:`BatchEngine` is
the one way to run them over whole arrays, in chunks across all CPU cores::

    suite = get_suite("x25519-sha512-ell2-ro")
    key = suite.generate_key()                                 # a SecretKey; never printed
    engine = default_engine()                                  # or BatchEngine(workers=4)
    elements = engine.hash_and_encrypt(suite, key, messages, suite.dst)   # (n, 32) uint8
    engine.encrypt(suite, other_key, elements)                 # validates every row first

:func:`random_permutation` shuffles from the OS CSPRNG; :func:`backend_info` says which code
computes X25519 here and why. See :mod:`cleanroom.crypto.suites` for the suites themselves and
:mod:`cleanroom.crypto.cluster` for a Dask cluster as the engine's executor.
"""

from __future__ import annotations

from cleanroom.crypto.batch import (
    BatchEngine,
    HashAndEncryptJob,
    ProgressCallback,
    ValidatedElements,
    default_engine,
)
from cleanroom.crypto.keys import SecretKey
from cleanroom.crypto.permutation import random_permutation
from cleanroom.crypto.suites import DEFAULT_SUITE_ID, SUITE_IDS, Suite, get_suite
from cleanroom.crypto.x25519 import BackendInfo, backend_info

__all__ = [
    "DEFAULT_SUITE_ID",
    "SUITE_IDS",
    "BackendInfo",
    "BatchEngine",
    "HashAndEncryptJob",
    "ProgressCallback",
    "SecretKey",
    "Suite",
    "ValidatedElements",
    "backend_info",
    "default_engine",
    "get_suite",
    "random_permutation",
]
