"""check_session: every refusal, in the class the gRPC layer maps to the right status."""

from __future__ import annotations

import pytest

from cleanroom.errors import BudgetExhausted, InvalidInput, LimitExceeded, PolicyRefused
from cleanroom.policy import Mode, Policy, check_session, parse_policy

POLICY = parse_policy(
    """
    min_upload_records = 100
    max_upload_records = 1000
    epsilon_per_release = 0.5
    epsilon_budget = 2.0
    max_sessions_per_day = 5
    [advertisers.acme]
    modes_allowed = ["count", "ids"]
    """
)


def _check(
    *,
    advertiser: str = "acme",
    mode: Mode = Mode.COUNT,
    n: int = 500,
    spent: float = 0.0,
    today: int = 0,
    open_session: bool = False,
    policy: Policy = POLICY,
) -> object:
    return check_session(policy, advertiser, mode, n, spent, today, open_session)


def test_allowed_session_carries_the_advertisers_settings() -> None:
    decision = check_session(POLICY, "acme", Mode.IDS, 100, 1.5, 4, False)
    assert decision.settings == POLICY.for_advertiser("acme")
    assert (decision.advertiser, decision.mode, decision.record_count) == ("acme", Mode.IDS, 100)
    assert decision.epsilon_to_charge == 0.0  # ids mode releases no noisy count
    count = check_session(POLICY, "acme", Mode.COUNT, 1000, 1.5, 0, False)
    assert count.epsilon_to_charge == 0.5
    assert count.epsilon_remaining(0.5) == 0.0


def test_mode_not_allowed_is_refused() -> None:
    with pytest.raises(PolicyRefused, match=r"mode 'audience' is not allowed.*'acme'"):
        _check(mode=Mode.AUDIENCE)
    with pytest.raises(PolicyRefused, match=r"mode 'ids' is not allowed.*'other'"):
        _check(advertiser="other", mode=Mode.IDS)


def test_second_open_session_is_refused() -> None:
    with pytest.raises(PolicyRefused, match="already has a session open"):
        _check(open_session=True)


def test_too_many_sessions_today_is_a_limit() -> None:
    _check(today=4)
    with pytest.raises(LimitExceeded, match="5 sessions today"):
        _check(today=5)


def test_list_size_bounds() -> None:
    _check(n=100)
    _check(n=1000)
    with pytest.raises(PolicyRefused, match="99 records, fewer than the minimum of 100"):
        _check(n=99)
    with pytest.raises(LimitExceeded, match="1001 records, more than the maximum of 1000"):
        _check(n=1001)


def test_budget_is_checked_before_any_work() -> None:
    _check(spent=1.5)
    with pytest.raises(BudgetExhausted, match=r"spent epsilon 1\.6 of its budget of 2"):
        _check(spent=1.6)
    # ids mode is not charged, so an exhausted budget does not stop it.
    _check(spent=2.0, mode=Mode.IDS)
    assert issubclass(BudgetExhausted, LimitExceeded)


def test_budget_survives_float_sums() -> None:
    policy = parse_policy("epsilon_per_release = 0.1\nepsilon_budget = 8.0\nmin_upload_records = 0")
    spent = 0.0
    for _ in range(79):
        spent += 0.1
    assert spent != 7.9  # float sums drift; the check must not refuse the 80th release for it
    check_session(policy, "x", Mode.COUNT, 1, spent, 0, False)
    with pytest.raises(BudgetExhausted):
        check_session(policy, "x", Mode.COUNT, 1, spent + 0.1, 0, False)


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(InvalidInput):
        _check(n=-1)
    with pytest.raises(InvalidInput):
        _check(spent=-0.5)
