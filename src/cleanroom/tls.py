"""Mutual TLS between the parties: a local CA, its server and advertiser certificates.

``cleanroom platform init`` creates a private CA and a server certificate in a ``tls`` folder
beside the database (:func:`default_tls_dir`); ``cleanroom platform issue-cert`` gives each
advertiser a folder holding the CA certificate and its own client certificate and key. The
server requires a client certificate from that CA and takes the advertiser's identity from it
(DESIGN §9); plaintext is allowed only on a loopback address (:func:`is_loopback`).

Platform folder (mode 0700)::

    tls/ca.crt       the CA certificate (trust anchor for both sides)
    tls/ca.key       the CA's private key (0600; only ``issue-cert`` needs it)
    tls/server.crt   the server certificate: serverAuth, SANs = the server names
    tls/server.key   the server's private key (0600)

Advertiser folder, the ``--out`` of ``issue-cert`` and the ``--tls-dir`` of ``match``::

    OUT/ca.crt       a copy of the platform CA certificate
    OUT/client.crt   the advertiser certificate: clientAuth, CN and SAN name the advertiser
    OUT/client.key   the advertiser's private key (0600)

Identity: an advertiser certificate carries the name twice, as its subject common name and as
the URI subject alternative name ``cleanroom:advertiser:NAME``. The server reads the URI (a typed
field that no host name can be mistaken for) and insists that the common name agrees.

Keys are ECDSA P-256 from the OS CSPRNG (through OpenSSL), signatures ECDSA-SHA256, serial
numbers 159 random bits. Nothing here logs, and no error or repr contains key material.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# grpcio ships no type information; types-grpcio (a dev dependency) provides it.
import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cleanroom._files import PLATFORM_TLS_DIR, private_directory, write_atomically
from cleanroom.errors import InvalidInput, TlsConfigError, Unauthenticated

__all__ = [
    "ADVERTISER_URI_PREFIX",
    "ADVERTISER_VALID_DAYS",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_VALID_DAYS",
    "CLIENT_CERT_FILE",
    "CLIENT_KEY_FILE",
    "DEFAULT_CA_NAME",
    "DEFAULT_SERVER_NAMES",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "SERVER_VALID_DAYS",
    "TlsPaths",
    "advertiser_from_auth_context",
    "advertiser_from_certificate",
    "channel_credentials",
    "create_platform_tls",
    "default_tls_dir",
    "is_loopback",
    "issue_advertiser_certificate",
    "issue_server_certificate",
    "server_credentials",
    "validate_advertiser_name",
]

CA_CERT_FILE: Final = "ca.crt"
CA_KEY_FILE: Final = "ca.key"
SERVER_CERT_FILE: Final = "server.crt"
SERVER_KEY_FILE: Final = "server.key"
CLIENT_CERT_FILE: Final = "client.crt"
CLIENT_KEY_FILE: Final = "client.key"

DEFAULT_CA_NAME: Final = "cleanroom platform CA"
DEFAULT_SERVER_NAMES: Final = ("localhost", "127.0.0.1")
CA_VALID_DAYS: Final = 3650
SERVER_VALID_DAYS: Final = 825
ADVERTISER_VALID_DAYS: Final = 365

ADVERTISER_URI_PREFIX: Final = "cleanroom:advertiser:"
"""An advertiser certificate's URI SAN is this prefix followed by the advertiser's name."""

_SERVER_COMMON_NAME: Final = "cleanroom platform server"
_ADVERTISER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# Certificates start a few minutes in the past so a peer whose clock runs slightly behind
# does not see a brand-new certificate as not yet valid.
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_PRIVATE_FILE_MODE: Final = 0o600
_PUBLIC_FILE_MODE: Final = 0o644


@dataclass(frozen=True)
class TlsPaths:
    """Where the platform's TLS files are (paths only: this object never holds key material).

    Attributes:
        directory: the TLS folder.
        ca_cert, ca_key, server_cert, server_key: the four files in it.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def of(cls, tls_dir: Path) -> TlsPaths:
        """Return the paths of the platform files in ``tls_dir``."""
        return cls(
            directory=tls_dir,
            ca_cert=tls_dir / CA_CERT_FILE,
            ca_key=tls_dir / CA_KEY_FILE,
            server_cert=tls_dir / SERVER_CERT_FILE,
            server_key=tls_dir / SERVER_KEY_FILE,
        )


def default_tls_dir(database: Path) -> Path:
    """Return the TLS folder that belongs to a platform database: ``tls`` beside it."""
    return database.parent / PLATFORM_TLS_DIR


def validate_advertiser_name(name: str) -> str:
    """Check that ``name`` can name an advertiser in a certificate.

    Args:
        name: 1 to 63 characters of ``a-z 0-9 . _ -``, starting with a letter or digit.

    Returns:
        ``name`` unchanged.

    Raises:
        InvalidInput: the name breaks the rule (the message states the rule).
    """
    if not isinstance(name, str) or _ADVERTISER_NAME.fullmatch(name) is None:
        raise InvalidInput(
            f"invalid advertiser name {name!r}: use 1 to 63 characters of a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return name


def create_platform_tls(
    tls_dir: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    ca_name: str = DEFAULT_CA_NAME,
    ca_valid_days: int = CA_VALID_DAYS,
    server_valid_days: int = SERVER_VALID_DAYS,
    overwrite: bool = False,
) -> TlsPaths:
    """Create the platform's CA and a server certificate in ``tls_dir``.

    Args:
        tls_dir: the folder to create (mode 0700; an existing one of ours is tightened to 0700).
        server_names: DNS names and IP addresses the server certificate is valid for.
        ca_name: the CA certificate's common name.
        ca_valid_days: how long the CA is valid; every certificate it issues ends by then.
        server_valid_days: how long the server certificate is valid.
        overwrite: replace an existing CA. Every advertiser certificate it issued stops working.

    Returns:
        The paths of the four files written.

    Raises:
        InvalidInput: a server name is neither an IP address nor a valid DNS name, a validity
            is not a positive number of days, or the CA name is empty or too long.
        TlsConfigError: a CA exists and ``overwrite`` is false, or a file cannot be written.
    """
    names = _server_general_names(server_names)
    _check_valid_days(ca_valid_days)
    _check_valid_days(server_valid_days)
    if not ca_name.strip() or len(ca_name) > 64:
        raise InvalidInput("the CA name must be 1 to 64 characters (a certificate common name)")
    paths = TlsPaths.of(tls_dir)
    if not overwrite:
        for existing in (paths.ca_cert, paths.ca_key):
            if existing.exists() or existing.is_symlink():
                raise TlsConfigError(
                    f"{existing} already exists; the platform already has a CA. Replacing it "
                    "invalidates every advertiser certificate: ask for overwrite explicitly"
                )
    private_directory(tls_dir, TlsConfigError, parents=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    not_before = _now() - _CLOCK_SKEW
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=ca_valid_days))
        # path_length=0: the CA signs leaf certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    # Keys before certificates: a certificate on disk always has its key beside it.
    _write_file(paths.ca_key, _private_pem(ca_key), _PRIVATE_FILE_MODE)
    _write_file(paths.ca_cert, _certificate_pem(ca_cert), _PUBLIC_FILE_MODE)
    _issue_server(paths, ca_cert, ca_key, names, server_valid_days)
    return paths


def issue_server_certificate(
    tls_dir: Path,
    *,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    valid_days: int = SERVER_VALID_DAYS,
) -> TlsPaths:
    """Replace the server certificate and key, signed by the existing CA.

    Use it to add a server name or renew the server certificate without invalidating any
    advertiser certificate.

    Args:
        tls_dir: the platform's TLS folder, as made by :func:`create_platform_tls`.
        server_names: DNS names and IP addresses the certificate is valid for.
        valid_days: how long it is valid (never beyond the CA's end).

    Returns:
        The paths of the platform's files.

    Raises:
        InvalidInput: a bad server name or validity.
        TlsConfigError: the CA files are missing, unsafe or expired, or a file cannot be written.
    """
    names = _server_general_names(server_names)
    _check_valid_days(valid_days)
    paths = TlsPaths.of(tls_dir)
    ca_cert, ca_key = _load_ca(paths)
    _issue_server(paths, ca_cert, ca_key, names, valid_days)
    return paths


def issue_advertiser_certificate(
    tls_dir: Path,
    advertiser: str,
    out_dir: Path,
    *,
    valid_days: int = ADVERTISER_VALID_DAYS,
    not_before: datetime.datetime | None = None,
    overwrite: bool = False,
) -> Path:
    """Issue a client certificate for ``advertiser`` into a folder of its own.

    Writes exactly ``ca.crt``, ``client.crt`` and ``client.key`` (0600) into ``out_dir``, the
    folder ``cleanroom match --tls-dir`` reads. A new ``out_dir`` is created with mode 0700.

    Args:
        tls_dir: the platform's TLS folder (its CA signs the certificate).
        advertiser: the advertiser's name (see :func:`validate_advertiser_name`).
        out_dir: where to write; must not be the platform's own TLS folder.
        valid_days: how long the certificate is valid (never beyond the CA's end).
        not_before: start of validity (aware datetime); default a few minutes ago. A date in
            the past with a short ``valid_days`` makes an expired certificate, for tests.
        overwrite: replace an existing ``client.crt``/``client.key`` in ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        InvalidInput: a bad advertiser name, validity or ``not_before``, or ``out_dir`` is the
            platform's TLS folder (the advertiser would receive the CA key).
        TlsConfigError: the CA files are missing, unsafe or expired; the client files exist
            and ``overwrite`` is false; or a file cannot be written.
    """
    validate_advertiser_name(advertiser)
    _check_valid_days(valid_days)
    start = _start_time(not_before)
    paths = TlsPaths.of(tls_dir)
    if out_dir.resolve() == tls_dir.resolve():
        raise InvalidInput(
            f"the advertiser's folder {out_dir} must not be the platform's TLS folder "
            "(it holds the CA key)"
        )
    ca_cert, ca_key = _load_ca(paths)
    cert_path, key_path = out_dir / CLIENT_CERT_FILE, out_dir / CLIENT_KEY_FILE
    if not overwrite:
        for existing in (cert_path, key_path):
            if existing.exists() or existing.is_symlink():
                raise TlsConfigError(f"{existing} already exists; ask for overwrite to replace it")

    client_key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf_certificate(
        subject=advertiser,
        alternative_names=[x509.UniformResourceIdentifier(ADVERTISER_URI_PREFIX + advertiser)],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        public_key=client_key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=start,
        valid_days=valid_days,
    )
    if not out_dir.exists():
        private_directory(out_dir, TlsConfigError, parents=True)
    _write_file(key_path, _private_pem(client_key), _PRIVATE_FILE_MODE)
    _write_file(cert_path, _certificate_pem(cert), _PUBLIC_FILE_MODE)
    _write_file(out_dir / CA_CERT_FILE, _certificate_pem(ca_cert), _PUBLIC_FILE_MODE)
    return out_dir


def server_credentials(tls_dir: Path) -> grpc.ServerCredentials:
    """Load the server's mTLS credentials: its certificate, and the CA that clients need.

    Args:
        tls_dir: the platform's TLS folder (``ca.crt``, ``server.crt``, ``server.key``).

    Returns:
        ``grpc.ServerCredentials`` that require a client certificate issued by the CA.

    Raises:
        TlsConfigError: a file is missing, not PEM, readable by others, expired, not issued by
            the CA, or the key does not belong to the certificate (the message names the file).
    """
    ca_pem, cert_pem, key_pem = _load_identity(
        tls_dir / CA_CERT_FILE, tls_dir / SERVER_CERT_FILE, tls_dir / SERVER_KEY_FILE
    )
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def channel_credentials(tls_dir: Path) -> grpc.ChannelCredentials:
    """Load an advertiser's mTLS credentials for a channel to the platform.

    Args:
        tls_dir: the advertiser's folder (``ca.crt``, ``client.crt``, ``client.key``).

    Returns:
        ``grpc.ChannelCredentials`` that trust only the platform CA and present the client
        certificate.

    Raises:
        TlsConfigError: a file is missing, not PEM, readable by others, expired, not issued by
            the CA, or the key does not belong to the certificate (the message names the file).
    """
    ca_pem, cert_pem, key_pem = _load_identity(
        tls_dir / CA_CERT_FILE, tls_dir / CLIENT_CERT_FILE, tls_dir / CLIENT_KEY_FILE
    )
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def advertiser_from_auth_context(context: grpc.ServicerContext) -> str:
    """Return the name of the advertiser calling, from its verified client certificate.

    The TLS handshake has already checked the certificate's chain and dates; this reads who it
    names.

    Args:
        context: the ``grpc.ServicerContext`` of the call.

    Returns:
        The advertiser's name.

    Raises:
        Unauthenticated: the call carries no client certificate (a plaintext or one-way TLS
            connection), or the certificate names no advertiser.
    """
    # grpc gives a list of values per property; its type stubs say a single bytes value.
    auth: Mapping[str, object] = context.auth_context() or {}
    value = auth.get("x509_pem_cert")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if not isinstance(value, bytes) or not value:
        raise Unauthenticated("the call carries no client certificate")
    return advertiser_from_certificate(value)


def advertiser_from_certificate(pem: bytes) -> str:
    """Return the advertiser a client certificate names.

    Args:
        pem: the certificate in PEM (as TLS verified it).

    Returns:
        The name from the URI SAN ``cleanroom:advertiser:NAME``.

    Raises:
        Unauthenticated: not a certificate, not for client authentication, no or several
            advertiser names, an invalid name, or a common name that disagrees.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated("the client certificate cannot be parsed") from None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        raise Unauthenticated("the client certificate is not an advertiser certificate") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise Unauthenticated("the certificate is not for client authentication")
    names = [
        uri[len(ADVERTISER_URI_PREFIX) :]
        for uri in alternative.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(ADVERTISER_URI_PREFIX)
    ]
    if len(names) != 1:
        raise Unauthenticated("the client certificate does not name exactly one advertiser")
    (name,) = names
    if _ADVERTISER_NAME.fullmatch(name) is None:
        raise Unauthenticated("the client certificate names an invalid advertiser")
    common_names = [
        attribute.value for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    if common_names != [name]:
        raise Unauthenticated("the client certificate's common name disagrees with its SAN")
    return name


def is_loopback(host: str) -> bool:
    """Tell whether a listen address is loopback, where plaintext (``--insecure``) is allowed.

    No name is resolved: only ``localhost`` itself, ``127.0.0.0/8``, ``::1`` and the
    IPv4-mapped ``::ffff:127.x.x.x`` count; everything else (``0.0.0.0``, ``::``, any other
    name) is not loopback.

    Args:
        host: the host part of the listen address, without the port; IPv6 may be bracketed.

    Returns:
        ``True`` if every address the host can mean is a loopback address.
    """
    candidate = host.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    if candidate.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --- issuing -----------------------------------------------------------------------------


def _issue_server(
    paths: TlsPaths,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    valid_days: int,
) -> None:
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf_certificate(
        # Clients match the SANs; a fixed common name cannot overflow CN's 64-character limit.
        subject=_SERVER_COMMON_NAME,
        alternative_names=names,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        public_key=server_key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=_now() - _CLOCK_SKEW,
        valid_days=valid_days,
    )
    _write_file(paths.server_key, _private_pem(server_key), _PRIVATE_FILE_MODE)
    _write_file(paths.server_cert, _certificate_pem(cert), _PUBLIC_FILE_MODE)


def _leaf_certificate(
    *,
    subject: str,
    alternative_names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    public_key: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    valid_days: int,
) -> x509.Certificate:
    # A certificate outliving its CA would only fail later and more confusingly.
    not_after = min(not_before + datetime.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    if not_after <= not_before:
        raise InvalidInput(
            f"the certificate would end before it starts: the CA ends on "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    ca_public = ca_key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # One usage only: a server certificate cannot log in as a client, nor the reverse.
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _server_general_names(server_names: Sequence[str]) -> list[x509.GeneralName]:
    """Turn server names into SAN entries: IP addresses as such, the rest as DNS names."""
    if isinstance(server_names, str):
        server_names = [server_names]
    result: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in server_names:
        name = raw.strip().lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
            continue
        except ValueError:
            pass
        labels = name.split(".")
        if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise InvalidInput(
                f"invalid server name {raw!r}: give a DNS name (letters, digits, '-', dots) "
                "or an IP address"
            )
        result.append(x509.DNSName(name))
    if not result:
        raise InvalidInput("the server certificate needs at least one name")
    return result


def _check_valid_days(valid_days: int) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise InvalidInput(f"validity must be a whole number of days >= 1, not {valid_days!r}")


def _start_time(not_before: datetime.datetime | None) -> datetime.datetime:
    if not_before is None:
        return _now() - _CLOCK_SKEW
    if not_before.tzinfo is None or not_before.utcoffset() is None:
        raise InvalidInput("not_before must be a timezone-aware datetime")
    return not_before.astimezone(datetime.UTC)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


# --- reading -----------------------------------------------------------------------------


def _load_ca(paths: TlsPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = _read_certificate(paths.ca_cert)
    ca_key = _read_private_key(paths.ca_key)
    _check_key_matches(paths.ca_key, ca_key, paths.ca_cert, ca_cert)
    _check_current(paths.ca_cert, ca_cert)
    return ca_cert, ca_key


def _load_identity(ca_path: Path, cert_path: Path, key_path: Path) -> tuple[bytes, bytes, bytes]:
    """Read and cross-check a CA, a certificate and its key; return the three PEMs for gRPC."""
    ca_pem = _read_file(ca_path)
    cert_pem = _read_file(cert_path)
    ca_cert = _parse_certificate(ca_path, ca_pem)
    cert = _parse_certificate(cert_path, cert_pem)
    key_pem = _read_file(key_path, private=True)
    key = _parse_private_key(key_path, key_pem)
    _check_key_matches(key_path, key, cert_path, cert)
    # Checked here so a mismatched or stale folder fails with a message naming the file,
    # not with an opaque handshake failure on the other side.
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsConfigError(f"{cert_path} was not issued by the CA in {ca_path}") from None
    _check_current(ca_path, ca_cert)
    _check_current(cert_path, cert)
    return ca_pem, cert_pem, key_pem


def _read_certificate(path: Path) -> x509.Certificate:
    return _parse_certificate(path, _read_file(path))


def _parse_certificate(path: Path, pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise TlsConfigError(f"{path} is not a PEM certificate") from exc


def _read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return _parse_private_key(path, _read_file(path, private=True))


def _parse_private_key(path: Path, pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # ``from None``: the parser's message is not needed and must not risk quoting the key.
        raise TlsConfigError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsConfigError(f"{path} is not an elliptic-curve private key")
    return key


def _check_key_matches(
    key_path: Path, key: ec.EllipticCurvePrivateKey, cert_path: Path, cert: x509.Certificate
) -> None:
    if key.public_key() != cert.public_key():
        raise TlsConfigError(f"{key_path} is not the private key of {cert_path}")


def _check_current(path: Path, cert: x509.Certificate) -> None:
    now = datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        raise TlsConfigError(
            f"{path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(check this machine's clock)"
        )
    if now > cert.not_valid_after_utc:
        raise TlsConfigError(
            f"{path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "a new certificate is needed"
        )


def _read_file(path: Path, *, private: bool = False) -> bytes:
    """Read a TLS file; a private key must not be readable by group or others."""
    try:
        with path.open("rb") as handle:
            if private:
                mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
                if mode & 0o077:
                    raise TlsConfigError(
                        f"{path} has mode {mode:04o}; a private key must be readable by its "
                        f"owner only (chmod 600 {path})"
                    )
            return handle.read()
    except FileNotFoundError:
        raise TlsConfigError(f"TLS file {path} is missing") from None
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS file {path}: {exc.strerror or exc}") from exc


# --- writing -----------------------------------------------------------------------------


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write a TLS file atomically with exactly ``mode`` (see :func:`write_atomically`)."""
    write_atomically(path, data, mode, TlsConfigError)
