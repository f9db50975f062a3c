"""Key epochs: the platform key ``b``, the precomputed set ``V = [E_b(H(y))]`` and its index.

An epoch is a key plus three files written beside the database (``epochs/``), aligned by
position and in an order drawn from the OS CSPRNG once per epoch:

- ``….V.npy``     ``(N, element_size)`` uint8, the encrypted identifiers;
- ``….ids.npy``   ``(N,)`` int64, the ``identifiers.id`` behind each position (private);
- ``….users.npy`` ``(N,)`` int64, the ``users.id`` behind each position (private).

Rotation is crash-safe: new files are written under temporary names, fsynced and renamed, and
only then does ONE SQLite transaction make the new epoch current (and log it). A crash at any
point before that commit leaves the old epoch current and usable; files of an unfinished
rotation are orphans that the next rotation or refresh removes. After the switch the retired
epoch's key is destroyed, which makes its ``V`` useless to anyone who kept a copy.

Eligibility is applied again at match time (:func:`matchable_epoch`), so identifiers that lose
consent after a precompute are left out without recomputing; :func:`refresh` appends identifiers
that became eligible since, encrypting only those.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from cleanroom._files import fsync_path
from cleanroom.crypto import (
    DEFAULT_SUITE_ID,
    BatchEngine,
    SecretKey,
    Suite,
    default_engine,
    get_suite,
    random_permutation,
)
from cleanroom.errors import StoreError
from cleanroom.identifiers import KINDS
from cleanroom.identifiers.messages import message_prefix
from cleanroom.store import audit, keystore
from cleanroom.store.database import Database, transaction, unix_now
from cleanroom.store.eligibility import eligible_identifier_ids, eligible_identifiers_and_users

__all__ = [
    "EpochInfo",
    "MatchableEpoch",
    "current_epoch",
    "epoch_key",
    "matchable_epoch",
    "refresh",
    "remove_leftovers",
    "require_current_epoch",
    "rotate",
]

#: Identifiers per call into the batch engine. Each call ends with the pool draining (the last
#: chunks leave a core idle), so calls are large; messages are built lazily as the engine hands
#: chunks to its workers, so only the call's output array (32 MB here) scales with this.
PRECOMPUTE_CHUNK = 1 << 20

_ARRAYS = ("V", "ids", "users")

Progress = Callable[[int], object]


@dataclass(frozen=True)
class EpochInfo:
    """A key epoch as recorded in the database.

    Attributes:
        epoch_id: its number (1, 2, …).
        suite_id: the ciphersuite of its key and ``V``.
        size: entries in its ``V`` (eligible when computed; some may have become ineligible).
        created_at: Unix time of the rotation that made it.
        refreshed_at: Unix time of its last refresh, if any.
        generation: how many refreshes produced its current files.
    """

    epoch_id: int
    suite_id: str
    size: int
    created_at: int
    refreshed_at: int | None
    generation: int


@dataclass(frozen=True)
class MatchableEpoch:
    """The current epoch's ``V`` restricted to identifiers eligible now, for one match session.

    Attributes:
        epoch: the epoch.
        elements: ``(n, element_size)`` uint8, in the epoch's shuffled order.
        user_rows: ``(n,)`` int64, ``users.id`` of each element: the private index -> user map.
        other_owners: ``(rows, users)``: further users holding the element at each row. The
            same identifier eligible twice (two sources, or two accounts sharing an email) has
            the same ``E_b(H(y))``; V carries it once, since a repeated element would both be
            refused by the advertiser and tell it that the identifier is shared.
        identifier_ids: ``(n,)`` int64, ``identifiers.id`` of each element (private).
        other_identifiers: ``identifiers.id`` of each of ``other_owners``, aligned with it.
    """

    epoch: EpochInfo
    elements: NDArray[np.uint8]
    user_rows: NDArray[np.int64]
    other_owners: tuple[NDArray[np.int64], NDArray[np.int64]]
    identifier_ids: NDArray[np.int64]
    other_identifiers: NDArray[np.int64]

    def matched_identifiers(
        self, rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The (user, identifier) pairs behind the given rows of ``elements``.

        Returns:
            ``(users, identifiers)``, aligned: each row's own pair, then those of its other
            owners.
        """
        rows = np.asarray(rows, dtype=np.int64)
        owner_rows, owner_users = self.other_owners
        further = np.isin(owner_rows, rows)
        users = np.concatenate([self.user_rows[rows], owner_users[further]])
        identifiers = np.concatenate([self.identifier_ids[rows], self.other_identifiers[further]])
        return users, identifiers


def current_epoch(db: Database) -> EpochInfo | None:
    """The current epoch, or ``None`` before the first rotation."""
    row = db.conn.execute(
        "SELECT id, suite_id, size, created_at, refreshed_at, generation "
        "FROM key_epochs WHERE state = 'current'"
    ).fetchone()
    if row is None:
        return None
    return EpochInfo(int(row[0]), str(row[1]), int(row[2]), int(row[3]), row[4], int(row[5]))


def rotate(
    db: Database,
    *,
    suite_id: str = DEFAULT_SUITE_ID,
    engine: BatchEngine | None = None,
    progress: Progress | None = None,
    on_start: Callable[[int], object] | None = None,
) -> EpochInfo:
    """Start a new epoch: new key, ``V`` for every identifier eligible now, atomic switch.

    Args:
        db: the platform database.
        suite_id: ciphersuite of the new epoch.
        engine: batch engine for hash + encrypt (``None``: the shared default engine).
        progress: called with the number of identifiers just encrypted.
        on_start: called with the number of identifiers to encrypt, before the work starts.

    Returns:
        The new current epoch.

    Raises:
        UnknownSuite: unknown ``suite_id``.
        StoreError: another rotation or refresh is running, or the key directory is unsafe.
    """
    suite = get_suite(suite_id)
    keystore.check_private_directory(db.keys_dir)
    with _epoch_lock(db):
        _remove_orphans(db)
        previous = current_epoch(db)
        epoch_id = 1 + int(
            db.conn.execute("SELECT COALESCE(MAX(id), 0) FROM key_epochs").fetchone()[0]
        )
        written: list[Path] = []
        try:
            with _snapshot(db.conn):
                ids, users = eligible_identifiers_and_users(db.conn)
                if on_start is not None:
                    on_start(len(ids))
                key = suite.generate_key()
                key_path = _key_path(db, epoch_id)
                written.append(key_path)
                keystore.write_key(key_path, key.to_bytes())
                order = random_permutation(len(ids))
                written += _write_epoch_files(
                    db,
                    epoch_id,
                    0,
                    suite,
                    ids[order],
                    users[order],
                    lambda out: _encrypt_into(
                        db.conn, suite, key, ids, order, out, engine, progress
                    ),
                )
            now = unix_now()
            with transaction(db.conn):
                db.conn.execute(
                    "UPDATE key_epochs SET state = 'retired', retired_at = ? "
                    "WHERE state = 'current'",
                    (now,),
                )
                db.conn.execute(
                    "INSERT INTO key_epochs (id, suite_id, state, created_at, generation, size) "
                    "VALUES (?, ?, 'current', ?, 0, ?)",
                    (epoch_id, suite.suite_id, now, len(ids)),
                )
                audit.append(
                    db,
                    "epoch.rotate",
                    {
                        "epoch": epoch_id,
                        "suite": suite.suite_id,
                        "size": len(ids),
                        "retired": None if previous is None else previous.epoch_id,
                    },
                )
        except BaseException:
            _discard(db, written)
            raise
        # The retired epoch's key and files are orphans now: destroy them.
        _remove_orphans(db)
    epoch = current_epoch(db)
    assert epoch is not None
    return epoch


def refresh(
    db: Database,
    *,
    engine: BatchEngine | None = None,
    progress: Progress | None = None,
    on_start: Callable[[int], object] | None = None,
) -> tuple[EpochInfo, int]:
    """Append identifiers that became eligible since the current epoch was computed.

    Only the new identifiers are encrypted (with the current key); they are shuffled among
    themselves and appended, so earlier positions keep their order. The new files replace the
    old ones with the same crash-safe write-then-switch as :func:`rotate`.

    Returns:
        The epoch after the refresh, and how many identifiers were added.

    Raises:
        StoreError: there is no current epoch, another rotation or refresh is running, or the
            key is missing or unsafe.
    """
    with _epoch_lock(db):
        _remove_orphans(db)
        epoch = current_epoch(db)
        if epoch is None:
            raise StoreError("no current epoch to refresh; run 'cleanroom platform epoch rotate'")
        suite = get_suite(epoch.suite_id)
        old_v, old_ids, old_users = _load_arrays(db, epoch)
        written: list[Path] = []
        try:
            with _snapshot(db.conn):
                ids, users = eligible_identifiers_and_users(db.conn)
                fresh = ~np.isin(ids, old_ids, assume_unique=True)
                ids, users = ids[fresh], users[fresh]
                if on_start is not None:
                    on_start(len(ids))
                if len(ids) == 0:
                    return epoch, 0
                key = epoch_key(db, epoch)
                order = random_permutation(len(ids))
                count = len(old_ids)

                def fill(out: NDArray[np.uint8]) -> None:
                    out[:count] = old_v
                    _encrypt_into(db.conn, suite, key, ids, order, out[count:], engine, progress)

                generation = epoch.generation + 1
                written += _write_epoch_files(
                    db,
                    epoch.epoch_id,
                    generation,
                    suite,
                    np.concatenate([old_ids, ids[order]]),
                    np.concatenate([old_users, users[order]]),
                    fill,
                )
            with transaction(db.conn):
                switched = db.conn.execute(
                    "UPDATE key_epochs SET generation = ?, size = ?, refreshed_at = ? "
                    "WHERE id = ? AND state = 'current' AND generation = ?",
                    (generation, count + len(ids), unix_now(), epoch.epoch_id, epoch.generation),
                ).rowcount
                if switched != 1:
                    raise StoreError("the current epoch changed during the refresh; run it again")
                audit.append(
                    db,
                    "epoch.refresh",
                    {"epoch": epoch.epoch_id, "added": len(ids), "size": count + len(ids)},
                )
        except BaseException:
            _discard(db, written)
            raise
        _remove_orphans(db)
    refreshed = current_epoch(db)
    assert refreshed is not None
    return refreshed, len(ids)


def require_current_epoch(db: Database) -> EpochInfo:
    """The current epoch.

    Raises:
        StoreError: the platform has no key epoch yet.
    """
    epoch = current_epoch(db)
    if epoch is None:
        raise StoreError("the platform has no key epoch yet; run 'cleanroom platform epoch rotate'")
    return epoch


def matchable_epoch(db: Database) -> MatchableEpoch:
    """The current epoch's ``V`` and index -> user map, restricted to identifiers eligible now.

    This is what a match session streams: an identifier that lost its consent (or whose user
    opted out or was deleted) since the precompute is left out here, at once.

    Raises:
        StoreError: there is no current epoch, or its files are missing.
    """
    for _attempt in range(3):
        epoch = require_current_epoch(db)
        try:
            elements, ids, users = _load_arrays(db, epoch)
        except StoreError:
            # A rotation may have replaced the files between reading the row and opening them.
            if current_epoch(db) != epoch:
                continue
            raise
        keep = np.isin(ids, eligible_identifier_ids(db.conn), assume_unique=True)
        return _distinct(epoch, np.ascontiguousarray(elements[keep]), users[keep], ids[keep])
    raise StoreError("the current epoch keeps changing; try again")


def _distinct(
    epoch: EpochInfo,
    elements: NDArray[np.uint8],
    users: NDArray[np.int64],
    ids: NDArray[np.int64],
) -> MatchableEpoch:
    """Keep the first row of each repeated element; record the other rows' users as owners."""
    none = np.empty(0, np.int64)
    if len(elements) < 2:
        return MatchableEpoch(epoch, elements, users, (none, none), ids, none)
    # Elements are pseudorandom, so their first 8 bytes nearly never collide: sort those, and
    # compare whole rows only where they do (cheap at 10^7 rows, unlike sorting 32-byte rows).
    prefix = np.ascontiguousarray(elements[:, :8]).view(np.uint64).ravel()
    order = np.argsort(prefix, kind="stable")
    collides = np.zeros(len(elements), dtype=bool)
    same = prefix[order[1:]] == prefix[order[:-1]]
    collides[order[1:][same]] = True
    collides[order[:-1][same]] = True
    candidates = np.flatnonzero(collides)
    if len(candidates) == 0:
        return MatchableEpoch(epoch, elements, users, (none, none), ids, none)
    rows = np.ascontiguousarray(elements[candidates])
    as_void = rows.view(np.dtype((np.void, elements.shape[1]))).ravel()
    _, first, inverse = np.unique(as_void, return_index=True, return_inverse=True)
    representative = candidates[first[inverse.ravel()]]
    repeated = candidates[representative != candidates]
    if len(repeated) == 0:
        return MatchableEpoch(epoch, elements, users, (none, none), ids, none)
    keep = np.ones(len(elements), dtype=bool)
    keep[repeated] = False
    new_index = np.cumsum(keep) - 1
    owner_rows = new_index[representative[representative != candidates]].astype(np.int64)
    return MatchableEpoch(
        epoch,
        np.ascontiguousarray(elements[keep]),
        users[keep],
        (owner_rows, users[repeated].astype(np.int64)),
        ids[keep],
        ids[repeated].astype(np.int64),
    )


def epoch_key(db: Database, epoch: EpochInfo) -> SecretKey:
    """Load an epoch's key (for the match service's ``E_b`` of the advertiser's set).

    Raises:
        StoreError: the key file is missing, or it or its directory is readable by others.
    """
    data = keystore.read_key(_key_path(db, epoch.epoch_id))
    return get_suite(epoch.suite_id).key_from_bytes(data)


# -- internals --------------------------------------------------------------------------------


def _key_path(db: Database, epoch_id: int) -> Path:
    return db.keys_dir / f"{db.instance_id}-epoch{epoch_id}.key"


def _array_path(db: Database, epoch_id: int, generation: int, name: str) -> Path:
    return db.epochs_dir / f"{db.instance_id}-epoch{epoch_id}-g{generation}.{name}.npy"


@contextmanager
def _epoch_lock(db: Database) -> Iterator[None]:
    """One rotation or refresh at a time per database (their orphan cleanup would collide)."""
    lock_path = db.epochs_dir / f"{db.instance_id}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError("another epoch rotation or refresh is running") from exc
        yield
    finally:
        os.close(fd)


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Read everything a precompute needs from one consistent snapshot (a read transaction)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


_PREFIXES = {kind: message_prefix(kind) for kind in KINDS}


def _messages(conn: sqlite3.Connection, ids: NDArray[np.int64]) -> list[bytes]:
    """H's input for each identifier id, in the order of ``ids`` (which is ascending).

    The message is ``hash_message(type, SHA-256(value))``, built inline (one prefix lookup and one
    digest per row) because this loop runs in the parent, beside the crypto workers.
    """
    if not len(ids):
        return []
    first, last = int(ids[0]), int(ids[-1])
    if last - first + 1 == len(ids):
        # Consecutive ids (the usual case: most identifiers are eligible): a rowid range scan.
        rows = conn.execute(
            "SELECT type, value FROM identifiers WHERE id BETWEEN ? AND ? AND value IS NOT NULL "
            "ORDER BY id",
            (first, last),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT type, value FROM identifiers "
            "WHERE id IN (SELECT value FROM json_each(?)) AND value IS NOT NULL ORDER BY id",
            (json.dumps(ids.tolist()),),
        ).fetchall()
    if len(rows) != len(ids):
        raise StoreError("identifiers changed under a consistent read; run the command again")
    prefixes, sha256 = _PREFIXES, hashlib.sha256
    return [prefixes[kind] + sha256(value.encode()).digest() for kind, value in rows]


class _LazyMessages(Sequence[bytes]):
    """The messages of ``ids``, read from the database only when the engine takes a slice.

    The engine cuts a job into chunks and builds each chunk's task just before handing it to a
    worker, while the other workers are busy; reading and hashing here then overlaps their
    encryption, and only the chunks in flight are ever in memory.
    """

    def __init__(self, conn: sqlite3.Connection, ids: NDArray[np.int64]) -> None:
        self._conn = conn
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return _messages(self._conn, self._ids[index])
        return _messages(self._conn, self._ids[index : index + 1 or None])[0]


def _encrypt_into(
    conn: sqlite3.Connection,
    suite: Suite,
    key: SecretKey,
    ids: NDArray[np.int64],
    order: NDArray[np.int64],
    out: NDArray[np.uint8],
    engine: BatchEngine | None,
    progress: Progress | None,
) -> None:
    """Encrypt ``ids`` (ascending) into ``out`` at their shuffled positions.

    Identifiers are read in id order (sequential in the table) and each result is scattered to
    its position: ``out[j]`` receives identifier ``ids[order[j]]``.
    """
    position = np.empty(len(ids), dtype=np.int64)
    position[order] = np.arange(len(ids), dtype=np.int64)
    for start in range(0, len(ids), PRECOMPUTE_CHUNK):
        stop = min(start + PRECOMPUTE_CHUNK, len(ids))
        messages = _LazyMessages(conn, ids[start:stop])
        out[position[start:stop]] = (engine or default_engine()).hash_and_encrypt(
            suite, key, messages, suite.dst, progress=progress
        )


def _write_epoch_files(
    db: Database,
    epoch_id: int,
    generation: int,
    suite: Suite,
    ids: NDArray[np.int64],
    users: NDArray[np.int64],
    fill: Callable[[NDArray[np.uint8]], None],
) -> list[Path]:
    """Write V (filled by ``fill``), ids and users durably; return the final paths."""
    final = [_array_path(db, epoch_id, generation, name) for name in _ARRAYS]
    temporary = [path.with_name(path.name + ".tmp") for path in final]
    written = list(temporary)
    try:
        shape = (len(ids), suite.element_size)
        if len(ids):
            elements = np.lib.format.open_memmap(
                temporary[0], mode="w+", dtype=np.uint8, shape=shape
            )
            fill(elements)
            elements.flush()
            del elements
        else:
            _save(temporary[0], np.empty(shape, dtype=np.uint8))
        _save(temporary[1], ids)
        _save(temporary[2], users)
        for path in temporary:
            fsync_path(path)
        for source, target in zip(temporary, final, strict=True):
            os.replace(source, target)
            written.append(target)
        fsync_path(db.epochs_dir)
    except BaseException:
        _discard(db, written)
        raise
    return final


def _load_arrays(
    db: Database, epoch: EpochInfo
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    paths = [_array_path(db, epoch.epoch_id, epoch.generation, name) for name in _ARRAYS]
    try:
        elements = np.load(paths[0], mmap_mode="r")
        ids = np.load(paths[1])
        users = np.load(paths[2])
    except FileNotFoundError as exc:
        raise StoreError(f"epoch {epoch.epoch_id} file missing: {exc.filename}") from exc
    except ValueError as exc:
        raise StoreError(f"epoch {epoch.epoch_id} files are damaged: {exc}") from exc
    size = get_suite(epoch.suite_id).element_size
    if (
        elements.shape != (epoch.size, size)
        or ids.shape != (epoch.size,)
        or users.shape != (epoch.size,)
    ):
        raise StoreError(f"epoch {epoch.epoch_id} files do not match its recorded size")
    return elements, ids, users


def remove_leftovers(db: Database) -> bool:
    """Destroy what an interrupted rotation or refresh left: its new key and partial files.

    Such a key would otherwise wait on disk for the next rotation. Nothing is touched while a
    rotation or refresh holds the epoch lock (its files are work in progress, not leftovers).

    Returns:
        Whether the clean-up ran (``False``: the epoch lock is held or cannot be taken).
    """
    try:
        with _epoch_lock(db):
            _remove_orphans(db)
    except StoreError:
        return False
    return True


def _remove_orphans(db: Database) -> None:
    """Destroy keys and remove files of every epoch but the current one (crash leftovers)."""
    epoch = current_epoch(db)
    keep_key = None if epoch is None else _key_path(db, epoch.epoch_id).name
    keep_files = (
        set()
        if epoch is None
        else {_array_path(db, epoch.epoch_id, epoch.generation, name).name for name in _ARRAYS}
    )
    prefix = f"{db.instance_id}-"
    if db.keys_dir.is_dir():
        for path in db.keys_dir.iterdir():
            if path.name.startswith(prefix) and path.name != keep_key:
                keystore.destroy_key(path)
    if db.epochs_dir.is_dir():
        for path in db.epochs_dir.iterdir():
            if path.name.startswith(prefix) and path.name not in keep_files:
                path.unlink(missing_ok=True)


def _discard(db: Database, paths: list[Path]) -> None:
    """Remove what an unfinished rotation or refresh wrote (keys are destroyed, not unlinked)."""
    for path in paths:
        if path.parent == db.keys_dir:
            keystore.destroy_key(path)
        else:
            path.unlink(missing_ok=True)


def _save(path: Path, array: NDArray[np.generic]) -> None:
    # Through a file object: np.save given a path would append ".npy" to the temporary name.
    with path.open("wb") as stream:
        np.save(stream, array)
