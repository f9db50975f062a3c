"""The session ledger: states, the one-open-session rule, epsilon and daily counts, audiences."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cleanroom.store import audit, schema, sessions
from cleanroom.store.audiences import store_audience
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.importer import import_platform_csv

DAY = 86_400
NOON = 20_000 * DAY + DAY // 2  # some day, at 12:00 UTC


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    with database:
        yield database


def _start(db: Database, advertiser: str = "acme", *, epoch: int = 1, now: int = NOON) -> int:
    with transaction(db.conn):
        return sessions.start_session(
            db,
            advertiser=advertiser,
            mode="count",
            suite_id="x25519-sha512-ell2-ro",
            epoch_id=epoch,
            record_count=1000,
            identifier_count=1500,
            now=now,
        )


def _complete(db: Database, row: int, epsilon: float) -> bool:
    with transaction(db.conn):
        return sessions.complete_session(
            db,
            row,
            epsilon_charged=epsilon,
            noise_applied=epsilon > 0,
            result_count=420,
            reported_as="420",
            now=NOON + 60,
        )


def _abort(db: Database, row: int) -> bool:
    with transaction(db.conn):
        return sessions.abort_session(db, row, "client went away", now=NOON + 60)


def test_a_session_goes_from_open_to_completed(db: Database) -> None:
    row = _start(db)
    with transaction(db.conn):
        sessions.attach_session_id(db, row, "ab" * 16)
    assert sessions.has_open_session(db, "acme")
    assert _complete(db, row, 0.5)
    record = sessions.find_session(db, row)
    assert record is not None
    assert (record.state, record.session_id, record.epsilon_charged) == (
        "completed",
        "ab" * 16,
        0.5,
    )
    assert (record.result_count, record.reported_as, record.noise_applied) == (420, "420", True)
    assert (record.started_at, record.finished_at) == (NOON, NOON + 60)
    assert not sessions.has_open_session(db, "acme")
    assert record.to_dict()["started_at"].endswith("T12:00:00Z")


def test_an_advertiser_has_at_most_one_open_session(db: Database) -> None:
    _start(db)
    with pytest.raises(sqlite3.IntegrityError):
        _start(db)
    _start(db, "beta")  # another advertiser is not affected
    assert [r.advertiser for r in sessions.open_sessions(db)] == ["acme", "beta"]


def test_an_aborted_session_cannot_complete_and_charges_nothing(db: Database) -> None:
    row = _start(db)
    assert _abort(db, row)
    assert not _complete(db, row, 0.5)
    assert not _abort(db, row)  # once only: a second abort must not be audited twice
    record = sessions.find_session(db, row)
    assert record is not None and record.state == "aborted"
    assert record.reason == "client went away" and record.epsilon_charged == 0
    assert sessions.spent_epsilon(db, "acme", 1) == 0


def test_a_completed_session_cannot_be_aborted(db: Database) -> None:
    row = _start(db)
    assert _complete(db, row, 0.5)
    assert not _abort(db, row)
    assert sessions.spent_epsilon(db, "acme", 1) == 0.5


def test_spent_epsilon_sums_completed_sessions_of_one_advertiser_and_epoch(db: Database) -> None:
    for epsilon in (0.5, 0.25):
        _complete(db, _start(db), epsilon)
    _complete(db, _start(db, epoch=2), 4.0)  # another epoch
    _complete(db, _start(db, "beta"), 2.0)  # another advertiser
    _abort(db, _start(db))
    assert sessions.spent_epsilon(db, "acme", 1) == 0.75
    assert sessions.spent_epsilon(db, "acme", 2) == 4.0
    assert sessions.spent_epsilon(db, "nobody", 1) == 0.0


def test_sessions_today_counts_opened_sessions_of_the_utc_day(db: Database) -> None:
    _complete(db, _start(db, now=NOON - DAY), 0)  # yesterday
    _complete(db, _start(db, now=NOON - DAY // 2), 0)  # today, 00:00 UTC exactly
    _abort(db, _start(db, now=NOON))  # aborted sessions opened: they count
    _start(db, now=NOON + 10)  # still open: counts
    with transaction(db.conn):
        sessions.record_refused_session(db, advertiser="acme", reason="PolicyRefused: no", now=NOON)
    assert sessions.sessions_today(db, "acme", now=NOON + 20) == 3
    assert sessions.sessions_today(db, "acme", now=NOON + DAY) == 0
    assert sessions.sessions_today(db, "beta", now=NOON) == 0


def test_a_refused_session_is_recorded_with_what_is_known(db: Database) -> None:
    with transaction(db.conn):
        row = sessions.record_refused_session(
            db, advertiser="acme", reason="OutOfOrder: not an opening", now=NOON
        )
    record = sessions.find_session(db, row)
    assert record is not None
    assert (record.state, record.mode, record.session_id) == ("refused", None, None)
    assert record.finished_at == NOON
    assert not sessions.has_open_session(db, "acme")
    assert [r.id for r in sessions.list_sessions(db, advertiser="acme")] == [row]


def test_ledger_changes_need_the_auditing_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError, match="transaction"):
        sessions.start_session(
            db,
            advertiser="acme",
            mode="count",
            suite_id="x",
            epoch_id=1,
            record_count=1,
            identifier_count=1,
        )
    with pytest.raises(RuntimeError, match="transaction"):
        sessions.record_refused_session(db, advertiser="acme", reason="r")


def test_audiences_are_summarized_with_their_members(db: Database, tmp_path: Path) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text(
        "user_id,type,value,source,ads_matching_consent\n"
        "u1,email,a@example.com,signup,true\nu2,email,b@example.com,signup,true\n"
    )
    import_platform_csv(db, csv)
    pairs = db.conn.execute("SELECT user_row, id FROM identifiers ORDER BY id").fetchall()
    users, identifiers = (np.array([p[i] for p in pairs], np.int64) for i in (0, 1))
    with transaction(db.conn):
        audience = store_audience(db, "cd" * 16, "acme", users, identifiers).audience_id
    (summary,) = sessions.audience_summaries(db)
    assert (summary.id, summary.advertiser, summary.size) == (audience, "acme", 2)
    found = sessions.audience_summary(db, audience)
    assert found is not None and found[1] == ["u1", "u2"]
    assert found[0].to_dict()["created"].endswith("Z")
    assert sessions.audience_summary(db, audience + 1) is None


def test_a_version_1_database_gains_the_ledger_and_a_signed_log_on_open(tmp_path: Path) -> None:
    # A database as version 1 made it: its schema, stamped as ours, before any ledger.
    path = tmp_path / "platform.db"
    conn = sqlite3.connect(path, isolation_level=None)
    schema._run_script(
        conn,
        schema._SCHEMA_V1
        + f"PRAGMA application_id = {schema.APPLICATION_ID};\nPRAGMA user_version = 1;\n"
        + "INSERT INTO meta VALUES ('instance_id', '0123456789abcdef');\n",
    )
    conn.close()
    with open_database(path) as reopened:
        version = reopened.conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == schema.SCHEMA_VERSION == 4
        assert sessions.list_sessions(reopened) == []
        (entry,) = audit.entries(reopened.conn)
        assert entry.action == "schema.migrate" and entry.details["from_schema"] == 1
        checked = audit.verify(reopened)
        assert (checked.entries, checked.first_signed) == (1, 1)
