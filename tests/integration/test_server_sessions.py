"""The platform's Matcher service on a real gRPC server (port 0, mTLS), driven by a minimal client.

The platform is built with the real CLI (init, import of a generated CSV, epoch rotate,
issue-cert); every session runs the real protocol roles over the network, and results are
compared with the plaintext truth computed from the generated people. Refusals are checked for
their status code, the error class in the trailing metadata, their ledger row and audit entry,
and that they charged nothing.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _match_stream import MatchStream, run_role, u_chunk
from _platform_processes import build_platform, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cleanroom import tls
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._proto.v1 import matcher_pb2_grpc as pb_grpc
from cleanroom.advertiser import PlatformClient
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, default_engine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.errors import InvalidInput, PlatformRefused, PolicyRefused
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode, load_policy
from cleanroom.protocol import (
    ERROR_NAME_KEY,
    AdvertiserResult,
    AdvertiserRole,
    PlatformRole,
    ProgressFactory,
)
from cleanroom.service.server import PlatformServer, ServerOptions
from cleanroom.service.servicer import INTERNAL_ERROR_DETAILS
from cleanroom.store import audit, sessions
from cleanroom.store.database import open_database

TIMEOUT = 60.0
PLATFORM_PEOPLE = 1200
ADVERTISERS = ("acme", "beta", "countonly", "thrifty", "oncedaily")

POLICY = """
epsilon_per_release = 0.0
min_upload_records = 100
min_reported_count = 10

[advertisers.acme]
modes_allowed = ["count", "audience", "ids"]

[advertisers.countonly]
modes_allowed = ["count"]

[advertisers.thrifty]
epsilon_per_release = 1.0
epsilon_budget = 1.0
min_reported_count = 0

[advertisers.oncedaily]
max_sessions_per_day = 1
"""

Identifier = tuple[str, str]


@dataclass
class World:
    root: Path
    db: Path
    port: int
    server: PlatformServer
    eligible: dict[Identifier, str]  # eligible identifier -> platform user id
    customers: list[Person]  # the advertiser's list, record id = position

    def channel(
        self, advertiser: str, options: list[tuple[str, int]] | None = None
    ) -> grpc.Channel:
        credentials = tls.channel_credentials(self.root / advertiser)
        return grpc.secure_channel(f"localhost:{self.port}", credentials, options=options)


def _platform_csv(path: Path, people: list[Person]) -> dict[Identifier, str]:
    """Write the platform CSV; return the eligible identifiers and their users."""
    rows, eligible = [], {}
    for i, person in enumerate(people):
        rows.append(
            f"{person.user_id},email,{person.email},signup,{'false' if i % 7 == 0 else 'true'}"
        )
        if i % 7:
            eligible[("email", person.email)] = person.user_id
        # Security-collected numbers never match, whatever their consent flag says.
        source = "two_factor" if i % 5 == 0 else "profile"
        rows.append(f"{person.user_id},phone,{person.phone},{source},true")
        if source == "profile":
            eligible[("phone", person.phone)] = person.user_id
    path.write_text("user_id,type,value,source,ads_matching_consent\n" + "\n".join(rows) + "\n")
    return eligible


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("platform")
    people = generate_people(PLATFORM_PEOPLE, seed=7)
    outsiders = generate_people(300, seed=8)
    eligible = _platform_csv(root / "users.csv", people)
    (root / "policy.toml").write_text(POLICY)
    db = build_platform(root, root / "users.csv", ADVERTISERS)
    engine = BatchEngine(workers=1)
    options = ServerOptions(
        db_path=db,
        listen="localhost:0",
        policy=load_policy(root / "policy.toml"),
        tls_dir=root / "tls",
        engine=engine,
    )
    server = PlatformServer(options)
    server.start()
    customers = people[100:700] + outsiders
    try:
        yield World(root, db, server.port, server, eligible, customers)
    finally:
        server.stop(grace=0)
        engine.close()


# -- a minimal advertiser client -----------------------------------------------------------------


def advertiser_role(
    customers: list[Person],
    mode: Mode,
    suite_id: str = "x25519-sha512-ell2-ro",
    *,
    hashed: bool = True,
    engine: BatchEngine | None = None,
    progress: ProgressFactory | None = None,
) -> AdvertiserRole:
    messages, record_ids = [], []
    for record, person in enumerate(customers):
        for kind, value in (("email", person.email), ("phone", person.phone)):
            messages.append(hash_message(kind, identifier_digest(kind, value)))
            record_ids.append(record)
    role = AdvertiserRole(
        get_suite(suite_id),
        mode,
        messages,
        record_ids,
        engine=engine or BatchEngine(workers=1),
        progress=progress,
    )
    if hashed:
        role.encrypt_list()
    return role


def run_session(channel: grpc.Channel, role: AdvertiserRole) -> AdvertiserResult:
    run_role(channel, role, TIMEOUT)
    assert role.finished and role.result is not None
    return role.result


def refused(world: World, advertiser: str, role: AdvertiserRole) -> grpc.RpcError:
    with world.channel(advertiser) as channel, pytest.raises(grpc.RpcError) as caught:
        run_session(channel, role)
    return caught.value


def error_name(error: Any) -> str | None:
    return dict(error.trailing_metadata() or ()).get(ERROR_NAME_KEY)


# -- ground truth and store reads --------------------------------------------------------------


def truth(world: World, customers: list[Person]) -> tuple[set[int], set[str]]:
    """Matched record ids and matched platform users, from plaintext."""
    records, users = set(), set()
    for record, person in enumerate(customers):
        for identifier in (("email", person.email), ("phone", person.phone)):
            if identifier in world.eligible:
                records.add(record)
                users.add(world.eligible[identifier])
    return records, users


def ledger(world: World, advertiser: str) -> list[sessions.SessionRecord]:
    with open_database(world.db) as db:
        return sessions.list_sessions(db, advertiser=advertiser)


def audit_entries(world: World) -> list[audit.AuditEntry]:
    with open_database(world.db) as db:
        return list(audit.entries(db.conn))


def spent(world: World, advertiser: str) -> float:
    with open_database(world.db) as db:
        return sessions.spent_epsilon(db, advertiser, 1)


def wait_for_state(world: World, advertiser: str, state: str) -> sessions.SessionRecord:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        last = ledger(world, advertiser)[-1]
        if last.state == state:
            return last
        time.sleep(0.05)
    raise AssertionError(f"the last session of {advertiser} is {last.state}, not {state}")


def assert_refusal_recorded(world: World, advertiser: str, name: str) -> None:
    last = ledger(world, advertiser)[-1]
    assert last.state == "refused" and last.epsilon_charged == 0
    assert last.reason is not None and last.reason.startswith(name)
    entry = audit_entries(world)[-1]
    assert entry.action == "match.refused"
    assert entry.details["advertiser"] == advertiser and entry.details["error"] == name


# -- sessions that complete ----------------------------------------------------------------------


def test_count_mode_releases_the_true_count(world: World) -> None:
    records, _ = truth(world, world.customers)
    with world.channel("beta") as channel:
        result = run_session(channel, advertiser_role(world.customers, Mode.COUNT))
    assert result.count == len(records)
    assert (result.epsilon_charged, result.noise_applied) == (0.0, False)
    last = ledger(world, "beta")[-1]
    assert (last.state, last.mode, last.result_count) == ("completed", "count", len(records))
    assert last.session_id == result.session_id.hex()
    entry = audit_entries(world)[-1]
    assert entry.action == "match.completed" and entry.details["count"] == len(records)


def test_audience_mode_stores_the_matched_users(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _, users = truth(world, world.customers)
    with world.channel("beta") as channel:
        result = run_session(channel, advertiser_role(world.customers, Mode.AUDIENCE))
    assert result.count == len(users)
    audience_id = ledger(world, "beta")[-1].audience_id
    assert audience_id is not None

    capsys.readouterr()
    assert main(["platform", "audiences", "list", "--db", str(world.db), "--json"]) == 0
    listed = {a["id"]: a for a in json.loads(capsys.readouterr().out)["audiences"]}
    assert listed[audience_id]["advertiser"] == "beta"
    assert listed[audience_id]["size"] == len(users)
    assert listed[audience_id]["created"].endswith("Z")
    assert (
        main(["platform", "audiences", "show", str(audience_id), "--db", str(world.db), "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"id": audience_id, "user_ids": sorted(users)}


def test_ids_mode_with_a_grant_returns_the_matched_records(world: World) -> None:
    records, _ = truth(world, world.customers)
    with world.channel("acme") as channel:
        result = run_session(channel, advertiser_role(world.customers, Mode.IDS))
    assert result.matched_record_ids is not None
    assert set(result.matched_record_ids.tolist()) == records
    assert result.count == len(records) and result.epsilon_charged == 0
    assert ledger(world, "acme")[-1].state == "completed"


# An advertiser the other tests leave alone: these sessions do not use up another's stream rate.
_FREED = "countonly"


def _completed(world: World) -> None:
    with world.channel(_FREED) as channel:
        run_session(channel, advertiser_role(world.customers, Mode.COUNT))


def _refused_after(world: World, bad: Callable[[pb.OpenSession, bytes], pb.ClientMessage]) -> None:
    opening = advertiser_role(world.customers[:200], Mode.COUNT).open_session()
    with world.channel(_FREED) as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(opening)
        opened = next(stream.call).session_opened
        stream.send(bad(opening.open_session, opened.session_id))
        with pytest.raises(grpc.RpcError):
            for _ in stream.call:
                pass
        stream.end()


def _bad_elements(opening: pb.OpenSession, session_id: bytes) -> pb.ClientMessage:
    count = opening.identifier_count
    return u_chunk(session_id, 0, count, b"\xff" * (32 * count), opening.record_count)


def _w_before_u(_opening: pb.OpenSession, session_id: bytes) -> pb.ClientMessage:
    early = pb.EncryptedPlatformSetChunk(session_id=session_id, offset=0, count=0, elements=b"")
    return pb.ClientMessage(encrypted_platform_set=early)


@pytest.mark.parametrize(
    "session",
    [
        pytest.param(_completed, id="completed"),
        pytest.param(lambda world: _refused_after(world, _bad_elements), id="bad-elements"),
        pytest.param(lambda world: _refused_after(world, _w_before_u), id="out-of-order"),
    ],
)
def test_a_session_is_freed_when_its_call_ends(
    world: World, session: Callable[[World], None]
) -> None:
    # A session holds its sets (U', W and their indexes: hundreds of MB at 10^6). Held in a
    # reference cycle (a timer and its callback, a failure whose traceback holds the frames
    # that keep it), they would wait for a full garbage collection, which a server that
    # allocates little seldom runs: its memory grew by a session's sets per session. With the
    # collector off, a role still listed once the call has ended is one only it would free.
    gc.collect()
    gc.disable()
    try:
        session(world)

        def roles_left() -> int:
            return sum(isinstance(o, PlatformRole) for o in gc.get_objects())

        wait_until(lambda: roles_left() == 0, "the session to be freed", timeout=10)
    finally:
        gc.enable()


def test_the_platform_client_opens_first_and_hashes_while_the_session_runs(world: World) -> None:
    # The real client path: no encrypt_list beforehand, so U is computed on the client's own
    # hashing thread (started as the session opens) while V is taken on this one.
    records, _ = truth(world, world.customers)
    hashed_on: set[str] = set()

    def progress(phase: str, total: int | None) -> Callable[[int], object]:
        def update(done: int) -> None:
            if phase == "hash and encrypt list":
                hashed_on.add(threading.current_thread().name)

        return update

    role = advertiser_role(world.customers, Mode.IDS, hashed=False, progress=progress)
    with PlatformClient(f"localhost:{world.port}", tls_dir=world.root / "acme") as client:
        result = client.match(role)
    assert result.matched_record_ids is not None
    assert set(result.matched_record_ids.tolist()) == records
    assert role.encrypt_seconds is not None
    assert hashed_on == {"encrypt-list"}
    assert ledger(world, "acme")[-1].state == "completed"


def test_the_platform_encrypts_u_while_v_is_still_going_out(world: World) -> None:
    # The advertiser sends all of U before it takes any of V, over a channel that lets only a
    # little of V wait unread: the platform takes U and encrypts it meanwhile, as it does while
    # a real advertiser encrypts V chunk by chunk, instead of only once all of V has gone out.
    role = advertiser_role(world.customers, Mode.COUNT)
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
    with world.channel("beta", small_window) as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        replies = stream.replies()
        stream.send(*role.handle(next(replies)))  # SessionOpened: U goes out at once
        (session,) = world.server.sessions.active()
        wait_until(
            lambda: session.round == "receiving the encrypted platform set W",
            "the platform took all of U while V was unread",
            timeout=10.0,
        )
        assert not role.finished  # none of V was taken yet
        try:
            for reply in replies:
                stream.send(*role.handle(reply))
        finally:
            stream.end()
    assert role.result is not None
    assert role.result.count == len(truth(world, world.customers)[0])


def test_a_refused_session_stops_the_hashing_it_started(world: World) -> None:
    # The client starts hashing as the session opens; when the platform refuses, the role is
    # abandoned and the hashing stops after the chunk it is on instead of running to the end.
    refused_seen = threading.Event()
    chunks_done: list[int] = []

    def progress(phase: str, total: int | None) -> Callable[[int], object]:
        def update(done: int) -> None:
            chunks_done.append(done)
            refused_seen.wait(TIMEOUT)  # hold the first chunk until the refusal has arrived

        return update

    role = advertiser_role(
        world.customers[:200],
        Mode.IDS,
        hashed=False,
        engine=BatchEngine(workers=1, chunk_size=4),
        progress=progress,
    )
    with (
        PlatformClient(f"localhost:{world.port}", tls_dir=world.root / "beta") as client,
        pytest.raises(PlatformRefused, match="mode 'ids' is not allowed") as refused,
    ):
        client.match(role)
    assert type(refused.value.error) is PolicyRefused
    refused_seen.set()
    with pytest.raises(CancelledError, match="abandoned"):
        role.encrypt_list()  # waits for the hashing thread, then raises what stopped it
    # At most the chunk it was on (of 100: 200 records, two identifiers each), none if the
    # refusal came back before the first chunk was done.
    assert chunks_done in ([], [4])
    assert role.encrypt_seconds is None


def test_a_failure_while_hashing_in_the_session_is_raised_and_aborts_it(world: World) -> None:
    # The list's hashing fails after the session opened, on the client's hashing thread; the
    # U stream re-raises it on gRPC's sending thread, the client raises it itself (not gRPC's
    # "Exception iterating requests"), and the platform aborts the session without charging it.
    role = advertiser_role(world.customers, Mode.COUNT, hashed=False)
    role._messages = [*role._messages[:-1], "not bytes"]  # type: ignore[list-item]
    with (
        PlatformClient(f"localhost:{world.port}", tls_dir=world.root / "beta") as client,
        pytest.raises(TypeError, match="is str, not bytes"),
    ):
        client.match(role)
    last = wait_for_state(world, "beta", "aborted")
    assert last.epsilon_charged == 0 and last.result_count is None


def test_get_policy_tells_the_advertiser_its_settings_and_n(world: World) -> None:
    with world.channel("acme") as channel:
        info = pb_grpc.MatcherStub(channel).GetPolicy(
            pb.PolicyRequest(protocol_version=1), timeout=TIMEOUT
        )
    assert info.platform_set_size == len(world.eligible)
    assert list(info.suites) == ["x25519-sha512-ell2-ro"]
    assert pb.MATCH_MODE_IDS in info.modes_allowed
    assert (info.min_upload_records, info.epsilon_per_release, info.epoch_id) == (100, 0.0, 1)


# -- refusals --------------------------------------------------------------------------------------


def test_ids_mode_without_a_grant_is_refused(world: World) -> None:
    error = refused(world, "beta", advertiser_role(world.customers[:200], Mode.IDS))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "mode 'ids' is not allowed" in (error.details() or "")
    assert error_name(error) == "PolicyRefused"
    assert_refusal_recorded(world, "beta", "PolicyRefused")


def test_a_mode_the_policy_does_not_allow_is_refused(world: World) -> None:
    error = refused(world, "countonly", advertiser_role(world.customers[:200], Mode.AUDIENCE))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_name(error) == "PolicyRefused"
    assert_refusal_recorded(world, "countonly", "PolicyRefused")


def test_a_list_below_the_minimum_is_refused(world: World) -> None:
    error = refused(world, "beta", advertiser_role(world.customers[:50], Mode.COUNT))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fewer than the minimum of 100" in (error.details() or "")
    assert_refusal_recorded(world, "beta", "PolicyRefused")


def test_another_suite_than_the_epochs_is_refused(world: World) -> None:
    role = advertiser_role(world.customers[:5], Mode.COUNT, suite_id="p256-sha256-sswu-ro")
    error = refused(world, "beta", role)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_name(error) == "VersionMismatch"
    assert_refusal_recorded(world, "beta", "VersionMismatch")


def test_an_exhausted_budget_is_refused_and_charges_nothing(world: World) -> None:
    with world.channel("thrifty") as channel:
        first = run_session(channel, advertiser_role(world.customers, Mode.COUNT))
    assert (first.epsilon_charged, first.epsilon_remaining, first.noise_applied) == (1.0, 0.0, True)
    assert spent(world, "thrifty") == 1.0
    error = refused(world, "thrifty", advertiser_role(world.customers, Mode.COUNT))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_name(error) == "BudgetExhausted"
    assert_refusal_recorded(world, "thrifty", "BudgetExhausted")
    assert spent(world, "thrifty") == 1.0


def test_the_daily_session_limit_is_enforced(world: World) -> None:
    with world.channel("oncedaily") as channel:
        run_session(channel, advertiser_role(world.customers[:200], Mode.COUNT))
    error = refused(world, "oncedaily", advertiser_role(world.customers[:200], Mode.COUNT))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_name(error) == "LimitExceeded"
    assert_refusal_recorded(world, "oncedaily", "LimitExceeded")


def test_bad_elements_are_invalid_argument_and_abort_the_session(world: World) -> None:
    role = advertiser_role(world.customers[:200], Mode.COUNT)
    opening = role.open_session()
    with world.channel("beta") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(opening)
        opened = next(stream.call).session_opened
        garbage = np.full((opening.open_session.identifier_count, 32), 0xFF, dtype=np.uint8)
        tags = (
            np.arange(opening.open_session.identifier_count, dtype="<u4")
            % opening.open_session.record_count
        )
        stream.send(
            pb.ClientMessage(
                advertiser_set=pb.AdvertiserSetChunk(
                    session_id=opened.session_id,
                    offset=0,
                    count=len(garbage),
                    elements=garbage.tobytes(),
                    record_tags=tags.tobytes(),
                )
            )
        )
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.call:
                pass
        stream.end()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_name(caught.value) == "InvalidElement"
    assert "row 0" in (caught.value.details() or "")
    last = wait_for_state(world, "beta", "aborted")
    assert last.epsilon_charged == 0 and last.audience_id is None
    assert audit_entries(world)[-1].action == "match.aborted"


def _twist_point() -> bytes:
    suite = get_suite("x25519-sha512-ell2-ro")
    u = 2
    while suite.element_problem(u.to_bytes(32, "little")) != "not on the curve (twist point)":
        u += 1
    return u.to_bytes(32, "little")


def _corrupt(kind: str, elements: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    """The advertiser's set U with one defect of the given kind."""
    bad = elements.copy()
    if kind == "twist":
        bad[3] = np.frombuffer(_twist_point(), dtype=np.uint8)
    elif kind == "small-order":
        bad[3] = 0  # u = 0
    elif kind == "duplicate":
        bad[3] = bad[1]
    elif kind == "wrong-length":
        return bad.tobytes()[:-1]
    return bad.tobytes()


@pytest.mark.parametrize(
    ("kind", "expected_error", "expected_detail"),
    [
        ("twist", "InvalidElement", "twist"),
        ("small-order", "InvalidElement", "small-order"),
        ("duplicate", "InvalidElement", "duplicate"),
        ("wrong-length", "InvalidElement", "bytes"),
    ],
)
def test_each_kind_of_bad_element_is_invalid_argument_naming_it(
    world: World, kind: str, expected_error: str, expected_detail: str
) -> None:
    suite = get_suite("x25519-sha512-ell2-ro")
    role = advertiser_role(world.customers[:200], Mode.COUNT)
    opening = role.open_session()
    count = opening.open_session.identifier_count
    valid = default_engine().hash_to_curve_many(
        suite, [b"u%d" % i for i in range(count)], suite.dst
    )
    records = opening.open_session.record_count
    with world.channel("beta") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(opening)
        opened = next(stream.call).session_opened
        stream.send(u_chunk(opened.session_id, 0, count, _corrupt(kind, valid), records))
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.call:
                pass
        stream.end()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_name(caught.value) == expected_error
    assert expected_detail in (caught.value.details() or "")
    last = wait_for_state(world, "beta", "aborted")
    assert last.epsilon_charged == 0 and last.audience_id is None


def test_a_round_out_of_order_is_failed_precondition(world: World) -> None:
    role = advertiser_role(world.customers[:200], Mode.COUNT)
    opening = role.open_session()
    with world.channel("beta") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(opening)
        opened = next(stream.call).session_opened
        # W before U: the platform must refuse the round, not guess.
        early = pb.EncryptedPlatformSetChunk(
            session_id=opened.session_id, offset=0, count=0, elements=b""
        )
        stream.send(pb.ClientMessage(encrypted_platform_set=early))
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.call:
                pass
        stream.end()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_name(caught.value) == "OutOfOrder"
    assert wait_for_state(world, "beta", "aborted").epsilon_charged == 0


# -- concurrency and clients that go away ----------------------------------------------------------


def test_one_open_session_per_advertiser_others_proceed_and_a_vanished_client_aborts(
    world: World,
) -> None:
    _, users = truth(world, world.customers)
    audiences_before = {a.id for a in _audiences(world)}
    stalled_role = advertiser_role(world.customers, Mode.AUDIENCE)
    with world.channel("acme") as channel:
        stalled = MatchStream(channel, TIMEOUT)
        stalled.send(stalled_role.open_session())
        replies = iter(stalled.call)
        # Take V and send U, but never W: the session stays open half-way.
        stalled.send(*stalled_role.handle(next(replies)))
        assert ledger(world, "acme")[-1].state == "open"

        error = refused(world, "acme", advertiser_role(world.customers[:200], Mode.COUNT))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already has a session open" in (error.details() or "")
        assert error_name(error) == "PolicyRefused"

        # Another advertiser is served meanwhile, on its own thread.
        results: list[AdvertiserResult] = []
        other = threading.Thread(
            target=lambda: results.append(
                run_session(world.channel("beta"), advertiser_role(world.customers, Mode.AUDIENCE))
            )
        )
        other.start()
        other.join(TIMEOUT)
        assert results and results[0].count == len(users)

        stalled.call.cancel()  # the client goes away half-way
        stalled.end()
    record = [r for r in ledger(world, "acme") if r.mode == "audience"][-1]
    deadline = time.monotonic() + 15
    while record.state == "open" and time.monotonic() < deadline:
        time.sleep(0.05)
        record = [r for r in ledger(world, "acme") if r.mode == "audience"][-1]
    assert record.state == "aborted" and record.epsilon_charged == 0
    assert record.audience_id is None
    aborted = [e for e in audit_entries(world) if e.action == "match.aborted"]
    assert aborted[-1].details["ledger_id"] == record.id
    # Only beta's completed session added an audience.
    new = [a for a in _audiences(world) if a.id not in audiences_before]
    assert [a.advertiser for a in new] == ["beta"]
    # And acme may open a session again.
    with world.channel("acme") as channel:
        assert run_session(channel, advertiser_role(world.customers, Mode.COUNT)).count is not None


def _audiences(world: World) -> list[sessions.AudienceSummary]:
    with open_database(world.db) as db:
        return sessions.audience_summaries(db)


# -- health, reflection, transport -----------------------------------------------------------------


def test_health_check_reports_serving(world: World) -> None:
    with world.channel("beta") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cleanroom.v1.Matcher"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_list_reports_every_service(world: World) -> None:
    with world.channel("beta") as channel:
        reply = health_pb2_grpc.HealthStub(channel).List(
            health_pb2.HealthListRequest(), timeout=TIMEOUT
        )
    assert {name: s.status for name, s in reply.statuses.items()} == {
        "": health_pb2.HealthCheckResponse.SERVING,
        "cleanroom.v1.Matcher": health_pb2.HealthCheckResponse.SERVING,
    }


def test_reflection_lists_the_matcher_service(world: World) -> None:
    with world.channel("beta") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
    names = {service.name for service in reply.list_services_response.service}
    assert {
        "cleanroom.v1.Matcher",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    } <= names


def test_reflection_v1alpha_resolves_the_matcher_for_a_client(world: World) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with world.channel("beta") as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName("cleanroom.v1.Matcher")
        assert {m.name for m in service.methods} >= {"GetPolicy", "Match"}


@pytest.mark.parametrize("symbol", ["cleanroom.v1.Matcher", "grpc.reflection.v1.ServerReflection"])
def test_reflection_v1_answers_as_current_clients_ask(world: World, symbol: str) -> None:
    from google.protobuf import descriptor_pb2

    # grpcio-reflection ships v1alpha stubs only; v1 has the same messages on the wire.
    with world.channel("beta") as channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol),
        ]
        listed, found = list(info(iter(requests), timeout=TIMEOUT))
    assert "grpc.reflection.v1.ServerReflection" in {
        s.name for s in listed.list_services_response.service
    }
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    package = symbol.rsplit(".", 1)[0]
    assert any(f.package == package and f.service for f in files), found


def test_plaintext_is_refused_off_loopback(world: World) -> None:
    options = ServerOptions(
        db_path=world.db,
        listen="0.0.0.0:0",
        policy=load_policy(None),
        insecure_advertiser="insecure-local",
    )
    with pytest.raises(InvalidInput, match="loopback"):
        PlatformServer(options)


def test_plaintext_on_loopback_names_the_fixed_advertiser(world: World) -> None:
    options = ServerOptions(
        db_path=world.db,
        listen="127.0.0.1:0",
        policy=load_policy(world.root / "policy.toml"),
        insecure_advertiser="insecure-local",
        engine=BatchEngine(workers=1),
    )
    with (
        PlatformServer(options) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        records, _ = truth(world, world.customers)
        assert run_session(channel, advertiser_role(world.customers, Mode.COUNT)).count == len(
            records
        )
    assert ledger(world, "insecure-local")[-1].state == "completed"


def test_a_message_over_the_size_limit_is_refused_and_aborts_the_session(world: World) -> None:
    role = advertiser_role(world.customers[:200], Mode.COUNT)
    with world.channel("beta") as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        opened = next(stream.call).session_opened
        huge = pb.AdvertiserSetChunk(session_id=opened.session_id, elements=bytes(5_000_000))
        stream.send(pb.ClientMessage(advertiser_set=huge))
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.call:
                pass
        stream.end()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wait_for_state(world, "beta", "aborted").epsilon_charged == 0


def test_a_session_past_its_time_limit_is_aborted(world: World) -> None:
    options = ServerOptions(
        db_path=world.db,
        listen="127.0.0.1:0",
        policy=load_policy(world.root / "policy.toml"),
        insecure_advertiser="slowpoke",
        session_timeout=1.0,
        engine=BatchEngine(workers=1),
    )
    role = advertiser_role(world.customers[:200], Mode.COUNT)
    with (
        PlatformServer(options) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stream = MatchStream(channel, TIMEOUT)
        stream.send(role.open_session())
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.call:
                pass  # take V, then send nothing
        stream.end()
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    record = wait_for_state(world, "slowpoke", "aborted")
    assert "longer than 1 seconds" in (record.reason or "")


def test_the_platforms_own_failures_are_internal_without_detail(tmp_path: Path) -> None:
    # A platform without a key epoch: its store fails, and the client learns nothing of why.
    assert main(["platform", "init", "--db", str(tmp_path / "empty.db")]) == 0
    options = ServerOptions(
        db_path=tmp_path / "empty.db",
        listen="127.0.0.1:0",
        policy=load_policy(None),
        insecure_advertiser="insecure-local",
    )
    with (
        PlatformServer(options) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.MatcherStub(channel).GetPolicy(
            pb.PolicyRequest(protocol_version=1), timeout=TIMEOUT
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == INTERNAL_ERROR_DETAILS
    assert error_name(caught.value) == "StoreError"
