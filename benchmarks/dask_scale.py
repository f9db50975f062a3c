"""Dask scale-out benchmark: the epoch precompute on local processes and on a Dask LocalCluster.

Target: on the same machine, the precompute of 10^6 identifiers on a
``distributed.LocalCluster`` of 2 worker processes (1 thread each) takes at most 1.25x the time
it takes on the local process pool of 2 workers, measured in the same run: the cluster executor
(task submission, the scheduler, moving chunks and results over TCP) adds at most 25%.

Setup (not timed): N users with one consented email each (all eligible) are imported with the
real CLI into a fresh database; a LocalCluster (2 workers x 1 thread, processes) is started in
this process, which therefore also hosts its scheduler, as a one-machine deployment would.

Per repeat, local first and cluster second, then the other way round on the next repeat:

1. *engine*: ``suite.hash_and_encrypt`` of the same N messages (``cleanroom/v1/email/`` +
   SHA-256) in this process, on ``BatchEngine(workers=2)`` (local processes, default chunk) and on
   ``BatchEngine(executor=DaskExecutor(...), chunk_size=CLUSTER_CHUNK_SIZE)`` (what
   ``--dask-scheduler`` builds). Both warm: the pool started and the client connected by a small
   job first, so the ratio is the executor's own overhead;
2. *rotate*: the real ``cleanroom platform epoch rotate --db DB --workers 2`` and
   ``cleanroom platform epoch rotate --db DB --dask-scheduler ADDRESS`` as subprocesses, wall
   clock from spawn to exit (the local one starts its pool, the cluster one imports
   ``distributed`` and connects: both as a user sees them), CPU and peak RSS of the CLI process
   itself (``os.wait4``; the local pool's workers are the forkserver's children and are not in
   it), and for the cluster the workers' and this process's (the scheduler's) CPU in the run.

Ratio = cluster wall / local wall per repeat; best-of = fastest cluster run / fastest local run
(the least disturbed by other jobs on a shared machine).

Usage::

    python benchmarks/dask_scale.py [--identifiers 1000000] [--repeat 2] [--workdir DIR]
        [--write-results]

``--write-results`` rewrites the "dask" section of benchmarks/RESULTS.md and
benchmarks/results/dask_scale.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _report

WORKERS = 2
TARGET_RATIO = 1.25


@dataclass
class Measured:
    """One subprocess: wall clock, CPU of it and its reaped descendants, peak RSS."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float


def cleanroom_executable() -> str:
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def run_measured(argv: list[str]) -> Measured:
    """Run a command to completion; fail loudly if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    # Peak RSS from VmHWM, sampled: ru_maxrss survives exec, so a child forked from this (large)
    # process would report this process's size.
    peak_kb = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_kb[0] = max(peak_kb[0], _vm_hwm_kb(process.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{stderr}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak_kb[0] / 1024)


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _email(i: int) -> str:
    return f"user{i}@example{i % 997}.com"


def setup_database(workdir: Path, identifiers: int) -> Path:
    """A platform database with ``identifiers`` eligible emails (one user each)."""
    csv_path = workdir / "users.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("user_id,type,value,source,ads_matching_consent\n")
        for i in range(identifiers):
            out.write(f"u{i},email,{_email(i)},signup,true\n")
    db = workdir / "platform.db"
    run_measured([cleanroom_executable(), "platform", "init", "--db", str(db)])
    run_measured([cleanroom_executable(), "platform", "import", "--db", str(db), str(csv_path)])
    csv_path.unlink()
    return db


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _workers_cpu(client: Any) -> float:
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    return float(sum(client.run(cpu).values()))


def run(identifiers: int, repeat: int, workdir: Path) -> dict[str, Any]:
    import distributed

    from cleanroom.crypto import BatchEngine, get_suite
    from cleanroom.crypto.cluster import CLUSTER_CHUNK_SIZE, DaskExecutor
    from cleanroom.identifiers.messages import hash_message

    print(f"setting up a database of {identifiers:,} identifiers in {workdir}", flush=True)
    db = setup_database(workdir, identifiers)
    suite = get_suite()
    messages = [
        hash_message("email", hashlib.sha256(_email(i).encode()).digest())
        for i in range(identifiers)
    ]
    runs: list[dict[str, Any]] = []
    with (
        distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as observer,
        BatchEngine(workers=WORKERS) as local,
        BatchEngine(
            executor=DaskExecutor(cluster.scheduler_address), chunk_size=CLUSTER_CHUNK_SIZE
        ) as on_cluster,
    ):
        address = cluster.scheduler_address
        key = suite.generate_key()
        for engine in (local, on_cluster):  # warm: pool started, client connected
            engine.hash_and_encrypt(suite, key, messages[: 2 * engine.chunk_size], suite.dst)
        for number in range(repeat):
            entry: dict[str, Any] = {"repeat": number + 1}
            order = ["local", "cluster"] if number % 2 == 0 else ["cluster", "local"]
            for kind in order:
                engine = local if kind == "local" else on_cluster
                start = time.perf_counter()
                engine.hash_and_encrypt(suite, key, messages, suite.dst)
                entry[f"engine_{kind}_s"] = time.perf_counter() - start
                print(f"  repeat {number + 1}: engine on {kind}: {entry[f'engine_{kind}_s']:.1f} s")
            for kind in order:
                argv = [cleanroom_executable(), "platform", "epoch", "rotate", "--db", str(db)]
                if kind == "local":
                    measured = run_measured([*argv, "--workers", str(WORKERS)])
                else:
                    workers_before, self_before = _workers_cpu(observer), _cpu_self()
                    measured = run_measured([*argv, "--dask-scheduler", address])
                    entry["rotate_cluster_workers_cpu_s"] = _workers_cpu(observer) - workers_before
                    entry["rotate_cluster_scheduler_cpu_s"] = _cpu_self() - self_before
                entry[f"rotate_{kind}"] = asdict(measured)
                print(f"  repeat {number + 1}: rotate on {kind}: {measured.wall_s:.1f} s wall")
            entry["engine_ratio"] = entry["engine_cluster_s"] / entry["engine_local_s"]
            entry["rotate_ratio"] = (
                entry["rotate_cluster"]["wall_s"] / entry["rotate_local"]["wall_s"]
            )
            print(
                f"  repeat {number + 1}: cluster/local engine {entry['engine_ratio']:.2f}, "
                f"rotate {entry['rotate_ratio']:.2f}",
                flush=True,
            )
            runs.append(entry)
    best = {
        "engine_ratio": min(r["engine_cluster_s"] for r in runs)
        / min(r["engine_local_s"] for r in runs),
        "rotate_ratio": min(r["rotate_cluster"]["wall_s"] for r in runs)
        / min(r["rotate_local"]["wall_s"] for r in runs),
    }
    return {
        "identifiers": identifiers,
        "workers": WORKERS,
        "local_chunk": BatchEngine().chunk_size,
        "cluster_chunk": CLUSTER_CHUNK_SIZE,
        "runs": runs,
        "best": best,
    }


def markdown(result: dict[str, Any], machine: dict[str, object], command: str) -> str:
    n = result["identifiers"]
    lines = [
        *_report.heading("Precompute on a Dask cluster", machine, command),
        f"{n:,} identifiers (one consented email per user, all eligible). Local: the batch "
        f"engine's process pool, {result['workers']} workers, chunk {result['local_chunk']:,}. "
        f"Cluster: `distributed.LocalCluster`, {result['workers']} worker processes x 1 thread, "
        f"scheduler in the benchmark's process, chunk {result['cluster_chunk']:,} "
        "(`--dask-scheduler`). *Engine*: `suite.hash_and_encrypt` of the N messages in one "
        "process, both executors warm. *Rotate*: the whole `platform epoch rotate` CLI process "
        "(`--workers 2` vs `--dask-scheduler`), wall clock from spawn to exit.",
        "",
        "CPU and RSS are the CLI process's own (its local pool's workers are not counted); "
        "for the cluster, the workers' CPU and this process's (the scheduler's) are shown too.",
        "",
        "| repeat | engine local s | engine cluster s | ratio | rotate local s (CLI CPU s, RSS MB) "
        "| rotate cluster s (CLI CPU s, RSS MB; workers CPU s; scheduler CPU s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        local, cluster = r["rotate_local"], r["rotate_cluster"]
        lines.append(
            f"| {r['repeat']} | {r['engine_local_s']:.1f} | {r['engine_cluster_s']:.1f} | "
            f"**{r['engine_ratio']:.2f}** | {local['wall_s']:.1f} ({local['cpu_s']:.1f}, "
            f"{local['max_rss_mb']:.0f}) | {cluster['wall_s']:.1f} ({cluster['cpu_s']:.1f}, "
            f"{cluster['max_rss_mb']:.0f}; {r['rotate_cluster_workers_cpu_s']:.1f}; "
            f"{r['rotate_cluster_scheduler_cpu_s']:.1f}) | **{r['rotate_ratio']:.2f}** |"
        )
    best = result["best"]
    verdict = (
        "met" if max(best["engine_ratio"], best["rotate_ratio"]) <= TARGET_RATIO else "NOT met"
    )
    lines += [
        "",
        f"Best-of ratios (fastest cluster run / fastest local run): engine "
        f"**{best['engine_ratio']:.2f}**, rotate **{best['rotate_ratio']:.2f}**; target "
        f"<= {TARGET_RATIO}: {verdict}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="keep the database here (default: a temp dir)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args.identifiers, args.repeat, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="dask-scale-") as tmp:
            result = run(args.identifiers, args.repeat, Path(tmp))
    machine, command = _report.machine(), _report.command_line()
    text = markdown(result, machine, command)
    print(text)
    if args.write_results:
        _report.RESULTS_DIR.mkdir(exist_ok=True)
        (_report.RESULTS_DIR / "dask_scale.json").write_text(
            json.dumps({"machine": machine, "command": command, **result}, indent=2) + "\n"
        )
        _report.write_section("dask", text)


if __name__ == "__main__":
    main()
