"""Eight advertisers at once against one real server: exact answers, no cross-talk, health.

Each advertiser has its own certificate (``platform issue-cert``) and its own list, with a
different number of customers on the platform, and runs the real ``cleanroom match`` CLI as a
subprocess; all eight start together, in every mode, for two rounds. Every answer must equal the
plaintext truth of that advertiser's own list (ε = 0): its count, its matched records (ids mode),
its stored audience (audience mode). Meanwhile a thread calls ``grpc.health.v1.Health/Check`` on
the server again and again: each call must come back SERVING. No timing is asserted.
"""

from __future__ import annotations

import csv
import random
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from _platform_processes import (
    HealthPoller,
    Server,
    cli_json,
    match_report,
    setup_platform,
    start_match,
    write_customer_list,
)

from cleanroom.demo import Person, generate_people

ADVERTISERS = [f"adv{i}" for i in range(8)]
MODES = ("count", "audience", "ids")
ROUNDS = 2
PLATFORM_USERS = 3_000
OUTSIDERS = 30  # per advertiser: customers the platform does not have

POLICY = (
    "min_upload_records = 10\nmin_reported_count = 1\nepsilon_per_release = 0.0\n"
    "max_sessions_per_day = 1000\n"
    + "".join(
        f'\n[advertisers.{name}]\nmodes_allowed = ["count", "audience", "ids"]\n'
        for name in ADVERTISERS
    )
)


@dataclass(frozen=True)
class Advertiser:
    name: str
    tls_dir: Path
    customers: Path
    matched_records: set[str]  # record ids of its customers who are platform users
    matched_users: list[str]  # those users' platform ids, sorted


@dataclass(frozen=True)
class LoadPlatform:
    root: Path
    db: Path
    policy: Path
    monitor: Path  # the health checker's certificate
    advertisers: list[Advertiser]


@pytest.fixture(scope="module")
def load_platform(tmp_path_factory: pytest.TempPathFactory) -> LoadPlatform:
    root = tmp_path_factory.mktemp("load")
    people = generate_people(PLATFORM_USERS + OUTSIDERS * len(ADVERTISERS), seed=71)
    on_platform = people[:PLATFORM_USERS]
    db = setup_platform(root, on_platform, [*ADVERTISERS, "monitor"], POLICY)
    rng = random.Random(72)  # test data, not a secret
    advertisers = []
    for i, name in enumerate(ADVERTISERS):
        # A different overlap for each, from overlapping slices of the platform: an answer that
        # went to the wrong advertiser, or mixed two lists, cannot come out right.
        matched = on_platform[150 * i : 150 * i + 60 + 17 * i]
        start = PLATFORM_USERS + OUTSIDERS * i
        customers: list[Person] = matched + people[start : start + OUTSIDERS]
        rng.shuffle(customers)
        record_ids = write_customer_list(root / f"{name}.csv", customers, seed=100 + i)
        in_list = {p.user_id for p in matched}
        advertisers.append(
            Advertiser(
                name=name,
                tls_dir=root / name,
                customers=root / f"{name}.csv",
                matched_records={
                    r for r, p in zip(record_ids, customers, strict=True) if p.user_id in in_list
                },
                matched_users=sorted(in_list),
            )
        )
    return LoadPlatform(root, db, root / "policy.toml", root / "monitor", advertisers)


def test_eight_advertisers_at_once_each_get_their_own_exact_answer(
    load_platform: LoadPlatform,
) -> None:
    platform = load_platform
    server = Server(platform.db, platform.policy, "--workers", "1")
    loaded = threading.Event()
    audiences_made: dict[str, int] = {}
    try:
        with HealthPoller(server.address, platform.monitor, loaded.is_set) as health:
            for round_number in range(ROUNDS):
                modes = {
                    a.name: MODES[(i + round_number) % len(MODES)]
                    for i, a in enumerate(platform.advertisers)
                }
                loaded.set()
                running = {
                    a.name: start_match(
                        server.address,
                        a.tls_dir,
                        a.customers,
                        modes[a.name],
                        *(
                            ("--out", platform.root / f"{a.name}-{round_number}.csv")
                            if modes[a.name] == "ids"
                            else ()
                        ),
                    )
                    for a in platform.advertisers
                }
                reports = {name: match_report(process) for name, process in running.items()}
                loaded.clear()
                for advertiser in platform.advertisers:
                    report = reports[advertiser.name]
                    mode = modes[advertiser.name]
                    assert report["mode"] == mode
                    assert report["count"] == len(advertiser.matched_records), advertiser.name
                    if mode == "ids":
                        out = platform.root / f"{advertiser.name}-{round_number}.csv"
                        with out.open(encoding="utf-8", newline="") as f:
                            written = {row["record_id"] for row in csv.DictReader(f)}
                        assert written == advertiser.matched_records
                    if mode == "audience":
                        audiences_made[advertiser.name] = audiences_made.get(advertiser.name, 0) + 1
        stats = health.stats
    finally:
        server.stop()

    assert stats.failures == []
    assert stats.checks == stats.serving
    assert stats.during_load > 0, "no health check ran while the matches were under way"

    sessions = cli_json("platform", "sessions", "list", "--db", platform.db)["sessions"]
    assert len(sessions) == ROUNDS * len(platform.advertisers)
    assert {s["state"] for s in sessions} == {"completed"}
    for advertiser in platform.advertisers:
        own = [s for s in sessions if s["advertiser"] == advertiser.name]
        assert len(own) == ROUNDS
        assert {s["result_count"] for s in own} == {len(advertiser.matched_records)}

    # Every stored audience belongs to the advertiser whose session made it, and holds exactly
    # that advertiser's matched users.
    by_name = {a.name: a for a in platform.advertisers}
    audiences = cli_json("platform", "audiences", "list", "--db", platform.db)["audiences"]
    assert sorted(a["advertiser"] for a in audiences) == sorted(
        name for name, count in audiences_made.items() for _ in range(count)
    )
    for audience in audiences:
        shown = cli_json("platform", "audiences", "show", str(audience["id"]), "--db", platform.db)
        assert shown["user_ids"] == by_name[audience["advertiser"]].matched_users
    assert cli_json("platform", "audit", "verify", "--db", platform.db)["intact"] is True
