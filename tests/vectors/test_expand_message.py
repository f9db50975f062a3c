"""RFC 9380 Appendix K: expand_message_xmd with SHA-256, SHA-256 and a 256-byte DST, SHA-512."""

from __future__ import annotations

from typing import Any

import pytest
from vectors import load_vectors, vector_cases

from cleanroom.crypto.h2c import dst_prime, expand_message_xmd

FILES = [
    "rfc9380_expand_message_xmd_SHA-256.json",
    "rfc9380_expand_message_xmd_SHA-256_long_DST.json",
    "rfc9380_expand_message_xmd_SHA-512.json",
]
HASH_NAMES = {"SHA256": "sha256", "SHA512": "sha512"}

CASES = [
    pytest.param(filename, *param.values, id=f"{filename.removeprefix('rfc9380_')}-{param.id}")
    for filename in FILES
    for param in vector_cases(filename, "tests")
]


@pytest.mark.parametrize(("filename", "case"), CASES)
def test_expand_message_xmd(filename: str, case: dict[str, Any]) -> None:
    suite = load_vectors(filename)
    dst = suite["DST"].encode()
    hash_name = HASH_NAMES[suite["hash"]]
    len_in_bytes = int(case["len_in_bytes"], 16)

    # DST_prime covers the oversize-DST rule: the 256-byte DST must be replaced by its hash.
    assert dst_prime(dst, hash_name).hex() == case["DST_prime"]
    uniform = expand_message_xmd(case["msg"].encode(), dst, len_in_bytes, hash_name)
    assert uniform.hex() == case["uniform_bytes"]
