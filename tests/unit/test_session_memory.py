"""The server's memory budget for sessions in progress: reserved at the opening, given back once."""

from __future__ import annotations

import threading

import pytest

from cleanroom.errors import LimitExceeded
from cleanroom.service.session_memory import (
    BYTES_PER_ADVERTISER_ELEMENT,
    BYTES_PER_PLATFORM_ELEMENT,
    SessionMemory,
    default_session_memory,
    session_bytes,
)


def test_a_session_needs_its_sets_at_their_peak() -> None:
    assert session_bytes(0, 0) == 0
    assert session_bytes(1_000_000, 2_000_000) == (
        1_000_000 * BYTES_PER_ADVERTISER_ELEMENT + 2_000_000 * BYTES_PER_PLATFORM_ELEMENT
    )


def test_sessions_are_admitted_while_they_fit_and_again_once_one_ends() -> None:
    memory = SessionMemory(session_bytes(3_000, 1_000))
    first = memory.reserve(1_000, 1_000)
    second = memory.reserve(1_000, 0)
    assert memory.reserved == first.size + second.size
    with pytest.raises(LimitExceeded) as refused:
        memory.reserve(2_000, 1_000)
    message = str(refused.value)
    held = "the sessions in progress hold 312.5 KiB of the platform's session memory (437.5 KiB)"
    assert held in message
    assert "312.5 KiB for 2,000 identifiers against a platform set of 1,000" in message
    assert message.endswith("try again when one has ended")
    assert memory.reserved == first.size + second.size  # a refusal takes nothing
    first.release()
    first.release()  # given back once
    assert memory.reserved == second.size
    third = memory.reserve(2_000, 1_000)
    assert memory.reserved == second.size + third.size == memory.budget


def test_a_session_larger_than_the_whole_budget_is_told_to_send_less() -> None:
    memory = SessionMemory(1 << 30)
    with pytest.raises(LimitExceeded, match=r"more than the platform's whole session memory "):
        memory.reserve(30_000_000, 1_000_000)
    assert memory.reserved == 0


def test_reservations_from_many_threads_add_up() -> None:
    memory = SessionMemory(session_bytes(800, 0))
    taken, refused = [], []

    def open_one() -> None:
        try:
            taken.append(memory.reserve(10, 0))
        except LimitExceeded:
            refused.append(1)

    threads = [threading.Thread(target=open_one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(taken), len(refused)) == (80, 20)
    assert memory.reserved == memory.budget
    for reservation in taken:
        reservation.release()
    assert memory.reserved == 0


def test_the_budget_must_be_positive_and_defaults_to_half_the_machine() -> None:
    with pytest.raises(ValueError, match="positive"):
        SessionMemory(0)
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    assert abs(default_session_memory() - total_kib * 1024 // 2) < 64 << 20
    assert "held" in repr(SessionMemory(1).reserve(0, 0))
