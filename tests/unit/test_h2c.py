"""Unit tests of cleanroom.crypto.h2c: argument checks and the oversize-DST rule.

The RFC 9380 known answers for expand_message_xmd are in tests/vectors/test_expand_message.py.
"""

from __future__ import annotations

import hashlib

import pytest

from cleanroom.crypto.h2c import MAX_DST_LENGTH, dst_prime, expand_message_xmd, hash_to_field

DST = b"CLEANROOM-TEST-DST"


@pytest.mark.parametrize(("hash_name", "longest"), [("sha256", 255 * 32), ("sha512", 255 * 64)])
def test_longest_output_is_255_hash_blocks(hash_name: str, longest: int) -> None:
    assert len(expand_message_xmd(b"msg", DST, longest, hash_name)) == longest
    with pytest.raises(ValueError, match="at most 255 hash outputs"):
        expand_message_xmd(b"msg", DST, longest + 1, hash_name)


@pytest.mark.parametrize("len_in_bytes", [0, -1, 65536, 1 << 20])
def test_len_in_bytes_out_of_range_is_rejected(len_in_bytes: int) -> None:
    with pytest.raises(ValueError, match="len_in_bytes must be between 1 and 65535"):
        expand_message_xmd(b"msg", DST, len_in_bytes, "sha512")


@pytest.mark.parametrize("hash_name", ["md5", "sha3_256", "SHA256", ""])
def test_unsupported_hash_is_rejected(hash_name: str) -> None:
    with pytest.raises(ValueError, match="unsupported hash for expand_message_xmd"):
        expand_message_xmd(b"msg", DST, 32, hash_name)


def test_empty_dst_is_rejected() -> None:
    with pytest.raises(ValueError, match="domain separation tag must not be empty"):
        expand_message_xmd(b"msg", b"", 32, "sha256")


@pytest.mark.parametrize("hash_name", ["sha256", "sha512"])
def test_dst_of_255_bytes_is_used_as_is(hash_name: str) -> None:
    dst = b"d" * MAX_DST_LENGTH
    assert dst_prime(dst, hash_name) == dst + b"\xff"


@pytest.mark.parametrize("hash_name", ["sha256", "sha512"])
def test_oversize_dst_is_replaced_by_its_hash(hash_name: str) -> None:
    dst = b"d" * (MAX_DST_LENGTH + 1)
    hashed = hashlib.new(hash_name, b"H2C-OVERSIZE-DST-" + dst).digest()
    assert dst_prime(dst, hash_name) == hashed + bytes([len(hashed)])
    assert expand_message_xmd(b"m", dst, 100, hash_name) == expand_message_xmd(
        b"m", hashed, 100, hash_name
    )


def test_length_is_bound_into_the_output() -> None:
    # len_in_bytes is hashed into b_0, so a shorter output is not a prefix of a longer one.
    short = expand_message_xmd(b"msg", DST, 32, "sha256")
    long = expand_message_xmd(b"msg", DST, 64, "sha256")
    assert long[:32] != short


def test_hash_to_field_reduces_modulo_p() -> None:
    modulus = 2**255 - 19
    elements = hash_to_field(b"msg", DST, 5, modulus, 48, "sha512")
    assert len(elements) == 5
    assert all(0 <= e < modulus for e in elements)
    assert len(set(elements)) == 5


def test_hash_to_field_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="count must be positive"):
        hash_to_field(b"msg", DST, 0, 2**255 - 19, 48, "sha512")
