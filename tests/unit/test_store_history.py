"""Eligibility samples: recorded when the counts change or an hour passed, read back thinned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.store.database import Database, init_database
from cleanroom.store.history import (
    HEARTBEAT_SECONDS,
    RETENTION_SECONDS,
    eligibility_samples,
    record_eligibility_sample,
)

T0 = 1_800_000_000
EXCLUDED = {"revoked": 1, "no_consent": 2}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    with database:
        yield database


def test_a_sample_is_recorded_when_the_counts_change_or_an_hour_passed(db: Database) -> None:
    assert record_eligibility_sample(db, 10, EXCLUDED, now=T0)
    assert not record_eligibility_sample(db, 10, EXCLUDED, now=T0 + 60)
    assert record_eligibility_sample(db, 9, {**EXCLUDED, "revoked": 2}, now=T0 + 120)
    assert record_eligibility_sample(
        db, 9, {**EXCLUDED, "revoked": 2}, now=T0 + 120 + HEARTBEAT_SECONDS
    )
    samples = eligibility_samples(db, since=T0, points=1000)
    assert [(s.at - T0, s.eligible) for s in samples] == [
        (0, 10),
        (120, 9),
        (120 + HEARTBEAT_SECONDS, 9),
    ]
    assert samples[1].excluded == {"no_consent": 2, "revoked": 2}


def test_reads_are_thinned_to_the_last_sample_of_each_stretch(db: Database) -> None:
    for minute in range(600):
        record_eligibility_sample(db, minute, EXCLUDED, now=T0 + 60 * minute)
    samples = eligibility_samples(db, since=T0, points=10)
    assert 9 <= len(samples) <= 11
    assert samples[-1].eligible == 599  # the latest is always kept
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    assert eligibility_samples(db, since=T0 + 60 * 600, points=10) == []


def test_samples_older_than_the_retention_are_removed(db: Database) -> None:
    record_eligibility_sample(db, 1, EXCLUDED, now=T0)
    record_eligibility_sample(db, 2, EXCLUDED, now=T0 + RETENTION_SECONDS + 1)
    assert [s.eligible for s in eligibility_samples(db, since=0, points=10)] == [2]
