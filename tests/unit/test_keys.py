"""Secret keys: generation, round trip, size checks, and that the secret never shows."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from cleanroom.crypto import SUITE_IDS, SecretKey, get_suite
from cleanroom.errors import InvalidKey

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _spellings(secret: bytes) -> list[str]:
    """Ways the secret could show up in text."""
    return [secret.hex(), secret.hex().upper(), repr(secret), str(int.from_bytes(secret, "big"))]


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_generate_key_gives_distinct_keys_of_the_suite_size(suite_id: str) -> None:
    suite = get_suite(suite_id)
    keys = [suite.generate_key() for _ in range(4)]
    assert len({key.to_bytes() for key in keys}) == 4
    assert all(len(key.to_bytes()) == 32 and key.suite_id == suite_id for key in keys)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_key_round_trips_through_bytes(suite_id: str) -> None:
    suite = get_suite(suite_id)
    key = suite.generate_key()
    again = suite.key_from_bytes(key.to_bytes())
    assert again == key
    assert again.to_bytes() == key.to_bytes()
    assert suite.key_from_bytes(bytearray(key.to_bytes())) == key


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_repr_str_format_and_logging_hide_the_secret(
    suite_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = get_suite(suite_id).generate_key()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("key is %s / %r", key, key)
    assert repr(key) == f"<SecretKey suite={suite_id} (secret not shown)>"
    shown = [repr(key), str(key), f"{key}", f"{key!r}", caplog.text, repr([key])]
    for text in shown:
        for spelling in _spellings(key.to_bytes()):
            assert spelling not in text


@pytest.mark.parametrize("suite_id", SUITE_IDS)
@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_size_key_bytes_raise_invalid_key_without_the_bytes(suite_id: str, size: int) -> None:
    data = bytes(range(101, 101 + size))
    with pytest.raises(InvalidKey, match=f"32 bytes expected, got {size}") as excinfo:
        get_suite(suite_id).key_from_bytes(data)
    if data:
        for spelling in _spellings(data):
            assert spelling not in str(excinfo.value)


@pytest.mark.parametrize("scalar", [0, P256_ORDER, 2**256 - 1])
def test_p256_scalar_out_of_range_is_invalid_key(scalar: int) -> None:
    with pytest.raises(InvalidKey, match=r"not in \[1, n-1\]"):
        get_suite("p256-sha256-sswu-ro").key_from_bytes(scalar.to_bytes(32, "big"))


def test_p256_accepts_the_range_ends() -> None:
    suite = get_suite("p256-sha256-sswu-ro")
    for scalar in (1, P256_ORDER - 1):
        assert suite.key_from_bytes(scalar.to_bytes(32, "big")).to_bytes() == scalar.to_bytes(
            32, "big"
        )


def test_key_bytes_of_another_type_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="key bytes expected, got str"):
        get_suite().key_from_bytes("00" * 32)  # type: ignore[arg-type]


def test_keys_refuse_to_be_pickled() -> None:
    key = get_suite().generate_key()
    with pytest.raises(TypeError, match="refuses to be pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError, match="refuses to be pickled"):
        pickle.dumps({"nested": [key]})


def test_keys_are_immutable_and_copy_to_themselves() -> None:
    key = get_suite().generate_key()
    with pytest.raises(AttributeError):
        key._secret = b"\x00" * 32
    assert copy.copy(key) is key
    assert copy.deepcopy({"k": key})["k"] is key


def test_equality_needs_same_suite_and_bytes_and_keys_are_unhashable() -> None:
    secret = bytes(range(1, 33))
    x25519 = get_suite("x25519-sha512-ell2-ro").key_from_bytes(secret)
    p256 = get_suite("p256-sha256-sswu-ro").key_from_bytes(secret)
    assert x25519 != p256
    assert x25519 == SecretKey("x25519-sha512-ell2-ro", secret)
    assert x25519 != SecretKey("x25519-sha512-ell2-ro", bytes(32))
    with pytest.raises(TypeError):
        hash(x25519)
