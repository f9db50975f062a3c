"""Core benchmark: normalization, message construction, hash to curve and encryption, per item,
for each X25519 backend, against OpenSSL's raw exchange loop measured in the same run.

For each backend (``CLEANROOM_X25519=ifma`` where this CPU runs it, and ``openssl``) a child
process measures, for each size n, µs per item of
  * normalization of emails and of phones (national and international formats), separately;
  * message construction (SHA-256 + framing) for the normalized values;
  * ``hash_to_curve_many`` (RO, X25519 suite) on one core and on all cores, and on one core on
    the portable C path (for reference: the IFMA path is taken wherever the CPU has it);
  * ``encrypt`` (X25519 suite, validation of its input included) on one core and all cores;
  * ``hash_and_encrypt`` on one core;
  * the baseline: the raw loop ``X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))``
    on one core (at most 100,000 rows), measured before and after the suite's timings; their
    mean is the baseline, and a gap between the two shows a load change on this shared machine.

Ratios against the baseline are what the targets speak of; absolute µs depend on the machine and
its load. Each backend's process chooses its backend once, as every cleanroom process does, so
its pool workers use the same one; its JSON records which (``crypto.backend_info()``).

    python benchmarks/core.py [--sizes 10000,100000,1000000] [--backends ifma,openssl]

Writes benchmarks/results/core.json and the "core" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import RESULTS_DIR, command_line, machine, write_section
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from cleanroom.crypto import BatchEngine, _h2c25519, backend_info, default_engine, get_suite
from cleanroom.crypto import h2c as h2c_common
from cleanroom.crypto.x25519 import ENV_VAR, ifma_problem
from cleanroom.demo import generate_people, messy_email, messy_phone
from cleanroom.identifiers import normalize_batch

RAW_ROWS = 100_000


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def raw_exchange_loop(elements: np.ndarray) -> float:
    """Seconds per row of the raw one-core OpenSSL X25519 loop over (up to RAW_ROWS) rows."""
    key = X25519PrivateKey.generate()
    rows = [bytes(r) for r in elements[:RAW_ROWS]]
    start = time.perf_counter()
    for u in rows:
        key.exchange(X25519PublicKey.from_public_bytes(u))
    return (time.perf_counter() - start) / len(rows)


def run_size(n: int, seed: int) -> dict[str, Any]:
    people = generate_people(n, seed)
    rng = random.Random(seed)
    n_email = round(n * 0.6)
    emails = [messy_email(p.email, rng) for p in people[:n_email]]
    phones = [messy_phone(p.phone, rng) for p in people[n_email:]]

    t_email, email_batch = timed(lambda: normalize_batch("email", emails))
    t_phone, phone_batch = timed(lambda: normalize_batch("phone", phones))
    assert not email_batch.rejected and not phone_batch.rejected, "generator produced bad input"
    t_msg, messages = timed(lambda: email_batch.messages() + phone_batch.messages())

    suite = get_suite("x25519-sha512-ell2-ro")
    one_core = BatchEngine(workers=1)
    all_cores = default_engine()
    # Start the pool before timing: it is started once per process and reused.
    all_cores.hash_to_curve_many(suite, messages[: 4 * 8192], suite.dst)

    raw_before = raw_exchange_loop(all_cores.hash_to_curve_many(suite, messages, suite.dst))
    t_h2c_1, elements = timed(lambda: one_core.hash_to_curve_many(suite, messages, suite.dst))
    t_h2c_n, elements_n = timed(lambda: all_cores.hash_to_curve_many(suite, messages, suite.dst))
    assert np.array_equal(elements, elements_n)
    dst_prime = h2c_common.dst_prime(suite.dst, "sha512")
    t_h2c_portable, (portable, _) = timed(
        lambda: _h2c25519.hash_to_curve_many(messages, dst_prime, ifma=False)
    )
    assert portable == elements.tobytes()
    key = suite.generate_key()
    t_enc_1, enc_1 = timed(lambda: one_core.encrypt(suite, key, elements))
    t_enc_n, enc_n = timed(lambda: all_cores.encrypt(suite, key, elements))
    assert np.array_equal(enc_1, enc_n)
    t_he_1, he_1 = timed(lambda: one_core.hash_and_encrypt(suite, key, messages, suite.dst))
    assert np.array_equal(he_1, enc_1)
    raw_after = raw_exchange_loop(elements)
    raw = (raw_before + raw_after) / 2

    us = 1e6 / n
    return {
        "n": n,
        "emails": len(emails),
        "phones": len(phones),
        "us_per_item": {
            "normalize_email": t_email * 1e6 / len(emails),
            "normalize_phone": t_phone * 1e6 / len(phones),
            "normalize_mix": (t_email + t_phone) * us,
            "message": t_msg * us,
            "hash_to_curve_1core": t_h2c_1 * us,
            "hash_to_curve_all_cores": t_h2c_n * us,
            "hash_to_curve_portable_1core": t_h2c_portable * us,
            "encrypt_1core": t_enc_1 * us,
            "encrypt_all_cores": t_enc_n * us,
            "hash_and_encrypt_1core": t_he_1 * us,
            "raw_exchange_1core": raw * 1e6,
            "raw_exchange_1core_before": raw_before * 1e6,
            "raw_exchange_1core_after": raw_after * 1e6,
        },
        "ratios": {
            # targets: >= 3.5 (ifma), >= 1.8, and hash to curve <= 4 µs an item
            "encrypt_1core_throughput_vs_raw": raw * n / t_enc_1,
            "encrypt_all_cores_vs_1core": t_enc_1 / t_enc_n,
            "encrypt_all_cores_throughput_vs_raw": raw * n / t_enc_n,
            "hash_to_curve_vs_raw_exchange": t_h2c_1 / (raw * n),
            "normalize_and_message_vs_hash_and_encrypt": (t_email + t_phone + t_msg) / t_he_1,
        },
        "cores": all_cores.workers,
    }


def child(sizes: list[int], seed: int) -> None:
    """Measure every size on this process's backend; print one JSON object."""
    info = dataclasses.asdict(backend_info())
    results = []
    for n in sizes:
        print(f"  {info['name']}: n = {n:,} …", file=sys.stderr, flush=True)
        results.append(run_size(n, seed))
    print(json.dumps({"backend": info, "results": results}), flush=True)


def run_backend(backend: str, sizes: list[int], seed: int) -> dict[str, Any]:
    env = {**os.environ, ENV_VAR: backend}
    args = [sys.executable, __file__, "--child", "--sizes", ",".join(map(str, sizes))]
    out = subprocess.run(
        [*args, "--seed", str(seed)], env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def render(runs: list[dict[str, Any]], info: dict[str, object], command: str) -> str:
    lines = [
        "## Core: normalization, hash to curve, encryption, per X25519 backend",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared with other jobs), Python "
        f"{info['python']}; {info['date']}. Command:",
        "",
        f"    {command}",
        "",
        "Each backend runs in its own process (`CLEANROOM_X25519=…`, pool workers included). "
        "µs per item, one core unless said; the baseline is OpenSSL's raw loop "
        "`X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))` measured in the same "
        "process before and after. Hash to curve runs on AVX-512 IFMA whatever the X25519 "
        "backend; its portable C path is shown for reference.",
        "",
        "| backend | n | email norm | phone norm | message | h2c 1 core | h2c all | h2c portable "
        "| encrypt 1 core | encrypt all | hash+encrypt 1 core | raw exchange (before / after) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for r in run["results"]:
            u = r["us_per_item"]
            lines.append(
                f"| {run['backend']['name']} | {r['n']:,} | {u['normalize_email']:.2f} "
                f"| {u['normalize_phone']:.2f} | {u['message']:.2f} "
                f"| {u['hash_to_curve_1core']:.2f} | {u['hash_to_curve_all_cores']:.2f} "
                f"| {u['hash_to_curve_portable_1core']:.2f} | {u['encrypt_1core']:.2f} "
                f"| {u['encrypt_all_cores']:.2f} | {u['hash_and_encrypt_1core']:.2f} "
                f"| {u['raw_exchange_1core']:.1f} ({u['raw_exchange_1core_before']:.1f} / "
                f"{u['raw_exchange_1core_after']:.1f}) |"
            )
    lines += [
        "",
        "| backend | n | encrypt 1 core / raw exchange, throughput (target ≥ 3.5 for ifma) "
        "| encrypt all cores / 1 core (≥ 1.8) | encrypt all cores / raw | h2c 1 core µs (≤ 4) "
        "| h2c / raw exchange | (normalize + message) / (hash + encrypt) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for r in run["results"]:
            q = r["ratios"]
            lines.append(
                f"| {run['backend']['name']} | {r['n']:,} "
                f"| {q['encrypt_1core_throughput_vs_raw']:.2f} "
                f"| {q['encrypt_all_cores_vs_1core']:.2f} "
                f"| {q['encrypt_all_cores_throughput_vs_raw']:.2f} "
                f"| {r['us_per_item']['hash_to_curve_1core']:.2f} "
                f"| {q['hash_to_curve_vs_raw_exchange']:.3f} "
                f"| {q['normalize_and_message_vs_hash_and_encrypt']:.3f} |"
            )
    lines += ["", "Backends as each process reported them (`cleanroom.crypto.backend_info()`):", ""]
    lines += [
        f"- `{run['backend']['name']}`: {run['backend']['library']}; {run['backend']['reason']}"
        for run in runs
    ]
    lines += [
        "",
        "Mix: 60% emails, 40% phones (≈90% US in six national/international styles, "
        "≈10% twelve other countries in international/E.164 form).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default=None, help="default: ifma (where it runs),openssl")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS_DIR / "core.json"))
    parser.add_argument("--no-record", action="store_true", help="don't touch RESULTS.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        child(sizes, args.seed)
        return 0
    if args.backends is None:
        backends = ["openssl"] if ifma_problem() is not None else ["ifma", "openssl"]
    else:
        backends = args.backends.split(",")
    info, command = machine(), command_line()
    runs = []
    for backend in backends:
        print(f"backend {backend} …", file=sys.stderr, flush=True)
        run = run_backend(backend, sizes, args.seed)
        print(json.dumps(run, indent=1), flush=True)
        runs.append(run)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "command": command, "runs": runs}
    with open(args.out, "w") as fh:
        json.dump(payload, fh, indent=1)
    if not args.no_record:
        write_section("core", render(runs, info, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
