"""Ciphersuites: lookup, element validation (every bad-input case), encryption, hashing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from numpy.typing import NDArray

from cleanroom.crypto import DEFAULT_SUITE_ID, SUITE_IDS, BatchEngine, default_engine, get_suite
from cleanroom.crypto.suites import P256Suite, Suite, X25519Suite
from cleanroom.errors import InvalidElement, InvalidKey, UnknownSuite

X25519 = "x25519-sha512-ell2-ro"
P256 = "p256-sha256-sswu-ro"
P25519 = 2**255 - 19
P256_P = P256Suite.P
# Order-8 u-coordinates (RFC 7748 §7 / libsodium's blocklist), as numbers.
ORDER_8_U = (
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
)
# A u-coordinate on the twist (RFC 7748 §5.2 vector 2's input with the top bit masked).
TWIST_U = 8883857351183929894090759386610649319417338800022198945255395922347792736741


def as_array(rows: list[bytes]) -> NDArray[np.uint8]:
    size = len(rows[0])
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), size).copy()


def x25519_elements(n: int) -> NDArray[np.uint8]:
    return as_array([X25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(n)])


def p256_elements(n: int) -> NDArray[np.uint8]:
    return as_array(
        [
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
            for _ in range(n)
        ]
    )


def valid_elements(suite: Suite, n: int) -> NDArray[np.uint8]:
    return x25519_elements(n) if suite.suite_id == X25519 else p256_elements(n)


def u_bytes(u: int) -> bytes:
    return u.to_bytes(32, "little")


@pytest.fixture(scope="module")
def in_process() -> BatchEngine:
    return BatchEngine(workers=1)


# -- lookup and parameters ------------------------------------------------------------------


def test_suite_ids_and_default() -> None:
    assert SUITE_IDS == (X25519, P256)
    assert DEFAULT_SUITE_ID == X25519
    assert get_suite() is get_suite(X25519)


@pytest.mark.parametrize(
    ("suite_id", "cls", "size", "dst"),
    [
        (X25519, X25519Suite, 32, b"CLEANROOM-V1-X25519-SHA512-ELL2-RO"),
        (P256, P256Suite, 33, b"CLEANROOM-V1-P256-SHA256-SSWU-RO"),
    ],
)
def test_suite_parameters(suite_id: str, cls: type[Suite], size: int, dst: bytes) -> None:
    suite = get_suite(suite_id)
    assert isinstance(suite, cls)
    assert (suite.suite_id, suite.element_size, suite.dst) == (suite_id, size, dst)
    assert suite_id in repr(suite)


@pytest.mark.parametrize("bad", ["x25519", "ristretto255", "", "X25519-SHA512-ELL2-RO"])
def test_unknown_suite(bad: str) -> None:
    with pytest.raises(UnknownSuite, match="unknown ciphersuite"):
        get_suite(bad)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_suites_pickle_as_the_shared_instance(suite_id: str) -> None:
    suite = get_suite(suite_id)
    assert pickle.loads(pickle.dumps(suite)) is suite


# -- array shape, dtype, length -------------------------------------------------------------


@pytest.mark.parametrize("suite_id", SUITE_IDS)
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_row_length(suite_id: str, delta: int) -> None:
    suite = get_suite(suite_id)
    got = suite.element_size + delta
    bad = np.zeros((3, got), dtype=np.uint8)
    with pytest.raises(InvalidElement, match=f"{suite.element_size} bytes expected, got {got}"):
        default_engine().validate(suite, bad)
    with pytest.raises(InvalidElement) as excinfo:
        default_engine().encrypt(suite, suite.generate_key(), bad)
    assert excinfo.value.row == 0


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_wrong_dtype_shape_and_type(suite_id: str) -> None:
    suite = get_suite(suite_id)
    good = valid_elements(suite, 2)
    with pytest.raises(InvalidElement, match="uint8 array expected, got dtype int64") as excinfo:
        default_engine().validate(suite, good.astype(np.int64))
    assert excinfo.value.row is None
    with pytest.raises(InvalidElement, match=r"shape \(n, \d+\) expected, got shape \(\d+,\)"):
        default_engine().validate(suite, good.reshape(-1))
    with pytest.raises(InvalidElement, match=r"numpy uint8 array .* expected, got list"):
        default_engine().validate(suite, [bytes(row) for row in good])  # type: ignore[arg-type]


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_empty_array_is_valid_and_encrypts_to_empty(suite_id: str, in_process: BatchEngine) -> None:
    suite = get_suite(suite_id)
    empty = np.zeros((0, suite.element_size), dtype=np.uint8)
    default_engine().validate(suite, empty)
    out = in_process.encrypt(suite, suite.generate_key(), empty)
    assert out.shape == (0, suite.element_size) and out.dtype == np.uint8


# -- X25519 element validation --------------------------------------------------------------


def test_x25519_accepts_public_keys_and_non_contiguous_arrays() -> None:
    suite = get_suite(X25519)
    elements = x25519_elements(20)
    default_engine().validate(suite, elements)
    default_engine().validate(suite, elements[::3])


@pytest.mark.parametrize(
    ("u", "reason"),
    [
        (u_bytes(0), "small-order point"),
        (u_bytes(1), "small-order point"),
        (u_bytes(ORDER_8_U[0]), "small-order point"),
        (u_bytes(ORDER_8_U[1]), "small-order point"),
        (u_bytes(P25519 - 1), "small-order point"),
        (u_bytes(TWIST_U), r"not on the curve \(twist point\)"),
        (u_bytes(2), r"not on the curve \(twist point\)"),
        (u_bytes(P25519), r"non-canonical u-coordinate \(not below p"),
        (u_bytes(P25519 + 1), r"non-canonical u-coordinate \(not below p"),
        (u_bytes(2**255 - 1), r"non-canonical u-coordinate \(not below p"),
        (u_bytes(2**256 - 1), r"non-canonical u-coordinate \(top bit set\)"),
    ],
)
def test_x25519_rejects_bad_u_naming_the_row(u: bytes, reason: str) -> None:
    suite = get_suite(X25519)
    elements = x25519_elements(6)
    elements[4] = np.frombuffer(u, dtype=np.uint8)
    with pytest.raises(InvalidElement, match=f"^element at row 4: {reason}") as excinfo:
        default_engine().validate(suite, elements)
    assert excinfo.value.row == 4


def test_x25519_top_bit_of_a_valid_point_is_rejected() -> None:
    suite = get_suite(X25519)
    elements = x25519_elements(3)
    elements[1, 31] |= 0x80
    with pytest.raises(InvalidElement, match=r"top bit set") as excinfo:
        default_engine().validate(suite, elements)
    assert excinfo.value.row == 1


@pytest.mark.parametrize("u", sorted(X25519Suite.SMALL_ORDER_U))
def test_blocklisted_u_really_are_of_small_order(u: bytes) -> None:
    # X25519 of a small-order point is all-zero whatever the key; cryptography refuses that.
    with pytest.raises(ValueError):
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(u))


def test_first_bad_row_is_named_when_several_are_bad() -> None:
    suite = get_suite(X25519)
    elements = x25519_elements(10)
    elements[7] = 0
    elements[3, 31] = 0xFF
    with pytest.raises(InvalidElement, match="row 3: non-canonical") as excinfo:
        default_engine().validate(suite, elements)
    assert excinfo.value.row == 3


# -- P-256 element validation ---------------------------------------------------------------


def test_p256_accepts_both_prefixes() -> None:
    suite = get_suite(P256)
    elements = p256_elements(20)
    assert set(elements[:, 0]) <= {2, 3}
    default_engine().validate(suite, elements)
    flipped = elements.copy()
    flipped[:, 0] ^= 1  # the negated points are valid too
    default_engine().validate(suite, flipped)


def _p256_off_curve_x() -> int:
    x = 1
    while P256Suite.element_problem(b"\x02" + x.to_bytes(32, "big")) is None:
        x += 1
    return x


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        (b"\x00" * 33, "the point at infinity is not a valid element"),
        (b"\x00" + b"\x01" * 32, "the point at infinity is not a valid element"),
        (b"\x04" + b"\x01" * 32, r"bad prefix 0x04 \(compressed point 0x02 or 0x03 expected\)"),
        (b"\x01" + b"\x01" * 32, "bad prefix 0x01"),
        (b"\x02" + P256_P.to_bytes(32, "big"), r"non-canonical x-coordinate \(not below p\)"),
        (b"\x03" + b"\xff" * 32, "non-canonical x-coordinate"),
        (b"\x02" + _p256_off_curve_x().to_bytes(32, "big"), "not on the curve"),
    ],
)
def test_p256_rejects_bad_encodings_naming_the_row(encoding: bytes, reason: str) -> None:
    suite = get_suite(P256)
    elements = p256_elements(4)
    elements[2] = np.frombuffer(encoding, dtype=np.uint8)
    with pytest.raises(InvalidElement, match=f"^element at row 2: {reason}") as excinfo:
        default_engine().validate(suite, elements)
    assert excinfo.value.row == 2


def test_p256_off_curve_x_is_refused_by_openssl_too() -> None:
    encoding = b"\x02" + _p256_off_curve_x().to_bytes(32, "big")
    with pytest.raises(ValueError):
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoding)


# -- encryption -----------------------------------------------------------------------------


def test_x25519_encrypt_is_the_x25519_function(in_process: BatchEngine) -> None:
    suite = get_suite(X25519)
    key = suite.generate_key()
    elements = x25519_elements(5)
    out = in_process.encrypt(suite, key, elements)
    private = X25519PrivateKey.from_private_bytes(key.to_bytes())
    expected = [private.exchange(X25519PublicKey.from_public_bytes(bytes(u))) for u in elements]
    assert out.shape == elements.shape and out.dtype == np.uint8
    assert [bytes(row) for row in out] == expected


def test_p256_encrypt_is_ecdh_x_with_prefix_02(in_process: BatchEngine) -> None:
    suite = get_suite(P256)
    key = suite.generate_key()
    elements = p256_elements(5)
    out = in_process.encrypt(suite, key, elements)
    private = ec.derive_private_key(int.from_bytes(key.to_bytes(), "big"), ec.SECP256R1())
    expected = [
        b"\x02"
        + private.exchange(
            ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(p))
        )
        for p in elements
    ]
    assert out.shape == elements.shape
    assert [bytes(row) for row in out] == expected


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_encrypt_commutes_and_outputs_valid_elements(
    suite_id: str, in_process: BatchEngine
) -> None:
    suite = get_suite(suite_id)
    a, b = suite.generate_key(), suite.generate_key()
    elements = valid_elements(suite, 8)
    ab = in_process.encrypt(suite, a, in_process.encrypt(suite, b, elements))
    ba = in_process.encrypt(suite, b, in_process.encrypt(suite, a, elements))
    assert np.array_equal(ab, ba)
    default_engine().validate(suite, ab)
    assert not np.array_equal(in_process.encrypt(suite, a, elements), elements)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_encrypt_validates_its_input(suite_id: str, in_process: BatchEngine) -> None:
    suite = get_suite(suite_id)
    elements = valid_elements(suite, 5)
    elements[3] = 0
    with pytest.raises(InvalidElement) as excinfo:
        in_process.encrypt(suite, suite.generate_key(), elements)
    assert excinfo.value.row == 3


def test_encrypt_refuses_a_key_of_another_suite(in_process: BatchEngine) -> None:
    p256_key = get_suite(P256).generate_key()
    with pytest.raises(InvalidKey, match=f"belongs to suite {P256}, not {X25519}"):
        in_process.encrypt(get_suite(X25519), p256_key, x25519_elements(2))
    with pytest.raises(InvalidKey):
        in_process.hash_and_encrypt(get_suite(X25519), p256_key, [b"m"], b"DST")


def test_encrypt_needs_a_secret_key(in_process: BatchEngine) -> None:
    with pytest.raises(TypeError, match="SecretKey is expected, got bytes"):
        in_process.encrypt(get_suite(), bytes(32), x25519_elements(1))  # type: ignore[arg-type]


# -- hashing --------------------------------------------------------------------------------

MESSAGES = [b"cleanroom/v1/email/" + bytes([i]) * 32 for i in range(7)] + [b""]


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_hash_to_curve_many_matches_hash_to_curve_and_is_valid(
    suite_id: str, in_process: BatchEngine
) -> None:
    suite = get_suite(suite_id)
    hashed = in_process.hash_to_curve_many(suite, MESSAGES, suite.dst)
    assert hashed.shape == (len(MESSAGES), suite.element_size) and hashed.dtype == np.uint8
    assert [bytes(row) for row in hashed] == [suite.hash_to_curve(m, suite.dst) for m in MESSAGES]
    default_engine().validate(suite, hashed)
    assert len({bytes(row) for row in hashed}) == len(MESSAGES)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_dst_separates(suite_id: str) -> None:
    suite = get_suite(suite_id)
    assert suite.hash_to_curve(b"m", suite.dst) != suite.hash_to_curve(b"m", suite.dst + b"-X")


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_hash_and_encrypt_is_encrypt_of_hash(suite_id: str, in_process: BatchEngine) -> None:
    suite = get_suite(suite_id)
    key = suite.generate_key()
    fused = in_process.hash_and_encrypt(suite, key, MESSAGES, suite.dst)
    hashed = in_process.hash_to_curve_many(suite, MESSAGES, suite.dst)
    assert np.array_equal(fused, in_process.encrypt(suite, key, hashed))
