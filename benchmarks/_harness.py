"""Shared machinery of the benchmarks that run the real CLI as subprocesses.

* :func:`run_measured` runs one command to its end: wall clock from spawn to exit, CPU time of
  its whole process tree (pool workers included) and peak RSS, from ``os.wait4``. For the pool
  workers' CPU to be counted, call :func:`become_subreaper` once first: a batch engine's workers
  are children of a forkserver its parent never reaps, so they are adopted and reaped here.
* :class:`Server` runs ``cleanroom platform serve`` on 127.0.0.1, port 0, and samples /proc for
  the CPU time and peak RSS (``VmHWM``) of the server and of every process of its tree while it
  runs.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The advertiser of the benchmarks' platforms, and their policy: exact counts (epsilon 0), no
#: size floors, and every mode, so that a benchmark measures the work and never a refusal.
ADVERTISER = "bench"
POLICY = f"""
epsilon_per_release = 0.0
min_upload_records = 1
min_reported_count = 0
max_sessions_per_day = 1000000

[advertisers.{ADVERTISER}]
modes_allowed = ["count", "audience", "ids"]
"""

_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
X25519_ENV = "CLEANROOM_X25519"


@dataclass(frozen=True)
class Measured:
    """One subprocess run: wall from spawn to exit, CPU of its whole process tree, peak RSS.

    Attributes:
        wall_s: seconds from spawn to exit.
        cpu_s: user + system CPU seconds of the process and of every descendant reaped by it
            or (as an adopted orphan) by this process.
        max_rss_mb: peak RSS of the process itself (VmHWM, sampled 5 times a second).
        pool_max_rss_mb: the largest peak RSS among its descendants (a batch engine's
            forkserver and workers); 0 if there were none.
        pool_cpu_s: user + system CPU seconds of those descendants, as last sampled (5 times a
            second): what one spends in its last fifth of a second is missed, so it is a floor.
            ``cpu_s - pool_cpu_s`` is then (at most) what the process itself spent.
    """

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    pool_max_rss_mb: float = 0.0
    pool_cpu_s: float = 0.0


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so their CPU time reaches this process's rusage.

    A batch engine's pool workers are children of a forkserver that its parent never reaps;
    without this, the CPU time of a CLI's workers would be lost when it exits.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children(pid: int) -> list[int]:
    """Live children of ``pid``, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid``, at any depth."""
    found, queue = [], [pid]
    while queue:
        found_now = children(queue.pop())
        found += found_now
        queue += found_now
    return found


def reap_orphans(keep: set[int], timeout: float = 30.0) -> float:
    """Wait for every child of this process but ``keep`` (adopted orphans included) to end.

    Returns:
        The largest peak RSS (MB) among the processes reaped.
    """
    deadline = time.monotonic() + timeout
    largest_kb = 0
    while True:
        while True:
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return largest_kb / 1024
            if pid == 0:
                break
            largest_kb = max(largest_kb, usage.ru_maxrss)
        if not set(children(os.getpid())) - keep:
            return largest_kb / 1024
        if time.monotonic() > deadline:
            raise SystemExit("orphaned worker processes did not exit")
        time.sleep(0.02)


def children_cpu_s() -> float:
    """CPU seconds of every reaped child of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


Conversation = Callable[["subprocess.Popen[str]"], str]


def run_measured(
    argv: list[str],
    keep: set[int],
    env: dict[str, str] | None = None,
    converse: Conversation | None = None,
) -> tuple[Measured, str]:
    """Run a command to its end (and its orphaned workers); wall, tree CPU, peak RSS, stdout.

    Args:
        argv: the command.
        keep: children of this process that are not part of the run (a server).
        env: its environment (``None``: this process's).
        converse: given, the command's stdin and stdout are pipes, and this talks with it
            while it runs and returns what of its stdout is its output; the CPU of processes it
            runs meanwhile is counted in the command's.

    Raises:
        SystemExit: the command failed (its stderr is in the message).
    """
    cpu_before = children_cpu_s()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        # Talked with, its stdin and stdout are pipes; otherwise its output goes to a file.
        pipe = subprocess.PIPE if converse is not None else None
        process: subprocess.Popen[Any] = subprocess.Popen(
            argv, stdin=pipe, stdout=pipe or out, stderr=err, env=env, text=pipe is not None
        )
        peaks = _PeakSampler(process.pid)
        said = None
        if converse is not None:
            try:
                said = converse(process)
            except BaseException:
                process.kill()  # it would wait for an answer for ever
                raise
            finally:
                for pipe_end in (process.stdin, process.stdout):
                    if pipe_end is not None:
                        pipe_end.close()
        _, status, _usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        peaks.stop()
        reap_orphans(keep)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode() if said is None else said, err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}):\n{stderr}")
    # Not ru_maxrss: it survives exec, so a child forked from this (large) benchmark process
    # would report this process's size. VmHWM starts afresh at exec.
    measured = Measured(
        wall,
        children_cpu_s() - cpu_before,
        peaks.main_kb / 1024,
        peaks.descendants_kb / 1024,
        sum(peaks.descendants_cpu_s.values()),
    )
    return measured, stdout


class _PeakSampler:
    """Reads VmHWM (peak RSS since exec) of a process and of its descendants, and the
    descendants' CPU time, 5 times a second.

    The high-water mark and the CPU time only grow, so the last reading before a process exits
    is its figure minus at most what its last 0.2 s added.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.main_kb = 0
        self.descendants_kb = 0
        self.descendants_cpu_s: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.main_kb = max(self.main_kb, status_kb(self._pid, "VmHWM"))
            for child in descendants(self._pid):
                self.descendants_kb = max(self.descendants_kb, status_kb(child, "VmHWM"))
                cpu = process_cpu_s(child)
                self.descendants_cpu_s[child] = max(self.descendants_cpu_s.get(child, 0.0), cpu)
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def backend_env(backend: str) -> dict[str, str]:
    """This process's environment with the X25519 backend forced (pool workers inherit it)."""
    return {**os.environ, X25519_ENV: backend}


def cleanroom_executable() -> str:
    """The ``cleanroom`` console script of the interpreter running this benchmark."""
    return str(Path(sys.executable).with_name("cleanroom"))


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (``VmHWM``, ``VmRSS``); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_cpu_s(pid: int) -> float:
    """utime + stime of one live process (not of its children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def own_tree_cpu_s() -> float:
    """CPU time of this process and its live descendants (a pool's workers)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + sum(process_cpu_s(p) for p in descendants(os.getpid()))


@dataclass
class _SeenProcess:
    """What the sampler last saw of one process of a tree."""

    role: str
    peak_rss_kb: int
    cpu_s: float


class TreeSampler:
    """Samples /proc for a process and its descendants: peak RSS (VmHWM) and CPU per process.

    A background thread reads the tree every ``interval`` seconds, so processes that come and
    go between two explicit :meth:`sample` calls (pool workers) are still seen; CPU time a
    process spends after its last sample is lost (at most ``interval`` per process).
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self._seen: dict[int, _SeenProcess] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self) -> None:
        """Read the tree now."""
        tree = [self.pid, *descendants(self.pid)]
        with self._lock:
            for pid in tree:
                hwm, cpu = status_kb(pid, "VmHWM"), process_cpu_s(pid)
                seen = self._seen.get(pid)
                if seen is None:
                    role = "main" if pid == self.pid else "pool"
                    self._seen[pid] = _SeenProcess(role, hwm, cpu)
                else:
                    seen.peak_rss_kb = max(seen.peak_rss_kb, hwm)
                    seen.cpu_s = max(seen.cpu_s, cpu)

    def cpu_s(self, *, main_only: bool = False) -> float:
        """CPU seconds of every process seen so far (of the main process only, if asked)."""
        self.sample()
        with self._lock:
            return sum(
                seen.cpu_s for pid, seen in self._seen.items() if not main_only or pid == self.pid
            )

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak RSS of the main process, the largest of the others, and how many were seen."""
        self.sample()
        with self._lock:
            others = [seen.peak_rss_kb for pid, seen in self._seen.items() if pid != self.pid]
            main = self._seen[self.pid].peak_rss_kb if self.pid in self._seen else 0
        return {
            "server_mb": main / 1024,
            "largest_worker_mb": max(others, default=0) / 1024,
            "processes": 1 + len(others),
        }

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._thread.join()


class Server:
    """``cleanroom platform serve`` on 127.0.0.1 (port 0) as a subprocess, stopped with SIGINT.

    Args:
        db: the platform database.
        policy: the policy file.
        log: where the server's stderr goes.
        flags: more options of ``serve`` (e.g. higher admission limits for a benchmark).
        env: the server's environment (``None``: this process's).
    """

    def __init__(
        self,
        db: Path,
        policy: Path,
        log: Path,
        flags: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                *(cleanroom_executable(), "platform", "serve", "--db", str(db)),
                *("--listen", "127.0.0.1:0", "--policy", str(policy), "--grace", "0"),
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"the server did not start: {line!r} (see {log})")
        self.address = line.removeprefix("listening on ")
        self.sampler = TreeSampler(self.process.pid)

    def main_cpu_s(self) -> float:
        """CPU time of the server's own process (gRPC threads, orchestration; not the pool)."""
        return self.sampler.cpu_s(main_only=True)

    def tree_cpu_s(self) -> float:
        """CPU time of the server and every process of its tree seen so far (its pool)."""
        return self.sampler.cpu_s()

    def peak_rss_mb(self) -> dict[str, float]:
        """VmHWM of the server process and the largest of its descendants (the pool workers)."""
        return self.sampler.peak_rss_mb()

    def stop(self) -> Measured:
        """Stop the server (SIGINT); its CPU time and the peak RSS ``wait4`` reports."""
        self.sampler.stop()
        self.process.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(self.process.pid, 0)
        self._log.close()
        return Measured(0.0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
