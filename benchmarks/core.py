"""Core benchmark: normalization, message construction, hash to curve and encryption.

For each size n it measures, in one run, µs per item of
  * normalization of emails and of phones (national and international formats), separately;
  * message construction (SHA-256 + framing) for the normalized values;
  * ``hash_to_curve`` (RO, X25519 suite) on one core and on all cores;
  * ``encrypt`` (X25519 suite, including validation of its input) on one core and all cores;
  * the baseline: the raw loop ``X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))``
    on one core, measured before and after the suite's timings (their mean is the baseline, so
    a load change on this shared machine shows up as a gap between the two).

Ratios against the baseline are what the targets speak of; absolute µs depend on the machine.

    python benchmarks/core.py [--sizes 10000,100000,1000000]

Writes benchmarks/results/core.json and the "core" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/platform.py (named by the issue) would shadow the stdlib's ``platform`` for every
# library imported from this directory: look here last, after the standard library.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE] + [_HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _report import RESULTS_DIR, command_line, machine, write_section  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402

from cleanroom.crypto import BatchEngine, default_engine, get_suite  # noqa: E402
from cleanroom.identifiers import normalize_batch  # noqa: E402
from cleanroom.synthetic import generate_people, messy_email, messy_phone  # noqa: E402


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def raw_exchange_loop(elements: np.ndarray) -> float:
    """Seconds for the raw one-core X25519 loop over the rows of ``elements``."""
    key = X25519PrivateKey.generate()
    rows = [bytes(r) for r in elements]
    start = time.perf_counter()
    for u in rows:
        key.exchange(X25519PublicKey.from_public_bytes(u))
    return time.perf_counter() - start


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
    suite.hash_to_curve_many(messages[: 4 * 8192], suite.dst, engine=all_cores)

    t_raw_before = raw_exchange_loop(
        suite.hash_to_curve_many(messages, suite.dst, engine=all_cores)
    )
    t_h2c_1, elements = timed(
        lambda: suite.hash_to_curve_many(messages, suite.dst, engine=one_core)
    )
    t_h2c_n, elements_n = timed(
        lambda: suite.hash_to_curve_many(messages, suite.dst, engine=all_cores)
    )
    assert np.array_equal(elements, elements_n)
    key = suite.generate_key()
    t_enc_1, enc_1 = timed(lambda: suite.encrypt(key, elements, engine=one_core))
    t_enc_n, enc_n = timed(lambda: suite.encrypt(key, elements, engine=all_cores))
    assert np.array_equal(enc_1, enc_n)
    t_raw_after = raw_exchange_loop(elements)
    t_raw = (t_raw_before + t_raw_after) / 2

    us = 1e6 / n
    crypto_1 = t_h2c_1 + t_enc_1
    prep = t_email + t_phone + t_msg
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
            "encrypt_1core": t_enc_1 * us,
            "encrypt_all_cores": t_enc_n * us,
            "raw_exchange_1core": t_raw * us,
            "raw_exchange_1core_before": t_raw_before * us,
            "raw_exchange_1core_after": t_raw_after * us,
        },
        "ratios": {
            # target <= 1.2
            "hash_to_curve_vs_raw_exchange": t_h2c_1 / t_raw,
            # throughput ratios: targets >= 0.9 and >= 1.7
            "encrypt_1core_throughput_vs_raw": t_raw / t_enc_1,
            "encrypt_all_cores_throughput_vs_raw": t_raw / t_enc_n,
            # target < 0.10
            "normalize_and_message_vs_hash_and_encrypt": prep / crypto_1,
        },
        "cores": all_cores.workers,
    }


def render(results: list[dict[str, Any]], info: dict[str, object], command: str) -> str:
    lines = [
        "## Core (issue 2): normalization, hash to curve, encryption",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; {info['date']}.",
        f"Command: `{command}`",
        "",
        "µs per item (one core unless said); the baseline is the raw loop "
        "`X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))` in the same run.",
        "",
        "| n | email norm | phone norm | message | h2c 1 core | h2c all | encrypt 1 core "
        "| encrypt all | raw exchange (before / after) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        u = r["us_per_item"]
        lines.append(
            f"| {r['n']:,} | {u['normalize_email']:.2f} | {u['normalize_phone']:.2f} "
            f"| {u['message']:.2f} | {u['hash_to_curve_1core']:.1f} "
            f"| {u['hash_to_curve_all_cores']:.1f} | {u['encrypt_1core']:.1f} "
            f"| {u['encrypt_all_cores']:.1f} | {u['raw_exchange_1core']:.1f} "
            f"({u['raw_exchange_1core_before']:.1f} / {u['raw_exchange_1core_after']:.1f}) |"
        )
    lines += [
        "",
        "| n | h2c / raw exchange (target ≤ 1.2) | encrypt 1 core throughput / raw (≥ 0.9) "
        "| encrypt all cores / raw (≥ 1.7) | (normalize + message) / (h2c + encrypt) (< 0.10) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        q = r["ratios"]
        lines.append(
            f"| {r['n']:,} | {q['hash_to_curve_vs_raw_exchange']:.3f} "
            f"| {q['encrypt_1core_throughput_vs_raw']:.3f} "
            f"| {q['encrypt_all_cores_throughput_vs_raw']:.3f} "
            f"| {q['normalize_and_message_vs_hash_and_encrypt']:.3f} |"
        )
    lines += [
        "",
        "Mix: 60% emails, 40% phones (≈90% US in six national/international styles, "
        "≈10% twelve other countries in international/E.164 form).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS_DIR / "core.json"))
    parser.add_argument("--no-record", action="store_true", help="don't touch RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    info, command = machine(), command_line()
    results = []
    for n in sizes:
        print(f"n = {n:,} …", file=sys.stderr, flush=True)
        result = run_size(n, args.seed)
        print(json.dumps(result, indent=1), flush=True)
        results.append(result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "command": command, "results": results}
    with open(args.out, "w") as fh:
        json.dump(payload, fh, indent=1)
    if not args.no_record:
        write_section("core", render(results, info, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
