"""The README's "Running it for real", run as written: each shell block in a fresh shell.

A fresh shell here is ``bash`` with no virtual environment on its PATH (so ``cleanroom`` is not
found until the README's own activation line runs), in an empty folder that holds only what the
README assumes is there: the clone's ``.venv`` (a link to the one running these tests), the
platform's ``users.csv`` and the advertiser's ``customers.csv`` (generated), and ``policy.toml``
(the README's own policy block). The serve block runs in the background until the blocks after
it are done; only its ports are changed, to free ones.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from _platform_processes import TIMEOUT

from cleanroom.demo import generate_scenario

README = Path(__file__).resolve().parents[2] / "README.md"
ACTIVATE = ". .venv/bin/activate"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fresh_environment() -> dict[str, str]:
    """This process's environment without its virtual environment: a new login's shell."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin
    )
    return env


def test_running_it_for_real_works_as_written_in_a_fresh_shell(tmp_path: Path) -> None:
    if not (Path(sys.prefix) / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a virtual environment: no .venv/bin/activate")
    section = _section("Running it for real")
    shells = _blocks(section, "sh")
    (policy,) = _blocks(section, "toml")
    assert shells[0].startswith(ACTIVATE), "the first block puts cleanroom on the PATH"
    grpc_port, http_port = _free_port(), _free_port()
    shells = [
        block.replace(":7443", f":{grpc_port}").replace(":9464", f":{http_port}")
        for block in shells
    ]
    (serve,) = [block for block in shells if "platform serve" in block]

    os.symlink(sys.prefix, tmp_path / ".venv")
    scenario = generate_scenario(users=3_000, records=1_500)
    scenario.write_platform_csv(tmp_path / "users.csv")
    with (tmp_path / "users.csv").open("a", encoding="utf-8") as users:
        users.write("u123,email,u123@example.com,app,true,2025-01-01T00:00:00Z,\n")
    scenario.write_advertiser_csv(tmp_path / "customers.csv")
    (tmp_path / "policy.toml").write_text(policy, encoding="utf-8")
    env = _fresh_environment()

    def shell(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    assert shell("command -v cleanroom").returncode != 0  # not on a fresh shell's PATH
    outputs = []
    server: subprocess.Popen[str] | None = None
    try:
        for block in shells:
            # A new shell for each block, activated as the README says every new shell is.
            script = block if block.startswith(ACTIVATE) else f"{ACTIVATE}\n{block}"
            if block is serve:
                server = subprocess.Popen(
                    ["bash", "-c", f"{ACTIVATE}\nexec {block.strip()}"],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert server.stdout is not None
                line = server.stdout.readline()
                assert line == f"listening on 127.0.0.1:{grpc_port}\n", server.stderr
                continue
            done = shell(script)
            assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=TIMEOUT) as page:
            assert "platform privacy dashboard" in page.read().decode()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=TIMEOUT) == 0
    assert (tmp_path / "platform" / "platform.db").is_file()  # its folder made by init
    assert "revoked ads-matching consent on 1 identifiers of u123" in "".join(outputs)
    assert "match rate:" in "".join(outputs)
    assert "cleanroom · match report" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "receipt valid: signed by audit key" in "".join(outputs)
    assert "its entry is in the log, unchanged" in outputs[-1]
