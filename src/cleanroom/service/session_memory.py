"""The platform's memory for sessions in progress: checked at the opening, taken as sets arrive.

A session's sets live in the server's memory while it runs: U as it arrives and as checked, its
record tags, U' and the lookups of U' in W, then W and its index. The policy bounds one session's
set (``max_upload_records`` records, ``max_identifiers_per_record`` each), but not how many such
sets the server holds at once: sixteen advertisers (or honest ones with large lists at the same
hour) could each send the largest set allowed, and together need more memory than the machine
has. So the sessions share a budget:

- **at the opening**, a session whose sets (from the sizes it announces and the epoch's N) would
  not fit in the whole budget, or not in what the sessions in progress leave of it, is refused
  ``RESOURCE_EXHAUSTED`` (:class:`~cleanroom.errors.LimitExceeded`) before anything is loaded;
- **as its chunks arrive**, each chunk of U or W takes its share before the role keeps it, and a
  chunk that does not fit ends the session the same way. Memory is taken as it is used, not
  when it is announced: a session that announces a large set and then sends nothing holds none
  of it, so it cannot shut others out for the hour a session may last;
- **when the call ends**, completed or not, the session gives back all it took.

The sizes below are counted from the arrays a session holds, rounded up, so they bound it from
above: an ids session of 10^6 identifiers against a platform set of 10^6 takes 183 MiB, and
raised the server's traced allocations (``tracemalloc``, numpy's included) by 134 MiB at their
peak.
"""

from __future__ import annotations

import os
import threading
from typing import Final

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.errors import LimitExceeded
from cleanroom.protocol import MAX_CHUNK_BYTES

__all__ = [
    "BYTES_PER_ADVERTISER_ELEMENT",
    "BYTES_PER_PLATFORM_ELEMENT",
    "MemoryAccount",
    "SessionMemory",
    "chunk_bytes",
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
        self._held_bytes = 0

    @property
    def held(self) -> int:
        """Bytes the sessions in progress hold."""
        with self._lock:
            return self._held_bytes

    def check_opening(self, identifier_count: int, platform_set_size: int) -> None:
        """Refuse an opening whose sets would not fit; take nothing.

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
            held = self._held_bytes
        if held + need > self.budget:
            raise LimitExceeded(self._full(held, f"this one would need {sizes}"))

    def account(self) -> MemoryAccount:
        """A new session's account, empty; :meth:`MemoryAccount.close` gives back what it took."""
        return MemoryAccount(self)

    def _take(self, size: int) -> None:
        with self._lock:
            held = self._held_bytes
            if held + size <= self.budget:
                self._held_bytes = held + size
                return
        raise LimitExceeded(self._full(held, f"this session's next chunk needs {_size(size)}"))

    def _give_back(self, size: int) -> None:
        with self._lock:
            self._held_bytes -= size

    def _full(self, held: int, need: str) -> str:
        return (
            f"the sessions in progress hold {_size(held)} of the platform's session memory "
            f"({_size(self.budget)}), and {need}; try again when one has ended"
        )


class MemoryAccount:
    """What one session has taken of :class:`SessionMemory`."""

    def __init__(self, memory: SessionMemory) -> None:
        self._memory = memory
        self._lock = threading.Lock()
        self._held = 0
        self._closed = False

    @property
    def held(self) -> int:
        """Bytes this session holds."""
        with self._lock:
            return self._held

    def take(self, size: int) -> None:
        """Take ``size`` more bytes for this session (0: nothing).

        Raises:
            LimitExceeded: they do not fit beside what the sessions in progress hold.
            ValueError: the account was closed.
        """
        if size <= 0:
            return
        with self._lock:
            if self._closed:
                raise ValueError("the session's memory account is closed")
            self._memory._take(size)
            self._held += size

    def close(self) -> None:
        """Give back everything this session took (again: nothing)."""
        with self._lock:
            held, self._held, self._closed = self._held, 0, True
        self._memory._give_back(held)

    def __repr__(self) -> str:
        return f"MemoryAccount({_size(self.held)}{', closed' if self._closed else ''})"


def chunk_bytes(message: pb.ClientMessage, element_size: int) -> int:
    """What a client message's chunk of U or W takes of the session memory; 0 for any other.

    Counted from the chunk's count, at most what one chunk can carry: the role refuses a count
    above its chunk limit, or one its elements do not match, before it keeps anything.
    """
    round_name = message.WhichOneof("round")
    if round_name == "advertiser_set":
        per_element, count = BYTES_PER_ADVERTISER_ELEMENT, message.advertiser_set.count
    elif round_name == "encrypted_platform_set":
        per_element, count = BYTES_PER_PLATFORM_ELEMENT, message.encrypted_platform_set.count
    else:
        return 0
    return min(count, MAX_CHUNK_BYTES // element_size) * per_element
