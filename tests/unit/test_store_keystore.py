"""Key files: 0600 in a 0700 directory, refused when others could read them, destroyed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cleanroom.errors import StoreError
from cleanroom.store import keystore


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


def test_written_key_is_private_and_reads_back(keys: Path) -> None:
    secret = os.urandom(32)
    keystore.write_key(keys / "k.key", secret)
    assert stat.S_IMODE((keys / "k.key").stat().st_mode) == 0o600
    assert keystore.read_key(keys / "k.key") == secret
    assert sorted(p.name for p in keys.iterdir()) == ["k.key"]


def test_stale_temporary_file_does_not_block_writing(keys: Path) -> None:
    (keys / "k.key.tmp").write_bytes(b"left by a crash")
    keystore.write_key(keys / "k.key", b"\x01" * 32)
    assert keystore.read_key(keys / "k.key") == b"\x01" * 32


def test_directory_readable_by_others_is_refused(keys: Path) -> None:
    keystore.write_key(keys / "k.key", b"\x02" * 32)
    keys.chmod(0o755)
    with pytest.raises(StoreError, match="mode 755"):
        keystore.read_key(keys / "k.key")
    with pytest.raises(StoreError, match="0700"):
        keystore.write_key(keys / "other.key", b"\x03" * 32)


def test_key_file_readable_by_others_is_refused(keys: Path) -> None:
    keystore.write_key(keys / "k.key", b"\x02" * 32)
    (keys / "k.key").chmod(0o644)
    with pytest.raises(StoreError, match="readable by others") as caught:
        keystore.read_key(keys / "k.key")
    assert "\\x02" not in str(caught.value)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing"):
        keystore.read_key(tmp_path / "keys" / "k.key")


def test_destroy_removes_the_file(keys: Path) -> None:
    keystore.write_key(keys / "k.key", b"\x04" * 32)
    assert keystore.destroy_key(keys / "k.key")
    assert not (keys / "k.key").exists()
    assert not keystore.destroy_key(keys / "k.key")
