"""Real platform processes for the load and fault tests: the CLI, the server, a TCP proxy.

Everything here drives the real ``cleanroom`` executable as subprocesses (the server, matches,
rotations) against real SQLite files, so that a process can be killed with SIGKILL at any point
and what it leaves behind is what a crash would leave. The ground truth of every match is
computed here from the plaintext synthetic people, never by the code under test.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.cli import main
from cleanroom.demo import Person, messy_email
from cleanroom.store import sessions
from cleanroom.store.database import open_database

TIMEOUT = 120.0
"""Seconds any single CLI call or wait may take before the test fails (a hang, not slowness)."""


def cleanroom_executable() -> str:
    """The ``cleanroom`` script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def cli_ok(*argv: str | Path) -> str:
    """Run ``cleanroom ARGV…`` in this process (the CLI's ``main``), require exit 0, its stdout.

    Commands that only read or change the store need no process of their own; the processes
    that must be killable (the server, matches, rotations under attack) are subprocesses.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*map(str, argv)])
    assert code == 0, (argv, out.getvalue(), err.getvalue())
    return out.getvalue()


def cli_json(*argv: str | Path) -> dict[str, Any]:
    """Run ``cleanroom ARGV… --json`` in this process, require exit 0, its JSON object."""
    data: dict[str, Any] = json.loads(cli_ok(*argv, "--json"))
    return data


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


# -- data -------------------------------------------------------------------------------------


def write_platform_csv(path: Path, people: Sequence[Person]) -> None:
    """One consented ``signup`` email per person: every user is eligible exactly once."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "type", "value", "source", "ads_matching_consent"])
        writer.writerows([p.user_id, "email", p.email, "signup", "true"] for p in people)


def write_customer_list(path: Path, people: Sequence[Person], seed: int) -> list[str]:
    """An advertiser's list, one consented record per person, emails spelled messily.

    Returns:
        The record ids, in file order (record ``i`` is ``people[i]``).
    """
    rng = random.Random(seed)  # test data, not a secret
    record_ids = [f"r{seed}-{i}" for i in range(len(people))]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["record_id", "email", "marketing_consent"])
        for record_id, person in zip(record_ids, people, strict=True):
            writer.writerow([record_id, messy_email(person.email, rng), "yes"])
    return record_ids


def setup_platform(
    root: Path, people: Sequence[Person], advertisers: Iterable[str], policy: str
) -> Path:
    """``platform init``, ``import``, ``epoch rotate`` and one certificate per advertiser.

    Certificates land in ``root/<advertiser>``; the policy in ``root/policy.toml``.

    Returns:
        The database path.
    """
    write_platform_csv(root / "users.csv", people)
    (root / "policy.toml").write_text(policy, encoding="utf-8")
    return build_platform(root, root / "users.csv", advertisers)


def build_platform(root: Path, users_csv: Path, advertisers: Iterable[str]) -> Path:
    """``platform init``, ``import`` of ``users_csv``, ``epoch rotate``, one certificate each.

    The database is ``root/platform.db``; certificates land in ``root/<advertiser>``.

    Returns:
        The database path.
    """
    db = root / "platform.db"
    cli_ok("platform", "init", "--db", db)
    cli_ok("platform", "import", "--db", db, users_csv)
    cli_ok("platform", "epoch", "rotate", "--db", db, "--workers", "1")
    for name in advertisers:
        cli_ok("platform", "issue-cert", "--db", db, "--advertiser", name, "--out", root / name)
    return db


def open_session_count(db: Path) -> int:
    """Sessions the ledger holds as open right now (read from the real database file)."""
    with open_database(db) as database:
        return len(sessions.open_sessions(database))


def integrity_check(db: Path) -> str:
    """SQLite's own ``PRAGMA integrity_check`` of the database file ('ok' when intact)."""
    import sqlite3

    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


# -- processes --------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Live descendants of a process (its children, theirs, …), from /proc."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def is_running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Server:
    """``cleanroom platform serve`` on 127.0.0.1, port 0, mTLS, as a subprocess.

    Its log (stderr) goes to a file, so a chatty server never blocks on a full pipe.
    """

    def __init__(self, db: Path, policy: Path, *extra: str) -> None:
        self.db = db
        self.log_path = db.parent / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                cleanroom_executable(),
                *("platform", "serve", "--db", str(db), "--listen", "127.0.0.1:0"),
                *("--policy", str(policy), "--grace", "0", *extra),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.address = self._wait_for_listening()

    def _wait_for_listening(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.process.stdout.readline()
                if not line:
                    break  # the server exited
                if line.startswith("listening on "):
                    return line.removeprefix("listening on ").strip()
        self.kill()
        raise AssertionError(f"the server did not start: {self.log()}")

    def log(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(encoding="utf-8")

    def stop(self) -> None:
        """SIGTERM, as an operator stops it; it must exit 0."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=TIMEOUT)
        self._close()
        assert code == 0, self.log()

    def kill(self) -> None:
        """SIGKILL: the process dies at once, whatever it was doing."""
        self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self._close()

    def _close(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def start_match(
    address: str, tls_dir: Path, customers: Path, mode: str, *extra: str | Path
) -> subprocess.Popen[str]:
    """Start ``cleanroom match --json --workers 1`` (the advertiser's real CLI)."""
    return subprocess.Popen(
        [
            cleanroom_executable(),
            *("match", "--server", address, "--tls-dir", str(tls_dir)),
            *("--input", str(customers), "--mode", mode, "--json", "--workers", "1"),
            *map(str, extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def match_report(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a started match; require exit 0; its JSON report."""
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def run_match(
    address: str, tls_dir: Path, customers: Path, mode: str, *extra: str | Path
) -> dict[str, Any]:
    """One whole ``cleanroom match`` run; its JSON report."""
    return match_report(start_match(address, tls_dir, customers, mode, *extra))


class TcpProxy:
    """A plain TCP forwarder between clients and the server, whose connections can be cut.

    TLS passes through it untouched (the client still verifies the server's certificate), so
    cutting here is exactly a network failure mid-stream: both sockets are shut down and closed.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.client_to_server_bytes = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if upstream:
                    with self._lock:
                        self.client_to_server_bytes += len(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on
        except OSError:
            pass  # cut, or the other side went away

    def cut(self) -> None:
        """Drop every connection through the proxy at once, and accept no more."""
        self._listener.close()
        with self._lock:
            cut, self._sockets = self._sockets, []
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass(frozen=True)
class HealthStats:
    """What a health-check poller saw."""

    checks: int
    serving: int
    failures: list[str]
    latencies_s: list[float]
    during_load: int


class HealthPoller:
    """Calls ``grpc.health.v1.Health/Check`` over mTLS again and again from a thread.

    Args:
        address: the server.
        tls_dir: a certificate folder the server accepts.
        busy: returns whether the load is running now (to count checks made under load).
    """

    def __init__(self, address: str, tls_dir: Path, busy: Callable[[], bool]) -> None:
        self._address = address
        self._tls_dir = tls_dir
        self._busy = busy
        self._stop = threading.Event()
        self._stats = HealthStats(0, 0, [], [], 0)
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT)

    @property
    def stats(self) -> HealthStats:
        """The checks so far (complete once the poller has stopped)."""
        return self._stats

    def _poll(self) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from cleanroom import tls

        checks = serving = during = 0
        failures: list[str] = []
        latencies: list[float] = []
        credentials = tls.channel_credentials(self._tls_dir)
        with grpc.secure_channel(self._address, credentials) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="cleanroom.v1.Matcher")
            while not self._stop.wait(0.02):
                busy = self._busy()
                start = time.perf_counter()
                try:
                    reply = stub.Check(request, timeout=30.0)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                else:
                    latencies.append(time.perf_counter() - start)
                    serving += reply.status == health_pb2.HealthCheckResponse.SERVING
                checks += 1
                during += busy
        self._stats = HealthStats(checks, serving, failures, latencies, during)
