"""Duplicate finding and row matching: exact, including when 64-bit keys collide."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.protocol._rows import (
    ChunkedLookup,
    RowIndex,
    find_duplicate,
    first_occurrence,
    first_occurrence_of_messages,
    match_rows,
)

SIZE = 32


def _random_rows(n: int) -> np.ndarray:
    return np.frombuffer(os.urandom(n * SIZE), dtype=np.uint8).reshape(n, SIZE).copy()


def _colliding_rows(n: int) -> np.ndarray:
    """Distinct rows that all share their last 8 bytes: the key the fast path sorts on."""
    rows = _random_rows(n)
    rows[:, -8:] = 7
    return rows


def test_distinct_rows_have_no_duplicate() -> None:
    rows = _random_rows(1000)
    assert find_duplicate(rows) is None
    assert np.array_equal(first_occurrence(rows), np.arange(1000))
    assert find_duplicate(rows[:0]) is None
    assert find_duplicate(rows[:1]) is None


def test_earliest_repeat_is_named_with_its_original() -> None:
    rows = _random_rows(100)
    rows[70] = rows[3]
    rows[40] = rows[10]
    rows[90] = rows[10]
    assert find_duplicate(rows) == (10, 40)
    first = first_occurrence(rows)
    assert (first[70], first[40], first[90], first[10]) == (3, 10, 10, 10)


def test_key_collisions_are_not_duplicates() -> None:
    rows = _colliding_rows(500)
    assert find_duplicate(rows) is None
    rows[499] = rows[17]
    assert find_duplicate(rows) == (17, 499)


def test_rows_differing_only_outside_the_key_are_told_apart() -> None:
    rows = _random_rows(2)
    rows[1] = rows[0]
    rows[1, 0] ^= 1
    assert find_duplicate(rows) is None
    probe_index, table_index = match_rows(rows[1:], rows[:1])
    assert probe_index.size == 0 and table_index.size == 0


@pytest.mark.parametrize("size", [32, 33])  # X25519's rows are whole 64-bit words; P-256's not
def test_a_match_needs_every_byte_equal(size: int) -> None:
    table = np.frombuffer(os.urandom(4 * size), dtype=np.uint8).reshape(4, size).copy()
    for byte in range(size):
        probe = table.copy()
        probe[1, byte] ^= 0x80
        probe_index, table_index = match_rows(probe, table)
        assert probe_index.tolist() == table_index.tolist() == [0, 2, 3]


def test_match_rows_finds_exactly_the_common_rows() -> None:
    table = _random_rows(300)
    probe = np.concatenate([_random_rows(50), table[[5, 299, 0]], _random_rows(10)])
    probe_index, table_index = match_rows(probe, table)
    assert probe_index.tolist() == [50, 51, 52]
    assert table_index.tolist() == [5, 299, 0]


def test_match_rows_with_colliding_table_keys() -> None:
    table = _colliding_rows(200)
    probe = np.concatenate([table[[150, 3]], _colliding_rows(20)])
    probe_index, table_index = match_rows(probe, table)
    assert probe_index.tolist() == [0, 1]
    assert table_index.tolist() == [150, 3]


def test_match_rows_on_empty_sets() -> None:
    rows = _random_rows(3)
    for probe, table in [(rows[:0], rows), (rows, rows[:0]), (rows[:0], rows[:0])]:
        probe_index, table_index = match_rows(probe, table)
        assert probe_index.size == table_index.size == 0


@settings(max_examples=100)
@given(
    st.lists(st.integers(0, 30), max_size=60),
    st.lists(st.integers(0, 30), max_size=60, unique=True),
    st.booleans(),
)
def test_match_rows_equals_set_membership(
    probe_ids: list[int], table_ids: list[int], collide: bool
) -> None:
    palette = _colliding_rows(31) if collide else _random_rows(31)
    probe = palette[probe_ids].reshape(-1, SIZE)
    table = palette[table_ids].reshape(-1, SIZE)
    probe_index, table_index = match_rows(probe, table)
    expected = [i for i, p in enumerate(probe_ids) if p in table_ids]
    assert probe_index.tolist() == expected
    assert [table_ids[t] for t in table_index] == [probe_ids[i] for i in expected]
    # A probe given as its index (its sort reused where its keys are distinct): the same.
    indexed = match_rows(RowIndex(probe), RowIndex(table))
    assert [found.tolist() for found in indexed] == [probe_index.tolist(), table_index.tolist()]
    first = first_occurrence(probe)
    assert first.tolist() == [probe_ids.index(p) for p in probe_ids]
    assert RowIndex(probe).find_duplicate() == find_duplicate(probe)


@given(st.lists(st.binary(max_size=12), max_size=80), st.integers(0, 3))
def test_first_occurrence_of_messages_is_the_first_equal_message(
    messages: list[bytes], repeat: int
) -> None:
    messages = messages * repeat + messages  # repeats, short messages and empty ones
    assert first_occurrence_of_messages(messages).tolist() == [messages.index(m) for m in messages]


class _SameHash(bytes):
    """Bytes whose hash() collides with every other's: only the exact comparison can tell."""

    def __hash__(self) -> int:
        return 7


def test_first_occurrence_of_messages_when_every_key_collides() -> None:
    messages = [_SameHash(m) for m in (b"a", b"b", b"a", b"c", b"b", b"a")]
    assert first_occurrence_of_messages(messages).tolist() == [0, 1, 0, 3, 1, 0]


@settings(max_examples=100)
@given(
    st.lists(st.integers(0, 30), max_size=60),
    st.lists(st.integers(0, 30), max_size=60, unique=True),
    st.booleans(),
    st.lists(st.integers(1, 9), max_size=12),
    st.randoms(use_true_random=False),
)
def test_a_probe_looked_up_chunk_by_chunk_matches_as_a_whole(
    probe_ids: list[int],
    table_ids: list[int],
    collide: bool,
    sizes: list[int],
    rng: random.Random,
) -> None:
    palette = _colliding_rows(31) if collide else _random_rows(31)
    probe = palette[probe_ids].reshape(-1, SIZE)
    table = palette[table_ids].reshape(-1, SIZE)
    bounds, start = [], 0
    for size in [*sizes, len(probe)]:
        stop = min(start + size, len(probe))
        if stop > start:
            bounds.append((start, stop))
        start = stop
    rng.shuffle(bounds)  # chunks land in any order
    table_at = rng.randint(0, len(bounds))  # and the table comes before, among or after them
    lookup = ChunkedLookup()
    for i, (start, stop) in enumerate(bounds):
        if i == table_at:
            lookup.set_table(RowIndex(table))
        lookup.add(start, probe[start:stop])
    if table_at == len(bounds):
        lookup.set_table(RowIndex(table))
    expected = match_rows(probe, table)
    assert [found.tolist() for found in lookup.result(probe)] == [
        found.tolist() for found in expected
    ]


def test_a_table_whose_keys_collide_is_looked_up_once_at_the_end() -> None:
    # Its lookup sorts the whole table: once per chunk would let the party that sent it make
    # the other side sort a million rows for every chunk.
    table = _colliding_rows(50)
    probe = np.concatenate([table[[7, 3]], _colliding_rows(6)])
    lookup = ChunkedLookup()
    lookup.set_table(RowIndex(table))
    for start in range(0, len(probe), 2):
        lookup.add(start, probe[start : start + 2])
    assert lookup._found == []
    assert [found.tolist() for found in lookup.result(probe)] == [[0, 1], [7, 3]]


def test_rows_no_chunk_covered_are_looked_up_at_the_end() -> None:
    table = _random_rows(40)
    probe = np.concatenate([table[[9]], _random_rows(3), table[[2]]])
    lookup = ChunkedLookup()
    lookup.set_table(RowIndex(table))
    lookup.add(0, probe[:2])  # the rest never added
    assert [found.tolist() for found in lookup.result(probe)] == [[0, 4], [9, 2]]
