"""Messages packed into two buffers: how a chunk of messages travels to a worker process.

A chunk of a list's messages is thousands of small ``bytes`` objects, and pickling them one by
one (and unpickling them in the worker) costs a noticeable share of the hashing itself, on the
thread that also reads the list. :class:`PackedMessages` holds the same messages as their
concatenation and their offsets, two objects that pickle as a copy; the curve25519 hash to curve
reads that form as it is, and any other suite sees an ordinary sequence of ``bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from cleanroom.crypto import _h2c25519

__all__ = ["PackedMessages"]


class PackedMessages(Sequence[bytes]):
    """Messages as one buffer: message ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    Attributes:
        data: the messages, concatenated.
        offsets: ``len(self) + 1`` native 64-bit integers, from 0 to ``len(data)``.
    """

    __slots__ = ("_at", "data", "offsets")

    def __init__(self, data: bytes, offsets: bytes) -> None:
        self.data = data
        self.offsets = offsets
        self._at = memoryview(offsets).cast("q")

    @classmethod
    def pack(cls, msgs: Sequence[bytes], first: int = 0) -> PackedMessages:
        """Pack messages.

        Args:
            msgs: the messages.
            first: the number of ``msgs[0]`` in the list they come from, for errors.

        Raises:
            TypeError: a message is not ``bytes`` (named by its number).
        """
        return cls(*_h2c25519.pack(msgs, first))

    def __reduce__(self) -> tuple[Any, ...]:
        return PackedMessages, (self.data, self.offsets)

    def __len__(self) -> int:
        return len(self._at) - 1

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("message index out of range")
        return self.data[self._at[index] : self._at[index + 1]]

    def __iter__(self) -> Iterator[bytes]:
        data, at = self.data, self._at
        for i in range(len(self)):
            yield data[at[i] : at[i + 1]]

    def __repr__(self) -> str:
        return f"<PackedMessages {len(self)} messages, {len(self.data)} bytes>"
