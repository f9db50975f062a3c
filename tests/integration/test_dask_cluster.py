"""The batch engine on a real Dask cluster (``distributed.LocalCluster``, 2 worker processes).

Results are compared byte for byte with the local engine given the same key; the epoch's V is
recomputed locally from the epoch's own key; matches are compared with the plaintext truth. A
worker is killed with SIGKILL mid-job; a task that raises is checked to leave no key in the
workers' logs; an address where no scheduler listens must fail fast with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _platform_processes import (
    TIMEOUT,
    Server,
    cleanroom_executable,
    cli_ok,
    descendants,
    wait_until,
    write_customer_list,
    write_platform_csv,
)
from numpy.typing import NDArray

from cleanroom.crypto import SUITE_IDS, BatchEngine, Suite, get_suite
from cleanroom.crypto.batch import _hash_and_encrypt_task
from cleanroom.demo import generate_people
from cleanroom.errors import ClusterUnreachable, InvalidElement
from cleanroom.identifiers.messages import hash_message, normalized_digest
from cleanroom.store import epochs
from cleanroom.store.database import open_database

distributed = pytest.importorskip("distributed")
from cleanroom.crypto.cluster import CLUSTER_CHUNK_SIZE, DaskExecutor  # noqa: E402

CHUNK = 64  # small chunks: many tasks per job, in a test that stays fast
# More identifiers than one cluster chunk, so the CLI's rotate and match really use the cluster.
PLATFORM_USERS = CLUSTER_CHUNK_SIZE + 3_000
ADVERTISER_ON_PLATFORM = 600
ADVERTISER_ELSEWHERE = 900
POLICY = """\
min_upload_records = 10
min_reported_count = 5
epsilon_per_release = 0.0
"""


def _local_cluster() -> Any:
    # No dashboard; ":0" rather than None, since the scheduler serves its HTTP routes (health,
    # metrics) even without one, on port 8787 unless told otherwise: a clash on a shared machine.
    return distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    )


@pytest.fixture(scope="module", autouse=True)
def _scheduler_logs_warnings_only() -> Iterator[None]:
    """The module's schedulers run in this process and log each client that comes and leaves,
    at INFO, on their own thread and whenever it is noticed: often after the test, once pytest
    has closed the stream it captured, which the logging module then reports as an error of its
    own. Set up before any of them and restored after the last is closed."""
    loggers = [logging.getLogger(name) for name in ("distributed.scheduler", "distributed.core")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _second_client(scheduler: str) -> Any:
    """Another client of a running scheduler, to look at its workers and tasks.

    Connecting is tried up to three times: on a busy machine the scheduler can batch another
    message with its first reply to a new client, which distributed's client then takes for a
    broken handshake (an ``AssertionError`` in ``Client._ensure_connected``).
    """
    for _ in range(2):
        with contextlib.suppress(AssertionError):
            return distributed.Client(scheduler, set_as_default=False)
    return distributed.Client(scheduler, set_as_default=False)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with _local_cluster() as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def on_cluster(scheduler: str) -> Iterator[BatchEngine]:
    with BatchEngine(executor=DaskExecutor(scheduler), chunk_size=CHUNK) as engine:
        yield engine


@pytest.fixture(scope="module")
def in_process() -> BatchEngine:
    return BatchEngine(workers=1, chunk_size=CHUNK)


def _messages(n: int, salt: int = 0) -> list[bytes]:
    return [hash_message("email", normalized_digest(f"p{salt}-{i}@example.com")) for i in range(n)]


# -- the engine's jobs: byte-identical to the local engine -------------------------------------


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_every_job_equals_the_local_engine_with_the_same_key(
    suite_id: str, on_cluster: BatchEngine, in_process: BatchEngine
) -> None:
    suite = get_suite(suite_id)
    key = suite.generate_key()
    msgs = _messages(7 * CHUNK + 5)
    reported: list[int] = []
    fused = on_cluster.hash_and_encrypt(suite, key, msgs, suite.dst, progress=reported.append)
    assert np.array_equal(fused, in_process.hash_and_encrypt(suite, key, msgs, suite.dst))
    assert sum(reported) == len(msgs) and len(reported) == len(on_cluster.chunk_bounds(len(msgs)))
    hashed = on_cluster.hash_to_curve_many(suite, msgs, suite.dst)
    assert np.array_equal(hashed, in_process.hash_to_curve_many(suite, msgs, suite.dst))
    encrypted = on_cluster.encrypt(suite, key, hashed)
    assert np.array_equal(encrypted, fused)
    on_cluster.validate(suite, encrypted)


def test_the_first_bad_row_of_the_whole_array_is_reported(
    on_cluster: BatchEngine, in_process: BatchEngine
) -> None:
    suite = get_suite("x25519-sha512-ell2-ro")
    elements = in_process.hash_to_curve_many(suite, _messages(6 * CHUNK), suite.dst)
    elements[5 * CHUNK + 1] = 0  # u = 0: small order
    elements[2 * CHUNK + 3] = 0
    for job in (
        lambda: on_cluster.validate(suite, elements),
        lambda: on_cluster.encrypt(suite, suite.generate_key(), elements),
    ):
        with pytest.raises(InvalidElement) as caught:
            job()
        assert caught.value.row == 2 * CHUNK + 3


def test_nothing_stays_on_the_cluster_and_a_failing_task_logs_no_key(
    on_cluster: BatchEngine, scheduler: str
) -> None:
    suite = get_suite("x25519-sha512-ell2-ro")
    key = suite.generate_key()
    secret = key.to_bytes()
    msgs: list[bytes] = _messages(3 * CHUNK, salt=9)
    on_cluster.hash_and_encrypt(suite, key, msgs, suite.dst)
    # A task that fails on a worker, with the key among its arguments: the engine's own task
    # given a message that is not bytes (the engine itself refuses those before sending).
    failing = on_cluster._executor().submit(
        _hash_and_encrypt_task, suite, secret, [msgs[0], "not bytes"], suite.dst
    )
    with pytest.raises(TypeError):
        failing.result()
    leaks = (secret.hex(), repr(secret)[2:-1], msgs[0].hex(), repr(msgs[0])[2:-1])
    with _second_client(scheduler) as client:

        def worker_logs() -> list[str]:
            return [line for lines in client.get_worker_logs().values() for _level, line in lines]

        wait_until(lambda: any("Compute Failed" in line for line in worker_logs()), "it is logged")
        logs = worker_logs()
        # The log names the task's function (as "_run_sealed(...)" or, in older releases of
        # distributed, "Function: _run_sealed" with its arguments shown sealed).
        assert any("_run_sealed" in line for line in logs)
        for leak in leaks:
            assert not any(leak in line for line in logs)
        # Every result was released once copied out: the key lives in no task, no data.
        wait_until(
            lambda: client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0,
            "the scheduler forgot every task",
        )
        stored = client.run(
            lambda dask_worker: len(dask_worker.data) + len(dask_worker.state.tasks)
        )
        assert set(stored.values()) == {0}


def test_sealed_arguments_show_nothing_and_survive_pickling() -> None:
    import pickle

    from cleanroom.crypto.cluster import _SealedArguments

    secret = get_suite().generate_key().to_bytes()
    sealed = _SealedArguments((secret, [b"cleanroom/v1/email/x"]))
    for shown in (repr(sealed), str(sealed), repr((sealed,)), f"{sealed}"):
        assert secret.hex() not in shown and "cleanroom/v1" not in shown
        assert repr(secret)[2:-1] not in shown
    assert pickle.loads(pickle.dumps(sealed)).arguments == sealed.arguments


def test_a_worker_killed_mid_job_is_replaced_and_the_result_is_complete() -> None:
    suite = get_suite("x25519-sha512-ell2-ro")
    key = suite.generate_key()
    msgs = _messages(40 * CHUNK, salt=3)
    expected = BatchEngine(workers=1).hash_and_encrypt(suite, key, msgs, suite.dst)
    with _local_cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        victim = next(iter(pids.values()))
        killed: list[int] = []

        def kill_once(done: int) -> None:
            # At the first result at most 4 of the 40 chunks have been submitted: mid-job.
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        with BatchEngine(
            executor=DaskExecutor(cluster.scheduler_address), chunk_size=CHUNK
        ) as engine:
            result = engine.hash_and_encrypt(suite, key, msgs, suite.dst, progress=kill_once)
        assert killed == [victim]
        assert np.array_equal(result, expected)
        assert victim not in client.run(os.getpid).values()


# -- the CLI: epoch rotate and refresh, a real match --------------------------------------------


@dataclass
class Platform:
    root: Path
    db: Path
    customers: Path
    truth: int


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, scheduler: str) -> Platform:
    """A platform whose epoch was rotated by the real CLI on the cluster."""
    root = tmp_path_factory.mktemp("dask")
    people = generate_people(PLATFORM_USERS + ADVERTISER_ELSEWHERE, seed=41)
    on_platform, elsewhere = people[:PLATFORM_USERS], people[PLATFORM_USERS:]
    write_platform_csv(root / "users.csv", on_platform)
    customers = root / "customers.csv"
    write_customer_list(customers, [*on_platform[:ADVERTISER_ON_PLATFORM], *elsewhere], seed=5)
    db = root / "platform.db"
    cli_ok("platform", "init", "--db", db)
    cli_ok("platform", "import", "--db", db, root / "users.csv")
    rotated = _cli("platform", "epoch", "rotate", "--db", db, "--dask-scheduler", scheduler)
    assert rotated.returncode == 0, rotated.stderr
    assert f"{PLATFORM_USERS} eligible identifiers" in rotated.stdout
    cli_ok("platform", "issue-cert", "--db", db, "--advertiser", "acme", "--out", root / "acme")
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    return Platform(root, db, customers, ADVERTISER_ON_PLATFORM)


def _cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cleanroom_executable(), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _epoch_v(
    db_path: Path, positions: NDArray[np.int64] | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The current epoch's V, and V at ``positions`` (all: ``None``) recomputed here.

    The recomputation uses the epoch's own key and the identifiers behind its ``ids`` file, with
    the local in-process engine.
    """
    with open_database(db_path) as db:
        epoch = epochs.current_epoch(db)
        assert epoch is not None
        key = epochs.epoch_key(db, epoch)
        stem = f"*-epoch{epoch.epoch_id}-g{epoch.generation}"
        (v_path,) = db.epochs_dir.glob(f"{stem}.V.npy")
        (ids_path,) = db.epochs_dir.glob(f"{stem}.ids.npy")
    v, ids = np.load(v_path), np.load(ids_path)
    if positions is not None:
        ids = ids[positions]
    with sqlite3.connect(db_path) as conn:
        query = "SELECT id, type, value FROM identifiers"
        identifiers = {row_id: (kind, value) for row_id, kind, value in conn.execute(query)}
    suite: Suite = get_suite(epoch.suite_id)
    msgs = [hash_message(identifiers[i][0], normalized_digest(identifiers[i][1])) for i in ids]
    return v, BatchEngine(workers=1).hash_and_encrypt(suite, key, msgs, suite.dst)


def test_rotate_and_refresh_on_the_cluster_equal_the_epoch_key_computed_here(
    platform: Platform, scheduler: str
) -> None:
    # The CLI's rotate hashed in two cluster chunks; positions are shuffled, so a sample of
    # them covers both chunks (recomputing all would double the test's time).
    sample = np.random.default_rng(7).choice(PLATFORM_USERS, size=500, replace=False)
    v, expected = _epoch_v(platform.db, sample)
    assert len(v) == PLATFORM_USERS and np.array_equal(v[sample], expected)
    assert len(np.unique(v, axis=0)) == len(v)  # no row left unwritten or written twice
    # Newly eligible users, appended with the same key, by the library on the cluster.
    newcomers = generate_people(4 * CHUNK + 1, seed=43)
    write_platform_csv(platform.root / "more.csv", newcomers)
    cli_ok("platform", "import", "--db", platform.db, platform.root / "more.csv")
    with (
        open_database(platform.db) as db,
        BatchEngine(executor=DaskExecutor(scheduler), chunk_size=CHUNK) as engine,
    ):
        _, added = epochs.refresh(db, engine=engine)
    assert added == len(newcomers)
    appended = np.arange(PLATFORM_USERS, PLATFORM_USERS + added)
    refreshed, expected = _epoch_v(platform.db, appended)
    assert np.array_equal(refreshed[:PLATFORM_USERS], v)
    assert np.array_equal(refreshed[PLATFORM_USERS:], expected)


def test_match_on_the_cluster_gives_the_exact_count(platform: Platform, scheduler: str) -> None:
    server = Server(platform.db, platform.root / "policy.toml", "--workers", "1")
    try:
        done = _cli(
            *("match", "--server", server.address, "--tls-dir", platform.root / "acme"),
            *("--input", platform.customers, "--mode", "count", "--json"),
            *("--dask-scheduler", scheduler),
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["count"] == platform.truth
    assert report["sent"] == ADVERTISER_ON_PLATFORM + ADVERTISER_ELSEWHERE


# -- failures that must be clear ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_scheduler_that_does_not_answer_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    cli_ok("platform", "init", "--db", db)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    # The subprocess timeout guards against a hang; the CLI's own limit is 5 s.
    done = subprocess.run(
        [
            *(cleanroom_executable(), "platform", "epoch", "rotate", "--db", str(db)),
            *("--dask-scheduler", address),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot connect to the Dask scheduler at {address}" in done.stderr
    assert "Traceback" not in done.stderr
    with open_database(db) as opened:
        assert epochs.current_epoch(opened) is None


def _dask(*argv: str, log: Path) -> subprocess.Popen[bytes]:
    """``dask scheduler|worker …`` of this interpreter, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("dask")), *argv], stdout=out, stderr=out
        )


def test_a_scheduler_lost_mid_rotation_is_one_line_and_changes_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    port = _closed_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _dask(
        *("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"),
        log=tmp_path / "scheduler.log",
    )
    worker = None
    try:
        with distributed.Client(address, timeout=TIMEOUT, set_as_default=False) as client:
            worker = _dask(
                *("worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"),
                log=tmp_path / "worker.log",
            )
            client.wait_for_workers(1, timeout=TIMEOUT)
            # Stopped, the worker holds the tasks it is given: the rotation is mid-job for sure
            # when the scheduler dies.
            for pid in [worker.pid, *descendants(worker.pid)]:
                os.kill(pid, signal.SIGSTOP)
            with open_database(platform.db) as db:
                before = epochs.current_epoch(db)
            rotation = subprocess.Popen(
                [
                    *(cleanroom_executable(), "platform", "epoch", "rotate"),
                    *("--db", str(platform.db), "--dask-scheduler", address),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            wait_until(lambda: any(client.processing().values()), "tasks reach the worker")
        scheduler.kill()
        out, err = rotation.communicate(timeout=TIMEOUT)
    finally:
        scheduler.kill()
        if worker is not None:
            for pid in [*descendants(worker.pid), worker.pid]:
                os.kill(pid, signal.SIGKILL)
            worker.wait()
        scheduler.wait()
    assert rotation.returncode == 1
    # The cause is named as distributed names it: FutureCancelledError, or CancelledError in
    # older releases (the cluster extra's floor among them).
    assert out == ""
    assert err.splitlines() in [
        [f"error: lost the Dask scheduler at {address} during the job ({cause})"]
        for cause in ("FutureCancelledError", "CancelledError")
    ]
    with open_database(platform.db) as db:
        assert epochs.current_epoch(db) == before


def test_the_library_raises_cluster_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterUnreachable, match=r"127\.0\.0\.1"):
        DaskExecutor(f"tcp://127.0.0.1:{_closed_port()}", connect_timeout=0.5)
    # tls:// without Dask's TLS configuration: said before any connection is tried.
    monkeypatch.delenv("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", raising=False)
    with pytest.raises(ClusterUnreachable, match=r"distributed\.comm\.tls\.ca-file"):
        DaskExecutor("tls://127.0.0.1:1")


def test_workers_and_a_scheduler_together_are_a_usage_error(
    scheduler: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cleanroom.cli import main

    db = tmp_path / "p.db"
    cli_ok("platform", "init", "--db", db)
    argv = ["platform", "epoch", "rotate", "--db", str(db), "--workers", "2"]
    assert main([*argv, "--dask-scheduler", scheduler]) == 2
    assert "either --workers or --dask-scheduler" in capsys.readouterr().err


def test_the_cli_imports_distributed_only_for_a_cluster() -> None:
    probe = (
        "import sys; from cleanroom.cli import build_parser; build_parser(); "
        "import cleanroom.crypto, cleanroom.store.epochs; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("tcp://10.0.0.7:8786", "tcp:// sends the key in plaintext"),
        ("127.0.0.1:8786", "expected tls://HOST:PORT"),
        ("http://127.0.0.1:8786", "expected tls://HOST:PORT"),
        ("tls://127.0.0.1:99999", "port must be a number"),
    ],
)
def test_bad_scheduler_addresses_are_usage_errors(
    address: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cleanroom.cli import main

    with pytest.raises(SystemExit) as exited:
        main(
            [
                "platform",
                "epoch",
                "rotate",
                "--db",
                str(tmp_path / "p.db"),
                "--dask-scheduler",
                address,
            ]
        )
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
