"""Creating and opening the platform database; refusing files that are not ours."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.errors import NotOurDatabase, StoreError
from cleanroom.store import audit, schema
from cleanroom.store.database import init_database, open_database, transaction


def test_init_creates_wal_database_and_private_directories(tmp_path: Path) -> None:
    db, created = init_database(tmp_path / "platform.db")
    with db:
        assert created
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        for directory in (tmp_path / "keys", tmp_path / "epochs"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert len(db.instance_id) == 16


def test_init_twice_changes_nothing(tmp_path: Path) -> None:
    first, _ = init_database(tmp_path / "platform.db")
    instance = first.instance_id
    first.close()
    (tmp_path / "keys").chmod(0o755)
    again, created = init_database(tmp_path / "platform.db")
    with again:
        assert not created
        assert again.instance_id == instance
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_init_creates_a_missing_directory_privately(tmp_path: Path) -> None:
    db, created = init_database(tmp_path / "new" / "platform.db")
    with db:
        assert created
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_open_missing_database_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="platform init"):
        open_database(tmp_path / "platform.db")
    assert not (tmp_path / "platform.db").exists()


def test_text_file_is_not_our_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not SQLite at all" * 100)
    with pytest.raises(NotOurDatabase, match="not a SQLite database"):
        open_database(path)
    with pytest.raises(NotOurDatabase):
        init_database(path)
    assert path.read_text().startswith("hello")


def test_other_applications_sqlite_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(NotOurDatabase, match="application_id"):
        open_database(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    init_database(tmp_path / "platform.db")[0].close()
    conn = sqlite3.connect(tmp_path / "platform.db")
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(NotOurDatabase, match="newer"):
        open_database(tmp_path / "platform.db")


def test_our_id_without_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    with pytest.raises(NotOurDatabase, match="no cleanroom schema"):
        open_database(path)


def test_the_database_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        db, _ = init_database(tmp_path / "platform.db")
    finally:
        os.umask(previous)
    with db:
        with transaction(db.conn):
            db.conn.execute("INSERT INTO meta VALUES ('x', 'y')")
        for name in ("platform.db", "platform.db-wal", "platform.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE(db.audit_key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "audit.pub").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("path", "mode", "wanted"),
    [
        ("platform.db", 0o644, "chmod 600"),
        ("platform.db", 0o640, "chmod 600"),
        ("keys", 0o750, "chmod 700"),
        ("keys/audit.key", 0o604, "chmod 600"),
        ("tls/server.key", 0o644, "chmod 600"),
    ],
)
def test_a_database_open_to_others_is_refused_naming_the_chmod(
    tmp_path: Path, path: str, mode: int, wanted: str
) -> None:
    db, _ = init_database(tmp_path / "platform.db")
    db.close()
    (tmp_path / "tls").mkdir(mode=0o700)
    (tmp_path / "tls" / "server.key").write_bytes(b"key")
    (tmp_path / "tls" / "server.key").chmod(0o600)
    open_database(tmp_path / "platform.db").close()
    target = tmp_path / path
    target.chmod(mode)
    with pytest.raises(StoreError, match=f"group or others can read it.*{wanted} {target}"):
        open_database(tmp_path / "platform.db")


def test_the_audit_key_can_live_apart_from_the_database(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    db, _ = init_database(tmp_path / "platform" / "platform.db", audit_key_path=vault / "a.key")
    with db:
        assert db.audit_key_path == vault / "a.key" and (vault / "a.key").exists()
        assert not (tmp_path / "platform" / "keys" / "audit.key").exists()
    # Without it, reading works and writing says where the key is looked for.
    with open_database(tmp_path / "platform" / "platform.db") as reopened:
        assert reopened.conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1
        with pytest.raises(StoreError, match="CLEANROOM_AUDIT_KEY"), transaction(reopened.conn):
            audit.append(reopened, "x", {})


# --- transaction() ------------------------------------------------------------------------------


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.execute(
        "CREATE TABLE child (parent INTEGER REFERENCES t (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    yield connection
    connection.close()


def _ids(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM t ORDER BY id")]


def test_a_transaction_commits_its_block_or_none_of_it(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError, match="boom"), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert _ids(conn) == [1]
    assert not conn.in_transaction


def test_a_transaction_sqlite_already_rolled_back_raises_its_own_error(
    conn: sqlite3.Connection,
) -> None:
    # OR ROLLBACK ends the whole transaction inside SQLite; a second ROLLBACK would fail with
    # "no transaction is active" and hide the constraint error.
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("INSERT OR ROLLBACK INTO t VALUES (1)")
    assert _ids(conn) == [1]
    assert not conn.in_transaction


def test_a_commit_that_fails_rolls_back(conn: sqlite3.Connection) -> None:
    # A deferred foreign key is checked at COMMIT, which then fails with the transaction open.
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO child VALUES (99)")
    assert not conn.in_transaction
    assert _ids(conn) == []
    with transaction(conn):  # and the connection is usable again
        conn.execute("INSERT INTO t VALUES (2)")
    assert _ids(conn) == [2]


def test_a_nested_transaction_is_a_savepoint(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("the inner block fails")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (3)")
        assert conn.in_transaction  # the inner blocks neither committed nor ended it
    assert _ids(conn) == [1, 3]
    with pytest.raises(RuntimeError), transaction(conn):
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (4)")
        raise RuntimeError("the outer block fails after the inner one succeeded")
    assert _ids(conn) == [1, 3]


def test_a_failed_rollback_is_noted_on_the_error_not_raised_instead(
    conn: sqlite3.Connection,
) -> None:
    class Failing:
        """The real connection, except that its ROLLBACK fails (after rolling back)."""

        in_transaction = property(lambda self: conn.in_transaction)

        def execute(self, sql: str) -> sqlite3.Cursor:
            if sql == "ROLLBACK":
                conn.execute("ROLLBACK")
                raise sqlite3.OperationalError("disk I/O error")
            return conn.execute(sql)

    with (
        pytest.raises(RuntimeError, match="boom") as raised,
        transaction(Failing()),  # type: ignore[arg-type]
    ):
        raise RuntimeError("boom")
    assert raised.value.__notes__ == ["and then ROLLBACK failed: disk I/O error"]
