"""Where a match session's core time goes, sampled over the whole machine with Linux ``perf``.

The end-to-end benchmark's *efficiency* is the ideal crypto of a session (its operations at the
per-operation costs measured on one core) over the session's wall time on every core. This
accounts for all of that core time, so that the distance to the ideal can be read off one run:
one ``cleanroom match --mode ids`` session against a real ``platform serve`` (mTLS, loopback,
the epoch precomputed, a warm-up session first), under ``perf record -a -e cpu-clock``, each
sample put in one row by its process and the code it was in:

* *crypto*: the X25519 ladder and the hash to curve (their C extensions; with the ``openssl``
  backend, ``cryptography``'s compiled module, which runs OpenSSL's X25519), in any process;
* *validation*: the check of received elements (its C extension), in any process;
* *advertiser CLI, main thread* (user and kernel apart) and *its other threads*; *advertiser
  workers* and *server workers*, what they run besides the crypto; *server main process*;
* *idle* (no task on the core) and *other* (the rest of the machine, ``perf`` included).

Next to it, the ideal at the backend's per-operation costs measured just before and just after
(:mod:`_e2e_costs`), and how the session's crypto compares with it: above 1, the crypto itself
ran slower in the session than on one core alone.

The backend is ``ifma`` where this CPU runs it, else ``openssl`` (``--backend`` chooses). What is
not crypto costs the same with either, so it can be profiled on any CPU; with ``openssl`` the
Python around each one-at-a-time exchange falls in the workers' rows, not in *crypto*.

    python benchmarks/session_profile.py [--n 1000000] [--frequency 499] [--backend B]
        [--perf-data PATH] [--write-results]

Needs ``perf`` (Debian's ``linux-perf``) allowed to sample every CPU (root, or
``kernel.perf_event_paranoid`` at most 0). Writes benchmarks/results/session_profile.json and,
with ``--write-results``, the "session_profile" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _e2e_costs import measure_unit_costs
from _e2e_data import Config, Inputs, canonical_emails, write_inputs, write_platform_csv
from _e2e_figures import costs_around, ideal_core_s
from _e2e_platform import Platform
from _e2e_sessions import check_cli, match_argv, run_cli
from _harness import Server, backend_env, become_subreaper, reap_orphans
from _report import RESULTS_DIR, command_line, heading, machine, write_section

from cleanroom.crypto.x25519 import ifma_problem

SEED = 7
UNIT_COST_MESSAGES = 20_000
# The compiled code of each backend's crypto (OpenSSL is linked into cryptography's module).
CRYPTO_MODULES = {"ifma": ("_x25519_ifma", "_h2c25519"), "openssl": ("_rust.abi3", "_h2c25519")}
VALIDATION_MODULES = ("_check25519",)
ROWS = (
    ("crypto", "crypto (X25519 ladder, hash to curve)"),
    ("validation", "validation of received elements"),
    ("cli_main_user", "advertiser CLI, main thread, user"),
    ("cli_main_kernel", "advertiser CLI, main thread, kernel"),
    ("cli_threads", "advertiser CLI, other threads"),
    ("advertiser_workers", "advertiser workers, besides the crypto"),
    ("server_main", "server main process"),
    ("server_workers", "server workers, besides the crypto"),
    ("idle", "idle"),
    ("other", "other (the rest of the machine)"),
)

_SAMPLE = re.compile(r"^\s*(?P<comm>.*?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+\S+\s+\((?P<dso>.*)\)\s*$")
_FORK = re.compile(r"PERF_RECORD_FORK\((?P<pid>\d+):(?P<tid>\d+)\):\((?P<ppid>\d+):\d+\)")


def check_perf() -> str:
    """The ``perf`` executable, once it has shown it may sample every CPU."""
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("session_profile needs perf: install Debian's linux-perf")
    probe = subprocess.run(
        [perf, "record", "-a", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"perf may not sample every CPU here ({last}); run as root")
    return perf


def classify(
    lines: Iterable[str], perf_pid: int, server_pid: int, crypto_modules: tuple[str, ...]
) -> Counter[str]:
    """Samples per row of :data:`ROWS`, from ``perf script`` output (with its task events).

    The CLI is the one process ``perf`` started; a process's parent comes from its fork event
    (synthesized by ``perf`` for the processes already running, such as the server's workers).
    """
    parent: dict[int, int] = {}
    samples: list[tuple[int, int, str]] = []
    for line in lines:
        fork = _FORK.search(line)
        if fork is not None:
            if fork["pid"] == fork["tid"] and fork["pid"] != fork["ppid"]:
                parent[int(fork["pid"])] = int(fork["ppid"])
            continue
        sample = _SAMPLE.match(line)
        if sample is not None:
            samples.append((int(sample["pid"]), int(sample["tid"]), sample["dso"]))
    cli = [pid for pid, ppid in parent.items() if ppid == perf_pid]
    if len(cli) != 1:
        raise SystemExit(f"expected one process started by perf, found {len(cli)}")
    cli_pid = cli[0]

    def descends(pid: int, ancestor: int) -> bool:
        while pid in parent:
            pid = parent[pid]
            if pid == ancestor:
                return True
        return False

    rows: Counter[str] = Counter()
    for pid, tid, dso in samples:
        module = Path(dso).name
        if pid == 0:
            rows["idle"] += 1
        elif module.startswith(crypto_modules):
            rows["crypto"] += 1
        elif module.startswith(VALIDATION_MODULES):
            rows["validation"] += 1
        elif pid == cli_pid:
            kernel = dso.startswith("[kernel")
            main = "cli_main_kernel" if kernel else "cli_main_user"
            rows[main if tid == pid else "cli_threads"] += 1
        elif descends(pid, cli_pid):
            rows["advertiser_workers"] += 1
        elif pid == server_pid:
            rows["server_main"] += 1
        elif descends(pid, server_pid):
            rows["server_workers"] += 1
        else:
            rows["other"] += 1
    return rows


def profile_session(
    perf: str,
    frequency: int,
    backend: str,
    server: Server,
    platform: Platform,
    inputs: Inputs,
    work: Path,
    data: Path,
) -> dict[str, Any]:
    """One ids session under ``perf record -a`` (recorded to ``data``): its samples by row, the
    core time they cover."""
    out = work / "matched-profiled.csv"
    argv = match_argv("ids", server, platform, inputs, out)
    # A fixed period of CPU clock, so that each sample stands for 1/frequency s of one core.
    period = str(round(1e9 / frequency))
    record = [perf, "record", "-a", "-e", "cpu-clock", "-c", period, "-o", str(data)]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*record, "--", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=backend_env(backend),
    )
    stdout, stderr = process.communicate()
    perf_wall = time.perf_counter() - started
    reap_orphans({server.process.pid})
    if process.returncode != 0:
        raise SystemExit(f"the profiled session failed ({process.returncode}):\n{stderr}")
    report = json.loads(stdout)
    check_cli("ids", report, out, inputs)
    script = subprocess.run(
        [perf, "script", "-i", str(data), "-F", "pid,tid,comm,ip,dso", "--show-task-events"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = classify(
        script.stdout.splitlines(), process.pid, server.process.pid, CRYPTO_MODULES[backend]
    )
    return {
        "perf_wall_s": perf_wall,  # perf's own start and end included
        "recorded_core_s": sum(rows.values()) / frequency,
        "samples": dict(rows),
        "phases": report.get("phases", {}),
    }


def unit_costs(backend: str, server: Server, cores: int) -> dict[str, Any]:
    costs = measure_unit_costs(backend, UNIT_COST_MESSAGES, cores, frozenset({server.process.pid}))
    print(
        f"  {backend}: hash_to_curve {costs['hash_to_curve_us']:.2f} µs, exchange "
        f"{costs['exchange_us']:.2f} µs",
        flush=True,
    )
    return costs


def render(result: dict[str, Any], info: dict[str, object], command: str) -> str:
    """The section: how the session was run, its efficiency, and its core time by row."""
    n, cores, costs, backend = result["n"], result["cores"], result["costs"], result["backend"]
    samples = result["session"]["samples"]
    total = sum(samples.values())
    core_s = result["session"]["recorded_core_s"]
    lines = heading("Where a session's core time goes", info, command)
    lines += [
        f"One `cleanroom match --mode ids` session, n = N = {n:,} (overlap 50%), backend "
        f"`{backend}`, against `platform serve` on loopback (mTLS, the epoch precomputed, after "
        f"a warm-up session), under `perf record -a -e cpu-clock`, {result['frequency']} "
        f"samples a second on each of the {cores} cores: {total:,} samples, {core_s:.2f} "
        f"core-seconds ({core_s / cores:.2f} s of wall while the session ran).",
        "",
        f"Ideal crypto: {result['ideal_core_s']:.2f} core-seconds (hash to curve "
        f"{costs['hash_to_curve_us']:.2f} µs, exchange {costs['exchange_us']:.2f} µs, on one "
        f"core, the means of before and after): **efficiency {result['efficiency']:.2f}**. "
        f"The session's crypto took {result['crypto_core_s']:.2f} core-seconds, "
        f"{result['crypto_vs_ideal']:.2f}x its ideal.",
        "",
        "| where | share of core time | core-seconds |",
        "|---|---:|---:|",
    ]
    for key, label in ROWS:
        share = samples.get(key, 0) / total
        lines.append(f"| {label} | {share:.1%} | {share * core_s:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="n = N (%(default)s)")
    parser.add_argument("--frequency", type=int, default=499, help="samples a second a core")
    parser.add_argument(
        "--backend",
        choices=sorted(CRYPTO_MODULES),
        help="the X25519 backend (ifma where this CPU runs it, else openssl)",
    )
    parser.add_argument(
        "--perf-data",
        type=Path,
        help="keep perf's recording there (for `perf report --sort pid,tid,sym -i PATH`)",
    )
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    perf = check_perf()
    problem = ifma_problem()
    backend = args.backend or ("openssl" if problem is not None else "ifma")
    if backend == "ifma" and problem is not None:
        raise SystemExit(f"the ifma backend cannot run here: {problem}")
    print(f"backend: {backend}", flush=True)
    become_subreaper()
    cores = len(os.sched_getaffinity(0))
    config = Config(args.n, args.n, 0.5)
    with tempfile.TemporaryDirectory(prefix="session-profile-") as temporary:
        work = Path(temporary)
        print(f"building the platform and the lists (n = N = {args.n:,}) …", flush=True)
        emails = canonical_emails(config.people_needed, SEED)
        platform = Platform(work / "platform", config.big_n, config.n)
        platform.folder.mkdir()
        write_platform_csv(config, emails, SEED, work / "users.csv")
        platform.build(work / "users.csv")
        inputs = write_inputs(config, emails, SEED, work)
        platform.rotate(backend)
        server = platform.serve(backend, work / "server.log")
        try:
            print("per-operation costs on one core, before:", flush=True)
            before = unit_costs(backend, server, cores)
            run_cli("ids", backend, server, platform, inputs, work)  # the warm-up
            data = args.perf_data or work / "perf.data"
            session = profile_session(
                perf, args.frequency, backend, server, platform, inputs, work, data
            )
            print("after:", flush=True)
            after = unit_costs(backend, server, cores)
        finally:
            server.stop()
    costs = costs_around(before, after)  # with each measurement, before and after
    ideal = ideal_core_s(config, costs)["session"]
    core_s = session["recorded_core_s"]
    crypto_core_s = session["samples"].get("crypto", 0) / args.frequency
    result = {
        "machine": machine(),
        "command": command_line(),
        "n": args.n,
        "backend": backend,
        "cores": cores,
        "frequency": args.frequency,
        "costs": costs,
        "ideal_core_s": ideal,
        "efficiency": ideal / core_s,
        "crypto_core_s": crypto_core_s,
        "crypto_vs_ideal": crypto_core_s / ideal,
        "session": session,
    }
    section = render(result, result["machine"], result["command"])
    print(section)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "session_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.write_results:
        write_section("session_profile", section)


if __name__ == "__main__":
    main()
