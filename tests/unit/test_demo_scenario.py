"""The demo's scenario generator: its ground truth, recomputed independently from the CSV files.

The generator computes the truth from what it meant (canonical values, sources, consent states).
Here the same numbers are recomputed from the files it wrote, the way the system reads them: the
real normalizer, the store's source lists, the importer's consent and timestamp parsing and the
advertiser's consent spellings. Agreement means the files say what the generator thinks they say.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from cleanroom.advertiser import parse_marketing_consent
from cleanroom.demo import (
    ADVERTISER_COLUMNS,
    MIN_RECORDS,
    MIN_USERS,
    PLATFORM_COLUMNS,
    ConsentState,
    DemoScenario,
    generate_scenario,
)
from cleanroom.errors import InvalidInput
from cleanroom.identifiers import normalize_batch
from cleanroom.store import DEFAULT_PERMITTED_SOURCES, NEVER_PERMITTED_SOURCES
from cleanroom.store.fields import REVOKED, parse_consent, parse_timestamp

USERS = 2_000
RECORDS = 800
SEED = 41


@pytest.fixture(scope="module")
def scenario() -> DemoScenario:
    return generate_scenario(USERS, RECORDS, SEED)


@pytest.fixture(scope="module")
def files(scenario: DemoScenario, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("scenario")
    platform, advertiser = root / "platform.csv", root / "customers.csv"
    scenario.write_platform_csv(platform)
    scenario.write_advertiser_csv(advertiser)
    return platform, advertiser


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _normalized(kind: str, values: list[str]) -> list[str | None]:
    """Each value normalized, or None where normalization rejects it (empty cells too)."""
    present = [i for i, value in enumerate(values) if value.strip()]
    batch = normalize_batch(kind, [values[i] for i in present])
    out: list[str | None] = [None] * len(values)
    for index, value in zip(batch.indices, batch.values, strict=True):
        out[present[index]] = value
    return out


def _platform_eligibility(
    rows: list[dict[str, str]],
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """(kind, normalized) -> user for eligible rows, and for never-permitted rows claiming consent.

    Consent is read as the importer reads it: the flag, then a ``revoked_at`` at or after
    ``consent_at`` revokes it.
    """
    eligible: dict[tuple[str, str], str] = {}
    never_permitted: dict[tuple[str, str], str] = {}
    by_kind: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_kind.setdefault(row["type"], []).append(i)
    for kind, positions in by_kind.items():
        values = _normalized(kind, [rows[i]["value"] for i in positions])
        for position, value in zip(positions, values, strict=True):
            row = rows[position]
            assert value is not None, f"platform row {position} does not normalize"
            flag = parse_consent(row["ads_matching_consent"])
            consent_at = parse_timestamp(row["consent_at"]) if row["consent_at"] else None
            revoked_at = parse_timestamp(row["revoked_at"]) if row["revoked_at"] else None
            revoked = flag is REVOKED or (
                revoked_at is not None and (consent_at is None or revoked_at >= consent_at)
            )
            active = flag is True and not revoked
            if active and row["source"] in DEFAULT_PERMITTED_SOURCES:
                eligible[(kind, value)] = row["user_id"]
            elif active and row["source"] in NEVER_PERMITTED_SOURCES:
                never_permitted[(kind, value)] = row["user_id"]
    return eligible, never_permitted


def _advertiser_identities(rows: list[dict[str, str]]) -> list[set[tuple[str, str]]]:
    identities: list[set[tuple[str, str]]] = [set() for _ in rows]
    for kind in ("email", "phone", "maid"):
        for i, value in enumerate(_normalized(kind, [row[kind] for row in rows])):
            if value is not None:
                identities[i].add((kind, value))
    return identities


def test_truth_equals_an_independent_recomputation_from_the_files(
    scenario: DemoScenario, files: tuple[Path, Path]
) -> None:
    platform_header, platform_rows = _read(files[0])
    advertiser_header, advertiser_rows = _read(files[1])
    assert tuple(platform_header) == PLATFORM_COLUMNS
    assert tuple(advertiser_header) == ADVERTISER_COLUMNS
    eligible, never_permitted = _platform_eligibility(platform_rows)
    identities = _advertiser_identities(advertiser_rows)

    count = count_wrong = sent = without_consent = 0
    users: set[str] = set()
    users_wrong: set[str] = set()
    for row, found in zip(advertiser_rows, identities, strict=True):
        if parse_marketing_consent(row["marketing_consent"]) is not True:
            without_consent += 1
            continue
        sent += bool(found)
        hits = {eligible[i] for i in found if i in eligible}
        wrong = hits | {never_permitted[i] for i in found if i in never_permitted}
        count += bool(hits)
        count_wrong += bool(wrong)
        users |= hits
        users_wrong |= wrong

    truth = scenario.truth
    assert truth.count == count
    assert truth.audience_users == users
    assert truth.count_if_never_permitted == count_wrong
    assert truth.audience_users_if_never_permitted == users_wrong
    assert truth.platform_set_size == len(eligible)
    assert truth.records_sent == sent
    assert truth.records_without_consent == without_consent


def test_some_customers_link_to_the_platform_only_through_a_two_factor_phone(
    scenario: DemoScenario,
) -> None:
    two_factor = {
        (row.kind, row.canonical)
        for row in scenario.platform
        if row.source == "two_factor" and row.claims_consent
    }
    eligible = {(row.kind, row.canonical) for row in scenario.platform if row.eligible}
    only_two_factor = [
        record
        for record in scenario.advertiser
        if record.consented
        and any(i in two_factor for i in record.identities)
        and not any(i in eligible for i in record.identities)
    ]
    assert len(only_two_factor) >= 10
    truth = scenario.truth
    assert truth.records_only_through_never_permitted >= len(only_two_factor)
    assert truth.users_only_through_never_permitted
    assert not truth.users_only_through_never_permitted & truth.audience_users


def test_the_world_has_every_kind_of_case_the_demo_talks_about(scenario: DemoScenario) -> None:
    platform, advertiser = scenario.platform, scenario.advertiser
    assert len({row.user_id for row in platform}) == USERS
    assert len(advertiser) == RECORDS
    sources = Counter(row.source for row in platform)
    never_permitted = sources["two_factor"] + sources["recovery"]
    # "A few percent" of identifiers, most of them claiming consent anyway.
    assert 0.01 < never_permitted / len(platform) < 0.08
    assert sum(scenario.never_permitted_claiming_consent().values()) > never_permitted / 2
    states = Counter(row.state for row in platform if not row.never_permitted)
    assert states[ConsentState.REVOKED] > 0 and states[ConsentState.NOT_GIVEN] > 0
    assert all(row.revoked_at for row in platform if row.state is ConsentState.REVOKED)
    # Messy spellings on the advertiser side; some rows lack consent; some cells are unusable.
    assert sum(1 for r in advertiser if r.email and "@" in r.email and r.email != r.email.lower())
    assert sum(1 for r in advertiser if r.phone and not r.phone.startswith("+"))
    assert 0 < scenario.truth.records_without_consent < RECORDS / 5
    # A chunk of customers are platform users; one person entered twice counts once as a user.
    assert scenario.truth.count > RECORDS / 5
    assert scenario.truth.count > scenario.truth.audience


def test_canonical_values_are_what_normalization_produces(scenario: DemoScenario) -> None:
    for kind in ("email", "phone"):
        rows = [row for row in scenario.platform if row.kind == kind]
        batch = normalize_batch(kind, [row.written for row in rows])
        assert not batch.rejected
        assert batch.values == [row.canonical for row in rows]


def test_no_identifier_is_shared_between_platform_rows_or_between_records(
    scenario: DemoScenario,
) -> None:
    values = [(row.kind, row.canonical) for row in scenario.platform]
    assert len(set(values)) == len(values)
    identities = [i for record in scenario.advertiser for i in record.identities]
    assert len(set(identities)) == len(identities)
    assert len({record.record_id for record in scenario.advertiser}) == RECORDS


def test_same_seed_same_scenario_other_seed_another() -> None:
    a = generate_scenario(MIN_USERS, MIN_RECORDS, 3)
    b = generate_scenario(MIN_USERS, MIN_RECORDS, 3)
    c = generate_scenario(MIN_USERS, MIN_RECORDS, 4)
    assert a == b
    assert a.advertiser != c.advertiser


@pytest.mark.parametrize(
    ("users", "records", "message"),
    [
        (MIN_USERS - 1, MIN_RECORDS, f"at least {MIN_USERS} platform users"),
        (MIN_USERS, MIN_RECORDS - 1, f"at least {MIN_RECORDS} advertiser records"),
    ],
)
def test_too_small_a_world_is_refused(users: int, records: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        generate_scenario(users, records)
