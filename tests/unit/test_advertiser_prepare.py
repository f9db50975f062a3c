"""Normalizing the kept records: messages, record ids and what was rejected."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom.advertiser import PreparedList, prepare_list, read_customer_list
from cleanroom.advertiser._prepare import _present
from cleanroom.errors import InvalidInput
from cleanroom.identifiers import hash_message, identifier_digest

HEADER = "record_id,email,phone,maid,marketing_consent\n"
MAID = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


def _prepare(
    tmp_path: Path, rows: str, *, prehashed: frozenset[str] = frozenset(), region: str = "US"
) -> PreparedList:
    path = tmp_path / "list.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    customers = read_customer_list(path, prehashed=prehashed)
    return prepare_list(customers, default_region=region, prehashed=prehashed)


def _message(kind: str, value: str, region: str = "US") -> bytes:
    return hash_message(kind, identifier_digest(kind, value, default_region=region))


def test_messages_are_normalized_per_column_with_their_record(tmp_path: Path) -> None:
    prepared = _prepare(
        tmp_path,
        f"r1, Jane.Doe+x@GMail.com ,(415) 555-2671,,yes\nr2,,,,no\nr3,,,{MAID},yes\n",
    )
    pairs = sorted(zip(prepared.messages, prepared.record_ids.tolist(), strict=True))
    assert pairs == sorted(
        [
            (_message("email", "janedoe@gmail.com"), 0),
            (_message("phone", "+14155552671"), 0),
            (_message("maid", MAID.lower()), 2),
        ]
    )
    assert prepared.records_sent == 2
    assert prepared.rows_rejected == 0
    assert prepared.problems == ()


def test_invalid_values_are_reported_and_the_record_goes_by_its_valid_ones(
    tmp_path: Path,
) -> None:
    prepared = _prepare(
        tmp_path,
        "r1,not-an-email,4155552671,,yes\n"  # line 2: bad email, good phone: sent
        "r2,also bad,555-0000,,yes\n"  # line 3: nothing valid: not sent
        "r3,,,,yes\n"  # line 4: nothing given: not sent
        "r4,x@example.com,,00000000-0000-0000-0000-000000000000,yes\n",  # line 5: bad maid
    )
    problems = [(p.row, p.column, p.reason) for p in prepared.problems]
    assert problems == [
        (2, "email", "invalid_email"),
        (3, "email", "invalid_email"),
        (3, "phone", "invalid_phone"),
        (3, None, "no_valid_identifier"),
        (4, None, "no_identifier"),
        (5, "maid", "invalid_maid"),
    ]
    details = {p.reason: p.detail for p in prepared.problems}
    assert details["invalid_email"] == "missing '@' (expected local@domain)"
    assert "all-zero id" in details["invalid_maid"]
    assert prepared.records_sent == 2
    assert prepared.rows_rejected == 2
    assert sorted(set(prepared.record_ids.tolist())) == [0, 3]


def test_reading_problems_are_carried_and_counted(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, "r1,a@example.com,,,yes\nr1,b@example.com,,,yes\nbroken\n")
    reasons = [p.reason for p in prepared.problems]
    assert reasons == ["duplicate_record_id", "malformed_row"]
    assert prepared.rows_rejected == 2
    assert prepared.records_sent == 1


def test_prehashed_column_gives_the_messages_of_the_raw_values(tmp_path: Path) -> None:
    raw = _prepare(tmp_path, "r1,Jane.Doe@gmail.com,,,yes\n")
    digest = hashlib.sha256(b"janedoe@gmail.com").hexdigest()
    hashed = _prepare(
        tmp_path, f"r1,{digest.upper()},,,yes\nr2,abc,,,yes\n", prehashed=frozenset({"email"})
    )
    assert hashed.messages == raw.messages
    (problem,) = [p for p in hashed.problems if p.reason == "invalid_email"]
    assert problem.row == 3 and problem.detail.startswith("pre-hashed value:")


def test_default_region_reads_national_phone_numbers(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, "r1,,020 7946 0018,,yes\n", region="GB")
    assert prepared.messages == [_message("phone", "+442079460018", "GB")]


def test_unknown_default_region_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        _prepare(tmp_path, "r1,,4155552671,,yes\n", region="XX")


def test_empty_list_prepares_nothing(tmp_path: Path) -> None:
    prepared = _prepare(tmp_path, "")
    assert prepared.messages == []
    assert prepared.record_ids.shape == (0,)
    assert prepared.records_sent == 0


def test_blank_cells_are_no_identifier_not_an_invalid_one(tmp_path: Path) -> None:
    # Spaces, a tab, a no-break space and an ideographic space: blank, as if empty.
    prepared = _prepare(tmp_path, "r1,  ,\t,\u00a0,yes\nr2,\u3000,, x@example.com ,yes\n")
    problems = [(p.row, p.column, p.reason) for p in prepared.problems]
    assert problems == [
        (2, None, "no_identifier"),
        (3, "maid", "invalid_maid"),
        (3, None, "no_valid_identifier"),
    ]


@given(st.lists(st.text(alphabet=" \t\u00a0\u3000\u200bax@", max_size=4), max_size=40))
def test_the_cells_present_are_those_strip_leaves_something_of(cells: list[str]) -> None:
    assert _present(cells).tolist() == [i for i, cell in enumerate(cells) if cell.strip()]
