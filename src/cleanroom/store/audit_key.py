"""The audit log's signing key: Ed25519, in a file of its own, never in the database.

Everything the platform appends to its audit log, and every receipt it gives an advertiser, is
signed with this key. Someone who can write the database but not read this file cannot forge a
signature, so a rewritten history shows. Where it lives::

    $CLEANROOM_AUDIT_KEY                  when set: a path on another volume, another mount …
    keys/audit.key  (beside the database)  otherwise; keys/ is 0700, the file 0600

Its public half is ``audit.pub`` beside the database (and in every advertiser folder that
``issue-cert`` writes): what ``audit verify`` and ``receipt verify`` check signatures with. One
platform folder has one audit key, as it has one TLS identity; each database signs its own
instance id into every entry, so entries of one database never verify in another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom import _signing
from cleanroom._files import write_atomically
from cleanroom._signing import AUDIT_PUBLIC_KEY_FILE, SigningKey, public_key_pem
from cleanroom.errors import StoreError
from cleanroom.store import keystore

__all__ = [
    "AUDIT_KEY_ENV",
    "AUDIT_KEY_FILE",
    "audit_key_path",
    "create_or_load_audit_key",
    "load_audit_key",
    "public_key_path",
    "read_public_key",
    "write_public_key",
]

#: Environment variable naming the signing key's file, to keep it apart from the database.
AUDIT_KEY_ENV: Final = "CLEANROOM_AUDIT_KEY"

#: The signing key's file name under ``keys/`` when :data:`AUDIT_KEY_ENV` is not set. Epoch keys
#: are named ``<instance>-epoch<N>.key``, so rotation's clean-up never touches this one.
AUDIT_KEY_FILE: Final = "audit.key"

_PUBLIC_FILE_MODE: Final = 0o644


def audit_key_path(keys_dir: Path, override: Path | None = None) -> Path:
    """Where the signing key is: ``override``, else ``$CLEANROOM_AUDIT_KEY``, else ``keys/``."""
    if override is not None:
        return Path(override)
    configured = os.environ.get(AUDIT_KEY_ENV, "").strip()
    return Path(configured) if configured else keys_dir / AUDIT_KEY_FILE


def public_key_path(database: Path) -> Path:
    """``audit.pub`` beside the database."""
    return database.parent / AUDIT_PUBLIC_KEY_FILE


def load_audit_key(path: Path) -> SigningKey:
    """Read the signing key, refusing a file or folder that others could read.

    Raises:
        StoreError: the key is missing, unsafe or damaged (the message names the file and where
            the key can be configured, never the key).
    """
    if not path.exists():
        raise StoreError(
            f"the audit signing key {path} is missing; if it is kept elsewhere, set "
            f"{AUDIT_KEY_ENV} to its path"
        )
    data = keystore.read_key(path)
    try:
        return SigningKey.from_private_bytes(data)
    except ValueError as exc:
        raise StoreError(f"the audit signing key {path} is damaged: {exc}") from None


def create_or_load_audit_key(path: Path) -> SigningKey:
    """The signing key at ``path``, generated (0600, durably) if there is none yet.

    Raises:
        StoreError: the key's folder is missing or open to others, or the key cannot be written
            or read.
    """
    if path.exists():
        return load_audit_key(path)
    key = SigningKey.generate()
    keystore.write_key(path, key.private_bytes())
    return key


def write_public_key(directory: Path, public_key: Ed25519PublicKey) -> Path:
    """Write ``audit.pub`` into ``directory`` (readable by all: it is public).

    An ``audit.pub`` holding another key is never replaced: receipts and audits already rely on
    it.

    Returns:
        The file's path.

    Raises:
        StoreError: another key is there, or the file cannot be written.
    """
    path = directory / AUDIT_PUBLIC_KEY_FILE
    pem = public_key_pem(public_key)
    if path.exists():
        if path.read_bytes() == pem:
            return path
        raise StoreError(
            f"{path} holds another audit key; it is what earlier receipts and audits are "
            "checked against, so it is never replaced"
        )
    write_atomically(path, pem, _PUBLIC_FILE_MODE, StoreError)
    return path


def read_public_key(path: Path) -> Ed25519PublicKey:
    """Read an ``audit.pub``.

    Raises:
        StoreError: the file is missing or is not an Ed25519 public key.
    """
    return _signing.read_public_key(path, StoreError)
