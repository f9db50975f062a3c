"""The batch engine: chunking, results equal to the in-process path, error rows, pool reuse.

Chunks are tiny here (8 rows) so multi-chunk jobs stay fast; one pooled engine is shared by the
module so its worker processes start once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray

from cleanroom._fork_server import WORKERS_PER_CPU, available_cpus
from cleanroom.crypto import SUITE_IDS, BatchEngine, default_engine, get_suite
from cleanroom.crypto.batch import ChunkResult, _hash_task
from cleanroom.errors import InvalidElement

CHUNK = 8
X25519 = get_suite("x25519-sha512-ell2-ro")


@pytest.fixture(scope="module")
def pooled() -> Iterator[BatchEngine]:
    engine = BatchEngine(workers=2, chunk_size=CHUNK)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def in_process() -> BatchEngine:
    return BatchEngine(workers=1, chunk_size=CHUNK)


@pytest.fixture(scope="module")
def elements() -> NDArray[np.uint8]:
    rows = [X25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(5 * CHUNK)]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 32)


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 4 * CHUNK + 3]


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        BatchEngine(workers=0)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        BatchEngine(chunk_size=0)
    with pytest.raises(ValueError, match=r"workers: .* at most"):  # a mistyped count
        BatchEngine(workers=WORKERS_PER_CPU * available_cpus() + 1)


def test_defaults() -> None:
    engine = BatchEngine()
    assert engine.workers >= 1 and engine.chunk_size >= 8192
    assert default_engine() is default_engine()
    assert f"workers={engine.workers}" in repr(engine)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("n", [*SIZES, 100, 1001])
def test_chunk_bounds_cover_the_rows_in_order(workers: int, n: int) -> None:
    engine = BatchEngine(workers=workers, chunk_size=CHUNK)
    bounds = engine.chunk_bounds(n)
    assert [row for start, stop in bounds for row in range(start, stop)] == list(range(n))
    sizes = [stop - start for start, stop in bounds]
    assert all(0 < size <= CHUNK for size in sizes)
    if n <= CHUNK:
        assert len(bounds) == (1 if n else 0)
    else:
        # Equal chunks, as many as needed rounded up to a multiple of the workers.
        assert max(sizes) - min(sizes) <= 1
        assert len(bounds) % workers == 0
        assert len(bounds) < -(-n // CHUNK) + workers


def test_large_jobs_are_split_evenly_across_workers() -> None:
    bounds = BatchEngine(workers=2, chunk_size=16_384).chunk_bounds(100_000)
    sizes = {stop - start for start, stop in bounds}
    assert len(bounds) == 8 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n", SIZES)
def test_pooled_encrypt_equals_in_process(
    n: int, pooled: BatchEngine, in_process: BatchEngine, elements: NDArray[np.uint8]
) -> None:
    key = X25519.generate_key()
    subset = elements[:n]
    expected = BatchEngine(workers=1, chunk_size=10**6).encrypt(X25519, key, subset)
    assert expected.shape == (n, 32)
    assert np.array_equal(in_process.encrypt(X25519, key, subset), expected)
    assert np.array_equal(pooled.encrypt(X25519, key, subset), expected)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
@pytest.mark.parametrize("n", [CHUNK + 1, 3 * CHUNK])
def test_pooled_hashing_equals_in_process(
    suite_id: str, n: int, pooled: BatchEngine, in_process: BatchEngine
) -> None:
    suite = get_suite(suite_id)
    key = suite.generate_key()
    msgs = [b"cleanroom/v1/maid/" + i.to_bytes(32, "big") for i in range(n)]
    hashed = pooled.hash_to_curve_many(suite, msgs, suite.dst)
    assert [bytes(row) for row in hashed] == [suite.hash_to_curve(m, suite.dst) for m in msgs]
    assert np.array_equal(hashed, in_process.hash_to_curve_many(suite, msgs, suite.dst))
    fused = pooled.hash_and_encrypt(suite, key, msgs, suite.dst)
    assert np.array_equal(fused, in_process.hash_and_encrypt(suite, key, msgs, suite.dst))
    assert np.array_equal(fused, in_process.encrypt(suite, key, hashed))


@pytest.mark.parametrize("bad_row", [0, CHUNK - 1, CHUNK, 2 * CHUNK + 3, 5 * CHUNK - 1])
@pytest.mark.parametrize("engine_name", ["pooled", "in_process"])
def test_error_row_is_relative_to_the_whole_array(
    bad_row: int,
    engine_name: str,
    request: pytest.FixtureRequest,
    elements: NDArray[np.uint8],
) -> None:
    engine: BatchEngine = request.getfixturevalue(engine_name)
    bad = elements.copy()
    bad[bad_row] = 0
    with pytest.raises(InvalidElement, match=f"row {bad_row}: small-order point") as excinfo:
        engine.encrypt(X25519, X25519.generate_key(), bad)
    assert excinfo.value.row == bad_row


def test_first_bad_row_wins_across_chunks(pooled: BatchEngine, elements: NDArray[np.uint8]) -> None:
    bad = elements.copy()
    for row in (4 * CHUNK + 2, CHUNK + 5, 3 * CHUNK):
        bad[row, 31] = 0xFF
    with pytest.raises(InvalidElement) as excinfo:
        pooled.encrypt(X25519, X25519.generate_key(), bad)
    assert excinfo.value.row == CHUNK + 5


def test_pool_is_started_once_and_reused(pooled: BatchEngine, elements: NDArray[np.uint8]) -> None:
    key = X25519.generate_key()
    pooled.encrypt(X25519, key, elements)
    first = pooled.worker_pids
    assert len(first) == 2
    pooled.encrypt(X25519, key, elements)
    pooled.hash_to_curve_many(X25519, [b"m"] * (3 * CHUNK), X25519.dst)
    assert pooled.worker_pids == first
    assert pooled.start_method in ("forkserver", "spawn")


def test_small_jobs_and_single_worker_engines_run_in_process(
    elements: NDArray[np.uint8],
) -> None:
    key = X25519.generate_key()
    small = BatchEngine(workers=2, chunk_size=CHUNK)
    small.encrypt(X25519, key, elements[:CHUNK])
    assert small.worker_pids == frozenset()
    single = BatchEngine(workers=1, chunk_size=CHUNK)
    single.encrypt(X25519, key, elements)
    assert single.worker_pids == frozenset()


def test_close_stops_workers_and_a_later_job_restarts(elements: NDArray[np.uint8]) -> None:
    key = X25519.generate_key()
    with BatchEngine(workers=2, chunk_size=CHUNK) as engine:
        expected = engine.encrypt(X25519, key, elements)
        assert engine.worker_pids
        engine.close()
        assert engine.worker_pids == frozenset()
        engine.close()  # idempotent
        assert np.array_equal(engine.encrypt(X25519, key, elements), expected)
        assert engine.worker_pids
    assert engine.worker_pids == frozenset()


@pytest.mark.parametrize("engine_name", ["pooled", "in_process"])
@pytest.mark.parametrize("n", [0, CHUNK, 4 * CHUNK + 3])
def test_progress_reports_every_chunk(
    engine_name: str, n: int, request: pytest.FixtureRequest, elements: NDArray[np.uint8]
) -> None:
    engine: BatchEngine = request.getfixturevalue(engine_name)
    reported: list[int] = []
    engine.encrypt(X25519, X25519.generate_key(), elements[:n], progress=reported.append)
    assert sum(reported) == n
    assert len(reported) == len(engine.chunk_bounds(n))
    assert all(0 < count <= CHUNK for count in reported)


@pytest.mark.parametrize("engine_name", ["pooled", "in_process"])
@pytest.mark.parametrize("n", [0, CHUNK, 4 * CHUNK + 3])
def test_landed_gets_every_chunk_of_the_output_once(
    engine_name: str, n: int, request: pytest.FixtureRequest, elements: NDArray[np.uint8]
) -> None:
    engine: BatchEngine = request.getfixturevalue(engine_name)
    landed: list[tuple[int, bytes]] = []

    def take(start: int, rows: NDArray[np.uint8]) -> None:
        landed.append((start, rows.tobytes()))  # copied now: the final rows, as they landed

    encrypted = engine.encrypt(X25519, X25519.generate_key(), elements[:n], landed=take)
    assert sorted(start for start, _ in landed) == [start for start, _ in engine.chunk_bounds(n)]
    assert b"".join(rows for _, rows in sorted(landed)) == encrypted.tobytes()


def test_hashing_messages_of_any_sequence_type(pooled: BatchEngine) -> None:
    msgs = tuple(b"msg-%d" % i for i in range(2 * CHUNK + 1))
    hashed = pooled.hash_to_curve_many(X25519, msgs, X25519.dst)
    assert bytes(hashed[-1]) == X25519.hash_to_curve(msgs[-1], X25519.dst)


def test_a_message_that_is_not_bytes_is_refused_and_the_pool_survives(
    pooled: BatchEngine,
) -> None:
    msgs: list[bytes] = [b"fine"] * (3 * CHUNK)
    msgs[2 * CHUNK + 1] = "not bytes"  # type: ignore[call-overload]
    pids = pooled.worker_pids
    with pytest.raises(TypeError, match=f"message {2 * CHUNK + 1} is str, not bytes"):
        pooled.hash_to_curve_many(X25519, msgs, X25519.dst)
    hashed = pooled.hash_to_curve_many(X25519, [b"fine"] * (3 * CHUNK), X25519.dst)
    assert len(hashed) == 3 * CHUNK
    assert pooled.worker_pids == pids or not pids


def test_an_error_raised_in_a_worker_reaches_the_caller_and_the_pool_survives(
    pooled: BatchEngine,
) -> None:
    def task(start: int, stop: int) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
        # The hashing task given a list, not packed messages, with a str in the second chunk:
        # the worker's C raises.
        msgs: list[Any] = [b"fine"] * (stop - start)
        if start > 0:
            msgs[0] = "not bytes"
        return _hash_task, (X25519, msgs, X25519.dst)

    pids = pooled.worker_pids
    with pytest.raises(TypeError, match="message 0 is str, not bytes"):
        pooled._run(3 * CHUNK, X25519.element_size, task, None)
    assert len(pooled.hash_to_curve_many(X25519, [b"fine"] * (3 * CHUNK), X25519.dst)) == 3 * CHUNK
    assert pooled.worker_pids == pids or not pids


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_validate_names_the_first_bad_row_of_the_whole_array(suite_id: str) -> None:
    # Across the pool for P-256; X25519's chunks are checked in the calling thread.
    suite = get_suite(suite_id)
    elements = default_engine().hash_to_curve_many(
        suite, [b"m%d" % i for i in range(50)], suite.dst
    )
    with BatchEngine(workers=2, chunk_size=8) as engine:
        engine.validate(suite, elements)  # all good: no error
        bad = elements.copy()
        bad[37] = 0  # X25519: u = 0 is of small order; P-256: no valid prefix
        bad[45, 0] = 0xFF  # X25519: another bad u; P-256: a bad prefix, but later
        bad[45, -1] = 0xFF
        with pytest.raises(InvalidElement) as caught:
            engine.validate(suite, bad)
    assert caught.value.row == 37
    if suite is X25519:
        assert "small-order" in caught.value.reason


# -- validated elements: checked once, multiplied without checking again -----------------------


@pytest.mark.parametrize("engine_name", ["pooled", "in_process"])
@pytest.mark.parametrize("n", [0, 1, CHUNK, 4 * CHUNK + 3])
def test_validated_elements_encrypt_to_the_same_bytes(
    engine_name: str, n: int, request: pytest.FixtureRequest, elements: NDArray[np.uint8]
) -> None:
    engine: BatchEngine = request.getfixturevalue(engine_name)
    key = X25519.generate_key()
    validated = engine.validate(X25519, elements[:n])
    assert len(validated) == n and validated.suite is X25519
    assert np.array_equal(validated.array, elements[:n])
    reported: list[int] = []
    encrypted = engine.encrypt(X25519, key, validated, progress=reported.append)
    assert np.array_equal(encrypted, engine.encrypt(X25519, key, elements[:n]))
    assert sum(reported) == n


def test_validated_elements_are_not_checked_again(
    in_process: BatchEngine, elements: NDArray[np.uint8], monkeypatch: pytest.MonkeyPatch
) -> None:
    validated = in_process.validate(X25519, elements)
    checks: list[int] = []
    original = type(X25519)._check_elements

    def counting(self: object, rows: bytes) -> None:
        checks.append(len(rows) // X25519.element_size)
        original(X25519, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(type(X25519), "_check_elements", counting)
    key = X25519.generate_key()
    in_process.encrypt(X25519, key, validated)
    assert checks == []
    in_process.encrypt(X25519, key, elements)
    assert sum(checks) == len(elements)


def test_validated_elements_hold_what_was_checked_and_cannot_change(
    pooled: BatchEngine, elements: NDArray[np.uint8]
) -> None:
    source = elements.copy()
    validated = pooled.validate(X25519, source)
    source[3] = 0  # the caller's array changes after validation: the validated rows do not
    assert np.array_equal(validated.array, elements)
    with pytest.raises(ValueError):
        validated.array[3] = 0
    with pytest.raises(ValueError):
        validated.array.flags.writeable = True
    key = X25519.generate_key()
    assert np.array_equal(
        pooled.encrypt(X25519, key, validated), pooled.encrypt(X25519, key, elements)
    )


def test_validated_elements_are_made_only_by_validation(elements: NDArray[np.uint8]) -> None:
    import copy
    import pickle

    from cleanroom.crypto import ValidatedElements

    with pytest.raises(TypeError, match=r"only by BatchEngine\.validate"):
        ValidatedElements(X25519, elements.tobytes(), _made_by=None)
    validated = BatchEngine(workers=1).validate(X25519, elements)
    with pytest.raises(TypeError, match="do not leave the process"):
        pickle.dumps(validated)
    with pytest.raises(TypeError):
        copy.copy(validated)
    assert repr(validated) == f"<ValidatedElements {len(elements)} of {X25519.suite_id}>"


def test_validated_elements_of_another_suite_are_refused(in_process: BatchEngine) -> None:
    p256 = get_suite("p256-sha256-sswu-ro")
    points = in_process.hash_to_curve_many(p256, [b"a", b"b"], p256.dst)
    validated = in_process.validate(p256, points)
    with pytest.raises(ValueError, match="validated for p256"):
        in_process.encrypt(X25519, X25519.generate_key(), validated)


# -- hash-and-encrypt jobs: batches added while earlier ones are computed ----------------------


def _messages(n: int, tag: bytes = b"") -> list[bytes]:
    return [b"cleanroom/v1/email/" + tag + i.to_bytes(32, "big") for i in range(n)]


@pytest.mark.parametrize("engine_name", ["pooled", "in_process"])
@pytest.mark.parametrize("batches", [[], [0], [3], [CHUNK], [CHUNK - 1, 2, 5 * CHUNK, 1, 0, 7]])
def test_job_gives_what_one_hash_and_encrypt_gives(
    engine_name: str, batches: list[int], request: pytest.FixtureRequest
) -> None:
    engine: BatchEngine = request.getfixturevalue(engine_name)
    key = X25519.generate_key()
    msgs = _messages(sum(batches))
    job = engine.hash_and_encrypt_job(X25519, key, X25519.dst)
    start = 0
    for size in batches:
        job.add(msgs[start : start + size])
        start += size
    assert len(job) == len(msgs)
    reported: list[int] = []
    elements = job.finish(progress=reported.append)
    assert elements.shape == (len(msgs), 32) and elements.flags.writeable
    assert np.array_equal(elements, in_process_all(key, msgs))
    assert sum(reported) == len(msgs)


def in_process_all(key: object, msgs: list[bytes]) -> NDArray[np.uint8]:
    engine = BatchEngine(workers=1, chunk_size=10**6)
    return engine.hash_and_encrypt(X25519, key, msgs, X25519.dst)  # type: ignore[arg-type]


def test_job_starts_the_workers_before_it_is_finished() -> None:
    import time

    with BatchEngine(workers=2, chunk_size=CHUNK) as engine:
        job = engine.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
        job.add(_messages(CHUNK - 1))
        assert engine.worker_pids == frozenset()  # less than a chunk: nothing started yet
        job.add(_messages(2))
        deadline = time.monotonic() + 30
        while not engine.worker_pids and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(engine.worker_pids) == 2
        assert len(job.finish()) == CHUNK + 1


def test_job_smaller_than_a_chunk_runs_in_process() -> None:
    engine = BatchEngine(workers=2, chunk_size=CHUNK)
    job = engine.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
    job.add(_messages(CHUNK))
    assert len(job.finish()) == CHUNK
    assert engine.worker_pids == frozenset()


def test_job_is_used_once(pooled: BatchEngine) -> None:
    job = pooled.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
    job.add(_messages(3 * CHUNK))
    job.finish()
    with pytest.raises(ValueError, match="finished or cancelled"):
        job.add(_messages(1))
    with pytest.raises(ValueError, match="finished or cancelled"):
        job.finish()
    cancelled = pooled.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
    cancelled.add(_messages(3 * CHUNK))
    cancelled.cancel()
    cancelled.cancel()
    with pytest.raises(ValueError, match="finished or cancelled"):
        cancelled.finish()


def test_job_stops_when_its_progress_raises(pooled: BatchEngine) -> None:
    job = pooled.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
    job.add(_messages(6 * CHUNK))

    def stop(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job.finish(progress=stop)
    # The pool is still usable.
    assert (
        len(
            pooled.hash_and_encrypt(X25519, X25519.generate_key(), _messages(3 * CHUNK), X25519.dst)
        )
        == 3 * CHUNK
    )


def test_job_raises_a_message_that_is_not_bytes_when_finished(pooled: BatchEngine) -> None:
    msgs: list[bytes] = _messages(3 * CHUNK)
    msgs[CHUNK + 2] = "not bytes"  # type: ignore[call-overload]
    job = pooled.hash_and_encrypt_job(X25519, X25519.generate_key(), X25519.dst)
    job.add(msgs[:CHUNK])
    job.add(msgs[CHUNK:])
    with pytest.raises(TypeError, match=f"message {CHUNK + 2} is str, not bytes"):
        job.finish()


def test_job_checks_the_key(pooled: BatchEngine) -> None:
    p256_key = get_suite("p256-sha256-sswu-ro").generate_key()
    from cleanroom.errors import InvalidKey

    with pytest.raises(InvalidKey):
        pooled.hash_and_encrypt_job(X25519, p256_key, X25519.dst)
