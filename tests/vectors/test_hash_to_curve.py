"""RFC 9380 Appendix J: hash_to_curve (RO) and encode_to_curve (NU) for both ciphersuites.

Every intermediate value the RFC prints is checked (u, Q0, Q1 or Q, and P), and then the bytes
our element encoding gives for P, from both the single and the bulk function.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from vectors import load_vectors, vector_cases

from cleanroom.crypto import _h2c25519, h2c, h2c_curve25519, h2c_p256

RO_FILES = {
    "curve25519": "rfc9380_curve25519_XMD-SHA-512_ELL2_RO_.json",
    "p256": "rfc9380_P256_XMD-SHA-256_SSWU_RO_.json",
}
NU_FILES = {
    "curve25519": "rfc9380_curve25519_XMD-SHA-512_ELL2_NU_.json",
    "p256": "rfc9380_P256_XMD-SHA-256_SSWU_NU_.json",
}
MODULES: dict[str, ModuleType] = {"curve25519": h2c_curve25519, "p256": h2c_p256}


def _cases(files: dict[str, str]) -> list[Any]:
    return [
        pytest.param(curve, *param.values, id=f"{curve}-{param.id}")
        for curve, filename in files.items()
        for param in vector_cases(filename)
    ]


def _point(coordinates: dict[str, str]) -> tuple[int, int]:
    return int(coordinates["x"], 16), int(coordinates["y"], 16)


def _expected_encoding(curve: str, point: tuple[int, int]) -> bytes:
    x, y = point
    if curve == "curve25519":
        # X25519 public value: the Montgomery u-coordinate, little-endian (RFC 7748 §5).
        return x.to_bytes(32, "little")
    # SEC1 compressed, built by OpenSSL rather than by the code under test.
    public_key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    return public_key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


@pytest.mark.parametrize(("curve", "case"), _cases(RO_FILES))
def test_hash_to_curve(curve: str, case: dict[str, Any]) -> None:
    module = MODULES[curve]
    dst = load_vectors(RO_FILES[curve])["dst"].encode()
    msg = case["msg"].encode()

    u0, u1 = module._hash_to_field(msg, dst, 2)
    assert [f"{u0:064x}", f"{u1:064x}"] == case["u"]
    assert module._map_to_curve(u0) == _point(case["Q0"])
    assert module._map_to_curve(u1) == _point(case["Q1"])
    expected = _point(case["P"])
    assert module._hash_to_curve_point(msg, dst) == expected

    encoded = _expected_encoding(curve, expected)
    assert module.hash_to_curve(msg, dst) == encoded
    assert module.hash_to_curve_many([msg], dst)[0].tobytes() == encoded


def test_hash_to_curve_many_on_all_vectors() -> None:
    for curve, filename in RO_FILES.items():
        suite = load_vectors(filename)
        msgs = [case["msg"].encode() for case in suite["vectors"]]
        expected = [_expected_encoding(curve, _point(case["P"])) for case in suite["vectors"]]
        rows = MODULES[curve].hash_to_curve_many(msgs, suite["dst"].encode())
        assert [row.tobytes() for row in rows] == expected, curve


@pytest.mark.parametrize(
    "ifma",
    [
        pytest.param(
            True, id="ifma", marks=pytest.mark.skipif(not _h2c25519.IFMA, reason="no IFMA")
        ),
        pytest.param(False, id="portable"),
    ],
)
def test_curve25519_c_paths_on_all_vectors(ifma: bool) -> None:
    # The C module's two paths (eight lanes on AVX-512 IFMA, portable C) directly, with the
    # vectors' messages in the lanes of one group.
    suite = load_vectors(RO_FILES["curve25519"])
    msgs = [case["msg"].encode() for case in suite["vectors"]]
    expected = [_expected_encoding("curve25519", _point(case["P"])) for case in suite["vectors"]]
    dst_prime = h2c.dst_prime(suite["dst"].encode(), "sha512")
    encoded, exceptional = _h2c25519.hash_to_curve_many(msgs, dst_prime, ifma=ifma)
    assert exceptional == []
    assert [encoded[i : i + 32] for i in range(0, len(encoded), 32)] == expected


@pytest.mark.parametrize(("curve", "case"), _cases(NU_FILES))
def test_encode_to_curve(curve: str, case: dict[str, Any]) -> None:
    module = MODULES[curve]
    dst = load_vectors(NU_FILES[curve])["dst"].encode()
    msg = case["msg"].encode()

    (u0,) = module._hash_to_field(msg, dst, 1)
    assert [f"{u0:064x}"] == case["u"]
    assert module._map_to_curve(u0) == _point(case["Q"])
    expected = _point(case["P"])
    assert module._encode_to_curve_point(msg, dst) == expected
    assert module.encode_to_curve(msg, dst) == _expected_encoding(curve, expected)
