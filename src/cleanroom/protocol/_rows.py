"""Set operations on arrays of encoded elements: duplicates and matches, exactly and fast.

Rows are compared as whole byte strings. The fast path sorts one 64-bit key per row (8 of its
bytes, which are uniformly random for honest elements) and checks every candidate on the full
row; rows whose keys collide, by chance or because the other party made them so, are settled
by sorting the full rows, so the answer is always exact and the cost never quadratic.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ChunkedLookup",
    "RowIndex",
    "find_duplicate",
    "first_occurrence",
    "first_occurrence_of_messages",
    "match_rows",
]

_KEY_BYTES = 8


def _keys(rows: NDArray[np.uint8]) -> NDArray[np.uint64]:
    # The last 8 bytes: random in both encodings (x25519's top byte loses one bit, P-256's
    # first byte is only the 0x02/0x03 prefix).
    tail = np.ascontiguousarray(rows[:, -_KEY_BYTES:])
    return tail.view(np.uint64).reshape(-1)


def _whole(rows: NDArray[np.uint8]) -> NDArray[np.void]:
    """View each row as one opaque value, so numpy sorts and compares whole rows."""
    contiguous = np.ascontiguousarray(rows)
    return contiguous.view(np.dtype((np.void, rows.shape[1]))).reshape(-1)


def _same_rows(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """Whether each row of ``a`` equals the same row of ``b`` (C-contiguous, of one shape).

    Compared a 64-bit word at a time where the rows are whole words: an eighth of the
    comparisons, and of the temporary they fill, of comparing bytes.
    """
    if a.shape[1] % 8 == 0:
        a, b = a.view(np.uint64), b.view(np.uint64)
    same: NDArray[np.bool_] = np.all(a == b, axis=1)
    return same


def _colliding(keys: NDArray[np.integer[Any]]) -> NDArray[np.intp]:
    """Return, ascending, the indices of rows whose key some other row shares."""
    order = np.argsort(keys)  # the indices are sorted at the end: no stable sort needed
    sorted_keys = keys[order]
    same_as_next = sorted_keys[1:] == sorted_keys[:-1]
    involved = np.zeros(len(keys), dtype=bool)
    involved[:-1] |= same_as_next
    involved[1:] |= same_as_next
    return np.sort(order[involved])


def first_occurrence(rows: NDArray[np.uint8]) -> NDArray[np.intp]:
    """For each row, the index of the first row equal to it (itself if it is the first).

    Args:
        rows: array of shape ``(n, element_size)``, ``element_size >= 8``.

    Returns:
        Array of shape ``(n,)``.
    """
    first = np.arange(len(rows), dtype=np.intp)
    if len(rows) < 2:
        return first
    candidates = _colliding(_keys(rows))
    if candidates.size:
        values = _whole(rows[candidates])
        # Stable, so within a group of equal rows the lowest index comes first.
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        starts = np.ones(len(ordered), dtype=bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
        first[candidates[order]] = candidates[order[group_start]]
    return first


def first_occurrence_of_messages(messages: Sequence[bytes]) -> NDArray[np.intp]:
    """For each message, the index of the first message equal to it (itself if it is the first).

    The same fast path as :func:`first_occurrence`, keyed on each message's ``hash()``: only
    messages whose keys collide are compared whole, so the answer is exact whatever the
    messages are.

    Args:
        messages: byte strings.

    Returns:
        Array of shape ``(len(messages),)``.
    """
    count = len(messages)
    first = np.arange(count, dtype=np.intp)
    if count < 2:
        return first
    candidates = _colliding(np.fromiter(map(hash, messages), dtype=np.int64, count=count))
    if candidates.size:
        seen: dict[bytes, int] = {}
        for index in candidates.tolist():  # ascending, so the first of equal messages wins
            first[index] = seen.setdefault(messages[index], index)
    return first


def find_duplicate(rows: NDArray[np.uint8]) -> tuple[int, int] | None:
    """Return ``(first, repeat)``: the earliest row that repeats an earlier one, or ``None``.

    Args:
        rows: array of shape ``(n, element_size)``.

    Returns:
        ``None`` if all rows are distinct; else the lowest index ``repeat`` whose row equals an
        earlier row, and the index ``first`` of that earlier row.
    """
    if len(rows) < 2:
        return None
    # Rows with distinct keys are distinct; sorting the keys alone is several times cheaper
    # than the argsort that finds which rows share one.
    keys = np.sort(_keys(rows))
    if not np.any(keys[1:] == keys[:-1]):
        return None
    first = first_occurrence(rows)
    repeats = np.flatnonzero(first != np.arange(len(rows)))
    if repeats.size == 0:
        return None
    repeat = int(repeats[0])
    return int(first[repeat]), repeat


class RowIndex:
    """A set of rows sorted once by key, so that looking rows up in it sorts only them.

    A party builds it for W as soon as W is complete, while it still waits for U'; the same sort
    tells whether W repeats a row.

    Args:
        table: array of shape ``(m, element_size)``.
    """

    def __init__(self, table: NDArray[np.uint8]) -> None:
        self.table = table
        # (order, sorted keys) when every key is distinct; else rows are compared whole.
        self._sorted: tuple[NDArray[np.intp], NDArray[np.uint64]] | None = None
        if len(table):
            keys = _keys(table)
            order = np.argsort(keys)
            sorted_keys = keys[order]
            if not np.any(sorted_keys[1:] == sorted_keys[:-1]):
                self._sorted = order, sorted_keys

    def find_duplicate(self) -> tuple[int, int] | None:
        """:func:`find_duplicate` of the table: only rows with equal keys can be equal."""
        return None if self._sorted is not None else find_duplicate(self.table)

    @property
    def keys_distinct(self) -> bool:
        """Whether every row has a key of its own, so a lookup sorts only the probe."""
        return self._sorted is not None or len(self.table) == 0

    def lookup(
        self, probe: NDArray[np.uint8] | RowIndex
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """:func:`match_rows` of ``probe`` in this table (whose rows must be distinct).

        A probe given as its own index is not sorted again.
        """
        # The probe's own sort, where it was indexed and its keys are distinct.
        probe_sort = probe._sorted if isinstance(probe, RowIndex) else None
        probe = probe.table if isinstance(probe, RowIndex) else probe
        table = self.table
        empty = np.zeros(0, dtype=np.intp)
        if len(probe) == 0 or len(table) == 0:
            return empty, empty
        if self._sorted is None:
            return _match_whole(probe, table)
        order, sorted_keys = self._sorted
        probe_keys = _keys(probe)
        if probe_sort is None:
            found = _sorted_positions(sorted_keys, probe_keys)
        else:
            probe_order, probe_sorted_keys = probe_sort
            found = np.empty(len(probe), dtype=np.intp)
            found[probe_order] = np.searchsorted(sorted_keys, probe_sorted_keys)
        position = np.minimum(found, len(sorted_keys) - 1)
        probe_index = np.flatnonzero(sorted_keys[position] == probe_keys)
        table_index = order[position[probe_index]]
        same = _same_rows(probe[probe_index], table[table_index])
        return probe_index[same], table_index[same]


class ChunkedLookup:
    """:func:`match_rows` of a probe that is computed chunk by chunk, against a table that may
    be complete only later: each chunk is looked up as soon as both are there, so that once the
    last chunk is in, only that one is left to look up.

    Chunks come from one thread (:meth:`add`, e.g. a batch job's ``landed``) and the table from
    another (:meth:`set_table`); :meth:`result` is called once both are done. A table whose keys
    collide (by chance, or made so by the party that sent it) is looked up in once, at the end,
    with the whole probe, because its lookup sorts the whole table every time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: RowIndex | None = None
        self._waiting: list[tuple[int, NDArray[np.uint8]]] = []
        self._found: list[tuple[int, NDArray[np.intp], NDArray[np.intp]]] = []
        self._rows = 0

    def add(self, start: int, rows: NDArray[np.uint8]) -> None:
        """Take the probe's rows from ``start`` on (they must not change afterwards)."""
        with self._lock:
            self._rows += len(rows)
            table = self._table
            if table is None:
                self._waiting.append((start, rows))
                return
        self._look_up(table, [(start, rows)])

    def set_table(self, table: RowIndex) -> None:
        """Take the table, and look up the chunks that came before it."""
        with self._lock:
            self._table = table
            waiting, self._waiting = self._waiting, []
        self._look_up(table, waiting)

    def result(self, probe: NDArray[np.uint8]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """``match_rows(probe, table)``, given the whole probe every chunk was part of."""
        table = self._table
        assert table is not None  # set_table was called
        if not table.keys_distinct or self._rows != len(probe) or not self._found:
            return table.lookup(probe)  # also whatever no chunk covered
        found = sorted(self._found, key=lambda chunk: chunk[0])
        return (
            np.concatenate([probe_index for _, probe_index, _ in found]),
            np.concatenate([table_index for _, _, table_index in found]),
        )

    def _look_up(self, table: RowIndex, chunks: list[tuple[int, NDArray[np.uint8]]]) -> None:
        if not table.keys_distinct:
            return  # looked up whole, at the end
        for start, rows in chunks:
            probe_index, table_index = table.lookup(rows)
            with self._lock:
                self._found.append((start, probe_index + start, table_index))


def match_rows(
    probe: NDArray[np.uint8] | RowIndex, table: NDArray[np.uint8] | RowIndex
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Find the rows of ``probe`` that occur in ``table``.

    Args:
        probe: array of shape ``(n, element_size)``, or its :class:`RowIndex`.
        table: array of shape ``(m, element_size)`` with distinct rows, or its :class:`RowIndex`.

    Returns:
        ``(probe_index, table_index)``: equal-length arrays, ascending in ``probe_index``, with
        ``probe[probe_index[i]] == table[table_index[i]]``.
    """
    index = table if isinstance(table, RowIndex) else RowIndex(table)
    return index.lookup(probe)


def _sorted_positions(ordered: NDArray[Any], values: NDArray[Any]) -> NDArray[np.intp]:
    """``np.searchsorted(ordered, values)``, but with ``values`` visited in sorted order.

    Looking up millions of values in random order misses the cache on every step; sorting them
    first makes the walk sequential.
    """
    value_order = np.argsort(values)
    found = np.searchsorted(ordered, values[value_order])
    position = np.empty(len(values), dtype=np.intp)
    position[value_order] = found
    return position


def _match_whole(
    probe: NDArray[np.uint8], table: NDArray[np.uint8]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """:func:`match_rows` by sorting whole rows: slower, immune to key collisions."""
    table_values = _whole(table)
    order = np.argsort(table_values)
    ordered = table_values[order]
    probe_values = _whole(probe)
    position = np.minimum(_sorted_positions(ordered, probe_values), len(ordered) - 1)
    probe_index = np.flatnonzero(ordered[position] == probe_values)
    return probe_index, order[position[probe_index]]
