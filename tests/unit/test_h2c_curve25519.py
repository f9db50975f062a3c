"""Unit tests of cleanroom.crypto.h2c_curve25519.

The module's two implementations (affine ``hash_to_curve`` in Python, ``hash_to_curve_many`` in C)
are checked against each other and against an independent reference written here from the generic
RFC 9380 text (§5.3.1, §6.7.1, §7): plain Python integers, square roots by exponentiation, affine
Montgomery arithmetic, and an x-only ladder to test the order of the result. The C module has two
paths chosen at run time (eight lanes on AVX-512 IFMA, and portable C): the bulk tests run on each.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from unittest import mock

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import _h2c25519, h2c_curve25519
from cleanroom.crypto.h2c_curve25519 import hash_to_curve, hash_to_curve_many

DST = b"CLEANROOM-V1-X25519-SHA512-ELL2-RO"

C_PATHS = [
    pytest.param(
        True, id="ifma", marks=pytest.mark.skipif(not _h2c25519.IFMA, reason="no AVX-512 IFMA")
    ),
    pytest.param(False, id="portable"),
]


class _OnePath:
    """The C module with its path forced (``ifma=False``: the portable code even on IFMA)."""

    def __init__(self, ifma: bool) -> None:
        self.ifma = ifma

    def hash_to_curve_many(
        self, msgs: Sequence[bytes], dst_prime: bytes
    ) -> tuple[bytes, list[int]]:
        return _h2c25519.hash_to_curve_many(msgs, dst_prime, ifma=self.ifma)


def many_on(ifma: bool, msgs: Sequence[bytes], dst: bytes) -> list[bytes]:
    """``hash_to_curve_many`` on one path of the C module, as a list of rows."""
    with mock.patch.object(h2c_curve25519, "_h2c25519", _OnePath(ifma)):
        return [row.tobytes() for row in hash_to_curve_many(msgs, dst)]


# --- Independent reference -------------------------------------------------------------------

P = 2**255 - 19
A = 486662
ORDER = 2**252 + 27742317777372353535851937790883648493  # prime order of the main subgroup
SQRT_M1 = pow(2, (P - 1) // 4, P)


def ref_expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    if len(dst) > 255:
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + length.to_bytes(2, "big") + b"\0" + dst_prime).digest()
    out = [hashlib.sha512(b0 + b"\1" + dst_prime).digest()]
    for i in range(2, -(-length // 64) + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, out[-1], strict=True))
        out.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(out)[:length]


def ref_is_square(x: int) -> bool:
    return pow(x, (P - 1) // 2, P) in (0, 1)


def ref_sqrt(x: int) -> int:
    root = pow(x, (P + 3) // 8, P)  # p = 5 mod 8
    if root * root % P != x % P:
        root = root * SQRT_M1 % P
    assert root * root % P == x % P
    return root


def ref_g(x: int) -> int:
    return (x**3 + A * x * x + x) % P


def ref_map(u: int) -> tuple[int, int]:
    """RFC 9380 §6.7.1 Elligator 2 with J = 486662, K = 1, Z = 2."""
    denominator = (1 + 2 * u * u) % P
    x1 = -A * pow(denominator, P - 2, P) % P if denominator else 0
    if x1 == 0:
        x1 = -A % P
    x2 = (-x1 - A) % P
    if ref_is_square(ref_g(x1)):
        x, y = x1, ref_sqrt(ref_g(x1))
        if y % 2 == 0:
            y = -y % P
    else:
        x, y = x2, ref_sqrt(ref_g(x2))
        if y % 2 == 1:
            y = -y % P
    return x, y


def ref_add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    (x1, y1), (x2, y2) = a, b
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        slope = (3 * x1 * x1 + 2 * A * x1 + 1) * pow(2 * y1, P - 2, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, P - 2, P) % P
    x3 = (slope * slope - A - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def ref_hash_to_curve(msg: bytes, dst: bytes) -> bytes:
    uniform = ref_expand_message_xmd(msg, dst, 96)
    u0, u1 = (int.from_bytes(uniform[i : i + 48], "big") % P for i in (0, 48))
    point = ref_add(ref_map(u0), ref_map(u1))
    for _ in range(3):
        point = ref_add(point, point)
    assert point is not None
    return point[0].to_bytes(32, "little")


def ref_ladder_is_identity(scalar: int, u: int) -> bool:
    """Montgomery ladder (RFC 7748 §5, unclamped): is ``scalar * (point with u)`` infinity?"""
    x2, z2, x3, z3 = 1, 0, u, 1
    for bit in reversed(range(scalar.bit_length())):
        if (scalar >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
        a, b = (x2 + z2) % P, (x2 - z2) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, u * (da - cb) ** 2 % P
        aa, bb = a * a % P, b * b % P
        e = aa - bb
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
        if (scalar >> bit) & 1:
            x2, z2, x3, z3 = x3, z3, x2, z2
    return z2 == 0


# --- Tests -----------------------------------------------------------------------------------


def _messages(count: int) -> list[bytes]:
    return [b"cleanroom/v1/email/" + os.urandom(32) for _ in range(count)]


def test_hash_to_curve_matches_reference() -> None:
    for msg in [*_messages(12), b"", b"x" * 300]:
        assert hash_to_curve(msg, DST) == ref_hash_to_curve(msg, DST), msg


@pytest.mark.parametrize("ifma", C_PATHS)
def test_many_equals_single_on_random_messages(ifma: bool) -> None:
    # 400 messages take every branch of the inlined map (x1 or x2, each with two root choices)
    # in both positions many times over.
    msgs = _messages(400)
    assert many_on(ifma, msgs, DST) == [hash_to_curve(msg, DST) for msg in msgs]


@pytest.mark.parametrize("ifma", C_PATHS)
@settings(max_examples=60)
@given(st.lists(st.binary(max_size=300), max_size=19), st.binary(min_size=1, max_size=300))
def test_many_equals_single_for_any_messages_and_dst(
    ifma: bool, msgs: list[bytes], dst: bytes
) -> None:
    # Messages of different lengths side by side in the eight SHA-512 lanes, and any DST (those
    # over 255 bytes hashed first): one, two or three trailing blocks per lane.
    assert many_on(ifma, msgs, dst) == [hash_to_curve(msg, dst) for msg in msgs]


@pytest.mark.parametrize("ifma", C_PATHS)
@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 15, 127, 128, 129, 300])
def test_many_equals_single_across_groups_and_inversion_blocks(ifma: bool, count: int) -> None:
    # Messages go eight at a time (the lanes; a short last group fills its spare lanes) and share
    # one inversion per block of 128: partial, exact and spilling groups and blocks must each
    # give every row its own point.
    msgs = _messages(count)
    assert many_on(ifma, msgs, DST) == [hash_to_curve(msg, DST) for msg in msgs]


@pytest.mark.parametrize("ifma", C_PATHS)
def test_many_equals_single_at_every_sha512_block_boundary(ifma: bool) -> None:
    # msg_prime = Z_pad || msg || 3 bytes || DST_prime: lengths 0 to 260 cross the 112- and
    # 128-byte edges of SHA-512's padding in the C expander for one and two trailing blocks.
    msgs = [bytes(range(256))[:n] if n < 256 else b"\xab" * n for n in range(261)]
    assert many_on(ifma, msgs, DST) == [hash_to_curve(msg, DST) for msg in msgs]


@pytest.mark.skipif(not _h2c25519.IFMA, reason="no AVX-512 IFMA")
def test_the_ifma_and_portable_paths_agree_on_20_000_messages() -> None:
    msgs = [os.urandom(n % 97) for n in range(20_000)]
    dst_prime = b"CLEANROOM-V1-X25519-SHA512-ELL2-RO\x22"
    assert _h2c25519.hash_to_curve_many(msgs, dst_prime) == _h2c25519.hash_to_curve_many(
        msgs, dst_prime, ifma=False
    )


def test_many_rejects_a_message_that_is_not_bytes() -> None:
    with pytest.raises(TypeError, match="message 1 is str"):
        hash_to_curve_many([b"ok", "not bytes"], DST)  # type: ignore[list-item]


def test_map_to_curve_matches_reference() -> None:
    inputs = [0, 1, 2, P - 1, *(int.from_bytes(os.urandom(32), "big") % P for _ in range(150))]
    for u in inputs:
        assert h2c_curve25519._map_to_curve(u) == ref_map(u), u


def test_output_is_in_the_prime_order_subgroup() -> None:
    for encoded in hash_to_curve_many(_messages(4), DST):
        u = int.from_bytes(encoded.tobytes(), "little")
        assert u < P
        assert ref_is_square(ref_g(u))  # on the curve, not its twist
        assert ref_ladder_is_identity(ORDER, u)
        assert not ref_ladder_is_identity(8, u)  # not the identity or a small-order point


def test_output_is_accepted_by_x25519() -> None:
    # OpenSSL refuses an exchange with a small-order point (all-zero shared secret).
    key = X25519PrivateKey.generate()
    for encoded in hash_to_curve_many(_messages(20), DST):
        assert len(key.exchange(X25519PublicKey.from_public_bytes(encoded.tobytes()))) == 32


def test_empty_batch_has_shape_zero_by_32() -> None:
    rows = hash_to_curve_many([], DST)
    assert rows.shape == (0, 32)
    assert rows.dtype == np.uint8


def test_batch_is_writable_uint8() -> None:
    rows = hash_to_curve_many(_messages(3), DST)
    assert rows.dtype == np.uint8
    assert rows.flags.writeable


def test_oversize_dst_is_hashed() -> None:
    long_dst = b"D" * 300
    short_dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + long_dst).digest()
    msgs = _messages(3)
    expected = [hash_to_curve(msg, short_dst) for msg in msgs]
    assert [hash_to_curve(msg, long_dst) for msg in msgs] == expected
    assert [row.tobytes() for row in hash_to_curve_many(msgs, long_dst)] == expected
    assert expected[0] == ref_hash_to_curve(msgs[0], long_dst)


def test_dst_separates_domains() -> None:
    msg = b"cleanroom/v1/email/" + bytes(32)
    assert hash_to_curve(msg, DST) != hash_to_curve(msg, DST + b"-OTHER")


EMPTY_DST_CALLS: list[Callable[[], object]] = [
    lambda: hash_to_curve(b"msg", b""),
    lambda: hash_to_curve_many([b"msg"], b""),
    lambda: hash_to_curve_many([], b""),
]


@pytest.mark.parametrize("call", EMPTY_DST_CALLS, ids=["single", "many", "many-empty"])
def test_empty_dst_is_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="domain separation tag must not be empty"):
        call()


def test_add_points_handles_inverse_and_equal_points() -> None:
    q = h2c_curve25519._map_to_curve(12345)
    minus_q = (q[0], -q[1] % P)
    assert h2c_curve25519._add_points(q, minus_q) is None
    assert h2c_curve25519._add_points(q, None) == q
    assert h2c_curve25519._add_points(None, q) == q
    assert h2c_curve25519._add_points(q, q) == ref_add(q, q)


def test_clear_cofactor_maps_small_order_points_to_infinity() -> None:
    assert h2c_curve25519._clear_cofactor((0, 0)) is None  # the point of order 2
    assert h2c_curve25519._clear_cofactor(None) is None
    assert h2c_curve25519._encode_point(None) == bytes(32)


def test_suite_constants() -> None:
    assert h2c_curve25519.SUITE_ID == "curve25519_XMD:SHA-512_ELL2_RO_"
    assert h2c_curve25519.ELEMENT_SIZE == 32
