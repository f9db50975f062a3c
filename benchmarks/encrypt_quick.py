"""Quick throughput check of X25519 ``suite.encrypt`` against the raw ``cryptography`` loop.

The baseline is the loop every caller would otherwise write, on one core::

    for u in us: k.exchange(X25519PublicKey.from_public_bytes(u))

and the targets are ``encrypt`` *including validation* on one core (``workers=1``) at
>= 0.9x the baseline's throughput and on all cores at >= 1.7x (2 cores). The three are measured
interleaved, repeated, and compared as ratios within the same run, because the machine is shared
and absolute times drift. The pool is warmed up first: it is started once and reused, so its
start-up is not part of the steady-state throughput. Printed: microseconds per item (median of
the repeats, wall and, for the one-core runs, CPU time), the ratios of the medians, the ratio per
repeat, and the ratio of the fastest runs (least disturbed by other processes).

Usage: ``python benchmarks/encrypt_quick.py [n] [repeats]`` (defaults 100000 and 3).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from numpy.typing import NDArray

from cleanroom.crypto import BatchEngine, get_suite

_P = 2**255 - 19
_A = 486662


def random_elements(n: int) -> NDArray[np.uint8]:
    """Random valid X25519 elements: canonical u on the curve (about half of random u are)."""
    rows: list[bytes] = []
    while len(rows) < n:
        u = bytearray(os.urandom(32))
        u[31] &= 0x7F
        x = int.from_bytes(u, "little")
        if 1 < x < _P - 1 and gmpy2.jacobi(x * (x * (x + _A) + 1), _P) == 1:
            rows.append(bytes(u))
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(n, 32)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    suite = get_suite("x25519-sha512-ell2-ro")
    key = suite.generate_key()
    raw_key = X25519PrivateKey.from_private_bytes(key.to_bytes())
    elements = random_elements(n)
    us = [bytes(row) for row in elements]
    one_core = BatchEngine(workers=1)
    all_cores = BatchEngine()
    all_cores.encrypt(suite, key, elements[: all_cores.chunk_size * all_cores.workers * 2])

    def raw_loop() -> None:
        for u in us:
            raw_key.exchange(X25519PublicKey.from_public_bytes(u))

    # Wall time for all three; CPU time of this process too for the two one-core runs, which is
    # less disturbed when other work shares the machine (the pooled run's CPU is in its workers).
    wall: dict[str, list[float]] = {"raw": [], "one": [], "all": []}
    cpu: dict[str, list[float]] = {"raw": [], "one": []}
    for _ in range(repeats):
        for name, run in (
            ("raw", raw_loop),
            ("one", lambda: one_core.encrypt(suite, key, elements)),
            ("all", lambda: all_cores.encrypt(suite, key, elements)),
        ):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            run()
            wall[name].append((time.perf_counter() - wall_start) / n * 1e6)
            if name in cpu:
                cpu[name].append((time.process_time() - cpu_start) / n * 1e6)
    all_cores.close()

    def show(values: list[float]) -> str:
        return " ".join(f"{v:.2f}" for v in values)

    def ratios(base: list[float], other: list[float]) -> list[float]:
        return [b / o for b, o in zip(base, other, strict=True)]

    raw, one, every = (statistics.median(wall[k]) for k in ("raw", "one", "all"))
    raw_cpu, one_cpu = (statistics.median(cpu[k]) for k in ("raw", "one"))
    print(f"n={n} repeats={repeats} workers={all_cores.workers} chunk={all_cores.chunk_size}")
    print(f"raw loop         {raw:7.2f} us/item wall  (runs: {show(wall['raw'])})")
    print(f"encrypt 1 core   {one:7.2f} us/item wall  (runs: {show(wall['one'])})")
    print(f"encrypt all core {every:7.2f} us/item wall  (runs: {show(wall['all'])})")
    print(f"raw loop         {raw_cpu:7.2f} us/item cpu   (runs: {show(cpu['raw'])})")
    print(f"encrypt 1 core   {one_cpu:7.2f} us/item cpu   (runs: {show(cpu['one'])})")
    print(
        f"1-core ratio   {raw / one:.3f}x wall, {raw_cpu / one_cpu:.3f}x cpu  (target >= 0.9; "
        f"per run wall: {show(ratios(wall['raw'], wall['one']))})"
    )
    print(
        f"all-core ratio {raw / every:.3f}x wall  (target >= 1.7; "
        f"per run: {show(ratios(wall['raw'], wall['all']))})"
    )
    # Fastest run of each: the least disturbed by other work (what timeit reports).
    best = {k: min(v) for k, v in wall.items()}
    print(
        f"best-of ratios: 1-core {best['raw'] / best['one']:.3f}x, "
        f"all-core {best['raw'] / best['all']:.3f}x"
    )


if __name__ == "__main__":
    main()
