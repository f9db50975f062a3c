"""`cleanroom demo` through the real console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def _cleanroom() -> str:
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def test_demo_runs_and_matches_ground_truth() -> None:
    result = subprocess.run(
        [
            _cleanroom(),
            "demo",
            "--platform-users",
            "3000",
            "--advertiser-records",
            "800",
            "--overlap",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "rejected:" in result.stdout  # bad samples are shown with their reason
    assert "same: True" in result.stdout  # raw and pre-hashed agree
