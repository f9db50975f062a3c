"""Policy loading: defaults, overrides, and a clear error naming the key for every bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cleanroom.errors import InvalidInput, InvalidPolicy
from cleanroom.policy import (
    DEFAULT_SETTINGS,
    Mode,
    Policy,
    PolicySettings,
    load_policy,
    parse_policy,
)
from cleanroom.policy._settings import _CHECKS
from cleanroom.protocol import policy_info


def test_defaults_are_those_of_the_design() -> None:
    assert DEFAULT_SETTINGS.min_upload_records == 1000
    assert DEFAULT_SETTINGS.min_reported_count == 100
    assert DEFAULT_SETTINGS.epsilon_per_release == 0.5
    assert DEFAULT_SETTINGS.epsilon_budget == 8.0
    assert DEFAULT_SETTINGS.modes_allowed == {Mode.COUNT, Mode.AUDIENCE}
    assert DEFAULT_SETTINGS.max_sessions_per_day == 20
    assert DEFAULT_SETTINGS.default_region == "US"
    assert DEFAULT_SETTINGS.max_identifiers_per_record == 3
    assert DEFAULT_SETTINGS.noise_applied


def test_every_setting_has_a_checker_and_every_checker_a_setting() -> None:
    assert set(_CHECKS) == {f.name for f in dataclasses.fields(PolicySettings)}


def test_no_file_and_empty_file_give_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "policy.toml"
    empty.write_text("")
    assert load_policy(None) == Policy()
    assert load_policy(empty).defaults == DEFAULT_SETTINGS
    assert parse_policy("").for_advertiser("anyone") == DEFAULT_SETTINGS


def test_top_level_keys_set_the_defaults_of_every_advertiser() -> None:
    policy = parse_policy(
        """
        min_upload_records = 10
        max_upload_records = 500
        min_reported_count = 0
        epsilon_per_release = 0
        epsilon_budget = 2
        modes_allowed = ["count"]
        max_sessions_per_day = 3
        default_region = "GB"
        """
    )
    assert policy.for_advertiser("acme") == PolicySettings(
        min_upload_records=10,
        max_upload_records=500,
        min_reported_count=0,
        epsilon_per_release=0.0,
        epsilon_budget=2.0,
        modes_allowed=frozenset({Mode.COUNT}),
        max_sessions_per_day=3,
        default_region="GB",
    )
    assert not policy.defaults.noise_applied


def test_advertiser_table_overrides_only_its_keys_and_may_allow_ids() -> None:
    policy = parse_policy(
        """
        epsilon_budget = 4.0
        [advertisers.acme]
        modes_allowed = ["count", "audience", "ids"]
        min_upload_records = 50
        """
    )
    acme = policy.for_advertiser("acme")
    assert acme.modes_allowed == {Mode.COUNT, Mode.AUDIENCE, Mode.IDS}
    assert acme.min_upload_records == 50
    assert acme.epsilon_budget == 4.0  # inherited from the top level, not the built-in default
    assert policy.for_advertiser("other") == policy.defaults
    assert Mode.IDS not in policy.defaults.modes_allowed


def test_ids_mode_cannot_be_allowed_for_everyone() -> None:
    with pytest.raises(InvalidPolicy, match=r"'modes_allowed'.*only per advertiser"):
        parse_policy('modes_allowed = ["count", "ids"]')


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("min_upload_record = 5", "'min_upload_record'"),
        ("[advertisers.acme]\nepsilon = 1.0", "'advertisers.acme.epsilon'"),
        ("[limits]\nx = 1", "'limits'"),
    ],
)
def test_unknown_keys_are_refused_by_name(toml: str, key: str) -> None:
    with pytest.raises(InvalidPolicy, match=f"unknown policy key {key}"):
        parse_policy(toml)


@pytest.mark.parametrize(
    ("toml", "key", "why"),
    [
        ('min_upload_records = "1000"', "min_upload_records", "must be an integer"),
        ("min_upload_records = 10.0", "min_upload_records", "must be an integer"),
        ("max_upload_records = true", "max_upload_records", "must be an integer"),
        ("min_reported_count = [100]", "min_reported_count", "must be an integer"),
        ("max_sessions_per_day = 2.5", "max_sessions_per_day", "must be an integer"),
        ("max_identifiers_per_record = 0", "max_identifiers_per_record", "at least 1, got 0"),
        ("max_identifiers_per_record = 1.5", "max_identifiers_per_record", "an integer"),
        ('epsilon_per_release = "0.5"', "epsilon_per_release", "must be a number"),
        ("epsilon_budget = false", "epsilon_budget", "must be a number"),
        ('modes_allowed = "count"', "modes_allowed", "must be a list"),
        ("modes_allowed = [1]", "modes_allowed", "must be a list"),
        ('modes_allowed = ["counts"]', "modes_allowed", "unknown mode 'counts'"),
        ("default_region = 1", "default_region", "must be a region code"),
        ('default_region = "us"', "default_region", "not a supported"),
        ('default_region = "XX"', "default_region", "not a supported"),
        ("advertisers = 3", "advertisers", "must be a table"),
        ("advertisers = { acme = 1 }", "advertisers.acme", "must be a table"),
        (
            "[advertisers.acme]\nepsilon_budget = -1.0",
            "advertisers.acme.epsilon_budget",
            "finite number >= 0",
        ),
    ],
)
def test_wrong_types_are_refused_naming_the_key(toml: str, key: str, why: str) -> None:
    with pytest.raises(InvalidPolicy, match=f"'{key}'.*{why}"):
        parse_policy(toml)


@pytest.mark.parametrize(
    "key",
    [
        "min_upload_records",
        "max_upload_records",
        "min_reported_count",
        "max_sessions_per_day",
        "max_identifiers_per_record",
        "epsilon_per_release",
        "epsilon_budget",
    ],
)
def test_negative_values_are_refused_naming_the_key(key: str) -> None:
    with pytest.raises(InvalidPolicy, match=f"'{key}'"):
        parse_policy(f"{key} = -1")


@pytest.mark.parametrize(
    ("key", "largest"),
    [
        ("min_upload_records", 2**63 - 1),
        ("max_upload_records", 2**63 - 1),
        ("min_reported_count", 2**63 - 1),
        ("max_sessions_per_day", 2**32 - 1),
        ("max_identifiers_per_record", 2**32 - 1),
    ],
)
def test_counts_stop_at_what_the_policy_answer_carries(key: str, largest: int) -> None:
    toml = "max_upload_records = 9223372036854775807\n" if key == "min_upload_records" else ""
    settings = parse_policy(f"{toml}{key} = {largest}").defaults
    assert getattr(settings, key) == largest
    policy_info(settings, epoch_id=1, platform_set_size=1, spent_epsilon=0.0, sessions_today=0)
    with pytest.raises(InvalidPolicy, match=f"'{key}': must be at most {largest}, got"):
        parse_policy(f"{key} = {largest + 1}")


@pytest.mark.parametrize("name", ["a b", "Acme", "-acme", "x" * 64, ""])
def test_an_advertiser_table_no_certificate_can_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidPolicy, match=r"policy table \[advertisers\..*invalid advertiser"):
        parse_policy(f'[advertisers."{name}"]\nepsilon_budget = 1.0')


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_epsilon_is_refused(value: str) -> None:
    with pytest.raises(InvalidPolicy, match=r"'epsilon_per_release'.*finite"):
        parse_policy(f"epsilon_per_release = {value}")


def test_minimum_above_maximum_is_refused() -> None:
    with pytest.raises(InvalidPolicy, match=r"'min_upload_records'.*'max_upload_records'"):
        parse_policy("min_upload_records = 10\nmax_upload_records = 9")


def test_bad_toml_and_unreadable_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy, match="not valid TOML"):
        parse_policy("min_upload_records = ")
    with pytest.raises(InvalidPolicy, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes(b"default_region = '\xe9'")
    with pytest.raises(InvalidPolicy, match="cannot read policy file"):
        load_policy(not_utf8)


def test_policy_errors_are_input_errors() -> None:
    # The CLI exits 2 (bad input) for a bad policy file.
    assert issubclass(InvalidPolicy, InvalidInput)
