"""GetPolicy: what the platform publishes, and the advertiser's check of it before hashing."""

from __future__ import annotations

import dataclasses

import pytest

from cleanroom.crypto import SUITE_IDS
from cleanroom.errors import (
    BudgetExhausted,
    InvalidMessage,
    LimitExceeded,
    PolicyRefused,
    VersionMismatch,
)
from cleanroom.identifiers import NORMALIZATION_VERSION
from cleanroom.policy import DEFAULT_SETTINGS, Mode
from cleanroom.protocol import (
    DEFAULT_MAX_PLATFORM_SET_SIZE,
    MAX_CHUNK_BYTES,
    PROTOCOL_VERSION,
    SessionTerms,
    check_policy_info,
    policy_info,
    session_terms,
)
from cleanroom.protocol._wire import pb


def _info(**changes: object) -> pb.PolicyInfo:
    settings = dataclasses.replace(DEFAULT_SETTINGS, **changes)  # type: ignore[arg-type]
    return policy_info(
        settings, epoch_id=3, platform_set_size=1234, spent_epsilon=7.0, sessions_today=5
    )


def test_policy_info_publishes_the_settings_and_versions() -> None:
    info = _info()
    assert info.protocol_version == PROTOCOL_VERSION
    assert info.normalization_version == NORMALIZATION_VERSION
    assert list(info.suites) == list(SUITE_IDS)
    assert set(info.modes_allowed) == {pb.MATCH_MODE_COUNT, pb.MATCH_MODE_AUDIENCE}
    assert (info.min_upload_records, info.min_reported_count) == (1000, 100)
    assert (info.epsilon_per_release, info.epsilon_budget, info.epsilon_remaining) == (
        0.5,
        8.0,
        1.0,
    )
    assert (info.max_sessions_per_day, info.sessions_remaining_today) == (20, 15)
    assert (info.default_region, info.epoch_id, info.platform_set_size) == ("US", 3, 1234)
    assert info.max_chunk_bytes == MAX_CHUNK_BYTES
    assert info.max_identifiers_per_record == 3


def test_acceptable_session_passes() -> None:
    check_policy_info(_info(), mode=Mode.COUNT, suite_id=SUITE_IDS[0], record_count=5000)


@pytest.mark.parametrize(
    ("info", "mode", "suite", "records", "error", "match"),
    [
        (_info(), Mode.IDS, SUITE_IDS[0], 5000, PolicyRefused, "mode 'ids' is not allowed"),
        (_info(), Mode.COUNT, "other-suite", 5000, VersionMismatch, "does not offer suite"),
        (_info(), Mode.COUNT, SUITE_IDS[0], 999, PolicyRefused, "fewer than the minimum"),
        (
            _info(max_upload_records=2000),
            Mode.COUNT,
            SUITE_IDS[0],
            2001,
            LimitExceeded,
            "more than the maximum",
        ),
        (
            _info(max_sessions_per_day=5),
            Mode.COUNT,
            SUITE_IDS[0],
            5000,
            LimitExceeded,
            "no session is left",
        ),
        (
            _info(epsilon_per_release=1.5),
            Mode.AUDIENCE,
            SUITE_IDS[0],
            5000,
            BudgetExhausted,
            "only 1 of the budget",
        ),
    ],
)
def test_refusals_are_known_before_hashing(
    info: pb.PolicyInfo,
    mode: Mode,
    suite: str,
    records: int,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        check_policy_info(info, mode=mode, suite_id=suite, record_count=records)


def test_version_mismatches_are_refused() -> None:
    info = _info()
    info.protocol_version = 2
    with pytest.raises(VersionMismatch, match="protocol version 2"):
        check_policy_info(info, mode=Mode.COUNT, suite_id=SUITE_IDS[0], record_count=5000)
    info = _info()
    info.normalization_version = 99
    with pytest.raises(VersionMismatch, match="version 99"):
        check_policy_info(info, mode=Mode.COUNT, suite_id=SUITE_IDS[0], record_count=5000)


def _check(info: pb.PolicyInfo, **options: int) -> None:
    check_policy_info(info, mode=Mode.COUNT, suite_id=SUITE_IDS[0], record_count=5000, **options)


@pytest.mark.parametrize("size", [10**11, 2**64 - 1])
def test_a_platform_set_above_the_clients_ceiling_is_refused_before_hashing(size: int) -> None:
    info = _info()
    info.platform_set_size = size
    with pytest.raises(LimitExceeded, match="more than this client accepts"):
        _check(info)
    info.platform_set_size = DEFAULT_MAX_PLATFORM_SET_SIZE
    _check(info)
    with pytest.raises(LimitExceeded, match=r"accepts \(1,000; --max-platform-set"):
        _check(_info(), max_platform_set_size=1000)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epsilon_per_release", float("nan"), "epsilon_per_release = nan"),
        ("epsilon_budget", float("inf"), "epsilon_budget = inf"),
        ("epsilon_remaining", -1.0, "epsilon_remaining = -1.0"),
        ("default_region", "\x1b[2Jus", "default_region '\x1b\\[2Jus', not a two-letter"),
    ],
)
def test_values_no_honest_platform_sends_are_refused(field: str, value: object, match: str) -> None:
    info = _info()
    setattr(info, field, value)
    with pytest.raises(InvalidMessage, match=match):
        _check(info)


def test_suite_names_from_the_platform_are_escaped_and_cut_in_messages() -> None:
    info = _info()
    info.suites[:] = ["\x1b]0;owned\x07" + "x" * 500]
    with pytest.raises(VersionMismatch) as caught:
        _check(info)
    message = str(caught.value)
    assert "'\x1b]0;owned\x07xxx" in message and "x" * 100 not in message
    assert len(message) < 200


def test_session_terms_follow_the_answer() -> None:
    info = _info(max_identifiers_per_record=2)
    assert session_terms(info, max_platform_set_size=5000) == SessionTerms(2, 1234, 5000)
    info.max_identifiers_per_record = 0  # a platform that does not say: the default
    assert session_terms(info).max_identifiers_per_record == 3
