"""RFC 9380 ``P256_XMD:SHA-256_SSWU_RO_``: hash a message to a P-256 point.

Points are affine ``(x, y)`` on ``y^2 = x^3 - 3x + B`` over the P-256 prime field, encoded as
33-byte SEC1 compressed points (``02``/``03`` by the parity of y, then x big-endian). The curve
has cofactor 1, so no cofactor clearing is needed. There is no throughput target for this suite:
the code follows RFC 9380 §6.6.2 directly, with one Legendre symbol and one exponentiation
(p = 3 mod 4 square root) per map.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import NDArray

from cleanroom.crypto import h2c

__all__ = [
    "ELEMENT_SIZE",
    "SUITE_ID",
    "encode_to_curve",
    "hash_to_curve",
    "hash_to_curve_many",
]

SUITE_ID = "P256_XMD:SHA-256_SSWU_RO_"
#: Bytes of an encoded point: SEC1 compressed.
ELEMENT_SIZE = 33

#: ``(x, y)`` with both coordinates reduced modulo p.
_AffinePoint = tuple[int, int]
#: An affine point, or ``None`` for the point at infinity.
_Point = _AffinePoint | None

_HASH = "sha256"
_P_INT = 2**256 - 2**224 + 2**192 + 2**96 - 1
_L = 48  # bytes per field element: ceil((256 + 128) / 8)

_P = mpz(_P_INT)
_A = mpz(_P_INT - 3)
_B = mpz(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_Z = mpz(_P_INT - 10)
# x1 = (-B / A) * (1 + tv1), and B / (Z * A) when tv1 = 0 (RFC 9380 §6.6.2 step 3).
_MINUS_B_OVER_A = -_B * gmpy2.invert(_A, _P) % _P
_B_OVER_ZA = _B * gmpy2.invert(_Z * _A, _P) % _P
_SQRT_EXPONENT = mpz((_P_INT + 1) // 4)  # p = 3 mod 4


def _hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
    """Hash ``msg`` to ``count`` elements of the P-256 base field (§5.2, SHA-256, L = 48).

    Args:
        msg: the message.
        dst: the domain separation tag.
        count: number of elements; 2 for hash_to_curve, 1 for encode_to_curve.

    Returns:
        ``count`` integers in ``[0, p)``.

    Raises:
        ValueError: the DST is empty.
    """
    return h2c.hash_to_field(msg, dst, count, _P_INT, _L, _HASH)


def _curve_rhs(x: mpz) -> mpz:
    return (x * x * x + _A * x + _B) % _P


def _map_to_curve(u: int) -> _AffinePoint:
    """Simplified SWU for P-256 with Z = -10 (RFC 9380 §6.6.2).

    Args:
        u: a field element.

    Returns:
        The point ``(x, y)``, with ``sgn0(y) == sgn0(u)``. The map never yields the point at
        infinity.
    """
    p = _P
    t = mpz(u) % p
    zu2 = _Z * t * t % p
    tv1 = zu2 * zu2 + zu2
    tv1 = gmpy2.invert(tv1, p) if tv1 % p else mpz(0)  # inv0
    x1 = _MINUS_B_OVER_A * (1 + tv1) % p if tv1 else _B_OVER_ZA
    gx1 = _curve_rhs(x1)
    if gmpy2.jacobi(gx1, p) >= 0:  # is_square, with 0 counted as a square
        x, gx = x1, gx1
    else:
        x = zu2 * x1 % p
        gx = _curve_rhs(x)
    y = gmpy2.powmod(gx, _SQRT_EXPONENT, p)
    if (t & 1) != (y & 1):  # sgn0(u) != sgn0(y)
        y = (p - y) % p
    return int(x), int(y)


def _add_points(a: _Point, b: _Point) -> _Point:
    """Add two points of P-256 in affine coordinates (complete: any inputs).

    Args:
        a: a point, or ``None`` for the point at infinity.
        b: a point, or ``None``.

    Returns:
        ``a + b``, or ``None`` if it is the point at infinity.
    """
    if a is None:
        return b
    if b is None:
        return a
    p = _P
    (x1, y1), (x2, y2) = a, b
    if (x1 - x2) % p == 0:
        if (y1 + y2) % p == 0:
            return None
        slope = (3 * x1 * x1 + _A) * gmpy2.invert(2 * y1, p) % p
    else:
        slope = (y2 - y1) * gmpy2.invert(x2 - x1, p) % p
    x3 = (slope * slope - x1 - x2) % p
    y3 = (slope * (x1 - x3) - y1) % p
    return int(x3), int(y3)


def _hash_to_curve_point(msg: bytes, dst: bytes) -> _Point:
    """RFC 9380 hash_to_curve for ``P256_XMD:SHA-256_SSWU_RO_``, as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``P = _map_to_curve(u0) + _map_to_curve(u1)`` (cofactor 1); ``None`` (the point at
        infinity) has probability about 2^-256 and does not occur in practice.

    Raises:
        ValueError: the DST is empty.
    """
    u0, u1 = _hash_to_field(msg, dst, 2)
    return _add_points(_map_to_curve(u0), _map_to_curve(u1))


def _encode_to_curve_point(msg: bytes, dst: bytes) -> _AffinePoint:
    """RFC 9380 encode_to_curve (the nonuniform ``_NU_`` variant), as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``_map_to_curve(u0)``.

    Raises:
        ValueError: the DST is empty.
    """
    (u0,) = _hash_to_field(msg, dst, 1)
    return _map_to_curve(u0)


def _encode_point(point: _Point) -> bytes:
    """Encode a point in SEC1 compressed form, 33 bytes.

    Args:
        point: a point, or ``None``.

    Returns:
        ``02``/``03`` (y even/odd) followed by x, 32 bytes big-endian. SEC1 has no 33-byte form
        for the point at infinity, so it encodes as 33 zero bytes, which every decoder and
        ``validate`` reject.
    """
    if point is None:
        return bytes(ELEMENT_SIZE)
    x, y = point
    return bytes([2 | (y & 1)]) + x.to_bytes(32, "big")


def hash_to_curve(msg: bytes, dst: bytes) -> bytes:
    """Hash ``msg`` to P-256 (RFC 9380 ``P256_XMD:SHA-256_SSWU_RO_``).

    Args:
        msg: the message.
        dst: the domain separation tag; tags over 255 bytes are hashed first (§5.3.3).

    Returns:
        The point as 33-byte SEC1 compressed bytes.

    Raises:
        ValueError: the DST is empty.
    """
    return _encode_point(_hash_to_curve_point(msg, dst))


def encode_to_curve(msg: bytes, dst: bytes) -> bytes:
    """Encode ``msg`` to P-256 with the nonuniform map (``P256_XMD:SHA-256_SSWU_NU_``).

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        The point as 33-byte SEC1 compressed bytes.

    Raises:
        ValueError: the DST is empty.
    """
    return _encode_point(_encode_to_curve_point(msg, dst))


def hash_to_curve_many(msgs: Sequence[bytes], dst: bytes) -> NDArray[np.uint8]:
    """Hash every message to P-256, in this process; row ``i`` equals ``hash_to_curve(msgs[i])``.

    Args:
        msgs: the messages.
        dst: the domain separation tag, shared by all messages.

    Returns:
        A writable ``uint8`` array of shape ``(len(msgs), 33)``.

    Raises:
        ValueError: the DST is empty.
    """
    h2c.dst_prime(dst, _HASH)  # fail on a bad DST even when msgs is empty
    encoded = b"".join(hash_to_curve(msg, dst) for msg in msgs)
    return np.frombuffer(bytearray(encoded), dtype=np.uint8).reshape(len(msgs), ELEMENT_SIZE)
