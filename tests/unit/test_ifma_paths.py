"""Every AVX-512 IFMA path is on wherever the CPU has IFMA.

Each module turns its IFMA path off if it disagrees with the portable code when it is loaded
(a self-test), and the tests comparing the two paths skip where IFMA is off. On a CPU with IFMA,
a path found off is a failure here, not a quiet skip there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cleanroom.crypto import _check25519, _h2c25519, x25519


def _cpu_has_ifma() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to say whether this CPU has AVX-512 IFMA")
    return any(
        "avx512ifma" in line.split(":", 1)[1].split()
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("flags")
    )


@pytest.mark.parametrize(
    "path_is_on",
    [
        pytest.param(lambda: bool(_check25519.IFMA), id="validation"),
        pytest.param(lambda: bool(_h2c25519.IFMA), id="hash-to-curve"),
        pytest.param(lambda: x25519.ifma_problem() is None, id="x25519-ladder"),
    ],
)
def test_the_ifma_path_is_on_where_the_cpu_has_ifma(path_is_on: Callable[[], bool]) -> None:
    assert path_is_on() == _cpu_has_ifma()
