"""The two protocol roles driven against each other by hand: every refusal, in its class.

Messages are tampered with in flight to play a broken or hostile party; each case asserts the
error class the gRPC layer maps to a status code, and a message that says what was wrong.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
import pytest

from cleanroom.crypto import (
    BatchEngine,
    SecretKey,
    Suite,
    ValidatedElements,
    default_engine,
    get_suite,
)
from cleanroom.errors import (
    InvalidElement,
    InvalidInput,
    InvalidMessage,
    LimitExceeded,
    OutOfOrder,
    PolicyRefused,
    UnknownSuite,
    VersionMismatch,
    WrongSession,
)
from cleanroom.identifiers import NORMALIZATION_VERSION, hash_message
from cleanroom.policy import Mode, Policy, check_session, parse_policy
from cleanroom.protocol import (
    PROTOCOL_VERSION,
    AdvertiserRole,
    ListEncryption,
    PlatformInputs,
    PlatformRole,
    SessionRequest,
    SessionTerms,
    read_open_session,
    run_locally,
)
from cleanroom.protocol._wire import pb

ENGINE = BatchEngine(workers=1)
X25519 = get_suite("x25519-sha512-ell2-ro")
P256 = get_suite("p256-sha256-sswu-ro")
EXACT_TEXT = """
min_upload_records = 0
min_reported_count = 0
epsilon_per_release = 0
[advertisers.acme]
modes_allowed = ["count", "audience", "ids"]
"""
EXACT = parse_policy(EXACT_TEXT)


def email(value: str) -> bytes:
    return hash_message("email", hashlib.sha256(value.encode()).digest())


def platform_inputs(suite: Suite, values: Sequence[str], users: Sequence[int]) -> PlatformInputs:
    key = suite.generate_key()
    platform_set = ENGINE.hash_and_encrypt(suite, key, [email(v) for v in values], suite.dst)
    return PlatformInputs(7, key, platform_set, np.asarray(users, dtype=np.int64))


PLATFORM_VALUES = [f"user{i}@example.com" for i in range(12)]
PLATFORM = platform_inputs(X25519, PLATFORM_VALUES, [i // 2 for i in range(12)])
# Records 0..7; record 3 has two identifiers; 6 and 7 are not platform users.
ADVERTISER_VALUES = [f"user{i}@example.com" for i in (0, 1, 2, 3, 10, 4, 5)] + [
    "a@x.com",
    "b@x.com",
]
ADVERTISER_RECORDS = [0, 1, 2, 3, 3, 4, 5, 6, 7]


def advertiser(mode: Mode = Mode.COUNT, suite: Suite = X25519) -> AdvertiserRole:
    messages = [email(v) for v in ADVERTISER_VALUES]
    return AdvertiserRole(suite, mode, messages, ADVERTISER_RECORDS, engine=ENGINE)


def open_platform(
    inputs: PlatformInputs = PLATFORM, policy: Policy = EXACT, max_chunk_bytes: int = 4_000_000
) -> Callable[[SessionRequest], PlatformRole]:
    def opener(request: SessionRequest) -> PlatformRole:
        decision = check_session(policy, "acme", request.mode, request.record_count, 0.0, 0, False)
        return PlatformRole(
            request, decision, inputs, engine=ENGINE, max_chunk_bytes=max_chunk_bytes
        )

    return opener


Hook = Callable[[int, pb.ClientMessage | pb.ServerMessage], None]


def exchange(
    adv: AdvertiserRole,
    opener: Callable[[SessionRequest], PlatformRole] | None = None,
    *,
    to_platform: Hook | None = None,
    to_advertiser: Hook | None = None,
) -> PlatformRole:
    """Run a session; the hooks see (and may change in place) each message in flight."""
    first = adv.open_session()
    platform = (opener or open_platform())(read_open_session(first))
    server_queue = list(platform.start())
    client_queue: list[pb.ClientMessage] = []
    sent_to_advertiser = sent_to_platform = 0
    while not (adv.finished and platform.finished):
        if server_queue:
            message = server_queue.pop(0)
            if to_advertiser:
                to_advertiser(sent_to_advertiser, message)
            sent_to_advertiser += 1
            client_queue.extend(adv.handle(message))
        else:
            message = client_queue.pop(0)
            if to_platform:
                to_platform(sent_to_platform, message)
            sent_to_platform += 1
            server_queue.extend(platform.handle(message))
    return platform


def on_round(name: str, change: Callable[..., None], which: int = 0) -> Hook:
    """A hook that changes the ``which``-th message of round ``name``."""
    seen = [0]

    def hook(_: int, message: pb.ClientMessage | pb.ServerMessage) -> None:
        if message.WhichOneof("round") == name:
            if seen[0] == which:
                change(getattr(message, name))
            seen[0] += 1

    return hook


def find_bad_element(suite: Suite, reason: str) -> bytes:
    """Return an encoding that ``suite.validate`` refuses with ``reason`` in its message."""
    for i in range(2, 10_000):
        candidate = (
            bytes([2]) + i.to_bytes(32, "big") if suite is P256 else i.to_bytes(32, "little")
        )
        try:
            default_engine().validate(
                suite, np.frombuffer(candidate, dtype=np.uint8).reshape(1, -1)
            )
        except InvalidElement as exc:
            if reason in exc.reason:
                return candidate
    raise AssertionError(f"no element found failing with {reason!r}")


TWIST = find_bad_element(X25519, "not on the curve")
SMALL_ORDER = (1).to_bytes(32, "little")  # u = 1 has order 4
NON_CANONICAL = bytes(31) + b"\x80"


def replace_row(chunk: pb.AdvertiserSetChunk, row: int, element: bytes) -> None:
    size = len(element)
    chunk.elements = chunk.elements[: row * size] + element + chunk.elements[(row + 1) * size :]


# -- whole sessions -------------------------------------------------------------------------


def test_count_mode_counts_records_once() -> None:
    result, outcome = run_locally(advertiser(Mode.COUNT), open_platform())
    # Records 0..5 match (3 on two identifiers, counted once); 6 and 7 do not.
    assert result.count == outcome.release.count == 6
    assert result.noise_applied is False and result.epsilon_charged == 0.0
    assert "no noise" in result.reported_as
    assert outcome.matched_user_ids is None and result.matched_record_ids is None
    assert outcome.record_count == 8 and outcome.identifier_count == 9
    assert (result.epoch_id, outcome.epoch_id) == (7, 7)
    assert result.session_id == outcome.session_id


def test_audience_mode_maps_matches_to_users() -> None:
    result, outcome = run_locally(advertiser(Mode.AUDIENCE), open_platform())
    assert outcome.matched_user_ids is not None
    # Platform rows 0,1,2,3,4,5,10 matched; users are row // 2.
    assert outcome.matched_user_ids.tolist() == [0, 1, 2, 5]
    assert result.count == outcome.release.count == 4


def test_audience_mode_includes_every_owner_of_a_shared_identifier() -> None:
    # Row 10 (user 5) is also held by users 40 and 41; row 11 (user 5) by user 42, unmatched.
    shared = PlatformInputs(
        PLATFORM.epoch_id,
        PLATFORM.epoch_key,
        PLATFORM.platform_set,
        PLATFORM.user_ids,
        other_owners=(np.array([10, 10, 11], np.int64), np.array([40, 41, 42], np.int64)),
    )
    _, outcome = run_locally(advertiser(Mode.AUDIENCE), open_platform(shared))
    assert outcome.matched_user_ids is not None
    assert outcome.matched_user_ids.tolist() == [0, 1, 2, 5, 40, 41]


def test_other_owners_must_name_rows_of_the_platform_set() -> None:
    bad = PlatformInputs(
        PLATFORM.epoch_id,
        PLATFORM.epoch_key,
        PLATFORM.platform_set,
        PLATFORM.user_ids,
        other_owners=(np.array([12], np.int64), np.array([40], np.int64)),
    )
    with pytest.raises(ValueError, match="other_owners"):
        run_locally(advertiser(Mode.AUDIENCE), open_platform(bad))


def test_ids_mode_tells_the_advertiser_which_records_matched() -> None:
    result, outcome = run_locally(advertiser(Mode.IDS), open_platform())
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == [0, 1, 2, 3, 4, 5]
    assert result.count == outcome.release.count == 6
    assert result.reported_as == "6 (exact: ids mode)"
    assert outcome.matched_user_ids is None


def test_ids_mode_finds_the_same_records_in_u_prime_sent_in_small_chunks() -> None:
    # Chunks of 3 rows, each checked and looked up in W on a thread of its own as it arrives.
    for _ in range(20):
        result, _ = run_locally(advertiser(Mode.IDS), open_platform(max_chunk_bytes=100))
        assert result.matched_record_ids is not None
        assert result.matched_record_ids.tolist() == [0, 1, 2, 3, 4, 5]


def test_p256_suite_runs_the_same_protocol() -> None:
    inputs = platform_inputs(P256, PLATFORM_VALUES, [i // 2 for i in range(12)])
    result, _ = run_locally(advertiser(Mode.IDS, P256), open_platform(inputs))
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("mode", list(Mode))
def test_many_small_chunks_reassemble(mode: Mode) -> None:
    # 100-byte chunks: 3 elements (2 with tags) per chunk, so every set spans several chunks.
    chunk_counts: dict[str, int] = {}

    def count(_: int, message: pb.ClientMessage | pb.ServerMessage) -> None:
        name = message.WhichOneof("round") or ""
        chunk_counts[name] = chunk_counts.get(name, 0) + 1

    adv = advertiser(mode)
    exchange(adv, open_platform(max_chunk_bytes=100), to_platform=count, to_advertiser=count)
    assert adv.result is not None and adv.result.count == (4 if mode is Mode.AUDIENCE else 6)
    assert chunk_counts["platform_set"] == 4
    assert chunk_counts["advertiser_set"] == 5
    assert chunk_counts["encrypted_platform_set"] == 4
    assert chunk_counts.get("encrypted_advertiser_set", 0) == (3 if mode is Mode.IDS else 0)


def test_empty_platform_set_matches_nothing() -> None:
    empty = PlatformInputs(
        1, X25519.generate_key(), np.empty((0, 32), np.uint8), np.empty(0, np.int64)
    )
    for mode in Mode:
        result, _ = run_locally(advertiser(mode), open_platform(empty))
        assert result.count == 0


def test_empty_list_matches_nothing() -> None:
    adv = AdvertiserRole(X25519, Mode.IDS, [], [], engine=ENGINE)
    result, _ = run_locally(adv, open_platform())
    assert result.count == 0
    assert result.matched_record_ids is not None and result.matched_record_ids.size == 0


def test_noisy_release_is_charged_against_the_budget() -> None:
    policy = parse_policy("min_upload_records = 0\nmin_reported_count = 0\nepsilon_budget = 2")
    result, outcome = run_locally(advertiser(Mode.COUNT), open_platform(policy=policy))
    assert result.noise_applied and outcome.release.noise_applied
    assert result.epsilon_charged == outcome.release.epsilon_charged == 0.5
    assert result.epsilon_remaining == outcome.epsilon_remaining == 1.5
    assert result.count == outcome.release.count and result.count is not None


def test_below_threshold_is_reported_without_a_number() -> None:
    policy = parse_policy("min_upload_records = 0\nepsilon_per_release = 0")
    result, _ = run_locally(advertiser(Mode.COUNT), open_platform(policy=policy))
    assert result.count is None
    assert result.reported_as.startswith("fewer than 100")


def test_policy_refusal_happens_before_any_platform_work() -> None:
    policy = parse_policy("min_upload_records = 0")  # no ids grant for anyone
    with pytest.raises(PolicyRefused, match="mode 'ids' is not allowed"):
        run_locally(advertiser(Mode.IDS), open_platform(policy=policy))


def test_records_sharing_an_identifier_are_one_customer() -> None:
    values = ["user0@example.com", "user0@example.com", "user1@example.com", "zz@x.com"]
    adv = AdvertiserRole(X25519, Mode.IDS, [email(v) for v in values], [10, 20, 20, 30])
    assert (adv.record_count, adv.identifier_count) == (2, 3)
    result, _ = run_locally(adv, open_platform())
    assert result.count == 1
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == [10, 20]


def test_the_session_opens_before_the_list_is_hashed() -> None:
    # OpenSession's counts come from the messages; U is computed when the U stream is first
    # read, and the session then completes exactly as when the list was hashed beforehand.
    adv = advertiser(Mode.IDS)
    first = adv.open_session()
    assert (first.open_session.record_count, first.open_session.identifier_count) == (8, 9)
    assert adv.encrypt_seconds is None  # nothing hashed yet
    platform = open_platform()(read_open_session(first))
    opened, *v_chunks = platform.start()
    u_stream = adv.handle(opened)
    assert adv.encrypt_seconds is None  # still nothing: the stream is lazy
    u_chunks = list(u_stream)
    assert adv.encrypt_seconds is not None and len(u_chunks) == 1
    replies = [reply for chunk in u_chunks for reply in platform.handle(chunk)]
    w_chunks = [w for chunk in v_chunks for w in adv.handle(chunk)]
    replies += [reply for chunk in w_chunks for reply in platform.handle(chunk)]
    for reply in replies:
        for close in adv.handle(reply):
            platform.handle(close)
    assert adv.result is not None and adv.result.matched_record_ids is not None
    assert adv.result.matched_record_ids.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_failed_hashing_is_raised_again_not_repeated() -> None:
    # The sending thread and the CLI may both ask for U: the second gets the first's failure.
    messages: list[bytes] = [email("a@x.com"), "not bytes"]  # type: ignore[list-item]
    adv = AdvertiserRole(X25519, Mode.COUNT, messages, [0, 1])
    with pytest.raises(TypeError, match="is str, not bytes") as first:
        adv.encrypt_list()
    with pytest.raises(TypeError) as second:
        adv.encrypt_list()
    assert second.value is first.value


def test_an_abandoned_role_does_not_hash_its_list() -> None:
    adv = AdvertiserRole(X25519, Mode.COUNT, [email("a@x.com"), email("b@x.com")], [0, 1])
    adv.abandon()
    for _ in range(2):  # and every later call says so again
        with pytest.raises(CancelledError, match="abandoned before the list was hashed"):
            adv.encrypt_list()
    assert adv.encrypt_seconds is None


def test_abandoning_stops_the_hashing_after_the_chunk_it_is_on() -> None:
    adv: AdvertiserRole

    def progress(phase: str, total: int | None) -> Callable[[int], object]:
        return lambda done: adv.abandon()  # the session fails while the first chunk is done

    messages = [email(f"user{i}@x.com") for i in range(12)]
    adv = AdvertiserRole(
        X25519,
        Mode.COUNT,
        messages,
        list(range(12)),
        engine=BatchEngine(workers=1, chunk_size=4),
        progress=progress,
    )
    with pytest.raises(CancelledError, match="abandoned while the list was hashed"):
        adv.encrypt_list()
    assert adv.encrypt_seconds is None


class _WaitsForW(BatchEngine):
    """A real engine whose encryption of U holds until some of W has been validated."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.encrypting = threading.Event()
        self.w_validated = threading.Event()
        self.w_came_first: bool | None = None

    def validate(self, suite: Suite, elements: Any, **kwargs: Any) -> ValidatedElements:
        checked = super().validate(suite, elements, **kwargs)
        if self.encrypting.is_set():  # U is validated before its encryption starts; W after
            self.w_validated.set()
        return checked

    def encrypt(self, suite: Suite, key: SecretKey, elements: Any, **kwargs: Any) -> Any:
        self.encrypting.set()
        # On the old order (U' computed before any of W was handled) this waits in vain.
        self.w_came_first = self.w_validated.wait(timeout=5)
        return super().encrypt(suite, key, elements, **kwargs)


def test_the_platform_validates_w_while_it_computes_u_prime() -> None:
    engine = _WaitsForW()

    def opener(request: SessionRequest) -> PlatformRole:
        decision = check_session(EXACT, "acme", request.mode, request.record_count, 0.0, 0, False)
        return PlatformRole(request, decision, PLATFORM, engine=engine)

    adv = advertiser(Mode.IDS)
    exchange(adv, opener)
    assert engine.w_came_first is True
    assert adv.result is not None and adv.result.count == 6


def test_an_abandoned_platform_stops_computing_u_prime() -> None:
    platform: PlatformRole

    def progress(phase: str, total: int | None) -> Callable[[int], object]:
        return lambda done: platform.abandon()  # the session is aborted during the first chunk

    def opener(request: SessionRequest) -> PlatformRole:
        nonlocal platform
        decision = check_session(EXACT, "acme", request.mode, request.record_count, 0.0, 0, False)
        engine = BatchEngine(workers=1, chunk_size=4)
        platform = PlatformRole(request, decision, PLATFORM, engine=engine, progress=progress)
        return platform

    with pytest.raises(CancelledError, match="abandoned while U' was computed"):
        exchange(advertiser(Mode.IDS), opener)


def test_every_received_element_is_checked_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # U by the platform (once, though it is validated whole before any is multiplied), V and
    # U' by the advertiser, W by the platform.
    checked: list[int] = []
    original = type(X25519)._check_elements

    def counting(self: Suite, rows: bytes) -> None:
        checked.append(len(rows) // X25519.element_size)
        original(X25519, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(type(X25519), "_check_elements", counting)
    run_locally(advertiser(Mode.IDS), open_platform())
    assert sorted(checked) == [9, 9, 12, 12]


def encrypted_list(
    values: Sequence[str], engine: BatchEngine = ENGINE, suite: Suite = X25519, batch: int = 2
) -> ListEncryption:
    encryption = ListEncryption(suite, engine=engine)
    messages = [email(v) for v in values]
    for start in range(0, len(messages), batch):
        encryption.add(messages[start : start + batch])
    return encryption


@pytest.mark.parametrize("mode", list(Mode))
def test_a_list_encrypted_while_it_was_read_gives_the_same_session(mode: Mode) -> None:
    expected, _ = run_locally(advertiser(mode), open_platform())
    encryption = encrypted_list(ADVERTISER_VALUES)
    assert len(encryption) == len(ADVERTISER_VALUES)
    adv = AdvertiserRole(X25519, mode, encryption, ADVERTISER_RECORDS, engine=ENGINE)
    assert (adv.record_count, adv.identifier_count) == (8, 9)
    result, _ = run_locally(adv, open_platform())
    assert (result.count, result.reported_as) == (expected.count, expected.reported_as)
    if mode is Mode.IDS:
        assert result.matched_record_ids is not None and expected.matched_record_ids is not None
        assert result.matched_record_ids.tolist() == expected.matched_record_ids.tolist()


def test_the_role_lets_go_of_the_messages_once_u_is_computed() -> None:
    # A list of millions of messages is not held for the rest of the session.
    messages = [email(v) for v in ADVERTISER_VALUES]
    probe = messages[3]
    alone = sys.getrefcount(probe)
    encryption = ListEncryption(X25519, engine=ENGINE)
    encryption.add(messages)
    adv = AdvertiserRole(X25519, Mode.IDS, encryption, ADVERTISER_RECORDS, engine=ENGINE)
    assert sys.getrefcount(probe) > alone
    adv.encrypt_list()
    assert sys.getrefcount(probe) == alone
    assert len(encryption) == len(messages)
    result, _ = run_locally(adv, open_platform())
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_list_encrypted_on_the_workers_sends_each_identifier_once() -> None:
    # Repeats and a pooled engine whose chunks are smaller than the list: U holds every
    # distinct identifier once, and matches as the messages say.
    values = [f"user{i % 9}@example.com" for i in range(40)] + ["zz@x.com"] * 3
    with BatchEngine(workers=2, chunk_size=4) as engine:
        encryption = encrypted_list(values, engine, batch=7)
        adv = AdvertiserRole(X25519, Mode.IDS, encryption, list(range(43)), engine=engine)
        assert adv.identifier_count == 10
        result, _ = run_locally(adv, open_platform())
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == list(range(40))


def test_a_list_encryption_serves_one_role_of_its_suite() -> None:
    encryption = encrypted_list(ADVERTISER_VALUES)
    with pytest.raises(InvalidInput, match="x25519-sha512-ell2-ro list encryption for a p256"):
        AdvertiserRole(P256, Mode.COUNT, encryption, ADVERTISER_RECORDS, engine=ENGINE)
    AdvertiserRole(X25519, Mode.COUNT, encryption, ADVERTISER_RECORDS, engine=ENGINE)
    with pytest.raises(ValueError, match="taken by a role or abandoned"):
        AdvertiserRole(X25519, Mode.COUNT, encryption, ADVERTISER_RECORDS, engine=ENGINE)
    with pytest.raises(ValueError, match="taken by a role or abandoned"):
        encryption.add([email("late@x.com")])


def test_an_abandoned_list_encryption_stops_and_serves_no_role() -> None:
    with BatchEngine(workers=2, chunk_size=4) as engine:
        encryption = encrypted_list([f"u{i}@x.com" for i in range(30)], engine, batch=10)
        encryption.abandon()
        encryption.abandon()
        with pytest.raises(ValueError, match="taken by a role or abandoned"):
            AdvertiserRole(X25519, Mode.COUNT, encryption, list(range(30)), engine=engine)
        # A role abandoned after it took the encryption stops it too.
        taken = encrypted_list([f"u{i}@x.com" for i in range(30)], engine, batch=10)
        adv = AdvertiserRole(X25519, Mode.COUNT, taken, list(range(30)), engine=engine)
        adv.abandon()
        with pytest.raises(CancelledError):
            adv.encrypt_list()


def test_advertiser_needs_one_record_id_per_identifier() -> None:
    with pytest.raises(InvalidInput, match="2 identifiers but 1 record ids"):
        AdvertiserRole(X25519, Mode.COUNT, [b"a", b"b"], [1])


# -- out of order ---------------------------------------------------------------------------


def test_session_must_start_with_open_session() -> None:
    close = pb.ClientMessage(close=pb.Close(session_id=bytes(16)))
    with pytest.raises(OutOfOrder, match="starts with open_session, got close"):
        read_open_session(close)
    with pytest.raises(OutOfOrder, match="got nothing"):
        read_open_session(pb.ClientMessage())


def _opened_platform(mode: Mode = Mode.COUNT) -> tuple[AdvertiserRole, PlatformRole]:
    adv = advertiser(mode)
    platform = open_platform()(read_open_session(adv.open_session()))
    return adv, platform


def test_platform_refuses_rounds_out_of_order() -> None:
    _, platform = _opened_platform()
    chunk = pb.EncryptedPlatformSetChunk(session_id=platform.session_id, count=0)
    with pytest.raises(OutOfOrder, match="not allowed while waiting for start"):
        platform.handle(pb.ClientMessage(encrypted_platform_set=chunk))
    server = list(platform.start())
    with pytest.raises(OutOfOrder, match="started already"):
        platform.start()
    with pytest.raises(OutOfOrder, match="encrypted_platform_set is not allowed while receiving"):
        platform.handle(pb.ClientMessage(encrypted_platform_set=chunk))
    with pytest.raises(OutOfOrder, match="close is not allowed"):
        platform.handle(pb.ClientMessage(close=pb.Close(session_id=platform.session_id)))
    with pytest.raises(OutOfOrder, match="open_session is not allowed"):
        platform.handle(pb.ClientMessage(open_session=pb.OpenSession()))
    with pytest.raises(OutOfOrder, match="an empty message"):
        platform.handle(pb.ClientMessage())
    assert server[0].WhichOneof("round") == "session_opened"


def test_platform_refuses_anything_after_close() -> None:
    adv = advertiser()
    platform = exchange(adv)
    assert platform.finished
    with pytest.raises(OutOfOrder, match="not allowed while finished"):
        platform.handle(pb.ClientMessage(close=pb.Close(session_id=platform.session_id)))


def test_advertiser_refuses_rounds_out_of_order() -> None:
    adv, platform = _opened_platform()
    server = list(platform.start())
    opened, v_chunk = server[0], server[1]
    with pytest.raises(OutOfOrder, match="open"):
        adv.open_session()
    with pytest.raises(OutOfOrder, match="platform_set is not allowed while waiting for session"):
        adv.handle(v_chunk)
    list(adv.handle(opened))
    with pytest.raises(OutOfOrder, match="session_opened is not allowed while receiving"):
        adv.handle(opened)
    result = pb.ServerMessage(result=pb.MatchResult(session_id=platform.session_id))
    with pytest.raises(OutOfOrder, match="result is not allowed while receiving the platform"):
        adv.handle(result)
    list(adv.handle(v_chunk))
    u_prime = pb.EncryptedAdvertiserSetChunk(session_id=platform.session_id)
    with pytest.raises(OutOfOrder, match="encrypted_advertiser_set is not allowed"):
        # Count mode: the platform never returns U'.
        adv.handle(pb.ServerMessage(encrypted_advertiser_set=u_prime))


def test_advertiser_refuses_anything_after_the_result() -> None:
    adv = advertiser()
    exchange(adv)
    with pytest.raises(OutOfOrder, match="while finished"):
        adv.handle(pb.ServerMessage(result=pb.MatchResult()))


# -- another session's id -------------------------------------------------------------------


@pytest.mark.parametrize("round_name", ["advertiser_set", "encrypted_platform_set", "close"])
def test_platform_refuses_another_sessions_messages(round_name: str) -> None:
    def other(message: pb.AdvertiserSetChunk | pb.EncryptedPlatformSetChunk | pb.Close) -> None:
        message.session_id = bytes(16)

    with pytest.raises(WrongSession, match="arrived in session"):
        exchange(advertiser(), to_platform=on_round(round_name, other))


@pytest.mark.parametrize("round_name", ["platform_set", "encrypted_advertiser_set", "result"])
def test_advertiser_refuses_another_sessions_messages(round_name: str) -> None:
    def other(message: pb.PlatformSetChunk | pb.MatchResult) -> None:
        message.session_id = bytes(16)

    with pytest.raises(WrongSession, match="arrived in session"):
        exchange(advertiser(Mode.IDS), to_advertiser=on_round(round_name, other))


# -- bad elements ---------------------------------------------------------------------------

BAD_ELEMENTS = [
    (TWIST, "not on the curve"),
    (SMALL_ORDER, "small-order point"),
    (NON_CANONICAL, "non-canonical"),
]


@pytest.mark.parametrize(("element", "reason"), BAD_ELEMENTS)
@pytest.mark.parametrize("round_name", ["advertiser_set", "encrypted_platform_set"])
def test_platform_refuses_invalid_elements(element: bytes, reason: str, round_name: str) -> None:
    hook = on_round(round_name, lambda chunk: replace_row(chunk, 1, element))
    with pytest.raises(InvalidElement, match=reason) as caught:
        exchange(advertiser(), open_platform(max_chunk_bytes=100), to_platform=hook)
    assert caught.value.row == 1


def test_platform_numbers_bad_rows_within_the_whole_set() -> None:
    # The second chunk of U holds rows 2 and 3 (100-byte chunks, 36 bytes per row).
    hook = on_round("advertiser_set", lambda chunk: replace_row(chunk, 1, TWIST), which=1)
    with pytest.raises(InvalidElement, match="advertiser set U: not on the curve") as caught:
        exchange(advertiser(), open_platform(max_chunk_bytes=100), to_platform=hook)
    assert caught.value.row == 3


@pytest.mark.parametrize(("element", "reason"), BAD_ELEMENTS)
@pytest.mark.parametrize("round_name", ["platform_set", "encrypted_advertiser_set"])
def test_advertiser_refuses_invalid_elements(element: bytes, reason: str, round_name: str) -> None:
    hook = on_round(round_name, lambda chunk: replace_row(chunk, 1, element))
    with pytest.raises(InvalidElement, match=reason) as caught:
        exchange(advertiser(Mode.IDS), to_advertiser=hook)
    assert caught.value.row == 1


def test_advertiser_numbers_bad_rows_of_u_prime_within_the_whole_set() -> None:
    # U' comes in chunks of 3 rows (100-byte chunks, 32 bytes per row), each checked as it
    # arrives: the bad row of the third chunk is row 7 of U'.
    hook = on_round("encrypted_advertiser_set", lambda chunk: replace_row(chunk, 1, TWIST), which=2)
    with pytest.raises(InvalidElement, match="advertiser set U': not on the curve") as caught:
        exchange(advertiser(Mode.IDS), open_platform(max_chunk_bytes=100), to_advertiser=hook)
    assert caught.value.row == 7


def test_advertiser_finds_a_u_prime_row_repeated_in_a_later_chunk() -> None:
    first_row: list[bytes] = []

    def keep(chunk: pb.EncryptedAdvertiserSetChunk) -> None:
        first_row.append(chunk.elements[:32])

    def repeat(chunk: pb.EncryptedAdvertiserSetChunk) -> None:
        replace_row(chunk, 2, first_row[0])

    hooks = [
        on_round("encrypted_advertiser_set", keep),
        on_round("encrypted_advertiser_set", repeat, which=1),
    ]

    def hook(index: int, message: pb.ClientMessage | pb.ServerMessage) -> None:
        for each in hooks:
            each(index, message)

    with pytest.raises(InvalidElement, match="advertiser set U': duplicate of row 0") as caught:
        exchange(advertiser(Mode.IDS), open_platform(max_chunk_bytes=100), to_advertiser=hook)
    assert caught.value.row == 5


def test_p256_off_curve_elements_are_refused() -> None:
    off_curve = find_bad_element(P256, "not on the curve")
    inputs = platform_inputs(P256, PLATFORM_VALUES, [0] * 12)
    hook = on_round("advertiser_set", lambda chunk: replace_row(chunk, 0, off_curve))
    with pytest.raises(InvalidElement, match="not on the curve"):
        exchange(advertiser(Mode.COUNT, P256), open_platform(inputs), to_platform=hook)


@pytest.mark.parametrize(
    ("round_name", "to_platform"),
    [
        ("advertiser_set", True),
        ("encrypted_platform_set", True),
        ("platform_set", False),
        ("encrypted_advertiser_set", False),
    ],
)
def test_wrong_length_elements_are_refused(round_name: str, to_platform: bool) -> None:
    def truncate(chunk: pb.PlatformSetChunk) -> None:
        chunk.elements = chunk.elements[:-1]

    hook = on_round(round_name, truncate)
    with pytest.raises(InvalidElement, match="bytes, expected"):
        if to_platform:
            exchange(advertiser(Mode.IDS), to_platform=hook)
        else:
            exchange(advertiser(Mode.IDS), to_advertiser=hook)


def _duplicate_row(chunk: pb.PlatformSetChunk) -> None:
    size = 32
    chunk.elements = chunk.elements[: 4 * size] + chunk.elements[:size] + chunk.elements[5 * size :]


@pytest.mark.parametrize(
    ("round_name", "to_platform", "what"),
    [
        ("advertiser_set", True, "advertiser set U"),
        ("encrypted_platform_set", True, "encrypted platform set W"),
        ("platform_set", False, "platform set V"),
        ("encrypted_advertiser_set", False, "encrypted advertiser set U'"),
    ],
)
def test_duplicated_elements_are_refused(round_name: str, to_platform: bool, what: str) -> None:
    hook = on_round(round_name, _duplicate_row)
    with pytest.raises(InvalidElement, match=f"{what}: duplicate of row 0") as caught:
        if to_platform:
            exchange(advertiser(Mode.IDS), to_platform=hook)
        else:
            exchange(advertiser(Mode.IDS), to_advertiser=hook)
    assert caught.value.row == 4


def test_duplicates_in_the_platform_inputs_are_refused_by_the_advertiser() -> None:
    doubled = PlatformInputs(
        1,
        PLATFORM.epoch_key,
        np.concatenate([PLATFORM.platform_set, PLATFORM.platform_set[:1]]),
        np.concatenate([PLATFORM.user_ids, PLATFORM.user_ids[:1]]),
    )
    with pytest.raises(InvalidElement, match="platform set V: duplicate of row 0"):
        run_locally(advertiser(), open_platform(doubled))


# -- record tags and counts -----------------------------------------------------------------


def test_record_tags_of_the_wrong_length_are_refused() -> None:
    def cut(chunk: pb.AdvertiserSetChunk) -> None:
        chunk.record_tags = chunk.record_tags[:-1]

    with pytest.raises(InvalidMessage, match="bytes of record tags, expected 9 tags"):
        exchange(advertiser(), to_platform=on_round("advertiser_set", cut))


def test_record_tags_out_of_range_are_refused() -> None:
    def big(chunk: pb.AdvertiserSetChunk) -> None:
        chunk.record_tags = (1000).to_bytes(4, "little") + chunk.record_tags[4:]

    with pytest.raises(InvalidMessage, match="record tag 1000 is out of range for 8 records"):
        exchange(advertiser(), to_platform=on_round("advertiser_set", big))


def test_announced_records_must_all_appear() -> None:
    def same_tag(chunk: pb.AdvertiserSetChunk) -> None:
        first = chunk.record_tags[:4]
        chunk.record_tags = first * chunk.count

    with pytest.raises(InvalidMessage, match="has no identifier, but 8 records were announced"):
        exchange(advertiser(), to_platform=on_round("advertiser_set", same_tag))


def test_ids_result_that_contradicts_u_prime_is_refused() -> None:
    def inflate(result: pb.MatchResult) -> None:
        result.count += 1

    with pytest.raises(InvalidMessage, match="reports 7 matched records, U' shows 6"):
        exchange(advertiser(Mode.IDS), to_advertiser=on_round("result", inflate))


def test_result_for_another_mode_is_refused() -> None:
    def other_mode(result: pb.MatchResult) -> None:
        result.mode = pb.MATCH_MODE_AUDIENCE

    with pytest.raises(InvalidMessage, match="a result for mode"):
        exchange(advertiser(Mode.COUNT), to_advertiser=on_round("result", other_mode))


# -- opening --------------------------------------------------------------------------------


def _open(**fields: object) -> pb.ClientMessage:
    base: dict[str, object] = {
        "mode": pb.MATCH_MODE_COUNT,
        "suite": "x25519-sha512-ell2-ro",
        "normalization_version": NORMALIZATION_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "record_count": 10,
        "identifier_count": 12,
    }
    base.update(fields)
    return pb.ClientMessage(open_session=pb.OpenSession(**base))  # type: ignore[arg-type]


def test_open_session_is_read_into_a_request() -> None:
    assert read_open_session(_open()) == SessionRequest(Mode.COUNT, "x25519-sha512-ell2-ro", 10, 12)


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"protocol_version": 2}, VersionMismatch, "protocol version 2"),
        ({"normalization_version": 99}, VersionMismatch, "normalized with version 99"),
        ({"suite": "ristretto255"}, UnknownSuite, "ristretto255"),
        ({"mode": pb.MATCH_MODE_UNSPECIFIED}, InvalidMessage, "unset match mode"),
        ({"identifier_count": 9}, InvalidMessage, "10 records cannot hold 9"),
        ({"record_count": 0, "identifier_count": 3}, InvalidMessage, "0 records cannot hold 3"),
    ],
)
def test_bad_open_session_is_refused(
    fields: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        read_open_session(_open(**fields))


def test_too_many_identifiers_is_a_limit() -> None:
    policy = parse_policy("min_upload_records = 0\nmax_upload_records = 10")
    request = read_open_session(_open(identifier_count=31))
    decision = check_session(policy, "acme", Mode.COUNT, 10, 0.0, 0, False)
    with pytest.raises(LimitExceeded, match="31 identifiers for 10 records: at most 3 per record"):
        PlatformRole(request, decision, PLATFORM, engine=ENGINE)


def test_the_identifiers_per_record_are_the_policys() -> None:
    policy = parse_policy("min_upload_records = 0\nmax_identifiers_per_record = 1")
    request = read_open_session(_open(identifier_count=11))
    decision = check_session(policy, "acme", Mode.COUNT, 10, 0.0, 0, False)
    with pytest.raises(LimitExceeded, match="11 identifiers for 10 records: at most 1 per"):
        PlatformRole(request, decision, PLATFORM, engine=ENGINE)


# -- cheap checks before any scalar multiplication ----------------------------------------------


class CountingEngine(BatchEngine):
    """A real in-process engine that counts the rows it multiplies and validates."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.multiplied = 0
        self.validated = 0

    def encrypt(
        self,
        suite: Suite,
        key: SecretKey,
        elements: np.ndarray,  # type: ignore[type-arg]
        *,
        progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:  # type: ignore[type-arg]
        self.multiplied += len(elements)
        return super().encrypt(suite, key, elements, progress=progress)

    def validate(
        self,
        suite: Suite,
        elements: np.ndarray,  # type: ignore[type-arg]
        *,
        progress: Callable[[int], object] | None = None,
    ) -> ValidatedElements:
        self.validated += len(elements)
        return super().validate(suite, elements, progress=progress)


def _u_of_one_point(copies: int, records: int) -> tuple[PlatformRole, list[pb.ClientMessage]]:
    """A platform role opened for ``copies`` identifiers, and U: one valid point ``copies`` times.

    Tags spread the copies evenly over ``records`` records; chunks are of 100 elements.
    """
    engine = CountingEngine()
    request = read_open_session(_open(record_count=records, identifier_count=copies))
    decision = check_session(EXACT, "acme", Mode.COUNT, records, 0.0, 0, False)
    platform = PlatformRole(request, decision, PLATFORM, engine=engine)
    list(platform.start())
    point = bytes(PLATFORM.platform_set[0])
    chunks = []
    for start in range(0, copies, 100):
        count = min(100, copies - start)
        tags = np.arange(start, start + count, dtype="<u4") % records
        chunk = pb.AdvertiserSetChunk(
            session_id=platform.session_id,
            offset=start,
            count=count,
            elements=point * count,
            record_tags=tags.tobytes(),
        )
        chunks.append(pb.ClientMessage(advertiser_set=chunk))
    return platform, chunks


def test_a_duplicated_u_is_refused_before_any_element_is_multiplied_or_validated() -> None:
    platform, chunks = _u_of_one_point(3_000, 1_000)
    for chunk in chunks[:-1]:
        assert list(platform.handle(chunk)) == []
    with pytest.raises(InvalidElement, match="advertiser set U: duplicate of row 0") as caught:
        platform.handle(chunks[-1])
    assert caught.value.row == 1
    engine = platform._engine
    assert isinstance(engine, CountingEngine)
    assert (engine.multiplied, engine.validated) == (0, 0)


def test_a_record_with_more_identifiers_than_allowed_is_refused_before_any_work() -> None:
    # 30 identifiers for 10 records is within the announced bound, but tag 0 carries 21 of them.
    engine = CountingEngine()
    request = read_open_session(_open(record_count=10, identifier_count=30))
    decision = check_session(EXACT, "acme", Mode.COUNT, 10, 0.0, 0, False)
    platform = PlatformRole(request, decision, PLATFORM, engine=engine)
    list(platform.start())
    tags = np.zeros(30, dtype="<u4")
    tags[21:] = np.arange(1, 10)
    elements = b"".join(X25519.hash_to_curve(b"guess %d" % i, X25519.dst) for i in range(30))
    chunk = pb.AdvertiserSetChunk(
        session_id=platform.session_id,
        offset=0,
        count=30,
        elements=elements,
        record_tags=tags.tobytes(),
    )
    with pytest.raises(InvalidMessage, match="record tag 0 has 21 identifiers, at most 3 per"):
        platform.handle(pb.ClientMessage(advertiser_set=chunk))
    assert (engine.multiplied, engine.validated) == (0, 0)


def test_an_invalid_element_anywhere_in_u_is_refused_before_any_is_multiplied() -> None:
    engine = CountingEngine()
    adv = advertiser()
    opened: list[PlatformRole] = []

    def opener(request: SessionRequest) -> PlatformRole:
        decision = check_session(EXACT, "acme", request.mode, request.record_count, 0.0, 0, False)
        opened.append(PlatformRole(request, decision, PLATFORM, engine=engine))
        return opened[0]

    hook = on_round("advertiser_set", lambda chunk: replace_row(chunk, 8, TWIST))
    with pytest.raises(InvalidElement, match="not on the curve") as caught:
        exchange(adv, opener, to_platform=hook)
    assert caught.value.row == 8
    assert engine.multiplied == 0 and engine.validated == 9


# -- the advertiser's terms ------------------------------------------------------------------


def test_a_customer_with_more_identifiers_than_allowed_sends_its_first_ones() -> None:
    # Records 1 and 2 share user1: one customer with four distinct identifiers.
    values = ["user0@example.com", "user1@example.com", "user2@example.com"]
    values += ["user1@example.com", "user3@example.com", "zz@x.com"]
    records = [0, 1, 1, 2, 2, 2]
    adv = AdvertiserRole(
        X25519,
        Mode.IDS,
        [email(v) for v in values],
        records,
        engine=ENGINE,
        terms=SessionTerms(max_identifiers_per_record=3),
    )
    assert (adv.record_count, adv.identifier_count, adv.identifiers_withheld) == (2, 4, 1)
    policy = parse_policy(EXACT_TEXT + "max_identifiers_per_record = 3\n")
    result, outcome = run_locally(adv, open_platform(policy=policy))
    # zz@x.com, the customer's fourth identifier in list order, was not sent.
    assert outcome.identifier_count == 4
    assert result.count == 2
    assert result.matched_record_ids is not None
    assert result.matched_record_ids.tolist() == [0, 1, 2]


def test_the_advertiser_refuses_a_platform_set_above_its_ceiling() -> None:
    adv = AdvertiserRole(
        X25519,
        Mode.COUNT,
        [email(v) for v in ADVERTISER_VALUES],
        ADVERTISER_RECORDS,
        engine=ENGINE,
        terms=SessionTerms(max_platform_set_size=1000),
    )

    def huge(opened: pb.SessionOpened) -> None:
        opened.platform_set_size = 2**64 - 1

    with pytest.raises(LimitExceeded, match="more than this client accepts \\(1,000;"):
        exchange(adv, to_advertiser=on_round("session_opened", huge))


def _with_announced(size: int) -> AdvertiserRole:
    return AdvertiserRole(
        X25519,
        Mode.COUNT,
        [email(v) for v in ADVERTISER_VALUES],
        ADVERTISER_RECORDS,
        engine=ENGINE,
        terms=SessionTerms(platform_set_size=size),
    )


def test_the_advertiser_refuses_a_platform_set_larger_than_announced() -> None:
    # The platform's set is 12: GetPolicy said 11, so it grew after the advertiser agreed.
    with pytest.raises(InvalidMessage, match="set of 12 identifiers for the session but 11 in"):
        exchange(_with_announced(11))


def test_the_advertiser_takes_a_platform_set_smaller_than_announced() -> None:
    # GetPolicy said 13; one consent was revoked before the session opened: an honest 12.
    exact = _with_announced(12)
    exchange(exact)
    shrunk = _with_announced(13)
    exchange(shrunk)
    assert exact.result is not None and shrunk.result is not None
    assert shrunk.result.platform_set_size == exact.result.platform_set_size == 12
    assert shrunk.result.count == exact.result.count


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda o: setattr(o, "suite", "p256-sha256-sswu-ro"), VersionMismatch, "not the"),
        (lambda o: setattr(o, "mode", pb.MATCH_MODE_IDS), VersionMismatch, "not the"),
        (lambda o: setattr(o, "protocol_version", 9), VersionMismatch, "protocol 9"),
        (lambda o: setattr(o, "normalization_version", 9), VersionMismatch, "normalization 9"),
        (lambda o: setattr(o, "session_id", b"short"), InvalidMessage, "session id of 5 bytes"),
        (lambda o: setattr(o, "max_chunk_bytes", 0), InvalidMessage, "chunk size of 0"),
    ],
)
def test_advertiser_refuses_a_session_it_did_not_ask_for(
    change: Callable[[pb.SessionOpened], None], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        exchange(advertiser(), to_advertiser=on_round("session_opened", change))


def test_platform_inputs_must_fit_the_request() -> None:
    request = read_open_session(_open())
    decision = check_session(EXACT, "acme", Mode.COUNT, 10, 0.0, 0, False)
    wrong_users = PlatformInputs(
        1, PLATFORM.epoch_key, PLATFORM.platform_set, np.zeros(3, np.int64)
    )
    with pytest.raises(ValueError, match="one entry per row"):
        PlatformRole(request, decision, wrong_users)
    other = check_session(EXACT, "acme", Mode.AUDIENCE, 10, 0.0, 0, False)
    with pytest.raises(ValueError, match="another request"):
        PlatformRole(request, other, PLATFORM)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("reported_as", "1" * 201, "text has 201 characters"),
        ("epsilon_charged", float("nan"), "epsilon_charged = nan"),
        ("epsilon_remaining", -0.5, "epsilon_remaining = -0.5"),
    ],
)
def test_a_result_no_honest_platform_sends_is_refused(
    field: str, value: object, match: str
) -> None:
    with pytest.raises(InvalidMessage, match=match):
        exchange(advertiser(), to_advertiser=on_round("result", lambda r: setattr(r, field, value)))
