"""The platform's gRPC server: construction, the serve loop, and a clean stop on SIGTERM.

One :class:`PlatformServer` serves ``cleanroom.v1.Matcher`` plus standard health checking
(``grpc.health.v1.Health``: Check, Watch and List, status per service) and server reflection
(``grpc.reflection.v1`` and ``v1alpha``) over mTLS, or over
plaintext on a loopback address only. Sessions of several advertisers run at once, each on its
own gRPC thread that only relays messages; the scalar multiplications run on the batch engine.

Stopping (:meth:`PlatformServer.stop`, or SIGTERM/SIGINT under :func:`serve`): health turns
``NOT_SERVING``, no new call is accepted, sessions under way get ``grace`` seconds to finish,
then every call is cancelled and every session still open is aborted (nothing charged, no
audience, audited ``match.aborted``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped, unused-ignore]

from cleanroom import tls
from cleanroom.crypto import BatchEngine, default_engine
from cleanroom.errors import InvalidInput, ListenFailed
from cleanroom.policy import Policy
from cleanroom.protocol import MAX_CHUNK_BYTES
from cleanroom.service.admission import (
    DEFAULT_MAX_SESSIONS,
    Admission,
    AdmissionLimits,
    StreamAdmission,
)
from cleanroom.service.audience_sweep import DEFAULT_SWEEP_INTERVAL, AudienceSweeper
from cleanroom.service.dashboard import DashboardOptions, DashboardServer
from cleanroom.service.platform_sessions import PlatformSessions
from cleanroom.service.servicer import (
    SERVICE_NAME,
    Identify,
    MatcherServicer,
    abort_with_status,
    add_matcher_to_server,
)
from cleanroom.service.standard_services import (
    HEALTH_SERVICE_NAME,
    HealthServicer,
    enable_reflection,
)
from cleanroom.store.epochs import current_epoch

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_SESSION_TIMEOUT",
    "INSECURE_ADVERTISER",
    "MAX_MESSAGE_BYTES",
    "SERVICE_NAME",
    "PlatformServer",
    "ServerOptions",
    "parse_listen_address",
    "serve",
]

logger = logging.getLogger(__name__)

INSECURE_ADVERTISER: Final = "insecure-local"
"""The advertiser every plaintext (``--insecure``) caller is, unless told otherwise."""

MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024 + 64 * 1024
"""Largest message either way: a full chunk (MAX_CHUNK_BYTES of payload) plus its other fields,
with room to spare; anything larger is refused by gRPC before it is read."""

DEFAULT_SESSION_TIMEOUT: Final = 3600.0
DEFAULT_GRACE_SECONDS: Final = 10.0

# Threads beyond the streams' and GetPolicy's: health checks, and refusals, always find one.
_PROBE_THREADS: Final = 4
# After the grace period, how long to wait for handlers to record their aborts.
_ABORT_WAIT_SECONDS: Final = 10.0

assert MAX_CHUNK_BYTES < MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ServerOptions:
    """How to run the platform server.

    Attributes:
        db_path: the platform database.
        listen: ``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 picks a free port.
        policy: the platform's policy.
        tls_dir: the platform's TLS folder (CA, server certificate and key); ignored when
            ``insecure_advertiser`` is set.
        insecure_advertiser: serve plaintext (loopback only) and treat every caller as this
            advertiser; ``None`` for mTLS, where the name comes from the client certificate.
        max_sessions: streams (sessions) served at once, all advertisers together; more are
            refused ``RESOURCE_EXHAUSTED``.
        session_timeout: seconds a session may last before it is aborted.
        engine: the batch engine for the sessions (``None``: the process-wide default).
        dashboard: also serve the dashboard, ``/metrics`` and ``/healthz`` over HTTP.
        sweep_interval: seconds between sweeps of stored audiences (``None``: no sweep).
        limits: what each advertiser is held to (streams at once, the opening's deadline,
            GetPolicy's rate); its ``max_streams`` is replaced by ``max_sessions``.
        session_memory: bytes the sessions' sets may take at once, all sessions together; a
            session that would not fit is refused ``RESOURCE_EXHAUSTED`` (``None``: half of
            the machine's memory).
    """

    db_path: Path
    listen: str
    policy: Policy
    tls_dir: Path | None = None
    insecure_advertiser: str | None = None
    max_sessions: int = DEFAULT_MAX_SESSIONS
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    engine: BatchEngine | None = None
    dashboard: DashboardOptions | None = None
    sweep_interval: float | None = DEFAULT_SWEEP_INTERVAL
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    session_memory: int | None = None


def parse_listen_address(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[IPv6]:PORT``) into host and port.

    Raises:
        InvalidInput: no host, or a port that is not a number in 0..65535.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInput(
            f"invalid listen address {listen!r}: give HOST:PORT, e.g. 127.0.0.1:50051 "
            "(port 0 picks a free port; IPv6 as [::1]:50051)"
        )
    return host, int(port_text)


class PlatformServer:
    """The Matcher service with health checking and reflection, bound but not yet started.

    Args:
        options: what to serve and how.

    Raises:
        InvalidInput: a bad listen address, plaintext on a non-loopback address, an invalid
            insecure advertiser name, or a session limit or session memory below 1.
        TlsConfigError: the TLS folder cannot be used (the message names the file).
        ListenFailed: the address cannot be bound.
    """

    def __init__(self, options: ServerOptions) -> None:
        host, _port = parse_listen_address(options.listen)
        if options.max_sessions < 1:
            raise InvalidInput("the number of concurrent sessions must be at least 1")
        if options.session_memory is not None and options.session_memory < 1:
            raise InvalidInput("the session memory must be at least 1 byte")
        identify: Identify
        if options.insecure_advertiser is not None:
            if not tls.is_loopback(host):
                raise InvalidInput(
                    f"plaintext (--insecure) is allowed on a loopback address only, not {host}; "
                    "serve mTLS with --tls-dir, or listen on 127.0.0.1"
                )
            name = tls.validate_advertiser_name(options.insecure_advertiser)
            identify = lambda _context: name  # noqa: E731 (one expression, one name)
            credentials = None
        else:
            if options.tls_dir is None:
                raise InvalidInput("a TLS folder is needed unless the server runs --insecure")
            credentials = tls.server_credentials(options.tls_dir)
            identify = tls.advertiser_from_auth_context

        self._engine = options.engine
        limits = replace(options.limits, max_streams=options.max_sessions)
        self.admission = Admission(limits)
        """Who holds which streams, and what was refused, per advertiser."""
        self.sessions = PlatformSessions(
            options.db_path,
            options.policy,
            engine=options.engine,
            unopened_record_interval=limits.unopened_record_interval,
            session_memory=options.session_memory,
        )
        self._sweeper = (
            None
            if options.sweep_interval is None
            else AudienceSweeper(options.db_path, options.sweep_interval)
        )
        # Streams hold their threads for their whole life, but admission keeps them to
        # max_sessions, and GetPolicy to its own few: health checks never wait behind either.
        # The concurrency limit equals the pool, so a call beyond it is refused, never queued.
        threads = limits.max_streams + limits.policy_calls_at_once + _PROBE_THREADS
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cleanroom-rpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Without this a second server could bind the same port and split the calls.
                ("grpc.so_reuseport", 0),
                # Find clients that vanished without closing their connection.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
            ],
            maximum_concurrent_rpcs=threads,
            interceptors=[StreamAdmission(self.admission, identify, abort_with_status)],
        )
        servicer = MatcherServicer(
            self.sessions,
            identify,
            session_timeout=options.session_timeout,
            admission=self.admission,
        )
        add_matcher_to_server(servicer, self._server)
        self._health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        enable_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME), self._server)
        try:
            if credentials is None:
                bound = self._server.add_insecure_port(options.listen)
            else:
                bound = self._server.add_secure_port(options.listen, credentials)
        except RuntimeError as exc:
            raise ListenFailed(f"cannot listen on {options.listen}: {exc}") from None
        if bound == 0:
            raise ListenFailed(f"cannot listen on {options.listen}")
        self.port: int = bound
        """The port actually bound (the real one when 0 was asked for)."""
        self.address: str = f"{host}:{bound}"
        """``HOST:PORT`` as clients reach it."""
        self.secure = credentials is not None
        self._serving = False
        self.dashboard: DashboardServer | None = None
        """The HTTP dashboard, when asked for."""
        if options.dashboard is not None:
            try:
                self.dashboard = DashboardServer(
                    options.dashboard,
                    db_path=options.db_path,
                    policy=options.policy,
                    tls_dir=options.tls_dir or tls.default_tls_dir(options.db_path),
                    health=self._health_facts,
                    active_sessions=self.sessions.active_count,
                    admission_refusals=self.admission.refusals,
                    session_memory=self.sessions.memory,
                )
            except BaseException:
                self._server.stop(None)
                raise

    def _health_facts(self) -> tuple[bool, dict[str, object]]:
        """For ``/healthz``: serving only while the gRPC service is up and an epoch exists."""
        with self.sessions.connect() as db:
            epoch = current_epoch(db)
        facts: dict[str, object] = {
            "epoch": None if epoch is None else epoch.epoch_id,
            "active_sessions": self.sessions.active_count(),
        }
        return self._serving and epoch is not None, facts

    def start(self) -> None:
        """Abort sessions a previous run left open, then serve."""
        recovered = self.sessions.recover()
        if recovered:
            logger.warning("aborted %d sessions a previous run left open", recovered)
        # The workers start now, in the background, not inside the first advertiser's session.
        (self._engine or default_engine()).start()
        if self._sweeper is not None:
            self._sweeper.start()
        self._server.start()
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._serving = True
        if self.dashboard is not None:
            self.dashboard.start()

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop serving; sessions under way get ``grace`` seconds, then are aborted."""
        self._serving = False
        self._health.enter_graceful_shutdown()
        if self._sweeper is not None:
            self._sweeper.stop()
        self._server.stop(grace).wait()
        # Calls are cancelled now; a handler still inside the engine has not noticed yet.
        self.sessions.unopened.flush()
        aborted = self.sessions.abort_all("the platform stopped before the session completed")
        if aborted:
            logger.info("aborted %d sessions on stop", aborted)
        if not self.sessions.wait_idle(_ABORT_WAIT_SECONDS):
            logger.warning("sessions still running after stop; their rows were marked aborted")
        self.sessions.close()
        if self.dashboard is not None:
            self.dashboard.stop()

    def __enter__(self) -> PlatformServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=0)


def serve(
    options: ServerOptions, *, grace: float = DEFAULT_GRACE_SECONDS, out: TextIO = sys.stdout
) -> int:
    """Run the server until SIGTERM or SIGINT, then stop it cleanly.

    Prints ``listening on HOST:PORT`` (the real port) to ``out`` once it serves.

    Args:
        options: what to serve and how.
        grace: seconds sessions under way get to finish after the signal.
        out: where the listening line goes.

    Returns:
        0 once stopped.

    Raises:
        CleanroomError: the server could not be built or bound (see :class:`PlatformServer`).
    """
    server = PlatformServer(options)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        logger.info("serving %s", "mTLS" if server.secure else "plaintext (loopback only)")
        # Exactly this line: scripts and tests read the real port from it.
        print(f"listening on {server.address}", file=out, flush=True)
        if server.dashboard is not None:
            print(f"dashboard on {server.dashboard.url}", file=out, flush=True)
        # A timed wait: the main thread must wake to run the signal handler promptly.
        while not stopping.wait(timeout=1.0):
            pass
        server.stop(grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", file=out, flush=True)
    return 0
