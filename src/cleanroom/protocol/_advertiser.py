"""The advertiser's side of a matching session, as a state machine without I/O (DESIGN §3).

:class:`cleanroom.advertiser.Advertiser` builds the role from its normalized list, and its
client relays messages::

    role = AdvertiserRole(suite, Mode.COUNT, messages, record_ids)
    send(role.open_session())               # counts only: the list is not hashed yet
    for message in incoming:
        send(role.handle(message))
        if role.finished:
            break
    print(role.result.reported_as)

The session opens before the list is hashed, so the platform loads its set V while the
advertiser hashes: the U stream (returned for ``session_opened``) computes U = E_a(H(x)) when it
is first read, on the thread that sends, unless another thread started it already (the client
does, as the session opens), while the thread that receives encrypts V. Both use the
same batch engine, so neither side's cores wait for the other's phase to end. A caller may also
call :meth:`AdvertiserRole.encrypt_list` itself, before or while the session runs (it is
thread-safe and computes U once), and :meth:`AdvertiserRole.abandon` stops it when the session
fails.

A caller that reads its list slowly can start even earlier: a :class:`ListEncryption` holds the
session key and hashes and encrypts each batch of messages as it is added, while the rest of the
list is still read and normalized; the role built from it takes its key and its elements (U is
then only their distinct rows in a fresh random order)::

    encryption = ListEncryption(suite, engine=engine)
    for batch in normalized_batches:
        encryption.add(batch)                 # returns at once; the workers start on it
    role = AdvertiserRole(suite, Mode.COUNT, encryption, record_ids)

Records that share an identifier (the same email on two rows) are one customer to the
protocol: they get one record tag, so the identifier is sent once and the customer is counted
once. U never repeats an element, which would tell the platform which records share identifiers.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray

from cleanroom._output import quoted
from cleanroom.crypto import (
    BatchEngine,
    HashAndEncryptJob,
    SecretKey,
    Suite,
    ValidatedElements,
    default_engine,
    random_permutation,
)
from cleanroom.errors import (
    InvalidElement,
    InvalidInput,
    InvalidMessage,
    LimitExceeded,
    OutOfOrder,
    VersionMismatch,
)
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import Mode
from cleanroom.protocol._constants import MAX_CHUNK_BYTES, PROTOCOL_VERSION, RECORD_TAG_SIZE
from cleanroom.protocol._policy_info import SessionTerms
from cleanroom.protocol._receipt import Receipt, read_receipt
from cleanroom.protocol._rows import (
    ChunkedLookup,
    RowIndex,
    find_duplicate,
    first_occurrence_of_messages,
)
from cleanroom.protocol._wire import (
    ChunkReceiver,
    ProgressFactory,
    check_session_id,
    chunk_spans,
    mode_from_wire,
    mode_to_wire,
    new_session_id_ok,
    pb,
    rows_per_chunk,
    run_on_thread,
    shift_element_error,
    stops_when_abandoned,
)

__all__ = ["AdvertiserResult", "AdvertiserRole", "ListEncryption"]

_TAG_DTYPE = np.dtype("<u4")
_MAX_REPORTED_AS = 200


@dataclass(frozen=True, eq=False)
class AdvertiserResult:
    """The result of a session as the advertiser sees it.

    Attributes:
        session_id: the session's id.
        epoch_id: the platform's key epoch.
        mode: the session's mode.
        count: the released count, ``None`` when below the reporting threshold. In count mode
            matched customers (records sharing an identifier count once), in audience mode
            matched platform users, in ids mode the exact number of matched customers.
        reported_as: the count as the platform reports it to people.
        epsilon_charged: privacy loss charged to the advertiser's budget.
        epsilon_remaining: what is left of the budget in the epoch.
        noise_applied: whether the count was noised.
        matched_record_ids: ids mode: the record ids (as given) with at least one identifier in
            the platform's set, ascending; ``None`` in the other modes.
        receipt: the platform's signed receipt for the session, checked to state this result
            (its signature is checked against the platform's ``audit.pub`` by the client);
            ``None`` if the platform sent none.
        receipt_verified: whether the receipt's signature was checked with the platform's
            audit key (set by the client, which holds the key; the role has no files).
        platform_set_size: N as the session announced it (at most what GetPolicy announced).
    """

    session_id: bytes
    epoch_id: int
    mode: Mode
    count: int | None
    reported_as: str
    epsilon_charged: float
    epsilon_remaining: float
    noise_applied: bool
    matched_record_ids: NDArray[np.int64] | None
    receipt: Receipt | None = None
    receipt_verified: bool = False
    platform_set_size: int = 0


class ListEncryption:
    """A session key and ``E_a(H(x))`` of a list's messages, computed while they are added.

    The list's messages are added batch by batch as they are normalized; each batch goes to the
    engine's workers at once (:meth:`BatchEngine.hash_and_encrypt_job`). One
    :class:`AdvertiserRole` is then built from it, and takes its key and its elements: the same
    key encrypts U and the platform's set, and it never leaves these two objects except for the
    engine's workers.

    Args:
        suite: the session's ciphersuite.
        engine: the batch engine; ``None``: the default.
    """

    def __init__(self, suite: Suite, *, engine: BatchEngine | None = None) -> None:
        self.suite = suite
        # Fresh per session, never stored or sent.
        self._key = suite.generate_key()
        engine = default_engine() if engine is None else engine
        self._job: HashAndEncryptJob | None = engine.hash_and_encrypt_job(
            suite, self._key, suite.dst
        )
        self._messages: list[bytes] = []
        self._added = 0

    def __len__(self) -> int:
        return self._added

    def __repr__(self) -> str:
        return f"<ListEncryption {self.suite.suite_id} {self._added} messages>"

    def add(self, messages: Sequence[bytes]) -> None:
        """Add messages (``cleanroom.identifiers.hash_message``); their work starts at once.

        Raises:
            ValueError: a role was already built from this encryption, or it was abandoned.
        """
        if self._job is None:
            raise ValueError("this list encryption is taken by a role or abandoned")
        self._job.add(messages)
        self._messages.extend(messages)
        self._added += len(messages)

    def abandon(self) -> None:
        """Stop: the work not started is dropped. Safe to repeat."""
        job, self._job = self._job, None
        if job is not None:
            job.cancel()

    def _take(self, suite: Suite) -> tuple[SecretKey, HashAndEncryptJob, list[bytes]]:
        """Hand the key, the running job and the messages to the one role built from this."""
        if suite is not self.suite:
            raise InvalidInput(
                f"a {self.suite.suite_id} list encryption for a {suite.suite_id} session"
            )
        job, self._job = self._job, None
        if job is None:
            raise ValueError("this list encryption is taken by a role or abandoned")
        messages, self._messages = self._messages, []  # the role's alone, to drop once hashed
        return self._key, job, messages


class _State(enum.Enum):
    CREATED = "the list is not yet opened"
    AWAITING_OPENED = "waiting for session_opened"
    RECEIVING_V = "receiving the platform set V"
    RECEIVING_U_PRIME = "receiving the encrypted advertiser set U'"
    AWAITING_RESULT = "waiting for the result"
    FINISHED = "finished"


class AdvertiserRole:
    """The advertiser's state machine for one session.

    Args:
        suite: the session's ciphersuite.
        mode: the session's mode.
        messages: the hash-to-curve messages of the list's identifiers
            (``cleanroom.identifiers.hash_message``), any order, repeats allowed; or a
            :class:`ListEncryption` they were added to, whose key and elements the role takes.
        record_ids: for each message, the id of the record (row) it came from.
        engine: the batch engine for hashing and scalar multiplication; ``None``: the default.
        progress: optional progress reporting for long phases.
        terms: what the session is held to (from GetPolicy, :func:`session_terms`): the
            identifiers sent per customer, and the platform set's size announced and allowed.

    Raises:
        InvalidInput: ``messages`` and ``record_ids`` differ in length, or the list encryption
            is of another suite.
        ValueError: the list encryption serves another role already, or was abandoned.
    """

    def __init__(
        self,
        suite: Suite,
        mode: Mode,
        messages: Sequence[bytes] | ListEncryption,
        record_ids: Sequence[int] | NDArray[np.integer],
        *,
        engine: BatchEngine | None = None,
        progress: ProgressFactory | None = None,
        terms: SessionTerms | None = None,
    ) -> None:
        self._job: HashAndEncryptJob | None = None
        if isinstance(messages, ListEncryption):
            self._key, self._job, messages = messages._take(suite)
        else:
            # Fresh per session, never stored or sent.
            self._key = suite.generate_key()
        records = np.asarray(record_ids, dtype=np.int64).reshape(-1)
        if len(records) != len(messages):
            if self._job is not None:
                self._job.cancel()
            raise InvalidInput(
                f"{len(messages)} identifiers but {len(records)} record ids; one each expected"
            )
        self._suite = suite
        self._mode = mode
        # Held until U is computed (encrypt_list): a list of millions of messages is not kept
        # for the rest of the session.
        self._messages: Sequence[bytes] = messages
        self._record_ids = records
        self._engine = default_engine() if engine is None else engine
        self._progress = progress
        self._terms = terms or SessionTerms()
        self._state = _State.CREATED
        self._plan()
        self._u: NDArray[np.uint8] | None = None
        # encrypt_list runs on whichever thread asks first (the client's hashing thread, or
        # gRPC's sending thread reading the U stream); the others wait for it and share its
        # result or its failure.
        self._encrypt_lock = threading.Lock()
        self._encrypt_failure: BaseException | None = None
        self._abandoned = threading.Event()
        self.encrypt_seconds: float | None = None
        """Wall time of hashing and encrypting the list, once done."""
        self.result: AdvertiserResult | None = None
        """Set when the result has arrived."""

    @property
    def finished(self) -> bool:
        """Whether the session is over (the result arrived and the close was sent)."""
        return self._state is _State.FINISHED

    @property
    def record_count(self) -> int:
        """Distinct customers in the list (records sharing an identifier count once)."""
        return self._group_count

    @property
    def identifier_count(self) -> int:
        """Distinct identifiers sent, the size n of U."""
        return len(self._u_source)

    @property
    def identifiers_withheld(self) -> int:
        """Distinct identifiers not sent: beyond a customer's first ``max_identifiers_per_record``.

        Only customers made of several records (linked by a shared identifier) can have more;
        a match on a withheld identifier is missed.
        """
        return self._withheld

    def _plan(self) -> None:
        """Group the records, pick U's order and its tags: everything but the cryptography.

        Done once, when the role is built: the session's opening needs the counts, and the
        plan's random order and tags must not change afterwards. Equal messages hash to equal
        elements (and distinct ones to distinct elements, but for a chance of about 2^-250), so
        repeats are found on the messages, before hashing.
        """
        messages = self._messages
        first = first_occurrence_of_messages(messages)
        self._first = first
        distinct = np.flatnonzero(first == np.arange(len(messages)))
        record_values, record_of_message = np.unique(self._record_ids, return_inverse=True)
        self._record_values = record_values
        self._record_of_message = record_of_message.astype(np.intp, copy=False)
        group_of_record = _merge_records_sharing_identifiers(
            len(record_values), self._record_of_message, first
        )
        self._group_count = int(group_of_record.max()) + 1 if len(group_of_record) else 0
        self._group_of_record = group_of_record
        # The platform refuses a tag with more identifiers than its policy allows: a customer
        # made of linked records sends its first ones, in list order, and withholds the rest.
        kept = _first_per_group(
            group_of_record[self._record_of_message[distinct]],
            self._terms.max_identifiers_per_record,
        )
        self._withheld = len(distinct) - int(np.count_nonzero(kept))
        distinct = distinct[kept]
        # Tags are a fresh random permutation of the groups: they tell the platform which
        # elements belong together and nothing else.
        tag_of_group = random_permutation(self._group_count).astype(np.uint32)
        # A fresh random order, so U's order says nothing about the list's order.
        order = distinct[random_permutation(len(distinct))]
        self._u_source = order  # U row -> index of its message
        self._u_tags = tag_of_group[group_of_record[self._record_of_message[order]]]

    def encrypt_list(self) -> None:
        """Compute U = E_a(H(x)) for the distinct identifiers, in U's random order.

        The expensive step of the advertiser (n hash-to-curve and scalar multiplications). The
        U stream calls it when first read; a caller may call it earlier, from any thread. It
        runs once: later calls return at once, or wait for the running one, and re-raise its
        failure if it failed.
        """
        with self._encrypt_lock:
            if self._encrypt_failure is not None:
                raise self._encrypt_failure
            if self._u is not None:
                return
            started = time.perf_counter()
            order = self._u_source
            messages = self._messages
            report = self._progress_for("hash and encrypt list", len(order))
            try:
                progress = stops_when_abandoned(self._abandoned, report, "the list was hashed")
                if self._job is not None:
                    # Every message, in list order, mostly done while the list was read: U is
                    # the distinct ones, in U's order.
                    # take along axis 0 copies whole rows; indexing with [order] goes
                    # byte by byte and costs several times more on millions of rows.
                    self._u = np.take(self._job.finish(progress=progress), order, axis=0)
                else:
                    self._u = self._engine.hash_and_encrypt(
                        self._suite,
                        self._key,
                        [messages[i] for i in order],
                        self._suite.dst,
                        progress=progress,
                    )
            except BaseException as exc:
                self._encrypt_failure = exc
                raise
            self._messages = ()
            self.encrypt_seconds = time.perf_counter() - started

    def abandon(self) -> None:
        """Stop computing U: the session failed, so the work would be wasted.

        A running :meth:`encrypt_list` stops after its current chunk and raises
        ``concurrent.futures.CancelledError``, as does every later call.
        """
        self._abandoned.set()
        if self._job is not None:
            self._job.cancel()

    def open_session(self) -> pb.ClientMessage:
        """Return the OpenSession message (the list's counts; it need not be hashed yet).

        Raises:
            OutOfOrder: the session was opened already.
        """
        if self._state is not _State.CREATED:
            raise OutOfOrder("the session was opened already")
        self._state = _State.AWAITING_OPENED
        return pb.ClientMessage(
            open_session=pb.OpenSession(
                mode=mode_to_wire(self._mode),
                suite=self._suite.suite_id,
                normalization_version=NORMALIZATION_VERSION,
                protocol_version=PROTOCOL_VERSION,
                record_count=self._group_count,
                identifier_count=len(self._u_source),
            )
        )

    def handle(self, message: pb.ServerMessage) -> Iterator[pb.ClientMessage]:
        """Handle one message from the platform.

        Every check and state change happens before this returns; the returned iterator only
        slices computed arrays into messages, except the U stream (the reply to
        ``session_opened``), which first computes U (:meth:`encrypt_list`) and raises its
        failure.

        Args:
            message: the next ServerMessage of the stream.

        Returns:
            The messages to send in reply (possibly none).

        Raises:
            OutOfOrder: the message is not allowed in the current round.
            WrongSession: the message carries another session's id.
            VersionMismatch: the platform answered with another suite, mode or version.
            InvalidMessage: bad counts, offsets or sizes, or a result that contradicts U'.
            InvalidElement: an element is malformed, off the curve, of small order, or a
                duplicate in V or U'.
            LimitExceeded: a chunk larger than allowed.
        """
        round_name = message.WhichOneof("round")
        state = self._state
        if round_name == "session_opened" and state is _State.AWAITING_OPENED:
            return self._take_opened(message.session_opened)
        if round_name == "platform_set" and state is _State.RECEIVING_V:
            return self._take_v(message.platform_set)
        if round_name == "encrypted_advertiser_set" and state is _State.RECEIVING_U_PRIME:
            self._take_u_prime(message.encrypted_advertiser_set)
            return iter(())
        if round_name == "result" and state is _State.AWAITING_RESULT:
            return self._take_result(message.result)
        raise OutOfOrder(f"{round_name or 'an empty message'} is not allowed while {state.value}")

    def _progress_for(self, phase: str, total: int) -> Callable[[int], object] | None:
        return None if self._progress is None else self._progress(phase, total)

    def _take_opened(self, opened: pb.SessionOpened) -> Iterator[pb.ClientMessage]:
        new_session_id_ok(opened.session_id)
        if (opened.protocol_version, opened.normalization_version) != (
            PROTOCOL_VERSION,
            NORMALIZATION_VERSION,
        ):
            raise VersionMismatch(
                f"the platform speaks protocol {opened.protocol_version} with normalization "
                f"{opened.normalization_version}; this client {PROTOCOL_VERSION} with "
                f"{NORMALIZATION_VERSION}"
            )
        if opened.suite != self._suite.suite_id or mode_from_wire(opened.mode) is not self._mode:
            raise VersionMismatch(
                f"the platform opened a {quoted(opened.suite)} session in mode {opened.mode}, "
                f"not the {self._suite.suite_id} session in mode {self._mode} that was asked for"
            )
        if opened.max_chunk_bytes == 0:
            raise InvalidMessage("the platform announced a chunk size of 0 bytes")
        total = opened.platform_set_size
        # Checked before anything is allocated for V: the platform chooses this number.
        ceiling = self._terms.max_platform_set_size
        if total > ceiling:
            raise LimitExceeded(
                f"the platform announced a set of {total:,} identifiers, more than this client "
                f"accepts ({ceiling:,}; --max-platform-set raises it)"
            )
        # Smaller than GetPolicy said is what an honest platform sends when consents were
        # revoked or expired in between; larger would be a set grown past what the advertiser
        # agreed to before it hashed its list.
        announced = self._terms.platform_set_size
        if announced is not None and total > announced:
            raise InvalidMessage(
                f"the platform announced a set of {total:,} identifiers for the session but "
                f"{announced:,} in its policy; if its set grew in between (a refresh, consents "
                "granted), run the match again"
            )
        self._session_id = opened.session_id
        self._epoch_id = opened.epoch_id
        # Never above this build's own limit, whatever the platform says it accepts.
        self._max_chunk_bytes = min(opened.max_chunk_bytes, MAX_CHUNK_BYTES)
        size = self._suite.element_size
        self._v = ChunkReceiver("platform set V", total, size)
        # W = E_a(V) in V's order; it is shuffled (count, ids) only when sent.
        self._w = np.empty((total, size), dtype=np.uint8)
        self._w_progress = self._progress_for("encrypt platform set", total)
        self._state = _State.RECEIVING_V
        return self._stream_u()

    def _stream_u(self) -> Iterator[pb.ClientMessage]:
        # A generator: when the sending thread first asks for a chunk, U is computed here, or
        # waited for if another thread (the client's hashing thread) is computing it, while the
        # receiving thread goes on taking V.
        self.encrypt_list()
        u, tags = self._u, self._u_tags
        assert u is not None  # encrypt_list either set it or raised
        per_chunk = rows_per_chunk(u.shape[1] + RECORD_TAG_SIZE, self._max_chunk_bytes)
        for start, stop in chunk_spans(len(u), per_chunk):
            chunk = pb.AdvertiserSetChunk(
                session_id=self._session_id,
                offset=start,
                count=stop - start,
                elements=u[start:stop].tobytes(),
                record_tags=tags[start:stop].astype(_TAG_DTYPE, copy=False).tobytes(),
            )
            yield pb.ClientMessage(advertiser_set=chunk)

    def _take_v(self, chunk: pb.PlatformSetChunk) -> Iterator[pb.ClientMessage]:
        check_session_id(self._session_id, chunk.session_id)
        offset, rows = self._v.accept(chunk.offset, chunk.count, chunk.elements)
        try:
            encrypted = self._engine.encrypt(
                self._suite, self._key, rows, progress=self._w_progress
            )
        except InvalidElement as exc:
            raise shift_element_error(exc, offset, "platform set V") from exc
        self._w[offset : offset + len(rows)] = encrypted
        if not self._v.complete:
            return iter(())
        # Sorted now, while the platform computes U', rather than once U' is in; the same sort
        # finds repeats (W = E_a(V) repeats exactly where V does).
        w_index = RowIndex(self._w)
        duplicate = w_index.find_duplicate()
        if duplicate is not None:
            first, repeat = duplicate
            raise InvalidElement(f"platform set V: duplicate of row {first}", repeat)
        del self._v  # V itself is no longer needed
        if self._mode is Mode.AUDIENCE:
            # In V's order, so the platform can map matches to its users (DESIGN §3).
            w_sent = self._w
        else:
            # Shuffled, so the platform cannot tell which of its users matched.
            w_sent = np.take(self._w, random_permutation(len(self._w)), axis=0)
        if self._mode is Mode.IDS:
            self._u_prime = ChunkReceiver(
                "encrypted advertiser set U'", len(self._u_source), self._suite.element_size
            )
            self._u_prime_in_w = ChunkedLookup()
            self._u_prime_in_w.set_table(w_index)
            self._u_prime_checks: list[tuple[int, Future[ValidatedElements]]] = []
            self._state = _State.RECEIVING_U_PRIME
        else:
            self._state = _State.AWAITING_RESULT
        return self._stream_w(w_sent)

    def _stream_w(self, w: NDArray[np.uint8]) -> Iterator[pb.ClientMessage]:
        per_chunk = rows_per_chunk(w.shape[1], self._max_chunk_bytes)
        for start, stop in chunk_spans(len(w), per_chunk):
            chunk = pb.EncryptedPlatformSetChunk(
                session_id=self._session_id,
                offset=start,
                count=stop - start,
                elements=w[start:stop].tobytes(),
            )
            yield pb.ClientMessage(encrypted_platform_set=chunk)

    def _take_u_prime(self, chunk: pb.EncryptedAdvertiserSetChunk) -> None:
        check_session_id(self._session_id, chunk.session_id)
        offset, rows = self._u_prime.accept(chunk.offset, chunk.count, chunk.elements)
        # U' comes once the platform has finished, when nothing else is left to do: each chunk
        # is checked and looked up in W on a thread of its own as soon as it arrives (X25519's
        # check runs in the calling thread, in C without the GIL), while this thread takes the
        # next, so that little is left once U' is complete. Nothing found is used unless all of
        # U' passes.
        checks = self._u_prime_checks
        while checks and checks[0][1].done():
            self._u_prime_checked(*checks.pop(0))  # a bad chunk ends the session at once

        checks.append(
            (offset, run_on_thread("check-u-prime", partial(self._check_u_prime, offset, rows)))
        )
        if not self._u_prime.complete:
            return
        for start, rows_checked in checks:
            self._u_prime_checked(start, rows_checked)
        checks.clear()
        u_prime = self._u_prime.array
        duplicate = find_duplicate(u_prime)
        if duplicate is not None:
            first, repeat = duplicate
            raise InvalidElement(f"encrypted advertiser set U': duplicate of row {first}", repeat)
        self._u_prime_matched = self._u_prime_in_w.result(u_prime)[0]
        self._state = _State.AWAITING_RESULT

    def _check_u_prime(self, offset: int, rows: NDArray[np.uint8]) -> ValidatedElements:
        """Check the chunk of U' at ``offset`` and look it up in W (on a thread of its own)."""
        checked = self._engine.validate(self._suite, rows)
        self._u_prime_in_w.add(offset, rows)
        return checked

    @staticmethod
    def _u_prime_checked(offset: int, rows_checked: Future[ValidatedElements]) -> None:
        """Wait for the check of U's chunk at ``offset``; raise what it found."""
        try:
            rows_checked.result()
        except InvalidElement as exc:
            raise shift_element_error(exc, offset, "encrypted advertiser set U'") from exc

    def _take_result(self, result: pb.MatchResult) -> Iterator[pb.ClientMessage]:
        check_session_id(self._session_id, result.session_id)
        if mode_from_wire(result.mode) is not self._mode:
            raise InvalidMessage(f"a result for mode {result.mode}, not {self._mode}")
        if len(result.reported_as) > _MAX_REPORTED_AS:
            raise InvalidMessage(
                f"the result's text has {len(result.reported_as):,} characters (a count in words "
                f"has at most {_MAX_REPORTED_AS})"
            )
        for name in ("epsilon_charged", "epsilon_remaining"):
            value = getattr(result, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidMessage(f"the result has {name} = {value!r}")
        count = result.count if result.HasField("count") else None
        matched_record_ids = None
        if self._mode is Mode.IDS:
            matched_record_ids, matched_groups = self._matched_records()
            # The platform counted the same matches on the same U' and W; a different number
            # means one side is broken, and neither result can be trusted.
            if count != matched_groups:
                raise InvalidMessage(
                    f"the platform reports {count} matched records, U' shows {matched_groups}"
                )
        receipt = None
        if result.receipt:
            receipt = read_receipt(result.receipt)
            receipt.check_result(
                session_id=self._session_id,
                mode=self._mode.value,
                count=count,
                epsilon_charged=result.epsilon_charged,
                epoch=self._epoch_id,
            )
        self.result = AdvertiserResult(
            session_id=self._session_id,
            epoch_id=self._epoch_id,
            mode=self._mode,
            count=count,
            reported_as=result.reported_as,
            epsilon_charged=result.epsilon_charged,
            epsilon_remaining=result.epsilon_remaining,
            noise_applied=result.noise_applied,
            matched_record_ids=matched_record_ids,
            receipt=receipt,
            platform_set_size=len(self._w),
        )
        self._state = _State.FINISHED
        return iter([pb.ClientMessage(close=pb.Close(session_id=self._session_id))])

    def _matched_records(self) -> tuple[NDArray[np.int64], int]:
        """Return the matched record ids (as given) and the number of matched groups."""
        matched_message = np.zeros(len(self._record_ids), dtype=bool)  # one per message
        matched_message[self._u_source[self._u_prime_matched]] = True
        # A repeated identifier matched wherever its first occurrence did.
        matched_message = matched_message[self._first]
        # Marks in arrays as long as the record and group counts instead of np.unique: linear
        # rather than a sort of up to n entries.
        record_matched = np.zeros(len(self._record_values), dtype=bool)
        record_matched[self._record_of_message[matched_message]] = True
        records = np.flatnonzero(record_matched)
        group_matched = np.zeros(self._group_count, dtype=bool)
        group_matched[self._group_of_record[records]] = True
        return self._record_values[records], int(np.count_nonzero(group_matched))


def _first_per_group(groups: NDArray[np.intp], most: int) -> NDArray[np.bool_]:
    """Mark the first ``most`` entries of each group, in the order given."""
    if len(groups) == 0 or int(np.bincount(groups).max()) <= most:
        return np.ones(len(groups), dtype=bool)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    positions = np.arange(len(ordered))
    rank = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    kept = np.empty(len(groups), dtype=bool)
    kept[order] = rank < most
    return kept


def _merge_records_sharing_identifiers(
    record_count: int, record_of_message: NDArray[np.intp], first: NDArray[np.intp]
) -> NDArray[np.intp]:
    """Group records linked by a shared identifier (union-find); return each record's group.

    Groups are numbered ``0 .. G-1``. Only repeated identifiers cost Python-level work.
    """
    parent = np.arange(record_count, dtype=np.intp)

    def root(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = int(parent[r])
        return r

    for message in np.flatnonzero(first != np.arange(len(first))):
        a = root(int(record_of_message[message]))
        b = root(int(record_of_message[first[message]]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    # Point every record straight at its root.
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    _, group = np.unique(parent, return_inverse=True)
    return group.astype(np.intp, copy=False)
