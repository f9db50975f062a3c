"""The platform's read-only HTTP endpoint: the dashboard (``/``), ``/metrics`` and ``/healthz``.

Who may read it:

- on a loopback address, anyone on this machine (with no token the ``Host`` header must name
  a loopback host too, so that a web page elsewhere cannot read it through DNS rebinding);
- on any other address, only a caller with the bearer token (``token_file``) or a client
  certificate from ``client_ca`` (HTTPS with the platform's server certificate); both may be
  asked for at once. Anything else is refused before the server binds.

``client_ca`` must not be the CA of the platform's advertisers: every advertiser holds a
certificate from it. Every request that is not GET or HEAD is refused (405).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from cleanroom import tls
from cleanroom.errors import CleanroomError, InvalidInput, ListenFailed, TlsConfigError
from cleanroom.policy import Policy
from cleanroom.service.dashboard.metrics import AdmissionRefusals, build_registry
from cleanroom.service.dashboard.pages import render_dashboard
from cleanroom.service.dashboard.snapshot import SnapshotSource
from cleanroom.service.session_memory import SessionMemory
from cleanroom.store.database import open_database
from cleanroom.store.history import record_eligibility_sample

__all__ = ["DEFAULT_SAMPLE_SECONDS", "DashboardOptions", "DashboardServer", "Health"]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_SECONDS: Final = 60.0
"""How often the server looks whether the eligibility counts changed (and samples them)."""

_HANDSHAKE_SECONDS: Final = 10.0
_REQUEST_SECONDS: Final = 30.0
_SECURITY_HEADERS: Final = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the platform serves, and facts for ``/healthz``."""


@dataclass(frozen=True)
class DashboardOptions:
    """Where and to whom the HTTP endpoint is served.

    Attributes:
        listen: ``HOST:PORT``; port 0 picks a free port.
        token_file: a file (not readable by group or others) holding the bearer token.
        client_ca: PEM CA certificate(s); serve HTTPS and require a client certificate from it.
        sample_seconds: how often eligibility counts are checked and sampled for the history.
    """

    listen: str
    token_file: Path | None = None
    client_ca: Path | None = None
    sample_seconds: float = DEFAULT_SAMPLE_SECONDS


class DashboardServer:
    """The HTTP endpoint, bound but not yet serving.

    Args:
        options: where and to whom.
        db_path: the platform database.
        policy: the platform's policy (advertisers' budgets).
        tls_dir: the platform's TLS folder (its server certificate, for ``client_ca``).
        health: the platform's health, for ``/healthz``.
        active_sessions: sessions the server process runs now.
        admission_refusals: calls the server refused at admission, by advertiser and reason.
        session_memory: the memory budget of the server's sessions.

    Raises:
        InvalidInput: a bad address, or a non-loopback address without token or client CA.
        TlsConfigError: the token file, the client CA or the server certificate is unusable.
        ListenFailed: the address cannot be bound.
    """

    def __init__(
        self,
        options: DashboardOptions,
        *,
        db_path: Path,
        policy: Policy,
        tls_dir: Path,
        health: Health,
        active_sessions: Callable[[], int],
        admission_refusals: AdmissionRefusals = dict,
        session_memory: SessionMemory | None = None,
    ) -> None:
        host, port = _split_address(options.listen)
        loopback = tls.is_loopback(host)
        if not loopback and options.token_file is None and options.client_ca is None:
            raise InvalidInput(
                f"the dashboard may listen on {host} only with --http-token FILE (a bearer "
                "token) or --http-client-ca FILE (client certificates); without them it is "
                "served on a loopback address only, e.g. --http 127.0.0.1:9464"
            )
        token = None if options.token_file is None else _read_token(options.token_file)
        context = None if options.client_ca is None else _tls_context(options.client_ca, tls_dir)
        self._db_path = Path(db_path)
        self._options = options
        self.source = SnapshotSource(db_path, policy)
        self.registry: CollectorRegistry = build_registry(
            self.source, active_sessions, admission_refusals, session_memory
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        try:
            self._httpd = _HttpServer(
                (host.strip("[]"), port),
                _Handler,
                app=_App(
                    self.source,
                    self.registry,
                    health,
                    token,
                    check_host=loopback,
                    admission_refusals=admission_refusals,
                ),
                context=context,
            )
        except OSError as exc:
            raise ListenFailed(f"cannot listen on {options.listen}: {exc.strerror}") from None
        bound = self._httpd.server_address[1]
        self.port: int = int(bound)
        scheme = "http" if context is None else "https"
        shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
        self.url: str = f"{scheme}://{shown}:{self.port}/"
        """The dashboard's address as a browser reaches it."""

    def start(self) -> None:
        """Serve in background threads, and sample eligibility counts."""
        serving = threading.Thread(
            target=self._httpd.serve_forever, name="cleanroom-http", daemon=True
        )
        sampling = threading.Thread(target=self._sample, name="cleanroom-sampler", daemon=True)
        self._threads = [serving, sampling]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop serving and sampling; close the database connections."""
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=_REQUEST_SECONDS)
        self.source.close()

    def _sample(self) -> None:
        """Record the eligibility counts when they changed (and hourly), until stopped."""
        try:
            db = open_database(self._db_path)
        except CleanroomError:
            logger.exception("cannot open the database to sample eligibility")
            return
        try:
            while True:
                try:
                    snapshot = self.source.get()
                    status = snapshot.status
                    record_eligibility_sample(
                        db,
                        status.eligible_identifiers,
                        status.excluded,
                        now=int(snapshot.taken_at),
                    )
                except Exception:
                    logger.exception("sampling the eligibility counts failed")
                if self._stop.wait(self._options.sample_seconds):
                    return
        finally:
            db.close()


class _App:
    """Routes a request to its page; the handler only speaks HTTP."""

    def __init__(
        self,
        source: SnapshotSource,
        registry: CollectorRegistry,
        health: Health,
        token: bytes | None,
        *,
        check_host: bool,
        admission_refusals: AdmissionRefusals,
    ) -> None:
        self.admission_refusals = admission_refusals
        self.source = source
        self.registry = registry
        self.health = health
        self.token = token
        self.check_host = check_host and token is None

    def authorized(self, authorization: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token
        )


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # Refuse a second server on the same port rather than share it.
    allow_reuse_address = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        app: _App,
        context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs on the request's own thread, so a slow client delays no one else.
        request.settimeout(_HANDSHAKE_SECONDS)
        try:
            secured = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.info("dashboard: TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "cleanroom"
    sys_version = ""
    timeout = _REQUEST_SECONDS

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _refuse_method(self) -> None:
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"read-only: GET or HEAD\n",
            "text/plain",
            extra=(("Allow", "GET, HEAD"),),
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _respond(self, *, head: bool) -> None:
        app = self.server.app
        if app.check_host and not _loopback_host(self.headers.get("Host")):
            self._send(
                HTTPStatus.MISDIRECTED_REQUEST, b"not a loopback host\n", "text/plain", head=head
            )
            return
        if not app.authorized(self.headers.get("Authorization")):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"a bearer token is needed\n",
                "text/plain",
                extra=(("WWW-Authenticate", 'Bearer realm="cleanroom"'),),
                head=head,
            )
            return
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                snapshot = app.source.get()
                page = render_dashboard(
                    snapshot, now=snapshot.taken_at, admission=app.admission_refusals()
                )
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", head=head)
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(HTTPStatus.OK, encoder(app.registry), content_type, head=head)
            elif path == "/healthz":
                serving, facts = app.health()
                body = json.dumps({"status": "serving" if serving else "not serving", **facts})
                code = HTTPStatus.OK if serving else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(code, body.encode() + b"\n", "application/json", head=head)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", head=head)
        except Exception:
            logger.exception("dashboard: %s failed", path)
            self._send(
                HTTPStatus.SERVICE_UNAVAILABLE,
                b"the platform's figures cannot be read now; see the server's log\n",
                "text/plain",
                head=head,
            )

    def _send(
        self,
        code: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        head: bool = False,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*_SECURITY_HEADERS, *extra):
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard: %s " + format, self.address_string(), *args)


def _split_address(listen: str) -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInput(
            f"invalid dashboard address {listen!r}: give HOST:PORT, e.g. 127.0.0.1:9464"
        )
    return host, int(port_text)


def _loopback_host(header: str | None) -> bool:
    if not header:
        return False
    host = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    host = host.strip("[]")
    return host == "localhost" or tls.is_loopback(host)


def _read_token(path: Path) -> bytes:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TlsConfigError(f"cannot read the dashboard token {path}: {exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TlsConfigError(f"the dashboard token {path} is readable by others; chmod 600 it")
    if len(text) < 16 or any(c.isspace() for c in text):
        raise TlsConfigError(
            f"the dashboard token in {path} must be one word of at least 16 characters "
            "(e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return text.encode("utf-8")


def _tls_context(client_ca: Path, tls_dir: Path) -> ssl.SSLContext:
    try:
        authorities = x509.load_pem_x509_certificates(client_ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsConfigError(f"cannot read CA certificates from {client_ca}: {exc}") from None
    platform_ca = tls_dir / tls.CA_CERT_FILE
    try:
        advertisers_ca = x509.load_pem_x509_certificate(platform_ca.read_bytes())
    except (OSError, ValueError):
        advertisers_ca = None
    if advertisers_ca is not None and advertisers_ca in authorities:
        raise TlsConfigError(
            f"{client_ca} holds the CA of the platform's advertisers ({platform_ca}): every "
            "advertiser's certificate would open the dashboard; give the CA of your operators"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=str(client_ca))
        context.load_cert_chain(
            str(tls_dir / tls.SERVER_CERT_FILE), str(tls_dir / tls.SERVER_KEY_FILE)
        )
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot use the server certificate in {tls_dir} for the dashboard: {exc}"
        ) from None
    return context
