"""`cleanroom platform …` through the real CLI against real SQLite files.

Most tests call :func:`cleanroom.cli.main` in-process (the same code the console script runs);
the kill test and one end-to-end test run the console script in a subprocess.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cleanroom.cli import main


def _cleanroom() -> str:
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_cleanroom(), *map(str, argv)], capture_output=True, text=True, timeout=120
    )


def _cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "platform.db"
    assert _cli(capsys, "platform", "init", "--db", path)[0] == 0
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


PLATFORM_CSV = """user_id,type,value,source,ads_matching_consent,consent_at,revoked_at
alice,email,Alice@Example.com,signup,true,2024-01-01T00:00:00Z,
alice,phone,+1 415 555 2671,two_factor,true,,
bob,phone,+14155552672,two_factor,yes,,
bob,email,bob@example.com,profile,true,,
carol,email,carol@example.com,checkout,false,,
dave,email,dave@example.com,crm,true,2024-01-01,2024-02-01
erin,email,erin@example.com,newsletter,granted,,
"""


def test_end_to_end_through_the_console_script(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    init = _run("platform", "init", "--db", db)
    assert init.returncode == 0, init.stderr
    assert oct((tmp_path / "keys").stat().st_mode & 0o777) == "0o700"
    imported = _run("platform", "import", "--db", db, _write(tmp_path / "p.csv", PLATFORM_CSV))
    assert imported.returncode == 0, imported.stderr
    assert "2 rows from never-permitted sources" in imported.stdout
    rotated = _run("platform", "epoch", "rotate", "--db", db, "--workers", "1")
    assert rotated.returncode == 0, rotated.stderr
    assert "epoch 1 is current: 3 eligible identifiers" in rotated.stdout
    keys = sorted((tmp_path / "keys").iterdir())
    assert "audit.key" in [key.name for key in keys] and len(keys) == 2
    assert all(oct(key.stat().st_mode & 0o777) == "0o600" for key in keys)
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    status = _run("platform", "status", "--db", db, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["users"] == 5 and data["identifiers"] == 7
    assert data["eligible_identifiers"] == 3
    assert data["excluded"] == {
        "deleted": 0,
        "source_unknown": 0,
        "source_not_permitted": 2,
        "opted_out": 0,
        "revoked": 1,
        "no_consent": 1,
    }
    assert data["epoch"]["id"] == 1 and data["epoch"]["size"] == 3
    assert set(data["epoch"]) == {"id", "size", "created_at"}
    verify = _run("platform", "audit", "verify", "--db", db)
    assert verify.returncode == 0 and "intact: 4 entries, last signed at" in verify.stdout


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback(db: Path) -> None:
    # `cleanroom platform audit show … | head -1`, with head gone before anything is written.
    process = subprocess.Popen(
        [_cleanroom(), "platform", "audit", "show", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 1
    assert err == ""


def test_every_list_command_starts_with_its_header_or_says_it_is_empty(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(capsys, "platform", "import", "--db", db, _write(tmp_path / "p.csv", PLATFORM_CSV))
    headers = {
        ("sources", "list"): ["source", "state", "identifiers"],
        ("audit", "show"): ["seq", "at", "action", "details"],
    }
    for command, header in headers.items():
        code, out, _ = _cli(capsys, "platform", *command, "--db", db)
        lines = out.splitlines()
        assert code == 0 and lines[0].split() == header, command
        assert len(lines) > 2
    # Columns line up under their names, numbers to the right.
    code, out, _ = _cli(capsys, "platform", "sources", "list", "--db", db)
    header, *rows = out.splitlines()
    assert all(len(row) == len(header) for row in rows)
    for command, empty in (
        (("sessions", "list"), "no sessions"),
        (("audiences", "list"), "no audiences stored"),
    ):
        assert _cli(capsys, "platform", *command, "--db", db)[1] == empty + "\n"


def test_two_factor_with_consent_is_never_eligible(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(capsys, "platform", "import", "--db", db, _write(tmp_path / "p.csv", PLATFORM_CSV))
    code, out, _ = _cli(capsys, "platform", "consent", "grant", "--db", db, "--user", "bob")
    assert code == 0 and "stay ineligible" in out
    _cli(capsys, "platform", "epoch", "rotate", "--db", db, "--workers", "1")
    from cleanroom.store import matchable_epoch, open_database

    with open_database(db) as database:
        bob = database.conn.execute("SELECT id FROM users WHERE external_id = 'bob'").fetchone()
        phones = database.conn.execute(
            "SELECT COUNT(*) FROM eligible_identifiers WHERE type = 'phone'"
        ).fetchone()[0]
        assert phones == 0
        # bob is in V only through his profile email, never his two-factor phone.
        assert matchable_epoch(database).user_rows.tolist().count(bob[0]) == 1


def test_consent_commands_and_user_deletion(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cli(capsys, "platform", "import", "--db", db, _write(tmp_path / "p.csv", PLATFORM_CSV))

    def eligible() -> int:
        code, out, _ = _cli(capsys, "platform", "status", "--db", db, "--json")
        assert code == 0
        return int(json.loads(out)["eligible_identifiers"])

    assert eligible() == 3
    assert _cli(capsys, "platform", "consent", "revoke", "--db", db, "--user", "erin")[0] == 0
    assert eligible() == 2
    code, _, _ = _cli(
        capsys,
        "platform",
        "consent",
        "opt-out",
        "--db",
        db,
        "--user",
        "alice",
        "--kind",
        "targeted_ads_opt_out",
    )
    assert code == 0 and eligible() == 1
    code, out, _ = _cli(capsys, "platform", "user", "delete", "--db", db, "--user", "bob")
    assert code == 0 and "2 identifiers erased" in out
    assert eligible() == 0
    changes = _write(
        tmp_path / "c.csv",
        "user_id,purpose,value\nerin,ads_matching,true\nalice,targeted_ads_opt_out,false\n"
        "zed,ads_matching,true\n",
    )
    rejects = tmp_path / "rejects.csv"
    code, out, _ = _cli(
        capsys, "platform", "consent", "import", "--db", db, changes, "--rejects", rejects
    )
    assert code == 0 and "unknown_user" in out
    assert "zed" in rejects.read_text()
    assert eligible() == 2
    code, _, err = _cli(capsys, "platform", "consent", "revoke", "--db", db, "--user", "zed")
    assert code == 2 and "no user 'zed'" in err


def test_bad_rows_are_reported_and_rejects_written(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path / "bad.csv",
        "user_id,type,value,source,ads_matching_consent\n"
        "u1,email,good@example.com,signup,true\n"
        "u2,email,nope,signup,true\n"
        "u3,pager,123,signup,true\n",
    )
    rejects = tmp_path / "rejects.csv"
    code, out, _ = _cli(capsys, "platform", "import", "--db", db, path, "--rejects", rejects)
    assert code == 0
    assert "rejected 2 rows" in out and "row 3, column 'value'" in out
    with rejects.open(encoding="utf-8", newline="") as stream:
        written = {(r["row"], r["column"], r["reason"]) for r in csv.DictReader(stream)}
    assert written == {("3", "value", "invalid_identifier"), ("4", "type", "unknown_type")}
    code, out, _ = _cli(capsys, "platform", "import", "--db", db, path, "--json")
    assert code == 0 and json.loads(out)["rejected"] == {
        "invalid_identifier": 1,
        "unknown_type": 1,
    }


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (
            ("import",),
            "user_id,type,value,source,ads_matching_consent\nu2,email,nope,signup,true\n"
            "u3,pager,123,signup,true\n",
        ),
        (("consent", "import"), "user_id,purpose,value\nnobody,ads_matching,true\n"),
    ],
)
def test_an_import_that_rejects_every_row_exits_2(
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: tuple[str, ...],
    text: str,
) -> None:
    path = _write(tmp_path / "all-bad.csv", text)
    code, out, err = _cli(capsys, "platform", *command, "--db", db, path)
    assert code == 2
    assert "rejected" in out  # the report is still there, with its examples
    assert err.startswith(f"error: every row of {path} was rejected (")
    assert err.endswith("): nothing was imported\n")
    code, out, err = _cli(capsys, "platform", *command, "--db", db, path, "--json")
    report = json.loads(out)
    assert code == 2 and report["error"]["code"] == "ImportFailed"
    assert report["error"]["exit_code"] == 2 and report["rows"] == text.count("\n") - 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"user_id,type,value\nu1,email,a@example.com\n", "missing required column"),
        (
            b"user_id,type,value,source,ads_matching_consent\nu1,email,j\xe9@x.com,signup,1\n",
            "not UTF-8",
        ),
        (b"", "empty"),
    ],
)
def test_unusable_file_is_refused_before_anything_is_written(
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    code, out, err = _cli(capsys, "platform", "import", "--db", db, path)
    assert code == 2 and message in err and out == ""
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT action FROM audit_log").fetchall() == [("database.init",)]
    assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0


def test_database_that_is_not_ours_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    code, _, err = _cli(capsys, "platform", "status", "--db", other)
    assert code == 1 and "not a cleanroom platform database" in err
    code, _, err = _cli(capsys, "platform", "init", "--db", other)
    assert code == 1 and "not a cleanroom platform database" in err


@pytest.mark.parametrize(
    ("tamper", "entry"),
    [
        ('UPDATE audit_log SET details = \'{"user":"mallory"}\' WHERE seq = 2', 2),
        ("DELETE FROM audit_log WHERE seq = 3", 3),
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 2; "
            "UPDATE audit_log SET seq = 2 WHERE seq = 3; "
            "UPDATE audit_log SET seq = 3 WHERE seq = -1",
            2,
        ),
    ],
    ids=["changed", "removed", "reordered"],
)
def test_audit_tampering_is_detected(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str, entry: int
) -> None:
    _cli(capsys, "platform", "import", "--db", db, _write(tmp_path / "p.csv", PLATFORM_CSV))
    _cli(capsys, "platform", "consent", "revoke", "--db", db, "--user", "alice")
    _cli(capsys, "platform", "consent", "grant", "--db", db, "--user", "alice")
    code, out, _ = _cli(capsys, "platform", "audit", "verify", "--db", db)
    assert code == 0 and "5 entries" in out
    code, out, _ = _cli(capsys, "platform", "audit", "show", "--db", db)
    assert code == 0 and "consent.revoke" in out
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; " + tamper
    )
    conn.close()
    code, _, err = _cli(capsys, "platform", "audit", "verify", "--db", db)
    assert code == 1
    assert f"broken at entry {entry}" in err


def _big_csv(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("user_id,type,value,source,ads_matching_consent\n")
        for i in range(rows):
            if i % 5 < 3:
                out.write(f"u{i // 2},email,person{i}@example.com,signup,true\n")
            else:
                out.write(f"u{i // 2},phone,+1415{2000000 + i:07d},profile,yes\n")
    return path


def _count(db: Path, query: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute(query).fetchone()[0])
    finally:
        conn.close()


def test_import_killed_half_way_completes_on_rerun(db: Path, tmp_path: Path) -> None:
    rows = 120_000
    path = _big_csv(tmp_path / "big.csv", rows)
    process = subprocess.Popen(
        [_cleanroom(), "platform", "import", "--db", str(db), str(path), "--chunk-rows", "5000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and process.poll() is None:
        committed = _count(db, "SELECT COUNT(*) FROM identifiers")
        if committed >= 15_000:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed = _count(db, "SELECT COUNT(*) FROM identifiers")
    assert 0 < committed < rows, "the kill should land half-way"
    assert committed % 5000 == 0, "only whole chunks are ever committed"

    rerun = _run("platform", "import", "--db", db, path, "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["added"] == rows - committed and report["unchanged"] == committed
    assert _count(db, "SELECT COUNT(*) FROM identifiers") == rows
    assert _count(db, "SELECT COUNT(*) FROM users") == rows // 2
    assert _count(db, "SELECT COUNT(*) FROM (SELECT DISTINCT type, value FROM identifiers)") == rows
    verify = _run("platform", "audit", "verify", "--db", db)
    assert verify.returncode == 0, verify.stderr
