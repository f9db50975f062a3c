"""Reading the marketing-consent column: only an explicit yes sends a record."""

from __future__ import annotations

import pytest

from cleanroom.advertiser import CONSENT_NO, CONSENT_YES, parse_marketing_consent


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
