"""The batch engine on a Dask cluster: ``--dask-scheduler tcp://HOST:PORT`` or ``tls://HOST:PORT``.

:class:`DaskExecutor` is a :class:`~cleanroom.crypto.batch.ChunkExecutor`: the engine keeps
cutting jobs into chunks, bounding the chunks in flight and copying each result into its output
array as it completes; only the place a chunk's task runs changes. The tasks are the engine's own
(same code, same bytes in and out), so results are byte-identical to local processes. Importing
this module imports ``distributed``, which costs about a second: only ``--dask-scheduler`` (or a
library user who asks for a cluster) imports it.

Where secrets go. The cluster sees what the local pool sees: the suite, one chunk (messages or
encoded elements) and, for encryption, the raw key bytes, inside the task that needs them and
nowhere else. So:

- Nothing is ``scatter``-ed: the key is not a Dask data object that a worker stores, replicates or
  spills. It travels (over the cluster's TLS) inside each task's arguments, which the scheduler and
  one worker hold in memory only while the task is pending or running; its future is released as
  soon as the result is copied out, and then both forget the task.
- The arguments travel sealed in :class:`_SealedArguments`, whose ``repr`` shows nothing: the one
  place Dask prints a task's arguments (a worker's "Compute Failed" log line, when a task raises)
  shows neither the key nor the identifiers' messages. Tasks return a failure value for bad data
  instead of raising, so even that line is written only for a bug.
- Task keys are random (``pure=False``), never a hash of the arguments (which would put a
  function of the key into the scheduler's logs and dashboard).
- Workers spill *results* to their local disk under memory pressure, and may: a result holds
  encrypted elements (``E_b(H(y))`` of V, which the platform streams to every advertiser anyway;
  ``E_a(...)`` on the advertiser's side, what it sends to the platform), pseudorandom to whoever
  lacks the key. A key must never reach a disk there: retiring an epoch destroys its key file so
  that copies of the old V become useless, and a copy in a worker's spill directory would
  survive that. It cannot: a worker spills only task results (``worker.data``), never a task's
  specification, and the key is only ever in the latter.

The scheduler and the workers must still be trusted hosts: they see the key while they run the
job. Use ``tls://`` with Dask's TLS configuration (``distributed.comm.tls.*``, see the README) on
any network; the CLI allows ``tcp://`` only to a loopback address.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from cleanroom.errors import ClusterUnreachable

if TYPE_CHECKING:
    from cleanroom.crypto.batch import ChunkResult

__all__ = ["CLUSTER_CHUNK_SIZE", "CONNECT_TIMEOUT", "DaskExecutor"]

#: Seconds to wait for the scheduler (and, if it has none yet, for a first worker): long enough
#: for a TLS handshake across a data centre, short enough that a wrong address fails at once.
CONNECT_TIMEOUT: Final = 5.0

#: Rows per task on a cluster: twice the local default, so that the scheduler's bookkeeping per
#: task and the network round trip (~1 MB each way) stay small against the task's X25519 work,
#: while a job of 10^6 rows still makes dozens of tasks to balance across workers.
CLUSTER_CHUNK_SIZE: Final = 16_384


class _SealedArguments:
    """A task's arguments (suite, key bytes, chunk), shown by ``repr`` as nothing at all."""

    __slots__ = ("arguments",)

    def __init__(self, arguments: tuple[Any, ...]) -> None:
        self.arguments = arguments

    def __repr__(self) -> str:
        return "<sealed task arguments>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[_SealedArguments], tuple[tuple[Any, ...]]]:
        return (_SealedArguments, (self.arguments,))


def _run_sealed(function: Callable[..., ChunkResult], sealed: _SealedArguments) -> ChunkResult:
    """(On a worker.) Run one of the engine's tasks on its sealed arguments."""
    return function(*sealed.arguments)


class DaskExecutor:
    """Runs the batch engine's chunks on a Dask cluster.

    Give it to :class:`~cleanroom.crypto.BatchEngine` (``BatchEngine(executor=...,
    chunk_size=CLUSTER_CHUNK_SIZE)``); the engine closes it. Workers need this version of
    cleanroom installed, and so does the scheduler (it unpickles the tasks it forwards): tasks
    are its functions, sent by reference.

    Args:
        address: the scheduler, ``tls://HOST:PORT`` (or ``tcp://``); with ``tls://`` the client's
            certificate, key and CA come from Dask's configuration (``distributed.comm.tls``).
        connect_timeout: seconds to wait for the scheduler and for at least one worker.
        security: a ``distributed.Security`` (TLS files); ``None``: from Dask's configuration.

    Raises:
        ClusterUnreachable: the scheduler does not answer in time, refuses the connection, or
            has no worker; or ``tls://`` is asked without Dask's TLS configuration.
    """

    def __init__(
        self, address: str, *, connect_timeout: float = CONNECT_TIMEOUT, security: Any = None
    ) -> None:
        # Imported here, not at the top, so that only a cluster run pays for it. Handled as Any:
        # distributed's annotations are partial (untyped calls everywhere under mypy --strict).
        distributed: Any = importlib.import_module("distributed")

        self._address = address
        if security is None:
            security = distributed.Security()  # from Dask's configuration: distributed.comm.tls.*
        if address.startswith("tls://") and not (security.tls_ca_file and security.tls_client_cert):
            raise ClusterUnreachable(
                f"cannot connect to the Dask scheduler at {address}: tls:// needs Dask's TLS "
                "configuration (distributed.comm.tls.ca-file, .client.cert and .client.key, e.g. "
                "DASK_DISTRIBUTED__COMM__TLS__CA_FILE=...); see the README"
            )
        try:
            client = distributed.Client(
                address,
                timeout=connect_timeout,
                security=security,
                set_as_default=False,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            # Only the address and the kind of failure: Dask's own text can be long and vague.
            raise ClusterUnreachable(
                f"cannot connect to the Dask scheduler at {address} within {connect_timeout:g} s "
                f"({type(exc).__name__}): check the address, that the scheduler runs and, for "
                "tls://, Dask's TLS configuration"
            ) from exc
        try:
            if not client.nthreads():
                client.wait_for_workers(1, timeout=connect_timeout)
            self._slots = int(sum(client.nthreads().values()))
        except (OSError, TimeoutError) as exc:
            client.close()
            raise ClusterUnreachable(
                f"the Dask scheduler at {address} has no workers (waited {connect_timeout:g} s): "
                "start some with 'dask worker ADDRESS'"
            ) from exc
        self._client: Any = client
        self._killed_worker: type[Exception] = distributed.KilledWorker

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self._address

    @property
    def slots(self) -> int:
        """The cluster's worker threads when it was connected (chunks that run at once)."""
        return self._slots

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (to inspect the cluster; tasks go through :meth:`submit`)."""
        return self._client

    def __repr__(self) -> str:
        return f"<DaskExecutor {self._address} slots={self._slots}>"

    def submit(
        self, function: Callable[..., ChunkResult], /, *args: Any
    ) -> concurrent.futures.Future[ChunkResult]:
        """Start one of the engine's tasks on the cluster.

        Returns:
            A future that receives the task's result once it is fetched from the cluster (the
            cluster's copy is released at once). Cancelling it cancels the task. A lost
            scheduler, or a task whose workers kept dying, sets :class:`ClusterUnreachable`.
        """
        chunk: concurrent.futures.Future[ChunkResult] = concurrent.futures.Future()
        # The key (for encryption jobs) is inside the sealed arguments, never scattered: a Dask
        # data object may be replicated and spilled to a worker's disk; a task's arguments are not.
        task = self._client.submit(
            _run_sealed,
            function,
            _SealedArguments(args),
            # Random, so neither a hash of the arguments (the key) nor a collision with a task
            # of another job; the prefix names the job in the dashboard.
            key=f"cleanroom{function.__name__.removesuffix('_task')}-{uuid.uuid4().hex}",
            pure=False,
        )

        def cancel_task(done: concurrent.futures.Future[ChunkResult]) -> None:
            if done.cancelled():
                task.cancel()

        chunk.add_done_callback(cancel_task)
        task.add_done_callback(lambda finished: self._deliver(finished, chunk))
        return chunk

    def _deliver(self, task: Any, chunk: concurrent.futures.Future[ChunkResult]) -> None:
        """(Dask's callback thread.) Copy the task's outcome into ``chunk``; release the task."""
        try:
            if chunk.cancelled():
                return
            try:
                # If the worker holding the result died meanwhile, Dask recomputes it here.
                result = task.result()
            except BaseException as exc:
                chunk.set_exception(self._failure(task, exc))
            else:
                chunk.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # the engine cancelled the chunk meanwhile
        finally:
            task.release()

    def _failure(self, task: Any, error: BaseException) -> BaseException:
        """What the engine raises for a task that did not deliver its result."""
        if isinstance(error, self._killed_worker):
            failure = ClusterUnreachable(
                f"workers of the Dask cluster at {self._address} kept dying while running a "
                "chunk (distributed.scheduler.allowed-failures); check their memory and logs"
            )
        elif task.status == "error":
            return error  # the task itself raised (a bug): the caller sees it, as with processes
        else:
            # Cancelled (not by the engine: checked before) or a broken connection while
            # fetching the result: the scheduler is gone.
            failure = ClusterUnreachable(
                f"lost the Dask scheduler at {self._address} during the job "
                f"({type(error).__name__})"
            )
        failure.__cause__ = error
        return failure

    def close(self) -> None:
        """Disconnect from the cluster (the cluster itself keeps running). Idempotent."""
        self._client.close()
