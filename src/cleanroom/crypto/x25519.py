"""X25519 over whole chunks, and which code computes it in this process.

Two backends give the same bytes for every input (RFC 7748 X25519: the scalar clamped, the u's
top bit masked; an all-zero result refused with the same ``ValueError``):

- ``ifma``: eight Montgomery ladders at a time in the 52-bit lanes of AVX-512 IFMA
  (``_x25519_ifma.c``, which also says why it is not Intel's crypto_mb);
- ``openssl``: OpenSSL's one-at-a-time X25519 through ``cryptography``.

``CLEANROOM_X25519`` chooses: ``auto`` (the default) takes ``ifma`` where the CPU has AVX-512
IFMA and the ladder passes its known-answer self-test (RFC 7748's Diffie-Hellman example in
every lane), ``openssl`` otherwise; ``ifma`` or ``openssl`` forces one, and a forced ``ifma``
that cannot run is an error (:class:`~cleanroom.errors.BackendUnavailable`), never a silent
fallback. The choice is made once per process; batch-engine workers inherit the variable, so
they choose the same.

Callers validate received elements before either backend: these functions compute, they do not
judge. Keys are passed as raw bytes and never logged; ``_x25519_ifma.c`` says what the C side
does with them (one clamped copy, wiped with the ladder's state).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cleanroom.crypto import _x25519_ifma
from cleanroom.errors import BackendUnavailable

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "BackendInfo",
    "Exchange",
    "backend_info",
    "exchange",
    "exchange_ifma",
    "exchange_openssl",
    "ifma_problem",
    "select",
]

ENV_VAR: Final = "CLEANROOM_X25519"
#: The backends, and ``auto`` (the default): what ``CLEANROOM_X25519`` may say.
BACKENDS: Final[tuple[str, ...]] = ("auto", "ifma", "openssl")

_SIZE: Final = 32

#: A backend's chunk function: ``(raw 32-byte scalar, concatenated u-coordinates) -> results``.
Exchange = Callable[[bytes, bytes], bytes]


@dataclass(frozen=True)
class BackendInfo:
    """Which X25519 backend runs, and why.

    Attributes:
        name: ``"ifma"`` or ``"openssl"``.
        requested: what ``CLEANROOM_X25519`` asked for (``"auto"`` when unset).
        reason: why this backend, in words (e.g. why ``auto`` did not take ``ifma``).
        library: the library and version that computes it.
    """

    name: str
    requested: str
    reason: str
    library: str

    def __str__(self) -> str:
        return f"X25519 backend: {self.name} ({self.library}); {self.reason}"


def exchange_openssl(key_bytes: bytes, rows: bytes) -> bytes:
    """X25519 of every 32-byte row with OpenSSL, one at a time; concatenated results.

    Raises:
        ValueError: a result is all zero (a small-order u).
    """
    exchange_one = X25519PrivateKey.from_private_bytes(key_bytes).exchange
    from_public = X25519PublicKey.from_public_bytes
    view = memoryview(rows).cast("B")
    return b"".join(
        [exchange_one(from_public(bytes(view[i : i + _SIZE]))) for i in range(0, len(view), _SIZE)]
    )


def ifma_problem() -> str | None:
    """Why the ``ifma`` backend cannot run here, or ``None`` if it can (probed at import)."""
    return _x25519_ifma.probe()


def exchange_ifma(key_bytes: bytes, rows: bytes) -> bytes:
    """X25519 of every 32-byte row on AVX-512 IFMA, eight lanes at a time; concatenated results.

    Raises:
        BackendUnavailable: the ``ifma`` backend cannot run here.
        ValueError: a result is all zero (a small-order u), exactly as :func:`exchange_openssl`.
    """
    problem = ifma_problem()
    if problem is not None:
        raise BackendUnavailable(f"the ifma X25519 backend cannot run here: {problem}")
    return _x25519_ifma.exchange(key_bytes, rows)


def _openssl_library() -> str:
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    return f"{backend.openssl_version_text()} through cryptography {cryptography.__version__}"


def _ifma_library() -> str:
    from cleanroom import __version__

    return f"cleanroom {__version__}'s 8-lane Montgomery ladder on AVX-512 IFMA"


def select(requested: str) -> BackendInfo:
    """The backend for a value of ``CLEANROOM_X25519`` (``""`` counts as ``auto``).

    Raises:
        BackendUnavailable: the value is unknown, or it is ``ifma`` and that cannot run here.
    """
    requested = requested.strip().lower() or "auto"
    if requested not in BACKENDS:
        raise BackendUnavailable(f"{ENV_VAR}={requested!r} is not one of {', '.join(BACKENDS)}")
    if requested == "openssl":
        return BackendInfo("openssl", requested, f"forced by {ENV_VAR}=openssl", _openssl_library())
    problem = ifma_problem()
    if requested == "ifma":
        if problem is not None:
            raise BackendUnavailable(
                f"{ENV_VAR}=ifma, but the 8-lane X25519 cannot run here: {problem}"
            )
        return BackendInfo(
            "ifma", requested, f"forced by {ENV_VAR}=ifma; self-test passed", _ifma_library()
        )
    if problem is None:
        return BackendInfo(
            "ifma",
            requested,
            "auto: AVX-512 IFMA present and the self-test passed",
            _ifma_library(),
        )
    return BackendInfo("openssl", requested, f"auto: {problem}", _openssl_library())


_lock = threading.Lock()
_chosen: tuple[BackendInfo, Exchange] | None = None


def _choose() -> tuple[BackendInfo, Exchange]:
    global _chosen
    with _lock:
        if _chosen is None:
            info = select(os.environ.get(ENV_VAR, ""))
            _chosen = (info, exchange_ifma if info.name == "ifma" else exchange_openssl)
        return _chosen


def backend_info() -> BackendInfo:
    """The X25519 backend of this process and why (chosen on first use, then fixed).

    Raises:
        BackendUnavailable: ``CLEANROOM_X25519`` is unknown, or forces ``ifma`` where it cannot run.
    """
    return _choose()[0]


def exchange(key_bytes: bytes, rows: bytes) -> bytes:
    """X25519 of every 32-byte row of ``rows`` with the raw scalar ``key_bytes``, on this
    process's backend; the concatenated 32-byte results.

    Raises:
        ValueError: a result is all zero (a small-order u; validated input never has one).
        BackendUnavailable: as :func:`backend_info`.
    """
    chosen = _chosen or _choose()
    return chosen[1](key_bytes, rows)
