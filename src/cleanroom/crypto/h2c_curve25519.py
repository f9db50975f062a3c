"""RFC 9380 ``curve25519_XMD:SHA-512_ELL2_RO_``: hash a message to an X25519 public value.

Points are on the Montgomery curve ``v^2 = u^3 + 486662 u^2 + u`` over ``p = 2^255 - 19``,
written ``(u, v)`` in affine coordinates; the encoding is the u-coordinate of ``P`` as 32
little-endian bytes, exactly what ``X25519PublicKey.from_public_bytes`` takes.

Two implementations of the same function live here on purpose:

* :func:`hash_to_curve` follows the RFC step by step on affine points (Elligator 2 in the
  straight-line form of Appendix G.2.1, affine addition, three affine doublings). It also yields
  the intermediate values the known-answer tests check (``u``, ``Q0``, ``Q1``, ``P``).
* :func:`hash_to_curve_many` is the bulk path, in C (``_h2c25519.c``): hashing is a large part
  of a session's work, and in Python the interpreter's overhead around GMP's two exponentiations
  cost as much as the exponentiations. It inlines everything: the expander's three SHA-512
  calls, both maps (one exponentiation each), the sum in fractions, the cofactor clearing as
  x-only doublings in projective coordinates, and one inversion per block of messages
  (Montgomery's trick); on a CPU with AVX-512 IFMA it runs eight messages at a time. It returns
  the same bytes as :func:`hash_to_curve` for every message, on either path (tests check this).
  It also takes the messages as :class:`~cleanroom.crypto.packed.PackedMessages`, the form in
  which the batch engine sends a chunk of them to a worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import NDArray

from cleanroom.crypto import _h2c25519, h2c
from cleanroom.crypto.packed import PackedMessages

__all__ = [
    "ELEMENT_SIZE",
    "SUITE_ID",
    "encode_to_curve",
    "hash_to_curve",
    "hash_to_curve_many",
]

SUITE_ID = "curve25519_XMD:SHA-512_ELL2_RO_"
#: Bytes of an encoded point: the X25519 u-coordinate.
ELEMENT_SIZE = 32

#: ``(u, v)`` with both coordinates reduced modulo p.
_AffinePoint = tuple[int, int]
#: An affine point, or ``None`` for the point at infinity.
_Point = _AffinePoint | None

_HASH = "sha512"
_P_INT = 2**255 - 19
_J_INT = 486662  # Montgomery A
_L = 48  # bytes per field element: ceil((255 + 128) / 8)

_P = mpz(_P_INT)
_J = mpz(_J_INT)
_MINUS_J = mpz(_P_INT - _J_INT)
# Appendix G.2.1 constants. c3 may be either square root of -1: the map fixes the sign of y
# afterwards, so the choice cannot change its output.
_C2 = gmpy2.powmod(2, (_P_INT + 3) // 8, _P)
_C3 = gmpy2.powmod(2, (_P_INT - 1) // 4, _P)
_C4 = mpz((_P_INT - 5) // 8)


def _hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
    """Hash ``msg`` to ``count`` elements of GF(2^255 - 19) (RFC 9380 §5.2, SHA-512, L = 48).

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


def _elligator2_fraction(u: mpz) -> tuple[mpz, mpz, mpz]:
    """Appendix G.2.1 map_to_curve_elligator2_curve25519: ``(xn, xd, y)`` with ``u = xn / xd``."""
    p = _P
    tv1 = u * u % p
    tv1 = 2 * tv1 % p
    xd = tv1 + 1  # never 0: -1 is a square mod p and 2 * u^2 is not
    x1n = _MINUS_J  # x1 = -J / (1 + 2 u^2)
    tv2 = xd * xd % p
    gxd = tv2 * xd % p  # gxd = xd^3
    gx1 = _J * tv1 % p  # x1n + J * xd
    gx1 = gx1 * x1n % p
    gx1 = (gx1 + tv2) % p
    gx1 = gx1 * x1n % p  # gx1 = x1n^3 + J * x1n^2 * xd + x1n * xd^2
    tv3 = gxd * gxd % p
    tv2 = tv3 * tv3 % p  # gxd^4
    tv3 = tv3 * gxd % p  # gxd^3
    tv3 = tv3 * gx1 % p  # gx1 * gxd^3
    tv2 = tv2 * tv3 % p  # gx1 * gxd^7
    y11 = gmpy2.powmod(tv2, _C4, p) * tv3 % p  # candidate sqrt(gx1 / gxd), up to a 4th root of 1
    y12 = y11 * _C3 % p
    e1 = y11 * y11 * gxd % p == gx1
    y1 = y11 if e1 else y12  # sqrt(g(x1)) if g(x1) is square
    x2n = x1n * tv1 % p  # x2 = 2 u^2 x1
    y21 = y11 * u * _C2 % p
    y22 = y21 * _C3 % p
    gx2 = gx1 * tv1 % p  # g(x2) = 2 u^2 g(x1)
    e2 = y21 * y21 * gxd % p == gx2
    y2 = y21 if e2 else y22  # sqrt(g(x2)) if g(x2) is square
    e3 = y1 * y1 * gxd % p == gx1
    xn = x1n if e3 else x2n
    y = y1 if e3 else y2
    e4 = bool(y & 1)  # sgn0(y)
    if e3 != e4:  # y's sign says which of x1, x2 was taken
        y = (p - y) % p
    return xn, xd, y


def _map_to_curve(u: int) -> _AffinePoint:
    """Elligator 2 for curve25519 (RFC 9380 §6.7.1, Appendix G.2.1), in affine coordinates.

    Args:
        u: a field element.

    Returns:
        The point ``(u, v)`` on the Montgomery curve. The map never yields the point at infinity.
    """
    xn, xd, y = _elligator2_fraction(mpz(u) % _P)
    return int(xn * gmpy2.invert(xd, _P) % _P), int(y)


def _add_points(a: _Point, b: _Point) -> _Point:
    """Add two points of the Montgomery curve in affine coordinates (complete: any inputs).

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
            return None  # b = -a (this includes doubling a point of order 2)
        slope = (3 * x1 * x1 + 2 * _J * x1 + 1) * gmpy2.invert(2 * y1, p) % p
    else:
        slope = (y2 - y1) * gmpy2.invert(x2 - x1, p) % p
    x3 = (slope * slope - _J - x1 - x2) % p
    y3 = (slope * (x1 - x3) - y1) % p
    return int(x3), int(y3)


def _clear_cofactor(point: _Point) -> _Point:
    """Multiply by the cofactor h_eff = 8, landing in the prime-order subgroup (RFC 9380 §7).

    Args:
        point: a point, or ``None``.

    Returns:
        ``8 * point``, or ``None`` if that is the point at infinity.
    """
    for _ in range(3):
        point = _add_points(point, point)
    return point


def _hash_to_curve_point(msg: bytes, dst: bytes) -> _Point:
    """RFC 9380 hash_to_curve for ``curve25519_XMD:SHA-512_ELL2_RO_``, as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``P = _clear_cofactor(_map_to_curve(u0) + _map_to_curve(u1))``; ``None`` (the point at
        infinity) has probability about 2^-250 and does not occur in practice.

    Raises:
        ValueError: the DST is empty.
    """
    u0, u1 = _hash_to_field(msg, dst, 2)
    return _clear_cofactor(_add_points(_map_to_curve(u0), _map_to_curve(u1)))


def _encode_to_curve_point(msg: bytes, dst: bytes) -> _Point:
    """RFC 9380 encode_to_curve (the nonuniform ``_NU_`` variant), as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``_clear_cofactor(_map_to_curve(u0))``.

    Raises:
        ValueError: the DST is empty.
    """
    (u0,) = _hash_to_field(msg, dst, 1)
    return _clear_cofactor(_map_to_curve(u0))


def _encode_point(point: _Point) -> bytes:
    """Encode a point as its u-coordinate, 32 bytes little-endian (RFC 7748 §5).

    Args:
        point: a point, or ``None``.

    Returns:
        The X25519 encoding; the point at infinity encodes as 32 zero bytes, which is also what
        the Montgomery ladder produces for it.
    """
    return (0 if point is None else point[0]).to_bytes(ELEMENT_SIZE, "little")


def hash_to_curve(msg: bytes, dst: bytes) -> bytes:
    """Hash ``msg`` to the curve (RFC 9380 ``curve25519_XMD:SHA-512_ELL2_RO_``).

    Args:
        msg: the message.
        dst: the domain separation tag; tags over 255 bytes are hashed first (§5.3.3).

    Returns:
        32 bytes: the u-coordinate of ``P`` in little-endian order, an X25519 public value in the
        prime-order subgroup.

    Raises:
        ValueError: the DST is empty.
    """
    return _encode_point(_hash_to_curve_point(msg, dst))


def encode_to_curve(msg: bytes, dst: bytes) -> bytes:
    """Encode ``msg`` to the curve with the nonuniform map (``curve25519_XMD:SHA-512_ELL2_NU_``).

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        32 bytes: the u-coordinate of the point, little-endian.

    Raises:
        ValueError: the DST is empty.
    """
    return _encode_point(_encode_to_curve_point(msg, dst))


def hash_to_curve_many(msgs: Sequence[bytes], dst: bytes) -> NDArray[np.uint8]:
    """Hash every message to the curve in this process; row i equals ``hash_to_curve(msgs[i])``.

    Args:
        msgs: the messages.
        dst: the domain separation tag, shared by all messages.

    Returns:
        A writable ``uint8`` array of shape ``(len(msgs), 32)``.

    Raises:
        ValueError: the DST is empty.
    """
    dst_prime = h2c.dst_prime(dst, _HASH)
    if isinstance(msgs, PackedMessages):  # a chunk sent to a worker: read as it came
        encoded, exceptional = _h2c25519.hash_to_curve_packed(msgs.data, msgs.offsets, dst_prime)
    else:
        encoded, exceptional = _h2c25519.hash_to_curve_many(msgs, dst_prime)
    out = np.frombuffer(bytearray(encoded), dtype=np.uint8).reshape(len(msgs), ELEMENT_SIZE)
    # Q0 = +-Q1, a map output (0, 0), or a sum of order dividing 8: chance about 2^-250 per
    # message, where the projective formulas do not apply. The affine path handles them exactly.
    for index in exceptional:
        out[index] = np.frombuffer(hash_to_curve(msgs[index], dst), dtype=np.uint8)
    return out
