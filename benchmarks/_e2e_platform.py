"""The platform side of the end-to-end benchmark, through the real CLI, one process per step.

``platform init``, ``import`` (timed), ``issue-cert``, then ``epoch rotate`` once per X25519
backend (timed: hashing and encrypting every eligible identifier), and ``platform serve`` over
mTLS on 127.0.0.1 with the backend the sessions measure. The server runs with the admission
limits raised (:data:`SERVE_FLAGS`): the library's repeated matches open more sessions a minute
than an advertiser may by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    ADVERTISER,
    POLICY,
    Measured,
    Server,
    backend_env,
    cleanroom_executable,
    run_measured,
)

#: ``serve`` options for the benchmark: admission limits far above its sessions a minute.
SERVE_FLAGS = ("--streams-per-minute", "100000", "--policy-calls-per-minute", "100000")


@dataclass
class Platform:
    """A platform database with its certificate, epochs and the measurements of building it."""

    folder: Path
    big_n: int
    built_for_n: int
    steps: dict[str, Measured] = field(default_factory=dict)
    import_report: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.folder / "platform.db"

    @property
    def tls_dir(self) -> Path:
        return self.folder / ADVERTISER

    @property
    def policy(self) -> Path:
        return self.folder / "policy.toml"

    def build(self, platform_csv: Path) -> None:
        """init, import, issue-cert: each a measured subprocess of the real CLI."""
        db = str(self.db)
        self.policy.write_text(POLICY)
        self._step("init", ["platform", "init", "--db", db])
        stdout = self._step(
            "import", ["platform", "import", "--db", db, "--json", str(platform_csv)]
        )
        self.import_report = _json_or_empty(stdout)
        if "file" in self.import_report:  # a temporary path of this machine
            self.import_report["file"] = platform_csv.name
        cert = ["platform", "issue-cert", "--db", db, "--advertiser", ADVERTISER]
        self._step("issue_cert", [*cert, "--out", str(self.tls_dir)])

    def rotate(self, backend: str) -> Measured:
        """A new epoch computed on ``backend``; the server serves the latest."""
        name = f"epoch_rotate_{backend}"
        self._step(name, ["platform", "epoch", "rotate", "--db", str(self.db)], backend)
        return self.steps[name]

    def serve(self, backend: str, log: Path) -> Server:
        return Server(self.db, self.policy, log, SERVE_FLAGS, backend_env(backend))

    def _step(self, name: str, argv: list[str], backend: str | None = None) -> str:
        env = None if backend is None else backend_env(backend)
        measured, stdout = run_measured([cleanroom_executable(), *argv], set(), env=env)
        self.steps[name] = measured
        print(
            f"  platform {name}: {measured.wall_s:.2f} s wall, {measured.cpu_s:.1f} CPU-s, "
            f"{measured.max_rss_mb:.0f} MB (pool {measured.pool_max_rss_mb:.0f} MB)",
            flush=True,
        )
        return stdout


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
