"""The privacy officer's dashboard, /metrics and /healthz of a real `platform serve --http`.

A real platform (the CLI's init, import, rotate, issue-cert), a real server process, real
sessions by the advertisers' real CLI, a consent revoked by the CLI while the server runs; then
the page as Debian's Chromium renders it (``--dump-dom``, and a screenshot kept under
``test-artifacts/``), the metrics as ``prometheus_client``'s own parser reads them, and the
access rules (loopback, bearer token, client certificates) over real sockets.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from _browser import chromium_run, has_chromium, screenshot, visible_text
from _match_stream import run_role
from _platform_processes import (
    TIMEOUT,
    Server,
    build_platform,
    cli_ok,
    run_match,
    wait_until,
    write_customer_list,
)
from prometheus_client.parser import text_string_to_metric_families

from cleanroom import tls
from cleanroom.advertiser import PlatformClient, parse_server_address
from cleanroom.cli import main
from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.demo import Person, generate_people
from cleanroom.errors import InvalidInput, LimitExceeded, PlatformRefused, TlsConfigError
from cleanroom.identifiers import hash_message, identifier_digest
from cleanroom.policy import Mode, load_policy
from cleanroom.protocol import AdvertiserRole
from cleanroom.service.dashboard import DashboardOptions
from cleanroom.service.server import PlatformServer, ServerOptions
from cleanroom.service.session_memory import default_session_memory
from cleanroom.store.database import open_database
from cleanroom.store.history import EligibilitySample, eligibility_samples

# acme's customers are people[:400] by email; every ninth person's email has no consent.
ACME_AUDIENCE = sum(1 for i in range(400) if i % 9)

POLICY = """
epsilon_per_release = 1.0
min_upload_records = 100
min_reported_count = 10

[advertisers.acme]
epsilon_budget = 4.0

[advertisers.thrifty]
epsilon_budget = 1.0
"""


@dataclass
class Platform:
    root: Path
    db: Path
    people: list[Person]
    server: Server
    url: str
    eligible: int  # identifiers eligible after the revocation
    excluded: dict[str, int]
    revoked_user: str


def _write_users(path: Path, people: list[Person]) -> tuple[int, dict[str, int]]:
    """Emails (some without consent) and phones (some from two-factor login); the truth."""
    rows = ["user_id,type,value,source,ads_matching_consent"]
    eligible, excluded = 0, {"no_consent": 0, "source_not_permitted": 0}
    for i, person in enumerate(people):
        consent = i % 9 != 0
        rows.append(f"{person.user_id},email,{person.email},signup,{str(consent).lower()}")
        eligible += consent
        excluded["no_consent"] += not consent
        source = "two_factor" if i % 4 == 0 else "profile"
        rows.append(f"{person.user_id},phone,{person.phone},{source},true")
        eligible += source == "profile"
        excluded["source_not_permitted"] += source == "two_factor"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return eligible, excluded


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("dashboard")
    people = generate_people(900, seed=31)
    eligible, excluded = _write_users(root / "users.csv", people)
    (root / "policy.toml").write_text(POLICY, encoding="utf-8")
    db = build_platform(root, root / "users.csv", ("acme", "beta", "thrifty"))
    server = Server(
        db, root / "policy.toml", "--workers", "1", "--http", "127.0.0.1:0", "--log-level", "debug"
    )
    try:
        assert server.process.stdout is not None
        line = server.process.stdout.readline()
        assert line.startswith("dashboard on http://127.0.0.1:"), (line, server.log())
        url = line.removeprefix("dashboard on ").strip()

        customers = root / "customers.csv"
        write_customer_list(customers, people[:400] + generate_people(200, seed=32), seed=5)
        run_match(server.address, root / "acme", customers, "count")
        run_match(server.address, root / "acme", customers, "audience")
        run_match(server.address, root / "beta", customers, "count")
        run_match(server.address, root / "thrifty", customers, "count")
        # The CLI checks the budget before it opens a session; a client that does not is refused
        # by the server, and the ledger records it.
        _over_budget(server.address, root / "thrifty", people[:200])
        # More GetPolicy calls at once than beta's burst: refused at admission, not in the
        # ledger (no session was asked for), counted by the running server.
        _policy_burst(server.address, root / "beta", 14)

        # A change by another process while the server runs: it must show without a restart.
        revoked = people[1]  # consented email, profile phone: two identifiers
        cli_ok("platform", "consent", "revoke", "--db", db, "--user", revoked.user_id)
        excluded["revoked"] = 2
        yield Platform(root, db, people, server, url, eligible - 2, excluded, revoked.user_id)
    finally:
        if server.process.poll() is None:
            server.stop()


def _over_budget(address: str, tls_dir: Path, people: list[Person]) -> None:
    messages = [hash_message("email", identifier_digest("email", p.email)) for p in people]
    role = AdvertiserRole(
        get_suite("x25519-sha512-ell2-ro"),
        Mode.COUNT,
        messages,
        range(len(people)),
        engine=BatchEngine(workers=1),
    )
    role.encrypt_list()
    port = address.rsplit(":", 1)[1]
    credentials = tls.channel_credentials(tls_dir)
    with (
        grpc.secure_channel(f"localhost:{port}", credentials) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        run_role(channel, role, TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _policy_burst(address: str, tls_dir: Path, calls: int) -> None:
    refused = 0
    with PlatformClient(parse_server_address(address), tls_dir=tls_dir) as client:
        for _ in range(calls):
            try:
                client.get_policy()
            except PlatformRefused as exc:
                assert isinstance(exc.error, LimitExceeded)
                refused += 1
    assert refused >= 1


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, text = _get(url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _metrics_now(platform: Platform) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics once the revocation made by the CLI shows (the figures are cached ~2 s)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def revoked_shows() -> bool:
        found.clear()
        found.update(_metrics(platform.url))
        return found[("cleanroom_identifiers_eligible", ())] == platform.eligible

    wait_until(revoked_shows, "the revocation shows in /metrics", timeout=30)
    return found


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_count_the_sessions_budgets_and_identifiers(platform: Platform) -> None:
    m = _metrics_now(platform)

    def value(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in m, sorted(k for k in m if k[0] == name)
        return m[key]

    assert (
        value("cleanroom_sessions_total", advertiser="acme", mode="count", outcome="completed") == 1
    )
    assert (
        value("cleanroom_sessions_total", advertiser="acme", mode="audience", outcome="completed")
        == 1
    )
    assert (
        value("cleanroom_sessions_total", advertiser="thrifty", mode="count", outcome="refused")
        == 1
    )
    assert (
        value("cleanroom_session_refusals_total", advertiser="thrifty", reason="BudgetExhausted")
        == 1
    )
    assert value("cleanroom_epsilon_spent", advertiser="acme", epoch="1") == 2.0
    assert value("cleanroom_epsilon_remaining", advertiser="acme", epoch="1") == 2.0
    assert value("cleanroom_epsilon_remaining", advertiser="thrifty", epoch="1") == 0.0
    assert value("cleanroom_epsilon_budget", advertiser="beta") == 8.0
    assert value("cleanroom_session_duration_seconds_count", mode="count") == 3
    assert value("cleanroom_session_duration_seconds_bucket", mode="count", le="+Inf") == 3
    # 600 records of one email each, in three completed count sessions.
    assert value("cleanroom_session_identifiers_total", mode="count") == 1800
    assert value("cleanroom_session_records_total", mode="count") == 1800
    assert value("cleanroom_epoch_id") == 1
    assert value("cleanroom_epoch_size") == platform.eligible + 2
    assert 0 <= value("cleanroom_epoch_age_seconds") < 3600
    assert value("cleanroom_identifiers_eligible") == platform.eligible
    for reason, count in platform.excluded.items():
        assert value("cleanroom_identifiers_excluded", reason=reason) == count
    assert value("cleanroom_audiences", advertiser="acme") == 1
    # Members eligible now: the people acme's emails reach, less the one who was revoked.
    assert value("cleanroom_audience_members", advertiser="acme") == ACME_AUDIENCE - 1
    # The audit log as `platform audit verify` checks it: chain, signatures, ledger.
    assert value("cleanroom_audit_chain_verified") == 1
    assert value("cleanroom_audit_last_entry_seq") >= 10
    entries = value("cleanroom_audit_entries_verified")
    assert entries == value("cleanroom_audit_last_entry_seq")
    assert value("cleanroom_audit_sessions_verified") == 5  # 4 completed, 1 refused
    signed = value("cleanroom_audit_last_signed_timestamp_seconds")
    assert signed == value("cleanroom_audit_last_entry_timestamp_seconds")
    assert abs(signed - time.time()) < 3600
    refused = value(
        "cleanroom_admission_refusals_total", advertiser="beta", reason="policy_calls_per_minute"
    )
    assert refused >= 1
    assert value("cleanroom_sessions_active") == 0
    assert value("cleanroom_session_memory_held_bytes") == 0  # no session runs now
    assert value("cleanroom_session_memory_budget_bytes") == default_session_memory()


def test_metrics_survive_a_restart_and_serve_a_second_process(platform: Platform) -> None:
    before = _metrics_now(platform)
    # Another server process on the same database: its figures are the same, from the ledger.
    with _server_with(platform, DashboardOptions("127.0.0.1:0")) as server:
        assert server.dashboard is not None
        after = _metrics(server.dashboard.url)
    kept = ("cleanroom_sessions_total", "cleanroom_epsilon", "cleanroom_identifiers")
    compared = [key for key in before if key[0].startswith(kept)]
    assert len(compared) >= 10
    for key in compared:
        assert after[key] == before[key], key


# -- the page in a browser ------------------------------------------------------------------------


def test_the_browser_shows_what_the_privacy_officer_needs(
    platform: Platform, tmp_path: Path
) -> None:
    _metrics_now(platform)  # the revocation shows by now
    dom = chromium_run(tmp_path, "--dump-dom", platform.url)
    text = visible_text(dom)
    assert "cleanroom · platform privacy dashboard" in text
    assert "Epoch 1" in text
    assert f"{platform.eligible:,}" in text
    assert f"of {platform.eligible + sum(platform.excluded.values()):,} identifiers" in text
    for advertiser in ("acme", "beta", "thrifty"):
        assert advertiser in text
    assert "Verified" in text
    assert "entries: hash chain, signatures and session ledger | last signed at 20" in text
    assert "finished sessions agreeing with the ledger; last signed at" in text
    assert "Calls refused at admission, before any work | policy_calls_per_minute" in text
    assert f"acme | {ACME_AUDIENCE - 1}" in text  # audience members eligible now
    assert "2 of 4" in text  # acme: ε spent of its budget
    assert "4 completed · 1 refused · 0 aborted · 0 open" in text
    assert "BudgetExhausted" in text
    assert "consent.revoke" in text
    for reason in platform.excluded:
        assert reason in text
    # Charts are inline SVG in the page itself: the eligibility history and the bars.
    assert dom.count("<svg") >= 4 and 'aria-label="Eligible identifiers over time"' in dom

    screenshot(tmp_path, platform.url, "dashboard.png")


def test_no_page_or_metric_shows_an_identifier_or_a_user_id(
    platform: Platform, tmp_path: Path
) -> None:
    _status, _headers, page = _get(platform.url)
    _status, _headers, metrics = _get(platform.url + "metrics")
    _status, _headers, health = _get(platform.url + "healthz")
    shown = [page, metrics, health]
    if has_chromium():
        shown.append(chromium_run(tmp_path, "--dump-dom", platform.url))
    secrets = {platform.revoked_user}
    for person in platform.people:
        secrets |= {person.user_id, person.email, person.phone, person.phone.lstrip("+")}
    for text in shown:
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], leaked[:5]


# -- health, methods, access -----------------------------------------------------------------------


def test_healthz_says_serving_with_the_epoch(platform: Platform) -> None:
    status, headers, body = _get(platform.url + "healthz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "serving", "epoch": 1, "active_sessions": 0}


def test_the_endpoint_is_read_only_and_refuses_other_hosts(platform: Platform) -> None:
    host, port = platform.url.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    connection.request("POST", "/", body=b"x")
    reply = connection.getresponse()
    assert (reply.status, reply.getheader("Allow")) == (405, "GET, HEAD")
    reply.read()
    # A page elsewhere reaching us through DNS rebinding names its own host.
    connection.request("GET", "/", headers={"Host": "attacker.example"})
    reply = connection.getresponse()
    assert reply.status == 421
    reply.read()
    connection.request("GET", "/nothing-here")
    assert connection.getresponse().status == 404
    connection.close()
    _status, headers, _body = _get(platform.url)
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_another_address_than_loopback_needs_a_token_or_client_certificates(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("platform", "serve", "--db", str(platform.db), "--listen", "127.0.0.1:0"),
            *("--http", "0.0.0.0:0"),
        ]
    )
    assert code == 2
    assert "--http-token" in capsys.readouterr().err
    code = main(
        [
            *("platform", "serve", "--db", str(platform.db), "--listen", "127.0.0.1:0"),
            *("--http-token", str(platform.root / "policy.toml")),
        ]
    )
    assert code == 2
    assert "only with --http" in capsys.readouterr().err


def _server_with(platform: Platform, dashboard: DashboardOptions) -> PlatformServer:
    options = ServerOptions(
        db_path=platform.db,
        listen="127.0.0.1:0",
        policy=load_policy(platform.root / "policy.toml"),
        tls_dir=platform.root / "tls",
        engine=BatchEngine(workers=1),
        dashboard=dashboard,
    )
    return PlatformServer(options)


def test_a_bearer_token_opens_the_endpoint_and_nothing_else_does(
    platform: Platform, tmp_path: Path
) -> None:
    token = "s3cret-token-for-the-dashboard"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o644)
    with pytest.raises(TlsConfigError, match="readable by others"):
        _server_with(platform, DashboardOptions("0.0.0.0:0", token_file=token_file))
    token_file.chmod(0o600)
    with _server_with(platform, DashboardOptions("0.0.0.0:0", token_file=token_file)) as server:
        assert server.dashboard is not None
        url = f"http://127.0.0.1:{server.dashboard.port}/"
        for path in ("", "metrics", "healthz"):
            status, headers, _ = _get(url + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert _get(url + path, Authorization="Bearer wrong-token-of-some-length")[0] == 401
            assert _get(url + path, Authorization=f"Bearer {token}")[0] == 200


def test_client_certificates_from_the_operators_ca_open_the_endpoint(
    platform: Platform, tmp_path: Path
) -> None:
    # The operators' own CA (not the advertisers'), and one operator's certificate from it.
    operators = tls.create_platform_tls(tmp_path / "operators-ca")
    tls.issue_advertiser_certificate(operators.directory, "officer", tmp_path / "officer")
    with pytest.raises(TlsConfigError, match="advertisers"):
        _server_with(
            platform, DashboardOptions("0.0.0.0:0", client_ca=platform.root / "tls" / "ca.crt")
        )
    with pytest.raises(InvalidInput, match="--http-token"):
        _server_with(platform, DashboardOptions("0.0.0.0:0"))

    dashboard = DashboardOptions("0.0.0.0:0", client_ca=operators.ca_cert)
    with _server_with(platform, dashboard) as server:
        assert server.dashboard is not None and server.dashboard.url.startswith("https://")
        url = f"https://localhost:{server.dashboard.port}/metrics"

        def fetch(client: Path | None) -> int:
            context = ssl.create_default_context(cafile=str(platform.root / "tls" / "ca.crt"))
            if client is not None:
                context.load_cert_chain(str(client / "client.crt"), str(client / "client.key"))
            with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as reply:
                return int(reply.status)

        assert fetch(tmp_path / "officer") == 200
        # An advertiser's certificate is from the platform's CA: refused in the handshake.
        for client in (platform.root / "acme", None):
            with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError, OSError)):
                fetch(client)


def test_the_history_records_a_sample_when_the_counts_change(platform: Platform) -> None:
    def samples() -> list[EligibilitySample]:
        with open_database(platform.db) as db:
            return eligibility_samples(db, since=int(time.time()) - 3600, points=3600)

    _metrics_now(platform)
    # The running server sampled at its start, before the revocation; a server started now
    # samples at once and sees that the counts changed.
    with _server_with(platform, DashboardOptions("127.0.0.1:0")):
        wait_until(lambda: samples()[-1].eligible == platform.eligible, "a new sample")
    history = samples()
    assert history[0].eligible == platform.eligible + 2
    assert history[0].excluded["revoked"] == 0
    assert history[-1].excluded == {
        "deleted": 0,
        "source_unknown": 0,
        "opted_out": 0,
        **platform.excluded,
    }
