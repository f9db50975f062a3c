"""The server's memory budget for sessions in progress: checked at the opening, taken as sets
arrive, given back once."""

from __future__ import annotations

import threading

import pytest

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.errors import LimitExceeded
from cleanroom.protocol import MAX_CHUNK_BYTES
from cleanroom.service.session_memory import (
    BYTES_PER_ADVERTISER_ELEMENT,
    BYTES_PER_PLATFORM_ELEMENT,
    SessionMemory,
    chunk_bytes,
    default_session_memory,
    session_bytes,
)


def test_a_session_needs_its_sets_at_their_peak() -> None:
    assert session_bytes(0, 0) == 0
    assert session_bytes(1_000_000, 2_000_000) == (
        1_000_000 * BYTES_PER_ADVERTISER_ELEMENT + 2_000_000 * BYTES_PER_PLATFORM_ELEMENT
    )


def test_an_opening_is_checked_against_what_the_sessions_in_progress_hold() -> None:
    memory = SessionMemory(session_bytes(3_000, 1_000))
    memory.check_opening(3_000, 1_000)  # fits, and takes nothing
    assert memory.held == 0
    first = memory.account()
    first.take(session_bytes(1_000, 1_000))
    with pytest.raises(LimitExceeded) as refused:
        memory.check_opening(2_000, 1_000)
    message = str(refused.value)
    held = "the sessions in progress hold 187.5 KiB of the platform's session memory (437.5 KiB)"
    assert held in message
    assert "would need 312.5 KiB for 2,000 identifiers against a platform set of 1,000" in message
    assert message.endswith("try again when one has ended")
    memory.check_opening(1_000, 1_000)  # what is left
    first.close()
    memory.check_opening(2_000, 1_000)


def test_a_session_larger_than_the_whole_budget_is_told_to_send_less() -> None:
    memory = SessionMemory(1 << 30)
    with pytest.raises(LimitExceeded, match=r"more than the platform's whole session memory "):
        memory.check_opening(30_000_000, 1_000_000)


def test_sessions_take_as_their_chunks_arrive_and_give_all_back_once() -> None:
    memory = SessionMemory(1000)
    first, second = memory.account(), memory.account()
    first.take(400)
    first.take(0)  # a message that carries no set
    second.take(500)
    assert (memory.held, first.held, second.held) == (900, 400, 500)
    with pytest.raises(LimitExceeded, match=r"this session's next chunk needs 0\.2 KiB"):
        first.take(200)
    assert (memory.held, first.held) == (900, 400)  # a refusal takes nothing
    first.close()
    first.close()  # given back once
    assert memory.held == 500
    with pytest.raises(ValueError, match="closed"):
        first.take(1)
    second.take(500)
    assert memory.held == memory.budget
    second.close()
    assert memory.held == 0
    assert repr(second) == "MemoryAccount(0.0 KiB, closed)"


def test_chunks_take_by_their_count_at_most_a_chunks_worth() -> None:
    u = pb.ClientMessage(advertiser_set=pb.AdvertiserSetChunk(count=1_000))
    w = pb.ClientMessage(encrypted_platform_set=pb.EncryptedPlatformSetChunk(count=1_000))
    assert chunk_bytes(u, 32) == 1_000 * BYTES_PER_ADVERTISER_ELEMENT
    assert chunk_bytes(w, 32) == 1_000 * BYTES_PER_PLATFORM_ELEMENT
    assert chunk_bytes(pb.ClientMessage(close=pb.Close()), 32) == 0
    assert chunk_bytes(pb.ClientMessage(open_session=pb.OpenSession()), 32) == 0
    lying = pb.ClientMessage(advertiser_set=pb.AdvertiserSetChunk(count=2**32 - 1))
    assert chunk_bytes(lying, 32) == MAX_CHUNK_BYTES // 32 * BYTES_PER_ADVERTISER_ELEMENT


def test_takes_from_many_threads_add_up() -> None:
    memory = SessionMemory(800)
    accounts = [memory.account() for _ in range(100)]
    refused: list[int] = []

    def take(index: int) -> None:
        try:
            accounts[index].take(10)
        except LimitExceeded:
            refused.append(index)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 20
    assert memory.held == memory.budget == sum(account.held for account in accounts)
    for account in accounts:
        account.close()
    assert memory.held == 0


def test_the_budget_must_be_positive_and_defaults_to_half_the_machine() -> None:
    with pytest.raises(ValueError, match="positive"):
        SessionMemory(0)
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    assert abs(default_session_memory() - total_kib * 1024 // 2) < 64 << 20
