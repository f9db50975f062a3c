"""RFC 7748 X25519 known answers, through the X25519 suite and through each backend.

The suite's encryption is X25519, so every RFC value must come out of ``suite.encrypt`` (on this
process's backend) and out of each backend's chunk function (the ifma ladder's 8 lanes, where
this machine can run them, and OpenSSL). One published input is deliberately not a valid element for
us: vector 2's u has the top bit set (the RFC masks it) and, masked, lies on the twist. RFC 7748
decoding tolerates both; the suite must reject both, and both backends must still give the RFC's
answer on it. Sources: data/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from vectors import load_vectors

from cleanroom.crypto import BatchEngine, get_suite, x25519
from cleanroom.errors import InvalidElement

DATA = load_vectors("rfc7748_x25519.json")
SUITE = get_suite("x25519-sha512-ell2-ro")
ENGINE = BatchEngine(workers=1)

needs_ifma = pytest.mark.skipif(
    x25519.ifma_problem() is not None, reason=f"ifma backend: {x25519.ifma_problem()}"
)
BACKENDS = [
    pytest.param(x25519.exchange_ifma, id="ifma", marks=needs_ifma),
    pytest.param(x25519.exchange_openssl, id="openssl"),
]
Exchange = Callable[[bytes, bytes], bytes]


def encrypt_one(scalar: bytes, u: bytes) -> bytes:
    """X25519(scalar, u) through the suite's public API."""
    element: NDArray[np.uint8] = np.frombuffer(u, dtype=np.uint8).reshape(1, 32)
    return bytes(ENGINE.encrypt(SUITE, SUITE.key_from_bytes(scalar), element)[0])


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


@pytest.mark.parametrize("exchange", BACKENDS)
@pytest.mark.parametrize("index", [0, 1])
def test_scalar_mult_on_each_backend(exchange: Exchange, index: int) -> None:
    # The unvalidated primitive under encrypt: RFC 7748 X25519 itself, top-bit masking included.
    vector = DATA["scalar_mult"][index]
    scalar, u = bytes.fromhex(vector["input_scalar"]), bytes.fromhex(vector["input_u"])
    masked = u[:31] + bytes([u[31] & 0x7F])
    assert exchange(scalar, u).hex() == vector["output_u"]
    assert exchange(scalar, masked).hex() == vector["output_u"]
    # in every lane of a group of eight, and in a padded last group
    for count in (8, 9, 15):
        assert exchange(scalar, u * count) == bytes.fromhex(vector["output_u"]) * count


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


@pytest.mark.parametrize("exchange", BACKENDS)
def test_iterated_1000_times_on_each_backend(exchange: Exchange) -> None:
    # Each step's output is the next scalar: one lane per call, the other seven are padding.
    results = {r["iterations"]: r["k"] for r in DATA["iterated"]["results"]}
    k = bytes.fromhex(DATA["iterated"]["initial_k"])
    u = bytes.fromhex(DATA["iterated"]["initial_u"])
    for iteration in range(1, 1001):
        k, u = exchange(k, u), k
        if iteration in results:
            assert k.hex() == results[iteration], f"after {iteration} iterations"
    assert 1000 in results


def test_diffie_hellman_example() -> None:
    dh = DATA["diffie_hellman"]
    base = (9).to_bytes(32, "little")
    alice, bob = bytes.fromhex(dh["alice_private_a"]), bytes.fromhex(dh["bob_private_b"])
    alice_public, bob_public = encrypt_one(alice, base), encrypt_one(bob, base)
    assert alice_public.hex() == dh["alice_public_X25519_a_9"]
    assert bob_public.hex() == dh["bob_public_X25519_b_9"]
    assert encrypt_one(alice, bob_public).hex() == dh["shared_secret_K"]
    assert encrypt_one(bob, alice_public).hex() == dh["shared_secret_K"]
