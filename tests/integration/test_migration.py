"""A database made by the previous version opens after the upgrade, migrated, losing nothing.

``tests/data/platform-schema3.db`` was written by cleanroom at the commit before signed audit
logs (schema 3), with that version's own CLI and server (``tests/data/make_old_platform.py``
says how): an import, an epoch, a count and an audience session, a revocation, an opt-out and a
deletion, and its unsigned hash-chained log. The file is copied 0644, as that version created
it; the first command of this version migrates it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from _audit_tamper import drop_append_only_triggers, rewrite_and_rehash
from _platform_processes import Server, cli_json, cli_ok, run_match

from cleanroom.cli import main
from cleanroom.store import audit, schema

OLD = Path(__file__).parent.parent / "data" / "platform-schema3.db"
OLD_ENTRIES = 9
POLICY = """
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
"""


def _rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture
def old(tmp_path: Path) -> Path:
    db = tmp_path / "platform.db"
    shutil.copyfile(OLD, db)
    db.chmod(0o644)
    return db


def test_the_previous_versions_database_migrates_on_open_and_loses_nothing(old: Path) -> None:
    tables = ("users", "identifiers", "key_epochs", "match_sessions", "eligibility_samples")
    before = {table: _rows(old, f"SELECT * FROM {table} ORDER BY 1") for table in tables}
    log_before = _rows(old, "SELECT seq, at, action, details, prev_hash, hash FROM audit_log")
    members_before = _rows(
        old, "SELECT u.external_id FROM audience_members m JOIN users u ON u.id = m.user_id"
    )
    assert _rows(old, "PRAGMA user_version") == [(3,)] and len(log_before) == OLD_ENTRIES

    status = cli_json("platform", "status", "--db", old)  # the first open migrates

    assert status["users"] == 60
    assert _rows(old, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    for table in tables:
        assert _rows(old, f"SELECT * FROM {table} ORDER BY 1") == before[table], table
    log_after = _rows(old, "SELECT seq, at, action, details, prev_hash, hash FROM audit_log")
    assert log_after[:OLD_ENTRIES] == log_before
    seq, at, action, details, prev_hash, digest = log_after[OLD_ENTRIES]
    migration = audit.AuditEntry(seq, at, action, json.loads(details), prev_hash, digest)
    assert migration.seq == OLD_ENTRIES + 1 and migration.action == "schema.migrate"
    assert migration.prev_hash == log_before[-1][5]
    assert migration.details["from_schema"] == 3
    assert migration.details["unsigned_entries"] == OLD_ENTRIES
    # The database's files were 0644, as the previous version created them (its -wal and -shm
    # inherit the mode as the upgrade opens it); they are 0600 now, and the entry says so.
    assert migration.details["files_made_private"]["platform.db"] == "0644"
    assert set(migration.details["files_made_private"].values()) == {"0644"}
    # The audience keeps its members, who matched through any of their identifiers.
    shown = cli_json("platform", "audiences", "show", "1", "--db", old)
    assert sorted(shown["user_ids"]) == sorted(row[0] for row in members_before)
    listing = cli_json("platform", "audiences", "list", "--db", old)
    assert listing["audiences"][0]["size"] == len(members_before) == 27
    listed = cli_json("platform", "sources", "list", "--db", old)["sources"]
    sources = {source["name"]: source["state"] for source in listed}
    assert sources["signup"] == "permitted" and sources["two_factor"] == "never_permitted"
    # The old chain is covered by the signed migration entry, and verifies.
    verified = cli_ok("platform", "audit", "verify", "--db", old)
    assert verified.startswith(f"intact: {OLD_ENTRIES + 1} entries, last signed at ")
    assert f"entries 1-{OLD_ENTRIES} were written before signing began" in verified
    assert stat.S_IMODE((old.parent / "keys" / "audit.key").stat().st_mode) == 0o600


def test_an_old_entry_rewritten_after_the_migration_breaks_the_migrations_signature(
    old: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_ok("platform", "status", "--db", old)
    conn = sqlite3.connect(old, isolation_level=None)
    drop_append_only_triggers(conn)
    details = conn.execute("SELECT details FROM audit_log WHERE seq = 2").fetchone()[0]
    rewrite_and_rehash(conn, 2, details.replace('"file"', '"forged_file"'))
    conn.close()
    capsys.readouterr()
    assert main(["platform", "audit", "verify", "--db", str(old)]) == 1
    err = capsys.readouterr().err
    assert f"entry {OLD_ENTRIES + 1}: its signature does not verify" in err


def test_the_migrated_platform_serves_with_receipts(old: Path) -> None:
    root = old.parent
    # Only the database was kept: init on it changes nothing in it and makes a TLS identity.
    assert "already exists; nothing changed" in cli_ok("platform", "init", "--db", old)
    cli_ok("platform", "epoch", "rotate", "--db", old, "--workers", "1")
    cli_ok("platform", "issue-cert", "--db", old, "--advertiser", "acme", "--out", root / "acme")
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    customers = root / "customers.csv"
    customers.write_text(
        "record_id,email,marketing_consent\n"
        + "".join(f"c{i},person{i}@example.com,yes\n" for i in range(20)),
        encoding="utf-8",
    )
    server = Server(old, root / "policy.toml", "--workers", "1")
    try:
        receipt = root / "receipt.json"
        report = run_match(server.address, root / "acme", customers, "count", "--receipt", receipt)
    finally:
        server.stop()
    # user1 revoked, user2 opted out, user3 deleted before the upgrade: 17 of 20 match.
    assert report["count"] == 17 and report["receipt_verified"] is True
    verified = cli_ok("platform", "audit", "verify", "--db", old, "--receipt", receipt)
    assert verified.startswith("intact: ") and "its entry is in the log, unchanged" in verified
