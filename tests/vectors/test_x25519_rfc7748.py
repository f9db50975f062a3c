"""RFC 7748 X25519 known answers through the X25519 suite (sources: data/README.md).

The suite's encryption is X25519, so every RFC value must come out of ``suite.encrypt``. One
published input is deliberately not a valid element for us: vector 2's u has the top bit set
(the RFC masks it) and, masked, lies on the twist. RFC 7748 decoding tolerates both; the suite
must reject both, and its scalar multiplication must still give the RFC's answer on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from vectors import load_vectors

from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.crypto.suites import X25519Suite
from cleanroom.errors import InvalidElement

DATA = load_vectors("rfc7748_x25519.json")
SUITE = get_suite("x25519-sha512-ell2-ro")
ENGINE = BatchEngine(workers=1)


def encrypt_one(scalar: bytes, u: bytes) -> bytes:
    """X25519(scalar, u) through the suite's public API."""
    element: NDArray[np.uint8] = np.frombuffer(u, dtype=np.uint8).reshape(1, 32)
    return bytes(SUITE.encrypt(SUITE.key_from_bytes(scalar), element, engine=ENGINE)[0])


def test_vector_1_scalar_mult() -> None:
    vector = DATA["scalar_mult"][0]
    out = encrypt_one(bytes.fromhex(vector["input_scalar"]), bytes.fromhex(vector["input_u"]))
    assert out.hex() == vector["output_u"]


def test_vector_2_input_is_rejected_but_the_multiplication_agrees() -> None:
    vector = DATA["scalar_mult"][1]
    scalar, u = bytes.fromhex(vector["input_scalar"]), bytes.fromhex(vector["input_u"])
    with pytest.raises(InvalidElement, match="top bit set"):
        encrypt_one(scalar, u)
    masked = int(vector["input_u_base10"]).to_bytes(32, "little")
    assert masked == u[:31] + bytes([u[31] & 0x7F])
    with pytest.raises(InvalidElement, match="twist point"):
        encrypt_one(scalar, masked)
    # The unvalidated primitive under encrypt: RFC 7748 X25519 itself, top-bit masking included.
    for encoding in (u, masked):
        assert X25519Suite._exchange_all(scalar, [encoding]).hex() == vector["output_u"]


@pytest.mark.parametrize(
    "result",
    [r for r in DATA["iterated"]["results"] if r["iterations"] <= 1000],
    ids=lambda r: f"{r['iterations']}-iterations",
)
def test_iterated(result: dict[str, Any]) -> None:
    k = bytes.fromhex(DATA["iterated"]["initial_k"])
    u = bytes.fromhex(DATA["iterated"]["initial_u"])
    for _ in range(result["iterations"]):
        k, u = encrypt_one(k, u), k
    assert k.hex() == result["k"]


def test_diffie_hellman_example() -> None:
    dh = DATA["diffie_hellman"]
    base = (9).to_bytes(32, "little")
    alice, bob = bytes.fromhex(dh["alice_private_a"]), bytes.fromhex(dh["bob_private_b"])
    alice_public, bob_public = encrypt_one(alice, base), encrypt_one(bob, base)
    assert alice_public.hex() == dh["alice_public_X25519_a_9"]
    assert bob_public.hex() == dh["bob_public_X25519_b_9"]
    assert encrypt_one(alice, bob_public).hex() == dh["shared_secret_K"]
    assert encrypt_one(bob, alice_public).hex() == dh["shared_secret_K"]
