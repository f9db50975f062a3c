"""`cleanroom platform serve` as a real process: listening line, mTLS, and a clean SIGTERM.

Also the platform CLI around the service: `init` makes the TLS identity, `issue-cert` writes the
advertiser's folder, `serve` refuses plaintext off loopback.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from _match_stream import MatchStream, run_role
from _platform_processes import Server, cli_ok
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cleanroom import tls
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode
from cleanroom.protocol import AdvertiserRole
from cleanroom.store import audit, sessions
from cleanroom.store.database import open_database

TIMEOUT = 30.0
POLICY = "epsilon_per_release = 0.0\nmin_upload_records = 100\nmin_reported_count = 10\n"
_CLI = "import sys; from cleanroom.cli import main; sys.exit(main())"


def _run_cli(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Person]]:
    root = tmp_path_factory.mktemp("served")
    db = root / "platform.db"
    people = generate_people(600, seed=11)
    rows = [f"{p.user_id},email,{p.email},signup,true" for p in people]
    (root / "users.csv").write_text(
        "user_id,type,value,source,ads_matching_consent\n" + "\n".join(rows) + "\n"
    )
    (root / "policy.toml").write_text(POLICY)
    _run_cli("platform", "init", "--db", str(db), "--server-name", "platform.example")
    _run_cli("platform", "import", "--db", str(db), str(root / "users.csv"))
    _run_cli("platform", "epoch", "rotate", "--db", str(db), "--workers", "1")
    _run_cli(
        "platform",
        "issue-cert",
        "--db",
        str(db),
        "--advertiser",
        "acme",
        "--out",
        str(root / "acme"),
    )
    return db, people


def _role(people: list[Person], mode: Mode) -> AdvertiserRole:
    messages = [hash_message("email", identifier_digest("email", p.email)) for p in people]
    role = AdvertiserRole(
        get_suite("x25519-sha512-ell2-ro"),
        mode,
        messages,
        range(len(people)),
        engine=BatchEngine(workers=1),
    )
    role.encrypt_list()
    return role


def test_init_makes_the_tls_identity_with_extra_server_names(
    platform: tuple[Path, list[Person]],
) -> None:
    db, _ = platform
    tls_dir = db.parent / "tls"
    assert {p.name for p in tls_dir.iterdir()} >= {"ca.crt", "ca.key", "server.crt", "server.key"}
    cert = x509.load_pem_x509_certificate((tls_dir / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "platform.example"}
    # A second init leaves the CA alone (replacing it would void every advertiser certificate).
    before = (tls_dir / "ca.crt").read_bytes()
    _run_cli("platform", "init", "--db", str(db))
    assert (tls_dir / "ca.crt").read_bytes() == before


def test_issue_cert_writes_the_advertiser_folder_and_audits_it(
    platform: tuple[Path, list[Person]],
) -> None:
    db, _ = platform
    folder = db.parent / "acme"
    assert {p.name for p in folder.iterdir()} == {"ca.crt", "client.crt", "client.key", "audit.pub"}
    assert (folder / "audit.pub").read_bytes() == (db.parent / "audit.pub").read_bytes()
    assert (folder / "client.key").stat().st_mode & 0o077 == 0
    assert tls.advertiser_from_certificate((folder / "client.crt").read_bytes()) == "acme"
    with open_database(db) as database:
        issued = [e for e in audit.entries(database.conn) if e.action == "tls.issue"]
    assert issued[0].details["advertiser"] == "acme"


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--listen", "0.0.0.0:0", "--insecure"], 2, "loopback"),
        (["--listen", "127.0.0.1:0", "--insecure-advertiser", "x"], 2, "only with --insecure"),
        (["--listen", "127.0.0.1"], 2, "HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--tls-dir", "/nonexistent"], 1, "missing"),
    ],
)
def test_serve_refuses_bad_settings_before_listening(
    platform: tuple[Path, list[Person]],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    code: int,
    message: str,
) -> None:
    db, _ = platform
    assert main(["platform", "serve", "--db", str(db), *flags]) == code
    assert message in capsys.readouterr().err


def test_serve_matches_then_sigterm_aborts_the_open_session_and_exits_0(
    platform: tuple[Path, list[Person]],
) -> None:
    db, people = platform
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CLI,
            "platform",
            "serve",
            "--db",
            str(db),
            "--listen",
            "127.0.0.1:0",
            "--policy",
            str(db.parent / "policy.toml"),
            "--grace",
            "1",
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        target = f"localhost:{match.group(1)}"
        credentials = tls.channel_credentials(db.parent / "acme")
        customers = people[:300] + generate_people(100, seed=12)
        with grpc.secure_channel(target, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="cleanroom.v1.Matcher"), timeout=TIMEOUT
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            # One whole session.
            role = _role(customers, Mode.COUNT)
            run_role(channel, role, TIMEOUT)
            assert role.result is not None and role.result.count == 300

            # One left half-way (U sent, W not) when the platform is told to stop.
            stalled = _role(customers, Mode.AUDIENCE)
            stream = MatchStream(channel, TIMEOUT)
            stream.send(stalled.open_session())
            replies = iter(stream.call)
            stream.send(*stalled.handle(next(replies)))
            _wait_until_open(db)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=TIMEOUT) == 0, (
                process.stderr.read() if process.stderr else ""
            )
            with pytest.raises(grpc.RpcError):
                for _ in replies:
                    pass
            stream.end()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    with open_database(db) as database:
        records = sessions.list_sessions(database, advertiser="acme")
        entries = list(audit.entries(database.conn))
        audiences = sessions.audience_summaries(database)
    assert [r.state for r in records] == ["completed", "aborted"], stderr
    assert records[1].epsilon_charged == 0 and records[1].audience_id is None
    assert audiences == []
    assert entries[-1].action == "match.aborted"
    assert entries[-1].details["ledger_id"] == records[1].id

    listing = subprocess.run(
        [sys.executable, "-c", _CLI, "platform", "sessions", "list", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert [s["state"] for s in json.loads(listing.stdout)["sessions"]] == ["completed", "aborted"]
    # For people: the header line every list command starts with, then a line per session.
    lines = cli_ok("platform", "sessions", "list", "--db", db).splitlines()
    assert lines[0].split() == [
        *("id", "asked", "for", "advertiser", "mode", "state", "epsilon", "released", "/"),
        *("why", "not"),
    ]
    assert [line.split()[4] for line in lines[1:]] == ["completed", "aborted"]


def _wait_until_open(db: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with open_database(db) as database:
            if sessions.open_sessions(database):
                return
        time.sleep(0.05)
    raise AssertionError("the session never opened")


@pytest.mark.parametrize(("level", "logged"), [("info", True), ("warning", False)])
def test_serve_logs_json_lines_at_the_level_asked_for(
    platform: tuple[Path, list[Person]], level: str, logged: bool
) -> None:
    db, _ = platform
    server = Server(
        db,
        db.parent / "policy.toml",
        *("--workers", "1", "--log-format", "json", "--log-level", level),
    )
    server.stop()
    lines = server.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [entry["message"] for entry in entries]
    assert ("serving mTLS" in messages) is logged, lines
    assert ("received SIGTERM: stopping" in messages) is logged, lines
    for entry in entries:
        assert set(entry) >= {"time", "level", "logger", "message"}
        assert entry["level"] in {"info", "warning", "error"} if logged else {"warning", "error"}
