"""``cleanroom demo`` through the real console script: the whole story on a small world.

The expected numbers come from the scenario generator, recomputed here with the same arguments;
the demo's own checks are not trusted alone (the lines are asserted, and so is the exit code).
"""

from __future__ import annotations

import dataclasses
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cleanroom.cli import main
from cleanroom.demo import DEFAULT_SEED, DemoScenario, generate_scenario
from cleanroom.demo import _run as demo_run

USERS = 3_000
RECORDS = 1_200


def _cleanroom() -> str:
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def _demo_argv(workdir: Path, users: int = USERS, records: int = RECORDS) -> list[str]:
    return [
        _cleanroom(),
        "demo",
        "--users",
        str(users),
        "--records",
        str(records),
        "--workdir",
        str(workdir),
    ]


def _listening_ports(text: str) -> list[int]:
    return [int(port) for port in re.findall(r"listening on 127\.0\.0\.1:(\d+)", text)]


def _assert_nothing_listens(port: int) -> None:
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


@pytest.mark.slow
def test_demo_tells_the_whole_story_and_matches_the_ground_truth(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / ".cleanroom-demo").write_text("an earlier run\n", encoding="utf-8")
    (workdir / "stale.csv").write_text("left by an earlier run\n", encoding="utf-8")
    truth = generate_scenario(USERS, RECORDS, DEFAULT_SEED).truth
    started = time.monotonic()
    done = subprocess.run(
        _demo_argv(workdir), capture_output=True, text=True, timeout=240, check=False
    )
    seconds = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "MISMATCH" not in out

    assert f"work directory: {workdir} (wiped: it held a previous demo run)" in out
    assert not (workdir / "stale.csv").exists()
    # Every step ran the real command and printed what it said.
    for line in (
        "$ cleanroom platform init --db",
        "$ cleanroom platform import --db",
        "rows from never-permitted sources",
        "$ cleanroom platform epoch rotate --db",
        "$ cleanroom platform issue-cert --db",
        "$ cleanroom platform serve --db",
        "--mode count --json",
        "--mode audience --json",
        "$ cleanroom receipt verify",
        "receipt valid: signed by audit key",
        "--receipt",
        "intact: ",
        "its entry is in the log, unchanged",
        "demo-advertiser",
    ):
        assert line in out, line
    # The exact runs equal the generator's truth, and the two_factor/recovery links did not match.
    assert f"ok: count: reported {truth.count:,}, ground truth {truth.count:,}" in out
    assert f"ok: audience: reported {truth.audience:,}, ground truth {truth.audience:,}" in out
    assert truth.records_only_through_never_permitted > 0
    assert (
        f"would say {truth.count_if_never_permitted:,}; none of the "
        f"{truth.records_only_through_never_permitted:,} such links matched" in out
    )
    assert f"holds {truth.audience:,} users: exactly the ground truth's users" in out
    only = len(truth.users_only_through_never_permitted)
    assert f"of the {only:,} users reachable only through two_factor/recovery" in out
    # Then the default policy: noisy results beside the truth, epsilon charged per release.
    assert f"(ground truth {truth.count:,}" in out
    assert "epsilon spent 0.5, remaining 7.5" in out
    assert "epsilon spent 0.5, remaining 7" in out
    # Both servers were started, stopped cleanly, and nothing listens any more.
    ports = _listening_ports(out)
    assert len(ports) == 2
    assert out.count("ok: the server stopped with exit code 0") == 2
    for port in ports:
        _assert_nothing_listens(port)
    assert "OK: the exact (epsilon 0) results equal the ground truth" in out
    # It ends saying where to look: the advertiser's report, the dashboard saved while the
    # server ran, and the one command that serves it live on the demo's database.
    end = out[out.index("OK: the exact") :].splitlines()[2:]
    # The command as typed here: `cleanroom` where the shell finds it, else the script's path.
    typed = end[4].split()[0]
    assert Path(shutil.which(typed) or typed).resolve() == Path(_cleanroom()).resolve()
    end[4] = end[4].replace(typed, "CLEANROOM", 1)
    assert end == [
        "See it for yourself:",
        f"   the advertiser's match report:  {workdir / 'report.html'}  (open it in a browser)",
        f"   the privacy officer's dashboard: {workdir / 'dashboard.html'}  (as the server showed "
        "it)",
        "   the live dashboard, on this demo's database:",
        f"     CLEANROOM platform serve --db {workdir / 'platform.db'} --listen "
        "127.0.0.1:7443 --http 127.0.0.1:9464",
        "     then open http://127.0.0.1:9464/ (Ctrl-C stops the server)",
    ]
    report = (workdir / "report.html").read_text(encoding="utf-8")
    assert "cleanroom · match report" in report and "discrete Laplace noise" in report
    dashboard = (workdir / "dashboard.html").read_text(encoding="utf-8")
    assert "platform privacy dashboard" in dashboard and "demo-advertiser" in dashboard
    print(f"small demo took {seconds:.1f} s")


@pytest.mark.slow
def test_sigterm_mid_demo_stops_the_server_too(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        _demo_argv(tmp_path / "demo", users=1_000, records=400),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = ""
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 120
        with selectors.DefaultSelector() as selector:
            selector.register(demo.stdout, selectors.EVENT_READ)
            while not _listening_ports(seen) and time.monotonic() < deadline:
                if selector.select(timeout=deadline - time.monotonic()):
                    line = demo.stdout.readline()
                    if not line:
                        break
                    seen += line
        ports = _listening_ports(seen)
        assert ports, f"the server never listened:\n{seen}"
        demo.send_signal(signal.SIGTERM)
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 130, f"{seen}{rest}\n{err}"
    assert "interrupted" in err
    _assert_nothing_listens(ports[0])


def test_a_folder_the_demo_did_not_make_is_never_wiped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me\n", encoding="utf-8")
    code = main(["demo", "--workdir", str(mine)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "is not empty and was not made by 'cleanroom demo'; refusing to wipe it" in err
    assert (mine / "precious.txt").read_text(encoding="utf-8") == "keep me\n"


def test_a_file_as_workdir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("x", encoding="utf-8")
    assert main(["demo", "--workdir", str(path)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "10"], "the demo needs at least 200 users and 100 records"),
        (["--records", "5"], "the demo needs at least 200 users and 100 records"),
        (["--workers", "0"], "the number of workers must be positive"),
        (["--workers", "100000"], "workers: 100000 is more than 4 worker processes"),
        (["--users", str(10**23)], "the demo makes at most 1,000,000 users"),
    ],
)
def test_bad_sizes_are_refused_before_anything_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()


@pytest.mark.slow
def test_a_result_that_differs_from_the_truth_exits_1_saying_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real commands run; only the demo's expectation is off by one customer.
    def off_by_one(users: int, records: int, seed: int) -> DemoScenario:
        scenario = generate_scenario(users, records, seed)
        truth = dataclasses.replace(scenario.truth, count=scenario.truth.count + 1)
        return dataclasses.replace(scenario, truth=truth)

    monkeypatch.setattr(demo_run, "generate_scenario", off_by_one)
    code = main(
        ["demo", "--workdir", str(tmp_path / "demo"), "--users", "1000", "--records", "400"]
    )
    out, _ = capsys.readouterr()
    assert code == 1
    assert "   MISMATCH: count: reported " in out
    assert "\nMISMATCH: 1 check(s) failed:" in out
    assert "(default-policy runs skipped:" in out  # 400 records: below the default minimum
    assert out.count("ok: the server stopped with exit code 0") == 1
    for port in _listening_ports(out):
        _assert_nothing_listens(port)


@pytest.mark.slow
def test_a_server_that_cannot_start_fails_the_demo_naming_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_run, "_EXACT_POLICY", "epsilon_per_release = -1.0\n")
    code = main(["demo", "--workdir", str(tmp_path / "demo"), "--users", "200", "--records", "100"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "\nFAILED: the server exited with 2 before listening; its log" in out
    assert "epsilon_per_release" in out  # the tail of the server's log says what was wrong
