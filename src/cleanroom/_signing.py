"""Ed25519 signatures over canonical JSON: the audit log's entries and the sessions' receipts.

The lowest layer of the package (it imports only :mod:`cleanroom.errors` and ``cryptography``),
so the platform's store, which signs, and the advertiser's side, which verifies, share one
definition of what is signed::

    signing_key = generate_signing_key()
    signature = sign(signing_key, RECEIPT_DOMAIN, canonical_json(fields))
    verify(public_key_from_pem(pem), RECEIPT_DOMAIN, canonical_json(fields), signature)

Every signed message starts with a domain line (:data:`ENTRY_DOMAIN`, :data:`RECEIPT_DOMAIN`),
so a signature made for one purpose never verifies for another.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cleanroom.errors import CleanroomError

__all__ = [
    "AUDIT_PUBLIC_KEY_FILE",
    "ENTRY_DOMAIN",
    "RECEIPT_DOMAIN",
    "SIGNATURE_SIZE",
    "SigningKey",
    "canonical_json",
    "key_id",
    "public_key_from_pem",
    "public_key_pem",
    "read_public_key",
    "sign",
    "verify",
]

#: Name of the audit log's public key: beside the platform database, and in every advertiser's
#: TLS folder, so both can check signatures without the platform's help.
AUDIT_PUBLIC_KEY_FILE: Final = "audit.pub"

#: Domain line of an audit log entry's signature.
ENTRY_DOMAIN: Final = b"cleanroom audit entry v1\n"
#: Domain line of a session receipt's signature.
RECEIPT_DOMAIN: Final = b"cleanroom session receipt v1\n"

#: Bytes of an Ed25519 signature.
SIGNATURE_SIZE: Final = 64


class SigningKey:
    """An Ed25519 private key that shows nothing of itself in ``repr``, logs or pickles.

    Args:
        key: the private key.
    """

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the OS CSPRNG (through OpenSSL)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> SigningKey:
        """A key from its 32 raw bytes.

        Raises:
            ValueError: not 32 bytes (the message never contains them).
        """
        if len(data) != 32:
            raise ValueError(f"an Ed25519 private key is 32 bytes, not {len(data)}")
        return cls(Ed25519PrivateKey.from_private_bytes(data))

    def private_bytes(self) -> bytes:
        """The 32 raw bytes, for the key file only."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message`` (already prefixed with its domain)."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(Ed25519, id {key_id(self.public_key)})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signing key is never pickled")


def canonical_json(value: object) -> bytes:
    """``value`` as compact JSON with sorted keys, UTF-8: one byte string per value.

    Floats are written in Python's shortest round-trip form, so parsing and writing again gives
    the same bytes: a verifier can rebuild the signed message from a parsed document.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign(key: SigningKey, domain: bytes, message: bytes) -> bytes:
    """Sign ``message`` for the purpose ``domain``."""
    return key.sign(domain + message)


def verify(public_key: Ed25519PublicKey, domain: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s signature of ``message`` for ``domain``."""
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, domain + message)
    except InvalidSignature:
        return False
    return True


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), the content of ``audit.pub``."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """Read an ``audit.pub``.

    Raises:
        ValueError: not a PEM public key, or not an Ed25519 one.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def read_public_key(path: Path, error: type[CleanroomError]) -> Ed25519PublicKey:
    """Read an ``audit.pub`` file.

    Args:
        path: the file.
        error: the exception class to raise, so each caller reports in its own terms.

    Raises:
        error: the file cannot be read or is not an Ed25519 public key.
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read the audit public key {path}: {exc.strerror or exc}") from exc
    try:
        return public_key_from_pem(pem)
    except ValueError as exc:
        raise error(f"{path} is not an audit public key ({exc})") from None
