"""The version floors in pyproject.toml are the ones `make floors` proves, and the pins honour them.

``make floors`` installs the package with every direct dependency at the version
``constraints-floors.txt`` names and runs a smoke test; that proves the floors only while the file
names exactly the floors pyproject.toml declares. ``constraints.txt`` pins what everything else
runs on, which must lie within what pyproject.toml accepts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# The test tools the smoke test runs with: their floors are proven with the rest.
SMOKE_TOOLS = {"pytest", "hypothesis"}


def _requirements() -> list[Requirement]:
    """Runtime dependencies, the cluster extra, the build backend and the smoke test's tools."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *extras["cluster"], *PYPROJECT["build-system"]["requires"]]
    specs += [s for s in extras["dev"] if canonicalize_name(Requirement(s).name) in SMOKE_TOOLS]
    return [Requirement(spec) for spec in specs]


def _pins(filename: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        requirement = line.partition("#")[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_dependency_has_one_floor() -> None:
    for requirement in _requirements():
        floors = [spec for spec in requirement.specifier if spec.operator == ">="]
        assert len(floors) == 1, f"{requirement}: one '>=' floor expected"


def test_the_floors_file_names_exactly_the_floors() -> None:
    floors = {
        canonicalize_name(requirement.name): Version(spec.version)
        for requirement in _requirements()
        for spec in requirement.specifier
        if spec.operator == ">="
    }
    assert len(floors) > 10
    assert _pins("constraints-floors.txt") == floors


def test_the_pins_lie_within_what_pyproject_accepts() -> None:
    pins = _pins("constraints.txt")
    for requirement in _requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is not None:  # setuptools is the build's own, not pinned
            assert requirement.specifier.contains(pinned), f"{requirement} vs {pinned}"
