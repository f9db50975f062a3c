"""Per-operation costs and the session's crypto alone, each measured in a fresh process.

Run by ``benchmarks/e2e.py`` as subprocesses of this file, with ``CLEANROOM_X25519`` set to the
backend measured (pool workers inherit it)::

    python benchmarks/_e2e_costs.py unit COUNT           # µs per operation on one core
    python benchmarks/_e2e_costs.py crypto N n           # the session's crypto on all cores

``unit`` measures, twice interleaved (a load change shows as a spread within the pair), on
COUNT messages: ``hash_to_curve`` (the suite's chunk function: IFMA lanes where the CPU has
them, whatever the X25519 backend), the X25519 exchange of this backend (``ifma``: the 8-lane
ladder over a chunk; ``openssl``: OpenSSL's one-at-a-time loop
``X25519PrivateKey.exchange(X25519PublicKey.from_public_bytes(u))``), the validation of a
received element, and normalizing an email with building its message. Each prints JSON with
``backend_info()``.

``crypto`` runs what a session of N platform identifiers and n records computes, on one batch
engine over every core, back to back and without any I/O: the advertiser hashes and encrypts U
and encrypts V, the platform validates and encrypts U and validates W, the advertiser validates
U'. Its wall is what "the session's crypto alone" means.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import backend_env, run_measured

HERE = Path(__file__).resolve()
COST_KEYS = ("hash_to_curve_us", "exchange_us", "validate_us", "normalize_us")


def _messages(count: int, tag: str) -> list[bytes]:
    from cleanroom.identifiers import hash_message

    return [
        hash_message("email", hashlib.sha256(f"{tag}{i}@example.com".encode()).digest())
        for i in range(count)
    ]


def _exchange_loop(backend: str, key_bytes: bytes, rows: bytes) -> None:
    """One pass of this backend's X25519 over ``rows``, as the one-core ceiling counts it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    from cleanroom.crypto import get_suite, x25519
    from cleanroom.crypto.batch import DEFAULT_CHUNK_SIZE

    size = get_suite().element_size
    if backend == "ifma":
        chunk_bytes = DEFAULT_CHUNK_SIZE * size  # the engine's chunks
        for start in range(0, len(rows), chunk_bytes):
            x25519.exchange_ifma(key_bytes, rows[start : start + chunk_bytes])
        return
    key = X25519PrivateKey.from_private_bytes(key_bytes)
    for start in range(0, len(rows), size):
        key.exchange(X25519PublicKey.from_public_bytes(rows[start : start + size]))


def unit_costs(count: int) -> dict[str, Any]:
    """(In the child.) µs per operation on one core, on this process's backend."""
    from cleanroom.crypto import backend_info, get_suite
    from cleanroom.demo import messy_email
    from cleanroom.identifiers import normalize_batch

    info = backend_info()
    suite = get_suite()
    messages = _messages(count, "unit")
    rng = random.Random(count)
    emails = [messy_email(f"person.{i}@gmail.com", rng) for i in range(count)]
    key_bytes = suite.generate_key().to_bytes()
    runs: dict[str, list[float]] = {key: [] for key in COST_KEYS}

    def timed(key: str, step: Any) -> Any:
        start = time.perf_counter()
        result = step()
        runs[key].append((time.perf_counter() - start) * 1e6 / count)
        return result

    rows = suite.hash_rows(messages, suite.dst)
    for _ in range(2):
        timed("hash_to_curve_us", lambda: suite.hash_rows(messages, suite.dst))
        timed("exchange_us", lambda: _exchange_loop(info.name, key_bytes, rows))
        timed("validate_us", lambda: suite.validate_rows(rows))
        timed("normalize_us", lambda: normalize_batch("email", emails).messages())
    costs: dict[str, Any] = {key: statistics.mean(values) for key, values in runs.items()}
    costs |= {f"{key}_runs": values for key, values in runs.items()}
    return {"backend": dataclasses.asdict(info), "count": count, **costs}


def crypto_alone(big_n: int, n: int) -> dict[str, Any]:
    """(In the child.) Wall seconds of a session's crypto on one engine over every core."""
    from cleanroom.crypto import BatchEngine, backend_info, get_suite

    suite = get_suite()
    with BatchEngine() as engine:
        engine.start()
        v = engine.hash_and_encrypt(suite, suite.generate_key(), _messages(big_n, "v"), suite.dst)
        u_messages = _messages(n, "u")
        a, b = suite.generate_key(), suite.generate_key()
        steps: dict[str, float] = {}

        def timed(name: str, step: Any) -> Any:
            start = time.perf_counter()
            result = step()
            steps[name] = time.perf_counter() - start
            return result

        u = timed(
            "hash_encrypt_u", lambda: engine.hash_and_encrypt(suite, a, u_messages, suite.dst)
        )
        w = timed("encrypt_v", lambda: engine.encrypt(suite, a, v))
        valid_u = timed("validate_u", lambda: engine.validate(suite, u))
        u_prime = timed("encrypt_u", lambda: engine.encrypt(suite, b, valid_u))
        timed("validate_w", lambda: engine.validate(suite, w))
        timed("validate_u_prime", lambda: engine.validate(suite, u_prime))
        workers = engine.workers
    return {
        "backend": dataclasses.asdict(backend_info()),
        "N": big_n,
        "n": n,
        "workers": workers,
        "steps_s": steps,
        "total_s": sum(steps.values()),
    }


def _child(*args: str) -> list[str]:
    return [sys.executable, str(HERE), *args]


def measure_unit_costs(
    backend: str, count: int, cores: int, running: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """Per-operation costs on one core alone, then with one measuring process on every core.

    The second figure is what an operation costs while every core works, as in a session: on a
    shared VM it is higher (shared caches, memory bandwidth, clock, the neighbours).
    ``running``: processes of this run that may be running meanwhile (an idle server).
    """
    argv = _child("unit", str(count))
    _, stdout = run_measured(argv, set(running), env=backend_env(backend))  # its stderr if it fails
    costs: dict[str, Any] = json.loads(stdout)
    children = [
        subprocess.Popen(argv, env=backend_env(backend), stdout=subprocess.PIPE, text=True)
        for _ in range(cores)
    ]
    loaded = [json.loads(child.communicate()[0]) for child in children]
    if any(child.returncode != 0 for child in children):
        raise SystemExit(f"measuring the {backend} per-operation costs on every core failed")
    for key in COST_KEYS:
        costs[f"{key}_all_cores"] = statistics.mean(result[key] for result in loaded)
    return costs


def measure_crypto_alone(
    backend: str, big_n: int, n: int, running: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """The session's crypto alone, in a fresh process (its peak RSS too).

    ``running``: processes of this run that may be running meanwhile (an idle server).
    """
    argv = _child("crypto", str(big_n), str(n))
    measured, stdout = run_measured(argv, set(running), env=backend_env(backend))
    result: dict[str, Any] = json.loads(stdout)
    result["process"] = dataclasses.asdict(measured)
    return result


def main() -> None:
    what, *numbers = sys.argv[1:]
    if what == "unit":
        print(json.dumps(unit_costs(int(numbers[0]))))
    elif what == "crypto":
        print(json.dumps(crypto_alone(int(numbers[0]), int(numbers[1]))))
    else:
        raise SystemExit(f"unknown measurement {what!r}: unit COUNT or crypto N n")


if __name__ == "__main__":
    main()
