"""The TLS identity layer: the platform CA, server and advertiser certificates, their loaders."""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cleanroom import tls
from cleanroom.errors import CleanroomError, InvalidInput, TlsConfigError, Unauthenticated

NOW = datetime.datetime.now(datetime.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def platform(tmp_path: Path) -> tls.TlsPaths:
    return tls.create_platform_tls(tmp_path / "tls")


@pytest.fixture
def advertiser_dir(platform: tls.TlsPaths, tmp_path: Path) -> Path:
    return tls.issue_advertiser_certificate(platform.directory, "acme", tmp_path / "acme")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- the platform folder -------------------------------------------------------------------


def test_platform_folder_holds_exactly_four_files_with_private_modes(
    platform: tls.TlsPaths,
) -> None:
    assert sorted(p.name for p in platform.directory.iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]
    assert _mode(platform.directory) == 0o700
    assert _mode(platform.ca_key) == 0o600
    assert _mode(platform.server_key) == 0o600
    assert _mode(platform.ca_cert) == 0o644
    assert _mode(platform.server_cert) == 0o644


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, permissive_umask: None) -> None:
    paths = tls.create_platform_tls(tmp_path / "tls")
    assert _mode(paths.directory) == 0o700
    assert _mode(paths.ca_key) == 0o600
    assert _mode(paths.server_key) == 0o600


def test_an_existing_open_folder_is_tightened_to_0700(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    tls.create_platform_tls(folder)
    assert _mode(folder) == 0o700


def test_ca_is_a_p256_sha256_ca_that_signs_leaves_only(platform: tls.TlsPaths) -> None:
    ca = _cert(platform.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == tls.DEFAULT_CA_NAME
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    key = serialization.load_pem_private_key(platform.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.public_key() == public


def test_server_certificate_defaults_to_localhost_and_loopback_ip(platform: tls.TlsPaths) -> None:
    server = _cert(platform.server_cert)
    san = _san(server)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    server.verify_directly_issued_by(_cert(platform.ca_cert))
    assert isinstance(server.signature_hash_algorithm, hashes.SHA256)


def test_server_names_take_dns_names_and_ip_addresses(tmp_path: Path) -> None:
    names = ["localhost", "127.0.0.1", "Platform.Example.com", "10.1.2.3", "::1", "localhost"]
    paths = tls.create_platform_tls(tmp_path / "tls", server_names=names)
    san = _san(_cert(paths.server_cert))
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "platform.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "10.1.2.3",
        "::1",
    ]


@pytest.mark.parametrize(
    "name", ["", "bad_name", "-lead.example", "trail-.example", "a..b", "x" * 64, "a b", "é.com"]
)
def test_bad_server_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid server name"):
        tls.create_platform_tls(tmp_path / "tls", server_names=["localhost", name])
    assert not (tmp_path / "tls").exists()


def test_a_long_dns_name_fits_in_the_server_certificate(tmp_path: Path) -> None:
    long_name = ".".join(["a" * 60] * 4)  # 243 characters, more than a common name may hold
    paths = tls.create_platform_tls(tmp_path / "tls", server_names=[long_name])
    assert _san(_cert(paths.server_cert)).get_values_for_type(x509.DNSName) == [long_name]


@pytest.mark.parametrize("ca_name", ["", "   ", "x" * 65])
def test_ca_name_must_fit_a_common_name(tmp_path: Path, ca_name: str) -> None:
    with pytest.raises(InvalidInput, match="CA name must be 1 to 64 characters"):
        tls.create_platform_tls(tmp_path / "tls", ca_name=ca_name)
    assert not (tmp_path / "tls").exists()


def test_no_server_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least one name"):
        tls.create_platform_tls(tmp_path / "tls", server_names=[])


def test_existing_ca_is_not_overwritten_unless_asked(platform: tls.TlsPaths) -> None:
    before = {p.name: p.read_bytes() for p in platform.directory.iterdir()}
    with pytest.raises(TlsConfigError, match=r"ca\.crt already exists"):
        tls.create_platform_tls(platform.directory)
    assert {p.name: p.read_bytes() for p in platform.directory.iterdir()} == before

    tls.create_platform_tls(platform.directory, overwrite=True)
    assert platform.ca_cert.read_bytes() != before["ca.crt"]
    assert platform.ca_key.read_bytes() != before["ca.key"]
    assert sorted(p.name for p in platform.directory.iterdir()) == sorted(before)


def test_a_lone_ca_key_also_counts_as_an_existing_ca(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    folder.mkdir(mode=0o700)
    (folder / "ca.key").write_bytes(b"left over")
    with pytest.raises(TlsConfigError, match=r"ca\.key already exists"):
        tls.create_platform_tls(folder)


def test_reissuing_the_server_certificate_keeps_the_ca(platform: tls.TlsPaths) -> None:
    ca_before = platform.ca_cert.read_bytes()
    server_key_before = platform.server_key.read_bytes()
    tls.issue_server_certificate(platform.directory, server_names=["platform.example", "::1"])
    assert platform.ca_cert.read_bytes() == ca_before
    assert platform.server_key.read_bytes() != server_key_before
    server = _cert(platform.server_cert)
    assert _san(server).get_values_for_type(x509.DNSName) == ["platform.example"]
    server.verify_directly_issued_by(_cert(platform.ca_cert))


@pytest.mark.parametrize("days", [0, -1, True, 1.5])
def test_validity_must_be_a_positive_number_of_days(tmp_path: Path, days: object) -> None:
    with pytest.raises(InvalidInput, match="validity"):
        tls.create_platform_tls(tmp_path / "tls", server_valid_days=days)  # type: ignore[arg-type]


def test_default_tls_dir_is_beside_the_database(tmp_path: Path) -> None:
    assert tls.default_tls_dir(tmp_path / "platform.db") == tmp_path / "tls"


# --- advertiser certificates ----------------------------------------------------------------


def test_advertiser_folder_holds_exactly_ca_client_cert_and_key(
    platform: tls.TlsPaths, advertiser_dir: Path
) -> None:
    assert sorted(p.name for p in advertiser_dir.iterdir()) == [
        "ca.crt",
        "client.crt",
        "client.key",
    ]
    assert _mode(advertiser_dir) == 0o700
    assert _mode(advertiser_dir / "client.key") == 0o600
    assert (advertiser_dir / "ca.crt").read_bytes() == platform.ca_cert.read_bytes()


def test_advertiser_certificate_names_the_advertiser_for_client_auth_only(
    platform: tls.TlsPaths, advertiser_dir: Path
) -> None:
    cert = _cert(advertiser_dir / "client.crt")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme"
    assert _san(cert).get_values_for_type(x509.UniformResourceIdentifier) == [
        "cleanroom:advertiser:acme"
    ]
    assert _san(cert).get_values_for_type(x509.DNSName) == []
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(_cert(platform.ca_cert))
    assert tls.advertiser_from_certificate((advertiser_dir / "client.crt").read_bytes()) == "acme"


def test_every_certificate_gets_its_own_random_serial(
    platform: tls.TlsPaths, tmp_path: Path
) -> None:
    serials = {_cert(platform.ca_cert).serial_number, _cert(platform.server_cert).serial_number}
    for index in range(3):
        out = tls.issue_advertiser_certificate(platform.directory, "acme", tmp_path / f"a{index}")
        serials.add(_cert(out / "client.crt").serial_number)
    assert len(serials) == 5
    assert all(serial.bit_length() > 64 for serial in serials)


@pytest.mark.parametrize("name", ["a", "acme", "acme-eu.2", "0x_y", "a" * 63])
def test_good_advertiser_names(name: str) -> None:
    assert tls.validate_advertiser_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "-acme", ".acme", "_acme", "a" * 64, "acme corp", "acme/eu", "acmé", "acme\n"],
)
def test_bad_advertiser_names_are_refused(
    platform: tls.TlsPaths, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidInput, match=r"invalid advertiser name.*1 to 63 characters"):
        tls.issue_advertiser_certificate(platform.directory, name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_client_files_are_not_overwritten_unless_asked(
    platform: tls.TlsPaths, advertiser_dir: Path
) -> None:
    key_before = (advertiser_dir / "client.key").read_bytes()
    with pytest.raises(TlsConfigError, match=r"client\.crt already exists"):
        tls.issue_advertiser_certificate(platform.directory, "acme", advertiser_dir)
    assert (advertiser_dir / "client.key").read_bytes() == key_before
    tls.issue_advertiser_certificate(platform.directory, "acme", advertiser_dir, overwrite=True)
    assert (advertiser_dir / "client.key").read_bytes() != key_before


def test_the_advertiser_folder_cannot_be_the_platform_folder(platform: tls.TlsPaths) -> None:
    with pytest.raises(InvalidInput, match="holds the CA key"):
        tls.issue_advertiser_certificate(platform.directory, "acme", platform.directory)


def test_issuing_without_a_ca_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"ca\.crt is missing"):
        tls.issue_advertiser_certificate(tmp_path / "tls", "acme", tmp_path / "out")


def test_an_expired_certificate_can_be_minted_and_the_loader_refuses_it(
    platform: tls.TlsPaths, tmp_path: Path
) -> None:
    out = tls.issue_advertiser_certificate(
        platform.directory,
        "acme",
        tmp_path / "old",
        not_before=NOW - datetime.timedelta(days=3),
        valid_days=1,
    )
    assert _cert(out / "client.crt").not_valid_after_utc < NOW
    with pytest.raises(TlsConfigError, match=r"client\.crt expired on"):
        tls.channel_credentials(out)


def test_a_not_yet_valid_certificate_is_refused_by_the_loader(
    platform: tls.TlsPaths, tmp_path: Path
) -> None:
    out = tls.issue_advertiser_certificate(
        platform.directory, "acme", tmp_path / "future", not_before=NOW + datetime.timedelta(days=2)
    )
    with pytest.raises(TlsConfigError, match=r"client\.crt is not valid before"):
        tls.channel_credentials(out)


def test_not_before_must_carry_a_timezone(platform: tls.TlsPaths, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        tls.issue_advertiser_certificate(
            platform.directory, "acme", tmp_path / "out", not_before=datetime.datetime(2030, 1, 1)
        )


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    paths = tls.create_platform_tls(tmp_path / "tls", ca_valid_days=10)
    out = tls.issue_advertiser_certificate(
        paths.directory, "acme", tmp_path / "out", valid_days=365
    )
    ca_end = _cert(paths.ca_cert).not_valid_after_utc
    assert _cert(out / "client.crt").not_valid_after_utc == ca_end
    assert _cert(paths.server_cert).not_valid_after_utc == ca_end


# --- loaders -------------------------------------------------------------------------------


def test_loaders_return_grpc_credentials(platform: tls.TlsPaths, advertiser_dir: Path) -> None:
    assert isinstance(tls.server_credentials(platform.directory), grpc.ServerCredentials)
    assert isinstance(tls.channel_credentials(advertiser_dir), grpc.ChannelCredentials)


@pytest.mark.parametrize("name", ["ca.crt", "server.crt", "server.key"])
def test_server_loader_names_a_missing_file(platform: tls.TlsPaths, name: str) -> None:
    (platform.directory / name).unlink()
    with pytest.raises(TlsConfigError, match=f"{name} is missing"):
        tls.server_credentials(platform.directory)


@pytest.mark.parametrize("name", ["ca.crt", "client.crt", "client.key"])
def test_client_loader_names_a_missing_file(advertiser_dir: Path, name: str) -> None:
    (advertiser_dir / name).unlink()
    with pytest.raises(TlsConfigError, match=f"{name} is missing"):
        tls.channel_credentials(advertiser_dir)


def test_a_key_readable_by_others_is_refused(advertiser_dir: Path) -> None:
    (advertiser_dir / "client.key").chmod(0o644)
    with pytest.raises(TlsConfigError, match=r"mode 0644.*chmod 600"):
        tls.channel_credentials(advertiser_dir)


def test_a_certificate_that_is_not_pem_is_named(platform: tls.TlsPaths) -> None:
    platform.server_cert.write_bytes(b"not a certificate")
    with pytest.raises(TlsConfigError, match=r"server\.crt is not a PEM certificate"):
        tls.server_credentials(platform.directory)


def test_a_bad_key_file_is_named_without_quoting_it(platform: tls.TlsPaths) -> None:
    marker = b"-----BEGIN PRIVATE KEY-----\nU0VDUkVULU1BUktFUg==\n-----END PRIVATE KEY-----\n"
    platform.server_key.write_bytes(marker)
    with pytest.raises(TlsConfigError, match=r"server\.key is not an unencrypted PEM") as caught:
        tls.server_credentials(platform.directory)
    assert "U0VDUkVULU1BUktFUg" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_key_of_another_certificate_is_refused_without_showing_either(
    platform: tls.TlsPaths, advertiser_dir: Path, tmp_path: Path
) -> None:
    other = tls.issue_advertiser_certificate(platform.directory, "other", tmp_path / "other")
    (advertiser_dir / "client.key").write_bytes((other / "client.key").read_bytes())
    with pytest.raises(TlsConfigError, match=r"client\.key is not the private key of") as caught:
        tls.channel_credentials(advertiser_dir)
    for name in ("client.key", "client.crt"):
        body = (advertiser_dir / name).read_bytes().decode().splitlines()[1]
        assert body not in str(caught.value)


def test_a_certificate_from_another_ca_is_refused(advertiser_dir: Path, tmp_path: Path) -> None:
    foreign = tls.create_platform_tls(tmp_path / "foreign")
    (advertiser_dir / "ca.crt").write_bytes(foreign.ca_cert.read_bytes())
    with pytest.raises(TlsConfigError, match=r"client\.crt was not issued by the CA"):
        tls.channel_credentials(advertiser_dir)


def test_tls_config_errors_are_not_input_errors() -> None:
    # Exit code 1 in the CLI (a broken installation), not 2 (a bad argument).
    assert issubclass(TlsConfigError, CleanroomError)
    assert not issubclass(TlsConfigError, InvalidInput)


def test_tls_paths_hold_paths_only(platform: tls.TlsPaths) -> None:
    key_line = platform.ca_key.read_text().splitlines()[1]
    assert key_line not in repr(platform)


# --- identity from a certificate ------------------------------------------------------------


def _sign_client(
    platform: tls.TlsPaths,
    *,
    common_name: str,
    uris: list[str],
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> bytes:
    """Sign an odd client certificate with the platform CA, as a broken issuer might."""
    ca_key = serialization.load_pem_private_key(platform.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(_cert(platform.ca_cert).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if uris:
        general = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_server_certificate_names_no_advertiser(platform: tls.TlsPaths) -> None:
    with pytest.raises(Unauthenticated, match="not for client authentication"):
        tls.advertiser_from_certificate(platform.server_cert.read_bytes())


def test_garbage_is_not_a_client_certificate() -> None:
    with pytest.raises(Unauthenticated, match="cannot be parsed"):
        tls.advertiser_from_certificate(b"garbage")


@pytest.mark.parametrize(
    ("common_name", "uris", "reason"),
    [
        ("acme", [], "not an advertiser certificate"),
        ("acme", ["https://acme.example"], "exactly one advertiser"),
        (
            "acme",
            ["cleanroom:advertiser:acme", "cleanroom:advertiser:other"],
            "exactly one advertiser",
        ),
        ("Acme!", ["cleanroom:advertiser:Acme!"], "invalid advertiser"),
        ("other", ["cleanroom:advertiser:acme"], "common name disagrees"),
    ],
)
def test_odd_client_certificates_name_no_advertiser(
    platform: tls.TlsPaths, common_name: str, uris: list[str], reason: str
) -> None:
    pem = _sign_client(platform, common_name=common_name, uris=uris)
    with pytest.raises(Unauthenticated, match=reason):
        tls.advertiser_from_certificate(pem)


def test_a_well_formed_certificate_from_the_ca_names_its_advertiser(
    platform: tls.TlsPaths,
) -> None:
    pem = _sign_client(platform, common_name="acme.eu", uris=["cleanroom:advertiser:acme.eu"])
    assert tls.advertiser_from_certificate(pem) == "acme.eu"


# --- loopback ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_hosts(host: str) -> None:
    assert tls.is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",
        "::",
        "[::]",
        "",
        "10.0.0.1",
        "128.0.0.1",
        "example.com",
        "localhost.example.com",
        "::ffff:10.0.0.1",
        "127.0.0.1:50051",
    ],
)
def test_non_loopback_hosts(host: str) -> None:
    assert not tls.is_loopback(host)
