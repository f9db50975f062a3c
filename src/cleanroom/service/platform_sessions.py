"""The platform's session glue: from an OpenSession to a PlatformRole, and outcomes to the store.

The gRPC servicer only carries messages; everything a session means to the platform is here::

    sessions = PlatformSessions(db_path, policy)
    sessions.recover()                               # sessions a crash left open -> aborted
    info = sessions.policy_info(advertiser)          # GetPolicy
    session = sessions.open(advertiser, first)       # checks, then loads V; refusals recorded
    send(session.start())
    for message in incoming:
        send(session.handle(message))                # the outcome is persisted before replies
    session.close()                                  # aborts unless it completed

Order of work (DESIGN §3, §7): the opening is read and the policy and ledger are checked in ONE
write transaction that also reserves the advertiser's single open-session slot (and checks that
its sets would fit in the server's session memory, :mod:`cleanroom.service.session_memory`);
only then is the epoch's set loaded. Each chunk of U and W takes its share of that memory before
the role keeps it, and ``close`` gives it all back. A count is charged in the same transaction
that stores the audience and the audit entry, before any reply carrying it is sent. Every session
ends as exactly one audit entry: ``match.completed``, ``match.refused`` or ``match.aborted``.

Each operation borrows a database connection of its own from a small pool, and gives it back
when it is done: a session is driven by a gRPC thread but may be aborted from a timer or the
shutdown path, so a connection serves one thread at a time, never one session for its life.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.crypto import BatchEngine
from cleanroom.errors import (
    CleanroomError,
    SessionAborted,
    VersionMismatch,
)
from cleanroom.policy import Mode, Policy, SessionDecision, check_session
from cleanroom.protocol import (
    PlatformInputs,
    PlatformOutcome,
    PlatformRole,
    SessionRequest,
    check_advertiser_set_size,
    issue_receipt,
    policy_info,
    read_open_session,
)
from cleanroom.service.epoch_summary import EpochSummaryCache
from cleanroom.service.session_memory import SessionMemory, chunk_bytes, default_session_memory
from cleanroom.service.unopened import UnopenedStreams
from cleanroom.store import audit, sessions
from cleanroom.store.audiences import store_audience
from cleanroom.store.changes import audit_head
from cleanroom.store.database import Database, open_database, transaction, unix_now
from cleanroom.store.epochs import (
    EpochInfo,
    MatchableEpoch,
    epoch_key,
    remove_leftovers,
    require_current_epoch,
)
from cleanroom.store.matchable_cache import MatchableCache

__all__ = ["MatchSession", "PlatformSessions"]

logger = logging.getLogger(__name__)

Clock = Callable[[], int]

#: Idle connections kept for later operations; more are opened while more operations run at once.
_IDLE_CONNECTIONS = 4


class PlatformSessions:
    """Opens, tracks and persists the match sessions of one platform database.

    Args:
        db_path: the platform database file.
        policy: the platform's policy.
        engine: the batch engine for the sessions' scalar multiplications (``None``: the
            process-wide default engine).
        clock: the current Unix time; for tests of "today".
        unopened_record_interval: seconds between two ledger rows for one advertiser's streams
            that never opened a session (see :class:`UnopenedStreams`).
        session_memory: bytes the sessions' sets may take at once (``None``: half of the
            machine's memory); see :mod:`cleanroom.service.session_memory`.
    """

    def __init__(
        self,
        db_path: Path,
        policy: Policy,
        *,
        engine: BatchEngine | None = None,
        clock: Clock = unix_now,
        unopened_record_interval: float = 60.0,
        session_memory: int | None = None,
    ) -> None:
        self._db_path = Path(db_path)
        self._policy = policy
        self._engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, MatchSession] = {}
        self._idle = threading.Condition(self._lock)
        self._pool_lock = threading.Lock()
        self._pool: list[Database] = []  # idle connections, the last given back on top
        self.matchable = MatchableCache()
        """The epoch's set as sessions stream it, computed again whenever it may differ."""
        self.epoch_summaries = EpochSummaryCache(compute=self.matchable.get)
        """What GetPolicy announces of the current epoch, cached while it is fresh."""
        self.unopened = UnopenedStreams(self.connect, unopened_record_interval, now=clock)
        """Streams that ended before opening a session, recorded in bulk."""
        self.memory = SessionMemory(
            default_session_memory() if session_memory is None else session_memory
        )
        """What the sessions in progress hold for their sets, of the budget."""

    @contextmanager
    def connect(self) -> Iterator[Database]:
        """A connection to the database, for one operation of the calling thread.

        Idle connections are kept for the next operation rather than closed: closing the last
        connection to a database makes SQLite checkpoint and remove its write-ahead log, work
        that a connection per operation would repeat at every step of every session; and a kept
        connection keeps its page cache. A connection whose operation failed is closed, not kept.
        """
        with self._pool_lock:
            db = self._pool.pop() if self._pool else None
        if db is None:
            db = open_database(self._db_path)
        try:
            yield db
        except BaseException:
            db.close()
            raise
        if db.conn.in_transaction:  # never hand a half-done transaction to the next operation
            db.close()
            return
        with self._pool_lock:
            if len(self._pool) < _IDLE_CONNECTIONS:
                self._pool.append(db)
                return
        db.close()

    def close(self) -> None:
        """Close the idle connections (the service stopped; a later operation opens anew)."""
        with self._pool_lock:
            idle, self._pool = self._pool, []
        for db in idle:
            db.close()

    # -- service lifecycle ---------------------------------------------------------------------

    def recover(self) -> int:
        """Mark sessions a previous run left open as aborted (nothing charged or stored).

        Also destroys the key and files of an epoch rotation that was interrupted.

        Call once when the server starts, before it serves: an open row then can only be the
        leftover of a process that died. (So: one server per database.)

        Returns:
            How many sessions were aborted.
        """
        with self.connect() as db:
            # A rotation killed mid-way leaves its new key behind: destroy it now, not at the
            # next rotation (skipped if a rotation is running right now).
            remove_leftovers(db)
        with self.connect() as db, transaction(db.conn):
            leftovers = sessions.open_sessions(db)
            for record in leftovers:
                _abort_in_transaction(
                    db,
                    record,
                    "the platform stopped before the session completed (found open at start)",
                    self._clock(),
                )
        return len(leftovers)

    def active_count(self) -> int:
        """Sessions open in this process right now."""
        with self._lock:
            return len(self._active)

    def active(self) -> list[MatchSession]:
        """The sessions open in this process right now."""
        with self._lock:
            return list(self._active.values())

    def abort_all(self, reason: str) -> int:
        """Abort every session open in this process (the server is stopping).

        Returns:
            How many were aborted here (those that completed meanwhile are left alone).
        """
        with self._lock:
            active = list(self._active.values())
        return sum(1 for session in active if session.abort(reason))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no session of this process is open; ``False`` if ``timeout`` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._active, timeout=timeout)

    def _register(self, session: MatchSession) -> None:
        with self._lock:
            self._active[session.ledger_id] = session

    def _unregister(self, session: MatchSession) -> None:
        with self._idle:
            self._active.pop(session.ledger_id, None)
            self._idle.notify_all()

    # -- GetPolicy -------------------------------------------------------------------------------

    def policy_info(self, advertiser: str) -> pb.PolicyInfo:
        """The policy as it applies to ``advertiser`` now, with its budget and today's sessions.

        Raises:
            StoreError: the platform has no current key epoch, or its files are unusable.
        """
        settings = self._policy.for_advertiser(advertiser)
        with self.connect() as db:
            # N is what a session would stream now: the epoch's set minus what lost consent,
            # kept between calls while nothing that decides it has changed.
            epoch = self.epoch_summaries.get(db)
            spent = sessions.spent_epsilon(db, advertiser, epoch.epoch_id)
            today = sessions.sessions_today(db, advertiser, now=self._clock())
        return policy_info(
            settings,
            epoch_id=epoch.epoch_id,
            platform_set_size=epoch.platform_set_size,
            spent_epsilon=spent,
            sessions_today=today,
            suites=(epoch.suite_id,),
        )

    # -- Match -----------------------------------------------------------------------------------

    def open(self, advertiser: str, first: pb.ClientMessage) -> MatchSession:
        """Open a session from its first message: check everything, then load the epoch's set.

        Args:
            advertiser: the caller's name, from its certificate.
            first: the first message of the stream (must be an OpenSession).

        Returns:
            The open session (registered until :meth:`MatchSession.close`).

        Raises:
            CleanroomError: the session is refused (recorded as ``refused``, audited, nothing
                charged): a malformed opening, another version or suite, a policy refusal, the
                daily limit, the budget, no room in the session memory, or the platform having
                no epoch; or it failed while loading the epoch (recorded as ``aborted``).
        """
        now = self._clock()
        with self.connect() as db:
            try:
                request = read_open_session(first)
            except CleanroomError as exc:
                self._refuse(db, advertiser, exc, None, None, now)
                raise
            try:
                epoch = require_current_epoch(db)
            except CleanroomError as exc:
                self._refuse(db, advertiser, exc, request, None, now)
                raise
            refusal: CleanroomError | None = None
            with transaction(db.conn):
                try:
                    decision = self._check(db, advertiser, request, epoch, now)
                    ledger_id = sessions.start_session(
                        db,
                        advertiser=advertiser,
                        mode=request.mode.value,
                        suite_id=request.suite_id,
                        epoch_id=epoch.epoch_id,
                        record_count=request.record_count,
                        identifier_count=request.identifier_count,
                        now=now,
                    )
                except CleanroomError as exc:
                    # Recorded in the same transaction as the check that refused it.
                    refusal = exc
                    _record_refusal(db, advertiser, exc, request, epoch, now)
            if refusal is not None:
                logger.info("session of %s refused: %s", advertiser, refusal)
                raise refusal
            try:
                role, matchable = self._build_role(db, request, decision, epoch)
                with transaction(db.conn):
                    sessions.attach_session_id(db, ledger_id, role.session_id.hex())
            except BaseException as exc:
                with transaction(db.conn):
                    record = sessions.find_session(db, ledger_id)
                    if record is not None:
                        _abort_in_transaction(db, record, _reason(exc), self._clock())
                raise
        # Audience mode keeps the epoch's index -> (user, identifier) map, to store who matched
        # through which identifier.
        audience_index = matchable if request.mode is Mode.AUDIENCE else None
        session = MatchSession(self, advertiser, ledger_id, role, audience_index=audience_index)
        self._register(session)
        logger.info(
            "session %s of %s opened: mode %s, %d records, %d identifiers",
            role.session_id.hex(),
            advertiser,
            request.mode,
            request.record_count,
            request.identifier_count,
        )
        return session

    def _check(
        self,
        db: Database,
        advertiser: str,
        request: SessionRequest,
        epoch: EpochInfo,
        now: int,
    ) -> SessionDecision:
        """Every check that needs no work: suite, policy, ledger, size limits."""
        if request.suite_id != epoch.suite_id:
            raise VersionMismatch(
                f"the platform's key epoch uses suite {epoch.suite_id}, not {request.suite_id}"
            )
        decision = check_session(
            self._policy,
            advertiser,
            request.mode,
            request.record_count,
            spent_epsilon=sessions.spent_epsilon(db, advertiser, epoch.epoch_id),
            sessions_today=sessions.sessions_today(db, advertiser, now=now),
            open_session=sessions.has_open_session(db, advertiser),
        )
        # The role checks this too, but only after the set is loaded: refuse before.
        check_advertiser_set_size(request, decision.settings)
        self.memory.check_opening(request.identifier_count, epoch.size)
        return decision

    def _build_role(
        self, db: Database, request: SessionRequest, decision: SessionDecision, epoch: EpochInfo
    ) -> tuple[PlatformRole, MatchableEpoch]:
        head = audit_head(db.conn)  # before the set is read: see EpochSummaryCache.offer
        matchable = self.matchable.get(db)
        if matchable.epoch.epoch_id != epoch.epoch_id:
            # The budget was checked against the old epoch's ledger: start over.
            raise SessionAborted("the platform's key epoch changed while the session opened")
        self.epoch_summaries.offer(matchable.epoch, head, len(matchable.user_rows))
        inputs = PlatformInputs(
            epoch_id=epoch.epoch_id,
            epoch_key=epoch_key(db, matchable.epoch),
            platform_set=matchable.elements,
            user_ids=matchable.user_rows,
            other_owners=matchable.other_owners,
        )
        return PlatformRole(request, decision, inputs, engine=self._engine), matchable

    def _refuse(
        self,
        db: Database,
        advertiser: str,
        error: CleanroomError,
        request: SessionRequest | None,
        epoch: EpochInfo | None,
        now: int,
    ) -> None:
        with transaction(db.conn):
            _record_refusal(db, advertiser, error, request, epoch, now)
        logger.info("session of %s refused: %s", advertiser, error)

    def _persist(self, session: MatchSession, outcome: PlatformOutcome) -> bytes:
        """Charge, store the audience and audit, in one transaction (before any reply).

        Returns:
            The session's receipt: the audit entry's sequence number and hash with the
            session's facts, signed with the audit key (UTF-8 JSON, for ``MatchResult``).
        """
        release = outcome.release
        session_hex = outcome.session_id.hex()
        with self.connect() as db, transaction(db.conn):
            audience = None
            # An audience whose count was not released ("fewer than N") is not stored: a list
            # padded with made-up rows around one victim would otherwise leave a one-person
            # audience to aim ads at. The released count decides, so what is kept never
            # depends on more than what the advertiser was told.
            index = session.audience_index
            if outcome.matched_rows is not None and index is not None and release.count is not None:
                # Only users still eligible in THIS transaction are stored: a revocation,
                # deletion, opt-out or expiry while the session ran leaves them out.
                users, identifiers = index.matched_identifiers(outcome.matched_rows)
                audience = store_audience(db, session_hex, outcome.advertiser, users, identifiers)
            completed = sessions.complete_session(
                db,
                session.ledger_id,
                epsilon_charged=release.epsilon_charged,
                noise_applied=release.noise_applied,
                result_count=release.count,
                reported_as=release.reported_as,
                audience_id=None if audience is None else audience.audience_id,
                now=self._clock(),
            )
            if not completed:
                # Aborted meanwhile (shutdown, time limit): raising rolls the audience back.
                raise SessionAborted(f"session {session_hex} was aborted before it completed")
            details: dict[str, Any] = {
                "ledger_id": session.ledger_id,
                "session": session_hex,
                "advertiser": outcome.advertiser,
                "mode": outcome.mode.value,
                "epoch": outcome.epoch_id,
                "records": outcome.record_count,
                "identifiers": outcome.identifier_count,
                "count": release.count,
                "reported_as": release.reported_as,
                "epsilon_charged": release.epsilon_charged,
                "epsilon_remaining": outcome.epsilon_remaining,
                "noise_applied": release.noise_applied,
                "audience": None if audience is None else audience.audience_id,
            }
            if audience is not None:
                # How many, never who: users who lost eligibility while the session ran.
                details["audience_members"] = audience.members
                details["audience_left_out"] = audience.left_out
            entry = audit.append(db, "match.completed", details)
            receipt = issue_receipt(
                db.audit_signing_key(),
                session=session_hex,
                advertiser=outcome.advertiser,
                mode=outcome.mode.value,
                count=release.count,
                reported_as=release.reported_as,
                epsilon_charged=release.epsilon_charged,
                noise_applied=release.noise_applied,
                epoch=outcome.epoch_id,
                audit_seq=entry.seq,
                audit_hash=entry.hash,
                audit_at=entry.at,
            )
        logger.info(
            "session %s of %s completed: %s (epsilon %g)%s",
            session_hex,
            outcome.advertiser,
            release.reported_as,
            release.epsilon_charged,
            ""
            if audience is None or not audience.left_out
            else f"; {audience.left_out} matched users lost eligibility and were not stored",
        )
        return receipt.to_json()

    def _abort(self, session: MatchSession, reason: str) -> bool:
        with self.connect() as db, transaction(db.conn):
            record = sessions.find_session(db, session.ledger_id)
            aborted = record is not None and _abort_in_transaction(
                db, record, reason, self._clock()
            )
        if aborted:
            logger.info("session of %s aborted: %s", session.advertiser, reason)
        return aborted


class MatchSession:
    """One open session: the platform role plus its ledger row.

    Built by :meth:`PlatformSessions.open`; driven by one thread (the gRPC handler), while
    :meth:`abort` may come from any thread.
    """

    def __init__(
        self,
        owner: PlatformSessions,
        advertiser: str,
        ledger_id: int,
        role: PlatformRole,
        *,
        audience_index: MatchableEpoch | None = None,
    ) -> None:
        self._owner = owner
        self.advertiser = advertiser
        self.ledger_id = ledger_id
        self._role = role
        self.audience_index = audience_index
        """Audience mode: the epoch's map from rows of V to (user, identifier) pairs."""
        self._memory = owner.memory.account()
        self._lock = threading.Lock()
        self._ended = False  # completed or aborted: the ledger row is final
        self._completed = False

    @property
    def session_id(self) -> bytes:
        """The protocol session id."""
        return self._role.session_id

    @property
    def completed(self) -> bool:
        """Whether the result was persisted (and charged)."""
        return self._completed

    @property
    def finished(self) -> bool:
        """Whether the advertiser closed the session."""
        return self._role.finished

    @property
    def round(self) -> str:
        """What the session waits for, in words."""
        return self._role.round

    def start(self) -> Iterator[pb.ServerMessage]:
        """SessionOpened, then the platform set V in chunks."""
        return self._role.start()

    def handle(self, message: pb.ClientMessage) -> Iterator[pb.ServerMessage]:
        """Hand one client message to the role; persist the outcome before returning replies.

        Raises:
            CleanroomError: whatever the role refuses; LimitExceeded if a chunk of U or W does
                not fit in the session memory; SessionAborted if the session was aborted (the
                result is then not released).
        """
        had_outcome = self._role.outcome is not None
        # A chunk of U or W takes its memory before the role keeps it (LimitExceeded if it does
        # not fit: the session ends).
        self._memory.take(chunk_bytes(message, self._role.element_size))
        try:
            replies = self._role.handle(message)
        except CancelledError:  # only abort() abandons the role
            raise SessionAborted("the session was aborted before it completed") from None
        outcome = self._role.outcome
        if outcome is not None and not had_outcome:
            with self._lock:
                if self._ended:
                    raise SessionAborted("the session was aborted before it completed")
                receipt = self._owner._persist(self, outcome)
                self._ended = self._completed = True
            return _with_receipt(replies, receipt)
        return replies

    def abort(self, reason: str) -> bool:
        """Abort the session unless it completed: nothing charged, nothing stored, audited.

        Safe from any thread and more than once.

        Returns:
            Whether this call aborted it.
        """
        self._role.abandon()  # no result will go out: stop the work on U' now
        # The lock is held through the write, so that a concurrent close() returns only once
        # the abort is on disk (the process may exit right after).
        with self._lock:
            if self._ended:
                return False
            aborted = self._owner._abort(self, reason)
            self._ended = True
            return aborted

    def close(self, reason: str = "the stream ended before the session completed") -> None:
        """End the session's life in this process; abort it with ``reason`` unless it completed."""
        try:
            self.abort(reason)
        finally:
            self._memory.close()
            self._owner._unregister(self)


def _with_receipt(
    replies: Iterator[pb.ServerMessage], receipt: bytes
) -> Iterator[pb.ServerMessage]:
    """The replies, with the session's receipt in its result (the role knows no audit log)."""
    for reply in replies:
        if reply.WhichOneof("round") == "result":
            reply.result.receipt = receipt
        yield reply


# -- ledger + audit helpers (inside the caller's transaction) ---------------------------------


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _record_refusal(
    db: Database,
    advertiser: str,
    error: CleanroomError,
    request: SessionRequest | None,
    epoch: EpochInfo | None,
    now: int,
) -> None:
    details: dict[str, Any] = {
        "advertiser": advertiser,
        "mode": None if request is None else request.mode.value,
        "epoch": None if epoch is None else epoch.epoch_id,
        "records": None if request is None else request.record_count,
        "identifiers": None if request is None else request.identifier_count,
        "error": type(error).__name__,
        "reason": str(error),
    }
    details["ledger_id"] = sessions.record_refused_session(
        db,
        advertiser=advertiser,
        reason=_reason(error),
        mode=details["mode"],
        suite_id=None if request is None else request.suite_id,
        epoch_id=details["epoch"],
        record_count=details["records"],
        identifier_count=details["identifiers"],
        now=now,
    )
    audit.append(db, "match.refused", details)


def _abort_in_transaction(
    db: Database, record: sessions.SessionRecord, reason: str, now: int
) -> bool:
    if not sessions.abort_session(db, record.id, reason, now=now):
        return False
    audit.append(
        db,
        "match.aborted",
        {
            "ledger_id": record.id,
            "session": record.session_id,
            "advertiser": record.advertiser,
            "mode": record.mode,
            "epoch": record.epoch_id,
            "reason": reason,
        },
    )
    return True
