"""What a batch engine job costs beyond its crypto: the pool's transport and bookkeeping.

A match's large jobs (hashing and encrypting the list, encrypting V, U) each go through
``BatchEngine``: chunks pickled to the worker processes through pipes, their results pickled
back and copied into the output. This measures what that costs, per chunk size, on one job of
``--elements`` validated X25519 elements (``engine.encrypt``, every core):

* ``wall``: the job's wall time;
* ``caller``: CPU of the calling process (its threads that submit chunks and take results);
* ``workers``: CPU of the pool's worker processes;
* the baseline, measured in the same round: the crypto alone, the same rows encrypted in this
  process on one core without a pool (CPU time), scaled to the job's size.

``overhead`` is caller + workers - the crypto alone, in core-seconds; ``efficiency`` is the
crypto alone / (wall x workers). Rounds alternate the chunk sizes, so a load change on this
shared machine shows in all of them.

    python benchmarks/engine_overhead.py [--elements 1000000] [--chunk-sizes 4096,8192,32768]
        [--rounds 3] [--write-results]

Prints its section (Markdown), writes benchmarks/results/engine_overhead.json and, with
``--write-results``, the "engine_overhead" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

# As the console script does: numpy's OpenBLAS on one thread, so that its idle threads add
# nothing to the caller's CPU. Set before anything below imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from _harness import process_cpu_s
from _report import RESULTS_DIR, command_line, heading, machine, write_section

from cleanroom.crypto import (
    BatchEngine,
    SecretKey,
    ValidatedElements,
    backend_info,
    get_suite,
)

SUITE = "x25519-sha512-ell2-ro"
# The crypto alone is timed on this many rows (scaled to the job): a few hundred milliseconds.
ALONE_ROWS = 50_000


def _one_job(engine: BatchEngine, key: SecretKey, elements: ValidatedElements) -> dict[str, float]:
    suite = elements.suite
    pids = engine.worker_pids
    workers_before = sum(process_cpu_s(pid) for pid in pids)
    cpu_before, started = time.process_time(), time.perf_counter()
    engine.encrypt(suite, key, elements)
    wall = time.perf_counter() - started
    caller = time.process_time() - cpu_before
    workers = sum(process_cpu_s(pid) for pid in pids) - workers_before
    return {"wall_s": wall, "caller_cpu_s": caller, "workers_cpu_s": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--chunk-sizes", default="4096,8192,32768")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.chunk_sizes.split(",")]
    suite = get_suite(SUITE)
    key = suite.generate_key()

    with BatchEngine() as maker:
        messages = [f"user{i}@example.com".encode() for i in range(args.elements)]
        elements = maker.validate(suite, maker.hash_to_curve_many(suite, messages, suite.dst))
    del messages
    sample = elements.array[:ALONE_ROWS]
    alone = BatchEngine(workers=1, chunk_size=ALONE_ROWS)
    sample_validated = alone.validate(suite, sample)

    engines = {size: BatchEngine(chunk_size=size) for size in sizes}
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    alone_us: list[float] = []
    try:
        for engine in engines.values():  # each pool started and warm before it is timed
            engine.start()
            engine.encrypt(suite, key, sample_validated)
        for _ in range(args.rounds):
            cpu_before = time.process_time()
            alone.encrypt(suite, key, sample_validated)
            alone_us.append((time.process_time() - cpu_before) / len(sample) * 1e6)
            for size, engine in engines.items():
                runs[size].append(_one_job(engine, key, elements))
    finally:
        for engine in engines.values():
            engine.close()

    crypto_s = statistics.median(alone_us) * 1e-6 * args.elements
    workers = next(iter(engines.values())).workers
    table = []
    for size in sizes:
        median = {k: statistics.median(run[k] for run in runs[size]) for k in runs[size][0]}
        overhead = median["caller_cpu_s"] + median["workers_cpu_s"] - crypto_s
        table.append(
            {
                "chunk_size": size,
                **median,
                "overhead_core_s": overhead,
                "efficiency": crypto_s / (median["wall_s"] * workers),
                "runs": runs[size],
            }
        )

    info = machine()
    command = command_line()
    lines = heading("Batch engine: what a job costs beyond its crypto", info, command)
    lines += [
        f"One job: `engine.encrypt` of {args.elements:,} validated X25519 elements on {workers} "
        f"workers (backend `{backend_info().name}`), medians of {args.rounds} rounds. The crypto "
        f"alone (one core, no pool, same rounds): {statistics.median(alone_us):.2f} µs an "
        f"element, {crypto_s:.2f} core-seconds for the job.",
        "",
        "| chunk size | wall s | caller CPU s | workers CPU s | overhead core-s | efficiency |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        lines.append(
            f"| {row['chunk_size']:,} | {row['wall_s']:.3f} | {row['caller_cpu_s']:.3f} | "
            f"{row['workers_cpu_s']:.3f} | {row['overhead_core_s']:.3f} | "
            f"{row['efficiency']:.3f} |"
        )
    section = "\n".join(lines)
    print(section)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "engine_overhead.json").write_text(
        json.dumps(
            {
                "machine": info,
                "command": command,
                "backend": backend_info().name,
                "elements": args.elements,
                "workers": workers,
                "alone_us_per_element": alone_us,
                "crypto_alone_core_s": crypto_s,
                "chunk_sizes": table,
            },
            indent=2,
        )
        + "\n"
    )
    if args.write_results:
        write_section("engine_overhead", section)


if __name__ == "__main__":
    main()
