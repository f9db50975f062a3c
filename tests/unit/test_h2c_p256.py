"""Unit tests of cleanroom.crypto.h2c_p256.

The map is compared with a reference written here from RFC 9380 §6.6.2 (plain integers, square
roots and inverses by exponentiation), point arithmetic with OpenSSL's through ``cryptography``,
and the output encoding with OpenSSL's SEC1 decoder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import h2c_p256
from cleanroom.crypto.h2c_p256 import hash_to_curve, hash_to_curve_many

DST = b"CLEANROOM-V1-P256-SHA256-SSWU-RO"

P = 2**256 - 2**224 + 2**192 + 2**96 - 1
A = -3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
Z = -10


def ref_inv0(x: int) -> int:
    return pow(x, P - 2, P)


def ref_g(x: int) -> int:
    return (x**3 + A * x + B) % P


def ref_is_square(x: int) -> bool:
    return pow(x, (P - 1) // 2, P) in (0, 1)


def ref_map(u: int) -> tuple[int, int]:
    """RFC 9380 §6.6.2 simplified SWU, step by step."""
    tv1 = ref_inv0(Z * Z * u**4 + Z * u * u)
    x1 = (-B * ref_inv0(A)) * (1 + tv1) % P
    if tv1 == 0:
        x1 = B * ref_inv0(Z * A) % P
    x2 = Z * u * u * x1 % P
    x = x1 if ref_is_square(ref_g(x1)) else x2
    y = pow(ref_g(x), (P + 1) // 4, P)
    assert y * y % P == ref_g(x)
    if u % P % 2 != y % 2:
        y = -y % P
    return x, y


def _public_point(scalar: int) -> tuple[int, int]:
    numbers = ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers()
    return numbers.x, numbers.y


def _messages(count: int) -> list[bytes]:
    return [b"cleanroom/v1/phone/" + os.urandom(32) for _ in range(count)]


def test_map_to_curve_matches_reference() -> None:
    inputs = [1, 2, P - 1, *(int.from_bytes(os.urandom(32), "big") % P for _ in range(60))]
    for u in inputs:
        assert h2c_p256._map_to_curve(u) == ref_map(u), u


def test_map_to_curve_exceptional_inputs() -> None:
    # tv1 = inv0(Z^2 u^4 + Z u^2) is 0 for u = 0 and for u^2 = -1/Z, if that is a square: the
    # RFC's exceptional case x1 = B / (Z A).
    exceptional = [0]
    minus_one_over_z = -ref_inv0(Z) % P
    if ref_is_square(minus_one_over_z):
        exceptional.append(pow(minus_one_over_z, (P + 1) // 4, P))
    for u in exceptional:
        x, y = h2c_p256._map_to_curve(u)
        assert (x, y) == ref_map(u)
        assert y * y % P == ref_g(x)


def test_add_points_agrees_with_openssl() -> None:
    g = _public_point(1)
    assert h2c_p256._add_points(g, g) == _public_point(2)
    assert h2c_p256._add_points(_public_point(2), g) == _public_point(3)
    assert h2c_p256._add_points(g, (g[0], -g[1] % P)) is None
    assert h2c_p256._add_points(None, g) == g
    assert h2c_p256._add_points(g, None) == g


def test_output_decodes_as_the_same_point() -> None:
    for msg in _messages(10):
        point = h2c_p256._hash_to_curve_point(msg, DST)
        assert point is not None
        encoded = hash_to_curve(msg, DST)
        decoded = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoded)
        assert (decoded.public_numbers().x, decoded.public_numbers().y) == point


def test_many_equals_single_on_random_messages() -> None:
    msgs = _messages(60)
    rows = hash_to_curve_many(msgs, DST)
    assert [row.tobytes() for row in rows] == [hash_to_curve(msg, DST) for msg in msgs]


@settings(max_examples=30)
@given(st.lists(st.binary(max_size=200), max_size=5), st.binary(min_size=1, max_size=300))
def test_many_equals_single_for_any_messages_and_dst(msgs: list[bytes], dst: bytes) -> None:
    rows = hash_to_curve_many(msgs, dst)
    assert rows.shape == (len(msgs), 33)
    assert [row.tobytes() for row in rows] == [hash_to_curve(msg, dst) for msg in msgs]


def test_empty_batch_has_shape_zero_by_33() -> None:
    rows = hash_to_curve_many([], DST)
    assert rows.shape == (0, 33)
    assert rows.dtype == np.uint8


def test_batch_is_writable_uint8() -> None:
    rows = hash_to_curve_many(_messages(2), DST)
    assert rows.dtype == np.uint8
    assert rows.flags.writeable


def test_oversize_dst_is_hashed_with_sha256() -> None:
    long_dst = b"D" * 256
    short_dst = hashlib.sha256(b"H2C-OVERSIZE-DST-" + long_dst).digest()
    msg = b"cleanroom/v1/email/" + bytes(32)
    assert hash_to_curve(msg, long_dst) == hash_to_curve(msg, short_dst)
    assert hash_to_curve_many([msg], long_dst)[0].tobytes() == hash_to_curve(msg, short_dst)


EMPTY_DST_CALLS: list[Callable[[], object]] = [
    lambda: hash_to_curve(b"msg", b""),
    lambda: hash_to_curve_many([b"msg"], b""),
    lambda: hash_to_curve_many([], b""),
]


@pytest.mark.parametrize("call", EMPTY_DST_CALLS, ids=["single", "many", "many-empty"])
def test_empty_dst_is_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="domain separation tag must not be empty"):
        call()


def test_infinity_encodes_as_zeros() -> None:
    assert h2c_p256._encode_point(None) == bytes(33)


def test_suite_constants() -> None:
    assert h2c_p256.SUITE_ID == "P256_XMD:SHA-256_SSWU_RO_"
    assert h2c_p256.ELEMENT_SIZE == 33
