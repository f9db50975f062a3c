"""Under ``make sanitize``, the C extensions that run are the sanitized build, in every process.

``make sanitize`` builds the C extensions with AddressSanitizer and UndefinedBehaviorSanitizer in
a copy of the sources, puts that copy first on PYTHONPATH and sets CLEANROOM_SANITIZED. Had the
path or the build gone wrong, the suite would pass on the ordinary extensions and prove nothing;
these tests fail instead. Elsewhere they are skipped.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import cleanroom

pytestmark = pytest.mark.skipif(
    not os.environ.get("CLEANROOM_SANITIZED"),
    reason="runs under make sanitize only (the suite on sanitized builds of the C extensions)",
)

PACKAGE = Path(cleanroom.__file__).parent


def _extensions() -> list[ModuleType]:
    """The module each C source under the package builds, imported."""
    sources = sorted(PACKAGE.glob("*/*.c"))
    return [importlib.import_module(f"cleanroom.{c.parent.name}.{c.stem}") for c in sources]


def test_the_package_is_the_sanitized_copy() -> None:
    first = Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]).resolve()
    assert PACKAGE.resolve().is_relative_to(first), (PACKAGE, first)


def test_every_c_source_runs_as_an_instrumented_extension() -> None:
    extensions = _extensions()
    assert extensions
    for module in extensions:
        assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader), module
        assert module.__file__ is not None
        binary = Path(module.__file__).read_bytes()
        assert b"__asan_report_" in binary, f"{module.__name__} is not built with AddressSanitizer"
        assert b"__ubsan_handle_" in binary, f"{module.__name__} is not built with UBSan"


def test_the_runtime_is_loaded_here_and_in_the_processes_the_tests_start() -> None:
    assert "libasan" in Path("/proc/self/maps").read_text()
    probe = (
        "import pathlib, cleanroom.crypto._h2c25519 as m; "
        "print(m.__file__); print('libasan' in pathlib.Path('/proc/self/maps').read_text())"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown == [importlib.import_module("cleanroom.crypto._h2c25519").__file__, "True"]
