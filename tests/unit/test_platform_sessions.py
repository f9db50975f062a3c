"""The platform's session glue, driven by a real advertiser role in-process (no network)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.errors import (
    BudgetExhausted,
    LimitExceeded,
    OutOfOrder,
    PolicyRefused,
    SessionAborted,
    StoreError,
)
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode, parse_policy
from cleanroom.protocol import AdvertiserRole
from cleanroom.service.epoch_summary import EpochSummaryCache
from cleanroom.service.platform_sessions import MatchSession, PlatformSessions
from cleanroom.service.session_memory import session_bytes
from cleanroom.store import audit, consent, epochs, sessions, users
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.importer import import_platform_csv

USERS = 120
POLICY = """
epsilon_per_release = 0.0
min_upload_records = 20
min_reported_count = 1

[advertisers.acme]
epsilon_per_release = 1.0
epsilon_budget = 1.5
max_sessions_per_day = 5

[advertisers.tiny]
max_upload_records = 20
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[BatchEngine]:
    with BatchEngine(workers=1) as in_process:
        yield in_process


@pytest.fixture
def db_path(tmp_path: Path, engine: BatchEngine) -> Path:
    path = tmp_path / "platform.db"
    database, _ = init_database(path)
    with database:
        csv = tmp_path / "users.csv"
        rows = [f"u{i},email,user{i}@example.com,signup,true" for i in range(USERS)]
        csv.write_text("user_id,type,value,source,ads_matching_consent\n" + "\n".join(rows) + "\n")
        import_platform_csv(database, csv)
        epochs.rotate(database, engine=engine)
    return path


@pytest.fixture
def platform(db_path: Path, engine: BatchEngine) -> PlatformSessions:
    return PlatformSessions(db_path, parse_policy(POLICY), engine=engine)


def _role(users: range, mode: Mode, engine: BatchEngine) -> AdvertiserRole:
    """An advertiser list holding ``user{i}@example.com`` for ``i`` in ``users``."""
    messages = [
        hash_message("email", identifier_digest("email", f"user{i}@example.com")) for i in users
    ]
    return AdvertiserRole(
        get_suite("x25519-sha512-ell2-ro"), mode, messages, range(len(messages)), engine=engine
    )


def _drive(session: MatchSession, role: AdvertiserRole, *, stop_before_w: bool = False) -> None:
    """Relay messages between the session and the role until the role is finished."""
    to_role = list(session.start())
    while to_role:
        replies = [m for reply in to_role for m in role.handle(reply)]
        to_role = []
        for message in replies:
            if stop_before_w and message.WhichOneof("round") == "encrypted_platform_set":
                return
            to_role += list(session.handle(message))
    assert role.finished


def _ledger(db_path: Path) -> list[sessions.SessionRecord]:
    with open_database(db_path) as db:
        return sessions.list_sessions(db)


def _actions(db_path: Path) -> list[str]:
    with open_database(db_path) as db:
        return [
            entry.action for entry in audit.entries(db.conn) if entry.action.startswith("match")
        ]


def test_a_count_session_completes_and_is_charged_before_the_result_goes_out(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(60, 160), Mode.COUNT, engine)  # users 60..119 exist: 60 match
    session = platform.open("acme", role.open_session())
    to_role = list(session.start())
    result_replies: Iterator[pb.ServerMessage] | None = None
    while result_replies is None:
        outgoing = [m for reply in to_role for m in role.handle(reply)]
        to_role = []
        for message in outgoing:
            replies = session.handle(message)
            if session.completed:
                result_replies = replies
                break
            to_role += list(replies)
    # Nothing of the result has been sent yet, and it is already charged and audited.
    (record,) = _ledger(db_path)
    assert (record.state, record.epsilon_charged, record.mode) == ("completed", 1.0, "count")
    assert _actions(db_path) == ["match.completed"]
    for reply in result_replies:
        for message in role.handle(reply):
            session.handle(message)
    session.close()
    assert role.result is not None and role.result.noise_applied
    assert platform.active_count() == 0


def test_an_audience_session_stores_the_matched_users(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(0, 40), Mode.AUDIENCE, engine)
    session = platform.open("beta", role.open_session())
    _drive(session, role)
    session.close()
    assert role.result is not None and role.result.count == 40
    (record,) = _ledger(db_path)
    assert record.audience_id is not None
    with open_database(db_path) as db:
        found = sessions.audience_summary(db, record.audience_id)
    assert found is not None
    assert found[1] == sorted(f"u{i}" for i in range(40))
    assert found[0].session_id == record.session_id == role.result.session_id.hex()


def test_a_session_closed_before_its_result_is_aborted_and_stores_nothing(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(0, 40), Mode.AUDIENCE, engine)
    session = platform.open("beta", role.open_session())
    _drive(session, role, stop_before_w=True)
    session.close("the client went away")
    (record,) = _ledger(db_path)
    assert (record.state, record.reason, record.audience_id) == (
        "aborted",
        "the client went away",
        None,
    )
    assert _actions(db_path) == ["match.aborted"]
    with open_database(db_path) as db:
        assert sessions.audience_summaries(db) == []


def test_an_abort_from_another_thread_wins_over_a_late_result(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(0, 40), Mode.AUDIENCE, engine)
    session = platform.open("beta", role.open_session())
    outgoing = [m for reply in session.start() for m in role.handle(reply)]
    assert platform.abort_all("the platform is stopping") == 1
    with pytest.raises(SessionAborted):
        for message in outgoing:
            session.handle(message)
    session.close()
    (record,) = _ledger(db_path)
    assert (record.state, record.epsilon_charged) == ("aborted", 0)
    with open_database(db_path) as db:
        assert sessions.audience_summaries(db) == []
    assert _actions(db_path) == ["match.aborted"]
    assert platform.wait_idle(0)


def test_a_second_open_session_is_refused_and_recorded(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    first = platform.open("acme", _role(range(30), Mode.COUNT, engine).open_session())
    with pytest.raises(PolicyRefused, match="already has a session open"):
        platform.open("acme", _role(range(30), Mode.COUNT, engine).open_session())
    first.close()
    first_row, second_row = _ledger(db_path)
    assert (first_row.state, second_row.state) == ("aborted", "refused")
    assert (second_row.reason or "").startswith("PolicyRefused")
    assert _actions(db_path) == ["match.refused", "match.aborted"]


def test_a_malformed_opening_is_refused_and_recorded(
    platform: PlatformSessions, db_path: Path
) -> None:
    with pytest.raises(OutOfOrder):
        platform.open("acme", pb.ClientMessage(close=pb.Close()))
    (record,) = _ledger(db_path)
    assert (record.state, record.mode, record.advertiser) == ("refused", None, "acme")
    assert record.reason is not None and record.reason.startswith("OutOfOrder")


def test_the_budget_is_checked_before_any_work(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(30), Mode.COUNT, engine)
    session = platform.open("acme", role.open_session())
    _drive(session, role)
    session.close()
    with pytest.raises(BudgetExhausted):
        platform.open("acme", _role(range(30), Mode.COUNT, engine).open_session())
    assert [r.state for r in _ledger(db_path)] == ["completed", "refused"]
    with open_database(db_path) as db:
        assert sessions.spent_epsilon(db, "acme", 1) == 1.0


def test_too_many_identifiers_are_refused_before_the_set_is_loaded(
    platform: PlatformSessions, engine: BatchEngine
) -> None:
    opening = _role(range(20), Mode.COUNT, engine).open_session()
    opening.open_session.identifier_count = 61  # more than 3 per record for 20 records
    with pytest.raises(LimitExceeded, match="identifiers"):
        platform.open("tiny", opening)


def test_no_epoch_is_a_recorded_refusal(tmp_path: Path, engine: BatchEngine) -> None:
    path = tmp_path / "empty.db"
    init_database(path)[0].close()
    empty = PlatformSessions(path, parse_policy(POLICY), engine=engine)
    with pytest.raises(StoreError, match="epoch rotate"):
        empty.open("acme", _role(range(30), Mode.COUNT, engine).open_session())
    assert [r.state for r in _ledger(path)] == ["refused"]


def test_recover_aborts_sessions_a_crash_left_open(
    platform: PlatformSessions, db_path: Path
) -> None:
    with open_database(db_path) as db, transaction(db.conn):
        sessions.start_session(
            db,
            advertiser="acme",
            mode="count",
            suite_id="x25519-sha512-ell2-ro",
            epoch_id=1,
            record_count=30,
            identifier_count=30,
        )
    assert platform.recover() == 1
    assert platform.recover() == 0
    (record,) = _ledger(db_path)
    assert record.state == "aborted" and "found open at start" in (record.reason or "")
    assert _actions(db_path) == ["match.aborted"]


def test_policy_info_counts_what_a_session_would_stream_and_what_is_left(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    with open_database(db_path) as db:
        consent.revoke(db, "u3")
    info = platform.policy_info("acme")
    assert info.platform_set_size == USERS - 1
    assert (info.epsilon_budget, info.epsilon_remaining) == (1.5, 1.5)
    assert (info.max_sessions_per_day, info.sessions_remaining_today) == (5, 5)
    assert list(info.suites) == ["x25519-sha512-ell2-ro"] and info.epoch_id == 1
    role = _role(range(30), Mode.COUNT, engine)
    session = platform.open("acme", role.open_session())
    _drive(session, role)
    session.close()
    info = platform.policy_info("acme")
    assert (info.epsilon_remaining, info.sessions_remaining_today) == (0.5, 4)


# -- GetPolicy's epoch summary: computed once, again only when it may have changed -------------


def test_policy_info_is_computed_once_while_nothing_changes(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    summaries = platform.epoch_summaries
    for advertiser in ("acme", "tiny", "acme"):
        assert platform.policy_info(advertiser).platform_set_size == USERS
    assert summaries.computations == 1
    # A session's audit entries and a certificate leave eligibility alone: still cached.
    role = _role(range(30), Mode.COUNT, engine)
    session = platform.open("acme", role.open_session())
    _drive(session, role)
    session.close()
    with open_database(db_path) as db, transaction(db.conn):
        audit.append(db, "tls.issue", {"advertiser": "beta", "valid_days": 1})
    assert platform.policy_info("tiny").platform_set_size == USERS
    assert summaries.computations == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda db: consent.revoke(db, "u3"),
        lambda db: consent.set_opt_out(db, "u4", "sale_opt_out", True),
        lambda db: users.delete_user(db, "u5"),
    ],
)
def test_a_consent_change_in_another_connection_is_seen_by_the_next_call(
    platform: PlatformSessions, db_path: Path, change: Callable[[Database], object]
) -> None:
    assert platform.policy_info("acme").platform_set_size == USERS
    with open_database(db_path) as db:  # as `cleanroom platform consent …` would, elsewhere
        change(db)
    assert platform.policy_info("acme").platform_set_size == USERS - 1
    assert platform.epoch_summaries.computations == 2


def test_a_rotation_or_refresh_is_seen_by_the_next_call(
    platform: PlatformSessions, db_path: Path, tmp_path: Path, engine: BatchEngine
) -> None:
    assert platform.policy_info("acme").epoch_id == 1
    with open_database(db_path) as db:
        epochs.rotate(db, engine=engine)
    assert platform.policy_info("acme").epoch_id == 2
    more = tmp_path / "more.csv"
    more.write_text("user_id,type,value,source,ads_matching_consent\nnew,email,n@x.org,crm,true\n")
    with open_database(db_path) as db:
        import_platform_csv(db, more)
        epochs.refresh(db, engine=engine)
    info = platform.policy_info("acme")
    assert (info.epoch_id, info.platform_set_size) == (2, USERS + 1)


def test_the_summary_is_computed_again_after_its_time(db_path: Path, engine: BatchEngine) -> None:
    now = [0.0]
    platform = PlatformSessions(db_path, parse_policy(POLICY), engine=engine)
    platform.epoch_summaries = EpochSummaryCache(max_age=60.0, clock=lambda: now[0])
    platform.policy_info("acme")
    now[0] = 59.0
    platform.policy_info("acme")
    assert platform.epoch_summaries.computations == 1
    now[0] = 61.0  # a consent that expired by the clock alone changes N without any write
    platform.policy_info("acme")
    assert platform.epoch_summaries.computations == 2


def test_a_session_hands_its_fresh_size_to_the_summary(
    platform: PlatformSessions, db_path: Path, engine: BatchEngine
) -> None:
    role = _role(range(30), Mode.COUNT, engine)
    session = platform.open("acme", role.open_session())
    session.close()
    assert platform.policy_info("acme").platform_set_size == USERS
    assert platform.epoch_summaries.computations == 0  # the session's own count was used


def test_connections_are_kept_between_operations_but_not_after_a_failure(
    platform: PlatformSessions,
) -> None:
    with platform.connect() as first:
        pass
    with platform.connect() as again:
        assert again is first  # kept, with its page cache and the write-ahead log left alone
    with pytest.raises(ZeroDivisionError), platform.connect() as failed:
        assert failed is first
        1 / 0  # noqa: B018
    with platform.connect() as fresh:
        assert fresh is not first
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        first.conn.execute("SELECT 1")


def test_a_connection_left_in_a_transaction_is_not_handed_on(platform: PlatformSessions) -> None:
    with platform.connect() as db:
        db.conn.execute("BEGIN")
    with platform.connect() as other:
        assert other is not db
        assert not other.conn.in_transaction


def test_connections_used_at_once_are_distinct_and_closed_by_close(
    platform: PlatformSessions,
) -> None:
    with platform.connect() as one, platform.connect() as two:
        assert one is not two
    platform.close()
    for db in (one, two):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            db.conn.execute("SELECT 1")


def _memory_platform(db_path: Path, engine: BatchEngine, budget: int) -> PlatformSessions:
    return PlatformSessions(db_path, parse_policy(POLICY), engine=engine, session_memory=budget)


# A session of 30 identifiers against the platform's set: U takes this much, and W the rest.
U_30 = session_bytes(30, 0)
WHOLE_30 = session_bytes(30, USERS)


def test_an_opening_that_would_not_fit_beside_the_sessions_in_progress_is_refused(
    db_path: Path, engine: BatchEngine
) -> None:
    platform = _memory_platform(db_path, engine, WHOLE_30 + U_30 - 1)
    role = _role(range(30), Mode.COUNT, engine)
    first = platform.open("acme", role.open_session())
    assert platform.memory.held == 0  # an opening takes nothing
    _drive(first, role, stop_before_w=True)
    assert platform.memory.held == U_30  # U has arrived
    with pytest.raises(LimitExceeded, match="try again when one has ended"):
        platform.open("other", _role(range(30), Mode.COUNT, engine).open_session())
    first.close()
    assert platform.memory.held == 0
    role = _role(range(30), Mode.COUNT, engine)
    second = platform.open("other", role.open_session())  # room again
    _drive(second, role)
    assert platform.memory.held == WHOLE_30
    second.close()
    assert platform.memory.held == 0
    first_row, refused, completed = _ledger(db_path)
    assert (first_row.state, refused.state, completed.state) == ("aborted", "refused", "completed")
    assert (refused.reason or "").startswith("LimitExceeded: the sessions in progress hold")


def test_a_chunk_that_does_not_fit_ends_its_session(db_path: Path, engine: BatchEngine) -> None:
    platform = _memory_platform(db_path, engine, WHOLE_30 + U_30 - 1)
    first_role, second_role = (_role(range(30), Mode.COUNT, engine) for _ in "ab")
    first = platform.open("acme", first_role.open_session())
    second = platform.open("other", second_role.open_session())  # nothing held yet: it fits
    _drive(first, first_role)  # completed, and holds its sets until its call ends
    with pytest.raises(LimitExceeded, match=r"this session's next chunk needs 3\.8 KiB"):
        _drive(second, second_role)
    second.close("LimitExceeded: the session memory is full")
    assert platform.memory.held == WHOLE_30
    first.close()
    assert platform.memory.held == 0
    assert [r.state for r in _ledger(db_path)] == ["completed", "aborted"]


def test_a_session_that_only_opened_holds_nothing(db_path: Path, engine: BatchEngine) -> None:
    # Announcing a large set and sending none of it shuts nobody out: memory is taken as it is
    # used, so the budget here is one session's worth and both open.
    platform = _memory_platform(db_path, engine, WHOLE_30)
    idle = platform.open("acme", _role(range(30), Mode.COUNT, engine).open_session())
    role = _role(range(30), Mode.COUNT, engine)
    busy = platform.open("other", role.open_session())
    _drive(busy, role)
    assert busy.completed and platform.memory.held == WHOLE_30
    busy.close()
    idle.close()
    assert platform.memory.held == 0
