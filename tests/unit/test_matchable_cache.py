"""The matchable set kept between sessions: handed on only while a fresh one would be the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from cleanroom.crypto import BatchEngine
from cleanroom.store import audit, consent, epochs, sources, users
from cleanroom.store.changes import CONSENT_IMPORT_STARTED, IMPORT_REPORTED, IMPORT_STARTED
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.epochs import MatchableEpoch, matchable_epoch
from cleanroom.store.fields import format_timestamp
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.matchable_cache import MatchableCache, consent_horizon

START = 1_900_000_000  # the tests' clock: far from the wall clock, so nothing depends on it
USERS = 30
EXPIRES = START + 100  # u0's consent ends then
STARTS = START + 200  # u1's second email's consent starts then


@pytest.fixture(scope="module")
def engine() -> Iterator[BatchEngine]:
    with BatchEngine(workers=1) as in_process:
        yield in_process


@pytest.fixture
def clock() -> list[int]:
    return [START]


@pytest.fixture
def db_path(tmp_path: Path, engine: BatchEngine, clock: list[int]) -> Path:
    path = tmp_path / "platform.db"
    database, _ = init_database(path)
    database.close()
    rows = [f"u{i},email,user{i}@example.com,signup,true,," for i in range(USERS)]
    rows[0] = f"u0,email,user0@example.com,signup,true,,{format_timestamp(EXPIRES)}"
    rows.append(f"u1,email,later1@example.com,signup,true,{format_timestamp(STARTS)},")
    rows.append("u2,email,shared@example.com,crm,true,,")
    rows.append("u3,email,shared@example.com,crm,true,,")  # one element, two owners
    csv = tmp_path / "users.csv"
    header = "user_id,type,value,source,ads_matching_consent,consent_at,expires_at"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    with open_database(path, clock=lambda: clock[0]) as db:
        import_platform_csv(db, csv)
        epochs.rotate(db, engine=engine)
    return path


@pytest.fixture
def db(db_path: Path, clock: list[int]) -> Iterator[Database]:
    with open_database(db_path, clock=lambda: clock[0]) as database:
        yield database


def same(a: MatchableEpoch, b: MatchableEpoch) -> bool:
    return (
        a.epoch == b.epoch
        and np.array_equal(a.elements, b.elements)
        and np.array_equal(a.user_rows, b.user_rows)
        and np.array_equal(a.identifier_ids, b.identifier_ids)
        and all(np.array_equal(x, y) for x, y in zip(a.other_owners, b.other_owners, strict=True))
        and np.array_equal(a.other_identifiers, b.other_identifiers)
    )


def test_the_set_is_kept_while_nothing_changes(db: Database) -> None:
    cache = MatchableCache()
    first = cache.get(db)
    assert cache.get(db) is first
    assert cache.computations == 1
    assert same(first, matchable_epoch(db))
    assert len(first.elements) == USERS + 1  # the shared email once; the later consent not yet
    assert len(first.other_owners[0]) == 1


def test_a_sessions_audit_entries_keep_the_set(db: Database) -> None:
    cache = MatchableCache()
    first = cache.get(db)
    with transaction(db.conn):
        audit.append(db, "match.completed", {"session": "ab"})
        audit.append(db, "tls.issued", {"name": "acme"})
    assert cache.get(db) is first
    assert cache.computations == 1


def _revoke(db: Database) -> None:
    consent.revoke(db, "u5")


def _opt_out(db: Database) -> None:
    consent.set_opt_out(db, "u6", "targeted_ads_opt_out", True)


def _delete(db: Database) -> None:
    users.delete_user(db, "u7")


def _deny_source(db: Database) -> None:
    sources.deny_sources(db, ["crm"])


def _grant_back(db: Database) -> None:
    consent.revoke(db, "u8")
    cache = MatchableCache()
    cache.get(db)  # a set without u8, then u8 back
    consent.grant(db, "u8")


def _consent_file(db: Database) -> None:
    path = db.path.parent / "changes.csv"
    path.write_text("user_id,purpose,value\nu9,ads_matching,false\n")
    consent.import_consent_csv(db, path)


def _import(db: Database) -> None:
    path = db.path.parent / "more.csv"
    path.write_text(
        "user_id,type,value,source,ads_matching_consent\nu10,email,user10@example.com,signup,false\n"
    )
    import_platform_csv(db, path)


@pytest.mark.parametrize(
    "change", [_revoke, _opt_out, _delete, _deny_source, _grant_back, _consent_file, _import]
)
def test_a_change_in_another_connection_is_seen_by_the_next_session(
    db: Database, db_path: Path, clock: list[int], change: Callable[[Database], None]
) -> None:
    cache = MatchableCache()
    before = cache.get(db)
    with open_database(db_path, clock=lambda: clock[0]) as other:
        change(other)
    after = cache.get(db)
    assert cache.computations == 2
    assert same(after, matchable_epoch(db))
    if change is not _grant_back:
        assert len(after.elements) < len(before.elements)


def test_a_rotation_or_refresh_computes_again(
    db: Database, engine: BatchEngine, clock: list[int]
) -> None:
    cache = MatchableCache()
    cache.get(db)
    clock[0] = STARTS  # u1's second email is eligible now: a refresh appends it
    assert cache.computations == 1
    epochs.refresh(db, engine=engine)
    refreshed = cache.get(db)
    assert cache.computations == 2
    assert same(refreshed, matchable_epoch(db))
    epochs.rotate(db, engine=engine)
    rotated = cache.get(db)
    assert rotated.epoch.epoch_id == refreshed.epoch.epoch_id + 1
    assert cache.computations == 3


def test_a_consent_that_ends_by_the_clock_alone_ends_the_set(
    db: Database, clock: list[int]
) -> None:
    cache = MatchableCache()
    first = cache.get(db)
    assert consent_horizon(db, START) == EXPIRES
    clock[0] = EXPIRES - 1
    assert cache.get(db) is first
    clock[0] = EXPIRES  # expired from this second on
    after = cache.get(db)
    assert cache.computations == 2
    assert len(after.elements) == len(first.elements) - 1
    assert same(after, matchable_epoch(db))
    assert consent_horizon(db, EXPIRES) == STARTS


def test_a_clock_that_went_back_computes_again(db: Database, clock: list[int]) -> None:
    cache = MatchableCache()
    clock[0] = EXPIRES
    cache.get(db)
    clock[0] = EXPIRES - 1  # u0 is eligible again at this time
    again = cache.get(db)
    assert cache.computations == 2
    assert same(again, matchable_epoch(db))


@pytest.mark.parametrize("started", [IMPORT_STARTED, CONSENT_IMPORT_STARTED])
def test_nothing_is_kept_while_a_bulk_import_has_not_reported(db: Database, started: str) -> None:
    with transaction(db.conn):
        audit.append(db, started, {"file": "users.csv"})  # an import running, or one that died
    cache = MatchableCache()
    cache.get(db)
    cache.get(db)
    assert cache.computations == 2
    with transaction(db.conn):
        audit.append(db, IMPORT_REPORTED, {})
    if started == IMPORT_STARTED:
        first = cache.get(db)
        assert cache.get(db) is first
        assert cache.computations == 3


def test_the_kept_arrays_cannot_be_changed_by_a_session(db: Database) -> None:
    kept = MatchableCache().get(db)
    with pytest.raises(ValueError, match="read-only"):
        kept.elements[0, 0] ^= 1
    with pytest.raises(ValueError, match="read-only"):
        kept.user_rows[0] = 0
