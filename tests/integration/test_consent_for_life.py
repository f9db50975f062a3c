"""Consent for the life of the data, against a real platform: the real CLI and a real server.

One platform for the module, built with the CLI (init, import, epoch rotate, issue-cert) and
served by ``cleanroom platform serve`` as a subprocess over mTLS, sweeping every second. Each
test replays a way consent used to fail after a session opened, or a way the record meant to
prove it could be rewritten:

- a user revoked, deleted or opted out while an audience session waits to send W;
- consent that expires after the audience was stored, or a re-import with a past expiry;
- the platform's own source names (``app``) and the never-permitted four;
- a database, key or TLS key that others could read;
- an audit log rewritten past its triggers, emptied, cut, or a ledger that gives budget back.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from _audit_tamper import drop_append_only_triggers, rewrite_and_rehash
from _match_stream import MatchStream
from _platform_processes import (
    Server,
    build_platform,
    cleanroom_executable,
    cli_json,
    cli_ok,
    wait_until,
)

from cleanroom import tls
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode
from cleanroom.protocol import AdvertiserRole
from cleanroom.store import audit
from cleanroom.store.database import open_database

TIMEOUT = 60.0
SUITE_ID = "x25519-sha512-ell2-ro"
POLICY = """
[advertisers.acme]
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10

[advertisers.noisy]
min_upload_records = 10
"""
USERS = 80


@dataclass
class Platform:
    root: Path
    db: Path
    address: str
    people: list[Person]
    engine: BatchEngine

    def channel(self) -> grpc.Channel:
        return grpc.secure_channel(self.address, tls.channel_credentials(self.root / "acme"))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("consent")
    people = generate_people(USERS, seed=1414)
    rows = [[p.user_id, "email", p.email, "signup", "true"] for p in people]
    users = _write(
        root / "users.csv", ["user_id", "type", "value", "source", "ads_matching_consent"], rows
    )
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    db = build_platform(root, users, ("acme", "noisy"))
    server = Server(db, root / "policy.toml", "--workers", "1", "--sweep-interval", "1")
    engine = BatchEngine(workers=1)
    try:
        yield Platform(root, db, server.address, people, engine)
    finally:
        engine.close()
        server.stop()


_FILES = itertools.count(1)


def newcomers(count: int, *, seed: int, prefix: str) -> list[Person]:
    """People the platform does not know yet, under user ids of their own."""
    return [
        dataclasses.replace(person, user_id=f"{prefix}{i}")
        for i, person in enumerate(generate_people(count, seed=seed))
    ]


def customer_list(platform: Platform, emails: list[str]) -> Path:
    return _write(
        platform.root / f"list{next(_FILES)}.csv",
        ["record_id", "email", "marketing_consent"],
        [[f"c{i}", email, "yes"] for i, email in enumerate(emails)],
    )


def cli(*argv: str | Path) -> tuple[int, str, str]:
    """The real CLI in a process of its own: exit code, stdout, stderr."""
    done = subprocess.run(
        [cleanroom_executable(), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return done.returncode, done.stdout, done.stderr


def match(platform: Platform, emails: list[str], mode: str, *extra: str | Path) -> dict[str, Any]:
    code, out, err = cli(
        "match",
        *("--server", platform.address, "--tls-dir", platform.root / "acme"),
        *("--input", customer_list(platform, emails), "--mode", mode),
        *("--workers", "1", "--json", *extra),
    )
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def audience_ids(platform: Platform, audience: int) -> list[str]:
    shown = cli_json("platform", "audiences", "show", str(audience), "--db", platform.db)
    ids: list[str] = shown["user_ids"]
    return ids


def audience_size(platform: Platform, audience: int) -> int:
    listing = cli_json("platform", "audiences", "list", "--db", platform.db)
    return next(int(a["size"]) for a in listing["audiences"] if a["id"] == audience)


def last_completed(platform: Platform) -> audit.AuditEntry:
    with open_database(platform.db) as db:
        return [e for e in audit.entries(db.conn) if e.action == "match.completed"][-1]


# -- a user who loses eligibility while an audience session waits ---------------------------


def test_users_revoked_deleted_or_opted_out_mid_session_are_not_stored(
    platform: Platform, tmp_path: Path
) -> None:
    chosen = platform.people[:50]
    revoked, deleted, opted_out = chosen[0], chosen[1], chosen[2]
    messages = [hash_message("email", identifier_digest("email", p.email)) for p in chosen]
    role = AdvertiserRole(
        get_suite(SUITE_ID),
        Mode.AUDIENCE,
        messages,
        list(range(len(chosen))),
        engine=platform.engine,
    )
    role.encrypt_list()
    held: list[Any] = []
    changed = False
    with platform.channel() as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        try:
            for reply in stream.replies():
                for message in role.handle(reply):
                    # A malicious advertiser chooses when W goes: it holds W back...
                    if message.WhichOneof("round") == "encrypted_platform_set":
                        held.append(message)
                    else:
                        stream.send(message)
                if held and not changed:
                    # ...while the operator applies three users' wishes, each with the real CLI.
                    for argv in (
                        ("consent", "revoke", "--user", revoked.user_id),
                        ("user", "delete", "--user", deleted.user_id),
                        ("consent", "opt-out", "--user", opted_out.user_id),
                    ):
                        kind = ("--kind", "targeted_ads_opt_out") if "opt-out" in argv else ()
                        code, _, err = cli("platform", *argv, "--db", platform.db, *kind)
                        assert code == 0, err
                    changed = True
                    stream.send(*held)
        finally:
            stream.end()
    assert role.result is not None and role.result.count == 50  # released before the changes
    entry = last_completed(platform)
    assert entry.details["audience_members"] == 47 and entry.details["audience_left_out"] == 3
    audience = int(entry.details["audience"])
    members = audience_ids(platform, audience)
    assert len(members) == 47 == audience_size(platform, audience)
    assert not {revoked.user_id, deleted.user_id, opted_out.user_id} & set(members)
    with sqlite3.connect(platform.db) as conn:
        stored = conn.execute(
            "SELECT COUNT(*) FROM audience_members WHERE audience_id = ?", (audience,)
        ).fetchone()[0]
    assert stored == 47  # never stored, not merely hidden
    # The receipt the advertiser got names this entry, and the log still holds it.
    assert role.result.receipt is not None and role.result.receipt.audit_seq == entry.seq
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(role.result.receipt.to_json(indent=2))
    code, out, err = cli(
        "receipt", "verify", receipt, "--key", platform.root / "acme" / "audit.pub"
    )
    assert code == 0 and "receipt valid" in out, err
    code, out, err = cli("platform", "audit", "verify", "--db", platform.db, "--receipt", receipt)
    assert code == 0 and out.startswith("intact: ") and "last signed at" in out, err


# -- expiry --------------------------------------------------------------------------------------


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.slow
def test_expired_consent_leaves_every_read_at_once_and_the_server_sweeps_it(
    platform: Platform,
) -> None:
    expiring = newcomers(6, seed=77, prefix="expiring")
    # Long enough for the import, the refresh and the match (well under a second here), short
    # enough not to idle the suite: the match must still see them all.
    expires = time.time() + 5
    rows = [[p.user_id, "email", p.email, "newsletter", "true", _iso(expires)] for p in expiring]
    header = ["user_id", "type", "value", "source", "ads_matching_consent", "expires_at"]
    cli_ok(
        "platform", "import", "--db", platform.db, _write(platform.root / "exp.csv", header, rows)
    )
    cli_ok("platform", "epoch", "refresh", "--db", platform.db, "--workers", "1")
    steady = platform.people[60:70]
    report = match(platform, [p.email for p in expiring + steady], "audience")
    assert report["count"] == 16
    audience = int(last_completed(platform).details["audience"])
    assert len(audience_ids(platform, audience)) == 16, "the session outlasted the expiry"
    wait_until(lambda: time.time() > expires + 1, "the consents to expire", timeout=40)
    # Reads exclude them at once, whether or not a sweep has run.
    members = audience_ids(platform, audience)
    assert (
        sorted(members) == sorted(p.user_id for p in steady)
        and audience_size(platform, audience) == 10
    )
    status = cli_json("platform", "status", "--db", platform.db)
    assert status["excluded"]["no_consent"] >= 6

    # The server's sweep (every second) deletes the rows and audits how many.
    def swept() -> bool:
        with open_database(platform.db) as db:
            return any(
                e.action == "audience.sweep" and e.details["memberships_removed"] >= 6
                for e in audit.entries(db.conn)
            )

    wait_until(swept, "the server to sweep the expired memberships", timeout=30)
    with sqlite3.connect(platform.db) as conn:
        stored = conn.execute(
            "SELECT COUNT(*) FROM audience_members WHERE audience_id = ?", (audience,)
        ).fetchone()[0]
    assert stored == 10


def test_a_reimport_with_a_past_expiry_leaves_audiences_though_consent_says_true(
    platform: Platform,
) -> None:
    chosen = platform.people[70:80]
    report = match(platform, [p.email for p in chosen], "audience")
    audience = int(last_completed(platform).details["audience"])
    assert report["count"] == 10 and len(audience_ids(platform, audience)) == 10
    past = _iso(time.time() - 3600)
    header = ["user_id", "type", "value", "source", "ads_matching_consent", "expires_at"]
    rows = [[p.user_id, "email", p.email, "signup", "true", past] for p in chosen[:4]]
    cli_ok(
        "platform", "import", "--db", platform.db, _write(platform.root / "re.csv", header, rows)
    )
    assert sorted(audience_ids(platform, audience)) == sorted(p.user_id for p in chosen[4:])
    assert audience_size(platform, audience) == 6
    # A grant later does not bring them back: the lapse ended those memberships.
    rows = [[p.user_id, "email", p.email, "signup", "true", ""] for p in chosen[:4]]
    cli_ok("platform", "import", "--db", platform.db, _write(platform.root / "g.csv", header, rows))
    assert audience_size(platform, audience) == 6


# -- the platform's own sources -------------------------------------------------------------


def test_the_platforms_own_source_names_can_be_permitted_the_never_permitted_four_never(
    platform: Platform,
) -> None:
    app_users = newcomers(12, seed=99, prefix="app")
    maids = [f"{i:08x}-0d2b-4c1e-9a7f-2b3c4d5e6f70" for i in range(1, 13)]
    header = ["user_id", "type", "value", "source", "ads_matching_consent"]
    rows = [
        [p.user_id, "maid", maid, " App ", "true"] for p, maid in zip(app_users, maids, strict=True)
    ]
    imported = cli_json(
        "platform", "import", "--db", platform.db, _write(platform.root / "app.csv", header, rows)
    )
    assert imported["source_unknown"]["rows"] == 12
    assert imported["source_unknown"]["sources"] == {"app": 12}
    assert imported["rejected"] == {}
    status = cli_json("platform", "status", "--db", platform.db)
    assert status["excluded"]["source_unknown"] == 12
    code, out, err = cli("platform", "sources", "permit", "--db", platform.db, "two_factor")
    assert code == 2 and "two_factor can never be permitted" in err and out == ""
    listed = cli_json("platform", "sources", "list", "--db", platform.db)["sources"]
    states = {s["name"]: s["state"] for s in listed}
    assert states["two_factor"] == "never_permitted" and states["app"] == "unregistered"
    cli_ok("platform", "sources", "permit", "--db", platform.db, "APP")
    after = cli_json("platform", "status", "--db", platform.db)
    assert after["excluded"]["source_unknown"] == 0
    assert after["eligible_identifiers"] == status["eligible_identifiers"] + 12
    cli_ok("platform", "epoch", "refresh", "--db", platform.db, "--workers", "1")
    code, out, err = cli(
        "match",
        *("--server", platform.address, "--tls-dir", platform.root / "acme"),
        *(
            "--input",
            _write(
                platform.root / "maids.csv",
                ["record_id", "maid", "marketing_consent"],
                [[f"m{i}", maid, "yes"] for i, maid in enumerate(maids)],
            ),
        ),
        *("--mode", "count", "--workers", "1", "--json"),
    )
    assert code == 0, err
    assert json.loads(out)["count"] == 12


# -- private files ----------------------------------------------------------------------------


def test_the_database_is_private_and_a_readable_one_is_refused_naming_the_chmod() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cleanroom-private-"))
    try:
        folder.chmod(0o755)  # a folder others may enter, as a home or /srv often is
        previous = os.umask(0o022)
        try:
            db = folder / "platform.db"
            assert main(["platform", "init", "--db", str(db)]) == 0
            code, _, err = cli("platform", "status", "--db", db)
        finally:
            os.umask(previous)
        assert code == 0, err
        for name in ("platform.db", "platform.db-wal", "platform.db-shm"):
            path = folder / name
            if path.exists():
                assert path.stat().st_mode & 0o777 == 0o600, name
        if os.geteuid() == 0:
            # As another local user: the file itself keeps them out.
            denied = subprocess.run(["cat", str(db)], user="nobody", capture_output=True)
            assert denied.returncode != 0 and b"Permission denied" in denied.stderr
        for path, wanted in (
            (db, "chmod 600"),
            (folder / "keys" / "audit.key", "chmod 600"),
            (folder / "tls" / "server.key", "chmod 600"),
            (folder / "keys", "chmod 700"),
        ):
            mode = path.stat().st_mode & 0o777
            path.chmod(0o755 if path.is_dir() else 0o644)
            code, out, err = cli("platform", "status", "--db", db)
            assert code == 1 and out == "" and f"{wanted} {path}" in err, err
            path.chmod(mode)
        (folder / "tls" / "server.key").chmod(0o640)
        code, _, err = cli("platform", "serve", "--db", db, "--listen", "127.0.0.1:0")
        assert code == 1 and "chmod 600" in err and "server.key" in err
    finally:
        shutil.rmtree(folder)


# -- the audit log against a writer of the database ----------------------------------------------


def copy_platform(platform: Platform, folder: Path) -> Path:
    """The platform's database, its key folder and audit.pub, copied while the server runs."""
    copy = folder / "platform.db"
    with sqlite3.connect(platform.db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    copy.chmod(0o600)
    shutil.copytree(platform.root / "keys", folder / "keys")
    shutil.copy(platform.root / "audit.pub", folder / "audit.pub")
    return copy


@pytest.fixture
def copy_of_platform(platform: Platform, tmp_path: Path) -> tuple[Path, Path]:
    """The platform's database (after one more session) with its key folder and audit.pub,
    copied while the server runs; and that session's receipt."""
    receipt = tmp_path / "receipt.json"
    report = match(
        platform, [p.email for p in platform.people[20:40]], "count", "--receipt", receipt
    )
    assert report["receipt_verified"] is True and report["receipt"]["count"] == 20
    copy = copy_platform(platform, tmp_path)
    code, out, err = cli("platform", "audit", "verify", "--db", copy, "--receipt", receipt)
    assert code == 0 and "intact" in out, err
    return copy, receipt


def _attack(db: Path, script: str = "", rewrite: int | None = None) -> None:
    """Drop the append-only triggers, run ``script``; rewrite entry ``rewrite`` and rehash."""
    conn = sqlite3.connect(db, isolation_level=None)
    drop_append_only_triggers(conn)
    conn.executescript(script)
    if rewrite is not None:
        rewrite_and_rehash(conn, rewrite, json.dumps({"forged": True}))
    conn.close()


def test_insert_or_replace_is_refused_and_a_rehashed_rewrite_fails_its_signature(
    copy_of_platform: tuple[Path, Path],
) -> None:
    db, _ = copy_of_platform
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(
            "INSERT OR REPLACE INTO audit_log SELECT seq, at, 'x', details, prev_hash, hash, "
            "signature FROM audit_log WHERE seq = 3"
        )
    conn.close()
    _attack(db, rewrite=3)
    code, _, err = cli("platform", "audit", "verify", "--db", db)
    assert code == 1 and "entry 3: its signature does not verify" in err


def test_an_emptied_log_is_caught(copy_of_platform: tuple[Path, Path]) -> None:
    db, _ = copy_of_platform
    _attack(db, "DELETE FROM audit_log; DELETE FROM meta WHERE key = 'audit_head';")
    code, _, err = cli("platform", "audit", "verify", "--db", db)
    assert code == 1 and "the log is empty" in err


def test_a_cut_log_with_its_head_moved_back_is_caught_by_the_receipt_and_the_ledger(
    copy_of_platform: tuple[Path, Path],
) -> None:
    db, receipt = copy_of_platform
    conn = sqlite3.connect(db)
    last = conn.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0]
    keep = last - 5
    kept_hash = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (keep,)).fetchone()[0]
    conn.close()
    _attack(
        db,
        f"DELETE FROM audit_log WHERE seq > {keep}; "
        f"UPDATE meta SET value = '{keep}:{kept_hash}' WHERE key = 'audit_head';",
    )
    code, _, err = cli("platform", "audit", "verify", "--db", db, "--receipt", receipt)
    assert code == 1 and "but the log ends at entry" in err and "truncated or rolled back" in err
    # Without the receipt, the sessions the cut entries recorded are still in the ledger.
    code, _, err = cli("platform", "audit", "verify", "--db", db)
    assert code == 1 and "no signed entry records its end" in err


def test_a_noisy_budget_given_back_in_the_ledger_is_caught(
    platform: Platform, tmp_path: Path
) -> None:
    code, out, err = cli(
        "match",
        *("--server", platform.address, "--tls-dir", platform.root / "noisy"),
        *("--input", customer_list(platform, [p.email for p in platform.people[40:60]])),
        *("--mode", "count", "--workers", "1", "--json"),
    )
    assert code == 0, err
    assert json.loads(out)["epsilon_spent"] == 0.5
    copy = copy_platform(platform, tmp_path)
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("UPDATE match_sessions SET epsilon_charged = 0")
    conn.close()
    code, _, err = cli("platform", "audit", "verify", "--db", copy)
    assert code == 1
    assert (
        "noisy has spent epsilon 0 in epoch 1 by the session ledger, but 0.5 by the signed" in err
    )


def test_serve_without_the_audit_key_fails_at_once_naming_where_it_looked(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    cli_ok("platform", "init", "--db", db)
    (tmp_path / "keys" / "audit.key").rename(tmp_path / "elsewhere.key")
    code, out, err = cli("platform", "serve", "--db", db, "--listen", "127.0.0.1:0")
    assert code == 1 and "listening" not in out
    assert f"the audit signing key {tmp_path / 'keys' / 'audit.key'} is missing" in err
    assert "CLEANROOM_AUDIT_KEY" in err
