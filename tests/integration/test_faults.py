"""Faults with real processes: SIGKILL of the server, of a rotation and of the client, and a
connection cut mid-session.

After each fault the platform must come back whole: the server (restarted where it was killed)
serves a session with the exact answer; the session that released nothing is recorded as
aborted, with no ε charged (the next session's ``epsilon_remaining`` shows it) and no audience,
partial or whole; the audit chain verifies; SQLite's ``integrity_check`` is ``ok``; and after a
killed rotation the current epoch is the old one or the new one, never a mixture.

The policy charges ε = 40 per release, so a charge is plain to see in the ledger and the budget,
while the released count is still exact: discrete Laplace noise at ε = 40 is non-zero with
probability 2e^-40 / (1 + e^-40) < 10^-17.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _platform_processes import (
    Server,
    TcpProxy,
    cleanroom_executable,
    cli_json,
    cli_ok,
    descendants,
    integrity_check,
    is_running,
    open_session_count,
    run_match,
    setup_platform,
    start_match,
    wait_until,
    write_customer_list,
)

from cleanroom.demo import generate_people
from cleanroom.store.database import open_database
from cleanroom.store.epochs import current_epoch

# The platform is large enough that a session stays open for about a second with one worker
# (the client encrypts all of V), which is the window the faults are injected in.
PLATFORM_USERS = 12_000
FAULTED_LIST = 3_000  # the list of the session that is cut short
CHECK_LIST = 400  # the list of the session that must come out exact afterwards
CHECK_MATCHED = 250
EPSILON = 40.0
BUDGET = 1000.0

POLICY = f"""\
min_upload_records = 10
min_reported_count = 5
epsilon_per_release = {EPSILON}
epsilon_budget = {BUDGET}
max_sessions_per_day = 1000
"""


@dataclass(frozen=True)
class Platform:
    root: Path
    db: Path
    policy: Path
    acme: Path
    faulted_list: Path
    check_list: Path
    check_users: list[str]  # the platform users the check list matches, sorted


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    """One platform, built once; each test works on a copy of its folder."""
    root = tmp_path_factory.mktemp("faults-template")
    people = generate_people(PLATFORM_USERS + FAULTED_LIST + CHECK_LIST, seed=61)
    on_platform, outsiders = people[:PLATFORM_USERS], people[PLATFORM_USERS:]
    db = setup_platform(root, on_platform, ["acme"], POLICY)
    half = FAULTED_LIST // 2
    write_customer_list(root / "faulted.csv", on_platform[:half] + outsiders[:half], seed=1)
    matched = on_platform[-CHECK_MATCHED:]
    outside = outsiders[half : half + CHECK_LIST - CHECK_MATCHED]
    write_customer_list(root / "check.csv", matched + outside, seed=2)
    return Platform(
        root=root,
        db=db,
        policy=root / "policy.toml",
        acme=root / "acme",
        faulted_list=root / "faulted.csv",
        check_list=root / "check.csv",
        check_users=sorted(p.user_id for p in matched),
    )


@pytest.fixture
def platform(template: Platform, tmp_path: Path) -> Platform:
    """A private copy of the template (database, keys, epochs, TLS, lists: paths are relative)."""
    root = tmp_path / "platform"
    shutil.copytree(template.root, root)
    return Platform(
        root=root,
        db=root / template.db.name,
        policy=root / template.policy.name,
        acme=root / template.acme.name,
        faulted_list=root / template.faulted_list.name,
        check_list=root / template.check_list.name,
        check_users=template.check_users,
    )


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test started; any still running at the end are killed."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.kill()


def _serve(platform: Platform, servers: list[Server]) -> Server:
    server = Server(platform.db, platform.policy, "--workers", "1")
    servers.append(server)
    return server


def _sessions(platform: Platform) -> list[dict[str, Any]]:
    """``platform sessions list --json``: the ledger, oldest first."""
    return list(cli_json("platform", "sessions", "list", "--db", platform.db)["sessions"])


def _audiences(platform: Platform) -> list[dict[str, Any]]:
    """``platform audiences list --json``."""
    return list(cli_json("platform", "audiences", "list", "--db", platform.db)["audiences"])


def _wait_until_open(platform: Platform, client: subprocess.Popen[str]) -> None:
    wait_until(
        lambda: open_session_count(platform.db) == 1 or client.poll() is not None,
        "the faulted session opened",
    )
    assert client.poll() is None, client.communicate()


def _assert_nothing_released(platform: Platform, reason: str) -> None:
    """The cut session is aborted: no ε charged, no audience, one audit entry saying so."""
    (faulted,) = _sessions(platform)
    assert faulted["state"] == "aborted"
    assert reason in faulted["reason"]
    assert faulted["epsilon_charged"] == 0
    assert faulted["audience_id"] is None and faulted["result_count"] is None
    assert _audiences(platform) == []
    entries = cli_json("platform", "audit", "show", "--db", platform.db)["entries"]
    ends = [e for e in entries if e["action"].startswith("match.")]
    assert [(e["action"], e["details"]["ledger_id"]) for e in ends] == [
        ("match.aborted", faulted["id"])
    ]


def _assert_exact_session(
    platform: Platform, address: str, mode: str, *, spent_before: float = 0.0
) -> dict[str, Any]:
    """A whole session now: the exact answer, charged once, and (audience mode) its audience."""
    report = run_match(address, platform.acme, platform.check_list, mode)
    assert report["count"] == len(platform.check_users)
    # Only the completed sessions were charged: an aborted one costs nothing.
    assert report["epsilon_spent"] == EPSILON
    assert report["epsilon_remaining"] == BUDGET - spent_before - EPSILON
    audiences = _audiences(platform)
    if mode == "audience":
        (audience,) = audiences
        assert audience["advertiser"] == "acme"
        assert audience["size"] == len(platform.check_users)
        shown = cli_json("platform", "audiences", "show", str(audience["id"]), "--db", platform.db)
        assert shown["user_ids"] == platform.check_users
    else:
        assert audiences == []
    return report


def _assert_store_intact(platform: Platform) -> None:
    assert cli_json("platform", "audit", "verify", "--db", platform.db)["intact"] is True
    assert integrity_check(platform.db) == "ok"
    assert all(s["state"] != "open" for s in _sessions(platform))


# --- the faults ------------------------------------------------------------------------------


def test_server_killed_mid_session_restarts_and_releases_nothing(
    platform: Platform, servers: list[Server]
) -> None:
    server = _serve(platform, servers)
    client = start_match(server.address, platform.acme, platform.faulted_list, "audience")
    _wait_until_open(platform, client)
    server.kill()

    _, err = client.communicate(timeout=60)
    assert client.returncode == 1
    assert "platform" in err and "Traceback" not in err
    # Nobody was left to close the row: the crash left it open, and nothing else.
    assert [s["state"] for s in _sessions(platform)] == ["open"]
    assert _audiences(platform) == []

    restarted = _serve(platform, servers)
    _assert_nothing_released(platform, "found open at start")
    _assert_exact_session(platform, restarted.address, "audience")
    restarted.stop()
    _assert_store_intact(platform)


def test_server_killed_leaves_no_worker_processes_behind(
    platform: Platform, servers: list[Server]
) -> None:
    server = Server(platform.db, platform.policy, "--workers", "2")
    servers.append(server)
    # The server starts its process pool as it starts, before the first session uses it.
    run_match(server.address, platform.acme, platform.check_list, "count")
    pool = descendants(server.process.pid)
    assert len(pool) >= 2, "the server started no worker processes"
    server.kill()
    try:
        # Idle workers of a parent that was killed outright wait on their task queue forever
        # unless they watch for it; so would the forkserver and resource tracker they hold open.
        wait_until(
            lambda: not any(map(is_running, pool)),
            "the killed server's worker processes exited",
            timeout=30,
        )
    finally:
        for pid in filter(is_running, pool):
            os.kill(pid, signal.SIGKILL)
    restarted = _serve(platform, servers)
    _assert_exact_session(platform, restarted.address, "count", spent_before=EPSILON)
    restarted.stop()
    _assert_store_intact(platform)


def test_client_killed_mid_upload_is_aborted_by_the_running_server(
    platform: Platform, servers: list[Server]
) -> None:
    server = _serve(platform, servers)
    client = start_match(server.address, platform.acme, platform.faulted_list, "audience")
    _wait_until_open(platform, client)
    client.send_signal(signal.SIGKILL)
    client.communicate(timeout=60)

    # The server sees the stream go and closes the session itself, freeing the advertiser's
    # single open-session slot: the next session of the same advertiser is served.
    wait_until(lambda: open_session_count(platform.db) == 0, "the server aborted the session")
    _assert_nothing_released(platform, "before the session completed")
    _assert_exact_session(platform, server.address, "audience")
    server.stop()
    _assert_store_intact(platform)


def test_connection_cut_mid_session_is_aborted_and_the_client_fails_cleanly(
    platform: Platform, servers: list[Server]
) -> None:
    server = _serve(platform, servers)
    proxy = TcpProxy(server.address)
    try:
        client = start_match(proxy.address, platform.acme, platform.faulted_list, "count")
        _wait_until_open(platform, client)
        # U (36 bytes a record) is on its way or through: the cut lands mid-stream.
        wait_until(
            lambda: (
                proxy.client_to_server_bytes > FAULTED_LIST * 36 // 2 or client.poll() is not None
            ),
            "part of U went through the proxy",
        )
        proxy.cut()
        _, err = client.communicate(timeout=60)
    finally:
        proxy.cut()
    assert client.returncode == 1
    assert "cannot reach the platform" in err and "Traceback" not in err

    wait_until(lambda: open_session_count(platform.db) == 0, "the server aborted the session")
    _assert_nothing_released(platform, "before the session completed")
    _assert_exact_session(platform, server.address, "count")
    server.stop()
    _assert_store_intact(platform)


# tqdm's bar: "precompute:  25%|██▌       | 3.00k/12.0k […]".
_PROGRESS = re.compile(rb"precompute:\s+\d+%\|[^|]*\|\s*([0-9.]+)k?/")


def _rotate_killed_once_progress_shows(db: Path) -> bytes:
    """Run ``platform epoch rotate`` on a terminal (so it draws its progress bar); SIGKILL it
    as soon as the bar shows identifiers encrypted. Returns what it wrote to the terminal."""
    controller, terminal = pty.openpty()
    # A terminal of zero columns (a fresh pty's) would get an empty bar.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    rotate = subprocess.Popen(
        [cleanroom_executable(), "platform", "epoch", "rotate", "--db", str(db), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    try:
        while rotate.poll() is None:
            ready, _, _ = select.select([controller], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(controller, 4096)
                except OSError:
                    break  # the terminal closed: the rotation ended
            if any(float(m.group(1)) > 0 for m in _PROGRESS.finditer(seen)):
                rotate.send_signal(signal.SIGKILL)
                break
        rotate.wait(timeout=60)
    finally:
        os.close(controller)
    return seen


def _epoch_files(db: Path) -> tuple[int, int, int, list[str], list[str]]:
    """The current epoch (id, generation, size) and the key and epoch files on disk."""
    with open_database(db) as database:
        epoch = current_epoch(database)
        instance = database.instance_id
        # Epoch keys only: the audit signing key lives there too, and stays.
        keys = sorted(p.name for p in database.keys_dir.iterdir() if p != database.audit_key_path)
        files = sorted(p.name for p in database.epochs_dir.iterdir() if p.suffix != ".lock")
    assert epoch is not None
    v = np.load(
        db.parent / "epochs" / f"{instance}-epoch{epoch.epoch_id}-g{epoch.generation}.V.npy"
    )
    # The current V is whole: every row a valid element, none left zero by an unfinished write.
    assert v.shape == (epoch.size, 32)
    assert not np.any(np.all(v == 0, axis=1))
    assert f"{instance}-epoch{epoch.epoch_id}.key" in keys
    return epoch.epoch_id, epoch.generation, epoch.size, keys, files


def test_rotation_killed_mid_precompute_leaves_one_whole_epoch(
    platform: Platform, servers: list[Server]
) -> None:
    before = cli_json("platform", "status", "--db", platform.db)["epoch"]
    assert before["id"] == 1

    shown = _rotate_killed_once_progress_shows(platform.db)
    assert _PROGRESS.search(shown), shown

    status = cli_json("platform", "status", "--db", platform.db)
    epoch_id, _, size, _, _ = _epoch_files(platform.db)
    # The old epoch or the new one, whole; never a new row over old files or the reverse.
    assert status["epoch"]["id"] == epoch_id in (1, 2)
    assert status["epoch"]["size"] == size == status["eligible_identifiers"] == PLATFORM_USERS

    server = _serve(platform, servers)
    # Starting, the server destroyed the key the killed rotation had written: no secret of an
    # epoch that never became current waits on disk for the next rotation.
    _, _, _, keys_at_start, _ = _epoch_files(platform.db)
    with open_database(platform.db) as database:
        assert keys_at_start == [f"{database.instance_id}-epoch{epoch_id}.key"]
    report = run_match(server.address, platform.acme, platform.check_list, "count")
    assert report["count"] == len(platform.check_users)
    assert report["epoch_id"] == epoch_id

    # What the killed rotation left (its key, its temporary files, its lock) does not stop the
    # next one, which cleans it up; the running server matches in the new epoch at once.
    cli_ok("platform", "epoch", "rotate", "--db", platform.db, "--workers", "1")
    new_id, generation, _, keys, files = _epoch_files(platform.db)
    assert new_id == epoch_id + 1
    with open_database(platform.db) as database:
        prefix = f"{database.instance_id}-epoch{new_id}"
    assert keys == [f"{prefix}.key"]
    assert files == sorted(f"{prefix}-g{generation}.{name}.npy" for name in ("V", "ids", "users"))
    report = run_match(server.address, platform.acme, platform.check_list, "count")
    assert report["count"] == len(platform.check_users)
    assert report["epoch_id"] == new_id
    server.stop()
    _assert_store_intact(platform)
