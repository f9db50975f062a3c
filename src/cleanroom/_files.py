"""Durable files and private directories, for the key store, the epochs and the TLS identity.

The lowest layer of the package (it imports only :mod:`cleanroom.errors`), so the store and the
service can both use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cleanroom.errors import CleanroomError

__all__ = ["PRIVATE_DIR_MODE", "fsync_path", "private_directory"]

PRIVATE_DIR_MODE = 0o700


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
