"""The platform's side of a matching session, as a state machine without I/O (DESIGN §3).

The service layer reads the first message with :func:`read_open_session`, checks the policy
(:func:`cleanroom.policy.check_session`) and loads the current epoch's platform set, then builds
a :class:`PlatformRole` and feeds it every later message::

    request = read_open_session(first_message)
    decision = check_session(policy, advertiser, request.mode, request.record_count, ...)
    check_advertiser_set_size(request, decision.settings)
    role = PlatformRole(request, decision, inputs)
    send(role.start())                     # SessionOpened, then V in chunks
    for message in incoming:
        replies = role.handle(message)
        if role.outcome is not None:        # set when the last chunk of W arrived
            persist(role.outcome)           # before the result goes out: a release is charged
        send(replies)

Cheap checks come first: the announced counts before anything is loaded; then, as U arrives,
its chunk sizes and record tags; once all of U is in, the identifiers per record and duplicates
(bytes compared, nothing computed), then curve membership. Only a set that passed all of them is
multiplied by ``b``, so a refused U never costs the platform a scalar multiplication.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cleanroom.crypto import BatchEngine, SecretKey, default_engine, get_suite
from cleanroom.errors import (
    InvalidElement,
    InvalidMessage,
    LimitExceeded,
    OutOfOrder,
    VersionMismatch,
)
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import (
    LARGEST_COUNT,
    Mode,
    PolicySettings,
    Release,
    SessionDecision,
    release_count,
    release_exact_count,
)
from cleanroom.protocol._constants import (
    MAX_CHUNK_BYTES,
    PROTOCOL_VERSION,
    RECORD_TAG_SIZE,
    SESSION_ID_SIZE,
)
from cleanroom.protocol._rows import ChunkedLookup, RowIndex, find_duplicate
from cleanroom.protocol._wire import (
    ChunkReceiver,
    ProgressFactory,
    check_session_id,
    chunk_spans,
    mode_from_wire,
    mode_to_wire,
    pb,
    rows_per_chunk,
    run_on_thread,
    shift_element_error,
    stops_when_abandoned,
)

__all__ = [
    "PlatformInputs",
    "PlatformOutcome",
    "PlatformRole",
    "SessionRequest",
    "check_advertiser_set_size",
    "read_open_session",
]

_TAG_DTYPE = np.dtype("<u4")


@dataclass(frozen=True)
class SessionRequest:
    """What the advertiser asked for in OpenSession, checked for form (not yet for policy).

    Attributes:
        mode: the session's mode.
        suite_id: the ciphersuite id (one this build implements).
        record_count: distinct records in the advertiser's list.
        identifier_count: elements in the advertiser's set U (n).
    """

    mode: Mode
    suite_id: str
    record_count: int
    identifier_count: int


def read_open_session(message: pb.ClientMessage) -> SessionRequest:
    """Read and check the first message of a session.

    Args:
        message: the first ClientMessage of the stream.

    Returns:
        The request, for the policy check.

    Raises:
        OutOfOrder: the message is not an OpenSession.
        VersionMismatch: another protocol or normalization version.
        UnknownSuite: a suite this build does not implement.
        InvalidMessage: an unset mode, or counts that are inconsistent or beyond any list
            (above 2**63 - 1).
    """
    round_name = message.WhichOneof("round")
    if round_name != "open_session":
        raise OutOfOrder(f"a session starts with open_session, got {round_name or 'nothing'}")
    opening = message.open_session
    if opening.protocol_version != PROTOCOL_VERSION:
        raise VersionMismatch(
            f"the client speaks protocol version {opening.protocol_version}, the platform "
            f"speaks {PROTOCOL_VERSION}"
        )
    if opening.normalization_version != NORMALIZATION_VERSION:
        raise VersionMismatch(
            f"the list was normalized with version {opening.normalization_version}, the "
            f"platform's set with version {NORMALIZATION_VERSION}"
        )
    get_suite(opening.suite)  # raises UnknownSuite
    mode = mode_from_wire(opening.mode)
    records, identifiers = opening.record_count, opening.identifier_count
    if max(records, identifiers) > LARGEST_COUNT:
        # No list is that large, and the ledger (SQLite, signed 64-bit) must record the refusal.
        raise InvalidMessage(
            f"{records} records with {identifiers} identifiers: counts above {LARGEST_COUNT} "
            "are not list sizes"
        )
    # Every record has at least one identifier, and every identifier belongs to a record.
    if identifiers < records or (records == 0) != (identifiers == 0):
        raise InvalidMessage(
            f"{records} records cannot hold {identifiers} distinct identifiers "
            "(every record has at least one)"
        )
    return SessionRequest(
        mode=mode, suite_id=opening.suite, record_count=records, identifier_count=identifiers
    )


def check_advertiser_set_size(request: SessionRequest, settings: PolicySettings) -> None:
    """Refuse an opening that announces more identifiers than its records may carry.

    With ``max_upload_records`` (checked by the policy) this bounds U before anything is
    allocated or loaded; the role checks each record's share when U has arrived.

    Raises:
        LimitExceeded: more than ``max_identifiers_per_record`` per announced record.
    """
    per_record = settings.max_identifiers_per_record
    if request.identifier_count > per_record * request.record_count:
        raise LimitExceeded(
            f"{request.identifier_count} identifiers for {request.record_count} records: at "
            f"most {per_record} per record are allowed (max_identifiers_per_record)"
        )


@dataclass(frozen=True, eq=False)
class PlatformInputs:
    """The platform's data for one session, loaded by the service layer.

    Attributes:
        epoch_id: the current key epoch.
        epoch_key: the epoch's key ``b`` in the session's suite.
        platform_set: V, shape ``(N, element_size)``: the epoch's ``E_b(H(y))`` restricted to
            identifiers eligible now, in the epoch's shuffled order.
        user_ids: shape ``(N,)``: the platform user each row of V belongs to.
        other_owners: rows of V held by more than one user (an email shared by two accounts):
            ``(rows, users)``, two aligned int64 arrays naming each further owner. V itself
            carries every element once, because the advertiser refuses a repeated element.
    """

    epoch_id: int
    epoch_key: SecretKey = field(repr=False)
    platform_set: NDArray[np.uint8] = field(repr=False)
    user_ids: NDArray[np.int64] = field(repr=False)
    other_owners: tuple[NDArray[np.int64], NDArray[np.int64]] = field(
        repr=False,
        default_factory=lambda: (np.empty(0, np.int64), np.empty(0, np.int64)),
    )

    def owners_of(self, rows: NDArray[np.intp]) -> NDArray[np.int64]:
        """The distinct users holding any of the given rows of V, ascending."""
        owner_rows, owner_users = self.other_owners
        further = owner_users[np.isin(owner_rows, rows)]
        return np.unique(np.concatenate([self.user_ids[rows], further]))


@dataclass(frozen=True, eq=False)
class PlatformOutcome:
    """What the service layer persists when a session has released its result.

    Attributes:
        session_id: the session's id.
        epoch_id: the key epoch it ran in.
        advertiser: the advertiser (from the policy decision).
        mode: the session's mode.
        record_count: records the advertiser announced.
        identifier_count: elements of U.
        release: what was released (and the epsilon to charge).
        epsilon_remaining: the advertiser's budget left after this release.
        matched_user_ids: audience mode: the distinct platform users matched, ascending (the
            audience to store); ``None`` in the other modes.
        matched_rows: audience mode: the rows of V that matched, ascending (which identifiers
            each user matched through); ``None`` in the other modes.
    """

    session_id: bytes
    epoch_id: int
    advertiser: str
    mode: Mode
    record_count: int
    identifier_count: int
    release: Release
    epsilon_remaining: float
    matched_user_ids: NDArray[np.int64] | None
    matched_rows: NDArray[np.int64] | None = None


class _State(enum.Enum):
    CREATED = "waiting for start()"
    RECEIVING_U = "receiving the advertiser set U"
    RECEIVING_W = "receiving the encrypted platform set W"
    AWAITING_CLOSE = "waiting for close"
    FINISHED = "finished"


class PlatformRole:
    """The platform's state machine for one session.

    Args:
        request: the checked OpenSession (from :func:`read_open_session`).
        decision: the policy's decision for it (from :func:`cleanroom.policy.check_session`).
        inputs: the epoch's platform set, user map and key.
        engine: the batch engine for the scalar multiplications; ``None`` means the default.
        progress: optional progress reporting for long phases.
        max_chunk_bytes: the largest chunk payload either side may send in this session
            (announced in SessionOpened); at most :data:`MAX_CHUNK_BYTES`.

    Raises:
        LimitExceeded: the advertiser set would be larger than the policy allows.
        ValueError: ``decision`` or ``inputs`` do not belong to ``request`` (a caller's bug).
    """

    def __init__(
        self,
        request: SessionRequest,
        decision: SessionDecision,
        inputs: PlatformInputs,
        *,
        engine: BatchEngine | None = None,
        progress: ProgressFactory | None = None,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
    ) -> None:
        self._suite = get_suite(request.suite_id)
        if not 0 < max_chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"max_chunk_bytes must be in 1 .. {MAX_CHUNK_BYTES}")
        size = self._suite.element_size
        if decision.mode is not request.mode or decision.record_count != request.record_count:
            raise ValueError("the policy decision is for another request")
        if inputs.platform_set.dtype != np.uint8 or inputs.platform_set.shape[1:] != (size,):
            raise ValueError(f"the platform set must be uint8 of shape (N, {size})")
        if inputs.user_ids.shape != (len(inputs.platform_set),):
            raise ValueError("user_ids must have one entry per row of the platform set")
        owner_rows, owner_users = inputs.other_owners
        if owner_rows.shape != owner_users.shape or (
            len(owner_rows) and not 0 <= owner_rows.min() <= owner_rows.max() < len(inputs.user_ids)
        ):
            raise ValueError("other_owners must be aligned (row, user) pairs naming rows of V")
        if inputs.epoch_key.suite_id != request.suite_id:
            raise ValueError("the epoch key belongs to another suite")
        check_advertiser_set_size(request, decision.settings)
        self._request = request
        self._decision = decision
        self._inputs = inputs
        self._engine = default_engine() if engine is None else engine
        self._progress = progress
        self._max_chunk_bytes = max_chunk_bytes
        self.session_id = os.urandom(SESSION_ID_SIZE)
        self._state = _State.CREATED
        self._u = ChunkReceiver(
            "advertiser set U",
            request.identifier_count,
            size,
            extra_bytes=RECORD_TAG_SIZE,
            max_chunk_bytes=max_chunk_bytes,
        )
        self._w = ChunkReceiver(
            "encrypted platform set W",
            len(inputs.platform_set),
            size,
            max_chunk_bytes=max_chunk_bytes,
        )
        # U' = E_b(U): started once all of U has passed its checks, computed while W arrives.
        self._u_prime = np.empty((0, size), dtype=np.uint8)
        self._u_prime_future: Future[NDArray[np.uint8]] | None = None
        self._u_prime_in_w = ChunkedLookup()
        self._abandoned = threading.Event()
        self._tags = np.empty(request.identifier_count, dtype=np.uint32)
        self._u_progress = self._progress_for("encrypt advertiser set", request.identifier_count)
        self.outcome: PlatformOutcome | None = None
        """Set when the last chunk of W has been handled; persist it before sending replies."""

    @property
    def finished(self) -> bool:
        """Whether the session is over (the advertiser closed it)."""
        return self._state is _State.FINISHED

    @property
    def mode(self) -> Mode:
        """The session's mode."""
        return self._request.mode

    @property
    def element_size(self) -> int:
        """Bytes of one element of the session's suite."""
        return self._suite.element_size

    @property
    def round(self) -> str:
        """What the session waits for, in words (e.g. "receiving the advertiser set U")."""
        return self._state.value

    def start(self) -> Iterator[pb.ServerMessage]:
        """Open the session: SessionOpened, then the platform set V in chunks.

        Returns:
            The messages to send, produced lazily (V is sliced chunk by chunk as it is sent).

        Raises:
            OutOfOrder: the session was started already.
        """
        if self._state is not _State.CREATED:
            raise OutOfOrder("the session was started already")
        self._state = _State.RECEIVING_U
        platform_set = self._inputs.platform_set
        opened = pb.SessionOpened(
            session_id=self.session_id,
            epoch_id=self._inputs.epoch_id,
            suite=self._suite.suite_id,
            mode=mode_to_wire(self._request.mode),
            normalization_version=NORMALIZATION_VERSION,
            protocol_version=PROTOCOL_VERSION,
            platform_set_size=len(platform_set),
            max_chunk_bytes=self._max_chunk_bytes,
        )
        return self._stream_opened(opened, platform_set)

    def _stream_opened(
        self, opened: pb.SessionOpened, platform_set: NDArray[np.uint8]
    ) -> Iterator[pb.ServerMessage]:
        yield pb.ServerMessage(session_opened=opened)
        per_chunk = rows_per_chunk(self._suite.element_size, self._max_chunk_bytes)
        for start, stop in chunk_spans(len(platform_set), per_chunk):
            chunk = pb.PlatformSetChunk(
                session_id=self.session_id,
                offset=start,
                count=stop - start,
                elements=platform_set[start:stop].tobytes(),
            )
            yield pb.ServerMessage(platform_set=chunk)

    def handle(self, message: pb.ClientMessage) -> Iterator[pb.ServerMessage]:
        """Handle one message from the advertiser.

        Every check and state change happens before this returns; the returned iterator only
        slices already computed arrays into messages.

        Args:
            message: the next ClientMessage of the stream.

        Returns:
            The messages to send in reply (possibly none).

        Raises:
            OutOfOrder: the message is not allowed in the current round.
            WrongSession: the message carries another session's id.
            InvalidMessage: bad counts, offsets, tags or sizes.
            InvalidElement: an element is malformed, off the curve, of small order, or a
                duplicate in U or W (which honest parties never send).
            LimitExceeded: a chunk larger than allowed.
        """
        round_name = message.WhichOneof("round")
        if round_name == "advertiser_set" and self._state is _State.RECEIVING_U:
            self._take_u(message.advertiser_set)
            return iter(())
        if round_name == "encrypted_platform_set" and self._state is _State.RECEIVING_W:
            return self._take_w(message.encrypted_platform_set)
        if round_name == "close" and self._state is _State.AWAITING_CLOSE:
            check_session_id(self.session_id, message.close.session_id)
            self._state = _State.FINISHED
            return iter(())
        raise OutOfOrder(
            f"{round_name or 'an empty message'} is not allowed while {self._state.value}"
        )

    def _progress_for(self, phase: str, total: int) -> Callable[[int], object] | None:
        return None if self._progress is None else self._progress(phase, total)

    def _take_u(self, chunk: pb.AdvertiserSetChunk) -> None:
        check_session_id(self.session_id, chunk.session_id)
        offset, rows = self._u.accept(chunk.offset, chunk.count, chunk.elements)
        count = len(rows)
        if len(chunk.record_tags) != count * RECORD_TAG_SIZE:
            raise InvalidMessage(
                f"advertiser set U: chunk at offset {offset} has {len(chunk.record_tags)} bytes "
                f"of record tags, expected {count} tags of {RECORD_TAG_SIZE} bytes"
            )
        tags = np.frombuffer(chunk.record_tags, dtype=_TAG_DTYPE)
        if count and int(tags.max()) >= self._request.record_count:
            raise InvalidMessage(
                f"advertiser set U: record tag {int(tags.max())} is out of range for "
                f"{self._request.record_count} records"
            )
        self._tags[offset : offset + count] = tags
        if self._u.complete:
            self._finish_u()

    def _finish_u(self) -> None:
        """Check all of U, cheapest first, then start computing U' = E_b(U)."""
        records = self._request.record_count
        per_record = np.bincount(self._tags, minlength=records)
        if np.any(per_record == 0):
            missing = int(np.flatnonzero(per_record == 0)[0])
            raise InvalidMessage(
                f"advertiser set U: record tag {missing} has no identifier, but "
                f"{records} records were announced"
            )
        most = self._decision.settings.max_identifiers_per_record
        if np.any(per_record > most):
            crowded = int(np.flatnonzero(per_record > most)[0])
            raise InvalidMessage(
                f"advertiser set U: record tag {crowded} has {int(per_record[crowded])} "
                f"identifiers, at most {most} per record are allowed"
            )
        u = self._u.array
        duplicate = find_duplicate(u)
        if duplicate is not None:
            first, repeat = duplicate
            raise InvalidElement(f"advertiser set U: duplicate of row {first}", repeat)
        engine = self._engine
        try:
            # Every element is checked before any is multiplied: a set with a bad element at
            # its end costs no more than one with a bad element at its start. What validate
            # returns is multiplied as checked, without checking it again.
            valid_u = engine.validate(self._suite, u)
        except InvalidElement as exc:
            raise shift_element_error(exc, 0, "advertiser set U") from exc
        del self._u  # U itself is not kept: U' is what is matched (and returned)
        # U' is computed on a thread of its own, so that W's chunks are validated as they
        # arrive meanwhile instead of after it; each chunk of U' is looked up in W as soon as
        # both are there, so once the last chunk is in, the match is nearly made.
        key, report, lookup = self._inputs.epoch_key, self._u_progress, self._u_prime_in_w

        def compute() -> NDArray[np.uint8]:
            progress = stops_when_abandoned(self._abandoned, report, "U' was computed")
            return engine.encrypt(self._suite, key, valid_u, progress=progress, landed=lookup.add)

        self._u_prime_future = run_on_thread("encrypt-u", compute)
        self._state = _State.RECEIVING_W

    def abandon(self) -> None:
        """Stop computing U': the session ended without a result, so the work would be wasted.

        Safe from any thread and more than once; a computation under way stops after its
        current chunk.
        """
        self._abandoned.set()

    def _take_w(self, chunk: pb.EncryptedPlatformSetChunk) -> Iterator[pb.ServerMessage]:
        check_session_id(self.session_id, chunk.session_id)
        offset, rows = self._w.accept(chunk.offset, chunk.count, chunk.elements)
        try:
            self._engine.validate(self._suite, rows)
        except InvalidElement as exc:
            raise shift_element_error(exc, offset, "encrypted platform set W") from exc
        if not self._w.complete:
            return iter(())
        w_index = RowIndex(self._w.array)  # sorted while U' may still be computed
        duplicate = w_index.find_duplicate()
        if duplicate is not None:
            first, repeat = duplicate
            raise InvalidElement(f"encrypted platform set W: duplicate of row {first}", repeat)
        assert self._u_prime_future is not None  # set when the state became RECEIVING_W
        self._u_prime_in_w.set_table(w_index)  # the chunks of U' already computed, meanwhile
        self._u_prime = self._u_prime_future.result()
        self.outcome = self._match()
        self._state = _State.AWAITING_CLOSE
        return self._stream_result(self.outcome)

    def _match(self) -> PlatformOutcome:
        u_index, w_index = self._u_prime_in_w.result(self._u_prime)
        mode = self._request.mode
        matched_users: NDArray[np.int64] | None = None
        matched_rows: NDArray[np.int64] | None = None
        if mode is Mode.AUDIENCE:
            # W is in V's order in audience mode, so a W row is a V row is a platform user.
            matched_users = self._inputs.owners_of(w_index)
            matched_rows = np.sort(w_index).astype(np.int64)
            release = release_count(len(matched_users), self._decision.settings)
        else:
            # Records, not identifiers: a record matching on email and phone counts once.
            # Tags are below record_count (checked on arrival): a mark per record, no sort.
            tag_matched = np.zeros(self._request.record_count, dtype=bool)
            tag_matched[self._tags[u_index]] = True
            matched_records = int(np.count_nonzero(tag_matched))
            if mode is Mode.IDS:
                release = release_exact_count(matched_records)
            else:
                release = release_count(matched_records, self._decision.settings)
        return PlatformOutcome(
            session_id=self.session_id,
            epoch_id=self._inputs.epoch_id,
            advertiser=self._decision.advertiser,
            mode=mode,
            record_count=self._request.record_count,
            identifier_count=self._request.identifier_count,
            release=release,
            epsilon_remaining=self._decision.epsilon_remaining(release.epsilon_charged),
            matched_user_ids=matched_users,
            matched_rows=matched_rows,
        )

    def _stream_result(self, outcome: PlatformOutcome) -> Iterator[pb.ServerMessage]:
        if outcome.mode is Mode.IDS:
            u_prime = self._u_prime
            per_chunk = rows_per_chunk(u_prime.shape[1], self._max_chunk_bytes)
            for start, stop in chunk_spans(len(u_prime), per_chunk):
                chunk = pb.EncryptedAdvertiserSetChunk(
                    session_id=self.session_id,
                    offset=start,
                    count=stop - start,
                    elements=u_prime[start:stop].tobytes(),
                )
                yield pb.ServerMessage(encrypted_advertiser_set=chunk)
        release = outcome.release
        result = pb.MatchResult(
            session_id=self.session_id,
            mode=mode_to_wire(outcome.mode),
            count=release.count,
            reported_as=release.reported_as,
            epsilon_charged=release.epsilon_charged,
            epsilon_remaining=outcome.epsilon_remaining,
            noise_applied=release.noise_applied,
        )
        yield pb.ServerMessage(result=result)
