"""Unit tests of cleanroom.crypto.packed: messages in one buffer, as a chunk goes to a worker."""

from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom.crypto import BatchEngine, _h2c25519, get_suite, h2c
from cleanroom.crypto.h2c_curve25519 import hash_to_curve_many
from cleanroom.crypto.packed import PackedMessages

DST = b"CLEANROOM-V1-X25519-SHA512-ELL2-RO"
DST_PRIME = h2c.dst_prime(DST, "sha512")

messages = st.lists(st.binary(max_size=80), max_size=40)

C_PATHS = [
    pytest.param(
        True, id="ifma", marks=pytest.mark.skipif(not _h2c25519.IFMA, reason="no AVX-512 IFMA")
    ),
    pytest.param(False, id="portable"),
]


def offsets(*values: int) -> bytes:
    return struct.pack(f"={len(values)}q", *values)


@given(messages)
def test_a_packed_list_is_the_same_sequence(msgs: list[bytes]) -> None:
    packed = PackedMessages.pack(msgs)
    assert len(packed) == len(msgs)
    assert list(packed) == msgs
    assert [packed[i] for i in range(len(msgs))] == msgs
    assert [packed[-i] for i in range(1, len(msgs) + 1)] == [
        msgs[-i] for i in range(1, len(msgs) + 1)
    ]
    assert packed[1:-1:2] == msgs[1:-1:2]
    assert packed.data == b"".join(msgs)
    copy = pickle.loads(pickle.dumps(packed))
    assert list(copy) == msgs
    assert (copy.data, copy.offsets) == (packed.data, packed.offsets)


@pytest.mark.parametrize("index", [2, -3])
def test_an_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(IndexError):
        PackedMessages.pack([b"a", b"b"])[index]


def test_only_bytes_are_packed_and_a_refusal_numbers_the_message_in_its_list() -> None:
    with pytest.raises(TypeError, match="message 1 is str, not bytes"):
        PackedMessages.pack([b"a", "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="message 8193 is int, not bytes"):
        PackedMessages.pack([b"a", 7], first=8192)  # type: ignore[list-item]


def test_the_repr_shows_sizes_not_messages() -> None:
    assert repr(PackedMessages.pack([b"secret", b"x"])) == "<PackedMessages 2 messages, 7 bytes>"


@pytest.mark.parametrize("ifma", C_PATHS)
@given(msgs=messages)
def test_packed_messages_hash_as_the_list_does(ifma: bool, msgs: list[bytes]) -> None:
    packed = PackedMessages.pack(msgs)
    assert _h2c25519.hash_to_curve_packed(
        packed.data, packed.offsets, DST_PRIME, ifma=ifma
    ) == _h2c25519.hash_to_curve_many(msgs, DST_PRIME, ifma=ifma)


@given(messages)
def test_the_bulk_hash_takes_packed_messages(msgs: list[bytes]) -> None:
    assert (
        hash_to_curve_many(PackedMessages.pack(msgs), DST) == hash_to_curve_many(msgs, DST)
    ).all()


@pytest.mark.parametrize(
    ("data", "bounds", "problem"),
    [
        (b"ab", offsets(0, 3), "from 0 to the data's length"),
        (b"ab", offsets(1, 2), "from 0 to the data's length"),
        (b"ab", offsets(0), "from 0 to the data's length"),
        (b"ab", b"\x00" * 7, "from 0 to the data's length"),
        (b"", b"", "from 0 to the data's length"),
        (b"ab", offsets(0, 3, 2), "offset 2 is below offset 1"),
    ],
    ids=["past-the-end", "not-from-zero", "too-few", "not-int64", "empty", "decreasing"],
)
def test_inconsistent_offsets_are_refused(data: bytes, bounds: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _h2c25519.hash_to_curve_packed(data, bounds, DST_PRIME)


def test_packed_buffers_must_be_bytes() -> None:
    # Immutable, so that no other thread can change them while the hash runs without the GIL.
    with pytest.raises(TypeError):
        _h2c25519.hash_to_curve_packed(bytearray(b"ab"), offsets(0, 2), DST_PRIME)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _h2c25519.hash_to_curve_packed(b"ab", bytearray(offsets(0, 2)), DST_PRIME)  # type: ignore[arg-type]


def test_pooled_jobs_sent_packed_give_the_suites_bytes() -> None:
    suite = get_suite()
    key = suite.generate_key()
    msgs = [f"customer-{i}".encode() for i in range(300)]
    with BatchEngine(workers=2, chunk_size=64) as engine:
        pooled = engine.hash_and_encrypt(suite, key, msgs, suite.dst)
        job = engine.hash_and_encrypt_job(suite, key, suite.dst)
        job.add(msgs[:150])
        job.add(msgs[150:])
        added = job.finish()
        hashed = engine.hash_to_curve_many(suite, msgs, suite.dst)
    assert pooled.tobytes() == added.tobytes() == suite.hash_and_encrypt_rows(key, msgs, suite.dst)
    assert hashed.tobytes() == suite.hash_rows(msgs, suite.dst)
