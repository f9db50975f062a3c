"""The Advertiser library against the real platform server, on the demo's generated data.

The platform is built and served by the real CLI (``platform init``, ``import``, ``epoch
rotate``, ``issue-cert``, ``serve`` over mTLS on port 0) under a test policy without noise, so
that every result is exact and can be compared with the generator's plaintext truth and with
what the real ``cleanroom match`` prints.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import pytest
from _platform_processes import TIMEOUT, Server, build_platform, cleanroom_executable, cli_ok

from cleanroom._output import spreadsheet_cell
from cleanroom.advertiser import (
    Advertiser,
    PlatformClient,
    parse_server_address,
    prepare_list,
    read_customer_list,
)
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.demo import DemoScenario, generate_scenario
from cleanroom.errors import (
    ImportFailed,
    InvalidInput,
    PlatformRefused,
    PlatformUnreachable,
    PolicyRefused,
)
from cleanroom.policy import Mode
from cleanroom.protocol import AdvertiserRole, session_terms

README = Path(__file__).resolve().parents[2] / "README.md"

# The demo's exact policy, with ids mode granted to acme and room for every test's sessions.
POLICY = """\
epsilon_per_release = 0.0
min_reported_count = 0
min_upload_records = 10
max_sessions_per_day = 1000

[advertisers.acme]
modes_allowed = ["count", "audience", "ids"]
"""


@dataclass
class DemoPlatform:
    root: Path
    address: str
    acme_tls: Path
    other_tls: Path
    customers_csv: Path
    scenario: DemoScenario


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoPlatform]:
    root = tmp_path_factory.mktemp("advertiser")
    scenario = generate_scenario(users=2_000, records=1_000)
    scenario.write_platform_csv(root / "platform.csv")
    scenario.write_advertiser_csv(root / "customers.csv")
    db = build_platform(root, root / "platform.csv", ["acme", "other"])
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    # Every test here matches as acme on one server: room for more than a minute's default calls.
    server = Server(
        db,
        root / "policy.toml",
        *("--policy-calls-per-minute", "1000", "--streams-per-minute", "1000"),
    )
    try:
        yield DemoPlatform(
            root, server.address, root / "acme", root / "other", root / "customers.csv", scenario
        )
    finally:
        server.stop()


def _cli_match(platform: DemoPlatform, mode: str, *extra: str | Path) -> dict[str, Any]:
    """The real ``cleanroom match --json``, in its own process."""
    done = subprocess.run(
        [
            cleanroom_executable(),
            *("match", "--server", platform.address, "--tls-dir", str(platform.acme_tls)),
            *("--input", str(platform.customers_csv), "--mode", mode, "--json"),
            *map(str, extra),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


# What differs between two sessions on the same data: how long each phase took, and what the
# platform's receipt says about the session itself (its id, audit entry, time and signature).
_PER_SESSION_RECEIPT_FIELDS = {"session", "audit_seq", "audit_hash", "audit_at", "signature"}


def _without_timing(report: dict[str, Any]) -> dict[str, Any]:
    same = {key: value for key, value in report.items() if key not in ("phases", "completed_at")}
    if same.get("receipt") is not None:
        receipt = same["receipt"]
        assert receipt.keys() >= _PER_SESSION_RECEIPT_FIELDS
        same["receipt"] = {k: v for k, v in receipt.items() if k not in _PER_SESSION_RECEIPT_FIELDS}
    return same


@pytest.mark.parametrize("mode", ["count", "audience", "ids"])
def test_the_library_and_the_cli_report_the_same_json(platform: DemoPlatform, mode: str) -> None:
    out = {"out": platform.root / f"same-json-{mode}.csv"} if mode == "ids" else {}
    from_cli = _cli_match(platform, mode, *(("--out", out["out"]) if out else ()))
    with Advertiser(platform.address, platform.acme_tls) as advertiser:
        report = advertiser.match(platform.customers_csv, mode=mode, **out)
    from_library = json.loads(json.dumps(report.to_dict()))
    assert _without_timing(from_library) == _without_timing(from_cli)
    assert list(from_library["phases"]) == list(from_cli["phases"])
    assert from_library["receipt_verified"] and from_library["receipt"] is not None
    truth = platform.scenario.truth
    expected = {"count": truth.count, "audience": truth.audience, "ids": truth.count}[mode]
    assert report.count == expected
    assert (report.records_read, report.without_consent, report.sent) == (
        len(platform.scenario.advertiser),
        truth.records_without_consent,
        truth.records_sent,
    )


def test_ids_mode_gives_the_matched_rows_as_positions_and_writes_them(
    platform: DemoPlatform,
) -> None:
    out = platform.root / "matched-library.csv"
    with Advertiser(platform.address, platform.acme_tls) as advertiser:
        report = advertiser.match(str(platform.customers_csv), mode="ids", out=out)
    cli_out = platform.root / "matched-cli.csv"
    _cli_match(platform, "ids", "--out", cli_out)
    assert out.read_bytes() == cli_out.read_bytes()
    assert report.matched_row_positions is not None
    assert report.matched_rows == len(report.matched_row_positions) == report.count
    with platform.customers_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    with out.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f))
    # Unchanged but for the leading quote that keeps a spreadsheet from reading "+1…" as a formula.
    expected = [rows[0]] + [rows[1 + i] for i in report.matched_row_positions]
    assert written == [[spreadsheet_cell(cell) for cell in row] for row in expected]


def test_rows_in_memory_match_as_their_file_does(platform: DemoPlatform) -> None:
    with platform.customers_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    with Advertiser(platform.address, platform.acme_tls) as advertiser:
        from_rows = advertiser.match(iter(rows), mode="ids")
        from_file = advertiser.match(platform.customers_csv, mode="ids")
    assert from_rows.input is None and from_rows.to_dict()["input"] is None
    assert from_rows.matched_row_positions == from_file.matched_row_positions
    assert from_rows.count == from_file.count == platform.scenario.truth.count
    assert from_rows.lines()[0].startswith("matched the rows given against ")


def test_a_platform_set_that_shrank_since_get_policy_is_taken(platform: DemoPlatform) -> None:
    # An honest platform on a busy day: a consent is revoked between the advertiser's GetPolicy
    # and its session's opening, so the session announces fewer identifiers than the policy.
    # (A user none of the advertiser's records reaches: the other tests' truth stays true.)
    scenario = platform.scenario
    counts = Counter(row.user_id for row in scenario.platform if row.eligible)
    user, identifiers = next(
        (user, n) for user, n in counts.items() if user not in scenario.truth.audience_users
    )
    address = parse_server_address(platform.address)
    with PlatformClient(address, tls_dir=platform.acme_tls) as client:
        info = client.get_policy()
        cli_ok(
            "platform", "consent", "revoke", "--db", platform.root / "platform.db", "--user", user
        )
        prepared = prepare_list(read_customer_list(platform.customers_csv), default_region="US")
        role = AdvertiserRole(
            get_suite(info.suites[0]),
            Mode.COUNT,
            prepared.messages,
            prepared.record_ids,
            terms=session_terms(info),
        )
        result = client.match(role)
    assert result.platform_set_size == info.platform_set_size - identifiers
    assert result.count == scenario.truth.count


def test_one_advertiser_keeps_its_channel_and_workers_across_matches(
    platform: DemoPlatform,
) -> None:
    # Chunks of 100 rows on two workers: the list's 1,000 records are hashed on the pool.
    with BatchEngine(workers=2, chunk_size=100) as engine:
        with Advertiser(platform.address, platform.acme_tls, engine=engine) as advertiser:
            first = advertiser.match(platform.customers_csv, mode="count")
            workers = engine.worker_pids
            second = advertiser.match(platform.customers_csv, mode="count")
            assert len(workers) == 2
            assert engine.worker_pids == workers
        assert first.count == second.count == platform.scenario.truth.count
        # An engine given to the Advertiser is the caller's: still running after close.
        assert engine.worker_pids == workers
    with pytest.raises(ValueError, match="closed"):
        advertiser.match(platform.customers_csv, mode="count")


def test_a_mode_the_policy_refuses_raises_platform_refused_before_hashing(
    platform: DemoPlatform,
) -> None:
    hashed: list[str] = []

    def progress(phase: str, total: int | None) -> Any:
        hashed.append(phase)
        return lambda done: None

    with (
        Advertiser(platform.address, platform.other_tls) as advertiser,
        pytest.raises(PlatformRefused, match="mode 'ids' is not allowed") as refused,
    ):
        advertiser.match(platform.customers_csv, mode="ids", progress=progress)
    assert isinstance(refused.value.error, PolicyRefused)
    assert hashed == ["read list"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mode": "everything"}, InvalidInput, "unknown mode 'everything'"),
        ({"mode": "count", "out": "m.csv"}, InvalidInput, "only ids mode reveals"),
        ({"mode": "count", "prehashed": ["ssn"]}, ImportFailed, "unknown identifier kind"),
        ({"mode": "count", "columns": {"mail": "x"}}, ImportFailed, "unknown field 'mail'"),
    ],
)
def test_bad_arguments_fail_before_any_session(
    platform: DemoPlatform, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with (
        Advertiser(platform.address, platform.acme_tls) as advertiser,
        pytest.raises(error, match=message),
    ):
        advertiser.match(platform.customers_csv, **kwargs)


def test_out_needs_a_list_file(platform: DemoPlatform) -> None:
    with (
        Advertiser(platform.address, platform.acme_tls) as advertiser,
        pytest.raises(InvalidInput, match="matched_row_positions"),
    ):
        advertiser.match([{"email": "a@example.com"}], mode="ids", out="m.csv")


def test_connection_arguments_are_checked_when_made(platform: DemoPlatform) -> None:
    with pytest.raises(InvalidInput, match="not both"):
        Advertiser(platform.address, platform.acme_tls, insecure=True)
    with pytest.raises(InvalidInput, match="a TLS folder is required"):
        Advertiser(platform.address)
    with pytest.raises(InvalidInput, match="bad server address"):
        Advertiser("localhost", platform.acme_tls)


def test_a_platform_that_is_not_there_is_unreachable(platform: DemoPlatform) -> None:
    with (
        Advertiser("127.0.0.1:9", insecure=True) as advertiser,
        pytest.raises(PlatformUnreachable, match="cannot reach the platform"),
    ):
        advertiser.match(platform.customers_csv, mode="count")


def _readme_library_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Library\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's Library section has no Python example"
    return found.group(1)


def test_the_readme_library_example_runs_as_written(
    platform: DemoPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = _readme_library_example()
    # Only the address changes: the example names the folder and the list as they would be
    # beside it, and so they are here.
    assert '"localhost:7443"' in example
    example = example.replace('"localhost:7443"', repr(platform.address))
    (tmp_path / "customers.csv").write_bytes(platform.customers_csv.read_bytes())
    os.symlink(platform.acme_tls, tmp_path / "acme-tls")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(README), "exec"), {"__name__": "__main__"})
    truth = platform.scenario.truth
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith(f"matched: {truth.count} ")  # the count as reported to people
    assert lines[0].endswith(" customers, epsilon spent 0.0")
    assert lines[1].startswith("{'rows': ")
    assert lines[2].startswith(f"{truth.count} rows matched, e.g. rows (")


class _CountingInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Counts each call's method and the serialized bytes of its messages, each way."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.sent = self.received = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        self.sent += request.ByteSize()
        response = continuation(details, request)
        self.received += response.result().ByteSize()
        return response

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        self.methods.append(details.method)

        def counted(messages: Any, into: str) -> Iterator[Any]:
            for message in messages:
                setattr(self, into, getattr(self, into) + message.ByteSize())
                yield message

        return counted(continuation(details, counted(requests, "sent")), "received")


def test_interceptors_see_every_call_and_message(platform: DemoPlatform) -> None:
    counting = _CountingInterceptor()
    with Advertiser(platform.address, platform.acme_tls, interceptors=[counting]) as advertiser:
        report = advertiser.match(platform.customers_csv, mode="ids")
    assert counting.methods == ["/cleanroom.v1.Matcher/GetPolicy", "/cleanroom.v1.Matcher/Match"]
    size = get_suite(report.suite_id).element_size
    # Up: U (elements and 4-byte tags) and W; down: V and U'. Framing adds a little on top.
    up = report.identifiers_sent * (size + 4) + report.platform_set_size * size
    down = report.platform_set_size * size + report.identifiers_sent * size
    assert up < counting.sent < up * 1.01 + 1_000
    assert down < counting.received < down * 1.01 + 1_000
