"""The demo: synthetic people, both parties' data with its plaintext truth, and the whole story.

::

    people = generate_people(1000, seed=7)                 # fake, reproducible, messy spellings
    scenario = generate_scenario(users=50_000, records=10_000, seed=2026)
    scenario.write_platform_csv(path)                      # what the platform imports
    scenario.truth.count                                   # what an honest matcher must report

:func:`run_demo` (``cleanroom demo``) plays both parties with the real commands and checks every
result against that truth. Nothing here is, or may be used as, a secret: the data comes from
seeded generators on purpose.
"""

from __future__ import annotations

from cleanroom.demo._run import ADVERTISER, DEFAULT_WORKDIR, run_demo
from cleanroom.demo._scenario import (
    ADVERTISER_COLUMNS,
    DEFAULT_RECORDS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    MAX_SIZE,
    MIN_RECORDS,
    MIN_USERS,
    PLATFORM_COLUMNS,
    AdvertiserRecord,
    ConsentState,
    DemoScenario,
    GroundTruth,
    PlatformIdentifier,
    generate_scenario,
)
from cleanroom.demo._synthetic import Person, generate_people, messy_email, messy_phone

__all__ = [
    "ADVERTISER",
    "ADVERTISER_COLUMNS",
    "DEFAULT_RECORDS",
    "DEFAULT_SEED",
    "DEFAULT_USERS",
    "DEFAULT_WORKDIR",
    "MAX_SIZE",
    "MIN_RECORDS",
    "MIN_USERS",
    "PLATFORM_COLUMNS",
    "AdvertiserRecord",
    "ConsentState",
    "DemoScenario",
    "GroundTruth",
    "Person",
    "PlatformIdentifier",
    "generate_people",
    "generate_scenario",
    "messy_email",
    "messy_phone",
    "run_demo",
]
