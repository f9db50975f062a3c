"""The batch engine's pluggable executor, with a thread pool standing in for a cluster.

A thread pool is a real :class:`~cleanroom.crypto.batch.ChunkExecutor` (the Dask one is tested
against a real cluster in ``tests/integration/test_dask_cluster.py``): these tests pin what the
engine promises any executor: same results, same error rows, bounded chunks in flight, close.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.crypto.batch import ChunkExecutor
from cleanroom.errors import InvalidElement

CHUNK = 8
SUITE = get_suite("x25519-sha512-ell2-ro")


class ThreadExecutor:
    """Runs tasks on threads; counts what the engine asks of it."""

    def __init__(self, slots: int) -> None:
        self._pool = ThreadPoolExecutor(slots)
        self._slots = slots
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.submitted = 0
        self.closed = False

    @property
    def slots(self) -> int:
        return self._slots

    def submit(self, function: Callable[..., Any], /, *args: Any) -> Future[Any]:
        with self._lock:
            self.submitted += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        future = self._pool.submit(function, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self.in_flight -= 1

    def close(self) -> None:
        self.closed = True
        self._pool.shutdown()


def test_a_thread_executor_is_a_chunk_executor() -> None:
    # Its signatures are checked by mypy (make typecheck runs it on this file); its members here.
    executor: ChunkExecutor = ThreadExecutor(2)
    assert isinstance(executor, ChunkExecutor)
    assert not isinstance(object(), ChunkExecutor)
    executor.close()


def test_jobs_on_an_executor_equal_the_local_engine_and_stay_bounded() -> None:
    key = SUITE.generate_key()
    msgs = [b"m%d" % i for i in range(13 * CHUNK + 3)]
    expected = BatchEngine(workers=1).hash_and_encrypt(SUITE, key, msgs, SUITE.dst)
    executor = ThreadExecutor(3)
    with BatchEngine(executor=executor, chunk_size=CHUNK) as engine:
        assert engine.workers == 3 and engine.worker_pids == frozenset()
        assert "on <" in repr(engine)
        reported: list[int] = []
        result = engine.hash_and_encrypt(SUITE, key, msgs, SUITE.dst, progress=reported.append)
        assert np.array_equal(result, expected)
        assert sum(reported) == len(msgs)
        assert executor.submitted == len(engine.chunk_bounds(len(msgs)))
        assert executor.most_in_flight <= 2 * 3
        bad = result.copy()
        bad[5 * CHUNK + 2] = 0
        bad[9 * CHUNK] = 0
        with pytest.raises(InvalidElement) as caught:
            engine.validate(SUITE, bad)
        assert caught.value.row == 5 * CHUNK + 2
    assert executor.closed


@pytest.mark.parametrize(
    ("suite_id", "on_the_executor"),
    [("x25519-sha512-ell2-ro", False), ("p256-sha256-sswu-ro", True)],
)
def test_a_suite_checked_in_place_is_validated_in_the_calling_thread(
    suite_id: str, on_the_executor: bool
) -> None:
    # X25519's check is cheaper than the copies to a worker and back; P-256's is not.
    suite = get_suite(suite_id)
    assert suite.checked_in_place is not on_the_executor
    elements = BatchEngine(workers=1).hash_to_curve_many(
        suite, [b"m%d" % i for i in range(5 * CHUNK + 3)], suite.dst
    )
    executor = ThreadExecutor(2)
    with BatchEngine(executor=executor, chunk_size=CHUNK) as engine:
        reported: list[int] = []
        checked = engine.validate(suite, elements, progress=reported.append)
        chunks = len(engine.chunk_bounds(len(elements)))
        assert executor.submitted == (chunks if on_the_executor else 0)
        assert np.array_equal(checked.array, elements)
        assert len(reported) == chunks and sum(reported) == len(elements)
        bad = elements.copy()
        bad[4 * CHUNK + 1] = 0  # X25519: u = 0, of small order; P-256: no 0x02/0x03 prefix
        with pytest.raises(InvalidElement) as caught:
            engine.validate(suite, bad)
        assert caught.value.row == 4 * CHUNK + 1


def test_an_executor_of_one_slot_still_gets_the_large_jobs() -> None:
    executor = ThreadExecutor(1)
    with BatchEngine(executor=executor, chunk_size=CHUNK) as engine:
        engine.hash_to_curve_many(SUITE, [b"m"] * (3 * CHUNK), SUITE.dst)
        assert executor.submitted == 3
        engine.hash_to_curve_many(SUITE, [b"m"] * CHUNK, SUITE.dst)  # one chunk: here
        assert executor.submitted == 3


def test_workers_and_an_executor_together_are_refused() -> None:
    executor = ThreadExecutor(2)
    with pytest.raises(ValueError, match="not both"):
        BatchEngine(workers=2, executor=executor)
    executor.close()
