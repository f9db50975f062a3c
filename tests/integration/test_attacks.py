"""Known attacks on customer-list matching, each run against a real platform.

One platform for the module, built with the real CLI (init, import, epoch rotate, issue-cert)
and served by ``cleanroom platform serve --workers 1`` as a subprocess on port 0 over mTLS. The
advertisers attack it with the real ``cleanroom match`` CLI and, where an attacker would use a
client of its own (one that skips the CLI's own policy checks, or replays recorded messages),
with raw gRPC stubs around the real :class:`~cleanroom.protocol.AdvertiserRole`.

- the differencing attack (Venkatadri et al. 2018): L, then L plus a victim, until the privacy
  budget refuses (the statistics of the noise are in tests/property/test_differencing_attack.py);
- a list below ``min_upload_records`` (a list of one is a membership test);
- a victim padded with the advertiser's made-up rows: still only a noisy, thresholded count;
- messages recorded in one session replayed into another, or sent in another's stream;
- identifiers collected for security (two_factor, recovery, security) or from other users'
  address books (contact_upload) never match, in any mode, whatever their consent flag says.
"""

from __future__ import annotations

import csv
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from _match_stream import MatchStream, run_role
from _platform_processes import Server, build_platform

from cleanroom import tls
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.errors import WrongSession
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode
from cleanroom.protocol import ERROR_NAME_KEY, AdvertiserResult, AdvertiserRole
from cleanroom.store import sessions
from cleanroom.store.database import open_database
from cleanroom.store.eligibility import DEFAULT_PERMITTED_SOURCES, NEVER_PERMITTED_SOURCES

TIMEOUT = 60.0
EPOCH_ID = 1
SUITE_ID = "x25519-sha512-ell2-ro"
NEVER = sorted(NEVER_PERMITTED_SOURCES)
PERMITTED = sorted(DEFAULT_PERMITTED_SOURCES)

# Users whose email was given at signup (matchable) but whose phone came from a never-permitted
# source: the Twitter case. Then users with nothing but never-permitted identifiers. Then the
# ordinary users the other attacks are about.
TWITTER_CASE = 40
SECURITY_ONLY = 40
ORDINARY = 300

# "padder" has no table of its own: it gets the defaults of DESIGN §7 (min_upload_records 1000,
# min_reported_count 100, epsilon_per_release 0.5, epsilon_budget 8.0).
POLICY = """
[advertisers.differ]
# A list of 100 is enough for the test; the budget pays for exactly two releases of 0.5.
min_upload_records = 100
epsilon_budget = 1.0

[advertisers.snoop]
# No noise, no threshold: an exact count, so "no match" cannot hide in the noise.
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
modes_allowed = ["count", "audience", "ids"]

[advertisers.replayer]
# Exact counts, so a replayed message that slipped through would show in the result.
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10

[advertisers.bystander]
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
"""
ADVERTISERS = ("differ", "padder", "snoop", "replayer", "bystander")

Customer = tuple[str, str]
"""An advertiser's record: (email, phone), either may be empty."""


@dataclass
class Platform:
    root: Path
    db: Path
    address: str
    twitter_case: list[Person]
    security_only: list[Person]
    ordinary: list[Person]
    outsiders: list[Person]  # people the platform does not know
    engine: BatchEngine

    def channel(self, advertiser: str) -> grpc.Channel:
        credentials = tls.channel_credentials(self.root / advertiser)
        return grpc.secure_channel(self.address, credentials)


def _write_platform_csv(
    path: Path, twitter: list[Person], security: list[Person], ordinary: list[Person]
) -> None:
    rows = [("user_id", "type", "value", "source", "ads_matching_consent")]
    for i, person in enumerate(twitter):
        rows.append((person.user_id, "email", person.email, PERMITTED[i % len(PERMITTED)], "true"))
        rows.append((person.user_id, "phone", person.phone, NEVER[i % len(NEVER)], "true"))
    for i, person in enumerate(security):
        rows.append((person.user_id, "email", person.email, NEVER[i % len(NEVER)], "true"))
        rows.append((person.user_id, "phone", person.phone, NEVER[(i + 1) % len(NEVER)], "true"))
    for person in ordinary:
        rows.append((person.user_id, "email", person.email, "signup", "true"))
        rows.append((person.user_id, "phone", person.phone, "profile", "true"))
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("attacks")
    people = generate_people(TWITTER_CASE + SECURITY_ONLY + ORDINARY, seed=41)
    twitter = people[:TWITTER_CASE]
    security = people[TWITTER_CASE : TWITTER_CASE + SECURITY_ONLY]
    ordinary = people[TWITTER_CASE + SECURITY_ONLY :]
    known = {p.email for p in people} | {p.phone for p in people}
    outsiders = [
        p for p in generate_people(200, seed=43) if p.email not in known and p.phone not in known
    ]
    _write_platform_csv(root / "users.csv", twitter, security, ordinary)
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    db = build_platform(root, root / "users.csv", ADVERTISERS)
    server = Server(db, root / "policy.toml", "--workers", "1")
    engine = BatchEngine(workers=1)
    try:
        yield Platform(root, db, server.address, twitter, security, ordinary, outsiders, engine)
    finally:
        engine.close()
        server.stop()


# -- the advertiser's side: the real CLI, and a client of the attacker's own -----------------------

_LIST_NUMBERS = itertools.count(1)


def write_list(platform: Platform, customers: list[Customer]) -> Path:
    path = platform.root / f"list{next(_LIST_NUMBERS)}.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["record_id", "email", "phone", "marketing_consent"])
        writer.writerows(
            [f"c{i}", email, phone, "yes"] for i, (email, phone) in enumerate(customers)
        )
    return path


def cli_match(
    capsys: pytest.CaptureFixture[str],
    platform: Platform,
    advertiser: str,
    customers: list[Customer],
    mode: str,
    *extra: str | Path,
) -> tuple[int, dict[str, Any] | None, str]:
    """``cleanroom match --json``: exit code, the report (on success) and stderr."""
    capsys.readouterr()
    code = main(
        [
            "match",
            "--server",
            platform.address,
            "--tls-dir",
            str(platform.root / advertiser),
            "--input",
            str(write_list(platform, customers)),
            "--mode",
            mode,
            "--json",
            "--workers",
            "1",
            *map(str, extra),
        ]
    )
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def own_client_role(platform: Platform, customers: list[Customer], mode: Mode) -> AdvertiserRole:
    """The protocol role without the CLI: no client-side policy check before the session."""
    messages, record_ids = [], []
    for record, (email, phone) in enumerate(customers):
        for kind, value in (("email", email), ("phone", phone)):
            if value:
                messages.append(hash_message(kind, identifier_digest(kind, value)))
                record_ids.append(record)
    role = AdvertiserRole(get_suite(SUITE_ID), mode, messages, record_ids, engine=platform.engine)
    role.encrypt_list()
    return role


def run_session(
    channel: grpc.Channel, role: AdvertiserRole
) -> tuple[AdvertiserResult, MatchStream]:
    stream = run_role(channel, role, TIMEOUT)
    assert role.finished and role.result is not None
    return role.result, stream


def refused_at_open(platform: Platform, advertiser: str, role: AdvertiserRole) -> grpc.RpcError:
    with platform.channel(advertiser) as channel, pytest.raises(grpc.RpcError) as caught:
        run_session(channel, role)
    return caught.value


def error_name(error: Any) -> str | None:
    return dict(error.trailing_metadata() or ()).get(ERROR_NAME_KEY)


# -- the platform's records ------------------------------------------------------------------------


def ledger(platform: Platform, advertiser: str) -> list[sessions.SessionRecord]:
    with open_database(platform.db) as db:
        return sessions.list_sessions(db, advertiser=advertiser)


def spent(platform: Platform, advertiser: str) -> float:
    with open_database(platform.db) as db:
        return sessions.spent_epsilon(db, advertiser, EPOCH_ID)


def settled(platform: Platform, advertiser: str) -> sessions.SessionRecord:
    """The advertiser's last session once it is no longer open (the server ends it after the
    call's status went out)."""
    deadline = time.monotonic() + 15
    while (last := ledger(platform, advertiser)[-1]).state == "open":
        assert time.monotonic() < deadline, f"the last session of {advertiser} stays open"
        time.sleep(0.05)
    return last


def emails(people: list[Person]) -> list[Customer]:
    return [(p.email, "") for p in people]


def assert_noisy_release(report: dict[str, Any], *, remaining: float) -> None:
    assert report["noise_applied"] is True
    assert (report["epsilon_spent"], report["epsilon_remaining"]) == (0.5, remaining)
    if report["count"] is None:
        assert report["reported_as"] == "fewer than 100"
    else:
        assert report["count"] >= 100 and report["reported_as"] == str(report["count"])


# -- the differencing attack and the budget --------------------------------------------------------


def test_differencing_attack_spends_the_budget_and_the_next_session_is_refused(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    # L matches 99 users: without noise, "fewer than 100" or "100" would tell the victim apart.
    victim = platform.ordinary[-1]
    list_l = emails(platform.ordinary[:99]) + emails(platform.outsiders[:60])
    list_l_victim = [*list_l, (victim.email, "")]

    code, first, err = cli_match(capsys, platform, "differ", list_l, "count")
    assert code == 0, err
    assert first is not None
    assert_noisy_release(first, remaining=0.5)
    code, second, err = cli_match(capsys, platform, "differ", list_l_victim, "count")
    assert code == 0, err
    assert second is not None
    assert_noisy_release(second, remaining=0.0)
    assert spent(platform, "differ") == 1.0

    # A third look (to average the noise away) is refused by the CLI before it hashes...
    sessions_before = len(ledger(platform, "differ"))
    code, _, err = cli_match(capsys, platform, "differ", list_l_victim, "count")
    assert code == 1
    assert "error: the platform's policy refuses the session: a release costs epsilon 0.5" in err
    assert "only 0 of the budget is left" in err
    assert len(ledger(platform, "differ")) == sessions_before

    # ... and by the server, in either releasing mode, for a client that skips that check.
    for mode in (Mode.COUNT, Mode.AUDIENCE):
        error = refused_at_open(platform, "differ", own_client_role(platform, list_l_victim, mode))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_name(error) == "BudgetExhausted"
        assert "has spent epsilon 1 of its budget of 1" in (error.details() or "")
        last = ledger(platform, "differ")[-1]
        assert (last.state, last.mode, last.epsilon_charged) == ("refused", mode.value, 0.0)
        assert last.result_count is None and last.reported_as is None
    assert spent(platform, "differ") == 1.0


# -- lists below the minimum -----------------------------------------------------------------------


def test_a_list_below_the_minimum_is_refused_and_charges_nothing(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    victim = platform.ordinary[-2]
    budget_before = spent(platform, "padder")
    one = [(victim.email, victim.phone)]
    almost = [(f"made.up.{i}@padding.example", "") for i in range(999)]
    for customers in (one, almost):
        sessions_before = len(ledger(platform, "padder"))
        code, _, err = cli_match(capsys, platform, "padder", customers, "count")
        assert code == 1
        assert f"the list has {len(customers)} records, fewer than the minimum of 1000" in err
        assert len(ledger(platform, "padder")) == sessions_before  # refused before connecting

    # The server refuses it too, before any work, for a client of the attacker's own.
    error = refused_at_open(platform, "padder", own_client_role(platform, one, Mode.COUNT))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_name(error) == "PolicyRefused"
    assert "the list has 1 records, fewer than the minimum of 1000" in (error.details() or "")
    last = ledger(platform, "padder")[-1]
    assert (last.state, last.epsilon_charged, last.result_count) == ("refused", 0.0, None)
    assert spent(platform, "padder") == budget_before


# -- a victim padded with made-up rows -------------------------------------------------------------


def test_a_victim_padded_with_made_up_rows_hears_only_fewer_than_100(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    victim = platform.ordinary[-3]
    padding = [(f"made.up.{i}@padding.example", "") for i in range(999)]
    budget_before = spent(platform, "padder")
    for last_row in ((victim.email, victim.phone), ("one.more.made.up@padding.example", "")):
        code, report, err = cli_match(capsys, platform, "padder", [*padding, last_row], "count")
        assert code == 0, err
        assert report is not None
        # The same answer whether the victim is a user or not: the count is noised first, then
        # thresholded, and a true count of 0 or 1 reaches 100 with probability about 1e-22.
        assert (report["count"], report["reported_as"]) == (None, "fewer than 100")
        assert (report["noise_applied"], report["epsilon_spent"]) == (True, 0.5)
        assert report["customers"] == 1000
    assert spent(platform, "padder") == budget_before + 1.0


def test_a_padded_audience_around_one_victim_is_not_stored(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    # In audience mode the platform learns which users matched; an audience whose count was
    # not released would let the advertiser aim ads at the one real person in the list.
    victim = platform.ordinary[-4]
    padding = [(f"made.up.audience.{i}@padding.example", "") for i in range(999)]
    customers = [*padding, (victim.email, victim.phone)]
    code, report, err = cli_match(capsys, platform, "padder", customers, "audience")
    assert code == 0, err
    assert report is not None
    assert (report["count"], report["reported_as"]) == (None, "fewer than 100")
    assert ledger(platform, "padder")[-1].audience_id is None


# -- replayed and cross-session messages -----------------------------------------------------------


def replayer_list(platform: Platform) -> list[Customer]:
    return [(p.email, p.phone) for p in platform.ordinary[:60]] + emails(platform.outsiders[:20])


@pytest.fixture(scope="module")
def recorded(platform: Platform) -> MatchStream:
    """A completed session of "replayer", everything sent and received kept for replay."""
    with platform.channel("replayer") as channel:
        result, stream = run_session(
            channel, own_client_role(platform, replayer_list(platform), Mode.COUNT)
        )
    assert result.count == 60
    return stream


def first_of(messages: list[Any], round_name: str) -> Any:
    return next(m for m in messages if m.WhichOneof("round") == round_name)


@pytest.mark.parametrize(
    ("replayed_round", "in_place_of", "expected_error"),
    [
        ("advertiser_set", "advertiser_set", "WrongSession"),
        ("encrypted_platform_set", "encrypted_platform_set", "WrongSession"),
        ("close", "close", "WrongSession"),
        ("open_session", "advertiser_set", "OutOfOrder"),
    ],
)
def test_a_message_recorded_in_one_session_is_refused_in_another(
    platform: Platform,
    recorded: MatchStream,
    replayed_round: str,
    in_place_of: str,
    expected_error: str,
) -> None:
    replayed = first_of(recorded.sent, replayed_round)
    role = own_client_role(platform, replayer_list(platform), Mode.COUNT)
    with platform.channel("replayer") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        try:
            with pytest.raises(grpc.RpcError) as caught:
                for reply in stream.replies():
                    for message in role.handle(reply):
                        if message.WhichOneof("round") == in_place_of:
                            message = replayed
                        stream.send(message)
        finally:
            stream.end()
    opened = first_of(stream.received, "session_opened").session_opened
    assert (
        opened.session_id != first_of(recorded.received, "session_opened").session_opened.session_id
    )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_name(caught.value) == expected_error
    last = settled(platform, "replayer")
    assert last.session_id == opened.session_id.hex()
    assert last.epsilon_charged == 0.0
    if in_place_of == "close":
        # The result was released (and recorded) before the close: the session stands.
        assert last.state == "completed" and last.result_count == 60
        assert role.result is not None and role.result.count == 60
    else:
        assert last.state == "aborted" and last.result_count is None
        assert expected_error in (last.reason or "")


def test_a_message_of_a_session_in_flight_is_refused_in_another_and_harms_neither(
    platform: Platform,
) -> None:
    customers = replayer_list(platform)
    role_a = own_client_role(platform, customers, Mode.COUNT)
    with platform.channel("replayer") as channel_a, platform.channel("bystander") as channel_b:
        # Session A, half-way: U sent, W ready but held back.
        stream_a = MatchStream(channel_a, TIMEOUT)
        stream_a.send(role_a.open_session())
        replies_a = stream_a.replies()
        stream_a.send(*role_a.handle(next(replies_a)))
        w_of_a: list[pb.ClientMessage] = []
        while not w_of_a:
            w_of_a = list(role_a.handle(next(replies_a)))

        # Session B, of another advertiser, receives A's U in its own stream.
        role_b = own_client_role(platform, customers, Mode.COUNT)
        stream_b = MatchStream(channel_b, TIMEOUT)
        stream_b.send(role_b.open_session())
        replies_b = stream_b.replies()
        try:
            with pytest.raises(grpc.RpcError) as caught:
                assert next(replies_b).HasField("session_opened")
                stream_b.send(first_of(stream_a.sent, "advertiser_set"))
                for _ in replies_b:
                    pass
        finally:
            stream_b.end()
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_name(caught.value) == "WrongSession"

        # A goes on to its result as if nothing happened.
        try:
            stream_a.send(*w_of_a)
            for reply in replies_a:
                stream_a.send(*role_a.handle(reply))
        finally:
            stream_a.end()
    assert role_a.result is not None and role_a.result.count == 60
    b = settled(platform, "bystander")
    assert (b.state, b.epsilon_charged, b.result_count) == ("aborted", 0.0, None)
    a = settled(platform, "replayer")
    assert (a.state, a.result_count) == ("completed", 60)
    assert a.session_id == role_a.result.session_id.hex()


@pytest.mark.parametrize("replayed_round", ["platform_set", "result"])
def test_the_advertiser_refuses_a_platform_message_from_another_session(
    platform: Platform, recorded: MatchStream, replayed_round: str
) -> None:
    # A stale result (or set V) replayed to the advertiser must not pass for this session's.
    replayed = first_of(recorded.received, replayed_round)
    role = own_client_role(platform, replayer_list(platform), Mode.COUNT)
    with platform.channel("replayer") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        try:
            with pytest.raises(WrongSession):
                for reply in stream.replies():
                    if reply.WhichOneof("round") == replayed_round:
                        reply = replayed
                    stream.send(*role.handle(reply))
        finally:
            stream.call.cancel()
            stream.end()
    assert role.result is None
    settled(platform, "replayer")


# -- never-permitted sources never match -----------------------------------------------------------


def never_permitted_list(platform: Platform) -> list[Customer]:
    """Exactly the identifiers the platform holds from never-permitted sources, one per record."""
    return (
        [("", p.phone) for p in platform.twitter_case]
        + emails(platform.security_only)
        + [("", p.phone) for p in platform.security_only]
    )


def test_the_never_permitted_identifiers_are_stored_but_not_eligible(
    capsys: pytest.CaptureFixture[str], platform: Platform
) -> None:
    capsys.readouterr()
    assert main(["platform", "status", "--db", str(platform.db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["excluded"]["source_not_permitted"] == len(never_permitted_list(platform))
    assert status["eligible_identifiers"] == TWITTER_CASE + 2 * ORDINARY


@pytest.mark.parametrize("mode", ["count", "audience", "ids"])
def test_never_permitted_sources_never_match_while_permitted_ones_do(
    capsys: pytest.CaptureFixture[str], platform: Platform, mode: str
) -> None:
    never = never_permitted_list(platform)
    control = emails(platform.twitter_case)  # the same users' identifiers from permitted sources
    for customers, expected in ((never, 0), (control, len(control))):
        out = platform.root / f"matched-{mode}-{expected}.csv"
        extra = ("--out", out) if mode == "ids" else ()
        code, report, err = cli_match(capsys, platform, "snoop", customers, mode, *extra)
        assert code == 0, err
        assert report is not None
        assert report["count"] == expected
        assert report["reported_as"].startswith(f"{expected} (exact")
        assert report["sent"] == len(customers)
        if mode == "ids":
            assert report["matched_rows"] == expected
            with out.open(encoding="utf-8", newline="") as f:
                written = [row[0] for row in list(csv.reader(f))[1:]]
            assert written == [f"c{i}" for i in range(expected)]
        if mode == "audience":
            audience_id = ledger(platform, "snoop")[-1].audience_id
            capsys.readouterr()
            assert (
                main(
                    [
                        "platform",
                        "audiences",
                        "show",
                        str(audience_id),
                        "--db",
                        str(platform.db),
                        "--json",
                    ]
                )
                == 0
            )
            members = json.loads(capsys.readouterr().out)["user_ids"]
            expected_users = [] if expected == 0 else [p.user_id for p in platform.twitter_case]
            assert sorted(members) == sorted(expected_users)
