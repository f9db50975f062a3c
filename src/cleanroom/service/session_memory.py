"""The platform's memory for sessions in progress: reserved at the opening, or refused.

A session's sets live in the server's memory while it runs: U as it arrives and as checked, its
record tags, U' and the lookups of U' in W, then W and its index. An advertiser announces its
set's size in the opening, and the policy bounds it (``max_upload_records`` records,
``max_identifiers_per_record`` each), but not how many such sets the server holds at once:
sixteen advertisers (or honest ones with large lists at the same hour) could each send the
largest set allowed, and together need more memory than the machine has. So each opening
reserves what its sets will take, from the sizes it announced and the epoch's N, before
anything is allocated; a session that does not fit in what the sessions in progress leave is
refused ``RESOURCE_EXHAUSTED`` (:class:`~cleanroom.errors.LimitExceeded`), and its reservation
is given back when its call ends.

The sizes below are counted from the arrays a session holds, rounded up, so they bound it from
above: an ids session of 10^6 identifiers against a platform set of 10^6 reserves 183 MiB, and
raised the server's traced allocations (``tracemalloc``, numpy's included) by 134 MiB at their
peak.
"""

from __future__ import annotations

import os
import threading
from typing import Final

from cleanroom.errors import LimitExceeded

__all__ = [
    "BYTES_PER_ADVERTISER_ELEMENT",
    "BYTES_PER_PLATFORM_ELEMENT",
    "MemoryReservation",
    "SessionMemory",
    "default_session_memory",
    "session_bytes",
]

BYTES_PER_ADVERTISER_ELEMENT: Final = 128
"""What one element of U costs a session at most, rounded up: while U is checked, U, the rows
as checked and their copy (32 bytes each) and its record tag (4); after, U as checked and U' (32
each), the tag, and the sort keys and positions that look U' up in W (8 each)."""

BYTES_PER_PLATFORM_ELEMENT: Final = 64
"""What one element of W costs a session, rounded up: W itself (32 bytes) and its index (a
sort key and a position, 8 each, and the sorted keys, 8)."""


def session_bytes(identifier_count: int, platform_set_size: int) -> int:
    """The memory a session's sets take at their peak, in bytes.

    Args:
        identifier_count: the elements of U the opening announced.
        platform_set_size: N, the elements of V and so of W.
    """
    return (
        identifier_count * BYTES_PER_ADVERTISER_ELEMENT
        + platform_set_size * BYTES_PER_PLATFORM_ELEMENT
    )


def default_session_memory() -> int:
    """Half of the machine's physical memory: the rest is the server's own (V, its caches, the
    workers) and the machine's."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _size(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


class SessionMemory:
    """The memory budget of the sessions in progress; thread-safe.

    Args:
        budget: bytes the sessions' sets may take at once, all sessions together.

    Raises:
        ValueError: ``budget`` is not positive.
    """

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ValueError("the session memory budget must be positive")
        self.budget = budget
        self._lock = threading.Lock()
        self._reserved = 0

    @property
    def reserved(self) -> int:
        """Bytes the sessions in progress have reserved."""
        with self._lock:
            return self._reserved

    def reserve(self, identifier_count: int, platform_set_size: int) -> MemoryReservation:
        """Reserve what a session announcing these sizes needs; give it back with
        :meth:`MemoryReservation.release`.

        Raises:
            LimitExceeded: the session needs more than the whole budget, or more than the
                sessions in progress leave of it.
        """
        need = session_bytes(identifier_count, platform_set_size)
        sizes = (
            f"{_size(need)} for {identifier_count:,} identifiers against a platform set of "
            f"{platform_set_size:,}"
        )
        if need > self.budget:
            raise LimitExceeded(
                f"this session's sets would need {sizes}, more than the platform's whole "
                f"session memory ({_size(self.budget)}); send a smaller list"
            )
        with self._lock:
            if self._reserved + need > self.budget:
                raise LimitExceeded(
                    f"the sessions in progress hold {_size(self._reserved)} of the platform's "
                    f"session memory ({_size(self.budget)}), and this one would need {sizes}; "
                    "try again when one has ended"
                )
            self._reserved += need
        return MemoryReservation(self, need)

    def _release(self, size: int) -> None:
        with self._lock:
            self._reserved -= size


class MemoryReservation:
    """One session's share of :class:`SessionMemory`; :meth:`release` gives it back once."""

    def __init__(self, memory: SessionMemory, size: int) -> None:
        self.size = size
        self._memory: SessionMemory | None = memory
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the reservation back (again: nothing)."""
        with self._lock:
            memory, self._memory = self._memory, None
        if memory is not None:
            memory._release(self.size)

    def __repr__(self) -> str:
        return f"MemoryReservation({_size(self.size)}, {'held' if self._memory else 'released'})"
