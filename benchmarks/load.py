"""Load benchmark: many advertisers in concurrent sessions against one real server.

Setup (subprocesses of the real CLI, not timed): ``cleanroom platform init``,
``import`` of the platform's users (one email each, all eligible), ``epoch rotate``, and one
``issue-cert`` per advertiser (plus one for the health checker); then ``cleanroom platform
serve`` over mTLS on 127.0.0.1, port 0, with a policy of ``epsilon_per_release = 0`` (exact
counts) and ids mode granted to every advertiser.

Each round starts every advertiser's ``cleanroom match --json`` at once (a subprocess each, its
own certificate and its own list) and waits for all of them; modes rotate over count, audience
and ids from advertiser to advertiser and round to round. Every advertiser's list has a different
number of platform users in it, so an answer that reached the wrong advertiser, or mixed two
lists, cannot come out right: each count is compared with the plaintext truth of that
advertiser's own list, each ids-mode output file with its matched record ids, and at the end
each stored audience with its advertiser's matched users.

Meanwhile one thread calls ``grpc.health.v1.Health/Check`` on the server every
``--health-interval`` seconds (its latency and any failure recorded), and another reads the
session ledger to find how many sessions were open at once.

Reported: concurrent sessions held (peak of the ledger's open sessions), sessions per minute
(completed sessions over the wall time of the rounds), p50/p95 of the session time (the CLI's
``match`` phase: the gRPC session) and of the whole CLI run (spawn to exit), and health-check
latency p50/p95/max.

With ``--attack``, every round runs twice, first without and then with ``--hostile`` hostile
advertisers (``benchmarks/_attackers.py``: idle streams held up to and beyond the platform's
per-advertiser cap, and sessions sending an oversized or duplicated U), on the same server with
its default admission limits. Reported per phase: honest sessions per minute, session p95, and
the health check's worst latency, and the throughput under attack as a share of the
attacker-free throughput of the same invocation; and what the attackers' calls met.

Usage::

    python benchmarks/load.py [--advertisers 8] [--records 20000] [--platform-users 50000]
        [--rounds 2] [--server-workers N] [--client-workers 1] [--health-interval 0.05]
        [--attack [--hostile 2] [--attack-elements 300000]]
        [--workdir DIR] [--out FILE.json] [--write-results]

``--write-results`` rewrites the "load" section of benchmarks/RESULTS.md and
benchmarks/results/load.json (with ``--attack``: the "load-attack" section and
load_attack.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _attackers import Attacker
from _report import RESULTS_DIR, command_line, heading, machine, write_section

MODES = ("count", "audience", "ids")


def cleanroom_executable() -> str:
    """The ``cleanroom`` script beside this interpreter."""
    return str(Path(sys.executable).with_name("cleanroom"))


def policy_text(advertisers: list[str]) -> str:
    """ε = 0 (exact counts), no thresholds in the way, ids granted to every advertiser."""
    text = (
        "epsilon_per_release = 0.0\nmin_upload_records = 1\nmin_reported_count = 0\n"
        "max_sessions_per_day = 1000000\n"
    )
    for name in advertisers:
        text += f'\n[advertisers.{name}]\nmodes_allowed = ["count", "audience", "ids"]\n'
    return text


# -- data -------------------------------------------------------------------------------------


def platform_email(i: int) -> str:
    """The i-th platform user's canonical email (user ``user{i}``)."""
    return f"customer{i}@example{i % 97}.com"


@dataclass(frozen=True)
class AdvertiserList:
    """One advertiser's list and its plaintext truth."""

    name: str
    path: Path
    matched_records: frozenset[str]
    matched_users: list[str]  # platform user ids, sorted as ``audiences show`` lists them


def write_platform_csv(path: Path, users: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("user_id,type,value,source,ads_matching_consent\n")
        for i in range(users):
            out.write(f"user{i},email,{platform_email(i)},signup,true\n")


def write_advertiser_list(
    work: Path, index: int, name: str, records: int, platform_users: int
) -> AdvertiserList:
    """``records`` customers: a different number on the platform for each advertiser.

    Advertiser ``index`` has ``records / 2 - 7 * index`` platform users (from a window that
    overlaps the next advertiser's), the rest outsiders, in a seeded order.
    """
    matched = max(1, min(records // 2 - 7 * index, platform_users))
    start = (index * platform_users // 16) % max(1, platform_users - matched + 1)
    users = list(range(start, start + matched))
    emails = [(f"user{i}", platform_email(i)) for i in users]
    emails += [(None, f"{name}.outsider{j}@example.org") for j in range(records - matched)]
    random.Random(1000 + index).shuffle(emails)  # benchmark data, not a secret
    path = work / f"{name}.csv"
    matched_records = set()
    with path.open("w", encoding="utf-8") as out:
        out.write("record_id,email,marketing_consent\n")
        for row, (user, email) in enumerate(emails):
            record_id = f"{name}-r{row}"
            out.write(f"{record_id},{email},yes\n")
            if user is not None:
                matched_records.add(record_id)
    return AdvertiserList(name, path, frozenset(matched_records), sorted(f"user{i}" for i in users))


# -- processes and monitors ---------------------------------------------------------------------


def run_cli(*argv: str | Path) -> str:
    """Run ``cleanroom ARGV…`` to its end; fail loudly; its stdout."""
    done = subprocess.run(
        [cleanroom_executable(), *map(str, argv)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"cleanroom {' '.join(map(str, argv))} failed:\n{done.stderr}")
    return done.stdout


class Server:
    """``cleanroom platform serve`` as a subprocess (log to a file), stopped with SIGTERM."""

    def __init__(self, db: Path, policy: Path, workers: int | None, log: Path) -> None:
        argv = [cleanroom_executable(), "platform", "serve", "--db", str(db)]
        argv += ["--listen", "127.0.0.1:0", "--policy", str(policy), "--grace", "0"]
        if workers is not None:
            argv += ["--workers", str(workers)]
        self._log = log.open("w")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"the server did not start: {line!r} (see {log})")
        self.address = line.removeprefix("listening on ")

    def peak_rss_mb(self) -> float:
        """VmHWM of the server process."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        self._log.close()


@dataclass
class HealthRecord:
    """Every health check: when (s since start), latency, status or error, under load or not."""

    at_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    under_load: list[bool] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)


def poll_health(
    address: str,
    tls_dir: Path,
    interval: float,
    loaded: threading.Event,
    stop: threading.Event,
    record: HealthRecord,
    phase: list[str],
) -> None:
    """Call Health/Check every ``interval`` seconds until ``stop``; append to ``record``.

    ``phase[0]`` names what is running (read at each check).
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from cleanroom import tls

    request = health_pb2.HealthCheckRequest(service="cleanroom.v1.Matcher")
    origin = time.perf_counter()
    with grpc.secure_channel(address, tls.channel_credentials(tls_dir)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.wait(interval):
            under_load = loaded.is_set()
            start = time.perf_counter()
            try:
                reply = stub.Check(request, timeout=30.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = f"error {exc.code().name}"
            record.at_s.append(start - origin)
            record.latency_s.append(time.perf_counter() - start)
            record.status.append(status)
            record.under_load.append(under_load)
            record.phase.append(phase[0])


def watch_open_sessions(db: Path, stop: threading.Event, peak: list[int]) -> None:
    """Read the ledger's open sessions every 50 ms; keep the largest number seen in ``peak``."""
    from cleanroom.store import sessions
    from cleanroom.store.database import open_database

    with open_database(db) as database:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], len(sessions.open_sessions(database)))


@dataclass(frozen=True)
class SessionRun:
    """One ``cleanroom match`` run of the load."""

    round: int
    advertiser: str
    mode: str
    wall_s: float
    session_s: float
    count: int | None
    expected: int
    correct: bool


def run_round(
    round_number: int,
    lists: list[AdvertiserList],
    address: str,
    work: Path,
    client_workers: int,
) -> tuple[list[SessionRun], float]:
    """Start every advertiser's match at once; wait for all; check each; runs and round wall."""
    processes = []
    start = time.perf_counter()
    for index, advertiser in enumerate(lists):
        mode = MODES[(index + round_number) % len(MODES)]
        argv = [cleanroom_executable(), "match", "--server", address]
        argv += ["--tls-dir", str(work / advertiser.name), "--input", str(advertiser.path)]
        argv += ["--mode", mode, "--json", "--workers", str(client_workers)]
        out = work / f"{advertiser.name}-round{round_number}.csv"
        if mode == "ids":
            argv += ["--out", str(out)]
        spawned = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append((advertiser, mode, out, spawned, process))
    ends: dict[int, float] = {}
    outputs: dict[int, tuple[str, str]] = {}

    def wait_for(slot: int, process: subprocess.Popen[str]) -> None:
        outputs[slot] = process.communicate()
        ends[slot] = time.perf_counter()

    waiters = [
        threading.Thread(target=wait_for, args=(slot, entry[4]))
        for slot, entry in enumerate(processes)
    ]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    round_wall = time.perf_counter() - start
    runs = []
    for slot, (advertiser, mode, out, spawned, process) in enumerate(processes):
        stdout, stderr = outputs[slot]
        if process.returncode != 0:
            raise SystemExit(f"{advertiser.name} ({mode}) failed:\n{stderr}")
        report = json.loads(stdout)
        expected = len(advertiser.matched_records)
        correct = report["count"] == expected and report["mode"] == mode
        if mode == "ids":
            with out.open(encoding="utf-8", newline="") as f:
                written = {row["record_id"] for row in csv.DictReader(f)}
            correct = correct and written == advertiser.matched_records
        runs.append(
            SessionRun(
                round=round_number,
                advertiser=advertiser.name,
                mode=mode,
                wall_s=ends[slot] - spawned,
                session_s=float(report["phases"]["match"]),
                count=report["count"],
                expected=expected,
                correct=correct,
            )
        )
    return runs, round_wall


def check_audiences(db: Path, lists: list[AdvertiserList], audience_sessions: int) -> bool:
    """Every stored audience is its own advertiser's matched users, one per audience session."""
    by_name = {advertiser.name: advertiser for advertiser in lists}
    audiences = json.loads(run_cli("platform", "audiences", "list", "--db", db, "--json"))
    if len(audiences["audiences"]) != audience_sessions:
        return False
    for audience in audiences["audiences"]:
        shown = json.loads(
            run_cli("platform", "audiences", "show", str(audience["id"]), "--db", db, "--json")
        )
        if shown["user_ids"] != by_name[audience["advertiser"]].matched_users:
            return False
    return True


# -- the benchmark --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    names = [f"adv{i}" for i in range(args.advertisers)]
    db = work / "platform.db"
    (work / "policy.toml").write_text(policy_text(names))
    write_platform_csv(work / "users.csv", args.platform_users)
    lists = [
        write_advertiser_list(work, i, name, args.records, args.platform_users)
        for i, name in enumerate(names)
    ]
    setup_start = time.perf_counter()
    run_cli("platform", "init", "--db", db)
    run_cli("platform", "import", "--db", db, work / "users.csv")
    run_cli("platform", "epoch", "rotate", "--db", db)
    hostile = [f"hostile{i}" for i in range(args.hostile if args.attack else 0)]
    for name in [*names, *hostile, "monitor"]:
        run_cli("platform", "issue-cert", "--db", db, "--advertiser", name, "--out", work / name)
    setup_s = time.perf_counter() - setup_start
    certificates = len(names) + len(hostile) + 1
    print(f"  setup (init, import, rotate, {certificates} certificates): {setup_s:.1f} s")

    server = Server(db, work / "policy.toml", args.server_workers, work / "server.log")
    loaded, stop = threading.Event(), threading.Event()
    health = HealthRecord()
    peak = [0]
    phase = ["between rounds"]
    monitor_args = (server.address, work / "monitor", args.health_interval, loaded, stop)
    monitors = [
        threading.Thread(target=poll_health, args=(*monitor_args, health, phase)),
        threading.Thread(target=watch_open_sessions, args=(db, stop, peak)),
    ]
    for monitor in monitors:
        monitor.start()
    runs: list[SessionRun] = []
    round_walls = []
    phases = ("attacker-free", "under attack") if args.attack else ("load",)
    walls: dict[str, list[float]] = {name: [] for name in phases}
    by_phase: dict[str, list[SessionRun]] = {name: [] for name in phases}
    attack_outcomes: Counter[str] = Counter()
    try:
        for round_number in range(args.rounds):
            for name in phases:
                attackers = [
                    Attacker(server.address, work / hostile_name, args.attack_elements)
                    for hostile_name in hostile
                    if name == "under attack"
                ]
                for attacker in attackers:
                    attacker.start()
                if attackers:
                    time.sleep(2.0)  # the attackers hold their streams before the round starts
                phase[0] = name
                loaded.set()
                round_runs, wall = run_round(
                    round_number, lists, server.address, work, args.client_workers
                )
                loaded.clear()
                phase[0] = "between rounds"
                for attacker in attackers:
                    attacker.stop()
                    attack_outcomes += attacker.outcomes
                runs += round_runs
                round_walls.append(wall)
                walls[name].append(wall)
                by_phase[name] += round_runs
                wrong = [r.advertiser for r in round_runs if not r.correct]
                print(
                    f"  round {round_number + 1} ({name}): {len(round_runs)} sessions in "
                    f"{wall:.1f} s"
                    + (f"; WRONG: {', '.join(wrong)}" if wrong else "; every result exact"),
                    flush=True,
                )
        server_rss = server.peak_rss_mb()
    finally:
        stop.set()
        for monitor in monitors:
            monitor.join()
        server.stop()
    audience_sessions = sum(1 for r in runs if r.mode == "audience")
    audiences_ok = check_audiences(db, lists, audience_sessions)
    ledger = json.loads(run_cli("platform", "sessions", "list", "--db", db, "--json"))
    states = sorted({s["state"] for s in ledger["sessions"]})

    loaded_latency = [
        latency for latency, busy in zip(health.latency_s, health.under_load, strict=True) if busy
    ]
    sessions_wall = sum(round_walls)
    return {
        "advertisers": args.advertisers,
        "records": args.records,
        "platform_users": args.platform_users,
        "rounds": args.rounds,
        "server_workers": args.server_workers,
        "client_workers": args.client_workers,
        "setup_s": setup_s,
        "round_walls_s": round_walls,
        "sessions": len(runs),
        "all_correct": all(r.correct for r in runs),
        "audiences_correct": audiences_ok,
        "ledger_states": states,
        "peak_open_sessions": peak[0],
        "sessions_per_minute": 60 * len(runs) / sessions_wall,
        "session_s": {
            "p50": percentile([r.session_s for r in runs], 0.5),
            "p95": percentile([r.session_s for r in runs], 0.95),
            "max": max(r.session_s for r in runs),
        },
        "wall_s": {
            "p50": percentile([r.wall_s for r in runs], 0.5),
            "p95": percentile([r.wall_s for r in runs], 0.95),
            "max": max(r.wall_s for r in runs),
        },
        "health": {
            "checks": len(health.status),
            "under_load": len(loaded_latency),
            "not_serving": [s for s in health.status if s != "SERVING"],
            "p50_s": percentile(loaded_latency or [0.0], 0.5),
            "p95_s": percentile(loaded_latency or [0.0], 0.95),
            "max_s": max(loaded_latency or [0.0]),
            "mean_s": statistics.fmean(loaded_latency or [0.0]),
        },
        "server_peak_rss_mb": server_rss,
        "runs": [vars(r) for r in runs],
        "phases": {
            name: phase_summary(by_phase[name], walls[name], health, name) for name in phases
        },
        "attack_outcomes": dict(sorted(attack_outcomes.items())),
        "hostile": len(hostile),
        "attack_elements": args.attack_elements if args.attack else None,
        "load_average": os.getloadavg(),
    }


def phase_summary(
    runs: list[SessionRun], walls: list[float], health: HealthRecord, name: str
) -> dict[str, Any]:
    """Throughput, session times and health latency of one phase of the rounds."""
    latency = [
        seconds for seconds, at in zip(health.latency_s, health.phase, strict=True) if at == name
    ]
    statuses = [
        status for status, at in zip(health.status, health.phase, strict=True) if at == name
    ]
    return {
        "sessions": len(runs),
        "all_correct": all(r.correct for r in runs),
        "sessions_per_minute": 60 * len(runs) / sum(walls),
        "session_p50_s": percentile([r.session_s for r in runs], 0.5),
        "session_p95_s": percentile([r.session_s for r in runs], 0.95),
        "wall_p95_s": percentile([r.wall_s for r in runs], 0.95),
        "health_checks": len(latency),
        "health_not_serving": [status for status in statuses if status != "SERVING"],
        "health_p95_s": percentile(latency or [0.0], 0.95),
        "health_max_s": max(latency or [0.0]),
    }


def render(result: dict[str, Any], info: dict[str, object], command: str) -> str:
    """The Markdown of the "load" section of RESULTS.md (also printed)."""
    health, session, wall = result["health"], result["session_s"], result["wall_s"]
    verdict = (
        "every result exact"
        if result["all_correct"] and result["audiences_correct"]
        else "**SOME RESULTS WRONG**"
    )
    lines = [
        *heading("Load: concurrent advertisers against one server", info, command),
        f"{result['advertisers']} advertisers, each with its own certificate and a list of "
        f"{result['records']:,} records (a different number of them on the platform for each, "
        f"so cross-talk cannot give a right answer), against a platform of "
        f"{result['platform_users']:,} users (one email each, all eligible); "
        f"{result['rounds']} rounds, each starting every advertiser's `cleanroom match --json "
        f"--workers {result['client_workers']}` at once, modes rotating over count, audience and "
        "ids. Server: `cleanroom platform serve` (mTLS, 127.0.0.1, "
        + (
            "all cores"
            if result["server_workers"] is None
            else f"--workers {result['server_workers']}"
        )
        + ", policy epsilon = 0). Setup (init, import, rotate, certificates) "
        f"{result['setup_s']:.1f} s, not counted.",
        "",
        f"**{result['sessions']} sessions, {verdict}** (counts against each list's plaintext "
        "truth, ids-mode output files against the matched record ids, each stored audience "
        "against its advertiser's matched users); ledger states at the end: "
        f"{', '.join(result['ledger_states'])}.",
        "",
        "| concurrent sessions held (peak open in the ledger) | sessions / min | session p50 s "
        "| session p95 s | CLI run p50 s | CLI run p95 s | health checks under load "
        "| not SERVING | health p50 ms | health p95 ms | health max ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['peak_open_sessions']} | {result['sessions_per_minute']:.1f} | "
        f"{session['p50']:.2f} | {session['p95']:.2f} | {wall['p50']:.2f} | {wall['p95']:.2f} | "
        f"{health['under_load']} | {len(health['not_serving'])} | {1000 * health['p50_s']:.1f} "
        f"| {1000 * health['p95_s']:.1f} | {1000 * health['max_s']:.1f} |",
        "",
        "*Session* is the CLI's own `match` phase (the gRPC session: V down, U and W up, the "
        "result back); *CLI run* is spawn to exit (interpreter start, reading, normalizing, "
        "hashing and encrypting the list, the session). Sessions per minute: completed sessions "
        "over the wall time of the rounds ("
        + ", ".join(f"{w:.1f} s" for w in result["round_walls_s"])
        + "). Health: `grpc.health.v1.Health/Check` over mTLS from a thread of the benchmark, "
        "latencies of the checks made while matches were running. Server peak RSS (VmHWM) "
        f"{result['server_peak_rss_mb']:.0f} MB.",
        "",
        "| round | advertiser | mode | expected | count | CLI run s | session s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        mark = "" if r["correct"] else " **wrong**"
        lines.append(
            f"| {r['round'] + 1} | {r['advertiser']} | {r['mode']} | {r['expected']:,} | "
            f"{r['count']:,}{mark} | {r['wall_s']:.2f} | {r['session_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def render_attack(result: dict[str, Any], info: dict[str, object], command: str) -> str:
    """The Markdown of the "load-attack" section of RESULTS.md (also printed)."""
    free, attack = result["phases"]["attacker-free"], result["phases"]["under attack"]
    share = attack["sessions_per_minute"] / free["sessions_per_minute"]
    correct = free["all_correct"] and attack["all_correct"] and result["audiences_correct"]
    lines = [
        *heading("Load under attack: honest advertisers while hostile ones push", info, command),
        f"{result['advertisers']} honest advertisers ({result['records']:,} records each, "
        f"every one's `cleanroom match --json --workers {result['client_workers']}` started at "
        f"once per round, modes rotating) against a platform of {result['platform_users']:,} "
        f"users served by `cleanroom platform serve` with its default admission limits. Each of "
        f"{result['rounds']} rounds runs twice, first attacker-free, then while "
        f"{result['hostile']} hostile advertisers (valid certificates, no daily session limit) "
        "each run three loops, one more than the streams the platform lets one advertiser hold: "
        "one holds an idle `Match` stream, two open sessions with a U of "
        f"{result['attack_elements']:,} copies of one valid point (three per record), or, one in "
        "four, an opening that announces more identifiers than its records may carry (a refused "
        "stream is retried after 0.2 s). Load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.2f}" for x in result["load_average"])
        + f". Honest results: {'every one exact' if correct else '**SOME WRONG**'}.",
        "",
        "| phase | honest sessions | sessions / min | session p50 s | session p95 s "
        "| CLI run p95 s | health checks | not SERVING | health p95 ms | health max ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["phases"].items():
        lines.append(
            f"| {name} | {data['sessions']} | {data['sessions_per_minute']:.1f} | "
            f"{data['session_p50_s']:.2f} | {data['session_p95_s']:.2f} | "
            f"{data['wall_p95_s']:.2f} | {data['health_checks']} | "
            f"{len(data['health_not_serving'])} | {1000 * data['health_p95_s']:.1f} | "
            f"{1000 * data['health_max_s']:.1f} |"
        )
    lines += [
        "",
        f"**Throughput under attack: {share:.2f} of the attacker-free throughput** (target: at "
        f"least 0.8); **worst health check under attack: {1000 * attack['health_max_s']:.0f} ms** "
        "(target: at most 1 s).",
        "",
        "What the attackers' calls met (status of each call):",
        "",
        "| call | status | calls |",
        "|---|---|---|",
    ]
    for key, count in result["attack_outcomes"].items():
        call, status = key.split(": ")
        lines.append(f"| {call} | {status} | {count} |")
    lines += [
        "",
        "INVALID_ARGUMENT: a duplicated U refused from its bytes; RESOURCE_EXHAUSTED: a stream "
        "over the attacker's cap or rate, or an opening announcing too many identifiers; "
        "FAILED_PRECONDITION: a second session while its first is open (one open session per "
        "advertiser); DEADLINE_EXCEEDED: an idle stream cut at the first-message deadline; "
        "CANCELLED: a stream the attacker dropped when the round ended. The phases alternate "
        "within one invocation, so both see the same machine; the honest sessions themselves "
        "take both cores.",
    ]
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], text: str) -> None:
    """Record a run: its section of RESULTS.md and its file in benchmarks/results/."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = "load-attack" if result["hostile"] else "load"
    (RESULTS_DIR / f"{name.replace('-', '_')}.json").write_text(json.dumps(result, indent=2))
    write_section(name, text)


def main() -> None:
    """Run the benchmark, print the table and write the JSON; optionally update RESULTS.md."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--advertisers", type=int, default=8)
    parser.add_argument("--records", type=int, default=20_000, help="records per advertiser")
    parser.add_argument("--platform-users", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--server-workers", type=int, help="the server's --workers (default: all cores)"
    )
    parser.add_argument("--client-workers", type=int, default=1, help="each CLI's --workers")
    parser.add_argument("--health-interval", type=float, default=0.05, metavar="SECONDS")
    parser.add_argument(
        "--attack", action="store_true", help="run every round attacker-free, then under attack"
    )
    parser.add_argument("--hostile", type=int, default=2, help="hostile advertisers (--attack)")
    parser.add_argument(
        "--attack-elements", type=int, default=300_000, help="elements of the duplicated U"
    )
    parser.add_argument("--workdir", type=Path, help="keep the files in a new folder under DIR")
    parser.add_argument("--out", type=Path, metavar="FILE.json", help="write the results here")
    parser.add_argument("--write-results", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    info, command = machine(), command_line()
    print(
        f"load benchmark: {args.advertisers} advertisers x {args.records:,} records, platform "
        f"{args.platform_users:,} users, {args.rounds} rounds",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as temporary:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=args.workdir)) if args.workdir else Path(temporary)
        result = run(args, work)
    text = (render_attack if args.attack else render)(result, info, command)
    print()
    print(text)
    result["command"], result["machine"] = command, info
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
    if args.write_results:
        write_results(result, text)
    if not (result["all_correct"] and result["audiences_correct"]):
        raise SystemExit("some results were wrong")


if __name__ == "__main__":
    main()
