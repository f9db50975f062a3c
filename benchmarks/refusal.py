"""What refusing a hostile advertiser set costs the platform, against multiplying it.

A hostile advertiser sends U = one valid point repeated (300,000 times by default, three per
record, so every count and record tag is in order and only the duplicates are wrong). The
platform's role refuses it from the bytes alone, before any element is validated or multiplied.
In the same run, on the same engine, the benchmark measures what multiplying that U by ``b``
costs (what the platform spent on it before the duplicate check moved ahead of the
multiplication), and what an honest U of as many distinct points costs to check, validate and
multiply, phase by phase.

Everything runs in this process (``BatchEngine(workers=1)``), so the process's CPU time is the
platform's CPU time. Timings are the best of ``--repeat`` runs (CPU seconds).

Usage::

    python benchmarks/refusal.py [--elements 300000] [--repeat 3] [--write-results]

``--write-results`` rewrites the "refusal" section of benchmarks/RESULTS.md and
benchmarks/results/refusal.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _report import RESULTS_DIR, command_line, heading, machine, write_section

from cleanroom.crypto import BatchEngine, default_engine, get_suite
from cleanroom.errors import InvalidElement, LimitExceeded
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import Mode, check_session, parse_policy
from cleanroom.protocol import (
    PROTOCOL_VERSION,
    PlatformInputs,
    PlatformRole,
    read_open_session,
)
from cleanroom.protocol._rows import find_duplicate
from cleanroom.protocol._wire import pb, rows_per_chunk

SUITE = get_suite("x25519-sha512-ell2-ro")
POLICY = parse_policy("min_upload_records = 1\nepsilon_per_release = 0\nmin_reported_count = 0")
PER_RECORD = 3


def cpu_seconds(action: Callable[[], object], repeat: int) -> float:
    """The least process CPU time of ``repeat`` runs of ``action``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def opening(records: int, identifiers: int) -> pb.ClientMessage:
    return pb.ClientMessage(
        open_session=pb.OpenSession(
            mode=pb.MATCH_MODE_COUNT,
            suite=SUITE.suite_id,
            normalization_version=NORMALIZATION_VERSION,
            protocol_version=PROTOCOL_VERSION,
            record_count=records,
            identifier_count=identifiers,
        )
    )


def u_chunks(session_id: bytes, u: np.ndarray[Any, Any], records: int) -> list[pb.ClientMessage]:
    """U as an honest client chunks it, tags spreading its rows evenly over the records."""
    per_chunk = rows_per_chunk(SUITE.element_size + 4)
    chunks = []
    for start in range(0, len(u), per_chunk):
        stop = min(start + per_chunk, len(u))
        tags = (np.arange(start, stop) % records).astype("<u4")
        chunk = pb.AdvertiserSetChunk(
            session_id=session_id,
            offset=start,
            count=stop - start,
            elements=u[start:stop].tobytes(),
            record_tags=tags.tobytes(),
        )
        chunks.append(pb.ClientMessage(advertiser_set=chunk))
    return chunks


def session(inputs: PlatformInputs, engine: BatchEngine, records: int, n: int) -> PlatformRole:
    request = read_open_session(opening(records, n))
    decision = check_session(POLICY, "mallory", Mode.COUNT, records, 0.0, 0, False)
    role = PlatformRole(request, decision, inputs, engine=engine)
    for _ in role.start():
        pass
    return role


def run(elements: int, repeat: int) -> dict[str, Any]:
    records = elements // PER_RECORD
    engine = BatchEngine(workers=1)
    key = SUITE.generate_key()
    v = default_engine().hash_to_curve_many(
        SUITE, [b"platform %d" % i for i in range(1000)], SUITE.dst
    )
    inputs = PlatformInputs(1, key, v, np.arange(len(v), dtype=np.int64))
    point = SUITE.hash_to_curve(b"one guess", SUITE.dst)
    duplicated = np.frombuffer(point * elements, dtype=np.uint8).reshape(elements, -1)
    distinct = default_engine().hash_to_curve_many(
        SUITE, [b"customer %d" % i for i in range(elements)], SUITE.dst
    )

    def refuse_duplicates() -> None:
        role = session(inputs, engine, records, elements)
        try:
            for chunk in u_chunks(role.session_id, duplicated, records):
                role.handle(chunk)
        except InvalidElement:
            return
        raise AssertionError("the duplicated U was not refused")

    def refuse_at_opening() -> None:
        try:
            session(inputs, engine, 10, elements)
        except LimitExceeded:
            return
        raise AssertionError("the oversized opening was not refused")

    def honest(role_out: list[PlatformRole]) -> Callable[[], None]:
        def run_honest() -> None:
            role = session(inputs, engine, records, elements)
            for chunk in u_chunks(role.session_id, distinct, records):
                role.handle(chunk)
            role_out.append(role)

        return run_honest

    print(f"refusal benchmark: {elements:,} elements, {records:,} records, in-process engine")
    results: dict[str, float] = {}
    results["refuse_at_opening"] = cpu_seconds(refuse_at_opening, repeat)
    results["refuse_duplicated_u"] = cpu_seconds(refuse_duplicates, repeat)
    print(f"  refuse the duplicated U: {results['refuse_duplicated_u']:.3f} s CPU", flush=True)
    results["duplicate_check"] = cpu_seconds(lambda: find_duplicate(distinct), repeat)
    results["validate"] = cpu_seconds(lambda: engine.validate(SUITE, distinct), repeat)
    # Multiplying is the long part: once (its spread is small next to the ratio it gives).
    results["multiply_duplicated_u"] = cpu_seconds(
        lambda: engine.encrypt(SUITE, key, duplicated), 1
    )
    print(f"  multiply the duplicated U: {results['multiply_duplicated_u']:.1f} s CPU", flush=True)
    results["honest_u"] = cpu_seconds(honest([]), 1)
    engine.close()
    results["ratio_multiply_to_refuse"] = (
        results["multiply_duplicated_u"] / results["refuse_duplicated_u"]
    )
    return {
        "elements": elements,
        "records": records,
        "repeat": repeat,
        "cpu_s": results,
        "load_average": os.getloadavg(),
    }


def render(result: dict[str, Any], info: dict[str, object], command: str) -> str:
    cpu = result["cpu_s"]
    n, records = result["elements"], result["records"]
    lines = [
        *heading("Refusing a hostile advertiser set", info, command),
        f"U of {n:,} elements over {records:,} records (three per record, tags in order): one "
        "valid X25519 point repeated, or as many distinct points. The platform role and a "
        "one-process batch engine run in the benchmark's process, so its CPU time is the "
        f"platform's. Best of {result['repeat']} runs, except the multiplications (one run). "
        "Load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.2f}" for x in result["load_average"])
        + ".",
        "",
        "| what the platform does | CPU s |",
        "|---|---|",
        f"| refuse an opening announcing {n:,} identifiers for 10 records "
        f"| {cpu['refuse_at_opening']:.6f} |",
        f"| receive the duplicated U and refuse it (sizes, tags, identifiers per record, "
        f"duplicates) | **{cpu['refuse_duplicated_u']:.3f}** |",
        f"| multiply the duplicated U by b (what it cost before the checks came first) "
        f"| **{cpu['multiply_duplicated_u']:.1f}** |",
        f"| an honest U: receive, check, validate and multiply | {cpu['honest_u']:.1f} |",
        f"| of which the duplicate check | {cpu['duplicate_check']:.3f} |",
        f"| of which validating every element | {cpu['validate']:.3f} |",
        "",
        f"Refusing the duplicated U costs 1/{cpu['ratio_multiply_to_refuse']:.0f} of "
        "multiplying it: the refusal reads bytes and compares 64-bit keys, it never touches "
        "the group. An honest U is validated whole before it is multiplied (so that an invalid "
        "element anywhere costs no multiplication either); the multiplication validates each "
        "chunk again, which costs the validation line above once more.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--elements", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    info, command = machine(), command_line()
    result = run(args.elements, args.repeat)
    text = render(result, info, command)
    print()
    print(text)
    if args.write_results:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        result["command"], result["machine"] = command, info
        (RESULTS_DIR / "refusal.json").write_text(json.dumps(result, indent=2))
        write_section("refusal", text)


if __name__ == "__main__":
    main()
