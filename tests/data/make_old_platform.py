"""Make ``platform-schema3.db``: a platform database as an older cleanroom writes it.

Run with the source tree of that older version (commit 14c50bf, its C extensions built in place)
first on the path; every step is that version's own CLI, the server a process of its own. With
``OLD`` an empty folder of your choice::

    git archive 14c50bf | tar -x -C "$OLD" && (cd "$OLD" && python setup.py build_ext -i)
    PYTHONPATH="$OLD/src" python tests/data/make_old_platform.py tests/data/platform-schema3.db

The database then holds what a platform that has run for a while holds: an import with every
kind of exclusion, a key epoch, an advertiser's certificate, a count and an audience session
(an audience of 30 users), then a revocation, an opt-out and a deletion that leave 27, each in
its hash-chained (unsigned) audit log. Only the database file is kept (checkpointed, so it is
one file): the migration test rotates a new epoch itself.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from cleanroom.cli import main

USERS = 60
AUDIENCE = 30
POLICY = """\
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
"""


def run(*argv: str | Path) -> None:
    code = main([str(arg) for arg in argv])
    if code != 0:
        raise SystemExit(f"{argv} exited {code}")


def cli_process(*argv: str | Path) -> list[str]:
    return [sys.executable, "-c", "from cleanroom.cli import console_main; console_main()"] + [
        str(arg) for arg in argv
    ]


def make(out: Path) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        db = root / "platform.db"
        users = root / "users.csv"
        with users.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(("user_id", "type", "value", "source", "ads_matching_consent"))
            for i in range(USERS):
                writer.writerow((f"user{i}", "email", f"person{i}@example.com", "signup", "true"))
                source = "two_factor" if i % 3 == 0 else "profile"
                writer.writerow((f"user{i}", "phone", f"+1415555{i:04d}", source, "true"))
            writer.writerow(("nobody", "email", "nobody@example.com", "crm", "false"))
        customers = root / "customers.csv"
        with customers.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(("record_id", "email", "phone", "maid", "marketing_consent"))
            for i in range(AUDIENCE):
                writer.writerow((f"c{i}", f"person{i}@example.com", "", "", "yes"))
            for i in range(AUDIENCE):
                writer.writerow((f"x{i}", f"stranger{i}@example.com", "", "", "yes"))
        (root / "policy.toml").write_text(POLICY, encoding="utf-8")
        run("platform", "init", "--db", db)
        run("platform", "import", "--db", db, users)
        run("platform", "epoch", "rotate", "--db", db, "--workers", "1")
        run("platform", "issue-cert", "--db", db, "--advertiser", "acme", "--out", root / "acme")
        server = subprocess.Popen(
            cli_process(
                "platform",
                "serve",
                "--db",
                db,
                "--listen",
                "127.0.0.1:0",
                "--policy",
                root / "policy.toml",
                "--workers",
                "1",
                "--grace",
                "0",
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            address = server.stdout.readline().removeprefix("listening on ").strip()
            for mode in ("count", "audience"):
                subprocess.run(
                    cli_process(
                        "match",
                        "--server",
                        address,
                        "--tls-dir",
                        root / "acme",
                        "--input",
                        customers,
                        "--mode",
                        mode,
                        "--workers",
                        "1",
                    ),
                    check=True,
                    capture_output=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=60)
        run("platform", "consent", "revoke", "--db", db, "--user", "user1")
        run(
            "platform",
            "consent",
            "opt-out",
            "--db",
            db,
            "--user",
            "user2",
            "--kind",
            "targeted_ads_opt_out",
        )
        run("platform", "user", "delete", "--db", db, "--user", "user3")
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        shutil.copyfile(db, out)


if __name__ == "__main__":
    make(Path(sys.argv[1]))
