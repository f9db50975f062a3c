"""Reading the marketing-consent column: only an explicit yes sends a record."""

from __future__ import annotations

import pytest

from cleanroom.advertiser import CONSENT_NO, CONSENT_YES, parse_marketing_consent
from cleanroom.advertiser._consent import ConsentCells


@pytest.mark.parametrize("value", ["yes", "YES", " true ", "1", "y", "Granted", "opt-in"])
def test_consent_given(value: str) -> None:
    assert parse_marketing_consent(value) is True


@pytest.mark.parametrize("value", ["", "  ", "no", "FALSE", "0", "n", "revoked", "opted_out"])
def test_no_consent(value: str) -> None:
    assert parse_marketing_consent(value) is False


@pytest.mark.parametrize("value", ["maybe", "2", "yes please", "t"])
def test_unreadable_consent_is_neither(value: str) -> None:
    assert parse_marketing_consent(value) is None


def test_spellings_do_not_overlap() -> None:
    assert not CONSENT_YES & CONSENT_NO


def test_remembered_cells_read_as_the_parser_reads_them() -> None:
    cells = ConsentCells()
    for value in ["yes", " YES ", "no", "", "maybe", "yes", "maybe", "Opt-In"]:
        assert cells[value] is parse_marketing_consent(value)
    # Unreadable values are counted each time, never remembered.
    assert set(cells) == {"yes", " YES ", "no", "", "Opt-In"}
    assert cells.unreadable == 2


def test_remembered_cells_stop_growing_at_their_limit() -> None:
    cells = ConsentCells()
    spellings = [f"{' ' * i}yes" for i in range(ConsentCells.LIMIT + 10)]
    assert [cells[value] for value in spellings] == [True] * len(spellings)
    assert len(cells) == ConsentCells.LIMIT
    assert cells["no"] is False  # still read, no longer remembered
    assert "no" not in cells
    assert cells.unreadable == 0
