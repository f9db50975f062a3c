"""The batch engine: the one bulk API of the crypto, in chunks across all CPU cores.

A job (validate, encrypt, hash to curve, or both) over ``n`` rows is cut into chunks, and each
chunk is one call of the suite's per-chunk operation (``suite.encrypt_rows``, ...). Jobs of at
most one chunk, and every job of an engine with ``workers=1``, run in this process. Larger jobs
go to a process pool that is started (all its workers at once) on the first such job or by
:meth:`BatchEngine.start`, and reused by every later one, because starting Python workers costs
far more than a chunk of work. At most two chunks per worker are in flight and each result is
copied straight into a preallocated output array, so memory is bounded by the chunk size, not by
``n``.

Two jobs save work that the protocol would otherwise do twice or wait for:
:meth:`BatchEngine.validate` returns :class:`ValidatedElements`, which :meth:`BatchEngine.encrypt`
multiplies without checking them again (they are only made by validation and cannot change after
it), and :meth:`BatchEngine.hash_and_encrypt_job` takes messages batch by batch, so the workers
hash and encrypt a list while its next rows are still read and normalized.

The pool uses the ``forkserver`` start method (``spawn`` where that does not exist), never
``fork``: the process will also run gRPC threads, and forking a threaded process can deadlock
the child. The fork server imports :mod:`cleanroom.crypto` once (numpy, ``cryptography``,
gmpy2, the C modules) and each worker is forked from it already loaded, instead of importing
them again in every worker, a cost that a small match would pay while every core is busy. As
with any such pool, a script that runs large jobs needs the usual
``if __name__ == "__main__":`` guard, because workers import the main module.

The executor is pluggable: an engine made with ``executor=`` (a :class:`ChunkExecutor`, such as
:class:`cleanroom.crypto.cluster.DaskExecutor` for a Dask cluster) sends its chunks there instead,
through the same tasks, bound on chunks in flight and ordering of errors, so results are
byte-identical.

Secrets: a task carries the raw key bytes (``SecretKey`` refuses to be pickled so that only
this deliberate path exists) and turns them back into a key in the worker; workers log nothing,
and errors carry only a reason and a row.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, NamedTuple, Protocol, final, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from cleanroom._fork_server import available_cpus, too_many_workers, worker_context
from cleanroom.crypto.keys import SecretKey
from cleanroom.crypto.packed import PackedMessages
from cleanroom.crypto.suites import Suite
from cleanroom.errors import InvalidElement

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BatchEngine",
    "ChunkExecutor",
    "ChunkFailure",
    "ChunkResult",
    "HashAndEncryptJob",
    "LandedCallback",
    "ProgressCallback",
    "ValidatedElements",
    "default_engine",
]

# Enough X25519 work per chunk that inter-process transfer (256 KB each way) is a small fraction
# of it, memory in flight stays around a megabyte, and chunks are short enough that a worker slowed
# by another process does not leave the other idle for long at the end of a job.
DEFAULT_CHUNK_SIZE: Final = 8_192

# Chunks queued per worker: one running plus one ready, so a worker never waits on the parent.
_IN_FLIGHT_PER_WORKER: Final = 2

# Seconds worker_pids waits for started workers that have not reported their id yet.
_REPORT_TIMEOUT: Final = 10.0

ProgressCallback = Callable[[int], object]
"""Called with the number of rows just completed, once per chunk (e.g. a progress bar's
``update``)."""

LandedCallback = Callable[[int, NDArray[np.uint8]], object]
"""Called with where a chunk's rows start in a job's output and those rows, once they are final."""


class ChunkFailure(NamedTuple):
    """An element rejected inside a chunk; returned rather than raised so it pickles simply."""

    reason: str
    row: int | None


ChunkResult = bytes | ChunkFailure
"""What a task returns: the chunk's output rows, or the failure of its first bad element."""


@runtime_checkable
class ChunkExecutor(Protocol):
    """Somewhere other than the engine's own local processes to run the chunks of large jobs.

    ``submit`` receives one of this module's task functions (module-level, so they pickle by
    reference) and its arguments: the suite, for some jobs the raw key bytes, and one chunk as
    bytes. A task returns a :data:`ChunkResult`, a :class:`ChunkFailure` for bad data: it never
    raises for that.
    """

    @property
    def slots(self) -> int:
        """How many chunks run at once; the engine keeps two per slot in flight."""
        ...

    def submit(self, function: Callable[..., ChunkResult], /, *args: Any) -> Future[ChunkResult]:
        """Start one task; its future can be cancelled until its result is set."""
        ...

    def close(self) -> None:
        """Release what the executor holds (called by :meth:`BatchEngine.close`)."""
        ...


# -- tasks: module-level so the pool can pickle them by reference ---------------------------


def _encrypt_task(suite: Suite, key_bytes: bytes, rows: bytes) -> ChunkResult:
    try:
        return suite.encrypt_rows(suite.key_from_bytes(key_bytes), rows)
    except InvalidElement as exc:
        return ChunkFailure(exc.reason, exc.row)


def _encrypt_validated_task(suite: Suite, key_bytes: bytes, rows: bytes) -> ChunkResult:
    # Submitted only with the rows of a ValidatedElements, which only validate() makes: these
    # rows passed the suite's checks in a task like _validate_task and were not changed since.
    suite.key_from_bytes(key_bytes)  # the same key checks as every other task
    return suite._exchange_all(key_bytes, rows)


def _validate_task(suite: Suite, rows: bytes) -> ChunkResult:
    # The rows come back unchanged: copying 32 bytes a row is noise next to checking it.
    try:
        suite.validate_rows(rows)
    except InvalidElement as exc:
        return ChunkFailure(exc.reason, exc.row)
    return rows


def _hash_task(suite: Suite, msgs: Sequence[bytes], dst: bytes) -> ChunkResult:
    return suite.hash_rows(msgs, dst)


def _hash_and_encrypt_task(
    suite: Suite, key_bytes: bytes, msgs: Sequence[bytes], dst: bytes
) -> ChunkResult:
    return suite.hash_and_encrypt_rows(suite.key_from_bytes(key_bytes), msgs, dst)


def _init_worker(started: multiprocessing.queues.Queue[int]) -> None:
    # The engine counts its workers by these reports (the pool does not say which it has).
    started.put(os.getpid())
    # Ctrl-C reaches the whole process group; the parent handles it and shuts the pool down,
    # so workers ignore it instead of dying mid-task and breaking the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed outright (SIGKILL, OOM) never shuts the pool down, and an idle worker
    # would wait on its task queue forever, keeping the forkserver alive with it: leave with it.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns once the parent process has ended
    os._exit(1)


def _ready() -> None:
    """A task that does nothing: submitted only to start the pool's processes early."""


# The one object that lets ValidatedElements be constructed: private to this module, so nothing
# but BatchEngine.validate can make one.
_VALIDATION: Final = object()


@final
class ValidatedElements:
    """Elements that passed the suite's validation, made only by :meth:`BatchEngine.validate`.

    :meth:`BatchEngine.encrypt` multiplies these without checking them again. They cannot be
    changed after validation: the rows are kept as immutable ``bytes``, copied from what the
    checks saw, and :attr:`array` is a read-only view of them. They cannot be built by hand,
    pickled or copied into another process, where nothing would vouch for them.
    """

    __slots__ = ("_count", "_rows", "_suite")

    def __init__(self, suite: Suite, rows: bytes, *, _made_by: object) -> None:
        if _made_by is not _VALIDATION:
            raise TypeError("ValidatedElements are made only by BatchEngine.validate")
        self._suite = suite
        self._rows = rows
        self._count = len(rows) // suite.element_size

    @property
    def suite(self) -> Suite:
        """The suite whose checks the elements passed."""
        return self._suite

    @property
    def array(self) -> NDArray[np.uint8]:
        """The elements as a read-only array of shape ``(n, element_size)``."""
        view = np.frombuffer(self._rows, dtype=np.uint8)
        return view.reshape(self._count, self._suite.element_size)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<ValidatedElements {self._count} of {self._suite.suite_id}>"

    def __reduce__(self) -> Any:
        raise TypeError("ValidatedElements do not leave the process that validated them")

    def rows(self, start: int, stop: int) -> bytes:
        """The concatenated encodings of rows ``start`` to ``stop`` (a copy)."""
        size = self._suite.element_size
        return self._rows[start * size : stop * size]


class BatchEngine:
    """Runs crypto jobs in chunks, in this process or across a reused pool of processes.

    Args:
        workers: worker processes; ``None`` means one per available CPU core; ``1`` runs every
            job in this process without a pool.
        chunk_size: the most rows one task handles; jobs of at most this many rows run in this
            process. Larger jobs are split into equal chunks (a multiple of ``workers`` of them,
            so the cores finish together).
        executor: run large jobs there instead of in local processes (``workers`` is then its
            :attr:`~ChunkExecutor.slots`); :meth:`close` closes it.

    Raises:
        ValueError: ``workers`` or ``chunk_size`` is below 1, or both ``workers`` and
            ``executor`` are given.
    """

    def __init__(
        self,
        workers: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        executor: ChunkExecutor | None = None,
    ) -> None:
        if executor is not None:
            if workers is not None:
                raise ValueError("give workers or an executor, not both")
            workers = executor.slots
        if workers is None:
            workers = available_cpus()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if executor is None and (problem := too_many_workers(workers)) is not None:
            raise ValueError(f"workers: {problem}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._workers = workers
        self._chunk_size = chunk_size
        self._pool: ProcessPoolExecutor | None = None
        self._started: multiprocessing.queues.Queue[int] | None = None
        self._worker_pids: set[int] = set()
        self._remote = executor
        self._lock = threading.Lock()
        self._reports_lock = threading.Lock()

    @property
    def workers(self) -> int:
        """The number of worker processes (1: everything runs in this process)."""
        return self._workers

    @property
    def chunk_size(self) -> int:
        """The most rows one task handles."""
        return self._chunk_size

    @property
    def remote(self) -> bool:
        """Whether large jobs run on an executor given at construction (e.g. a Dask cluster)."""
        return self._remote is not None

    @property
    def start_method(self) -> str:
        """How worker processes start: ``"forkserver"``, or ``"spawn"`` where that is missing."""
        return worker_context().get_start_method()

    @property
    def worker_pids(self) -> frozenset[int]:
        """Process ids of the pool's workers; empty while no pool is running.

        A pool starts all its workers at once and each reports its id as it starts; this waits
        (seconds at most) for those that have not reported yet.
        """
        with self._lock:
            started, pids = self._started, self._worker_pids
        if started is None:
            return frozenset()
        with self._reports_lock:
            deadline = time.monotonic() + _REPORT_TIMEOUT
            while len(pids) < self._workers:
                try:
                    pids.add(started.get(timeout=max(0.0, deadline - time.monotonic())))
                except (queue.Empty, OSError, ValueError):  # late, or closed meanwhile
                    break
            return frozenset(pids)

    def __repr__(self) -> str:
        state = "running" if self._pool is not None else "idle"
        if self._remote is not None:
            state = f"on {self._remote!r}"
        return f"<BatchEngine workers={self._workers} chunk_size={self._chunk_size} {state}>"

    # -- jobs ------------------------------------------------------------------------------

    def encrypt(
        self,
        suite: Suite,
        key: SecretKey,
        elements: NDArray[np.uint8] | ValidatedElements,
        *,
        progress: ProgressCallback | None = None,
        landed: LandedCallback | None = None,
    ) -> NDArray[np.uint8]:
        """Encrypt every element with ``key``: ``E_k`` of each row, validating each first.

        Args:
            suite: the elements' suite.
            key: the suite's secret key.
            elements: array of shape ``(n, element_size)``, e.g. received from the other party,
                or what :meth:`validate` returned for such an array (then not checked again).
            progress: called with the number of rows just completed, once per chunk.
            landed: called as ``landed(start, rows)`` with each chunk's final rows of the output
                (a view) and where they start, as soon as the chunk is done, on the thread that
                runs the job, so a caller can use them before the whole job ends.

        Returns:
            A new array of the same shape.

        Raises:
            InvalidElement: a row is malformed, off the curve or of small order (the first bad
                row, numbered within the whole array), or the array is not of that shape.
            InvalidKey: the key belongs to another suite.
            ValueError: validated elements of another suite.
        """
        suite.check_key(key)
        key_bytes = key.to_bytes()
        if isinstance(elements, ValidatedElements):
            if elements.suite is not suite:
                raise ValueError(
                    f"elements validated for {elements.suite.suite_id}, not {suite.suite_id}"
                )
            validated = elements

            def valid_task(
                start: int, stop: int
            ) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
                return _encrypt_validated_task, (suite, key_bytes, validated.rows(start, stop))

            return self._run(len(validated), suite.element_size, valid_task, progress, landed)
        suite.check_array(elements)
        array = elements

        def task(start: int, stop: int) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
            return _encrypt_task, (suite, key_bytes, array[start:stop].tobytes())

        return self._run(len(array), suite.element_size, task, progress, landed)

    def validate(
        self,
        suite: Suite,
        elements: NDArray[np.uint8],
        *,
        progress: ProgressCallback | None = None,
    ) -> ValidatedElements:
        """Check that every row encodes a valid element of the suite's prime-order group.

        A receiver validating the other party's set does it here. For a suite whose check is
        cheaper than sending the rows to a worker and back (:attr:`Suite.checked_in_place`:
        X25519's, one C call a chunk that releases the GIL), the chunks are checked in the
        calling thread; otherwise on the workers, off the thread that serves the connection.

        Args:
            suite: the elements' suite.
            elements: array of shape ``(n, element_size)``.
            progress: called with the number of rows just completed, once per chunk.

        Returns:
            The rows as checked, which :meth:`encrypt` takes without checking them again.

        Raises:
            InvalidElement: the first bad row (numbered within the whole array) and why, or the
                array is not of that shape.
        """
        suite.check_array(elements)

        def task(start: int, stop: int) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
            return _validate_task, (suite, elements[start:stop].tobytes())

        # The tasks return the bytes they checked: those, not the caller's array (which it may
        # still change), are what the result holds.
        checked = self._run(
            len(elements), suite.element_size, task, progress, here=suite.checked_in_place
        )
        return ValidatedElements(suite, checked.tobytes(), _made_by=_VALIDATION)

    def hash_to_curve_many(
        self,
        suite: Suite,
        msgs: Sequence[bytes],
        dst: bytes,
        *,
        progress: ProgressCallback | None = None,
    ) -> NDArray[np.uint8]:
        """Hash every message to the curve (RFC 9380, the suite's random-oracle variant).

        Args:
            suite: the suite.
            msgs: the messages.
            dst: the domain separation tag, normally ``suite.dst``.
            progress: called with the number of messages just completed, once per chunk.

        Returns:
            Array of shape ``(len(msgs), element_size)``.
        """

        def task(start: int, stop: int) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
            return _hash_task, (suite, PackedMessages.pack(msgs[start:stop], start), dst)

        return self._run(len(msgs), suite.element_size, task, progress)

    def hash_and_encrypt(
        self,
        suite: Suite,
        key: SecretKey,
        msgs: Sequence[bytes],
        dst: bytes,
        *,
        progress: ProgressCallback | None = None,
    ) -> NDArray[np.uint8]:
        """Compute ``E_k(H(m))`` for every message in one pass.

        Args:
            suite: the suite.
            key: the suite's secret key.
            msgs: the messages.
            dst: the domain separation tag, normally ``suite.dst``.
            progress: called with the number of messages just completed, once per chunk.

        Returns:
            Array of shape ``(len(msgs), element_size)``.

        Raises:
            InvalidKey: the key belongs to another suite.
        """
        suite.check_key(key)
        key_bytes = key.to_bytes()

        def task(start: int, stop: int) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
            messages = PackedMessages.pack(msgs[start:stop], start)
            return _hash_and_encrypt_task, (suite, key_bytes, messages, dst)

        return self._run(len(msgs), suite.element_size, task, progress)

    def hash_and_encrypt_job(self, suite: Suite, key: SecretKey, dst: bytes) -> HashAndEncryptJob:
        """Start ``E_k(H(m))`` for messages that will be given batch by batch, as they are made.

        A caller that produces its messages slowly (reading and normalizing a list) adds each
        batch as it is ready, and the workers hash and encrypt it while the next is produced;
        :meth:`HashAndEncryptJob.finish` returns what :meth:`hash_and_encrypt` would have
        returned for all of them.

        Args:
            suite: the suite.
            key: the suite's secret key.
            dst: the domain separation tag, normally ``suite.dst``.

        Raises:
            InvalidKey: the key belongs to another suite.
        """
        return HashAndEncryptJob(self, suite, key, dst)

    def chunk_bounds(self, n: int) -> list[tuple[int, int]]:
        """The ``(start, stop)`` row ranges a job of ``n`` rows is cut into."""
        if n <= self._chunk_size:
            return [(0, n)] if n else []
        count = math.ceil(n / self._chunk_size)
        if self._workers > 1:
            # Equal chunks, a multiple of the worker count, so no core idles at the end.
            count = math.ceil(count / self._workers) * self._workers
        # Sizes differ by at most one row; none exceeds chunk_size since count >= n / chunk_size.
        return [(n * i // count, n * (i + 1) // count) for i in range(count)]

    def _run(
        self,
        n: int,
        element_size: int,
        task: Callable[[int, int], tuple[Callable[..., ChunkResult], tuple[Any, ...]]],
        progress: ProgressCallback | None,
        landed: LandedCallback | None = None,
        *,
        here: bool = False,
    ) -> NDArray[np.uint8]:
        """Run the task of every chunk; on the workers unless ``here`` (the calling thread)."""
        out = np.empty((n, element_size), dtype=np.uint8)
        bounds = self.chunk_bounds(n)
        if here or (self._workers == 1 and self._remote is None) or len(bounds) <= 1:
            for start, stop in bounds:
                function, args = task(start, stop)
                _store(out, start, stop, function(*args))
                if progress is not None:
                    progress(stop - start)
                if landed is not None:
                    landed(start, out[start:stop])
            return out
        self._run_in_pool(out, bounds, task, progress, landed)
        return out

    def _run_in_pool(
        self,
        out: NDArray[np.uint8],
        bounds: list[tuple[int, int]],
        task: Callable[[int, int], tuple[Callable[..., ChunkResult], tuple[Any, ...]]],
        progress: ProgressCallback | None,
        landed: LandedCallback | None,
    ) -> None:
        pool = self._executor()
        waiting = iter(bounds)
        pending: dict[Future[ChunkResult], tuple[int, int]] = {}
        # The earliest failing chunk seen so far: (its start, the failure). Chunks are submitted
        # in order, so once every chunk before it has finished, its first bad row is the array's.
        failure: tuple[int, ChunkFailure] | None = None

        def submit_next() -> None:
            bound = next(waiting, None)
            if bound is not None:
                function, args = task(*bound)
                pending[pool.submit(function, *args)] = bound

        try:
            for _ in range(self._workers * _IN_FLIGHT_PER_WORKER):
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                stored = []
                for future in done:
                    start, stop = pending.pop(future)
                    result = future.result()
                    if isinstance(result, ChunkFailure):
                        if failure is None or start < failure[0]:
                            failure = (start, result)
                    else:
                        _store(out, start, stop, result)
                        stored.append((start, stop))
                        if progress is not None:
                            progress(stop - start)
                if failure is None:
                    while len(pending) < self._workers * _IN_FLIGHT_PER_WORKER:
                        before = len(pending)
                        submit_next()
                        if len(pending) == before:
                            break
                    if landed is not None:  # once the workers have their next chunks
                        for start, stop in stored:
                            landed(start, out[start:stop])
                else:
                    # Later chunks cannot hold the first bad row: drop those not yet started.
                    for future, (start, _stop) in list(pending.items()):
                        if start > failure[0] and future.cancel():
                            del pending[future]
        except BrokenProcessPool:
            # A worker died (killed, out of memory): start a fresh pool on the next job.
            self._discard_pool()
            raise
        finally:
            for future in pending:
                future.cancel()
        if failure is not None:
            start, chunk_failure = failure
            row = None if chunk_failure.row is None else start + chunk_failure.row
            raise InvalidElement(chunk_failure.reason, row)

    # -- the pool --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker processes now, without waiting for them.

        A caller that knows a large job is coming (the Advertiser, once it has read its list)
        calls this so the workers' start-up (an interpreter and its imports, about half a second)
        overlaps that work instead of delaying the first job. Does nothing for an engine that
        runs everything in this process or on another executor.
        """
        if self._workers == 1 or self._remote is not None:
            return
        self._executor()

    def _executor(self) -> ProcessPoolExecutor | ChunkExecutor:
        if self._remote is not None:
            return self._remote
        with self._lock:
            if self._pool is None:
                # The fork server starts with the first pool of this process, unless the CLI
                # started it already.
                context = worker_context()
                self._started = context.Queue()
                self._worker_pids = set()
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(self._started,),
                )
                for _ in range(self._workers):
                    # Each submission to a pool without an idle worker starts one more: all of
                    # them start now, in parallel, rather than one by one as jobs need them.
                    self._pool.submit(_ready)
                atexit.register(self.close)
            return self._pool

    def _discard_pool(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._started = None
        if pool is not None:
            atexit.unregister(self.close)
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes, if any; a later large job starts a new pool.

        An engine on an executor closes that instead, and runs no large job afterwards.
        Safe to call more than once; also called at interpreter exit.
        """
        if self._remote is not None:
            self._remote.close()
        with self._lock:
            pool, self._pool = self._pool, None
            self._started = None
        if pool is not None:
            atexit.unregister(self.close)
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HashAndEncryptJob:
    """``E_k(H(m))`` of messages given batch by batch (:meth:`BatchEngine.hash_and_encrypt_job`).

    :meth:`add` hands a batch to the workers and returns at once; :meth:`finish` waits and
    returns the elements in the order the messages were added, the bytes
    :meth:`BatchEngine.hash_and_encrypt` gives for all of them. Messages wait until there are
    more than a chunk's worth, so a job of at most one chunk runs as one ordinary job when it
    finishes (in this process, without starting a pool). Full chunks go to the engine's pool
    (or executor) from a thread of this process, at most two per worker in flight, as for every
    other job. An engine with ``workers=1`` does the whole job in :meth:`finish`.
    """

    def __init__(self, engine: BatchEngine, suite: Suite, key: SecretKey, dst: bytes) -> None:
        suite.check_key(key)
        self._engine = engine
        self._suite = suite
        self._key = key
        self._dst = dst
        self._buffer: list[bytes] = []
        self._added = 0
        self._feeder: _Feeder | None = None
        self._open = True

    def __len__(self) -> int:
        """Messages added so far."""
        return self._added

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<HashAndEncryptJob {self._suite.suite_id} {self._added} messages {state}>"

    def add(self, msgs: Sequence[bytes]) -> None:
        """Add messages; their work starts (once more than a chunk is waiting) without waiting.

        Raises:
            ValueError: the job was finished or cancelled.
        """
        if not self._open:
            raise ValueError("messages added to a finished or cancelled job")
        self._buffer.extend(msgs)
        self._added += len(msgs)
        engine = self._engine
        if len(self._buffer) > engine.chunk_size and (engine.workers > 1 or engine.remote):
            self._send_buffer()

    def finish(self, *, progress: ProgressCallback | None = None) -> NDArray[np.uint8]:
        """Wait for every message's element.

        Args:
            progress: called with the number of messages just completed: first with those done
                before, then once per chunk. An exception it raises cancels the job.

        Returns:
            Array of shape ``(len(self), element_size)``, in the order of :meth:`add`.

        Raises:
            ValueError: the job was finished or cancelled already.
        """
        if not self._open:
            raise ValueError("the job was finished or cancelled already")
        self._open = False
        if self._feeder is None:
            messages, self._buffer = self._buffer, []
            return self._engine.hash_and_encrypt(
                self._suite, self._key, messages, self._dst, progress=progress
            )
        if self._buffer:
            self._send_buffer()
        return self._feeder.finish(progress)

    def cancel(self) -> None:
        """Stop: no further chunk starts (running ones end in the workers); safe to repeat."""
        self._open = False
        self._buffer = []
        if self._feeder is not None:
            self._feeder.cancel()

    def _send_buffer(self) -> None:
        if self._feeder is None:
            suite, key_bytes, dst = self._suite, self._key.to_bytes(), self._dst

            def task(chunk: _Chunk) -> tuple[Callable[..., ChunkResult], tuple[Any, ...]]:
                first, msgs = chunk
                messages = PackedMessages.pack(msgs, first)
                return _hash_and_encrypt_task, (suite, key_bytes, messages, dst)

            self._feeder = _Feeder(self._engine, task, suite.element_size)
        messages, self._buffer = self._buffer, []
        sent = self._added - len(messages)  # the number of messages[0] among those added
        for start, stop in self._engine.chunk_bounds(len(messages)):
            self._feeder.put((sent + start, messages[start:stop]))


_Chunk = tuple[int, list[bytes]]  # a chunk of a job's messages: the number of its first, them


class _Feeder:
    """Gives chunks, as they are put, to an engine's pool from a thread; collects the results.

    At most two chunks per worker are in flight. The thread waits on the chunks in flight and on
    a "wake" future that :meth:`put` completes, so a chunk put while others run starts as soon as
    a slot is free.
    """

    def __init__(
        self,
        engine: BatchEngine,
        task: Callable[[_Chunk], tuple[Callable[..., ChunkResult], tuple[Any, ...]]],
        element_size: int,
    ) -> None:
        self._engine = engine
        self._task = task
        self._size = element_size
        self._queue: queue.SimpleQueue[_Chunk | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake: Future[None] = Future()
        self._results: list[bytes | None] = []
        self._done_rows = 0
        self._failure: BaseException | None = None
        self._cancelled = False
        self._running = True
        self._thread = threading.Thread(target=self._run, name="hash-and-encrypt", daemon=True)
        self._thread.start()

    def put(self, chunk: _Chunk | None) -> None:
        """Queue a chunk (``None``: no more will come)."""
        self._queue.put(chunk)
        self._poke()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self.put(None)

    def _poke(self) -> None:
        with self._lock:
            wake = self._wake
            if not wake.done():
                wake.set_result(None)

    def _run(self) -> None:
        try:
            self._feed(self._engine._executor())
        except BaseException as exc:
            with self._lock:
                self._failure = exc
            if isinstance(exc, BrokenProcessPool):
                self._engine._discard_pool()  # a worker died: a fresh pool on the next job
        finally:
            with self._lock:
                self._running = False
                self._changed.notify_all()

    def _feed(self, pool: ProcessPoolExecutor | ChunkExecutor) -> None:
        limit = self._engine.workers * _IN_FLIGHT_PER_WORKER
        pending: dict[Future[ChunkResult], int] = {}
        closed = False
        try:
            while not self._cancelled:
                while not closed and len(pending) < limit:
                    try:
                        chunk = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if chunk is None:
                        closed = True
                        break
                    with self._lock:
                        index = len(self._results)
                        self._results.append(None)
                    function, args = self._task(chunk)
                    pending[pool.submit(function, *args)] = index
                if closed and not pending:
                    return
                with self._lock:
                    if self._wake.done():
                        self._wake = Future()
                    wake = self._wake
                if not closed and len(pending) < limit and not self._queue.empty():
                    continue  # put before the new wake future existed
                waiting: list[Future[Any]] = [*pending, wake]
                done, _ = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    if future is not wake:
                        self._collect(pending.pop(future), future.result())
        finally:
            for future in pending:
                future.cancel()

    def _collect(self, index: int, result: ChunkResult) -> None:
        if isinstance(result, ChunkFailure):  # not for hashing, whose input is any bytes
            raise InvalidElement(result.reason, result.row)
        with self._lock:
            self._results[index] = result
            self._done_rows += len(result) // self._size
            self._changed.notify_all()

    def finish(self, progress: ProgressCallback | None) -> NDArray[np.uint8]:
        """Wait for every chunk put; the results in order."""
        self.put(None)
        reported = 0
        try:
            while True:
                with self._lock:
                    while self._running and self._done_rows == reported:
                        self._changed.wait()
                    done, running, failure = self._done_rows, self._running, self._failure
                if failure is not None:
                    raise failure
                if progress is not None and done > reported:
                    progress(done - reported)
                reported = done
                if not running:
                    break
        except BaseException:
            self.cancel()
            raise
        with self._lock:
            results, cancelled = list(self._results), self._cancelled
        if cancelled:
            raise CancelledError("the job was cancelled")
        out = np.empty((sum(len(r or b"") for r in results) // self._size, self._size), np.uint8)
        row = 0
        for result in results:
            if result is None:  # cannot happen once the thread ended without a failure
                raise RuntimeError("a chunk of the job has no result")
            rows = len(result) // self._size
            _store(out, row, row + rows, result)
            row += rows
        return out


def _store(out: NDArray[np.uint8], start: int, stop: int, result: ChunkResult) -> None:
    if isinstance(result, ChunkFailure):
        row = None if result.row is None else start + result.row
        raise InvalidElement(result.reason, row)
    out[start:stop] = np.frombuffer(result, dtype=np.uint8).reshape(stop - start, -1)


_default_engine: BatchEngine | None = None
_default_engine_lock = threading.Lock()


def default_engine() -> BatchEngine:
    """Return the process-wide shared engine (one worker per core, pool started lazily once).

    Returns:
        The same :class:`BatchEngine` on every call.
    """
    global _default_engine
    with _default_engine_lock:
        if _default_engine is None:
            _default_engine = BatchEngine()
        return _default_engine
