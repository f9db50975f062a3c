"""Admission to the platform's service: who may hold a stream, how many, how long, how often.

Every certified advertiser is trusted to identify itself, not to be careful or friendly. Before
a call does any work, the caller is identified from its certificate and admitted or refused
(``RESOURCE_EXHAUSTED``, naming the limit):

- **streams** (``Match`` sessions, and reflection streams, which hold a server thread just the
  same): at most ``max_streams_per_advertiser`` at once per advertiser, and ``max_streams`` in
  all. The server's thread pool has room beyond ``max_streams``, so health checks and
  ``GetPolicy`` never wait behind streams. An advertiser opens at most ``streams_per_minute``
  (with bursts of ``stream_burst``): each session costs the platform a pass over its set before
  the advertiser has sent anything to check, and each refusal a ledger row;
- **the opening**: a ``Match`` stream that sends no first message within
  ``first_message_timeout`` seconds is ended ``DEADLINE_EXCEEDED`` (:func:`first_message`), so
  an idle stream holds its slot for seconds, not for the session's hour;
- **GetPolicy**: at most ``policy_calls_per_minute`` per advertiser (with bursts of
  ``policy_call_burst``), and ``policy_calls_at_once`` in all.

What was refused, and which streams never opened, is counted per advertiser
(:meth:`Admission.tally`), and refusals by reason (:meth:`Admission.refusals`, which the
platform's ``/metrics`` exports).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

import grpc

from cleanroom.errors import DeadlineExceeded, LimitExceeded

__all__ = [
    "DEFAULT_FIRST_MESSAGE_TIMEOUT",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_STREAMS_PER_ADVERTISER",
    "REFUSAL_REASONS",
    "Admission",
    "AdmissionLimits",
    "AdmissionTally",
    "StreamAdmission",
    "StreamSlot",
    "first_message",
]

REFUSAL_REASONS: Final = (
    "streams_per_advertiser",
    "streams_in_all",
    "streams_per_minute",
    "first_message_deadline",
    "policy_calls_per_minute",
    "policy_calls_at_once",
)
"""Why admission refuses a call: the limit's name (each is a setting of ``AdmissionLimits``,
except ``streams_in_all``, which is ``max_streams``)."""

DEFAULT_MAX_SESSIONS: Final = 16
"""Streams (sessions) served at once, all advertisers together."""
DEFAULT_FIRST_MESSAGE_TIMEOUT: Final = 10.0
DEFAULT_MAX_STREAMS_PER_ADVERTISER: Final = 2

_M = TypeVar("_M")

Identify = Callable[[grpc.ServicerContext], str]


@dataclass(frozen=True)
class AdmissionLimits:
    """The limits every caller is held to.

    Attributes:
        max_streams: streams served at once, all advertisers together (the sessions limit).
        max_streams_per_advertiser: streams one advertiser may hold at once: its one open
            session and one more (a new session while the last one's stream winds down).
        first_message_timeout: seconds a ``Match`` stream may take to send its opening.
        streams_per_minute: streams one advertiser may open per minute.
        stream_burst: streams one advertiser may open at once after a pause.
        policy_calls_per_minute: ``GetPolicy`` calls one advertiser may make per minute.
        policy_call_burst: ``GetPolicy`` calls one advertiser may make at once after a pause.
        policy_calls_at_once: ``GetPolicy`` calls served at once, all advertisers together.
        unopened_record_interval: seconds between two ledger entries for one advertiser's
            streams that never opened a session (those in between are counted into the next).
    """

    max_streams: int = DEFAULT_MAX_SESSIONS
    max_streams_per_advertiser: int = DEFAULT_MAX_STREAMS_PER_ADVERTISER
    first_message_timeout: float = DEFAULT_FIRST_MESSAGE_TIMEOUT
    streams_per_minute: float = 60.0
    stream_burst: int = 20
    policy_calls_per_minute: float = 60.0
    policy_call_burst: int = 10
    # As many as sessions: every advertiser may ask for the policy at the same moment (jobs
    # scheduled on the hour), and the answer is quick once the epoch's summary is computed.
    policy_calls_at_once: int = DEFAULT_MAX_SESSIONS
    unopened_record_interval: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "max_streams",
            "max_streams_per_advertiser",
            "stream_burst",
            "policy_call_burst",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.policy_calls_at_once < 1:
            raise ValueError("policy_calls_at_once must be at least 1")
        for name in ("first_message_timeout", "streams_per_minute", "policy_calls_per_minute"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.unopened_record_interval < 0:
            raise ValueError("unopened_record_interval must not be negative")


@dataclass(frozen=True)
class AdmissionTally:
    """What one advertiser's calls met at admission, since the server started.

    Attributes:
        streams_open: its streams being served now.
        streams_refused: streams refused because it, or the platform, held the most allowed, or
            because it opened too many a minute.
        streams_unopened: ``Match`` streams that ended without an opening message: its deadline
            passed (``DEADLINE_EXCEEDED``), or the client closed or cancelled the stream first.
        policy_calls_refused: ``GetPolicy`` calls refused by the rate or concurrency limit.
    """

    streams_open: int = 0
    streams_refused: int = 0
    streams_unopened: int = 0
    policy_calls_refused: int = 0


@dataclass
class _Bucket:
    """A token bucket: ``capacity`` calls at once, refilled at ``rate`` calls a second."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, capacity: int, per_minute: float, now: float) -> _Bucket:
        """A bucket with every token in it, at ``now``."""
        return cls(capacity, per_minute / 60.0, capacity, now)

    def take(self, now: float) -> float:
        """Take a token; return 0, or the seconds until one will be there (nothing taken)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class _Advertiser:
    tally: AdmissionTally = field(default_factory=AdmissionTally)
    stream_bucket: _Bucket | None = None
    policy_bucket: _Bucket | None = None
    refused: Counter[str] = field(default_factory=Counter)


class Admission:
    """The admission state of one server: counters and rate limits, per advertiser.

    Thread-safe; every method is quick (no I/O).

    Args:
        limits: the limits.
        clock: seconds, monotonic; for tests.
    """

    def __init__(
        self, limits: AdmissionLimits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._advertisers: dict[str, _Advertiser] = {}
        self._streams = 0
        self._policy_calls = 0

    def _of(self, advertiser: str) -> _Advertiser:
        state = self._advertisers.get(advertiser)
        if state is None:
            state = self._advertisers[advertiser] = _Advertiser()
        return state

    def _refuse(self, advertiser: str, reason: str, **changes: int) -> None:
        self._of(advertiser).refused[reason] += 1
        self._count(advertiser, **changes)

    def _count(self, advertiser: str, **changes: int) -> None:
        state = self._of(advertiser)
        tally = state.tally
        state.tally = replace(
            tally, **{name: getattr(tally, name) + step for name, step in changes.items()}
        )

    def stream(self, advertiser: str) -> StreamSlot:
        """Take one stream slot of ``advertiser``; release it when the stream ends.

        Returns:
            The slot (also a context manager that releases it).

        Raises:
            LimitExceeded: the advertiser, or the platform, holds the most streams allowed.
        """
        limits = self.limits
        with self._lock:
            held = self._of(advertiser).tally.streams_open
            if held >= limits.max_streams_per_advertiser:
                self._refuse(advertiser, "streams_per_advertiser", streams_refused=1)
                raise LimitExceeded(
                    f"advertiser {advertiser} already holds {held} streams, the most one "
                    f"advertiser may (max_streams_per_advertiser = "
                    f"{limits.max_streams_per_advertiser}); wait for one to end"
                )
            if self._streams >= limits.max_streams:
                self._refuse(advertiser, "streams_in_all", streams_refused=1)
                raise LimitExceeded(
                    f"the platform is serving its most streams at once (max_streams = "
                    f"{limits.max_streams}); try again shortly"
                )
            state, now = self._of(advertiser), self._clock()
            if state.stream_bucket is None:
                state.stream_bucket = _Bucket.full(
                    limits.stream_burst, limits.streams_per_minute, now
                )
            wait = state.stream_bucket.take(now)
            if wait:
                self._refuse(advertiser, "streams_per_minute", streams_refused=1)
                raise LimitExceeded(
                    f"advertiser {advertiser} may open {limits.streams_per_minute:g} streams a "
                    f"minute (streams_per_minute); try again in {wait:.1f} s"
                )
            self._streams += 1
            self._count(advertiser, streams_open=1)
        return StreamSlot(self, advertiser)

    def _release_stream(self, advertiser: str) -> None:
        with self._lock:
            self._streams -= 1
            self._count(advertiser, streams_open=-1)

    @contextmanager
    def policy_call(self, advertiser: str) -> Iterator[None]:
        """Admit one ``GetPolicy`` call of ``advertiser`` for the ``with`` block.

        Raises:
            LimitExceeded: the advertiser called too often, or too many calls are being served.
        """
        limits = self.limits
        with self._lock:
            state = self._of(advertiser)
            now = self._clock()
            if state.policy_bucket is None:
                state.policy_bucket = _Bucket.full(
                    limits.policy_call_burst, limits.policy_calls_per_minute, now
                )
            wait = state.policy_bucket.take(now)
            if wait:
                self._refuse(advertiser, "policy_calls_per_minute", policy_calls_refused=1)
                raise LimitExceeded(
                    f"GetPolicy is limited to {limits.policy_calls_per_minute:g} calls a minute "
                    f"per advertiser (policy_calls_per_minute); try again in {wait:.1f} s"
                )
            if self._policy_calls >= limits.policy_calls_at_once:
                self._refuse(advertiser, "policy_calls_at_once", policy_calls_refused=1)
                raise LimitExceeded(
                    f"the platform is answering its most GetPolicy calls at once "
                    f"({limits.policy_calls_at_once}); try again shortly"
                )
            self._policy_calls += 1
        try:
            yield
        finally:
            with self._lock:
                self._policy_calls -= 1

    def note_unopened(self, advertiser: str, *, deadline: bool = False) -> None:
        """Count a ``Match`` stream of ``advertiser`` that ended without an opening message.

        Args:
            advertiser: whose stream it was.
            deadline: the first-message deadline passed (a refusal), rather than the client
                closing or cancelling the stream first.
        """
        with self._lock:
            if deadline:
                self._refuse(advertiser, "first_message_deadline", streams_unopened=1)
            else:
                self._count(advertiser, streams_unopened=1)

    def tally(self, advertiser: str) -> AdmissionTally:
        """What ``advertiser``'s calls met so far."""
        with self._lock:
            state = self._advertisers.get(advertiser)
            return AdmissionTally() if state is None else state.tally

    def tallies(self) -> dict[str, AdmissionTally]:
        """Every advertiser seen so far, with its tally."""
        with self._lock:
            return {name: state.tally for name, state in self._advertisers.items()}

    def refusals(self) -> dict[tuple[str, str], int]:
        """Calls refused since the server started, by (advertiser, reason of
        :data:`REFUSAL_REASONS`), sorted; reasons never met are left out."""
        with self._lock:
            return {
                (name, reason): count
                for name, state in sorted(self._advertisers.items())
                for reason, count in sorted(state.refused.items())
            }


class StreamSlot:
    """One stream slot taken by :meth:`Admission.stream`; :meth:`release` gives it back once."""

    def __init__(self, admission: Admission, advertiser: str) -> None:
        self._admission = admission
        self._advertiser = advertiser
        self._released = False

    def release(self) -> None:
        """Give the slot back (later calls do nothing)."""
        if not self._released:
            self._released = True
            self._admission._release_stream(self._advertiser)

    def __enter__(self) -> StreamSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def first_message(requests: Iterator[_M], timeout: float) -> _M | None:
    """The first message of a request stream, waited for at most ``timeout`` seconds.

    gRPC offers no timed read of a request stream, so a short-lived thread reads it; if the
    deadline passes, the caller ends the call, which ends that read too.

    Returns:
        The message, or ``None`` if the stream ended without one.

    Raises:
        DeadlineExceeded: nothing arrived in time.
        grpc.RpcError: the call was cancelled (or reading raised something else: that).
    """
    arrived: queue.SimpleQueue[tuple[_M | None, BaseException | None]] = queue.SimpleQueue()

    def read() -> None:
        try:
            arrived.put((next(requests, None), None))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            arrived.put((None, exc))

    threading.Thread(target=read, name="cleanroom-first-message", daemon=True).start()
    try:
        message, failure = arrived.get(timeout=timeout)
    except queue.Empty:
        raise DeadlineExceeded(
            f"no opening message within {timeout:g} s of the stream's start"
        ) from None
    if failure is not None:
        raise failure
    return message


class StreamAdmission(grpc.ServerInterceptor):  # type: ignore[misc, unused-ignore]
    """Holds every request-streaming call to :meth:`Admission.stream`, before it runs.

    Unary calls (health checks, GetPolicy) and server-streaming ones pass through: they hold no
    thread while they wait (the health service's Watch answers from callbacks).

    Args:
        admission: the server's admission state.
        identify: the caller's advertiser name, from its certificate.
        refuse: ends the call with the status of an error (never returns).
    """

    def __init__(
        self,
        admission: Admission,
        identify: Identify,
        refuse: Callable[[grpc.ServicerContext, BaseException], Any],
    ) -> None:
        self._admission = admission
        self._identify = identify
        self._refuse = refuse

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler.request_streaming:
            return handler
        if handler.response_streaming:
            assert handler.stream_stream is not None  # what request and response streaming mean
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        assert handler.stream_unary is not None
        return grpc.stream_unary_rpc_method_handler(
            self._unary(handler.stream_unary),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _admit(self, context: grpc.ServicerContext) -> StreamSlot:
        try:
            return self._admission.stream(self._identify(context))
        except Exception as exc:
            self._refuse(context, exc)
            raise  # not reached: refuse ends the call

    def _streaming(
        self, behavior: Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]:
        def admitted(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            # Released when the handler's generator ends, i.e. when its thread is free again.
            with self._admit(context):
                yield from behavior(requests, context)

        return admitted

    def _unary(
        self, behavior: Callable[[Iterator[Any], grpc.ServicerContext], Any]
    ) -> Callable[[Iterator[Any], grpc.ServicerContext], Any]:
        def admitted(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            with self._admit(context):
                return behavior(requests, context)

        return admitted
