"""Chunking and reassembly, mode codes, session ids: the checks both roles rely on."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cleanroom.errors import InvalidElement, InvalidMessage, LimitExceeded, WrongSession
from cleanroom.policy import Mode
from cleanroom.protocol import MAX_CHUNK_BYTES, RECORD_TAG_SIZE, mode_from_wire, mode_to_wire
from cleanroom.protocol._wire import (
    ChunkReceiver,
    check_session_id,
    chunk_spans,
    pb,
    rows_per_chunk,
)

GRPC_DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


def test_chunk_spans_cover_the_set_and_an_empty_set_is_one_chunk() -> None:
    assert list(chunk_spans(0, 10)) == [(0, 0)]
    assert list(chunk_spans(10, 10)) == [(0, 10)]
    assert list(chunk_spans(25, 10)) == [(0, 10), (10, 20), (20, 25)]


@pytest.mark.parametrize("element_size", [32, 33])
def test_full_chunks_fit_grpc_default_message_limit(element_size: int) -> None:
    rows = rows_per_chunk(element_size + RECORD_TAG_SIZE)
    chunk = pb.AdvertiserSetChunk(
        session_id=os.urandom(16),
        offset=10_000_000,
        count=rows,
        elements=os.urandom(rows * element_size),
        record_tags=os.urandom(rows * RECORD_TAG_SIZE),
    )
    size = pb.ClientMessage(advertiser_set=chunk).ByteSize()
    assert rows * (element_size + RECORD_TAG_SIZE) <= MAX_CHUNK_BYTES
    assert size < GRPC_DEFAULT_MAX_MESSAGE


def test_ten_million_elements_take_under_a_hundred_chunks() -> None:
    assert len(list(chunk_spans(10_000_000, rows_per_chunk(32 + RECORD_TAG_SIZE)))) <= 100


def test_receiver_reassembles_in_order() -> None:
    receiver = ChunkReceiver("set", 5, 2)
    receiver.accept(0, 3, bytes(range(6)))
    assert not receiver.complete
    offset, rows = receiver.accept(3, 2, bytes(range(6, 10)))
    assert offset == 3 and rows.tolist() == [[6, 7], [8, 9]]
    assert receiver.complete
    assert receiver.array.reshape(-1).tolist() == list(range(10))


def test_receiver_empty_set_needs_its_one_empty_chunk() -> None:
    receiver = ChunkReceiver("set", 0, 32)
    assert not receiver.complete
    receiver.accept(0, 0, b"")
    assert receiver.complete


def test_receiver_refuses_gaps_repeats_and_overruns() -> None:
    receiver = ChunkReceiver("advertiser set U", 4, 2)
    with pytest.raises(
        InvalidMessage, match="advertiser set U: chunk at offset 2, expected offset 0"
    ):
        receiver.accept(2, 1, b"ab")
    receiver.accept(0, 2, b"abcd")
    with pytest.raises(InvalidMessage, match="offset 0, expected offset 2"):
        receiver.accept(0, 2, b"abcd")
    with pytest.raises(InvalidMessage, match="past the announced 4 elements"):
        receiver.accept(2, 3, b"abcdef")
    with pytest.raises(InvalidMessage, match="empty chunk while elements are still due"):
        receiver.accept(2, 0, b"")


def test_receiver_refuses_wrong_length_elements() -> None:
    receiver = ChunkReceiver("set", 4, 32)
    with pytest.raises(InvalidElement, match="has 63 bytes, expected 2 elements of 32 bytes"):
        receiver.accept(0, 2, bytes(63))


def test_receiver_refuses_oversized_chunks() -> None:
    receiver = ChunkReceiver("set", 10**7, 32)
    too_many = receiver.max_rows + 1
    with pytest.raises(LimitExceeded, match=f"chunk of {too_many} elements"):
        receiver.accept(0, too_many, bytes(too_many * 32))


def test_mode_codes_round_trip_and_unset_is_refused() -> None:
    for mode in Mode:
        assert mode_from_wire(mode_to_wire(mode)) is mode
    with pytest.raises(InvalidMessage, match="unknown or unset match mode 0"):
        mode_from_wire(pb.MATCH_MODE_UNSPECIFIED)
    with pytest.raises(InvalidMessage, match="mode 99"):
        mode_from_wire(99)


def test_session_ids_must_match() -> None:
    check_session_id(b"a" * 16, b"a" * 16)
    with pytest.raises(WrongSession, match="arrived in session"):
        check_session_id(b"a" * 16, b"b" * 16)
    with pytest.raises(WrongSession, match=r"\(none\)"):
        check_session_id(b"a" * 16, b"")


def test_receiver_array_is_preallocated_once() -> None:
    receiver = ChunkReceiver("set", 3, 4)
    array = receiver.array
    receiver.accept(0, 3, bytes(12))
    assert receiver.array is array
    assert array.dtype == np.uint8 and array.shape == (3, 4)
