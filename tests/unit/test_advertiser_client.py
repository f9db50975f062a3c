"""The gRPC client's checks that need no server: addresses, transport choice, TLS folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanroom.advertiser import PlatformClient, ServerAddress, parse_server_address
from cleanroom.errors import InvalidInput, TlsConfigError


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("localhost:50051", "localhost", 50051),
        (" platform.example.com:443 ", "platform.example.com", 443),
        ("127.0.0.1:1", "127.0.0.1", 1),
        ("[::1]:65535", "::1", 65535),
    ],
)
def test_addresses(text: str, host: str, port: int) -> None:
    address = parse_server_address(text)
    assert address == ServerAddress(host, port)


def test_address_prints_back_as_given() -> None:
    assert str(parse_server_address("[::1]:50051")) == "[::1]:50051"
    assert str(parse_server_address("localhost:50051")) == "localhost:50051"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("localhost", "expected HOST:PORT"),
        (":50051", "expected HOST:PORT"),
        ("localhost:", "expected HOST:PORT"),
        ("localhost:0", "port must be a number in 1..65535"),
        ("localhost:65536", "port must be a number in 1..65535"),
        ("localhost:-1", "port must be a number in 1..65535"),
        ("localhost:5x", "port must be a number in 1..65535"),
        ("::1:50051", "put an IPv6 address in brackets"),
        ("[nothost]:50051", "is not IPv6"),
        ("http://localhost:50051", "without a scheme"),
        ("user@host:50051", "expected HOST:PORT"),
    ],
)
def test_bad_addresses(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match="bad server address") as caught:
        parse_server_address(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize("host", ["platform.example.com", "10.0.0.1", "0.0.0.0", "::"])
def test_plaintext_only_to_loopback(host: str) -> None:
    with pytest.raises(InvalidInput, match="allowed only to a loopback address"):
        PlatformClient(ServerAddress(host, 50051), insecure=True)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_plaintext_to_loopback_is_allowed(host: str) -> None:
    PlatformClient(ServerAddress(host, 50051), insecure=True).close()


def test_tls_is_required_without_insecure() -> None:
    with pytest.raises(InvalidInput, match="a TLS folder is required"):
        PlatformClient(ServerAddress("localhost", 50051))


def test_a_tls_folder_without_files_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"ca\.crt is missing"):
        PlatformClient(ServerAddress("localhost", 50051), tls_dir=tmp_path)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="timeout must be positive"):
        PlatformClient(ServerAddress("localhost", 50051), insecure=True, match_timeout=0)
