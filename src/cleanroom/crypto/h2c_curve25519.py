"""RFC 9380 ``curve25519_XMD:SHA-512_ELL2_RO_``: hash a message to an X25519 public value.

Points are on the Montgomery curve ``v^2 = u^3 + 486662 u^2 + u`` over ``p = 2^255 - 19``,
written ``(u, v)`` in affine coordinates; the encoding is the u-coordinate of ``P`` as 32
little-endian bytes, exactly what ``X25519PublicKey.from_public_bytes`` takes.

Two implementations of the same function live here on purpose:

* :func:`hash_to_curve` follows the RFC step by step on affine points (Elligator 2 in the
  straight-line form of Appendix G.2.1, affine addition, three affine doublings). It also yields
  the intermediate values the known-answer tests check (``u``, ``Q0``, ``Q1``, ``P``).
* :func:`hash_to_curve_many` is the bulk path. Its cost per message must stay close to one X25519
  exchange, so it inlines everything into one loop: the expander's three SHA-512 calls, both maps
  (one exponentiation each, the irreducible cost), the sum in fractions, the cofactor clearing as
  x-only doublings in projective coordinates, and one inversion at the end (GMP's inversion
  costs about as much as the interpreter overhead of Montgomery's batch trick, so it is not
  batched). It returns the same bytes as :func:`hash_to_curve` for every message (tests check
  this).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import NDArray

from cleanroom.crypto import h2c

__all__ = [
    "ELEMENT_SIZE",
    "SUITE_ID",
    "AffinePoint",
    "Point",
    "add_points",
    "clear_cofactor",
    "encode_point",
    "encode_to_curve",
    "encode_to_curve_point",
    "hash_to_curve",
    "hash_to_curve_many",
    "hash_to_curve_point",
    "hash_to_field",
    "map_to_curve",
]

SUITE_ID = "curve25519_XMD:SHA-512_ELL2_RO_"
#: Bytes of an encoded point: the X25519 u-coordinate.
ELEMENT_SIZE = 32

#: ``(u, v)`` with both coordinates reduced modulo p.
AffinePoint = tuple[int, int]
#: An affine point, or ``None`` for the point at infinity.
Point = AffinePoint | None

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
# (A + 2) / 4 - 1, the constant of the x-only doubling in the form X' = AA*BB, Z' = E*(AA + a24*E).
_A24 = mpz(121665)


def hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
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


def map_to_curve(u: int) -> AffinePoint:
    """Elligator 2 for curve25519 (RFC 9380 §6.7.1, Appendix G.2.1), in affine coordinates.

    Args:
        u: a field element.

    Returns:
        The point ``(u, v)`` on the Montgomery curve. The map never yields the point at infinity.
    """
    xn, xd, y = _elligator2_fraction(mpz(u) % _P)
    return int(xn * gmpy2.invert(xd, _P) % _P), int(y)


def add_points(a: Point, b: Point) -> Point:
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


def clear_cofactor(point: Point) -> Point:
    """Multiply by the cofactor h_eff = 8, landing in the prime-order subgroup (RFC 9380 §7).

    Args:
        point: a point, or ``None``.

    Returns:
        ``8 * point``, or ``None`` if that is the point at infinity.
    """
    for _ in range(3):
        point = add_points(point, point)
    return point


def hash_to_curve_point(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 hash_to_curve for ``curve25519_XMD:SHA-512_ELL2_RO_``, as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``P = clear_cofactor(map_to_curve(u0) + map_to_curve(u1))``; ``None`` (the point at
        infinity) has probability about 2^-250 and does not occur in practice.

    Raises:
        ValueError: the DST is empty.
    """
    u0, u1 = hash_to_field(msg, dst, 2)
    return clear_cofactor(add_points(map_to_curve(u0), map_to_curve(u1)))


def encode_to_curve_point(msg: bytes, dst: bytes) -> Point:
    """RFC 9380 encode_to_curve (the nonuniform ``_NU_`` variant), as an affine point.

    Args:
        msg: the message.
        dst: the domain separation tag.

    Returns:
        ``clear_cofactor(map_to_curve(u0))``.

    Raises:
        ValueError: the DST is empty.
    """
    (u0,) = hash_to_field(msg, dst, 1)
    return clear_cofactor(map_to_curve(u0))


def encode_point(point: Point) -> bytes:
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
    return encode_point(hash_to_curve_point(msg, dst))


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
    return encode_point(encode_to_curve_point(msg, dst))


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
    # The loop below is written for the interpreter, not for reading: each Python-level operation
    # costs about as much as a 255-bit multiplication, so constants are locals, nothing is
    # reduced that need not be, and there are no calls besides hashing, the two exponentiations
    # and the final inversion. Each step names the RFC quantity it computes.
    tag = h2c.dst_prime(dst, _HASH)
    # msg_prime = Z_pad || msg || I2OSP(96, 2) || I2OSP(0, 1) || DST_prime. Z_pad is exactly one
    # SHA-512 block, so the state after it is computed once and copied.
    tail0 = (2 * _L).to_bytes(2, "big") + b"\x00" + tag
    tail1 = b"\x01" + tag
    tail2 = b"\x02" + tag
    after_z_pad = hashlib.sha512(bytes(128)).copy
    sha512 = hashlib.sha512
    from_bytes = mpz.from_bytes
    powmod = gmpy2.powmod
    invert = gmpy2.invert
    p, j, c2, c3, c4, a24 = _P, _J, _C2, _C3, _C4, _A24
    minus_j = -_J  # the map's x1n; small, and every use of it ends in a reduction
    j3 = _J**3 % _P
    # In the x2 branch of the map, t = y11^2 * gxd equals +-c3 * g(x1). y11 * u * c2 is the
    # square root of g(x2) / gxd = 2 u^2 g(x1) / gxd iff t * c2^2 = 2 g(x1); otherwise that
    # times c3 is.
    x2_root_check = 2 * gmpy2.invert(c2 * c2, p) % p
    c2c3 = c2 * c3 % p
    mask128 = mpz((1 << 128) - 1)

    encoded: list[bytes] = []
    append = encoded.append
    for msg in msgs:
        # expand_message_xmd(msg, DST, 96): b_1 || b_2, then u0 = b[0:48], u1 = b[48:96].
        h = after_z_pad()
        h.update(msg + tail0)
        b0 = h.digest()
        b1 = from_bytes(sha512(b0 + tail1).digest())
        b2 = from_bytes(sha512((from_bytes(b0) ^ b1).to_bytes(64, "big") + tail2).digest())
        # Left unreduced: the map only uses u in products that are reduced anyway.
        u0 = b1 >> 128
        u1 = ((b1 & mask128) << 256) | (b2 >> 256)

        # Q0 = map_to_curve(u0) = (q0n / q0d, q0y) by Appendix G.2.1: the denominator is
        # xd = 1 + 2 u^2, the numerator x1n = -J if g(x1) is square, else x2n = -J * 2 u^2;
        # y comes out affine, as its sign (sgn0) must be fixed.
        tv1 = u0 * u0 * 2 % p
        q0d = tv1 + 1
        xd2 = q0d * q0d % p
        gxd = xd2 * q0d
        gx1 = (j3 * tv1 - j * xd2) % p
        g2 = gxd * gxd % p
        tv3 = g2 * gxd * gx1 % p
        q0y = powmod(g2 * g2 * tv3, c4, p) * tv3 % p
        t = q0y * q0y * gxd % p
        if t == gx1:
            q0n = minus_j
            if not q0y & 1:
                q0y = p - q0y
        elif t + gx1 == p:
            q0n = minus_j
            q0y = q0y * c3 % p
            if not q0y & 1:
                q0y = p - q0y
        else:
            q0n = minus_j * tv1
            q0y = q0y * u0 * (c2 if t == gx1 * x2_root_check % p else c2c3) % p
            if q0y & 1:
                q0y = p - q0y

        # Q1 = map_to_curve(u1), the same steps.
        tv1 = u1 * u1 * 2 % p
        q1d = tv1 + 1
        xd2 = q1d * q1d % p
        gxd = xd2 * q1d
        gx1 = (j3 * tv1 - j * xd2) % p
        g2 = gxd * gxd % p
        tv3 = g2 * gxd * gx1 % p
        q1y = powmod(g2 * g2 * tv3, c4, p) * tv3 % p
        t = q1y * q1y * gxd % p
        if t == gx1:
            q1n = minus_j
            if not q1y & 1:
                q1y = p - q1y
        elif t + gx1 == p:
            q1n = minus_j
            q1y = q1y * c3 % p
            if not q1y & 1:
                q1y = p - q1y
        else:
            q1n = minus_j * tv1
            q1y = q1y * u1 * (c2 if t == gx1 * x2_root_check % p else c2c3) % p
            if q1y & 1:
                q1y = p - q1y

        # R = Q0 + Q1 as X / Z. For Q0 = (s0, t0), Q1 = (s1, t1) with Q0 != +-Q1 and s0 s1 != 0,
        # the affine law s_R = slope^2 - A - s0 - s1 equals (s0 t1 - s1 t0)^2 /
        # (s0 s1 (s1 - s0)^2), which needs fewer steps. With s_i = q_in / q_id this gives
        # X = (q0n q1d t1 - q1n q0d t0)^2 q0d q1d and Z = q0n q1n (q1n q0d - q0n q1d)^2;
        # Z = 0 exactly where the formula does not apply.
        cross0 = q0n * q1d
        cross1 = q1n * q0d
        w = cross0 * q1y - cross1 * q0y
        m = cross1 - cross0
        x = w * w * q0d * q1d % p
        z = q0n * q1n * m * m % p

        # P = 8 R by three x-only doublings: X' = AA BB, Z' = E (AA + a24 E), E = AA - BB.
        s = x + z
        d = x - z
        aa = s * s
        bb = d * d
        e = aa - bb
        x = aa * bb % p
        z = e * (aa + a24 * e) % p
        s = x + z
        d = x - z
        aa = s * s
        bb = d * d
        e = aa - bb
        x = aa * bb % p
        z = e * (aa + a24 * e) % p
        s = x + z
        d = x - z
        aa = s * s
        bb = d * d
        e = aa - bb
        x = aa * bb % p
        z = e * (aa + a24 * e) % p

        if z:
            append((x * invert(z, p) % p).to_bytes(32, "little"))
        else:
            # Q0 = +-Q1, a map output (0, 0), or R of order dividing 8: chance about 2^-250 per
            # message. The affine path handles these cases exactly.
            append(hash_to_curve(msg, dst))

    out = np.frombuffer(bytearray(b"".join(encoded)), dtype=np.uint8)
    return out.reshape(len(encoded), ELEMENT_SIZE)
