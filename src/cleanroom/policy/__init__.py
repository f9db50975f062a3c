"""Platform policy: thresholds, modes, privacy budgets and differentially private releases.

``load_policy`` reads the TOML policy (DESIGN §7); ``check_session`` decides, before any work,
whether a session may open; ``release_count`` noises a count with exact discrete Laplace noise
and then thresholds it.
"""

from __future__ import annotations

from cleanroom.policy._noise import bernoulli_exp, epsilon_fraction, sample_discrete_laplace
from cleanroom.policy._release import Release, release_count, release_exact_count
from cleanroom.policy._session import SessionDecision, check_session
from cleanroom.policy._settings import (
    DEFAULT_SETTINGS,
    LARGEST_COUNT,
    Mode,
    Policy,
    PolicySettings,
    load_policy,
    parse_policy,
    policy_from_mapping,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "LARGEST_COUNT",
    "Mode",
    "Policy",
    "PolicySettings",
    "Release",
    "SessionDecision",
    "bernoulli_exp",
    "check_session",
    "epsilon_fraction",
    "load_policy",
    "parse_policy",
    "policy_from_mapping",
    "release_count",
    "release_exact_count",
    "sample_discrete_laplace",
]
