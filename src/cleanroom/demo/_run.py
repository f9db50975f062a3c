"""``cleanroom demo``: the whole story in one command, checked against a plaintext ground truth.

The demo plays both parties with the real commands, each in its own process, exactly as an
operator would type them: it generates a platform export and an advertiser list
(:mod:`cleanroom.demo._scenario`), then runs ``platform init``, ``platform import``,
``platform epoch rotate``, ``platform issue-cert`` and ``platform serve`` (mTLS on loopback), and
``match`` in ``count`` and ``audience`` modes — first under a test policy without noise
(epsilon 0), where every result must equal the ground truth exactly, then under the default
policy, where the noisy results are shown beside the truth. It shows that no identifier
collected for two-factor login or account recovery matched, lists the stored audiences, checks
the advertiser's signed receipt offline, verifies the signed audit log against it, and stops the
server (also on an error or Ctrl-C: it is never left running). The last count match writes the
advertiser's HTML report, the last server also serves the dashboard, whose page is saved, and
the demo ends by saying where both are and how to serve the dashboard live.

Output: the story on stdout, one numbered step at a time with its key figures and timing; the
subcommands' progress bars go to stderr. The result is whether every exact check held (a
``MISMATCH`` line per failed check, or ``FAILED`` naming the step that broke, when not).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from cleanroom._fork_server import too_many_workers
from cleanroom.crypto import DEFAULT_SUITE_ID, get_suite
from cleanroom.demo._scenario import (
    DEFAULT_RECORDS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    MAX_SIZE,
    MIN_RECORDS,
    MIN_USERS,
    DemoScenario,
    generate_scenario,
)
from cleanroom.errors import DemoFailed, InvalidInput
from cleanroom.identifiers import normalize_batch
from cleanroom.policy import DEFAULT_SETTINGS

__all__ = ["ADVERTISER", "DEFAULT_WORKDIR", "run_demo"]

DEFAULT_WORKDIR: Final = Path("demo-output")
ADVERTISER: Final = "demo-advertiser"

#: A file the demo leaves in its folder: only a folder holding it (or an empty one) is wiped.
_MARKER: Final = ".cleanroom-demo"

#: The test deployment's policy: no noise and no reporting threshold, so every result can be
#: compared with the truth exactly (DESIGN §7 allows this and marks every result as such).
_EXACT_POLICY: Final = """\
# cleanroom demo: a TEST deployment. No noise and no reporting threshold, so the released
# counts are exact and can be compared with the plaintext ground truth.
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
"""

_SERVER_START_SECONDS: Final = 60.0
_SERVER_STOP_SECONDS: Final = 30.0
_NEVER_PERMITTED_LINE: Final = re.compile(r"(\d+) rows from never-permitted sources")

_SAMPLES: Final = (
    ("email", "  Jane.Doe+news@GMAIL.com "),
    ("phone", "(415) 555-2671"),
    ("phone", "555-0000"),
)


@dataclass(frozen=True)
class _Options:
    users: int
    records: int
    seed: int
    workdir: Path
    workers: int | None


def run_demo(
    *,
    users: int = DEFAULT_USERS,
    records: int = DEFAULT_RECORDS,
    seed: int = DEFAULT_SEED,
    workdir: Path = DEFAULT_WORKDIR,
    workers: int | None = None,
) -> bool:
    """Run the demo, printing its story on stdout; return whether every exact check held.

    Args:
        users: platform users to generate (at least :data:`MIN_USERS`).
        records: advertiser records to generate (at least :data:`MIN_RECORDS`).
        seed: seed of the synthetic data.
        workdir: folder for everything the demo makes; emptied first if a demo made it.
        workers: processes for hashing and encryption in each command; ``None``: all CPUs.

    Returns:
        ``True`` if every result equals the ground truth, ``False`` if a check failed or a step
        broke (the story says which).

    Raises:
        InvalidInput: a size below its minimum or above :data:`MAX_SIZE`, a worker count that is
            not positive or too many for the CPUs here, or a ``workdir`` that is not the demo's.
    """
    if users < MIN_USERS or records < MIN_RECORDS:
        raise InvalidInput(
            f"the demo needs at least {MIN_USERS} users and {MIN_RECORDS} records "
            f"(got {users} users and {records} records)"
        )
    if users > MAX_SIZE or records > MAX_SIZE:
        raise InvalidInput(
            f"the demo makes at most {MAX_SIZE:,} users and {MAX_SIZE:,} records, in memory "
            f"(got {users:,} users and {records:,} records)"
        )
    if workers is not None and workers < 1:
        raise InvalidInput(f"the number of workers must be positive, not {workers}")
    if workers is not None and (problem := too_many_workers(workers)) is not None:
        raise InvalidInput(f"workers: {problem}")
    options = _Options(users, records, seed, Path(workdir), workers)
    wiped = _prepare_workdir(options.workdir)
    with _sigterm_interrupts():
        demo = _Demo(options, _Story())
        print(
            "cleanroom demo: an ad platform and an advertiser match consented identifiers by "
            "private set\nintersection (ECDH), end to end with the real commands, and every "
            "result is compared\nwith the plaintext ground truth."
        )
        note = " (wiped: it held a previous demo run)" if wiped else ""
        print(f"work directory: {options.workdir}{note}")
        try:
            return demo.run()
        except DemoFailed as exc:
            print(f"\nFAILED: {exc}", flush=True)
            print(f"   the servers' logs, if any: {options.workdir / 'server-*.log'}")
            return False


# -- the work directory and signals ------------------------------------------------------------


def _prepare_workdir(workdir: Path) -> bool:
    """Empty (or create) the work directory; return whether an earlier run was wiped.

    Raises:
        InvalidInput: the path is a file, or a folder with content the demo did not make (it is
            never deleted).
    """
    wiped = False
    if workdir.exists() or workdir.is_symlink():
        if not workdir.is_dir() or workdir.is_symlink():
            raise InvalidInput(f"--workdir {workdir} exists and is not a folder")
        if any(workdir.iterdir()):
            if not (workdir / _MARKER).is_file():
                raise InvalidInput(
                    f"--workdir {workdir} is not empty and was not made by 'cleanroom demo'; "
                    "refusing to wipe it (choose another folder)"
                )
            wiped = True
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / _MARKER).write_text(
        "made by 'cleanroom demo': the next run wipes this folder\n", encoding="utf-8"
    )
    return wiped


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so the server is stopped by the same ``finally``."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- running the real commands ----------------------------------------------------------------


def _cleanroom_command() -> list[str]:
    """The ``cleanroom`` console script of this interpreter, or the same CLI through ``-c``."""
    script = Path(sys.executable).with_name("cleanroom")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cleanroom.cli import main; sys.exit(main())"]


def _typed_command(base: Sequence[str]) -> list[str]:
    """``base`` as a person types it here: ``cleanroom`` if the shell finds this very script,
    else its path (relative when under the current folder: ``.venv/bin/cleanroom``)."""
    script = Path(base[0])
    if len(base) > 1 or not script.is_absolute():
        return list(base)
    found = shutil.which(script.name)
    if found is not None and Path(found).resolve() == script.resolve():
        return [script.name]
    try:
        return [str(script.relative_to(Path.cwd()))]
    except ValueError:
        return [str(script)]


def _indent(text: str, prefix: str = "   ") -> None:
    for line in text.rstrip("\n").splitlines():
        print(prefix + line)


class _Commands:
    """Runs ``cleanroom`` subcommands as child processes (stderr, with progress bars, shared)."""

    def __init__(self, workers: int | None) -> None:
        self.base = _cleanroom_command()
        self.workers = [] if workers is None else ["--workers", str(workers)]

    def echo(self, argv: Sequence[str | Path]) -> None:
        print("   $ cleanroom " + " ".join(shlex.quote(str(a)) for a in argv), flush=True)

    def run(self, *argv: str | Path, show: bool = True) -> str:
        """Run one command to completion and return its stdout.

        Raises:
            DemoFailed: it exited with an error (its message went to stderr, above).
        """
        if show:
            self.echo(argv)
        done = subprocess.run(
            [*self.base, *map(str, argv)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            if done.stdout:
                _indent(done.stdout)
            words = [str(a) for a in argv]
            name = " ".join(words[: next((i for i, w in enumerate(words) if w[:1] == "-"), 2)])
            raise DemoFailed(
                f"'cleanroom {name}' exited with {done.returncode} "
                "(its error is printed above, on stderr)"
            )
        return done.stdout

    def run_json(self, *argv: str | Path, show: bool = True) -> dict[str, Any]:
        """Run a command with ``--json`` and return the object it printed."""
        data: dict[str, Any] = json.loads(self.run(*argv, "--json", show=show))
        return data


class _Server:
    """``cleanroom platform serve`` in a child process, with its output in log files."""

    def __init__(self, commands: _Commands, argv: Sequence[str | Path], log_stem: Path) -> None:
        self.commands = commands
        self.argv = list(argv)
        self.out_path = log_stem.with_suffix(".out")
        self.log_path = log_stem.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self._files: list[IO[bytes]] = []

    def start(self) -> str:
        """Start the server; return the ``HOST:PORT`` it listens on.

        Raises:
            DemoFailed: it exited, or did not say where it listens in time.
        """
        self.commands.echo(self.argv)
        out, log = self.out_path.open("wb"), self.log_path.open("wb")
        self._files = [out, log]
        # Its own session: a Ctrl-C reaches the demo alone, which then stops the server itself.
        self.process = subprocess.Popen(
            [*self.commands.base, *map(str, self.argv)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + _SERVER_START_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"^listening on (\S+)$", self.out_path.read_text(), re.MULTILINE)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise DemoFailed(
                    f"the server exited with {self.process.returncode} before listening; "
                    f"its log ({self.log_path}) ends:\n{self._log_tail()}"
                )
            time.sleep(0.05)
        raise DemoFailed(
            f"the server did not listen within {_SERVER_START_SECONDS:.0f} s; see {self.log_path}"
        )

    def stop(self) -> int:
        """Send SIGTERM and wait; return the exit code.

        Raises:
            DemoFailed: it did not stop in time (it is then killed).
        """
        process = self.process
        if process is None:
            return 0
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=_SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise DemoFailed(
                    f"the server did not stop within {_SERVER_STOP_SECONDS:.0f} s of SIGTERM; "
                    "it was killed"
                ) from None
        finally:
            self.process = None
            for stream in self._files:
                stream.close()

    def dashboard_url(self) -> str:
        """The dashboard's URL, once the server (started with ``--http``) has said it.

        Raises:
            DemoFailed: it did not say so in time.
        """
        deadline = time.monotonic() + _SERVER_START_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"^dashboard on (\S+)$", self.out_path.read_text(), re.MULTILINE)
            if found:
                return found.group(1)
            time.sleep(0.05)
        raise DemoFailed(f"the server did not serve its dashboard; see {self.log_path}")

    def _log_tail(self, lines: int = 12) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join("      " + line for line in text.splitlines()[-lines:])


@contextmanager
def _serving(server: _Server) -> Iterator[_Server]:
    """Yield the server; whatever happens, it is not running afterwards."""
    try:
        yield server
    finally:
        if server.process is not None:
            try:
                server.stop()
            except DemoFailed as exc:
                print(f"   warning: {exc}", file=sys.stderr)


# -- the story ----------------------------------------------------------------------------------


class _Story:
    """Numbered steps with their timing, and the record of every exact check."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.steps = 0
        self.mismatches: list[str] = []
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.steps += 1
        print(f"\n{self.steps}. {title}", flush=True)
        began = time.monotonic()
        yield
        seconds = time.monotonic() - began
        self.timings.append((title, seconds))
        print(f"   [{seconds:.1f} s]", flush=True)

    def check(self, holds: bool, text: str) -> bool:
        print(f"   {'ok' if holds else 'MISMATCH'}: {text}", flush=True)
        if not holds:
            self.mismatches.append(text)
        return holds

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


class _Demo:
    def __init__(self, options: _Options, story: _Story) -> None:
        self.options = options
        self.story = story
        self.commands = _Commands(options.workers)
        workdir = options.workdir
        self.workdir = workdir
        self.db = workdir / "platform.db"
        self.platform_csv = workdir / "platform.csv"
        self.customers_csv = workdir / "customers.csv"
        self.advertiser_tls = workdir / "advertiser-tls"
        self.exact_policy = workdir / "policy-exact.toml"
        self.receipt = workdir / "receipt-audience.json"
        self.report = workdir / "report.html"
        self.dashboard = workdir / "dashboard.html"
        self.results: dict[tuple[str, str], dict[str, Any]] = {}

    def run(self) -> bool:
        story = self.story
        with story.step("The core in brief: normalization and hash to curve (DESIGN §4-5)"):
            self.core()
        with story.step(f"Generate both sides' data (seed {self.options.seed})"):
            scenario = self.generate()
        truth = scenario.truth
        with story.step("Platform: create the database, its key folders and its TLS identity"):
            _indent(self.commands.run("platform", "init", "--db", self.db))
        with story.step("Platform: import the users' identifiers and consents"):
            self.import_platform(scenario)
        with story.step("Platform: rotate the key epoch (new key b; V = E_b(H(y)) precomputed)"):
            self.rotate(scenario)
        with story.step(f"Platform: issue a client certificate to advertiser {ADVERTISER!r}"):
            _indent(
                self.commands.run(
                    "platform",
                    "issue-cert",
                    "--db",
                    self.db,
                    "--advertiser",
                    ADVERTISER,
                    "--out",
                    self.advertiser_tls,
                )
            )

        noisy_possible = truth.records_sent >= DEFAULT_SETTINGS.min_upload_records
        self.exact_policy.write_text(_EXACT_POLICY, encoding="utf-8")
        # The last server to run also serves the dashboard, and the last count match writes
        # the advertiser's HTML report: the noisy ones, as a real deployment's would look.
        exact = self.server("server-exact", self.exact_policy, dashboard=not noisy_possible)
        with _serving(exact):
            with story.step("Platform: serve over mTLS on loopback, TEST policy (epsilon 0)"):
                address = exact.start()
                print(f"   listening on {address} (mTLS; advertiser identity from its certificate)")
                _indent(self.exact_policy.read_text(encoding="utf-8"), "     | ")
            with story.step("Advertiser: match --mode count (exact)"):
                self.match_exact(address, "count", scenario, write_report=not noisy_possible)
            with story.step("Advertiser: match --mode audience (exact)"):
                self.match_exact(address, "audience", scenario)
                self.check_stored_audience(scenario)
            if not noisy_possible:
                with story.step("Platform: the privacy officer's dashboard"):
                    self.save_dashboard(exact)
            with story.step("Platform: stop the server (SIGTERM)"):
                self.stop(exact)

        if noisy_possible:
            default = self.server("server-default", None, dashboard=True)
            with _serving(default):
                with story.step("Platform: serve again with the DEFAULT policy (no --policy)"):
                    address = default.start()
                    print(
                        f"   listening on {address}; epsilon "
                        f"{DEFAULT_SETTINGS.epsilon_per_release:g} per release (discrete "
                        f"Laplace), counts below {DEFAULT_SETTINGS.min_reported_count} "
                        f"reported as such, budget {DEFAULT_SETTINGS.epsilon_budget:g}"
                    )
                for mode in ("count", "audience"):
                    with story.step(f"Advertiser: match --mode {mode} (default policy, noisy)"):
                        self.match_noisy(address, mode, scenario)
                with story.step("Platform: the privacy officer's dashboard"):
                    self.save_dashboard(default)
                with story.step("Platform: stop the server (SIGTERM)"):
                    self.stop(default)
        else:
            print(
                f"\n   (default-policy runs skipped: {truth.records_sent} records would be sent, "
                f"fewer than the default minimum of {DEFAULT_SETTINGS.min_upload_records})"
            )

        with story.step("Platform: the stored audiences"):
            _indent(self.commands.run("platform", "audiences", "list", "--db", self.db))
        with story.step("Advertiser: check the platform's signed receipt, offline"):
            key = self.advertiser_tls / "audit.pub"
            _indent(self.commands.run("receipt", "verify", self.receipt, "--key", key))
        with story.step("Platform: verify the signed audit log, holding it to that receipt"):
            _indent(
                self.commands.run(
                    "platform", "audit", "verify", "--db", self.db, "--receipt", self.receipt
                )
            )
        return self.summary(scenario, noisy_possible)

    # -- steps ----------------------------------------------------------------------------------

    def core(self) -> None:
        for kind, value in _SAMPLES:
            batch = normalize_batch(kind, [value])
            shown = batch.values[0] if batch.values else f"rejected: {batch.rejected[0].reason}"
            print(f"   normalize {kind:5} {value!r:29} -> {shown}")
        suite = get_suite(DEFAULT_SUITE_ID)
        raw = normalize_batch("email", ["Jane.Doe@gmail.com"])
        prehashed = hashlib.sha256(raw.values[0].encode()).hexdigest()
        pre = normalize_batch("email", [prehashed], prehashed=True)
        point_raw = suite.hash_to_curve(raw.messages()[0], suite.dst)
        point_pre = suite.hash_to_curve(pre.messages()[0], suite.dst)
        print(f"   H(janedoe@gmail.com) on {suite.suite_id} = {point_raw.hex()[:32]}…")
        self.story.check(
            point_raw == point_pre,
            "the SHA-256 pre-hashed spelling of the same email hashes to the same point",
        )

    def generate(self) -> DemoScenario:
        scenario = generate_scenario(self.options.users, self.options.records, self.options.seed)
        scenario.write_platform_csv(self.platform_csv)
        scenario.write_advertiser_csv(self.customers_csv)
        truth = scenario.truth
        excluded = scenario.platform_exclusions()
        claimed = scenario.never_permitted_claiming_consent()
        without = truth.records_without_consent
        print(
            f"   {self.platform_csv}: {scenario.users:,} users, "
            f"{len(scenario.platform):,} identifier rows (emails, phones)"
        )
        print(f"     eligible (permitted source, active consent): {truth.platform_set_size:,}")
        print(
            f"     excluded: {excluded['revoked']:,} consent revoked, "
            f"{excluded['no_consent']:,} no consent, {excluded['source_not_permitted']:,} "
            "from two_factor/recovery"
        )
        print(
            f"     of which claim consent anyway: two_factor {claimed['two_factor']:,}, "
            f"recovery {claimed['recovery']:,} (the flag must not matter)"
        )
        sample = next(r for r in scenario.advertiser if r.email and r.phone)
        print(
            f"   {self.customers_csv}: {len(scenario.advertiser):,} records, {without:,} "
            f"without marketing consent, messy spellings (e.g. {sample.email!r}, "
            f"{sample.phone!r})"
        )
        print("   plaintext ground truth, from the generator's canonical identities:")
        print(f"     count mode:    {truth.count:>7,} customers share an eligible identifier")
        print(f"     audience mode: {truth.audience:>7,} distinct platform users matched")
        print(
            f"     if two_factor/recovery identifiers were (wrongly) eligible: "
            f"{truth.count_if_never_permitted:,} customers / "
            f"{truth.audience_if_never_permitted:,} users"
        )
        print(
            f"     -> {truth.records_only_through_never_permitted:,} customers are linked to the "
            "platform ONLY through a two_factor phone or a recovery email"
        )
        return scenario

    def import_platform(self, scenario: DemoScenario) -> None:
        output = self.commands.run("platform", "import", "--db", self.db, self.platform_csv)
        _indent(output)
        expected = sum(scenario.never_permitted_claiming_consent().values())
        found = _NEVER_PERMITTED_LINE.search(output)
        reported = int(found.group(1)) if found else 0
        self.story.check(
            reported == expected,
            f"the import flagged {reported:,} two_factor/recovery rows claiming consent "
            f"(generator: {expected:,})",
        )

    def rotate(self, scenario: DemoScenario) -> None:
        _indent(self.commands.run("platform", "epoch", "rotate", "--db", self.db, *self.workers()))
        status = self.commands.run_json("platform", "status", "--db", self.db, show=False)
        truth = scenario.truth
        epoch_size = (status.get("epoch") or {}).get("size")
        self.story.check(
            epoch_size == truth.platform_set_size,
            f"V holds {_n(epoch_size)} eligible identifiers (generator: "
            f"{truth.platform_set_size:,})",
        )
        expected = scenario.platform_exclusions()
        excluded = {reason: status["excluded"].get(reason) for reason in expected}
        self.story.check(
            excluded == expected,
            "exclusions by reason (platform status): "
            + ", ".join(f"{reason} {_n(excluded[reason])}" for reason in expected)
            + " (generator: "
            + ", ".join(f"{expected[reason]:,}" for reason in expected)
            + ")",
        )

    def server(self, name: str, policy: Path | None, *, dashboard: bool = False) -> _Server:
        argv: list[str | Path] = ["platform", "serve", "--db", self.db, "--listen", "127.0.0.1:0"]
        if policy is not None:
            argv += ["--policy", policy]
        if dashboard:
            argv += ["--http", "127.0.0.1:0"]
        argv += self.workers()
        return _Server(self.commands, argv, self.workdir / name)

    def stop(self, server: _Server) -> None:
        code = server.stop()
        print(f"   its log: {server.log_path}")
        self.story.check(code == 0, f"the server stopped with exit code {code}")

    def match(self, address: str, mode: str, *extra: str | Path) -> dict[str, Any]:
        report = self.commands.run_json(
            "match",
            "--server",
            address,
            "--tls-dir",
            self.advertiser_tls,
            "--input",
            self.customers_csv,
            "--mode",
            mode,
            *extra,
            *self.workers(),
        )
        phases = report.get("phases", {})
        print(
            f"   read {report['records_read']:,} records: {report['without_consent']:,} without "
            f"consent, {report['rejected']['rows']:,} unusable, {report['sent']:,} sent "
            f"({report['identifiers_sent']:,} identifiers); platform set N = "
            f"{report['platform_set_size']:,}"
        )
        if phases:
            print("   phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
        receipt = report.get("receipt")
        if receipt is not None:
            checked = "signature verified" if report.get("receipt_verified") else "not checked"
            print(
                f"   receipt: audit entry {receipt['audit_seq']} of the platform's log, "
                f"signed by audit key {receipt['key']} ({checked})"
            )
        return report

    def save_dashboard(self, server: _Server) -> None:
        """Keep the dashboard page as the running server shows it, for after the demo."""
        url = server.dashboard_url()
        try:
            with urllib.request.urlopen(url, timeout=_SERVER_STOP_SECONDS) as reply:
                page = reply.read()
        except OSError as exc:
            raise DemoFailed(f"the dashboard at {url} did not answer: {exc}") from exc
        self.dashboard.write_bytes(page)
        print(f"   served at {url} while this server runs; saved as {self.dashboard}")
        self.story.check(
            b"platform privacy dashboard" in page and b"Verified" in page,
            "the dashboard shows the platform, and its signed audit log verifies",
        )

    def match_exact(
        self, address: str, mode: str, scenario: DemoScenario, *, write_report: bool = False
    ) -> None:
        truth = scenario.truth
        extra: tuple[str | Path, ...] = ("--receipt", self.receipt) if mode == "audience" else ()
        if write_report:
            extra += ("--report", self.report)
        report = self.match(address, mode, *extra)
        self.results[(mode, "exact")] = report
        expected = truth.count if mode == "count" else truth.audience
        wrong = (
            truth.count_if_never_permitted if mode == "count" else truth.audience_if_never_permitted
        )
        what = "customers" if mode == "count" else "platform users"
        print(
            f"   result: {_n(report['count'])} {what}, reported as {report['reported_as']!r}; "
            f"epsilon spent {report['epsilon_spent']:g}"
        )
        story = self.story
        story.check(
            report["count"] == expected,
            f"{mode}: reported {_n(report['count'])}, ground truth {expected:,}",
        )
        story.check(
            report["count"] != wrong or wrong == expected,
            f"{mode}: a matcher using two_factor/recovery identifiers would say {wrong:,}; "
            f"none of the {wrong - expected:,} such links matched",
        )
        if mode == "count":
            story.check(
                (report["records_read"], report["without_consent"], report["sent"])
                == (len(scenario.advertiser), truth.records_without_consent, truth.records_sent),
                f"records read / without consent / sent: {report['records_read']:,} / "
                f"{report['without_consent']:,} / {report['sent']:,} (generator: "
                f"{len(scenario.advertiser):,} / {truth.records_without_consent:,} / "
                f"{truth.records_sent:,})",
            )

    def check_stored_audience(self, scenario: DemoScenario) -> None:
        listing = self.commands.run_json(
            "platform", "audiences", "list", "--db", self.db, show=False
        )
        latest = max(listing["audiences"], key=lambda a: a["id"])
        shown = self.commands.run_json(
            "platform", "audiences", "show", str(latest["id"]), "--db", self.db, show=False
        )
        members = set(shown["user_ids"])
        truth = scenario.truth
        only_never_permitted = truth.users_only_through_never_permitted
        story = self.story
        story.check(
            members == truth.audience_users,
            f"stored audience {latest['id']} holds {len(members):,} users: exactly the ground "
            "truth's users",
        )
        story.check(
            not members & only_never_permitted,
            f"of the {len(only_never_permitted):,} users reachable only through two_factor/"
            f"recovery identifiers, {len(members & only_never_permitted)} are in the audience",
        )

    def match_noisy(self, address: str, mode: str, scenario: DemoScenario) -> None:
        truth = scenario.truth
        report = self.match(address, mode, *(("--report", self.report) if mode == "count" else ()))
        self.results[(mode, "default")] = report
        expected = truth.count if mode == "count" else truth.audience
        count = report["count"]
        noise = "" if count is None else f", noise {count - expected:+d}"
        print(
            f"   result: {report['reported_as']} (ground truth {expected:,}{noise}); "
            f"epsilon spent {report['epsilon_spent']:g}, remaining "
            f"{report['epsilon_remaining']:g}"
        )

    def workers(self) -> list[str]:
        return self.commands.workers

    # -- the end ----------------------------------------------------------------------------------

    def summary(self, scenario: DemoScenario, noisy: bool) -> bool:
        truth = scenario.truth
        story = self.story
        print("\nSummary")
        header = f"   {'':10}{'ground truth':>14}{'epsilon 0':>12}"
        print(header + (f"{'default policy':>18}" if noisy else ""))
        for mode, expected in (("count", truth.count), ("audience", truth.audience)):
            exact = _n(self.results.get((mode, "exact"), {}).get("count"))
            line = f"   {mode:10}{expected:>14,}{exact:>12}"
            if noisy:
                line += f"{self.results.get((mode, 'default'), {}).get('reported_as', '-'):>18}"
            print(line)
        print(
            f"   two_factor/recovery wrongly eligible would give: count "
            f"{truth.count_if_never_permitted:,}, audience {truth.audience_if_never_permitted:,}"
        )
        print(f"   total time {story.elapsed():.1f} s")
        if story.mismatches:
            print(f"\nMISMATCH: {len(story.mismatches)} check(s) failed:")
            for text in story.mismatches:
                print(f"   - {text}")
            self.where_to_look()
            return False
        print(
            "\nOK: the exact (epsilon 0) results equal the ground truth, and no two_factor or "
            "recovery identifier matched."
        )
        self.where_to_look()
        return True

    def where_to_look(self) -> None:
        db = shlex.quote(str(self.db))
        cleanroom = shlex.join(_typed_command(self.commands.base))
        print(
            "\nSee it for yourself:\n"
            f"   the advertiser's match report:  {self.report}  (open it in a browser)\n"
            f"   the privacy officer's dashboard: {self.dashboard}  (as the server showed it)\n"
            "   the live dashboard, on this demo's database:\n"
            f"     {cleanroom} platform serve --db {db} --listen 127.0.0.1:7443 "
            "--http 127.0.0.1:9464\n"
            "     then open http://127.0.0.1:9464/ (Ctrl-C stops the server)"
        )
