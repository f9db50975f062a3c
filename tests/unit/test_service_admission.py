"""Admission: stream caps, GetPolicy's rate, the opening's deadline, unopened streams in bulk."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.errors import DeadlineExceeded, LimitExceeded
from cleanroom.service.admission import (
    REFUSAL_REASONS,
    Admission,
    AdmissionLimits,
    first_message,
)
from cleanroom.service.unopened import UnopenedStreams
from cleanroom.store import audit, sessions
from cleanroom.store.database import Database, init_database, open_database


def test_streams_are_capped_per_advertiser_and_in_all() -> None:
    admission = Admission(AdmissionLimits(max_streams=3, max_streams_per_advertiser=2))
    a1, a2 = admission.stream("acme"), admission.stream("acme")
    with pytest.raises(LimitExceeded, match=r"acme already holds 2 streams.*= 2"):
        admission.stream("acme")
    b1 = admission.stream("beta")
    with pytest.raises(LimitExceeded, match="most streams at once \\(max_streams = 3\\)"):
        admission.stream("gamma")
    a1.release()
    a1.release()  # once only
    with admission.stream("gamma"):
        assert admission.tally("gamma").streams_open == 1
    assert admission.tally("gamma").streams_open == 0
    a2.release()
    b1.release()
    tallies = admission.tallies()
    assert (tallies["acme"].streams_open, tallies["acme"].streams_refused) == (0, 1)
    assert tallies["gamma"].streams_refused == 1


def test_get_policy_is_a_token_bucket_per_advertiser() -> None:
    now = [0.0]
    limits = AdmissionLimits(policy_calls_per_minute=6, policy_call_burst=2)
    admission = Admission(limits, clock=lambda: now[0])
    for _ in range(2):
        with admission.policy_call("acme"):
            pass
    with (
        pytest.raises(LimitExceeded, match=r"6 calls a minute per advertiser.*in 10\.0 s"),
        admission.policy_call("acme"),
    ):
        pass
    with admission.policy_call("beta"):  # its own bucket
        pass
    now[0] = 10.0  # one call a ten seconds
    with admission.policy_call("acme"):
        pass
    assert admission.tally("acme").policy_calls_refused == 1


def test_get_policy_calls_at_once_are_limited_for_everyone() -> None:
    admission = Admission(AdmissionLimits(policy_calls_at_once=1))
    with (
        admission.policy_call("acme"),
        pytest.raises(LimitExceeded, match="most GetPolicy calls at once"),
        admission.policy_call("beta"),
    ):
        pass
    with admission.policy_call("beta"):
        pass


def test_limits_must_make_sense() -> None:
    with pytest.raises(ValueError, match="max_streams_per_advertiser"):
        AdmissionLimits(max_streams_per_advertiser=0)
    with pytest.raises(ValueError, match="first_message_timeout"):
        AdmissionLimits(first_message_timeout=0)


def _stream(messages: list[str], gate: threading.Event) -> Iterator[str]:
    gate.wait(5)
    yield from messages


def test_the_first_message_is_waited_for_until_its_deadline() -> None:
    arrived = threading.Event()
    arrived.set()
    assert first_message(_stream(["open"], arrived), 1.0) == "open"
    assert first_message(_stream([], arrived), 1.0) is None
    silent = threading.Event()
    with pytest.raises(DeadlineExceeded, match=r"no opening message within 0\.2 s"):
        first_message(_stream(["late"], silent), 0.2)
    silent.set()  # the reading thread ends with the stream


def test_what_reading_raises_is_raised_to_the_caller() -> None:
    def failing() -> Iterator[str]:
        raise OSError("cut")
        yield "never"

    with pytest.raises(OSError, match="cut"):
        first_message(failing(), 1.0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    db, _ = init_database(tmp_path / "platform.db")
    db.close()
    return tmp_path / "platform.db"


def _rows(db_path: Path) -> list[sessions.SessionRecord]:
    with open_database(db_path) as db:
        return sessions.list_sessions(db)


def test_unopened_streams_are_written_at_most_once_an_interval(db_path: Path) -> None:
    now = [100.0]

    def connect() -> Database:
        return open_database(db_path)

    log = UnopenedStreams(connect, 60.0, clock=lambda: now[0], now=lambda: 1_700_000_000)
    log.note("acme", "closed unopened")  # the first at once
    for _ in range(500):
        log.note("acme", "sent no opening message within 10 s")
    log.note("beta", "closed unopened")
    assert [(r.advertiser, r.reason) for r in _rows(db_path)] == [
        ("acme", "1 stream closed unopened"),
        ("beta", "1 stream closed unopened"),
    ]
    log.flush()  # the server stops: what was counted is written
    rows = _rows(db_path)
    assert [(r.advertiser, r.state, r.mode) for r in rows][-1] == ("acme", "aborted", None)
    assert rows[-1].reason == "500 streams sent no opening message within 10 s"
    with open_database(db_path) as db:
        entries = [e for e in audit.entries(db.conn) if e.action == "match.aborted"]
    assert [e.details["streams"] for e in entries] == [1, 1, 500]
    assert entries[-1].details["ledger_id"] == rows[-1].id


def test_a_timer_writes_what_was_counted_once_the_interval_has_passed(db_path: Path) -> None:
    log = UnopenedStreams(lambda: open_database(db_path), 0.2)
    log.note("acme", "closed unopened")
    log.note("acme", "closed unopened")
    deadline = time.monotonic() + 10
    while len(_rows(db_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.reason for r in _rows(db_path)] == [
        "1 stream closed unopened",
        "1 stream closed unopened",
    ]


def test_streams_opened_a_minute_are_limited_per_advertiser() -> None:
    now = [0.0]
    limits = AdmissionLimits(max_streams_per_advertiser=5, streams_per_minute=30, stream_burst=3)
    admission = Admission(limits, clock=lambda: now[0])
    for _ in range(3):
        admission.stream("acme").release()
    with pytest.raises(LimitExceeded, match=r"may open 30 streams a minute.*in 2\.0 s"):
        admission.stream("acme")
    admission.stream("beta").release()  # its own rate
    now[0] = 2.0
    admission.stream("acme").release()
    assert admission.tally("acme").streams_refused == 1


def test_refusals_are_counted_by_advertiser_and_limit() -> None:
    now = [0.0]
    limits = AdmissionLimits(
        max_streams=2,
        max_streams_per_advertiser=1,
        stream_burst=2,
        policy_call_burst=1,
        policy_calls_at_once=1,
    )
    admission = Admission(limits, clock=lambda: now[0])
    held = admission.stream("acme")
    for advertiser in ("acme", "acme"):
        with pytest.raises(LimitExceeded):
            admission.stream(advertiser)  # acme holds its one stream
    beta = admission.stream("beta")
    with pytest.raises(LimitExceeded):
        admission.stream("gamma")  # two streams in all
    held.release()
    beta.release()
    admission.stream("acme").release()
    with pytest.raises(LimitExceeded):
        admission.stream("acme")  # its burst of two is spent
    # One call at once, in all: beta's waits for acme's.
    with admission.policy_call("acme"), pytest.raises(LimitExceeded), admission.policy_call("beta"):
        pass
    with pytest.raises(LimitExceeded), admission.policy_call("acme"):
        pass  # its burst of one is spent
    admission.note_unopened("beta", deadline=True)
    admission.note_unopened("beta")  # closed by the client: not a refusal
    assert admission.refusals() == {
        ("acme", "policy_calls_per_minute"): 1,
        ("acme", "streams_per_advertiser"): 2,
        ("acme", "streams_per_minute"): 1,
        ("beta", "first_message_deadline"): 1,
        ("beta", "policy_calls_at_once"): 1,
        ("gamma", "streams_in_all"): 1,
    }
    assert {reason for _, reason in admission.refusals()} == set(REFUSAL_REASONS)
    assert admission.tally("beta").streams_unopened == 2


def test_streams_ending_at_the_same_moment_are_written_once_then_counted(db_path: Path) -> None:
    # Two streams of one advertiser end at once, on two threads: the first is written at once,
    # alone; the second waits for the next write (here, the server stopping).
    advertisers = [f"adv{i}" for i in range(60)]
    log = UnopenedStreams(lambda: open_database(db_path), 60.0)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # thread switches between any two steps, as under load
    try:
        for advertiser in advertisers:
            both = threading.Barrier(2)

            def end(name: str = advertiser, barrier: threading.Barrier = both) -> None:
                barrier.wait()
                log.note(name, "closed unopened")

            threads = [threading.Thread(target=end) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(switch)
    written_at_once = [r.reason for r in _rows(db_path)]
    assert written_at_once == ["1 stream closed unopened"] * len(advertisers)
    log.flush()
    assert len(_rows(db_path)) == 2 * len(advertisers)
