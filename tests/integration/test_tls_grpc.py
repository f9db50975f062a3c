"""mTLS over a real gRPC server on port 0: who gets in, and who the server thinks they are.

The server has one unary method that answers with the caller's advertiser name, read by
:func:`cleanroom.tls.advertiser_from_auth_context`. Every refused client below fails
with ``UNAVAILABLE``, not ``UNAUTHENTICATED``: the TLS handshake rejects it before any call
reaches the server, so gRPC reports that it could not connect (with TLS 1.3 the client even
finishes its side first and then sees the server close the socket). That the handler never ran
is asserted too. ``UNAUTHENTICATED`` is what a call gets that does reach the handler without a
client certificate: a plaintext connection, shown on a loopback-only server.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest

from cleanroom import tls
from cleanroom.errors import CleanroomError
from cleanroom.protocol import status_for

METHOD = "/cleanroom.test.v1.Identity/WhoAmI"
TIMEOUT = 10.0


@dataclass
class Handler:
    """The servicer: returns the caller's advertiser name, and counts the calls it sees."""

    calls: list[str] = field(default_factory=list)

    def who_am_i(self, request: bytes, context: Any) -> bytes:
        self.calls.append("call")
        try:
            return tls.advertiser_from_auth_context(context).encode()
        except CleanroomError as exc:
            context.abort(status_for(exc), str(exc))
            raise  # abort raises; this line only satisfies the type checker

    def generic(self) -> Any:
        method: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self.who_am_i
        )
        return grpc.method_handlers_generic_handler(
            "cleanroom.test.v1.Identity", {"WhoAmI": method}
        )


@dataclass
class World:
    platform: Path
    acme: Path
    expired: Path
    foreign_acme: Path
    port: int
    handler: Handler


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("tls")
    platform = tls.create_platform_tls(root / "tls").directory
    acme = tls.issue_advertiser_certificate(platform, "acme", root / "acme")
    expired = tls.issue_advertiser_certificate(
        platform,
        "acme",
        root / "expired",
        not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3),
        valid_days=1,
    )
    foreign = tls.create_platform_tls(root / "foreign").directory
    foreign_acme = tls.issue_advertiser_certificate(foreign, "acme", root / "foreign-acme")

    handler = Handler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([handler.generic()])
    port = server.add_secure_port("localhost:0", tls.server_credentials(platform))
    assert port > 0
    server.start()
    try:
        yield World(platform, acme, expired, foreign_acme, port, handler)
    finally:
        server.stop(grace=None)


def _call(credentials: Any, target: str, options: list[tuple[str, str]] | None = None) -> bytes:
    with grpc.secure_channel(target, credentials, options=options) as channel:
        return _who_am_i(channel)


def _who_am_i(channel: grpc.Channel) -> bytes:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    return call(b"", timeout=TIMEOUT)


def _raw_credentials(ca: Path, client: Path | None) -> Any:
    """Client credentials built by hand, skipping the loader's own checks, as an attacker would."""
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=(client / "client.key").read_bytes(),
        certificate_chain=(client / "client.crt").read_bytes(),
    )


def _refused(world: World, credentials: Any, **kwargs: Any) -> grpc.RpcError:
    calls_before = len(world.handler.calls)
    with pytest.raises(grpc.RpcError) as caught:
        _call(credentials, f"localhost:{world.port}", **kwargs)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert len(world.handler.calls) == calls_before, "the handshake should have stopped it"
    return caught.value


def test_a_good_client_gets_its_name_back(world: World) -> None:
    assert _call(tls.channel_credentials(world.acme), f"localhost:{world.port}") == b"acme"


def test_the_server_certificate_is_valid_for_the_loopback_ip(world: World) -> None:
    assert _call(tls.channel_credentials(world.acme), f"127.0.0.1:{world.port}") == b"acme"


def test_a_client_without_a_certificate_is_refused(world: World) -> None:
    _refused(world, _raw_credentials(world.platform / "ca.crt", None))


def test_an_expired_client_certificate_is_refused(world: World) -> None:
    _refused(world, _raw_credentials(world.platform / "ca.crt", world.expired))


def test_a_client_certificate_from_a_foreign_ca_is_refused(world: World) -> None:
    _refused(world, _raw_credentials(world.platform / "ca.crt", world.foreign_acme))


def test_the_server_certificate_cannot_log_in_as_a_client(world: World) -> None:
    # Its key usage is serverAuth only; the handshake checks the purpose.
    platform = world.platform
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(platform / "ca.crt").read_bytes(),
        private_key=(platform / "server.key").read_bytes(),
        certificate_chain=(platform / "server.crt").read_bytes(),
    )
    _refused(world, credentials)


def test_a_client_that_trusts_another_ca_refuses_the_server(world: World) -> None:
    error = _refused(world, tls.channel_credentials(world.foreign_acme))
    # Here the client side rejects the server, and says so.
    assert "CERTIFICATE_VERIFY_FAILED" in (error.details() or "")


def test_a_client_refuses_a_server_name_not_in_the_certificate(world: World) -> None:
    _refused(
        world,
        tls.channel_credentials(world.acme),
        options=[("grpc.ssl_target_name_override", "platform.example")],
    )


def test_a_plaintext_call_reaching_the_handler_is_unauthenticated() -> None:
    handler = Handler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers([handler.generic()])
    assert tls.is_loopback("127.0.0.1")
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            _who_am_i(channel)
    finally:
        server.stop(grace=None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no client certificate" in (caught.value.details() or "")
    assert handler.calls == ["call"]
