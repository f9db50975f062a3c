"""Validation benchmark: what checking received X25519 elements costs, per row, on one core.

In one run, on chunks of the engine's size (8,192 rows) of valid elements, µs per row of
  * ``per_row_jacobi``: the exact check with one Jacobi symbol per row (GMP through gmpy2), the
    way validation worked before the random subset test: canonical encoding, small order, then
    ``jacobi(u^3 + A u^2 + u, p)`` for every row;
  * ``subset_test``: the suite's ``validate_rows`` (canonical encoding and small order exactly,
    curve membership by the random subset test of ``_check25519.c``), on its AVX-512 IFMA path
    where the CPU has it;
  * ``subset_test_portable``: the same with ``_check25519`` held to its portable C path
    (``ifma=False``), what runs on a CPU without IFMA;
  * the baseline: the raw loop ``X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))``
    over the same rows, the operation validation protects, measured before and after.

Rounds alternate them, so a load change on this shared machine shows up in every column.
The figures to read are the ratios: to the exchange, and of the two subset test paths.

    python benchmarks/validation.py [--chunks 8] [--rounds 3] [--write-results]

Prints its section (Markdown), writes benchmarks/results/validation.json and, with
``--write-results``, the "validation" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from typing import Any
from unittest import mock

import gmpy2
from _report import RESULTS_DIR, command_line, heading, machine, write_section
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cleanroom.crypto import _check25519, get_suite
from cleanroom.crypto.batch import DEFAULT_CHUNK_SIZE
from cleanroom.crypto.suites import X25519Suite

P = gmpy2.mpz(2**255 - 19)
A = gmpy2.mpz(486662)


def per_row_jacobi(rows: bytes) -> None:
    """The exact check, one Jacobi symbol per row (the fast path before the subset test)."""
    units = [rows[i : i + 32] for i in range(0, len(rows), 32)]
    from_bytes, jacobi = gmpy2.mpz.from_bytes, gmpy2.jacobi
    xs = [from_bytes(u, "little") for u in units]
    ok = (
        X25519Suite.SMALL_ORDER_U.isdisjoint(units)
        and max(xs, default=0) < P
        and min([jacobi(x * (x * (x + A) + 1) % P, P) for x in xs], default=1) == 1
    )
    if not ok:
        raise SystemExit("the benchmark's elements should all be valid")


def validate_portable(rows: bytes) -> None:
    """``validate_rows`` with the subset products on the portable C path, even on IFMA."""
    portable = functools.partial(_check25519.twist_test, ifma=False)
    with mock.patch.object(_check25519, "twist_test", portable):
        get_suite("x25519-sha512-ell2-ro").validate_rows(rows)


def raw_exchange(rows: bytes) -> None:
    key = X25519PrivateKey.generate()
    for i in range(0, len(rows), 32):
        key.exchange(X25519PublicKey.from_public_bytes(rows[i : i + 32]))


def render(result: dict[str, Any], rounds: int) -> str:
    us = result["us_per_row"]
    exchange = (us["exchange_before"] + us["exchange_after"]) / 2
    path = "AVX-512 IFMA" if result["ifma"] else "portable C (this CPU has no IFMA)"
    lines = [
        *heading(
            "Validation of received X25519 elements (random subset test)",
            result["machine"],
            result["command"],
        ),
        f"Chunks of {result['rows_per_chunk']:,} valid elements, {result['rows_per_round']:,} "
        f"rows per round, one core, median of {rounds} alternated rounds; the baseline is the raw "
        "exchange loop over the same rows, which validation protects.",
        "",
        "| check | µs per row | / raw exchange |",
        "|---|---:|---:|",
        f"| a Jacobi symbol per row (before) | {us['per_row_jacobi']:.2f} | "
        f"{result['per_row_jacobi_over_exchange']:.3f} |",
        f"| random subset test (`validate_rows`), {path} | {us['subset_test']:.3f} | "
        f"{result['subset_test_over_exchange']:.4f} |",
        f"| random subset test (`validate_rows`), portable C forced | "
        f"{us['subset_test_portable']:.3f} | {result['subset_test_portable_over_exchange']:.4f} |",
        f"| raw exchange (before / after) | {exchange:.1f} ({us['exchange_before']:.1f} / "
        f"{us['exchange_after']:.1f}) | 1 |",
        "",
        f"The subset test is {result['speedup']:.1f}× faster than a Jacobi symbol per row; "
        f"{path} is {result['ifma_speedup']:.1f}× faster than the portable path.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=8, help="chunks per round (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument(
        "--write-results", action="store_true", help="also write its section of RESULTS.md"
    )
    args = parser.parse_args()
    suite = get_suite("x25519-sha512-ell2-ro")
    chunks = [
        b"".join(
            X25519PrivateKey.generate().public_key().public_bytes_raw()
            for _ in range(DEFAULT_CHUNK_SIZE)
        )
        for _ in range(args.chunks)
    ]
    rows = args.chunks * DEFAULT_CHUNK_SIZE
    steps = {
        "exchange_before": raw_exchange,
        "per_row_jacobi": per_row_jacobi,
        "subset_test": suite.validate_rows,
        "subset_test_portable": validate_portable,
        "exchange_after": raw_exchange,
    }
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for chunk in chunks:
                step(chunk)
            timings[name].append((time.perf_counter() - start) * 1e6 / rows)
    us = {name: statistics.median(values) for name, values in timings.items()}
    exchange = (us["exchange_before"] + us["exchange_after"]) / 2
    result = {
        "machine": machine(),
        "command": command_line(),
        "rows_per_chunk": DEFAULT_CHUNK_SIZE,
        "rows_per_round": rows,
        "ifma": bool(_check25519.IFMA),
        "us_per_row": us,
        "us_per_row_runs": timings,
        "per_row_jacobi_over_exchange": us["per_row_jacobi"] / exchange,
        "subset_test_over_exchange": us["subset_test"] / exchange,
        "subset_test_portable_over_exchange": us["subset_test_portable"] / exchange,
        "speedup": us["per_row_jacobi"] / us["subset_test"],
        "ifma_speedup": us["subset_test_portable"] / us["subset_test"],
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "validation.json").write_text(json.dumps(result, indent=2) + "\n")
    body = render(result, args.rounds)
    print(body)
    if args.write_results:
        write_section("validation", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
