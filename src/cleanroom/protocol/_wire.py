"""What both roles share about the wire: mode codes, session ids, chunking and reassembly."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.errors import InvalidElement, InvalidMessage, LimitExceeded, WrongSession
from cleanroom.policy import Mode
from cleanroom.protocol._constants import MAX_CHUNK_BYTES, SESSION_ID_SIZE

__all__ = [
    "ChunkReceiver",
    "ProgressFactory",
    "check_session_id",
    "chunk_spans",
    "mode_from_wire",
    "mode_to_wire",
    "pb",
    "run_on_thread",
    "stops_when_abandoned",
]

_T = TypeVar("_T")

ProgressFactory = Callable[[str, int | None], Callable[[int], object]]
"""Called as ``factory(phase, total)`` when a long phase starts (``total`` is ``None`` when it is
not known in advance, as for the rows of a list being read; the roles always know it); returns a
callback that gets the number of items just done
(``lambda phase, total: tqdm(desc=phase, total=total).update``)."""


def stops_when_abandoned(
    abandoned: threading.Event, report: Callable[[int], object] | None, work: str
) -> Callable[[int], None]:
    """The progress callback of a long computation of a session, which abandoning it stops.

    Args:
        abandoned: set when the session is abandoned.
        report: the phase's progress callback, or ``None``.
        work: what is computed, for the error (e.g. "the list was hashed").

    Returns:
        A callback for after each chunk: it reports, or raises ``CancelledError`` once the
        session is abandoned, so the work stops after the chunk it is on, not at its end.

    Raises:
        CancelledError: the session is abandoned already.
    """
    if abandoned.is_set():
        raise CancelledError(f"the session was abandoned before {work}")

    def progress(done: int) -> None:
        if abandoned.is_set():
            raise CancelledError(f"the session was abandoned while {work}")
        if report is not None:
            report(done)

    return progress


def run_on_thread(name: str, work: Callable[[], _T]) -> Future[_T]:
    """Start ``work`` on a daemon thread of its own, so the caller goes on meanwhile.

    Returns:
        What ``work`` returns, or whatever it raised, for the thread that waits for it.
    """
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the thread that waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


_MODE_TO_WIRE: dict[Mode, pb.MatchMode] = {
    Mode.COUNT: pb.MATCH_MODE_COUNT,
    Mode.AUDIENCE: pb.MATCH_MODE_AUDIENCE,
    Mode.IDS: pb.MATCH_MODE_IDS,
}
_MODE_FROM_WIRE: dict[int, Mode] = {int(code): mode for mode, code in _MODE_TO_WIRE.items()}


def mode_to_wire(mode: Mode) -> pb.MatchMode:
    """Return the protobuf enum value of ``mode``."""
    return _MODE_TO_WIRE[mode]


def mode_from_wire(code: int) -> Mode:
    """Return the mode a protobuf enum value stands for.

    Raises:
        InvalidMessage: the value is unset or unknown.
    """
    mode = _MODE_FROM_WIRE.get(code)
    if mode is None:
        raise InvalidMessage(f"unknown or unset match mode {code}")
    return mode


def check_session_id(expected: bytes, got: bytes) -> None:
    """Refuse a message that carries another session's id.

    Raises:
        WrongSession: ``got`` differs from ``expected``.
    """
    if got != expected:
        # Session ids are random, not secret; a short prefix is enough to tell them apart.
        raise WrongSession(
            f"message for session {got[:4].hex() or '(none)'}… arrived in session "
            f"{expected[:4].hex()}…"
        )


def new_session_id_ok(session_id: bytes) -> None:
    """Check that a session id announced by the platform has the right size.

    Raises:
        InvalidMessage: it does not.
    """
    if len(session_id) != SESSION_ID_SIZE:
        raise InvalidMessage(f"session id of {len(session_id)} bytes, {SESSION_ID_SIZE} expected")


def rows_per_chunk(bytes_per_row: int, max_chunk_bytes: int = MAX_CHUNK_BYTES) -> int:
    """Return how many rows of ``bytes_per_row`` fit in one chunk."""
    return max(1, max_chunk_bytes // bytes_per_row)


def chunk_spans(total: int, per_chunk: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` of each chunk; an empty set is one empty chunk.

    Every set is sent as at least one chunk so the receiver always sees its round happen.
    """
    if total == 0:
        yield 0, 0
        return
    for start in range(0, total, per_chunk):
        yield start, min(start + per_chunk, total)


class ChunkReceiver:
    """Reassembles one set of elements from its chunks into a preallocated array.

    Checks that chunks arrive in order, contiguously, each within the size limit, and that the
    set never grows past the total announced before the first chunk.

    Args:
        what: the set's name for error messages, e.g. ``"advertiser set U"``.
        total: the number of elements announced.
        element_size: bytes per element.
        extra_bytes: bytes of per-element side data sent along (record tags), counted in the
            chunk size limit.
        max_chunk_bytes: the largest chunk payload accepted.
    """

    def __init__(
        self,
        what: str,
        total: int,
        element_size: int,
        extra_bytes: int = 0,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        self.what = what
        self.total = total
        self.element_size = element_size
        self.max_rows = rows_per_chunk(element_size + extra_bytes, max_chunk_bytes)
        self.received = 0
        self.array: NDArray[np.uint8] = np.empty((total, element_size), dtype=np.uint8)
        self._empty_chunk_seen = False

    @property
    def complete(self) -> bool:
        """Whether every element (or the one empty chunk of an empty set) has arrived."""
        if self.total == 0:
            return self._empty_chunk_seen
        return self.received == self.total

    def accept(self, offset: int, count: int, elements: bytes) -> tuple[int, NDArray[np.uint8]]:
        """Take one chunk.

        Args:
            offset: the chunk's offset field.
            count: the chunk's count field.
            elements: the chunk's elements field.

        Returns:
            ``(offset, rows)``: where the chunk starts and a view of its rows in :attr:`array`.

        Raises:
            InvalidMessage: the chunk is not the next one, is empty while elements are due, or
                runs past the announced total.
            LimitExceeded: the chunk holds more elements than one chunk may.
            InvalidElement: ``elements`` is not ``count`` elements long.
        """
        if offset != self.received:
            raise InvalidMessage(
                f"{self.what}: chunk at offset {offset}, expected offset {self.received}"
            )
        if count > self.max_rows:
            raise LimitExceeded(
                f"{self.what}: chunk of {count} elements, at most {self.max_rows} allowed"
            )
        if count == 0 and self.total != 0:
            raise InvalidMessage(f"{self.what}: empty chunk while elements are still due")
        if offset + count > self.total:
            raise InvalidMessage(
                f"{self.what}: chunk runs to {offset + count}, past the announced "
                f"{self.total} elements"
            )
        if len(elements) != count * self.element_size:
            raise InvalidElement(
                f"{self.what}: chunk at offset {offset} has {len(elements)} bytes, expected "
                f"{count} elements of {self.element_size} bytes"
            )
        rows = self.array[offset : offset + count]
        rows[...] = np.frombuffer(elements, dtype=np.uint8).reshape(count, self.element_size)
        self.received += count
        self._empty_chunk_seen = self.total == 0
        return offset, rows


def shift_element_error(exc: InvalidElement, offset: int, what: str) -> InvalidElement:
    """Return ``exc`` with its row numbered within the whole set, not the chunk."""
    row = None if exc.row is None else offset + exc.row
    return InvalidElement(f"{what}: {exc.reason}", row)
