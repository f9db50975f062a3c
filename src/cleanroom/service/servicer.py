"""The Matcher gRPC servicer: carries messages between the network and the platform's sessions.

All meaning lives in :mod:`cleanroom.service.platform_sessions` and :mod:`cleanroom.protocol`;
this adapter identifies the caller, admits it (:mod:`cleanroom.service.admission`: GetPolicy's
rate, the opening's deadline), relays messages, and turns errors into statuses in ONE place
(:func:`abort_with_status`). :func:`add_matcher_to_server` registers it with request parsers that
hand an unparsable body to the servicer as :class:`Undecodable`, so that it too is refused in that
one place (``INVALID_ARGUMENT``, :class:`~cleanroom.errors.InvalidMessage`) rather than by gRPC
itself as ``INTERNAL``, and a session it interrupts is aborted and recorded like any other.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, NoReturn, TypeVar

import grpc
from google.protobuf.message import Message

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._proto.v1 import matcher_pb2_grpc as pb_grpc
from cleanroom.errors import CleanroomError, DeadlineExceeded, InvalidMessage, OutOfOrder
from cleanroom.protocol import ERROR_NAME_KEY, status_for
from cleanroom.service.admission import Admission, AdmissionLimits, first_message
from cleanroom.service.platform_sessions import MatchSession, PlatformSessions

__all__ = [
    "INTERNAL_ERROR_DETAILS",
    "SERVICE_NAME",
    "MatcherServicer",
    "Undecodable",
    "abort_with_status",
    "add_matcher_to_server",
    "parse_or_mark",
]

logger = logging.getLogger(__name__)

INTERNAL_ERROR_DETAILS = "the platform failed to handle the call; its operator has the details"
"""What a client is told of the platform's own failures (the log has the rest)."""

Identify = Callable[[grpc.ServicerContext], str]

SERVICE_NAME: Final[str] = pb.DESCRIPTOR.services_by_name["Matcher"].full_name
"""``cleanroom.v1.Matcher``: the service this servicer implements, and the name the server's
health checks and reflection know it by."""

_M = TypeVar("_M", bound=Message)


class Undecodable:
    """A request body that does not parse as its method's protobuf message.

    Only its size and the expected type are kept: nothing of the body reaches a status or a log.
    """

    __slots__ = ("expected", "size")

    def __init__(self, expected: str, size: int) -> None:
        self.expected = expected
        self.size = size

    def __repr__(self) -> str:
        return f"Undecodable({self.expected}, {self.size} bytes)"

    def error(self) -> InvalidMessage:
        """The error the call is refused with."""
        return InvalidMessage(f"a request of {self.size} bytes does not parse as {self.expected}")


def parse_or_mark(message_type: type[_M]) -> Callable[[bytes], _M | Undecodable]:
    """A request deserializer for ``message_type`` that marks an unparsable body, never raises.

    gRPC answers a deserializer's exception itself, with ``INTERNAL`` ("Exception deserializing
    request!"): the status of the platform's own failure, for what is the client's bad data.
    """
    expected = message_type.DESCRIPTOR.full_name

    def parse(body: bytes) -> _M | Undecodable:
        try:
            return message_type.FromString(body)
        # Whatever parsing hostile bytes raises (DecodeError, or a nesting limit's error), the
        # body is not a message of this type.
        except Exception:
            return Undecodable(expected, len(body))

    return parse


def add_matcher_to_server(servicer: MatcherServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as ``cleanroom.v1.Matcher`` on ``server``, with marking parsers.

    This replaces the generated ``add_MatcherServicer_to_server``, whose parsers raise.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "GetPolicy": grpc.unary_unary_rpc_method_handler(
            servicer.GetPolicy,
            request_deserializer=parse_or_mark(pb.PolicyRequest),
            response_serializer=pb.PolicyInfo.SerializeToString,
        ),
        "Match": grpc.stream_stream_rpc_method_handler(
            servicer.Match,
            request_deserializer=parse_or_mark(pb.ClientMessage),
            response_serializer=pb.ServerMessage.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _parsed(requests: Iterator[pb.ClientMessage | Undecodable]) -> Iterator[pb.ClientMessage]:
    for request in requests:
        if isinstance(request, Undecodable):
            raise request.error()
        yield request


def abort_with_status(context: grpc.ServicerContext, error: BaseException) -> NoReturn:
    """End the call with the status for ``error``: the one place errors become statuses.

    A :class:`~cleanroom.errors.CleanroomError` sends its message and its class name (trailing
    metadata :data:`~cleanroom.protocol.ERROR_NAME_KEY`). The platform's own failures
    (``INTERNAL``: its database, its files, a bug) are logged here and reach the client only as
    :data:`INTERNAL_ERROR_DETAILS`, never with a traceback, a path or a key.
    """
    code = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        logger.error("call failed: %s", error, exc_info=error)
        details = INTERNAL_ERROR_DETAILS
    else:
        details = str(error)
    if isinstance(error, CleanroomError):
        context.set_trailing_metadata(((ERROR_NAME_KEY, type(error).__name__),))
    context.abort(code, details)


class MatcherServicer(pb_grpc.MatcherServicer):  # type: ignore[misc, unused-ignore]
    """The ``cleanroom.v1.Matcher`` service.

    Args:
        sessions: the platform's sessions (store, policy, engine).
        identify: returns the caller's advertiser name from the call (its certificate).
        session_timeout: seconds a session may last before it is aborted and cancelled.
        admission: the server's admission state (default: the default limits).
    """

    def __init__(
        self,
        sessions: PlatformSessions,
        identify: Identify,
        *,
        session_timeout: float,
        admission: Admission | None = None,
    ) -> None:
        self._sessions = sessions
        self._identify = identify
        self._session_timeout = session_timeout
        self._admission = admission or Admission(AdmissionLimits())

    def GetPolicy(
        self, request: pb.PolicyRequest | Undecodable, context: grpc.ServicerContext
    ) -> pb.PolicyInfo:
        """The policy for the calling advertiser."""
        try:
            advertiser = self._identify(context)  # who asks comes first, as in Match
            with self._admission.policy_call(advertiser):
                if isinstance(request, Undecodable):
                    raise request.error()
                return self._sessions.policy_info(advertiser)
        except Exception as exc:
            abort_with_status(context, exc)

    def Match(
        self,
        request_iterator: Iterator[pb.ClientMessage | Undecodable],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.ServerMessage]:
        """One matching session over a bidirectional stream."""
        requests = _parsed(request_iterator)
        session: MatchSession | None = None
        incoming: _Incoming | None = None
        watch = _SessionWatch(context, self._session_timeout)
        reason = "the stream ended before the session completed"
        try:
            advertiser = self._identify(context)
            session = self._sessions.open(advertiser, self._opening(advertiser, requests))
            watch.attach(session)
            incoming = _Incoming(session, requests)
            for message in session.start():
                yield message
                incoming.check()  # a refusal of what the advertiser sent ends the stream now
            yield from incoming.replies()
            if session.finished or session.completed:
                return  # completed: the result went out and was charged (Close or not)
            raise OutOfOrder("the stream ended before the session completed")
        except grpc.RpcError:
            # The client cancelled, its deadline passed, or the server is stopping.
            reason = "the call was cancelled before the session completed"
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            abort_with_status(context, exc)
        finally:
            # Also reached when gRPC drops this generator because the client went away.
            watch.stop()
            if incoming is not None:
                incoming.close()
            if session is not None:
                session.close(reason)

    def _opening(self, advertiser: str, requests: Iterator[pb.ClientMessage]) -> pb.ClientMessage:
        """The stream's first message, due within the first-message deadline.

        A stream that ends without one is counted and recorded (in bulk) as unopened.
        """
        timeout = self._admission.limits.first_message_timeout
        error: CleanroomError
        try:
            first = first_message(requests, timeout)
            if first is not None:
                return first
            error, how = OutOfOrder("the stream ended before open_session"), "closed unopened"
        except DeadlineExceeded as exc:
            error, how = exc, f"sent no opening message within {timeout:g} s"
        except grpc.RpcError:
            self._unopened(advertiser, "cancelled unopened")
            raise
        self._unopened(advertiser, how, deadline=isinstance(error, DeadlineExceeded))
        raise error

    def _unopened(self, advertiser: str, how: str, *, deadline: bool = False) -> None:
        self._admission.note_unopened(advertiser, deadline=deadline)
        self._sessions.unopened.note(advertiser, how)


class _Incoming:
    """The advertiser's messages, handled on a thread of their own while V goes out.

    V leaves at the pace the advertiser takes it in, and it encrypts each chunk as it arrives.
    Were U read only once V had gone out, the platform's encryption of U would wait for the
    advertiser's of V, one after the other; handled as it arrives, the two run at the same time.
    The replies (none before W is in) are queued, in order, for the stream to send after V.
    """

    def __init__(self, session: MatchSession, requests: Iterator[pb.ClientMessage]) -> None:
        self._session = session
        self._requests = requests
        self._queue: queue.SimpleQueue[Iterator[pb.ServerMessage] | BaseException | None] = (
            queue.SimpleQueue()
        )
        self._failure: BaseException | None = None
        self._closed = False
        threading.Thread(target=self._run, name="match-requests", daemon=True).start()

    def _run(self) -> None:
        try:
            for message in self._requests:
                self._queue.put(self._session.handle(message))
                if self._session.finished:
                    break
        except BaseException as exc:  # raised on the stream's own thread, by check or replies
            self._failure = exc
            self._queue.put(exc)
            if self._closed:  # the stream has ended: nothing will raise it
                self.close()
        else:
            self._queue.put(None)

    def close(self) -> None:
        """Drop a failure kept for the stream, once the stream has ended.

        Its traceback holds this thread's frames, which hold this object and so the session:
        kept here, the session (and its sets) would wait for a full garbage collection.
        """
        self._closed = True
        self._failure = None
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def check(self) -> None:
        """Raise what handling the advertiser's messages has raised so far, if anything."""
        if self._failure is not None:
            raise self._failure

    def replies(self) -> Iterator[pb.ServerMessage]:
        """The replies in order, until the advertiser's stream ends or the session finishes."""
        while (replies := self._queue.get()) is not None:
            if isinstance(replies, BaseException):
                try:
                    raise replies
                finally:
                    replies = None  # the traceback keeps this frame, which must not keep it
            yield from replies


class _SessionWatch:
    """Ends a call that lasts too long, and aborts its session if the call ends unfinished.

    The clock starts with the call, so a client that connects and never opens a session does
    not hold a server thread for longer than a session may last either.
    """

    def __init__(self, context: grpc.ServicerContext, timeout: float) -> None:
        self._context = context
        self._timeout = timeout
        self._session: MatchSession | None = None
        timer = threading.Timer(timeout, self._on_timeout)
        timer.daemon = True
        timer.start()
        self._timer: threading.Timer | None = timer

    def attach(self, session: MatchSession) -> None:
        self._session = session
        self._context.add_callback(self._on_call_done)

    def stop(self) -> None:
        # The timer holds this watch (its callback) and the watch its session's arrays: dropping
        # the timer breaks that cycle, so the session is freed when the call ends instead of
        # waiting for a full garbage collection, which a server that allocates little runs
        # rarely (its memory grew by a session's arrays per session until then).
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _on_timeout(self) -> None:
        if self._session is not None:
            self._session.abort(f"the session ran longer than {self._timeout:g} seconds")
        self._context.cancel()

    def _on_call_done(self) -> None:
        # Runs on a gRPC thread: hand the database write to a thread of its own (not a daemon:
        # the write must finish even if the process is exiting).
        session = self._session
        if session is not None and not session.completed:
            reason = "the call ended before the session completed"
            threading.Thread(target=session.abort, args=(reason,)).start()
