"""Creating and opening the platform database, and the files beside it.

Layout beside the database file ``platform.db``::

    platform.db (+ -wal, -shm)   the SQLite database, WAL mode, mode 0600
    keys/                        epoch keys and the audit signing key, mode 0700, files 0600
    epochs/                      each epoch's encrypted set V and its private index, mode 0700
    audit.pub                    the audit log's public key (public: what verifiers check with)
    tls/                         the TLS identity (``platform init``; private keys 0600)

Epoch file names under ``keys/`` and ``epochs/`` start with the database's random instance id,
so two databases in one directory never take each other's epoch keys or files; they share the
folder's TLS identity and audit key (see :mod:`~cleanroom.store.audit_key`).

Every open refuses a database, key or TLS private key that group or others could read, saying
what to ``chmod``; a database made by an older version (which created it 0644) is tightened to
0600 as it is migrated, and the migration's audit entry says so.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cleanroom._files import (
    PLATFORM_TLS_DIR,
    PRIVATE_FILE_MODE,
    create_private_file,
    private_directory,
    refuse_if_readable_by_others,
)
from cleanroom._signing import SigningKey, key_id
from cleanroom.errors import NotOurDatabase, StoreError
from cleanroom.store import audit, audit_key, eligibility, schema

__all__ = [
    "Clock",
    "Database",
    "init_database",
    "open_database",
    "transaction",
    "unix_now",
]

#: Page cache per connection, in KiB (negative ``cache_size`` means KiB). Imports write into
#: large random-order indexes; a 64 MiB cache keeps them off the disk without costing much RAM.
_CACHE_KIB = 64 * 1024

#: The files SQLite keeps for a database in WAL mode, after its own name.
_DATABASE_SUFFIXES: Final = ("", "-wal", "-shm")

Clock = Callable[[], int]


def unix_now() -> int:
    """The current time as integer Unix seconds, the unit every stored timestamp uses."""
    import time

    return int(time.time())


@dataclass
class Database:
    """An open platform database and the files beside it.

    Attributes:
        path: the database file.
        conn: an autocommit connection (transactions are explicit, see :func:`transaction`).
        instance_id: random id of this database, the prefix of its key and epoch file names.
        audit_key_path: the audit signing key's file (read when the first entry is appended).
        clock: "now" for eligibility (expiry) as Unix seconds; the system clock unless a test
            gives another.
    """

    path: Path
    conn: sqlite3.Connection = field(repr=False)
    instance_id: str
    audit_key_path: Path
    clock: Clock = unix_now
    _signing_key: SigningKey | None = field(default=None, repr=False, compare=False)

    @property
    def keys_dir(self) -> Path:
        """The directory holding epoch keys (mode 0700)."""
        return self.path.parent / "keys"

    @property
    def epochs_dir(self) -> Path:
        """The directory holding each epoch's V and index files (mode 0700)."""
        return self.path.parent / "epochs"

    @property
    def audit_public_key_path(self) -> Path:
        """``audit.pub`` beside the database."""
        return audit_key.public_key_path(self.path)

    def audit_signing_key(self) -> SigningKey:
        """The audit signing key, read from its file on first use.

        Raises:
            StoreError: the key is missing or unsafe.
        """
        if self._signing_key is None:
            self._signing_key = audit_key.load_audit_key(self.audit_key_path)
        return self._signing_key

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block as one write transaction: committed on success, rolled back on any error.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so two writers queue (busy timeout)
    instead of failing half-way with SQLITE_BUSY on lock upgrade. Inside a transaction already
    open on the connection, the block is a savepoint of it: an error undoes the block's own
    writes, and the outer block decides about the rest.

    On an error the transaction is rolled back only while it is still open: SQLite ends it by
    itself on some errors (a full disk, an I/O error, ``OR ROLLBACK``, an interrupt), and a
    second ROLLBACK would fail and hide the error that ended it. A COMMIT that fails (a deferred
    constraint, a lock held past the busy timeout) rolls back and raises. The caller always sees
    the block's own error, never one of the cleanup.
    """
    if conn.in_transaction:
        savepoint = f"cleanroom_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {savepoint}")
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:  # else SQLite rolled back the whole transaction already
                _clean_up(conn, f"ROLLBACK TO {savepoint}", exc)
                _clean_up(conn, f"RELEASE {savepoint}", exc)
            raise
        conn.execute(f"RELEASE {savepoint}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            _clean_up(conn, "ROLLBACK", exc)
        raise


# Savepoint names, unique per process (a name is only ever in use on one connection at a time).
_savepoints = itertools.count()


def _clean_up(conn: sqlite3.Connection, statement: str, error: BaseException) -> None:
    """Run a cleanup statement; if it fails, say so on ``error`` rather than replace it."""
    try:
        conn.execute(statement)
    except sqlite3.Error as exc:
        error.add_note(f"and then {statement} failed: {exc}")


def init_database(
    path: Path, *, audit_key_path: Path | None = None, clock: Clock | None = None
) -> tuple[Database, bool]:
    """Create the platform database, its key and epoch directories and its audit key.

    The file is created 0600 whatever the umask, in a directory created 0700 if missing. The
    first audit entry (``database.init``) is signed with the audit key, which is generated
    unless the folder already has one; its public half is written to ``audit.pub`` beside.

    Args:
        path: where the database file goes.
        audit_key_path: the audit signing key's file (default: ``$CLEANROOM_AUDIT_KEY``, else
            ``keys/audit.key`` beside the database).
        clock: "now" for eligibility (tests).

    Returns:
        The open database, and whether it was created (``False``: it already existed and is
        ours, and nothing was changed except tightening the directories' modes).

    Raises:
        NotOurDatabase: a file that is not a cleanroom platform database is in the way.
        StoreError: the directory cannot be created or written, or a file is open to others.
    """
    path = Path(path)
    if not path.parent.is_dir():
        private_directory(path.parent, StoreError, parents=True)
    existed = path.exists() and path.stat().st_size > 0
    keys_dir, epochs_dir = path.parent / "keys", path.parent / "epochs"
    if existed:
        _check_ours(path)  # a file that is not ours: leave it, and its folder, alone
    for directory in (keys_dir, epochs_dir):
        private_directory(directory, StoreError)
    if existed:
        return open_database(path, audit_key_path=audit_key_path, clock=clock), False
    if path.exists():
        # An empty file in the way (SQLite would use it): ours to fill, so private first.
        path.chmod(PRIVATE_FILE_MODE)
    else:
        create_private_file(path, StoreError)
    try:
        conn = _connect(path, create=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot create {path}: {exc}") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {path} in WAL mode (journal_mode is {mode})")
        schema.create_schema(conn)
        key_path = audit_key_path_for(path, audit_key_path)
        signing_key = audit_key.create_or_load_audit_key(key_path)
        audit_key.write_public_key(path.parent, signing_key.public_key)
        db = Database(path.absolute(), conn, secrets.token_hex(8), key_path, clock or unix_now)
        db._signing_key = signing_key
        _configure(db)
        with transaction(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("instance_id", db.instance_id), ("created_at", str(unix_now()))],
            )
            audit.append(
                db,
                "database.init",
                {
                    "instance": db.instance_id,
                    "schema": schema.SCHEMA_VERSION,
                    "audit_key": key_id(signing_key.public_key),
                },
            )
    except BaseException:
        conn.close()
        raise
    eligibility.install_views(conn)
    return db, True


def open_database(
    path: Path, *, audit_key_path: Path | None = None, clock: Clock | None = None
) -> Database:
    """Open an existing platform database, migrating its schema if it is older.

    Args:
        path: the database file.
        audit_key_path: the audit signing key's file (default: ``$CLEANROOM_AUDIT_KEY``, else
            ``keys/audit.key`` beside the database). Read only when an entry is appended.
        clock: "now" for eligibility (tests).

    Returns:
        The open database, with the eligibility views installed on its connection.

    Raises:
        StoreError: there is no file at ``path``, or the database, a key or a TLS private key
            can be read by group or others (the message says what to ``chmod``).
        NotOurDatabase: the file is not a cleanroom platform database or is of a newer schema.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(
            f"no platform database at {path}; create one with 'cleanroom platform init --db {path}'"
        )
    try:
        conn = _connect(path, create=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        version = schema.check_identity(conn, str(path))
        # Older versions created the database 0644: tighten it as it is migrated (and record
        # that), but refuse one of this version that someone opened up since.
        tightened = _tighten_database_files(path) if version < schema.SCHEMA_VERSION else {}
        key_path = audit_key_path_for(path, audit_key_path)
        _refuse_open_files(path, key_path)
        db = Database(path.absolute(), conn, _instance_id(conn, path), key_path, clock or unix_now)
        _configure(db)
        if version < schema.SCHEMA_VERSION:
            _migrate(db, version, tightened)
        eligibility.install_views(conn)
        return db
    except BaseException:
        conn.close()
        raise


def audit_key_path_for(database: Path, override: Path | None = None) -> Path:
    """The audit signing key's file for the database at ``database``."""
    return audit_key.audit_key_path(Path(database).absolute().parent / "keys", override)


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    # mode=rw: opening must never create an empty file where a database was expected.
    uri = path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    # check_same_thread=False: the epoch precompute reads the next chunk in a helper thread
    # while this one waits on the crypto workers; the two never use the connection at once.
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, timeout=30.0, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _check_ours(path: Path) -> None:
    """Refuse a file that is not a cleanroom platform database, without writing anything."""
    try:
        conn = _connect(path, create=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        schema.check_identity(conn, str(path))
    finally:
        conn.close()


def _instance_id(conn: sqlite3.Connection, path: Path) -> str:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotOurDatabase(f"{path} is not a usable cleanroom platform database ({exc})") from exc
    if row is None:
        raise NotOurDatabase(f"{path} has no instance id; it was not created by cleanroom")
    return str(row[0])


def _configure(db: Database) -> None:
    """Connection settings, and the clock eligibility reads (``cleanroom_now()``)."""
    conn = db.conn
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # NORMAL is durable across application crashes in WAL mode; only a power loss can drop
        # the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    except sqlite3.DatabaseError as exc:
        raise NotOurDatabase(
            f"{db.path} is not a usable cleanroom platform database ({exc})"
        ) from exc
    clock = db.clock
    conn.create_function("cleanroom_now", 0, lambda: int(clock()))


def _database_files(path: Path) -> list[Path]:
    return [Path(f"{path}{suffix}") for suffix in _DATABASE_SUFFIXES]


def _tighten_database_files(path: Path) -> dict[str, str]:
    """Set the database's files to 0600; return the modes changed (name -> old mode)."""
    changed: dict[str, str] = {}
    for file in _database_files(path):
        try:
            info = file.stat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and info.st_uid == os.geteuid():
            file.chmod(PRIVATE_FILE_MODE)
            changed[file.name] = f"{mode:04o}"
    return changed


def _refuse_open_files(path: Path, key_path: Path) -> None:
    """Refuse the database, a key or a TLS private key that group or others can read."""
    for file in _database_files(path):
        refuse_if_readable_by_others(file, "platform database file", StoreError)
    keys_dir = path.parent / "keys"
    refuse_if_readable_by_others(keys_dir, "key folder", StoreError)
    if keys_dir.is_dir():
        for key_file in sorted(keys_dir.iterdir()):
            refuse_if_readable_by_others(key_file, "key file", StoreError)
    refuse_if_readable_by_others(key_path, "audit signing key", StoreError)
    tls_dir = path.parent / PLATFORM_TLS_DIR
    if tls_dir.is_dir():
        for key_file in sorted(tls_dir.glob("*.key")):
            refuse_if_readable_by_others(key_file, "TLS private key", StoreError)


def _migrate(db: Database, version: int, tightened: dict[str, str]) -> None:
    """Migrate to the current schema, signing the log from here on, in one transaction.

    The migration is itself a signed audit entry, chained to the last entry written before it:
    its signature covers every earlier entry through the hash chain.
    """
    for directory in (db.keys_dir, db.epochs_dir):
        private_directory(directory, StoreError)
    signing_key = audit_key.create_or_load_audit_key(db.audit_key_path)
    audit_key.write_public_key(db.path.parent, signing_key.public_key)
    db._signing_key = signing_key

    def record(conn: sqlite3.Connection) -> None:
        entries, head = conn.execute(
            "SELECT COUNT(*), (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1) FROM audit_log"
        ).fetchone()
        details: dict[str, Any] = {
            "from_schema": version,
            "to_schema": schema.SCHEMA_VERSION,
            "unsigned_entries": int(entries),
            "head_before": head,
            "audit_key": key_id(signing_key.public_key),
            "files_made_private": tightened,
        }
        audit.append(db, "schema.migrate", details)

    schema.migrate(db.conn, version, record)
