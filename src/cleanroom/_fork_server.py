"""The fork server the batch engine's worker processes are forked from, startable early.

The engine's pool uses the ``forkserver`` start method (``spawn`` where that does not exist): a
server process imports :data:`PRELOAD` once and forks each worker from itself, already loaded.
This module is apart from :mod:`cleanroom.crypto` because importing that is what takes the
time: the CLI calls :func:`start_fork_server` before it imports anything heavy, so the server
loads the crypto modules on another core while the CLI imports the rest, instead of after.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing import forkserver
from typing import Final

__all__ = [
    "PRELOAD",
    "WORKERS_PER_CPU",
    "available_cpus",
    "start_fork_server",
    "too_many_workers",
    "worker_context",
]

PRELOAD: Final = ["cleanroom.crypto"]
"""What every worker needs; the fork server imports it once, before it forks any worker."""

WORKERS_PER_CPU: Final = 4
"""The most worker processes an engine starts for each CPU core this process may use. The work
is CPU-bound, so more gain nothing, and a mistyped count must not start thousands of processes."""


def available_cpus() -> int:
    """The CPU cores this process may run on: a default engine's worker count (one runs every
    job in this process, without a pool)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def too_many_workers(workers: int) -> str | None:
    """Why ``workers`` local worker processes are too many here, or ``None`` if they are not."""
    cpus = available_cpus()
    if workers <= WORKERS_PER_CPU * cpus:
        return None
    return (
        f"{workers} is more than {WORKERS_PER_CPU} worker processes for each of the {cpus} CPU "
        f"cores this process may use: at most {WORKERS_PER_CPU * cpus}"
    )


def worker_context() -> multiprocessing.context.BaseContext:
    """The context worker processes start in: ``forkserver``, set to load :data:`PRELOAD`, or
    ``spawn`` where there is no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Takes effect when the fork server starts; the fork server runs no threads of its own, so
    # forking it is safe.
    context.set_forkserver_preload(PRELOAD)
    return context


def start_fork_server() -> None:
    """Start the fork server now, if this platform has one, without waiting for its imports.

    A pool started later in this process forks its workers from this server. The server ends
    with this process.
    """
    if worker_context().get_start_method() == "forkserver":
        forkserver.ensure_running()
