"""``cleanroom match`` end to end: the real CLI against a real gRPC server over mTLS on port 0.

The server here is a test-only servicer (about a screen) around the real
:class:`~cleanroom.protocol.PlatformRole`, the real policy checks and the real status table; it
stands in for the platform service so the advertiser's side is tested over the network on its
own. Results are compared with the plaintext truth computed from the synthetic people, never
with what the code under test computes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pytest

from cleanroom import tls
from cleanroom._output import spreadsheet_cell
from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._proto.v1 import matcher_pb2_grpc as pb_grpc
from cleanroom.advertiser import Advertiser
from cleanroom.cli import main
from cleanroom.crypto import DEFAULT_SUITE_ID, default_engine, get_suite
from cleanroom.demo import Person, generate_people, messy_email, messy_phone
from cleanroom.errors import (
    CleanroomError,
    InvalidElement,
    InvalidInput,
    PlatformFailed,
    PlatformRefused,
    PolicyRefused,
    StoreError,
)
from cleanroom.identifiers import normalize_batch
from cleanroom.policy import Policy, check_session, policy_from_mapping
from cleanroom.protocol import (
    ERROR_NAME_KEY,
    PlatformInputs,
    PlatformRole,
    policy_info,
    read_open_session,
    status_for,
)

PLATFORM_PEOPLE = 300
ADVERTISER_PEOPLE = 200
OVERLAP = 120
EPOCH_ID = 7


# --- a test-only platform servicer ---------------------------------------------------------


@dataclass
class Platform(pb_grpc.MatcherServicer):  # type: ignore[misc, unused-ignore]
    policy: Policy
    inputs: PlatformInputs
    spent: dict[str, float] = field(default_factory=dict)
    sessions: list[Any] = field(default_factory=list)
    another_session_open: bool = False
    corrupt_v: bool = False
    stall_seconds: float = 0.0
    fail_with: CleanroomError | None = None

    def GetPolicy(self, request: pb.PolicyRequest, context: Any) -> pb.PolicyInfo:
        try:
            advertiser = tls.advertiser_from_auth_context(context)
        except CleanroomError as exc:
            _abort(context, exc)
        return policy_info(
            self.policy.for_advertiser(advertiser),
            epoch_id=EPOCH_ID,
            platform_set_size=len(self.inputs.platform_set),
            spent_epsilon=self.spent.get(advertiser, 0.0),
            sessions_today=0,
        )

    def Match(self, requests: Iterator[pb.ClientMessage], context: Any) -> Any:
        try:
            advertiser = tls.advertiser_from_auth_context(context)
            request = read_open_session(next(requests))
            decision = check_session(
                self.policy,
                advertiser,
                request.mode,
                request.record_count,
                self.spent.get(advertiser, 0.0),
                0,
                self.another_session_open,
            )
            if self.fail_with is not None:
                raise self.fail_with
            role = PlatformRole(request, decision, self.inputs)
            time.sleep(self.stall_seconds)
            for opening in role.start():
                if self.corrupt_v and opening.HasField("platform_set"):
                    # All-zero u is of small order on X25519: the client must refuse it.
                    size = len(opening.platform_set.elements) // opening.platform_set.count
                    opening.platform_set.elements = (
                        bytes(size) + opening.platform_set.elements[size:]
                    )
                yield opening
            for message in requests:
                replies = role.handle(message)
                if role.outcome is not None and role.outcome not in self.sessions:
                    # Persisted (charged) before the result goes out.
                    self.sessions.append(role.outcome)
                    charged = role.outcome.release.epsilon_charged
                    self.spent[advertiser] = self.spent.get(advertiser, 0.0) + charged
                yield from replies
                if role.finished:
                    return
        except CleanroomError as exc:
            _abort(context, exc)


def _abort(context: Any, exc: CleanroomError) -> Any:
    context.set_trailing_metadata(((ERROR_NAME_KEY, type(exc).__name__),))
    context.abort(status_for(exc), str(exc))


# --- the world: people, both sides' data, certificates, the server ----------------------------


@dataclass
class World:
    root: Path
    port: int
    platform: Platform
    acme_tls: Path
    other_tls: Path
    advertiser_csv: Path
    truth_rows: list[int]  # data-row positions of the consenting advertiser rows that match
    records_read: int
    without_consent: int
    rejected_rows: int
    invalid_emails: int
    sent: int


def _platform_inputs(people: list[Person]) -> PlatformInputs:
    suite = get_suite(DEFAULT_SUITE_ID)
    key = suite.generate_key()
    emails = normalize_batch("email", [p.email for p in people]).messages()
    phones = normalize_batch("phone", [p.phone for p in people]).messages()
    v = default_engine().hash_and_encrypt(suite, key, emails + phones, suite.dst)
    users = np.concatenate([np.arange(len(people)), np.arange(len(people))]).astype(np.int64)
    order = np.random.default_rng(1).permutation(len(v))  # test data only, not a secret
    return PlatformInputs(EPOCH_ID, key, v[order], users[order])


def _advertiser_rows(
    people: list[Person], platform_emails: set[str]
) -> tuple[list[list[str]], Any]:
    """Messy rows with known consent, blanks and bad values; and the plaintext truth."""
    rng = random.Random(5)
    rows: list[list[str]] = []
    truth: list[int] = []
    counts = {"without_consent": 0, "rejected_rows": 0, "invalid_emails": 0}
    for i, person in enumerate(people):
        email, phone, consent = (
            messy_email(person.email, rng),
            messy_phone(person.phone, rng),
            "yes",
        )
        matches = person.email in platform_emails
        if i % 10 == 0:
            consent = rng.choice(("no", "", "FALSE"))
            counts["without_consent"] += 1
            matches = False
        elif i % 10 == 1:
            email = ""  # phone only: still matches through the phone
        elif i % 10 == 2:
            email = "not-an-email"  # one bad value: the record still goes by phone
            counts["invalid_emails"] += 1
        elif i % 17 == 3:
            email = phone = ""  # nothing to send
            counts["rejected_rows"] += 1
            matches = False
        if matches:
            truth.append(i)
        rows.append([f"c{i:05d}", email, phone, "", consent])
    return rows, (truth, counts)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("match")
    people = generate_people(PLATFORM_PEOPLE + ADVERTISER_PEOPLE - OVERLAP, seed=11)
    platform_people = people[:PLATFORM_PEOPLE]
    advertiser_people = people[PLATFORM_PEOPLE - OVERLAP :]
    rows, (truth, counts) = _advertiser_rows(advertiser_people, {p.email for p in platform_people})
    advertiser_csv = root / "customers.csv"
    with advertiser_csv.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["record_id", "email", "phone", "maid", "marketing_consent"])
        writer.writerows(rows)

    policy = policy_from_mapping(
        {
            "min_upload_records": 10,
            "min_reported_count": 5,
            "epsilon_per_release": 0.0,
            "advertisers": {"acme": {"modes_allowed": ["count", "audience", "ids"]}},
        }
    )
    platform = Platform(policy, _platform_inputs(platform_people))
    platform_tls = tls.create_platform_tls(root / "tls").directory
    acme_tls = tls.issue_advertiser_certificate(platform_tls, "acme", root / "acme")
    other_tls = tls.issue_advertiser_certificate(platform_tls, "other", root / "other")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_MatcherServicer_to_server(platform, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("localhost:0", tls.server_credentials(platform_tls))
    server.start()
    try:
        yield World(
            root=root,
            port=port,
            platform=platform,
            acme_tls=acme_tls,
            other_tls=other_tls,
            advertiser_csv=advertiser_csv,
            truth_rows=truth,
            records_read=len(rows),
            sent=len(rows) - counts["without_consent"] - counts["rejected_rows"],
            **counts,
        )
    finally:
        server.stop(grace=None)


def _match(
    capsys: pytest.CaptureFixture[str], world: World, *argv: str | Path, tls_dir: Path | None = None
) -> tuple[int, str, str]:
    code = main(
        [
            "match",
            "--server",
            f"localhost:{world.port}",
            "--tls-dir",
            str(tls_dir or world.acme_tls),
            *map(str, argv),
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


# --- sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["count", "audience"])
def test_count_and_audience_equal_the_plaintext_truth(
    capsys: pytest.CaptureFixture[str], world: World, mode: str
) -> None:
    code, out, err = _match(
        capsys, world, "--input", world.advertiser_csv, "--mode", mode, "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    # One person is one platform user and one advertiser record: both counts are the overlap.
    assert report["mode"] == mode
    assert report["count"] == len(world.truth_rows)
    assert report["reported_as"].startswith(str(len(world.truth_rows)))
    assert report["epsilon_spent"] == 0.0
    assert report["epsilon_remaining"] == 8.0
    assert report["noise_applied"] is False
    assert report["records_read"] == world.records_read
    assert report["without_consent"] == world.without_consent
    assert report["sent"] == world.sent
    assert report["rejected"]["rows"] == world.rejected_rows
    assert report["rejected"]["by_reason"] == {
        "invalid_email": world.invalid_emails,
        "no_identifier": world.rejected_rows,
    }
    assert (
        report["records_read"]
        == report["without_consent"] + report["rejected"]["rows"] + report["sent"]
    )
    assert report["platform_set_size"] == 2 * PLATFORM_PEOPLE
    assert set(report["phases"]) >= {"read_list", "get_policy", "normalize", "match"}
    outcome = world.platform.sessions[-1]
    assert outcome.release.count == len(world.truth_rows)
    if mode == "audience":
        assert outcome.matched_user_ids is not None
        assert len(outcome.matched_user_ids) == len(world.truth_rows)


def test_ids_mode_writes_the_matched_rows_unmodified_in_input_order(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    out_path = world.root / "matched.csv"
    code, out, err = _match(
        capsys, world, "--input", world.advertiser_csv, "--mode", "ids", "--out", out_path, "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["count"] == report["matched_rows"] == len(world.truth_rows)
    assert report["epsilon_spent"] == 0.0
    with world.advertiser_csv.open(encoding="utf-8", newline="") as f:
        original = list(csv.reader(f))
    with out_path.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f))
    assert written[0] == original[0]
    # As in the list, but that a cell starting a formula (a phone's "+") gets a leading "'".
    expected = [original[1 + i] for i in world.truth_rows]
    assert written[1:] == [[spreadsheet_cell(cell) for cell in row] for row in expected]


def test_human_report_shows_counts_reasons_and_examples(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "count")
    assert code == 0, err
    assert f"records read:        {world.records_read}" in out
    assert f"without consent:     {world.without_consent}" in out
    assert f"invalid_email (invalid email): {world.invalid_emails}" in out
    assert "column 'email': missing '@'" in out
    assert f"result:              matched customers: {len(world.truth_rows)}" in out
    customers = world.sent  # one record per person: every record sent is a customer
    assert f"match rate:          {len(world.truth_rows) / customers:.1%} of customers sent" in out
    assert "epsilon spent:       0 (no noise: test deployment)" in out
    assert "not-an-email" not in out  # the report names rows, never values


def test_mapped_columns_and_prehashed_emails_match_the_same_customers(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # The same list with other column names and emails as SHA-256 of the normalized value.
    with world.advertiser_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    hashed = world.root / "hashed.csv"
    with hashed.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Customer", "EmailSHA256", "Tel", "OptIn"])
        for record_id, email, phone, _, consent in rows:
            batch = normalize_batch("email", [email])
            digest = hashlib.sha256(batch.values[0].encode()).hexdigest() if batch.values else email
            writer.writerow([record_id, digest, phone, consent])
    code, out, err = _match(
        capsys,
        world,
        "--input",
        hashed,
        "--mode",
        "count",
        "--json",
        "--column",
        "record_id=Customer",
        "--column",
        "email=EmailSHA256",
        "--column",
        "phone=Tel",
        "--column",
        "marketing_consent=OptIn",
        "--prehashed",
        "email",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["count"] == len(world.truth_rows)
    assert report["rejected"]["by_reason"]["invalid_email"] == world.invalid_emails


def test_a_misnamed_email_column_stops_the_match_before_any_session(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # The same list, its email column called e_mail: once it matched on phones alone, silently.
    lines = world.advertiser_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    renamed = world.root / "e_mail.csv"
    renamed.write_text(
        "record_id,e_mail,phone,maid,marketing_consent\n" + "".join(lines[1:]), encoding="utf-8"
    )
    sessions = len(world.platform.sessions)
    code, out, err = _match(capsys, world, "--input", renamed, "--mode", "count")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "column 'e_mail' looks like email identifiers" in err
    assert "--column email=e_mail" in err and "--ignore-column e_mail" in err
    assert len(world.platform.sessions) == sessions
    # Read as suggested, it matches as the original list does.
    code, out, err = _match(
        capsys, world, "--input", renamed, "--mode", "count", "--column", "email=e_mail", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["count"] == len(world.truth_rows)


def test_a_list_of_which_nothing_can_be_sent_is_refused_before_any_session(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    nothing = world.root / "nothing.csv"
    nothing.write_text(
        "record_id,email,marketing_consent\nr1,a@example.com,no\nr2,not-an-email,yes\nr3,,yes\n",
        encoding="utf-8",
    )
    sessions = len(world.platform.sessions)
    code, out, err = _match(capsys, world, "--input", nothing, "--mode", "count")
    assert (code, out) == (2, "")
    assert err == (
        f"error: none of the 3 records of {nothing} can be sent: 1 without marketing consent, "
        "1 no identifier given, 1 no valid identifier\n"
    )
    assert len(world.platform.sessions) == sessions


def test_identifiers_withheld_are_a_warning_in_the_json_report(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    # Two records share an email: one customer with four identifiers, one more than allowed.
    linked = world.root / "linked.csv"
    rows = ["record_id,email,phone,maid,marketing_consent"]
    rows += [f"r{i},p{i}@example.com,,,yes" for i in range(10)]
    rows += [
        "a1,shared@example.com,+14155550101,6d92078a-8246-4ba4-ae5b-76104861e7dc,yes",
        "a2,shared@example.com,+14155550102,,yes",
    ]
    linked.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = _match(capsys, world, "--input", linked, "--mode", "count", "--json")
    assert code == 0, err
    (warning,) = json.loads(out)["warnings"]
    assert warning.startswith("1 identifiers not sent: the platform takes at most 3 per customer")
    assert err == f"warning: {warning}\n"


def test_a_semicolon_list_with_unused_columns_matches_as_the_comma_list(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    with world.advertiser_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    semicolons = world.root / "semicolons.csv"
    with semicolons.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow([*rows[0], "name"])
        writer.writerows([*row, "Smith"] for row in rows[1:])
    code, out, err = _match(capsys, world, "--input", semicolons, "--mode", "count", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["count"] == len(world.truth_rows)
    assert (report["delimiter"], report["unused_columns"]) == (";", ["name"])
    assert report["sent"] == world.sent
    code, out, err = _match(capsys, world, "--input", semicolons, "--mode", "count")
    assert (
        f"records read:        {world.records_read} (semicolon-separated; columns not read: name)"
        in out
    )


# --- refusals and failures -------------------------------------------------------------------


def test_mode_the_policy_does_not_allow_is_refused_before_hashing(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    out_path = world.root / "never-written.csv"
    argv = ("--input", world.advertiser_csv, "--mode", "ids", "--out", out_path)
    code, out, err = _match(capsys, world, *argv, tls_dir=world.other_tls)
    assert code == 1
    assert not out_path.exists()
    assert out == ""
    assert "mode 'ids' is not allowed" in err


def test_session_refused_by_the_server_exits_1_with_its_message(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    world.platform.another_session_open = True
    try:
        code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "count")
    finally:
        world.platform.another_session_open = False
    assert code == 1
    assert out == ""
    assert "error: the platform refused: " in err
    assert "already has a session open" in err


def test_platform_failure_exits_1_saying_it_failed(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    world.platform.fail_with = StoreError("the database is locked")
    try:
        code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "count")
    finally:
        world.platform.fail_with = None
    assert code == 1
    assert out == ""
    assert "error: the platform failed: the database is locked" in err


def test_with_json_every_error_is_a_json_object_on_stdout_with_the_same_exit_code(
    capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path
) -> None:
    def error(code: int, out: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(out)["error"]
        assert found["exit_code"] == code
        return found

    # The platform refuses: its own error is the cause.
    world.platform.another_session_open = True
    try:
        argv = ("--input", world.advertiser_csv, "--mode", "count", "--json")
        code, out, err = _match(capsys, world, *argv)
    finally:
        world.platform.another_session_open = False
    assert code == 1 and err.startswith("error: the platform refused")
    refused = error(1, out)
    assert (refused["code"], refused["cause"]["code"]) == ("PlatformRefused", "PolicyRefused")
    assert refused["message"] == err.removeprefix("error: ").rstrip("\n")
    # A list that cannot be used, and a usage error of the command line itself.
    code, out, err = _match(
        capsys, world, "--input", tmp_path / "nope.csv", "--mode", "count", "--json"
    )
    assert code == 2 and error(2, out)["code"] == "ImportFailed"
    with pytest.raises(SystemExit) as usage:
        main(["match", "--server", _NOWHERE, "--json"])
    out, err = capsys.readouterr()
    assert usage.value.code == 2 and "the following arguments are required" in err
    assert error(2, out) == {
        "code": "UsageError",
        "message": "cleanroom match: the following arguments are required: --input, --mode",
        "exit_code": 2,
    }
    # Any command with --json: the platform's side too.
    code = main(["platform", "status", "--db", str(tmp_path / "none.db"), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and error(1, out)["code"] == "StoreError", err


def test_a_tls_failure_is_one_line_without_grpc_log_lines(world: World, tmp_path: Path) -> None:
    foreign = tls.create_platform_tls(tmp_path / "foreign").directory
    folder = tls.issue_advertiser_certificate(foreign, "acme", tmp_path / "foreign-acme")
    argv = [
        *(_cleanroom(), "match", "--server", f"localhost:{world.port}"),
        *("--tls-dir", str(folder), "--input", str(world.advertiser_csv), "--mode", "count"),
    ]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert quiet.returncode == 1
    assert quiet.stderr.startswith("error: cannot reach the platform at localhost:")
    assert quiet.stderr.count("\n") == 1, quiet.stderr
    # gRPC's own lines are there to be had, for whoever asks.
    verbose = subprocess.run(
        [*argv, "--verbose"], capture_output=True, text=True, timeout=60, check=False
    )
    assert verbose.returncode == 1
    assert "ssl_transport_security" in verbose.stderr.splitlines()[0]


def test_invalid_platform_data_cancels_the_session_and_exits_1(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    world.platform.corrupt_v = True
    sessions = len(world.platform.sessions)
    try:
        code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "count")
    finally:
        world.platform.corrupt_v = False
    assert code == 1
    assert out == ""
    assert "error: the platform sent invalid data: element at row 0: platform set V" in err
    assert len(world.platform.sessions) == sessions  # nothing was released


def test_the_library_raises_what_the_platform_refused_or_failed_as_its_error(
    world: World,
) -> None:
    # The same three cases through cleanroom.advertiser.Advertiser: a caller tells them apart
    # by class, and reads the platform's own error from .error, never from __cause__.
    with Advertiser(f"localhost:{world.port}", world.acme_tls) as advertiser:
        world.platform.another_session_open = True
        try:
            with pytest.raises(PlatformRefused, match="already has a session open") as refused:
                advertiser.match(world.advertiser_csv, mode="count")
        finally:
            world.platform.another_session_open = False
        assert type(refused.value.error) is PolicyRefused
        world.platform.fail_with = StoreError("the database is locked")
        try:
            with pytest.raises(PlatformFailed, match="the platform failed: the database") as failed:
                advertiser.match(world.advertiser_csv, mode="count")
        finally:
            world.platform.fail_with = None
        assert type(failed.value.error) is StoreError
        world.platform.corrupt_v = True
        try:
            with pytest.raises(PlatformFailed, match="the platform sent invalid data") as invalid:
                advertiser.match(world.advertiser_csv, mode="count")
        finally:
            world.platform.corrupt_v = False
        assert isinstance(invalid.value.error, InvalidElement)
        assert not isinstance(invalid.value, InvalidInput)  # not the caller's bad input
        report = advertiser.match(world.advertiser_csv, mode="count")  # the channel still works
    assert report.count == len(world.truth_rows)


def test_session_past_its_deadline_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    world.platform.stall_seconds = 1.5
    try:
        code, out, err = _match(
            capsys, world, "--input", world.advertiser_csv, "--mode", "count", "--timeout", "0.3"
        )
    finally:
        world.platform.stall_seconds = 0.0
    assert code == 1
    assert out == ""
    assert f"the platform at localhost:{world.port} did not answer within 0.3 s" in err
    assert "a large list may need a longer --timeout" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_platform_not_listening_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    port = _free_port()
    code = main(
        [
            "match",
            "--server",
            f"127.0.0.1:{port}",
            "--insecure",
            "--input",
            str(world.advertiser_csv),
            "--mode",
            "count",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert f"cannot reach the platform at 127.0.0.1:{port}" in err


def test_plaintext_client_against_the_tls_server_cannot_connect(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    code = main(
        [
            "match",
            "--server",
            f"localhost:{world.port}",
            "--insecure",
            "--input",
            str(world.advertiser_csv),
            "--mode",
            "count",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert f"cannot reach the platform at localhost:{world.port}" in err


# --- bad input: exit 2, before any network -----------------------------------------------------

# Port 9 on loopback has no listener here; every case below must fail before connecting.
_NOWHERE = "127.0.0.1:9"


def _bad(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    code = main(["match", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    return err


def _list(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "list.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


GOOD = "record_id,email,marketing_consent\n1,a@example.com,yes\n"


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _bad(
        capsys,
        "--server",
        _NOWHERE,
        "--insecure",
        "--input",
        tmp_path / "nope.csv",
        "--mode",
        "count",
    )
    assert "does not exist" in err and "nope.csv" in err


def test_not_utf8(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _list(tmp_path, GOOD.encode() + b"2,caf\xe9@example.com,yes\n")
    err = _bad(capsys, "--server", _NOWHERE, "--insecure", "--input", path, "--mode", "count")
    assert "is not UTF-8 text: invalid byte at line 3" in err


def test_no_consent_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _list(tmp_path, "record_id,email\n1,a@example.com\n")
    err = _bad(capsys, "--server", _NOWHERE, "--insecure", "--input", path, "--mode", "count")
    assert "no marketing consent column 'marketing_consent'" in err


def test_missing_mapped_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _list(tmp_path, GOOD)
    err = _bad(
        capsys,
        "--server",
        _NOWHERE,
        "--insecure",
        "--input",
        path,
        "--mode",
        "count",
        "--column",
        "phone=Tel",
    )
    assert "no column 'Tel' (mapped for 'phone')" in err


def test_unknown_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "match",
                "--server",
                _NOWHERE,
                "--insecure",
                "--input",
                str(_list(tmp_path, GOOD)),
                "--mode",
                "everything",
            ]
        )
    assert exited.value.code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("localhost", "expected HOST:PORT"),
        ("localhost:http", "port must be a number"),
        ("localhost:70000", "port must be a number"),
        ("::1:50051", "put an IPv6 address in brackets"),
    ],
)
def test_bad_server_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, server: str, expected: str
) -> None:
    err = _bad(
        capsys,
        "--server",
        server,
        "--insecure",
        "--input",
        _list(tmp_path, GOOD),
        "--mode",
        "count",
    )
    assert f"bad server address {server!r}" in err and expected in err


def test_insecure_to_a_remote_address(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _bad(
        capsys,
        "--server",
        "platform.example.com:50051",
        "--insecure",
        "--input",
        _list(tmp_path, GOOD),
        "--mode",
        "count",
    )
    assert "--insecure (plaintext) is allowed only to a loopback address" in err


def test_neither_tls_nor_insecure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _bad(capsys, "--server", _NOWHERE, "--input", _list(tmp_path, GOOD), "--mode", "count")
    assert "a TLS folder is required (--tls-dir" in err


def test_out_outside_ids_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _bad(
        capsys,
        "--server",
        _NOWHERE,
        "--insecure",
        "--input",
        _list(tmp_path, GOOD),
        "--mode",
        "count",
        "--out",
        tmp_path / "m.csv",
    )
    assert "only ids mode reveals" in err


def test_ids_mode_without_out_is_refused_before_the_session_opens(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    sessions = len(world.platform.sessions)
    code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "ids")
    assert (code, out) == (2, "")
    assert (
        err
        == "error: ids mode reveals which of your rows matched: give --out FILE.csv to write them\n"
    )
    assert len(world.platform.sessions) == sessions


def test_ids_mode_under_a_noisy_policy_is_exact_but_no_test_deployment(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    exact = world.platform.policy
    world.platform.policy = policy_from_mapping(
        {
            "min_upload_records": 10,
            "advertisers": {"acme": {"modes_allowed": ["count", "ids"]}},
        }
    )
    try:
        out_path = world.root / "matched-noisy.csv"
        argv = ("--input", world.advertiser_csv, "--out", out_path)
        code, out, err = _match(capsys, world, *argv, "--mode", "ids")
        assert code == 0, err
        assert "epsilon spent:       0 (ids mode: exact, charges no epsilon)" in out
        code, out, err = _match(capsys, world, "--input", world.advertiser_csv, "--mode", "count")
        assert code == 0, err
        assert "epsilon spent:       0.5\n" in out
        assert "test deployment" not in out
    finally:
        world.platform.policy = exact


def test_out_in_a_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _bad(
        capsys,
        "--server",
        _NOWHERE,
        "--insecure",
        "--input",
        _list(tmp_path, GOOD),
        "--mode",
        "ids",
        "--out",
        tmp_path / "no" / "m.csv",
    )
    assert "does not exist" in err


# --- the real CLI on both sides ----------------------------------------------------------------

POLICY_TOML = """\
min_upload_records = 10
min_reported_count = 5
epsilon_per_release = 0.0

[advertisers.acme]
modes_allowed = ["count", "audience", "ids"]
"""


def _cleanroom() -> str:
    script = Path(sys.executable).with_name("cleanroom")
    return str(script) if script.exists() else shutil.which("cleanroom") or "cleanroom"


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_cleanroom(), *map(str, argv)], capture_output=True, text=True, timeout=120, check=False
    )


def _wait_for_listening(server: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """Return HOST:PORT from the server's ``listening on HOST:PORT`` line."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = server.stdout.readline()
            if not line:
                break  # the server exited
            if line.startswith("listening on "):
                return line.removeprefix("listening on ").strip()
    server.kill()
    _, err = server.communicate(timeout=10)
    raise AssertionError(f"the server did not start: {err}")


@dataclass
class RealPlatform:
    address: str
    acme_tls: Path
    advertiser_csv: Path
    truth_rows: list[int]
    root: Path


@pytest.fixture(scope="module")
def real_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealPlatform]:
    root = tmp_path_factory.mktemp("real")
    people = generate_people(PLATFORM_PEOPLE + ADVERTISER_PEOPLE - OVERLAP, seed=23)
    platform_people = people[:PLATFORM_PEOPLE]
    advertiser_people = people[PLATFORM_PEOPLE - OVERLAP :]
    # Every third platform phone was collected for two-factor login: never matchable (DESIGN §6).
    matchable_phones = {p.phone for i, p in enumerate(platform_people) if i % 3}
    platform_emails = {p.email for p in platform_people}
    platform_csv = root / "platform.csv"
    with platform_csv.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user_id", "type", "value", "source", "ads_matching_consent"])
        for i, p in enumerate(platform_people):
            writer.writerow([p.user_id, "email", p.email, "signup", "true"])
            writer.writerow(
                [p.user_id, "phone", p.phone, "profile" if i % 3 else "two_factor", "true"]
            )
    rng = random.Random(29)
    truth: list[int] = []
    advertiser_csv = root / "customers.csv"
    with advertiser_csv.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Customer ID", "E-mail", "Mobile", "Marketing OK"])
        for i, p in enumerate(advertiser_people):
            consent = "no" if i % 7 == 0 else "yes"
            email = "" if i % 4 == 0 else messy_email(p.email, rng)  # some records: phone only
            writer.writerow([f"c{i}", email, messy_phone(p.phone, rng), consent])
            if consent == "yes" and (
                (email and p.email in platform_emails) or p.phone in matchable_phones
            ):
                truth.append(i)
    db = root / "platform.db"
    policy = root / "policy.toml"
    policy.write_text(POLICY_TOML, encoding="utf-8")
    for argv in (
        ("platform", "init", "--db", db),
        ("platform", "import", "--db", db, platform_csv),
        ("platform", "epoch", "rotate", "--db", db, "--workers", "1"),
        ("platform", "issue-cert", "--db", db, "--advertiser", "acme", "--out", root / "acme"),
    ):
        done = _run(*argv)
        assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [
            _cleanroom(),
            "platform",
            "serve",
            "--db",
            str(db),
            "--listen",
            "127.0.0.1:0",
            "--policy",
            str(policy),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = _wait_for_listening(server)
        yield RealPlatform(address, root / "acme", advertiser_csv, truth, root)
    finally:
        server.terminate()
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _real_match(platform: RealPlatform, mode: str, *extra: str | Path) -> dict[str, Any]:
    done = _run(
        "match",
        "--server",
        platform.address,
        "--tls-dir",
        platform.acme_tls,
        "--input",
        platform.advertiser_csv,
        "--mode",
        mode,
        "--json",
        "--column",
        "record_id=Customer ID",
        "--column",
        "email=E-mail",
        "--column",
        "phone=Mobile",
        "--column",
        "marketing_consent=Marketing OK",
        *extra,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("mode", ["count", "audience"])
def test_real_cli_both_sides_count_and_audience(real_platform: RealPlatform, mode: str) -> None:
    report = _real_match(real_platform, mode)
    assert report["mode"] == mode
    assert report["count"] == len(real_platform.truth_rows)
    assert report["epsilon_spent"] == 0.0
    assert report["without_consent"] == sum(1 for i in range(ADVERTISER_PEOPLE) if i % 7 == 0)


def test_real_cli_both_sides_ids(real_platform: RealPlatform) -> None:
    out = real_platform.root / "matched.csv"
    report = _real_match(real_platform, "ids", "--out", out)
    assert report["count"] == report["matched_rows"] == len(real_platform.truth_rows)
    with real_platform.advertiser_csv.open(encoding="utf-8", newline="") as f:
        original = list(csv.reader(f))
    with out.open(encoding="utf-8", newline="") as f:
        written = list(csv.reader(f))
    # As in the list, but that a cell starting a formula (a phone's "+") gets a leading "'".
    expected = [original[1 + i] for i in real_platform.truth_rows]
    assert written == [original[0], *([spreadsheet_cell(c) for c in row] for row in expected)]


def test_real_cli_refusal_exits_1_with_the_platform_message(real_platform: RealPlatform) -> None:
    other = real_platform.root / "other"
    db = real_platform.root / "platform.db"
    issued = _run("platform", "issue-cert", "--db", db, "--advertiser", "other", "--out", other)
    assert issued.returncode == 0, issued.stderr
    done = _run(
        "match",
        "--server",
        real_platform.address,
        "--tls-dir",
        other,
        "--input",
        real_platform.advertiser_csv,
        "--mode",
        "ids",
        "--out",
        real_platform.root / "never-written.csv",
        "--column",
        "email=E-mail",
        "--column",
        "phone=Mobile",
        "--column",
        "marketing_consent=Marketing OK",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "mode 'ids' is not allowed" in done.stderr
