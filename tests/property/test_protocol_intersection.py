"""With no noise, every mode's result equals the plaintext computation on random lists.

Lists have repeated identifiers, records with several identifiers, identifiers shared between
records and kinds that must not match each other (the same digest as email and as phone). A
customer made of records linked by a shared identifier sends only its first
``max_identifiers_per_record`` (3) distinct identifiers, in list order: the plaintext
computation does the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.identifiers import hash_message
from cleanroom.policy import Mode, check_session, parse_policy
from cleanroom.protocol import (
    AdvertiserRole,
    PlatformInputs,
    PlatformRole,
    SessionRequest,
    run_locally,
)

ENGINE = BatchEngine(workers=1)
POLICY = parse_policy(
    """
    min_upload_records = 0
    min_reported_count = 0
    epsilon_per_release = 0
    [advertisers.acme]
    modes_allowed = ["count", "audience", "ids"]
    """
)
# The universe of identifiers: the same value under two kinds is two different identifiers.
UNIVERSE = [(kind, f"person{i}") for i in range(15) for kind in ("email", "phone")]
_MESSAGES = [hash_message(k, hashlib.sha256(v.encode()).digest()) for k, v in UNIVERSE]

platform_sets = st.lists(
    st.tuples(st.integers(0, len(UNIVERSE) - 1), st.integers(0, 9)),  # (identifier, user)
    max_size=25,
    unique_by=lambda pair: pair[0],
)
advertiser_lists = st.lists(
    st.lists(st.integers(0, len(UNIVERSE) - 1), min_size=1, max_size=3),  # one record
    max_size=20,
)


def _run(
    mode: Mode,
    platform: Sequence[tuple[int, int]],
    records: Sequence[Sequence[int]],
    suite_id: str = "x25519-sha512-ell2-ro",
) -> tuple[int | None, list[int] | None, list[int] | None]:
    suite = get_suite(suite_id)
    key = suite.generate_key()
    platform_set = ENGINE.hash_and_encrypt(
        suite, key, [_MESSAGES[i] for i, _ in platform], suite.dst
    ).reshape(-1, suite.element_size)
    inputs = PlatformInputs(1, key, platform_set, np.array([u for _, u in platform], np.int64))
    messages = [_MESSAGES[i] for record in records for i in record]
    # Record ids as a CSV would give them: not 0..n-1.
    record_ids = [100 + 7 * r for r, record in enumerate(records) for _ in record]
    advertiser = AdvertiserRole(suite, mode, messages, record_ids, engine=ENGINE)

    def open_platform(request: SessionRequest) -> PlatformRole:
        decision = check_session(POLICY, "acme", request.mode, request.record_count, 0.0, 0, False)
        return PlatformRole(request, decision, inputs, engine=ENGINE)

    result, outcome = run_locally(advertiser, open_platform)
    assert result.count == outcome.release.count
    matched_ids = None if result.matched_record_ids is None else result.matched_record_ids.tolist()
    users = None if outcome.matched_user_ids is None else outcome.matched_user_ids.tolist()
    return result.count, matched_ids, users


def _customers(records: Sequence[Sequence[int]]) -> list[int]:
    """Union-find: the customer (group) of each record, records sharing an identifier merged."""
    parent = list(range(len(records)))

    def root(r: int) -> int:
        while parent[r] != r:
            r = parent[r]
        return r

    owner: dict[int, int] = {}
    for r, record in enumerate(records):
        for identifier in record:
            if identifier in owner:
                a, b = root(r), root(owner[identifier])
                parent[max(a, b)] = min(a, b)
            else:
                owner[identifier] = r
    return [root(r) for r in range(len(records))]


def _sent(records: Sequence[Sequence[int]], customers: list[int], most: int = 3) -> set[int]:
    """The identifiers sent: each customer's first ``most`` distinct ones, in list order."""
    sent: set[int] = set()
    seen: set[int] = set()
    per_customer: dict[int, int] = {}
    for r, record in enumerate(records):
        for identifier in record:
            if identifier in seen:
                continue  # not its first occurrence
            seen.add(identifier)
            if per_customer.get(customers[r], 0) < most:
                per_customer[customers[r]] = per_customer.get(customers[r], 0) + 1
                sent.add(identifier)
    return sent


def _expected(
    mode: Mode, platform: Sequence[tuple[int, int]], records: Sequence[Sequence[int]]
) -> tuple[int, list[int] | None, list[int] | None]:
    customers = _customers(records)
    listed = _sent(records, customers)
    platform_ids = {i for i, _ in platform} & listed
    matched = [r for r, record in enumerate(records) if platform_ids.intersection(record)]
    matched_customers = len({customers[r] for r in matched})
    if mode is Mode.AUDIENCE:
        users = sorted({u for i, u in platform if i in listed})
        return len(users), None, users
    if mode is Mode.IDS:
        return matched_customers, [100 + 7 * r for r in matched], None
    return matched_customers, None, None


@pytest.mark.parametrize("mode", list(Mode))
@settings(max_examples=60)
@given(platform=platform_sets, records=advertiser_lists)
def test_result_equals_plaintext_intersection(
    mode: Mode, platform: list[tuple[int, int]], records: list[list[int]]
) -> None:
    assert _run(mode, platform, records) == _expected(mode, platform, records)


@pytest.mark.parametrize("mode", list(Mode))
@settings(max_examples=5)
@given(platform=platform_sets, records=advertiser_lists)
def test_p256_result_equals_plaintext_intersection(
    mode: Mode, platform: list[tuple[int, int]], records: list[list[int]]
) -> None:
    got = _run(mode, platform, records, "p256-sha256-sswu-ro")
    assert got == _expected(mode, platform, records)


@pytest.mark.parametrize("mode", list(Mode))
def test_everything_matches(mode: Mode) -> None:
    platform = [(i, i % 4) for i in range(len(UNIVERSE))]
    records = [[i, (i + 1) % len(UNIVERSE)] for i in range(0, len(UNIVERSE), 3)]
    got = _run(mode, platform, records)
    assert got == _expected(mode, platform, records)
    assert got[0] == (4 if mode is Mode.AUDIENCE else len(records))


@pytest.mark.parametrize("mode", list(Mode))
def test_nothing_matches(mode: Mode) -> None:
    # The same people, but the platform knows their phones and the list has their emails.
    platform = [(i, i) for i in range(1, len(UNIVERSE), 2)]
    records = [[i] for i in range(0, len(UNIVERSE), 2)]
    count, matched_ids, users = _run(mode, platform, records)
    assert count == 0
    assert matched_ids in (None, [])
    assert users in (None, [])
