"""The sessions of the end-to-end benchmark, each checked against the plaintext truth.

* :func:`run_cli` — ``cleanroom match --mode count|ids --json`` as its own process, as an
  advertiser runs it once: the wall from spawn to exit, CPU of its process tree and of the
  server's during the session, peak RSS; :func:`run_cli_sessions` — a count session and the
  median of a few ids sessions.
* :func:`run_library` — a long-lived :class:`cleanroom.advertiser.Advertiser` in a process of
  its own (``_e2e_library.py``): one count match, then the ids match again and again on a warm
  channel and warm workers; the bytes each way, counted by a gRPC interceptor.
* :func:`run_openmined` — OpenMined PSI in its own venv (``_openmined_run.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _e2e_data import Inputs, positions_digest
from _e2e_library import READY as LIBRARY_READY
from _e2e_platform import Platform
from _harness import Server, backend_env, cleanroom_executable, run_measured

HERE = Path(__file__).resolve().parent
OPENMINED_SCRIPT = HERE / "_openmined_run.py"
LIBRARY_SCRIPT = HERE / "_e2e_library.py"


def run_cli(
    mode: str, backend: str, server: Server, platform: Platform, inputs: Inputs, work: Path
) -> dict[str, Any]:
    """``cleanroom match`` in one mode as a subprocess; its measurements, checked against truth."""
    out = work / f"matched-{mode}-{backend}.csv"
    argv = match_argv(mode, server, platform, inputs, out)
    server_main, server_tree = server.main_cpu_s(), server.tree_cpu_s()
    measured, stdout = run_measured(argv, {server.process.pid}, env=backend_env(backend))
    report: dict[str, Any] = json.loads(stdout)
    check_cli(mode, report, out, inputs)
    phases = dict(report.get("phases", {}))
    result = {
        **dataclasses.asdict(measured),
        "phases": phases,
        "server_main_cpu_s": server.main_cpu_s() - server_main,
        "server_tree_cpu_s": server.tree_cpu_s() - server_tree,
        "count": report["count"],
        "identifiers_sent": report["identifiers_sent"],
        "platform_set_size": report["platform_set_size"],
    }
    result["total_cpu_s"] = measured.cpu_s + result["server_tree_cpu_s"]
    print(
        f"  match --mode {mode} ({backend}): {measured.wall_s:.2f} s wall; CPU client tree "
        f"{measured.cpu_s:.1f} s + server tree {result['server_tree_cpu_s']:.1f} s; client "
        f"RSS {measured.max_rss_mb:.0f} MB (pool {measured.pool_max_rss_mb:.0f} MB); phases: "
        + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()),
        flush=True,
    )
    return result


def run_cli_sessions(
    backend: str,
    server: Server,
    platform: Platform,
    inputs: Inputs,
    work: Path,
    repeat: int,
    between: Callable[[], object] | None = None,
) -> dict[str, dict[str, Any]]:
    """A count session, then ``repeat`` ids sessions: the one of median wall stands for them.

    A single session's wall moves by a tenth on this shared machine from one run to the next;
    the median of a few is what a user typically sees. The peak RSS is the largest of all.
    ``between``: called before each ids session (the server idle), to measure what the machine
    does just then.
    """
    count = run_cli("count", backend, server, platform, inputs, work)
    runs = []
    for _ in range(repeat):
        if between is not None:
            between()
        runs.append(run_cli("ids", backend, server, platform, inputs, work))
    ids = dict(sorted(runs, key=lambda run: run["wall_s"])[(len(runs) - 1) // 2])
    ids["runs_wall_s"] = [run["wall_s"] for run in runs]
    for key in ("max_rss_mb", "pool_max_rss_mb"):
        ids[key] = max(run[key] for run in runs)
    return {"count": count, "ids": ids}


def match_argv(
    mode: str, server: Server, platform: Platform, inputs: Inputs, out: Path
) -> list[str]:
    """``cleanroom match --json`` of the advertiser's list in ``mode``; ids mode writes ``out``
    (removed first, so a check never reads an earlier run's)."""
    argv = [cleanroom_executable(), "match", "--server", server.address]
    argv += ["--tls-dir", str(platform.tls_dir), "--input", str(inputs.customers_csv)]
    argv += ["--mode", mode, "--json"]
    if mode == "ids":
        out.unlink(missing_ok=True)
        argv += ["--out", str(out)]
    return argv


def check_cli(mode: str, report: dict[str, Any], out: Path, inputs: Inputs) -> None:
    """Exit 1 unless the CLI's count (and, in ids mode, the rows in ``out``) equal the truth."""
    truth = len(inputs.matched_positions)
    if report["count"] != truth:
        raise SystemExit(f"FAILED: cleanroom {mode} mode counted {report['count']}, truth {truth}")
    if mode != "ids":
        return
    with out.open(encoding="utf-8", newline="") as f:
        matched = {row["record_id"] for row in csv.DictReader(f)}
    if report["matched_rows"] != truth or matched != inputs.matched_record_ids:
        raise SystemExit(
            f"FAILED: cleanroom ids mode matched {len(matched)} rows "
            f"({len(matched - inputs.matched_record_ids)} not in the truth, "
            f"{len(inputs.matched_record_ids - matched)} missed); truth {truth}"
        )


def run_library(
    backend: str,
    server: Server,
    platform: Platform,
    inputs: Inputs,
    repeat: int,
    before_each: Callable[[frozenset[int]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A long-lived Advertiser: a count match, then ``repeat + 1`` ids matches (the first warms
    the workers); every result checked against the truth.

    ``before_each``: called just before each warm match, with the Advertiser idle, given the
    processes left running meanwhile (the server and the Advertiser's); what it returns is in
    ``paired``, one per warm match. The wall and CPU of what it runs are not counted in the
    library's.
    """
    argv = [sys.executable, str(LIBRARY_SCRIPT), "--server", server.address]
    argv += ["--tls-dir", str(platform.tls_dir), "--input", str(inputs.customers_csv)]
    argv += ["--repeat", str(repeat)]
    paired: list[dict[str, Any]] = []

    def converse(library: subprocess.Popen[str]) -> str:
        assert before_each is not None and library.stdin and library.stdout
        output = []
        for line in library.stdout:
            if line.strip() != LIBRARY_READY:
                output.append(line)
                continue
            paired.append(before_each(frozenset({server.process.pid, library.pid})))
            library.stdin.write("go\n")
            library.stdin.flush()
        return "".join(output)

    server_tree = server.tree_cpu_s()
    if before_each is None:
        measured, stdout = run_measured(argv, {server.process.pid}, env=backend_env(backend))
    else:
        argv.append("--paced")
        measured, stdout = run_measured(
            argv, {server.process.pid}, env=backend_env(backend), converse=converse
        )
        # The library's own wall and CPU: less those of what ran while it waited.
        measured = dataclasses.replace(
            measured,
            wall_s=measured.wall_s - sum(run["process"]["wall_s"] for run in paired),
            cpu_s=measured.cpu_s - sum(run["process"]["cpu_s"] for run in paired),
        )
    result: dict[str, Any] = json.loads(stdout)
    truth, digest = len(inputs.matched_positions), positions_digest(inputs.matched_positions)
    for run in [result["count"], *result["ids"]]:
        if run["count"] != truth:
            raise SystemExit(f"FAILED: the library counted {run['count']}, truth {truth}")
    if any(run["matched_digest"] != digest for run in result["ids"]):
        raise SystemExit("FAILED: the library's ids matches differ from the truth")
    result["process"] = dataclasses.asdict(measured)
    result["server_tree_cpu_s"] = server.tree_cpu_s() - server_tree
    result["paired"] = paired
    walls = ", ".join(f"{run['wall_s']:.2f}" for run in result["ids"])
    print(
        f"  library ({backend}): count {result['count']['wall_s']:.2f} s, ids {walls} s; "
        f"RSS {measured.max_rss_mb:.0f} MB (pool {measured.pool_max_rss_mb:.0f} MB)",
        flush=True,
    )
    return result


def run_openmined(python: Path, inputs: Inputs, work: Path) -> dict[str, Any]:
    """OpenMined's four phases in one process of its own venv; checked against the truth."""
    out = work / "openmined.json"
    argv = [str(python), str(OPENMINED_SCRIPT), "--server-inputs", str(inputs.openmined_server)]
    argv += ["--client-inputs", str(inputs.openmined_client), "--out", str(out)]
    measured, _ = run_measured(argv, set())
    result: dict[str, Any] = json.loads(out.read_text())
    intersection = result.pop("intersection")
    if intersection != inputs.matched_positions:
        got, truth = set(intersection), set(inputs.matched_positions)
        raise SystemExit(
            f"FAILED: OpenMined's intersection has {len(got)} elements ({len(got - truth)} not "
            f"in the truth, {len(truth - got)} missed); truth {len(truth)}"
        )
    result["process"] = dataclasses.asdict(measured)
    print(
        f"  OpenMined: {result['total_s']:.2f} s ("
        + ", ".join(f"{k} {v:.2f}" for k, v in result["phases"].items())
        + f"); process {measured.wall_s:.2f} s wall, {measured.max_rss_mb:.0f} MB",
        flush=True,
    )
    return result
