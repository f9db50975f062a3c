"""The advertiser's gRPC client: carries :class:`~cleanroom.protocol.AdvertiserRole`'s messages.

All protocol logic lives in the role; this module opens the channel (mTLS, or plaintext on
loopback only), asks for the policy, and relays the Match stream::

    address = parse_server_address("platform.example:50051")
    with PlatformClient(address, tls_dir=Path("acme-tls")) as client:
        asked = client.ask_policy()                 # in flight while the list is read
        ...
        info = asked.result()
        ...                                         # check_policy_info, build the role
        result = client.match(role)                 # opens, then hashes the list meanwhile

Outgoing messages go through a queue read by gRPC's own sending thread, so U and W go out
while V is still arriving: the platform sends all of V before it reads anything, and a client
that stopped reading to send would deadlock against it.

What the platform refuses or fails raises :class:`~cleanroom.errors.PlatformRefused` or
:class:`~cleanroom.errors.PlatformFailed`, whose ``error`` is the error the platform raised
(rebuilt from the status code and the class name in the ``cleanroom-error`` trailer); what the
role rejects in the platform's messages raises ``PlatformFailed`` with the role's error. Nothing
the platform sends surfaces as this side's :class:`~cleanroom.errors.InvalidInput`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeAlias

# grpcio ships no type information; types-grpcio (a dev dependency) provides it.
import grpc

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._signing import AUDIT_PUBLIC_KEY_FILE, read_public_key
from cleanroom.errors import (
    CleanroomError,
    InvalidInput,
    PlatformError,
    PlatformFailed,
    PlatformRefused,
    PlatformUnreachable,
    ProtocolError,
    ReceiptInvalid,
)
from cleanroom.protocol import (
    ERROR_NAME_KEY,
    PROTOCOL_VERSION,
    AdvertiserResult,
    AdvertiserRole,
    error_from_status,
)
from cleanroom.tls import channel_credentials, is_loopback

__all__ = [
    "DEFAULT_MATCH_TIMEOUT",
    "POLICY_TIMEOUT",
    "PlatformClient",
    "PolicyCall",
    "ServerAddress",
    "parse_server_address",
]

Interceptor: TypeAlias = "grpc.UnaryUnaryClientInterceptor | grpc.StreamStreamClientInterceptor"
"""What ``interceptors`` take: the client makes unary (GetPolicy) and streaming (Match) calls."""

DEFAULT_MATCH_TIMEOUT: Final = 3600.0
"""Seconds a whole Match session may take by default (a list of millions takes minutes)."""

POLICY_TIMEOUT: Final = 30.0
"""Seconds GetPolicy may take: it only reads a few rows on the platform."""

# Longest status details kept from the platform (a refusal is a sentence, not a file).
_MAX_DETAILS: Final = 1000

_SERVICE = pb.DESCRIPTOR.services_by_name["Matcher"]
# Built from the proto's descriptor, so the method paths are defined once, in the .proto.
_GET_POLICY_PATH: Final = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['GetPolicy'].name}"
_MATCH_PATH: Final = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Match'].name}"

# Statuses by which the platform refuses a call (the caller may act on it); any other status
# means that it failed on its side.
_REFUSED: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,  # the platform's: this client sent nothing in time
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


@dataclass(frozen=True)
class ServerAddress:
    """A platform's address.

    Attributes:
        host: a DNS name or an IP address (IPv6 without brackets).
        port: the TCP port.
    """

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server_address(text: str) -> ServerAddress:
    """Read ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6).

    Args:
        text: the address as given on the command line.

    Returns:
        The address.

    Raises:
        InvalidInput: no port, a port that is not 1..65535, or an empty or malformed host.
    """
    spec = text.strip()
    hint = "expected HOST:PORT, e.g. platform.example.com:50051 or [::1]:50051"
    if "://" in spec:
        raise InvalidInput(f"bad server address {text!r}: give HOST:PORT without a scheme")
    host, sep, port_text = spec.rpartition(":")
    if not sep or not host or not port_text:
        raise InvalidInput(f"bad server address {text!r}: {hint}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidInput(f"bad server address {text!r}: {host!r} is not IPv6") from None
    elif ":" in host or "[" in host or "]" in host:
        raise InvalidInput(f"bad server address {text!r}: put an IPv6 address in brackets")
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise InvalidInput(f"bad server address {text!r}: {hint}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(f"bad server address {text!r}: port must be a number in 1..65535")
    return ServerAddress(host, int(port_text))


class PlatformClient:
    """A connection to the platform's Matcher service.

    Args:
        address: the platform's address.
        tls_dir: the advertiser's TLS folder (``ca.crt``, ``client.crt``, ``client.key``);
            required unless ``insecure``.
        insecure: plaintext, allowed only to a loopback address (tests, a local platform).
        match_timeout: deadline of a whole Match session, in seconds.
        interceptors: gRPC client interceptors for every call (tracing, metrics).

    Raises:
        InvalidInput: ``insecure`` to a non-loopback address, or neither TLS nor ``insecure``.
        TlsConfigError: the TLS folder cannot be used (the message names the file).
    """

    def __init__(
        self,
        address: ServerAddress,
        *,
        tls_dir: Path | None = None,
        insecure: bool = False,
        match_timeout: float = DEFAULT_MATCH_TIMEOUT,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        if match_timeout <= 0:
            raise InvalidInput(f"the timeout must be positive, not {match_timeout:g}")
        self.address = address
        self._tls_dir = tls_dir
        self._match_timeout = match_timeout
        target = str(address)
        if insecure:
            if not is_loopback(address.host):
                raise InvalidInput(
                    f"--insecure (plaintext) is allowed only to a loopback address, not "
                    f"{address.host}; use --tls-dir with the certificate the platform issued"
                )
            self._channel: grpc.Channel = grpc.insecure_channel(target)
        elif tls_dir is None:
            raise InvalidInput(
                "a TLS folder is required (--tls-dir, from `cleanroom platform issue-cert`); "
                "plaintext (--insecure) is allowed only on loopback"
            )
        else:
            self._channel = grpc.secure_channel(target, channel_credentials(tls_dir))
        calls = (
            grpc.intercept_channel(self._channel, *interceptors) if interceptors else self._channel
        )
        self._get_policy: grpc.UnaryUnaryMultiCallable[pb.PolicyRequest, pb.PolicyInfo] = (
            calls.unary_unary(
                _GET_POLICY_PATH,
                request_serializer=pb.PolicyRequest.SerializeToString,
                response_deserializer=pb.PolicyInfo.FromString,
            )
        )
        self._match: grpc.StreamStreamMultiCallable[pb.ClientMessage, pb.ServerMessage] = (
            calls.stream_stream(
                _MATCH_PATH,
                request_serializer=pb.ClientMessage.SerializeToString,
                response_deserializer=pb.ServerMessage.FromString,
            )
        )

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def get_policy(self) -> pb.PolicyInfo:
        """Ask for the policy that applies to this advertiser, and the current key epoch.

        Returns:
            The platform's answer (check it with :func:`cleanroom.protocol.check_policy_info`).

        Raises:
            PlatformUnreachable: the platform cannot be reached or did not answer in time.
            PlatformError: the platform refused or failed the call.
        """
        return self.ask_policy().result()

    def ask_policy(self) -> PolicyCall:
        """Start the GetPolicy call and return at once (see :meth:`get_policy`).

        The caller does other work meanwhile (reading its list) and takes the answer with
        :meth:`PolicyCall.result`, or gives up on it with :meth:`PolicyCall.cancel`.
        """
        request = pb.PolicyRequest(protocol_version=PROTOCOL_VERSION)
        return PolicyCall(self, self._get_policy.future(request, timeout=POLICY_TIMEOUT))

    def match(self, role: AdvertiserRole) -> AdvertiserResult:
        """Run one session: relay messages between ``role`` and the platform until the result.

        The session opens before the list is hashed: a thread of this client starts computing
        U as the OpenSession message leaves, gRPC's sending thread sends U once it is computed,
        and this thread takes V meanwhile (see :class:`AdvertiserRole`). If the session fails,
        the role is abandoned, which stops the hashing.

        Args:
            role: a fresh advertiser role.

        Returns:
            The role's result, its receipt checked against the ``audit.pub`` of the TLS folder
            when there is one.

        Raises:
            ReceiptInvalid: the platform's receipt is missing or does not verify (the session
                completed and was charged: its result is not to be trusted).
            PlatformUnreachable: the platform cannot be reached or the session ran past its
                deadline.
            PlatformRefused: the platform refused the session.
            PlatformFailed: the platform failed the session, or the role rejected what it sent
                (the call is then cancelled).
        """
        outgoing: queue.SimpleQueue[Iterator[pb.ClientMessage] | None] = queue.SimpleQueue()
        # gRPC reads this generator from its own thread, where the U stream hashes the list. A
        # failure there must not vanish into gRPC's log as "Exception iterating requests":
        # _Sending keeps it, cancels the call, and this thread raises it.
        sending = _Sending(outgoing)
        outgoing.put(iter([role.open_session()]))
        call = self._match(sending.messages(), timeout=self._match_timeout)
        sending.call = call
        # Hashing starts now rather than when the U stream is first read: opening a session
        # takes the platform a pass over its set (eligibility, loading V), and the workers
        # would idle through it. The role keeps a failure for the U stream to raise.
        threading.Thread(
            target=_encrypt_quietly, args=(role,), name="encrypt-list", daemon=True
        ).start()
        try:
            for message in call:
                try:
                    replies = role.handle(message)
                except ReceiptInvalid:
                    raise  # the session completed and was charged: its own error says so
                except CleanroomError as exc:
                    raise _rejected(exc) from exc
                outgoing.put(replies)
                if role.finished:
                    outgoing.put(None)  # after the Close: the stream's half-close
        except grpc.RpcError as exc:
            if sending.failure is not None:
                raise sending.failure from None
            raise self._error(exc, self._match_timeout, session=True) from exc
        except BaseException:
            call.cancel()  # tell the platform at once instead of letting it wait
            raise
        finally:
            outgoing.put(None)  # in every case, so gRPC's sending thread can end
            if role.result is None:
                role.abandon()  # the session failed: stop hashing the list
        if role.result is None:
            raise _rejected(ProtocolError("the session ended without a result"))
        return self._check_receipt(role.result)

    def _check_receipt(self, result: AdvertiserResult) -> AdvertiserResult:
        """Check the receipt's signature with the ``audit.pub`` in the TLS folder, if there.

        The role already checked that the receipt states this result; the signature says the
        platform's audit key stands behind it, so its log must keep the entry it names.

        Returns:
            The result, marked ``receipt_verified`` if the signature was checked.

        Raises:
            ReceiptInvalid: the receipt is missing or its signature does not verify.
        """
        if self._tls_dir is None:
            return result
        key_path = self._tls_dir / AUDIT_PUBLIC_KEY_FILE
        if not key_path.exists():
            return result  # a folder issued before receipts: nothing to check them with
        public_key = read_public_key(key_path, ReceiptInvalid)
        if result.receipt is None:
            raise ReceiptInvalid(
                f"the platform sent no receipt for session {result.session_id.hex()}, though "
                f"its audit key is in {key_path}"
            )
        result.receipt.verify(public_key)
        return dataclasses.replace(result, receipt_verified=True)

    def _error(self, exc: grpc.RpcError, timeout: float, *, session: bool) -> CleanroomError:
        if not isinstance(exc, grpc.Call):
            return PlatformUnreachable(f"the call to the platform at {self.address} failed: {exc}")
        # The platform writes the details and the trailer: bounded here, escaped where printed.
        code, details = exc.code(), (exc.details() or "")[:_MAX_DETAILS]
        error_name = None
        for key, value in exc.trailing_metadata() or ():
            if key == ERROR_NAME_KEY:
                error_name = value if isinstance(value, str) else value.decode(errors="replace")
        if code == grpc.StatusCode.UNAVAILABLE:
            check = (
                f"and that it accepts the certificate in {self._tls_dir}"
                if self._tls_dir is not None
                else "and that it serves plaintext (it was started with --insecure)"
            )
            return PlatformUnreachable(
                f"cannot reach the platform at {self.address} ({details}); check that the "
                f"server is running and listening there, {check}"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and error_name is None:
            # This client's own deadline (the platform's DeadlineExceeded names itself).
            return PlatformUnreachable(
                f"the platform at {self.address} did not answer within {timeout:g} s"
                + ("; a large list may need a longer --timeout" if session else "")
            )
        return _from_platform(code, error_from_status(code, details, error_name))


class PolicyCall:
    """A GetPolicy call in flight (:meth:`PlatformClient.ask_policy`)."""

    def __init__(self, client: PlatformClient, future: grpc.Future[pb.PolicyInfo]) -> None:
        self._client = client
        self._future = future
        self._started = time.perf_counter()
        self._done_at: float | None = None
        self.seconds: float | None = None
        """The call's own duration, once :meth:`result` has returned or raised."""
        future.add_done_callback(self._note_done)

    def _note_done(self, _future: grpc.Future[pb.PolicyInfo]) -> None:
        self._done_at = time.perf_counter()

    def result(self) -> pb.PolicyInfo:
        """Wait for the answer and return it.

        Raises:
            PlatformUnreachable: the platform cannot be reached or did not answer in time.
            PlatformError: the platform refused or failed the call.
        """
        try:
            info: pb.PolicyInfo = self._future.result()
        except grpc.RpcError as exc:
            raise self._client._error(exc, POLICY_TIMEOUT, session=False) from exc
        finally:
            self.seconds = (self._done_at or time.perf_counter()) - self._started
        return info

    def done(self) -> bool:
        """Whether the answer (or the call's failure) is in: :meth:`result` will not wait."""
        return bool(self._future.done())

    def cancel(self) -> None:
        """Give up on the call (nothing is waited for)."""
        self._future.cancel()


def _from_platform(code: grpc.StatusCode, error: CleanroomError) -> PlatformError:
    """What the platform's error, rebuilt from a failed call, raises on this side."""
    refused = code in _REFUSED
    text = str(error)
    if not text.startswith("the platform"):
        text = f"the platform {'refused' if refused else 'failed'}: {text}"
    return (PlatformRefused if refused else PlatformFailed)(text, error)


def _rejected(error: CleanroomError) -> PlatformFailed:
    """What the role's refusal of a message from the platform raises: the platform's failure."""
    what = "sent invalid data" if isinstance(error, InvalidInput) else "broke the protocol"
    return PlatformFailed(f"the platform {what}: {error}", error)


def _encrypt_quietly(role: AdvertiserRole) -> None:
    """Compute the role's U; a failure is kept by the role and raised by its U stream."""
    try:
        role.encrypt_list()
    except BaseException:  # kept by the role: raised again where the U stream reads it
        return


class _Sending:
    """The request side of a Match call: the messages put on ``outgoing``, until ``None``.

    If producing a message fails (the U stream hashing the list), the failure is kept in
    :attr:`failure`, the call is cancelled, and the stream ends without raising into gRPC.
    """

    def __init__(self, outgoing: queue.SimpleQueue[Iterator[pb.ClientMessage] | None]) -> None:
        self._outgoing = outgoing
        self.call: grpc.RpcContext | None = None
        self.failure: BaseException | None = None

    def messages(self) -> Iterator[pb.ClientMessage]:
        try:
            while (batch := self._outgoing.get()) is not None:
                yield from batch
        except Exception as exc:
            self.failure = exc
            if self.call is not None:
                self.call.cancel()
