"""Durable files and private directories, for the key store, the epochs and the TLS identity.

The lowest layer of the package (it imports only :mod:`cleanroom.errors`), so the store and the
service can both use it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cleanroom.errors import CleanroomError

__all__ = [
    "PLATFORM_TLS_DIR",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "create_private_file",
    "fsync_path",
    "private_directory",
    "refuse_if_readable_by_others",
    "write_atomically",
]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

#: The platform's TLS folder beside its database (``platform init`` makes it).
PLATFORM_TLS_DIR = "tls"


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk.

    A rename or unlink is durable only once the directory entry itself is on disk, so callers
    fsync the directory after renaming into it.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_directory(
    directory: Path, error: type[CleanroomError], *, parents: bool = False
) -> None:
    """Create ``directory`` with mode 0700, or tighten an existing one we own to 0700.

    Args:
        directory: the folder that will hold secrets.
        error: the exception class to raise, so each caller reports in its own terms.
        parents: also create missing parents (with default modes).

    Raises:
        error: the folder cannot be created, is not a folder, or belongs to another user.
    """
    try:
        if parents:
            directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        info = directory.stat()
    except OSError as exc:
        raise error(f"cannot create {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise error(f"{directory} exists and is not a directory")
    if info.st_uid != os.geteuid():
        raise error(f"{directory} belongs to another user; refusing to keep keys there")
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
        # mkdir's mode is filtered by the umask; chmod sets it exactly.
        directory.chmod(PRIVATE_DIR_MODE)


def create_private_file(path: Path, error: type[CleanroomError]) -> None:
    """Create an empty file of mode 0600, whatever the umask; never through a planted link.

    Raises:
        error: the file exists already or cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        finally:
            os.close(fd)
    except OSError as exc:
        raise error(f"cannot create {path}: {exc.strerror or exc}") from exc


def refuse_if_readable_by_others(path: Path, what: str, error: type[CleanroomError]) -> None:
    """Refuse a file or folder that group or others could read, as ssh does for its keys.

    A path that does not exist passes (there is nothing to read).

    Args:
        path: the file or folder.
        what: what it is, for the message (``"platform database"``, ``"TLS private key"`` …).
        error: the exception class to raise.

    Raises:
        error: ``path`` is open to group or others, or belongs to another user; the message
            says what to ``chmod``.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"cannot check {what} {path}: {exc.strerror or exc}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise error(f"{what} {path} belongs to another user (uid {info.st_uid}); refusing it")
    if mode & 0o077:
        wanted = "700" if stat.S_ISDIR(info.st_mode) else "600"
        raise error(
            f"{what} {path} has mode {mode:04o}: group or others can read it. Check who could "
            f"have read it, then run: chmod {wanted} {path}"
        )


def write_atomically(path: Path, data: bytes, mode: int, error: type[CleanroomError]) -> None:
    """Write ``data`` to ``path`` atomically with exactly ``mode``: never a partial file.

    The bytes go to a fresh random name created with ``O_EXCL`` (never through a planted file
    or link) and the final mode from the start, are fsynced, then renamed over ``path``.

    Raises:
        error: the file cannot be written (the message names the path, never the data).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have cleared bits we want, e.g. 0644 -> 0600
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        fsync_path(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"cannot write {path}: {exc.strerror or exc}") from exc
