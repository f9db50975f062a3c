"""Properties of the suites' encryption: it commutes, and validation never lets through a bad
element nor stops a good one.

Elements come from hash to curve of random messages (what the protocol encrypts), keys from
random bytes (for P-256 only those in range).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import BatchEngine, SecretKey, default_engine, get_suite
from cleanroom.crypto.suites import P256Suite, Suite
from cleanroom.errors import InvalidElement

ENGINE = BatchEngine(workers=1)
X25519 = get_suite("x25519-sha512-ell2-ro")
P256 = get_suite("p256-sha256-sswu-ro")

messages = st.lists(st.binary(max_size=64), min_size=1, max_size=4)


def keys_of(suite: Suite) -> st.SearchStrategy[SecretKey]:
    raw = st.binary(min_size=32, max_size=32)
    if suite is P256:
        raw = raw.filter(lambda b: 1 <= int.from_bytes(b, "big") < P256Suite.N)
    return raw.map(suite.key_from_bytes)


def _commutes(suite: Suite, a: SecretKey, b: SecretKey, msgs: list[bytes]) -> None:
    elements = ENGINE.hash_to_curve_many(suite, msgs, suite.dst)
    ab = ENGINE.encrypt(suite, a, ENGINE.encrypt(suite, b, elements))
    ba = ENGINE.encrypt(suite, b, ENGINE.encrypt(suite, a, elements))
    assert np.array_equal(ab, ba)
    # The fused path gives the same first layer as encrypting the hash.
    assert np.array_equal(
        ENGINE.encrypt(suite, a, elements),
        ENGINE.hash_and_encrypt(suite, a, msgs, suite.dst),
    )


@settings(max_examples=40)
@given(a=keys_of(X25519), b=keys_of(X25519), msgs=messages)
def test_x25519_encryption_commutes(a: SecretKey, b: SecretKey, msgs: list[bytes]) -> None:
    _commutes(X25519, a, b, msgs)


@settings(max_examples=25)
@given(a=keys_of(P256), b=keys_of(P256), msgs=messages)
def test_p256_encryption_commutes(a: SecretKey, b: SecretKey, msgs: list[bytes]) -> None:
    _commutes(P256, a, b, msgs)


@settings(max_examples=300)
@given(u=st.binary(min_size=32, max_size=32))
def test_x25519_validation_agrees_with_the_group(u: bytes) -> None:
    """Accepted u give a non-zero shared value; rejected ones are named, never crash."""
    element = np.frombuffer(u, dtype=np.uint8).reshape(1, 32)
    try:
        default_engine().validate(X25519, element)
    except InvalidElement as exc:
        assert exc.row == 0
        assert exc.reason in {
            "non-canonical u-coordinate (top bit set)",
            "non-canonical u-coordinate (not below p = 2^255 - 19)",
            "small-order point",
            "not on the curve (twist point)",
        }
    else:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(u))


# Mostly compressed prefixes, so about half the draws are points on the curve.
p256_encodings = st.builds(
    lambda prefix, x: bytes([prefix]) + x,
    st.sampled_from([2, 3, 2, 3, 0, 1, 4]),
    st.binary(min_size=32, max_size=32),
)


@settings(max_examples=200)
@given(point=p256_encodings)
def test_p256_validation_agrees_with_openssl(point: bytes) -> None:
    """What we accept OpenSSL can decode, and the other way round for compressed encodings."""
    element = np.frombuffer(point, dtype=np.uint8).reshape(1, 33)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        openssl_accepts = True
    except ValueError:
        openssl_accepts = False
    try:
        default_engine().validate(P256, element)
        accepted = True
    except InvalidElement as exc:
        assert exc.row == 0
        accepted = False
    assert accepted == (openssl_accepts and point[0] in (2, 3))
