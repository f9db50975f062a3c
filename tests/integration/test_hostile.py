"""A hostile advertiser against the real platform, and a hostile platform against the real CLI.

The platform is built with the real CLI and served by ``cleanroom platform serve`` as a
subprocess (mTLS, port 0), or in-process where a test reads the server's own counters. The
hostile advertisers speak raw gRPC streams, as an attacker's own client would; the honest one is
the real ``cleanroom match``. The hostile platform is a real gRPC server whose answers a test
tampers with, around the real :class:`~cleanroom.protocol.PlatformRole`.

- idle ``Match`` streams never opened: capped per advertiser before any work, cut at the
  first-message deadline, recorded in bulk; probes, GetPolicy and other advertisers' sessions
  go on meanwhile, even with the platform's stream limit reached;
- GetPolicy computes N once while nothing changes, and is rate-limited per advertiser;
- an oversized or duplicated U is refused before any of it is multiplied;
- a platform that announces absurd sizes, contradicts itself or sends text that acts on
  terminals gets one clear error line from ``cleanroom match``, exit 1, never a traceback;
- user ids and record ids reach terminals escaped and spreadsheets neutralized;
- ids mode: the count the platform records is what it could observe, not what the advertiser
  learned.
"""

from __future__ import annotations

import csv
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from _match_stream import MatchStream, u_chunk
from _platform_processes import (
    TIMEOUT,
    Server,
    build_platform,
    cleanroom_executable,
    cli_json,
    run_match,
    setup_platform,
    start_match,
    wait_until,
    write_customer_list,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cleanroom import tls
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._proto.v1 import matcher_pb2_grpc as pb_grpc
from cleanroom.crypto import BatchEngine, default_engine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import check_session, load_policy, parse_policy
from cleanroom.protocol import (
    ERROR_NAME_KEY,
    PROTOCOL_VERSION,
    PlatformInputs,
    PlatformRole,
    policy_info,
    read_open_session,
)
from cleanroom.service.admission import AdmissionLimits
from cleanroom.service.server import PlatformServer, ServerOptions
from cleanroom.service.session_memory import session_bytes
from cleanroom.store import audit, sessions
from cleanroom.store.database import open_database
from cleanroom.store.epochs import require_current_epoch

SUITE_ID = "x25519-sha512-ell2-ro"
PEOPLE = 300
HONEST = "alice"
HOSTILE = ("mallory", "trudy", "eve")
ORACLE = "oracle"  # granted ids mode
POLICY = f"""
epsilon_per_release = 0.0
min_upload_records = 10
min_reported_count = 0
max_sessions_per_day = 1000

[advertisers.{ORACLE}]
modes_allowed = ["count", "audience", "ids"]
"""


@dataclass
class Platform:
    root: Path
    db: Path
    people: list[Person]

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    def channel(self, advertiser: str, address: str) -> grpc.Channel:
        return grpc.secure_channel(address, tls.channel_credentials(self.root / advertiser))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    root = tmp_path_factory.mktemp("hostile")
    people = generate_people(PEOPLE, seed=15)
    db = setup_platform(root, people, (HONEST, *HOSTILE, ORACLE), POLICY)
    write_customer_list(root / "customers.csv", people[:150] + generate_people(50, seed=16), 1)
    return Platform(root, db, people)


@pytest.fixture
def serve(platform: Platform) -> Iterator[Callable[..., Server]]:
    """Start ``cleanroom platform serve --workers 1 EXTRA…``; every server is stopped after."""
    started: list[Server] = []

    def start(*extra: str) -> Server:
        server = Server(platform.db, platform.policy, "--workers", "1", *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


def _in_process(platform: Platform, engine: BatchEngine, **settings: Any) -> ServerOptions:
    """Options of a server run in this process, so that a test can wait for its counters."""
    return ServerOptions(
        db_path=platform.db,
        listen="localhost:0",
        policy=load_policy(platform.policy),
        tls_dir=platform.root / "tls",
        engine=engine,
        **settings,
    )


def _status(call: Any) -> tuple[grpc.StatusCode, str, str | None]:
    """Drain a call; its status code, details and cleanroom error name."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        error: Any = exc
        name = dict(error.trailing_metadata() or ()).get(ERROR_NAME_KEY)
        return error.code(), error.details() or "", name
    return grpc.StatusCode.OK, "", None


def _health(channel: grpc.Channel) -> int:
    request = health_pb2.HealthCheckRequest(service="cleanroom.v1.Matcher")
    return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT).status)


def _get_policy(channel: grpc.Channel) -> pb.PolicyInfo:
    request = pb.PolicyRequest(protocol_version=PROTOCOL_VERSION)
    info: pb.PolicyInfo = pb_grpc.MatcherStub(channel).GetPolicy(request, timeout=TIMEOUT)
    return info


def _ledger(db: Path, advertiser: str) -> list[sessions.SessionRecord]:
    with open_database(db) as database:
        return sessions.list_sessions(database, advertiser=advertiser)


def _aborted_entries(db: Path, advertiser: str) -> list[dict[str, Any]]:
    with open_database(db) as database:
        return [
            entry.details
            for entry in audit.entries(database.conn)
            if entry.action == "match.aborted" and entry.details["advertiser"] == advertiser
        ]


# -- idle streams ------------------------------------------------------------------------------


def test_idle_streams_are_capped_per_advertiser_and_cut_at_the_first_message_deadline(
    platform: Platform, serve: Callable[..., Server]
) -> None:
    server = serve("--first-message-timeout", "1")
    with platform.channel("mallory", server.address) as channel:
        # Twenty streams that never send anything: two are admitted, the rest refused at once.
        idle = [MatchStream(channel, TIMEOUT) for _ in range(20)]
        outcomes = [_status(stream.call) for stream in idle]
        for stream in idle:
            stream.end()
    cut = [o for o in outcomes if o[0] == grpc.StatusCode.DEADLINE_EXCEEDED]
    capped = [o for o in outcomes if o[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert (len(cut), len(capped)) == (2, 18), outcomes
    assert cut[0][1:] == ("no opening message within 1 s of the stream's start", "DeadlineExceeded")
    assert "max_streams_per_advertiser = 2" in capped[0][1] and capped[0][2] == "LimitExceeded"
    server.stop()  # writes what was counted and not yet written
    # Two streams, recorded as aborted: the first at once, the other when the server stopped.
    rows = _ledger(platform.db, "mallory")
    assert [(r.state, r.mode) for r in rows] == [("aborted", None)] * 2
    assert all("no opening message within 1 s" in (r.reason or "") for r in rows)
    entries = _aborted_entries(platform.db, "mallory")
    assert sum(entry["streams"] for entry in entries) == 2
    assert [entry["ledger_id"] for entry in entries] == [r.id for r in rows]


def test_hostile_advertisers_holding_every_stream_starve_no_probe_policy_or_session(
    platform: Platform,
) -> None:
    # Five streams in all; mallory and trudy take two each, as many as any advertiser may. The
    # server runs in this process so that the test can wait for its admission counters.
    engine = BatchEngine(workers=1)
    options = _in_process(
        platform, engine, max_sessions=5, limits=AdmissionLimits(first_message_timeout=600.0)
    )
    with PlatformServer(options) as server, engine:
        address = f"localhost:{server.port}"
        channels = {name: platform.channel(name, address) for name in (*HOSTILE, HONEST)}

        def holding(name: str, streams: int) -> Callable[[], bool]:
            return lambda: server.admission.tally(name).streams_open == streams

        try:
            held = []
            for name in ("mallory", "trudy"):
                held += [MatchStream(channels[name], TIMEOUT) for _ in "ab"]
                wait_until(holding(name, 2), f"{name} holds two streams")
            more = MatchStream(channels["mallory"], TIMEOUT)  # a third of mallory's: refused
            code, details, _ = _status(more.call)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_streams_per_advertiser = 2" in details

            # alice's session takes the fifth stream and completes; probes and GetPolicy answer.
            assert _health(channels[HONEST]) == health_pb2.HealthCheckResponse.SERVING
            assert _get_policy(channels[HONEST]).platform_set_size == PEOPLE
            report = run_match(address, platform.root / HONEST, customers(platform), "count")
            assert report["count"] == 150
            assert all(stream.call.is_active() for stream in held)  # held all along

            # With alice's second stream the platform holds its most: eve, who holds none, is
            # refused naming the limit, and still gets health checks and GetPolicy answered.
            second = MatchStream(channels[HONEST], TIMEOUT)
            wait_until(holding(HONEST, 1), "alice holds a stream")
            code, details, name = _status(MatchStream(channels["eve"], TIMEOUT).call)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and name == "LimitExceeded"
            assert "max_streams = 5" in details
            assert _health(channels["eve"]) == health_pb2.HealthCheckResponse.SERVING
            assert _get_policy(channels["eve"]).epoch_id == 1
            for stream in [second, *held]:
                stream.call.cancel()  # the attackers give up: their streams end unopened
            for name in ("mallory", "trudy", HONEST):
                wait_until(holding(name, 0), f"{name}'s streams are released")
        finally:
            for channel in channels.values():
                channel.close()
        tallies = server.admission.tallies()
        assert (tallies["mallory"].streams_unopened, tallies["mallory"].streams_refused) == (2, 1)
        assert tallies["eve"].streams_refused == 1
    for name in ("mallory", "trudy"):
        entries = _aborted_entries(platform.db, name)
        # Cancelled (or, as the server may see a cancelled stream, closed) before opening: the
        # first written at once, the second when the server stopped (one entry a minute).
        unopened = [e for e in entries if "unopened" in e["reason"]]
        assert [e["streams"] for e in unopened] == [1, 1]


def customers(platform: Platform) -> Path:
    return platform.root / "customers.csv"


def test_admission_counts_per_advertiser_and_get_policy_is_rate_limited(
    platform: Platform,
) -> None:
    limits = AdmissionLimits(first_message_timeout=0.5, policy_call_burst=5)
    engine = BatchEngine(workers=1)
    options = _in_process(platform, engine, limits=limits)
    with PlatformServer(options) as server, engine:
        address = f"localhost:{server.port}"
        with platform.channel("trudy", address) as trudy, platform.channel(HONEST, address) as ok:
            for _ in range(5):
                assert _get_policy(trudy).platform_set_size == PEOPLE
            with pytest.raises(grpc.RpcError) as caught:
                _get_policy(trudy)
            error: Any = caught.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "60 calls a minute per advertiser" in error.details()
            assert _get_policy(ok).platform_set_size == PEOPLE  # another advertiser's own rate
            # N was computed once for all of these calls.
            assert server.sessions.epoch_summaries.computations == 1

            idle = [MatchStream(trudy, TIMEOUT) for _ in range(3)]
            assert sorted(_status(s.call)[0].name for s in idle) == [
                "DEADLINE_EXCEEDED",
                "DEADLINE_EXCEEDED",
                "RESOURCE_EXHAUSTED",
            ]
            for stream in idle:
                stream.end()
        tally = server.admission.tally("trudy")
        assert (tally.streams_unopened, tally.streams_refused, tally.policy_calls_refused) == (
            2,
            1,
            1,
        )
        assert tally.streams_open == 0
        assert server.admission.tally(HONEST).policy_calls_refused == 0
        # The same, by limit, as /metrics exports it.
        assert server.admission.refusals() == {
            ("trudy", "first_message_deadline"): 2,
            ("trudy", "policy_calls_per_minute"): 1,
            ("trudy", "streams_per_advertiser"): 1,
        }


def test_every_advertiser_asking_for_the_policy_at_once_is_answered(platform: Platform) -> None:
    # Jobs scheduled on the hour: a burst of GetPolicy calls while the summary is computed.
    engine = BatchEngine(workers=1)
    options = _in_process(platform, engine)
    names = [HONEST, *HOSTILE, ORACLE] * 2
    start = threading.Barrier(len(names))
    answers: list[int] = []

    def ask(name: str, address: str) -> None:
        with platform.channel(name, address) as channel:
            start.wait()
            answers.append(_get_policy(channel).platform_set_size)

    with PlatformServer(options) as server, engine:
        askers = [
            threading.Thread(target=ask, args=(name, f"localhost:{server.port}")) for name in names
        ]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(TIMEOUT)
        assert answers == [PEOPLE] * len(names)
        assert server.sessions.epoch_summaries.computations == 1


# -- work before checks ---------------------------------------------------------------------------


def _opening(records: int, identifiers: int) -> pb.ClientMessage:
    return pb.ClientMessage(
        open_session=pb.OpenSession(
            mode=pb.MATCH_MODE_COUNT,
            suite=SUITE_ID,
            normalization_version=1,
            protocol_version=PROTOCOL_VERSION,
            record_count=records,
            identifier_count=identifiers,
        )
    )


def _refused_opening(
    channel: grpc.Channel, records: int, identifiers: int
) -> tuple[grpc.StatusCode, str, str | None]:
    """Open a session announcing these sizes; the status it ends with."""
    stream = MatchStream(channel, TIMEOUT)
    stream.send(_opening(records, identifiers))
    status = _status(stream.call)
    stream.end()
    return status


def test_more_identifiers_than_records_may_carry_are_refused_at_the_opening(
    platform: Platform, serve: Callable[..., Server]
) -> None:
    server = serve()
    with platform.channel("trudy", server.address) as channel:
        code, details, name = _refused_opening(channel, 10, 300_000)
    assert (code, name) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceeded")
    assert "300000 identifiers for 10 records: at most 3 per record" in details
    last = _ledger(platform.db, "trudy")[-1]
    assert last.state == "refused" and last.identifier_count == 300_000


def test_sessions_are_refused_while_the_sets_in_progress_fill_the_servers_memory(
    platform: Platform,
) -> None:
    # The budget is one session of 15,000 identifiers. trudy opens such a session and sends
    # nothing: she takes nothing. mallory opens one and sends all of U but one element (random
    # bytes: U is checked once complete), then waits: her chunks hold the memory, and alice's
    # match is refused at its opening until mallory's call ends.
    with open_database(platform.db) as db:
        n = require_current_epoch(db).size
    sent = 14_999
    engine = BatchEngine(workers=1)
    options = _in_process(platform, engine, session_memory=session_bytes(15_000, n))
    with PlatformServer(options) as server, engine:
        address = f"localhost:{server.port}"
        memory = server.sessions.memory
        with (
            platform.channel("trudy", address) as trudy,
            platform.channel("mallory", address) as mallory,
        ):
            idle = MatchStream(trudy, TIMEOUT)
            idle.send(_opening(5_000, 15_000))
            assert next(idle.replies()).WhichOneof("round") == "session_opened"
            hers = MatchStream(mallory, TIMEOUT)
            hers.send(_opening(5_000, 15_000))
            opened = next(hers.replies()).session_opened
            elements = np.random.default_rng(5).bytes(sent * 32)
            hers.send(u_chunk(opened.session_id, 0, sent, elements, 5_000))
            wait_until(lambda: memory.held == session_bytes(sent, 0), "mallory's U is held")

            refused = start_match(address, platform.root / HONEST, customers(platform), "count")
            out, err = refused.communicate(timeout=TIMEOUT)
            assert refused.returncode == 1, (out, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
            assert err.startswith("error: the platform refused: the sessions in progress hold")
            assert "43.8 KiB for 200 identifiers" in err and "try again when one has ended" in err
            last = _ledger(platform.db, HONEST)[-1]
            assert last.state == "refused"
            assert (last.reason or "").startswith("LimitExceeded: the sessions in progress hold")

            # A set larger than the whole budget is refused whatever else runs.
            with platform.channel("eve", address) as eve:
                code, details, name = _refused_opening(eve, 10_000, 30_000)
            assert (code, name) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LimitExceeded")
            assert "more than the platform's whole session memory" in details

            hers.call.cancel()  # her session ends: what it held is given back
            wait_until(lambda: memory.held == 0, "mallory's memory is given back")
            # trudy's session is still open, holding nothing: alice's match runs beside it.
            report = run_match(address, platform.root / HONEST, customers(platform), "count")
            assert report["count"] == 150
            assert idle.call.is_active()
            idle.call.cancel()
        assert memory.held == 0


def test_a_u_of_one_point_repeated_is_refused_before_any_of_it_is_multiplied(
    platform: Platform, serve: Callable[..., Server]
) -> None:
    # 300,000 copies of one valid point, three per record: every count and tag is in order, and
    # only the duplicates are wrong. The platform refuses it from the bytes alone (the unit test
    # tests/unit/test_protocol_roles.py counts the multiplications: none).
    server = serve()
    copies, records = 300_000, 100_000
    suite = get_suite(SUITE_ID)
    point = suite.hash_to_curve(b"one guess", suite.dst)
    per_chunk = 4_000_000 // (32 + 4)
    with platform.channel("eve", server.address) as channel:
        stream = MatchStream(channel, TIMEOUT)
        stream.send(_opening(records, copies))
        session_id = b""
        replies = iter(stream.call)
        for reply in replies:
            if reply.HasField("session_opened"):
                session_id = reply.session_opened.session_id
                break
        for start in range(0, copies, per_chunk):
            count = min(per_chunk, copies - start)
            stream.send(u_chunk(session_id, start, count, point * count, records))
        code, details, name = _status(replies)
        stream.end()
    assert (code, name) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidElement")
    assert details == "element at row 1: advertiser set U: duplicate of row 0"
    last = _ledger(platform.db, "eve")[-1]
    assert last.state == "aborted" and last.epsilon_charged == 0


# -- a hostile platform against the advertiser's CLI --------------------------------------------


Tamper = Callable[[pb.ServerMessage], None]


@dataclass
class HostilePlatform(pb_grpc.MatcherServicer):  # type: ignore[misc, unused-ignore]
    """A real gRPC servicer around the real platform role, whose messages a test tampers with."""

    inputs: PlatformInputs
    policy_tamper: Callable[[pb.PolicyInfo], None] | None = None
    tamper: Tamper | None = None
    refuse_with: tuple[grpc.StatusCode, str] | None = None

    def GetPolicy(self, request: pb.PolicyRequest, context: Any) -> pb.PolicyInfo:
        info = policy_info(
            parse_policy(POLICY).defaults,
            epoch_id=1,
            platform_set_size=len(self.inputs.platform_set),
            spent_epsilon=0.0,
            sessions_today=0,
        )
        if self.policy_tamper is not None:
            self.policy_tamper(info)
        return info

    def Match(self, requests: Iterator[pb.ClientMessage], context: Any) -> Iterator[Any]:
        if self.refuse_with is not None:
            context.abort(*self.refuse_with)
        request = read_open_session(next(requests))
        policy = parse_policy(POLICY)
        decision = check_session(policy, "alice", request.mode, request.record_count, 0, 0, False)
        role = PlatformRole(request, decision, self.inputs)
        for message in role.start():
            yield self._tampered(message)
        for message in requests:
            for reply in role.handle(message):
                yield self._tampered(reply)
            if role.finished:
                return

    def _tampered(self, message: pb.ServerMessage) -> pb.ServerMessage:
        if self.tamper is not None:
            self.tamper(message)
        return message


@dataclass
class FakePlatform:
    servicer: HostilePlatform
    address: str
    tls_dir: Path


@pytest.fixture(scope="module")
def hostile_platform(platform: Platform) -> Iterator[FakePlatform]:
    suite = get_suite(SUITE_ID)
    key = suite.generate_key()
    messages = [
        hash_message("email", identifier_digest("email", person.email))
        for person in platform.people
    ]
    elements = BatchEngine(workers=1).hash_and_encrypt(suite, key, messages, suite.dst)
    inputs = PlatformInputs(1, key, elements, np.arange(len(messages), dtype=np.int64))
    servicer = HostilePlatform(inputs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_MatcherServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("localhost:0", tls.server_credentials(platform.root / "tls"))
    # The fake signs no receipts: alice's folder without the audit key, so the client expects
    # none (with the key, a missing receipt is itself refused).
    client_tls = platform.root / "alice-no-receipts"
    client_tls.mkdir(exist_ok=True)
    for name in (tls.CA_CERT_FILE, tls.CLIENT_CERT_FILE, tls.CLIENT_KEY_FILE):
        source = platform.root / HONEST / name
        (client_tls / name).write_bytes(source.read_bytes())
        (client_tls / name).chmod(source.stat().st_mode & 0o777)
    server.start()
    try:
        yield FakePlatform(servicer, f"localhost:{port}", client_tls)
    finally:
        server.stop(grace=None)


def _match_against(fake: FakePlatform, platform: Platform, *extra: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [
            cleanroom_executable(),
            *("match", "--server", fake.address, "--tls-dir", str(fake.tls_dir)),
            *("--input", str(customers(platform)), "--mode", "count", "--workers", "1"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _set(field: str, value: object) -> Callable[[Any], None]:
    return lambda message: setattr(message, field, value)


def _on_opened(change: Callable[[pb.SessionOpened], None]) -> Tamper:
    def tamper(message: pb.ServerMessage) -> None:
        if message.HasField("session_opened"):
            change(message.session_opened)

    return tamper


@pytest.mark.parametrize(
    ("policy_tamper", "tamper", "says"),
    [
        (_set("platform_set_size", 2**64 - 1), None, "more than this client accepts"),
        (_set("platform_set_size", 10**11), None, "more than this client accepts"),
        (None, _on_opened(_set("platform_set_size", 2**64 - 1)), "more than this client accepts"),
        (None, _on_opened(_set("platform_set_size", 10**11)), "more than this client accepts"),
        (None, _on_opened(_set("platform_set_size", PEOPLE + 1)), "run the match again"),
        (_set("epsilon_remaining", float("nan")), None, "epsilon_remaining = nan"),
        (_set("default_region", "\x1b]0;owned\x07"), None, "'\\x1b]0;owned\\x07'"),
        (lambda info: info.suites.__setitem__(slice(None), ["\x1b[2J" * 1000]), None, "offers no"),
    ],
)
def test_whatever_the_platform_announces_the_cli_stops_with_one_line_and_exit_1(
    hostile_platform: FakePlatform,
    platform: Platform,
    policy_tamper: Callable[[pb.PolicyInfo], None] | None,
    tamper: Tamper | None,
    says: str,
) -> None:
    hostile_platform.servicer.policy_tamper = policy_tamper
    hostile_platform.servicer.tamper = tamper
    try:
        code, out, err = _match_against(hostile_platform, platform)
    finally:
        hostile_platform.servicer.policy_tamper = hostile_platform.servicer.tamper = None
    assert code == 1, err
    assert "Traceback" not in err and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ") and says in line and "\x1b" not in line
    assert len(line) < 600


def test_the_ceiling_is_the_clients_to_set(
    hostile_platform: FakePlatform, platform: Platform
) -> None:
    code, _, err = _match_against(hostile_platform, platform, "--max-platform-set", "100")
    assert code == 1 and "300 identifiers, more than this client accepts (100;" in err
    code, _, err = _match_against(hostile_platform, platform, "--max-platform-set", "300")
    assert code == 0, err


def test_text_from_the_platform_is_escaped_in_the_report_and_in_errors(
    hostile_platform: FakePlatform, platform: Platform
) -> None:
    def result(message: pb.ServerMessage) -> None:
        if message.HasField("result"):
            message.result.reported_as = "150\x1b[2J\nfewer than 1"

    hostile_platform.servicer.tamper = result
    try:
        code, out, err = _match_against(hostile_platform, platform)
    finally:
        hostile_platform.servicer.tamper = None
    assert code == 0, err
    assert "\x1b" not in out
    assert "matched customers: 150\\x1b[2J\\nfewer than 1" in out

    hostile_platform.servicer.refuse_with = (
        grpc.StatusCode.FAILED_PRECONDITION,
        "\x1b]0;pwned\x07\nerror: fake second line " + "x" * 5000,
    )
    try:
        code, out, err = _match_against(hostile_platform, platform)
    finally:
        hostile_platform.servicer.refuse_with = None
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith("error: the platform refused: \\x1b]0;pwned\\x07\\nerror: fake")
    assert len(line) < 1100 and "Traceback" not in err


# -- output hygiene --------------------------------------------------------------------------------


HOSTILE_IDS = ["=cmd|' /C calc'!A0", "\x1b[2Jwiped", "two\nids", "+1-555-0100", "@SUM(A1)"]


def test_user_ids_are_escaped_in_audiences_show(tmp_path: Path) -> None:
    people = generate_people(len(HOSTILE_IDS), seed=17)
    users = tmp_path / "users.csv"
    with users.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "type", "value", "source", "ads_matching_consent"])
        pairs = zip(HOSTILE_IDS, people, strict=True)
        writer.writerows([uid, "email", p.email, "signup", "true"] for uid, p in pairs)
    (tmp_path / "policy.toml").write_text(
        "epsilon_per_release = 0.0\nmin_upload_records = 1\nmin_reported_count = 0\n"
    )
    db = build_platform(tmp_path, users, [HONEST])
    listed = tmp_path / "list.csv"
    write_customer_list(listed, people, 3)
    server = Server(db, tmp_path / "policy.toml", "--workers", "1")
    try:
        run_match(server.address, tmp_path / HONEST, listed, "audience")
    finally:
        server.stop()
    shown = subprocess.run(
        [cleanroom_executable(), "platform", "audiences", "show", "1", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    members = shown.splitlines()[1:]
    assert sorted(members) == sorted(
        ["=cmd|' /C calc'!A0", "\\x1b[2Jwiped", "two\\nids", "+1-555-0100", "@SUM(A1)"]
    )
    assert "\x1b" not in shown
    # JSON output keeps the ids exactly (its encoder escapes control characters itself).
    data = cli_json("platform", "audiences", "show", "1", "--db", db)
    assert sorted(data["user_ids"]) == sorted(HOSTILE_IDS)


@pytest.mark.parametrize("quoted", [False, True], ids=["copied-lines", "csv-writer"])
def test_record_ids_written_by_match_out_cannot_start_a_formula(
    platform: Platform, serve: Callable[..., Server], tmp_path: Path, quoted: bool
) -> None:
    # A list without quotes is copied line by line; one with quotes goes through the CSV writer.
    # Both neutralize what a spreadsheet would run.
    rows = [
        (f'=HYPERLINK("http://x.example/{i}";"open")' if quoted else f"=1+{i}", p.email)
        for i, p in enumerate(platform.people[:5])
    ]
    rows += [("-2+3", platform.people[5].email), ("plain", platform.people[6].email)]
    rows += [(f"r{i}", p.email) for i, p in enumerate(platform.people[7:20])]
    listed = tmp_path / "list.csv"
    with listed.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL)
        writer.writerow(["record_id", "email", "marketing_consent"])
        writer.writerows([record, email, "yes"] for record, email in rows)
    server = serve()
    out = tmp_path / "matched.csv"
    run_match(server.address, platform.root / ORACLE, listed, "ids", "--out", out)
    with out.open(encoding="utf-8", newline="") as f:
        written = [row[0] for row in csv.reader(f)][1:]
    assert len(written) == len(rows)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in written)
    assert written.count("'-2+3") == 1 and "plain" in written


def test_help_says_which_cells_are_neutralized() -> None:
    for argv in (["match"], ["platform", "import"], ["platform", "consent", "import"]):
        done = subprocess.run(
            [cleanroom_executable(), *argv, "--help"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )
        assert "with a leading ' so that spreadsheets" in " ".join(done.stdout.split()), argv


# -- ids mode: the count the platform records ----------------------------------------------------


def test_in_ids_mode_the_recorded_count_is_what_the_platform_could_observe(
    platform: Platform, serve: Callable[..., Server]
) -> None:
    # The advertiser sends H(x) instead of E_a(H(x)): U' = E_b(H(x)) comes back, which it
    # compares with V itself, and learns exactly which of its guesses are platform users. The
    # W it sends is honest, so the platform matches nothing and records 0.
    server = serve()
    suite = get_suite(SUITE_ID)
    guesses = [p.email for p in platform.people[:40]] + [f"nobody{i}@x.org" for i in range(20)]
    messages = [hash_message("email", identifier_digest("email", g)) for g in guesses]
    u = default_engine().hash_to_curve_many(suite, messages, suite.dst)
    key = suite.generate_key()
    with platform.channel(ORACLE, server.address) as channel:
        stream = MatchStream(channel, TIMEOUT)
        opening = _opening(len(guesses), len(guesses))
        opening.open_session.mode = pb.MATCH_MODE_IDS
        stream.send(opening)
        replies = iter(stream.call)
        opened = next(replies).session_opened
        sid, total = opened.session_id, opened.platform_set_size
        stream.send(
            pb.ClientMessage(
                advertiser_set=pb.AdvertiserSetChunk(
                    session_id=sid,
                    offset=0,
                    count=len(u),
                    elements=u.tobytes(),
                    record_tags=np.arange(len(u), dtype="<u4").tobytes(),
                )
            )
        )
        v = b""
        while len(v) < total * 32:
            v += next(replies).platform_set.elements
        w = default_engine().encrypt(suite, key, np.frombuffer(v, np.uint8).reshape(-1, 32))
        stream.send(
            pb.ClientMessage(
                encrypted_platform_set=pb.EncryptedPlatformSetChunk(
                    session_id=sid, offset=0, count=total, elements=w.tobytes()
                )
            )
        )
        u_prime = next(replies).encrypted_advertiser_set.elements
        result = next(replies).result
        stream.send(pb.ClientMessage(close=pb.Close(session_id=sid)))
        stream.end()
        assert _status(replies)[0] == grpc.StatusCode.OK
    platform_set = {v[i : i + 32] for i in range(0, len(v), 32)}
    learned = sum(u_prime[i : i + 32] in platform_set for i in range(0, len(u_prime), 32))
    assert learned == 40  # exact membership of every guess
    assert result.count == 0
    last = _ledger(platform.db, ORACLE)[-1]
    assert (last.state, last.result_count) == ("completed", 0)
