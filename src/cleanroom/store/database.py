"""Creating and opening the platform database, and the directories beside it.

Layout beside the database file ``platform.db``::

    platform.db (+ -wal, -shm)   the SQLite database, WAL mode
    keys/                        epoch keys, mode 0700, files 0600 (see keystore)
    epochs/                      each epoch's encrypted set V and its private index, mode 0700

File names under ``keys/`` and ``epochs/`` start with the database's random instance id, so two
databases in one directory never take each other's keys or files.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cleanroom._files import private_directory
from cleanroom.errors import NotOurDatabase, StoreError
from cleanroom.store import eligibility, schema

__all__ = [
    "Database",
    "init_database",
    "open_database",
    "transaction",
    "unix_now",
]

#: Page cache per connection, in KiB (negative ``cache_size`` means KiB). Imports write into
#: large random-order indexes; a 64 MiB cache keeps them off the disk without costing much RAM.
_CACHE_KIB = 64 * 1024


def unix_now() -> int:
    """The current time as integer Unix seconds, the unit every stored timestamp uses."""
    import time

    return int(time.time())


@dataclass
class Database:
    """An open platform database and the directories beside it.

    Attributes:
        path: the database file.
        conn: an autocommit connection (transactions are explicit, see :func:`transaction`).
        instance_id: random id of this database, the prefix of its key and epoch file names.
    """

    path: Path
    conn: sqlite3.Connection = field(repr=False)
    instance_id: str

    @property
    def keys_dir(self) -> Path:
        """The directory holding epoch keys (mode 0700)."""
        return self.path.parent / "keys"

    @property
    def epochs_dir(self) -> Path:
        """The directory holding each epoch's V and index files (mode 0700)."""
        return self.path.parent / "epochs"

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
    instead of failing half-way with SQLITE_BUSY on lock upgrade.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def init_database(path: Path) -> tuple[Database, bool]:
    """Create the platform database and its key and epoch directories.

    Args:
        path: where the database file goes; its directory must exist.

    Returns:
        The open database, and whether it was created (``False``: it already existed and is
        ours, and nothing was changed except tightening the directories' modes).

    Raises:
        NotOurDatabase: a file that is not a cleanroom platform database is in the way.
        StoreError: the directory does not exist or cannot be written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise StoreError(f"cannot create {path}: directory {path.parent} does not exist")
    existed = path.exists() and path.stat().st_size > 0
    if existed:
        db = open_database(path)
    else:
        try:
            conn = _connect(path, create=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create {path}: {exc}") from exc
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(f"cannot put {path} in WAL mode (journal_mode is {mode})")
        schema.create_schema(conn)
        with transaction(conn):
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("instance_id", secrets.token_hex(8)), ("created_at", str(unix_now()))],
            )
        db = _wrap(path, conn)
    for directory in (db.keys_dir, db.epochs_dir):
        private_directory(directory, StoreError)
    return db, not existed


def open_database(path: Path) -> Database:
    """Open an existing platform database, migrating its schema if it is older.

    Args:
        path: the database file.

    Returns:
        The open database, with the eligibility views installed on its connection.

    Raises:
        StoreError: there is no file at ``path``.
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
        if version < schema.SCHEMA_VERSION:
            schema.migrate(conn, version)
        return _wrap(path, conn)
    except BaseException:
        conn.close()
        raise


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


def _wrap(path: Path, conn: sqlite3.Connection) -> Database:
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # NORMAL is durable across application crashes in WAL mode; only a power loss can drop
        # the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'instance_id'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise NotOurDatabase(f"{path} is not a usable cleanroom platform database ({exc})") from exc
    if row is None:
        raise NotOurDatabase(f"{path} has no instance id; it was not created by cleanroom")
    eligibility.install_views(conn)
    return Database(path=path.absolute(), conn=conn, instance_id=str(row[0]))
