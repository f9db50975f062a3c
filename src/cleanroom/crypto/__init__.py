"""Group operations of the matching protocol: ciphersuites, keys, batch encryption.

``get_suite(id)`` returns a ciphersuite with hash to curve (RFC 9380), key generation, element
validation and the commutative encryption ``E_k``; :class:`BatchEngine` runs large batches of
them across all CPU cores; :func:`backend_info` says which code computes X25519 here and why. See
:mod:`cleanroom.crypto.suites` for the suites themselves.
"""

from __future__ import annotations

from cleanroom.crypto.batch import BatchEngine, default_engine
from cleanroom.crypto.suites import DEFAULT_SUITE_ID, SUITE_IDS, get_suite
from cleanroom.crypto.x25519 import BackendInfo, backend_info

__all__ = [
    "DEFAULT_SUITE_ID",
    "SUITE_IDS",
    "BackendInfo",
    "BatchEngine",
    "backend_info",
    "default_engine",
    "get_suite",
]
