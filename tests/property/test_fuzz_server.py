"""Hostile protocol messages against the real platform server: it refuses them cleanly and holds.

A real :class:`~cleanroom.service.server.PlatformServer` (mTLS, port 0) serves a real SQLite
store built with the real CLI. Hypothesis then sends it messages built from the generated
protobuf classes, every ``oneof`` branch of ``ClientMessage``, with hostile contents: wrong
sizes, huge and overflowing counts and offsets, bad session ids, unknown suites and modes,
random bytes as elements, duplicates, empty chunks, rounds out of order and replayed; raw bytes
that are not a protobuf at all go through a generic call with identity serializers.

Every call has a deadline; for each one the test asserts that

- it ends with OK or a status the caller can act on (``INVALID_ARGUMENT``,
  ``FAILED_PRECONDITION``, ``RESOURCE_EXHAUSTED``), never ``UNKNOWN``, ``INTERNAL`` or a
  ``DEADLINE_EXCEEDED`` (a hang), and its details never carry a traceback;
- a refused call names its error class in the trailing metadata;
- a body that does not parse as the method's protobuf is refused like any other bad data:
  ``INVALID_ARGUMENT`` with ``InvalidMessage`` (not gRPC's own ``INTERNAL`` "Exception
  deserializing request!", which would blame the platform), and any session it interrupts is
  aborted and recorded;
- the session ledger is left with nothing open, exactly one ``match.*`` audit entry was written
  for the call, and privacy budget was charged only for sessions that completed.

After the fuzz runs, the health check still says SERVING, an honest session still returns the
exact plaintext count, ``PRAGMA integrity_check`` is ``ok`` and the audit chain verifies.

Examples per run (all over one mTLS channel): 100 fuzzed first messages (plus 5 fixed extreme
openings), 60 fuzzed sessions (an honest session with 0-3 hostile mutations), 60 raw-byte
Match streams and 40 raw-byte GetPolicy bodies; then fixed cases: a burst of 5,000 chunks, 25
sessions opened and dropped, one message over the size limit. ``CLEANROOM_FUZZ_EXAMPLES=N``
runs N examples per fuzz target instead (``--hypothesis-show-statistics`` shows which refusals
the run reached).

Found by it, and fixed: an OpenSession announcing 2**63 records or more made recording the
refusal overflow SQLite's integer, so the client got ``INTERNAL`` and the ledger and audit log
missed the refusal; such counts are now ``INVALID_ARGUMENT`` (InvalidMessage) and recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from _match_stream import MatchStream, run_role
from _platform_processes import build_platform
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from cleanroom import tls
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, default_engine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode, policy_from_mapping
from cleanroom.protocol import ERROR_NAME_KEY, AdvertiserRole
from cleanroom.service.admission import AdmissionLimits
from cleanroom.service.server import PlatformServer, ServerOptions
from cleanroom.store import audit, sessions
from cleanroom.store.database import open_database

_OVERRIDE = int(os.environ.get("CLEANROOM_FUZZ_EXAMPLES", "0"))


def examples(default: int) -> int:
    """Examples for one fuzz target: ``default`` unless CLEANROOM_FUZZ_EXAMPLES says otherwise."""
    return _OVERRIDE or default


CALL_DEADLINE = 30.0  # seconds; an exceeded deadline is a hang, so a failure
SETTLE_SECONDS = 15.0  # how long the ledger may take to record an abort the client already saw
SUITE_ID = "x25519-sha512-ell2-ro"
FUZZER = "fuzzer"  # the hostile advertiser
CHECKER = "checker"  # an honest advertiser with exact counts, for the after-checks
PLATFORM_PEOPLE = 120

POLICY = policy_from_mapping(
    {
        "min_upload_records": 1,
        "min_reported_count": 0,
        "epsilon_per_release": 0.5,
        "max_sessions_per_day": 1_000_000,
        "advertisers": {
            FUZZER: {
                "modes_allowed": ["count", "audience", "ids"],
                "epsilon_budget": 1_000_000.0,
            },
            CHECKER: {"epsilon_per_release": 0.0},
        },
    }
)

# What a hostile client may be told. INTERNAL would say the platform failed on its own: for
# input from the client that is a bug, and UNKNOWN means an exception escaped the status table.
CLIENT_FAULTS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

Identifier = tuple[str, str]


@dataclass
class Platform:
    root: Path
    db: Path
    server: PlatformServer
    fuzz_channel: grpc.Channel
    eligible: set[Identifier]
    people: list[Person]
    engine: BatchEngine  # in-process, for the server and the test's own advertiser


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("fuzz-platform")
    people = generate_people(PLATFORM_PEOPLE, seed=61)
    rows, eligible = [], set()
    for i, person in enumerate(people):
        rows.append(f"{person.user_id},email,{person.email},signup,true")
        eligible.add(("email", person.email))
        source = "two_factor" if i % 3 == 0 else "profile"  # never matches, consent or not
        rows.append(f"{person.user_id},phone,{person.phone},{source},true")
        if source == "profile":
            eligible.add(("phone", person.phone))
    (root / "users.csv").write_text(
        "user_id,type,value,source,ads_matching_consent\n" + "\n".join(rows) + "\n"
    )
    db = build_platform(root, root / "users.csv", (FUZZER, CHECKER))
    engine = BatchEngine(workers=1)
    options = ServerOptions(
        db_path=db,
        listen="localhost:0",
        policy=POLICY,
        tls_dir=root / "tls",
        session_timeout=120.0,  # longer than CALL_DEADLINE: a hang shows as the client's deadline
        engine=engine,
        # One advertiser makes hundreds of calls a minute here: every one must reach the code
        # under fuzz, not the rate limits (tested in tests/integration/test_hostile.py).
        limits=AdmissionLimits(
            streams_per_minute=1e9,
            stream_burst=1_000_000,
            policy_calls_per_minute=1e9,
            policy_call_burst=1_000_000,
        ),
    )
    server = PlatformServer(options)
    server.start()
    channel = _channel(root, FUZZER, server.port)
    try:
        yield Platform(root, db, server, channel, eligible, people, engine)
    finally:
        channel.close()
        server.stop(grace=0)
        engine.close()


def _channel(root: Path, advertiser: str, port: int) -> grpc.Channel:
    return grpc.secure_channel(f"localhost:{port}", tls.channel_credentials(root / advertiser))


# -- driving one call ---------------------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    error_name: str | None
    replies: list[pb.ServerMessage]


def _outcome(error: grpc.RpcError | None, replies: list[pb.ServerMessage]) -> Outcome:
    if error is None:
        return Outcome(grpc.StatusCode.OK, "", None, replies)
    call: Any = error
    name = dict(call.trailing_metadata() or ()).get(ERROR_NAME_KEY)
    return Outcome(call.code(), call.details() or "", name, replies)


Plan = Callable[[bytes, list[pb.ClientMessage], bytes], list[pb.ClientMessage]]
"""``plan(session_id, honest, platform_set)``: what to send once V has arrived."""


def run_plan(
    channel: grpc.Channel,
    first: pb.ClientMessage,
    role: AdvertiserRole | None,
    plan: Plan,
) -> Outcome:
    """Send ``first``; once V has arrived, send what ``plan`` returns; drain the replies.

    The plan gets the session id, what an honest advertiser (``role``) would send after V (its
    chunks of U and W, and its Close) and V's bytes. The stream is ended after the plan, so a
    plan that stops short must be refused for it, not left hanging.
    """
    stream = MatchStream(channel, CALL_DEADLINE)
    stream.send(first)
    replies: list[pb.ServerMessage] = []
    error: grpc.RpcError | None = None
    session_id: bytes | None = None
    expected = received = 0
    honest: list[pb.ClientMessage] = []
    sent_plan = False
    try:
        for reply in stream.call:
            replies.append(reply)
            kind = reply.WhichOneof("round")
            if role is not None and not role.finished and kind != "result":
                honest.extend(role.handle(reply))
            if kind == "session_opened":
                session_id = reply.session_opened.session_id
                expected = reply.session_opened.platform_set_size
            elif kind == "platform_set":
                received += reply.platform_set.count
                if received >= expected and not sent_plan:
                    assert session_id is not None
                    honest.append(pb.ClientMessage(close=pb.Close(session_id=session_id)))
                    stream.send(*plan(session_id, honest, _platform_set(replies)))
                    stream.end()
                    sent_plan = True
    except grpc.RpcError as exc:
        error = exc
    except BaseException:
        stream.call.cancel()  # the test itself failed: leave no session open behind it
        raise
    finally:
        stream.end()
    outcome = _outcome(error, replies)
    assert outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED, "the server hung"
    return outcome


def assert_clean_status(outcome: Outcome) -> None:
    """OK, or a status naming the client's fault, with a message and no traceback."""
    _tally(outcome)
    if outcome.code is grpc.StatusCode.OK:
        return
    assert outcome.code in CLIENT_FAULTS, (outcome.code, outcome.details, outcome.error_name)
    assert "Traceback" not in outcome.details and 'File "' not in outcome.details
    assert outcome.details.strip()
    if outcome.error_name is None:
        # Only gRPC's own size limit refuses without cleanroom's error class.
        assert outcome.code is grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
        assert "larger than max" in outcome.details, outcome


def _tally(outcome: Outcome) -> None:
    """Count outcomes for ``--hypothesis-show-statistics`` (what the fuzz reached)."""
    with contextlib.suppress(InvalidArgument):  # outside a Hypothesis test: nothing to count
        event(f"{outcome.code.name} {outcome.error_name or outcome.details[:40]}")


# -- store reads -----------------------------------------------------------------------------


def _match_entries(db: Path) -> int:
    with open_database(db) as database:
        return sum(1 for e in audit.entries(database.conn) if e.action.startswith("match."))


def _new_entries(db: Path, before: int) -> list[tuple[str, Any]]:
    with open_database(db) as database:
        matches = [e for e in audit.entries(database.conn) if e.action.startswith("match.")]
    return [(e.action, e.details) for e in matches[before:]]


def _ledger(db: Path, advertiser: str) -> list[sessions.SessionRecord]:
    with open_database(db) as database:
        return sessions.list_sessions(database, advertiser=advertiser)


def settle(db: Path, entries_before: int, *, expected_new: int | None = 1) -> None:
    """Wait until the call's session is final in the ledger; check what it wrote and charged.

    A client may see its status a moment before the server has recorded the abort (a size
    limit refused by gRPC itself), so this waits, bounded, for nothing to be open.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        rows = _ledger(db, FUZZER)
        entries = _match_entries(db)
        done = all(r.state != "open" for r in rows) and (
            expected_new is None or entries >= entries_before + expected_new
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert all(r.state != "open" for r in rows), "a session was left open"
    if expected_new is not None:
        assert entries == entries_before + expected_new, _new_entries(db, entries_before)
    for record in rows:
        if record.state != "completed":
            assert record.epsilon_charged == 0, record
            assert record.audience_id is None, record
    with open_database(db) as database:
        epoch = database.conn.execute("SELECT MAX(id) FROM key_epochs").fetchone()[0]
        spent = sessions.spent_epsilon(database, FUZZER, int(epoch))
    charged = sum(r.epsilon_charged for r in rows if r.state == "completed")
    assert spent == pytest.approx(charged)


# -- strategies: hostile field values ----------------------------------------------------------

U64 = 2**64 - 1
U32 = 2**32 - 1

counts_u64 = st.one_of(
    st.integers(0, 3),
    st.integers(0, 5_000),
    st.sampled_from([2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, U64 - 1, U64]),
    st.integers(0, U64),
)
counts_u32 = st.one_of(
    st.integers(0, 4),
    st.sampled_from([125_000, 125_001, 2**31 - 1, 2**31, U32]),
    st.integers(0, U32),
)
versions = st.one_of(st.just(1), st.integers(0, U32))
# Mostly the right versions, so that openings get past them to the checks behind.
version_pairs = st.one_of(st.just((1, 1)), st.just((1, 1)), st.tuples(versions, versions))
modes = st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(-(2**31), 2**31 - 1))
suites = st.one_of(
    st.just(SUITE_ID),
    st.just(SUITE_ID),
    st.just("p256-sha256-sswu-ro"),
    st.sampled_from(["", SUITE_ID.upper(), SUITE_ID + "\x00", " " + SUITE_ID, "x25519"]),
    st.text(max_size=40),
)


@st.composite
def openings(draw: st.DrawFn) -> pb.OpenSession:
    records = draw(counts_u64)
    identifiers = draw(st.one_of(counts_u64, st.just(records), st.integers(records, records * 3)))
    normalization, protocol = draw(version_pairs)
    return pb.OpenSession(
        mode=draw(modes),
        suite=draw(suites),
        normalization_version=normalization,
        protocol_version=protocol,
        record_count=records,
        identifier_count=min(identifiers, U64),
    )


def _valid_points(count: int) -> list[bytes]:
    """Points on the curve, of the right order, as a hostile client can make them."""
    suite = get_suite(SUITE_ID)
    return [
        bytes(row)
        for row in default_engine().hash_to_curve_many(
            suite, [b"fuzz %d" % i for i in range(count)], suite.dst
        )
    ]


_POINTS = _valid_points(16)

# A hostile message is drawn before its call (Hypothesis must not draw while a session is open:
# an overrun would end the example with the session still open), so it is drawn as a function
# of what only the call reveals: the session id and the platform set V.
Sid = Callable[[bytes], bytes]
Elements = Callable[[bytes], bytes]
Hostile = Callable[[bytes, bytes], pb.ClientMessage]


@st.composite
def session_ids(draw: st.DrawFn) -> Sid:
    """The correct session id, or one that is empty, random, cut, extended or of any size."""
    choice = draw(
        st.sampled_from(["correct"] * 3 + ["empty", "random", "prefix", "longer", "other"])
    )
    if choice == "correct":
        return lambda correct: correct
    if choice == "empty":
        return lambda _correct: b""
    if choice == "prefix":
        keep = draw(st.integers(0, 15))
        return lambda correct: correct[:keep]
    if choice == "longer":
        tail = draw(st.binary(min_size=1, max_size=8))
        return lambda correct: correct + tail
    other = draw(
        st.binary(min_size=16, max_size=16) if choice == "random" else st.binary(max_size=64)
    )
    return lambda _correct: other


@st.composite
def element_bytes(draw: st.DrawFn, points: list[bytes]) -> Elements:
    """A payload of elements: random, valid, duplicated, small-order, replayed, ragged."""
    choice = draw(
        st.sampled_from(
            ["random", "valid", "duplicates", "zeros", "ones", "replayed", "ragged", "empty"]
        )
    )
    payload = b""
    if choice == "random":
        payload = draw(st.binary(max_size=320))
    elif choice == "valid":
        payload = b"".join(draw(st.lists(st.sampled_from(points), max_size=8, unique=True)))
    elif choice == "duplicates":
        payload = draw(st.sampled_from(points)) * draw(st.integers(2, 6))
    elif choice == "zeros":  # u = 0: small order
        payload = bytes(32 * draw(st.integers(1, 4)))
    elif choice == "ones":  # u = 2^256 - 1: not canonical
        payload = b"\xff" * 32 * draw(st.integers(1, 4))
    elif choice == "replayed":  # the platform's own V sent back
        rows = draw(st.integers(1, 8))
        return lambda platform_set: platform_set[: 32 * rows]
    elif choice == "ragged":
        payload = b"".join(draw(st.lists(st.sampled_from(points), min_size=1, max_size=4)))
        payload = payload[: -draw(st.integers(1, 31))] if draw(st.booleans()) else payload + b"\1"
    return lambda _platform_set: payload


@st.composite
def hostile_messages(draw: st.DrawFn, points: list[bytes]) -> Hostile:
    """Any branch of ClientMessage (or none), with hostile contents."""
    branch = draw(
        st.sampled_from(
            ["open_session", "close", "none"] + ["advertiser_set", "encrypted_platform_set"] * 3
        )
    )
    if branch == "none":
        return lambda _sid, _v: pb.ClientMessage()
    if branch == "open_session":
        opening = draw(openings())
        return lambda _sid, _v: pb.ClientMessage(open_session=opening)
    sid = draw(session_ids())
    if branch == "close":
        return lambda correct, _v: pb.ClientMessage(close=pb.Close(session_id=sid(correct)))
    elements = draw(element_bytes(points))
    count = draw(st.one_of(st.none(), counts_u32))  # None: consistent with the elements
    offset = draw(st.one_of(st.just(0), counts_u64))
    tags = draw(
        st.one_of(
            st.none(),  # one zero tag per element
            st.binary(max_size=64),
            st.integers(0, U32).map(lambda t: t.to_bytes(4, "little")),  # per element
        )
    )

    def build(correct: bytes, platform_set: bytes) -> pb.ClientMessage:
        payload = elements(platform_set)
        rows = len(payload) // 32
        n = rows if count is None else count
        if branch == "encrypted_platform_set":
            chunk = pb.EncryptedPlatformSetChunk(
                session_id=sid(correct), offset=offset, count=n, elements=payload
            )
            return pb.ClientMessage(encrypted_platform_set=chunk)
        record_tags = (
            bytes(4 * rows) if tags is None else tags * max(rows, 1) if len(tags) == 4 else tags
        )
        advertiser_chunk = pb.AdvertiserSetChunk(
            session_id=sid(correct),
            offset=offset,
            count=n,
            elements=payload,
            record_tags=record_tags,
        )
        return pb.ClientMessage(advertiser_set=advertiser_chunk)

    return build


# -- the honest advertiser a plan starts from --------------------------------------------------


def honest_role(platform: Platform, mode: Mode, customers: int) -> AdvertiserRole:
    messages, record_ids = [], []
    for record, person in enumerate(platform.people[:customers]):
        for kind, value in (("email", person.email), ("phone", person.phone)):
            messages.append(hash_message(kind, identifier_digest(kind, value)))
            record_ids.append(record)
    role = AdvertiserRole(get_suite(SUITE_ID), mode, messages, record_ids, engine=platform.engine)
    role.encrypt_list()
    return role


def _platform_set(replies: list[pb.ServerMessage]) -> bytes:
    return b"".join(
        r.platform_set.elements for r in replies if r.WhichOneof("round") == "platform_set"
    )


# -- 1. openings ---------------------------------------------------------------------------------


def _opening(*, records: int, identifiers: int, mode: int = 1) -> pb.ClientMessage:
    opening = pb.OpenSession(
        mode=mode,
        suite=SUITE_ID,
        normalization_version=1,
        protocol_version=1,
        record_count=records,
        identifier_count=identifiers,
    )
    return pb.ClientMessage(open_session=opening)


@settings(max_examples=examples(100))
@given(
    first=st.one_of(
        *[openings().map(lambda o: pb.ClientMessage(open_session=o))] * 3,
        st.builds(pb.ClientMessage),
        st.builds(lambda c: pb.ClientMessage(close=pb.Close(session_id=c)), st.binary(max_size=40)),
        st.builds(
            lambda e, n: pb.ClientMessage(
                advertiser_set=pb.AdvertiserSetChunk(elements=e, count=n, record_tags=bytes(4 * n))
            ),
            st.binary(max_size=96),
            st.integers(0, 3),
        ),
        st.builds(
            lambda e: pb.ClientMessage(
                encrypted_platform_set=pb.EncryptedPlatformSetChunk(elements=e)
            ),
            st.binary(max_size=96),
        ),
    ),
)
@example(first=_opening(records=U64, identifiers=U64))
@example(first=_opening(records=2**63, identifiers=2**63))
@example(first=_opening(records=2**62, identifiers=2**62))
@example(first=_opening(records=10_000_000, identifiers=30_000_000))
@example(first=_opening(records=1, identifiers=1, mode=-1))
def test_a_fuzzed_first_message_is_refused_cleanly_or_opens_a_session(
    platform: Platform, first: pb.ClientMessage
) -> None:
    before = _match_entries(platform.db)
    # A session the fuzz opens for real is then left short (the stream ends after V).
    outcome = run_plan(platform.fuzz_channel, first, None, lambda _sid, _honest, _v: [])
    assert outcome.code is not grpc.StatusCode.OK  # nothing it sends can complete a session
    assert_clean_status(outcome)
    settle(platform.db, before)


# -- 2. sessions: an honest run with hostile mutations -----------------------------------------

Mutation = tuple[str, int, int, Hostile | None]  # (kind, position, argument, hostile message)


@st.composite
def mutations(draw: st.DrawFn, points: list[bytes]) -> Mutation:
    # Damage in place more often than reordering, which the round checks refuse at once.
    kinds = ["corrupt"] * 3 + ["replace"] * 3 + ["insert", "drop", "replay", "swap", "cut"]
    kind = draw(st.sampled_from(kinds))
    hostile = draw(hostile_messages(points)) if kind in ("replace", "insert") else None
    return kind, draw(st.integers(0, 1000)), draw(st.integers(0, 2**16)), hostile


def _corrupt(message: pb.ClientMessage, how: int) -> pb.ClientMessage:
    """One field of an honest message made wrong; ``how`` picks the field and the damage."""
    bad = pb.ClientMessage()
    bad.CopyFrom(message)
    kind = bad.WhichOneof("round")
    if kind is None or kind == "open_session":
        return bad
    body = getattr(bad, kind)
    fields = ["session_id"] if kind == "close" else ["session_id", "offset", "count", "elements"]
    if kind == "advertiser_set":
        fields.append("record_tags")
    name, how = fields[how % len(fields)], how // len(fields)
    if name == "session_id":
        sid = body.session_id or bytes(16)
        body.session_id = bytes([sid[0] ^ 1]) + sid[1:]
    elif name == "offset":
        body.offset = (min(body.offset + 1, U64), min(body.offset + 7, U64), U64)[how % 3]
    elif name == "count":
        body.count = (min(body.count + 1, U32), max(body.count - 1, 0), U32)[how % 3]
    elif name == "elements":
        data = bytearray(body.elements)
        if data and how % 2:
            data[how % len(data)] ^= 1 << (how % 8)  # off the curve, or another point
            body.elements = bytes(data)
        else:
            body.elements = bytes(data[: -(1 + how % 40)])
    else:
        tags = bytearray(body.record_tags)
        if tags:
            tags[-1] = 0xFF  # a record tag far out of range
        body.record_tags = bytes(tags) + bytes(how % 4)
    return bad


def mutate(
    honest: list[pb.ClientMessage], plan: list[Mutation], session_id: bytes, platform_set: bytes
) -> list[pb.ClientMessage]:
    """Apply the drawn mutations to what an honest advertiser would send."""
    messages = list(honest)
    for kind, position, argument, hostile in plan:
        at = position % max(len(messages), 1)
        if hostile is not None:
            messages[at : at + (kind == "replace")] = [hostile(session_id, platform_set)]
        elif not messages:
            continue
        elif kind == "drop":
            del messages[at]
        elif kind == "replay":
            messages.insert(at, messages[at])
        elif kind == "swap":
            other = argument % len(messages)
            messages[at], messages[other] = messages[other], messages[at]
        elif kind == "corrupt":
            messages[at] = _corrupt(messages[at], argument)
        else:  # cut: the stream ends early
            del messages[at:]
    return messages


@settings(max_examples=examples(60))
@given(
    mode=st.sampled_from([Mode.COUNT, Mode.AUDIENCE, Mode.IDS]),
    customers=st.integers(1, 12),
    plan=st.lists(mutations(_POINTS), max_size=3),
)
def test_a_fuzzed_session_ends_cleanly_and_charges_only_a_completed_release(
    platform: Platform, mode: Mode, customers: int, plan: list[Mutation]
) -> None:
    role = honest_role(platform, mode, customers)
    before = _match_entries(platform.db)
    outcome = run_plan(
        platform.fuzz_channel,
        role.open_session(),
        role,
        lambda session_id, honest, platform_set: mutate(honest, plan, session_id, platform_set),
    )
    assert_clean_status(outcome)
    if not plan:
        assert outcome.code is grpc.StatusCode.OK
    result = [r.result for r in outcome.replies if r.WhichOneof("round") == "result"]
    if outcome.code is grpc.StatusCode.OK:
        assert len(result) == 1
    settle(platform.db, before)
    last = _ledger(platform.db, FUZZER)[-1]
    # A result went out exactly when the session completed, and then it was charged.
    assert (last.state == "completed") == bool(result), (last, outcome)
    if result:
        assert last.epsilon_charged == pytest.approx(result[0].epsilon_charged)


# -- 3. raw bytes that are not (or are barely) protobuf ----------------------------------------

raw_bodies = st.one_of(
    st.binary(max_size=256),
    st.sampled_from(
        [
            b"\x0a",  # field 1, length-delimited, then nothing: truncated
            b"\x0a\xff\xff\xff\xff\x0f",  # a length of 4 GiB
            b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than 64 bits
            b"\x0a\x06\x08\xff\xff\xff\xff\x0f",  # OpenSession.mode = 2^32-1 (overflows int32)
            # OpenSession with record_count = identifier_count = -1 as a varint (2^64 - 1)
            b"\x0a\x1e\x08\x01\x12\x00\x18\x01\x20\x01\x28"
            + b"\xff" * 9
            + b"\x01\x30"
            + b"\xff" * 9
            + b"\x01",
            b"\x0f" * 64,  # an end-group tag with no group
        ]
    ),
)


def _raw_match(channel: grpc.Channel, bodies: list[bytes]) -> Outcome:
    call = channel.stream_stream(
        "/cleanroom.v1.Matcher/Match", request_serializer=None, response_deserializer=None
    )(iter(bodies), timeout=CALL_DEADLINE)
    error = None
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        error = exc
    return _outcome(error, [])


def assert_clean_raw_status(outcome: Outcome) -> None:
    assert outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED, "the server hung"
    assert_clean_status(outcome)
    if outcome.error_name == "InvalidMessage" and "does not parse" in outcome.details:
        # Only the size and the expected type: nothing of the body comes back.
        assert re.fullmatch(
            r"a request of \d+ bytes does not parse as cleanroom\.v1\.\w+", outcome.details
        ), outcome


@settings(max_examples=examples(60))
@given(bodies=st.lists(raw_bodies, min_size=0, max_size=4))
def test_raw_bytes_on_the_match_stream_are_refused_cleanly(
    platform: Platform, bodies: list[bytes]
) -> None:
    before = _match_entries(platform.db)
    outcome = _raw_match(platform.fuzz_channel, bodies)
    assert outcome.code is not grpc.StatusCode.OK
    assert_clean_raw_status(outcome)
    # A first body that parsed opened (or was refused as) one session; one that did not never
    # reached the servicer, and an empty stream is refused before any session.
    settle(platform.db, before, expected_new=None)
    assert _match_entries(platform.db) - before <= 1


# The body of a length-delimited field 1 announcing 4 GiB: not a protobuf message of any type.
UNPARSABLE = b"\x0a\xff\xff\xff\xff\x0f"


def test_an_unparsable_body_mid_session_is_invalid_argument_and_aborts_the_session(
    platform: Platform,
) -> None:
    role = honest_role(platform, Mode.COUNT, 4)
    before = _match_entries(platform.db)
    outcome = _raw_match(
        platform.fuzz_channel, [role.open_session().SerializeToString(), UNPARSABLE]
    )
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.error_name == "InvalidMessage"
    assert outcome.details == "a request of 6 bytes does not parse as cleanroom.v1.ClientMessage"
    settle(platform.db, before)
    assert _new_entries(platform.db, before)[0][0] == "match.aborted"
    assert _ledger(platform.db, FUZZER)[-1].state == "aborted"


def test_an_unparsable_first_body_opens_no_session(platform: Platform) -> None:
    before = _match_entries(platform.db)
    sessions_before = len(_ledger(platform.db, FUZZER))
    outcome = _raw_match(platform.fuzz_channel, [UNPARSABLE])
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.error_name == "InvalidMessage"
    settle(platform.db, before, expected_new=0)
    assert len(_ledger(platform.db, FUZZER)) == sessions_before


def test_an_unparsable_policy_request_is_invalid_argument(platform: Platform) -> None:
    call = platform.fuzz_channel.unary_unary(
        "/cleanroom.v1.Matcher/GetPolicy", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as raised:
        call(UNPARSABLE, timeout=CALL_DEADLINE)
    outcome = _outcome(raised.value, [])
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.error_name == "InvalidMessage"
    assert outcome.details == "a request of 6 bytes does not parse as cleanroom.v1.PolicyRequest"


@settings(max_examples=examples(40))
@given(body=raw_bodies)
def test_raw_bytes_as_a_policy_request_are_answered_or_refused_cleanly(
    platform: Platform, body: bytes
) -> None:
    call = platform.fuzz_channel.unary_unary(
        "/cleanroom.v1.Matcher/GetPolicy", request_serializer=None, response_deserializer=None
    )
    try:
        reply = call(body, timeout=CALL_DEADLINE)
    except grpc.RpcError as exc:
        assert_clean_raw_status(_outcome(exc, []))
    else:
        # Whatever fields a request carries, the answer is the caller's policy.
        info = pb.PolicyInfo.FromString(reply)
        assert info.epsilon_budget == 1_000_000.0


# -- 4. many messages ------------------------------------------------------------------------


def test_a_burst_of_many_messages_is_refused_at_the_first_bad_one(platform: Platform) -> None:
    role = honest_role(platform, Mode.COUNT, 4)
    before = _match_entries(platform.db)

    def flood(session_id: bytes, _honest: object, _v: bytes) -> list[pb.ClientMessage]:
        chunk = pb.AdvertiserSetChunk(session_id=session_id, count=1, elements=b"\x09" * 32)
        return [pb.ClientMessage(advertiser_set=chunk)] * 5_000

    outcome = run_plan(platform.fuzz_channel, role.open_session(), role, flood)
    assert_clean_status(outcome)
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT
    settle(platform.db, before)


def test_many_sessions_opened_and_dropped_leave_nothing_open(platform: Platform) -> None:
    before = _match_entries(platform.db)
    for _ in range(25):
        role = honest_role(platform, Mode.AUDIENCE, 2)
        outcome = run_plan(platform.fuzz_channel, role.open_session(), role, lambda _s, _h, _v: [])
        assert outcome.code is grpc.StatusCode.FAILED_PRECONDITION
        assert outcome.error_name == "OutOfOrder"
    settle(platform.db, before, expected_new=25)


def test_an_oversized_message_is_refused_by_size(platform: Platform) -> None:
    role = honest_role(platform, Mode.COUNT, 2)
    before = _match_entries(platform.db)

    def oversized(session_id: bytes, _honest: object, _v: bytes) -> list[pb.ClientMessage]:
        huge = pb.AdvertiserSetChunk(session_id=session_id, count=1, elements=bytes(4_300_000))
        return [pb.ClientMessage(advertiser_set=huge)]

    outcome = run_plan(platform.fuzz_channel, role.open_session(), role, oversized)
    assert outcome.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_clean_status(outcome)
    settle(platform.db, before)


# -- after the fuzz: the platform is whole -----------------------------------------------------


def test_after_the_fuzz_the_server_serves_and_the_store_is_intact(platform: Platform) -> None:
    with _channel(platform.root, CHECKER, platform.server.port) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cleanroom.v1.Matcher"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        customers = platform.people[:40] + generate_people(20, seed=62)
        messages, record_ids = [], []
        matched = set()
        for record, person in enumerate(customers):
            for kind, value in (("email", person.email), ("phone", person.phone)):
                messages.append(hash_message(kind, identifier_digest(kind, value)))
                record_ids.append(record)
                if (kind, value) in platform.eligible:
                    matched.add(record)
        role = AdvertiserRole(
            get_suite(SUITE_ID), Mode.COUNT, messages, record_ids, engine=platform.engine
        )
        role.encrypt_list()
        run_role(channel, role, CALL_DEADLINE)
    assert role.result is not None and role.result.count == len(matched)
    assert role.result.epsilon_charged == 0

    with open_database(platform.db) as database:
        assert database.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        audit.verify(database)
        rows = sessions.list_sessions(database)
    assert rows and all(r.state != "open" for r in rows)
    assert all(r.epsilon_charged == 0 for r in rows if r.state != "completed")
    assert main(["platform", "audit", "verify", "--db", str(platform.db)]) == 0
