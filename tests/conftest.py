"""Test-wide settings.

Hypothesis runs without per-example deadlines: the machine is shared and a slow example is not a
failure. Example counts are set per test, sized so the whole suite stays well under ten minutes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cleanroom",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("cleanroom")
