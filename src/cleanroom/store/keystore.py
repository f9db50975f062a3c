"""Epoch keys on disk: one file per epoch, mode 0600, in a directory only the owner can enter.

The key never enters the database: a copy of the database (a backup, a support dump) then
cannot decrypt anything. Retiring an epoch destroys its key, which makes that epoch's ``V``
useless to anyone who kept it. Destruction overwrites the file before unlinking it; on
copy-on-write or wear-levelled storage the old blocks may survive, so this is best effort and
the directory's permissions remain the real protection.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cleanroom._files import fsync_path
from cleanroom.errors import StoreError

__all__ = ["check_private_directory", "destroy_key", "read_key", "write_key"]


def check_private_directory(directory: Path) -> None:
    """Refuse a key directory that others could read or that belongs to someone else.

    Raises:
        StoreError: the directory is missing, not ours, or not mode 0700.
    """
    try:
        info = directory.stat()
    except OSError as exc:
        raise StoreError(
            f"key directory {directory} is missing ({exc.strerror}); "
            "run 'cleanroom platform init' again"
        ) from exc
    if info.st_uid != os.geteuid():
        raise StoreError(f"key directory {directory} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise StoreError(
            f"key directory {directory} has mode {stat.S_IMODE(info.st_mode):o}; "
            "it must be 0700 (chmod 700 it after checking who could have read it)"
        )


def write_key(path: Path, key_bytes: bytes) -> None:
    """Write a key file with mode 0600, durably, without ever leaving a partial file.

    The bytes go to a temporary name created 0600 (``O_EXCL``: never through a planted
    file or link), are fsynced, then renamed into place.

    Raises:
        StoreError: the file cannot be written (the message names the path, never the key).
    """
    check_private_directory(path.parent)
    temporary = path.with_name(path.name + ".tmp")
    destroy_key(temporary)  # left by a crash; O_EXCL below refuses to reuse it
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, key_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        fsync_path(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write key file {path}: {exc.strerror or exc}") from exc


def read_key(path: Path) -> bytes:
    """Read a key file, refusing one that others could read.

    Raises:
        StoreError: the file is missing, or its directory or the file is not private.
    """
    check_private_directory(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StoreError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
            raise StoreError(f"key file {path} is readable by others; refusing to use it")
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def destroy_key(path: Path) -> bool:
    """Overwrite a key file with random bytes, fsync, then unlink it.

    Returns:
        ``True`` if a file was destroyed, ``False`` if there was none.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot destroy key file {path}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        os.write(fd, os.urandom(max(size, 1)))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    fsync_path(path.parent)
    return True
