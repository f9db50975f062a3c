"""``cleanroom match --report``: the advertiser's HTML report, as a real browser shows it.

A real platform (the CLI's init, import, rotate, issue-cert) serves a noisy policy over mTLS; the
advertiser's real CLI matches a messy semicolon-separated list (no consent, bad values, a column
named like markup, a customer with more identifiers than the platform takes) and writes the
report; Debian's Chromium renders it (``--dump-dom``, and a screenshot kept under
``test-artifacts/``) and the test reads what a person would see. The figures are checked against
the run's own ``--json`` object and the list as written here.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium_run, screenshot, visible_text
from _platform_processes import TIMEOUT, Server, cleanroom_executable, setup_platform

from cleanroom.demo import generate_people

POLICY = """
epsilon_per_release = 1.0
min_upload_records = 100
min_reported_count = 10
"""

HOSTILE_COLUMN = "<img src=x onerror=alert(1)>"
EMAIL_COLUMN = "E-mail <script>alert(2)</script>"


@dataclass
class Run:
    argv: list[str]
    report: dict[str, Any]
    html: Path
    text: str
    dom: str
    invalid_rows: list[int]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("report")
    people = generate_people(700, seed=51)
    db = setup_platform(root, people[:500], ["acme"], POLICY)
    customers = root / "customers.csv"
    invalid_rows = []
    with customers.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["record_id", EMAIL_COLUMN, "phone", "marketing_consent", HOSTILE_COLUMN])
        for i, person in enumerate(people[300:]):
            email = person.email if i % 25 else "not-an-email"
            if not i % 25:
                invalid_rows.append(i + 2)
            writer.writerow([f"r{i}", email, "", "no" if i % 10 == 9 else "yes", "<b>x</b>"])
        # One customer on three records: four identifiers, one more than the platform takes.
        for n in range(3):
            writer.writerow([f"a{n}", "shared@example.com", f"+1415555010{n}", "yes", ""])
    server = Server(db, root / "policy.toml")
    try:
        html = root / "report.html"
        argv = [
            *("cleanroom", "match", "--server", server.address, "--tls-dir", str(root / "acme")),
            *("--input", str(customers), "--mode", "count", "--column", f"email={EMAIL_COLUMN}"),
            *("--report", str(html), "--receipt", str(root / "receipt.json"), "--json"),
        ]
        done = subprocess.run(
            [cleanroom_executable(), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        dom = chromium_run(root, "--dump-dom", html.as_uri())
        yield Run(argv, json.loads(done.stdout), html, visible_text(dom), dom, invalid_rows)
    finally:
        server.stop()


def test_the_browser_shows_the_funnel_rate_and_budget(run: Run) -> None:
    report, text = run.report, run.text
    assert "cleanroom · match report" in text
    count, customers = report["count"], report["customers"]
    assert count is not None and customers == report["sent"] - 2  # a0, a1, a2: one customer
    funnel = [
        ("records read", report["records_read"]),
        ("with marketing consent", report["records_read"] - report["without_consent"]),
        ("with a valid identifier", report["sent"]),
        ("customers sent", customers),
        ("customers matched", count),
    ]
    for label, value in funnel:
        assert f"{label} | {value:,}" in text, label
    assert f"Match rate | {count / customers:.1%} | of the {customers:,} customers sent" in text
    assert report["match_rate"] == round(count / customers, 4)
    assert "1 spent | 7 remaining of 8 this key epoch" in text
    assert "discrete Laplace noise (epsilon 1 per release)" in text
    # Every record sent has an email (the shared one counts on each of its three records).
    assert report["identifiers_by_kind"] == {"email": report["sent"], "phone": 3}
    assert f"email | {report['sent']:,} | phone | 3" in text


def test_rejected_rows_receipt_warning_and_command_are_there(run: Run) -> None:
    report, text = run.report, run.text
    rows = len(run.invalid_rows)
    assert f"invalid_email | invalid email | {rows}" in text
    first = run.invalid_rows[0]
    assert f"row {first}, column {EMAIL_COLUMN}: missing '@'" in text
    receipt = report["receipt"]
    assert f"{receipt['audit_seq']} of the platform's log" in text
    assert "signature verified" in text
    (warning,) = report["warnings"]
    assert f"Warning: {warning}" in text
    assert shlex.join(run.argv) in text
    assert f"columns not read | {HOSTILE_COLUMN}" in text
    assert "semicolon-separated" in text


class _Elements(HTMLParser):
    """Every element of a page, with its attributes' names."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, set[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name for name, _ in attrs}))


def test_text_from_the_file_is_shown_not_run_and_nothing_is_fetched(run: Run) -> None:
    page = run.html.read_text(encoding="utf-8")
    assert "default-src 'none'" in page
    for html in (page, run.dom):  # as written, and as the browser built it
        elements = _Elements()
        elements.feed(html)
        tags = {tag for tag, _ in elements.found}
        # The column names are on the page as text: no element, no reference came of them.
        assert not tags & {"img", "script", "b", "link", "iframe", "object", "embed"}
        assert not any(attrs & {"src", "href", "onerror", "srcset"} for _, attrs in elements.found)
        assert sum(tag == "svg" for tag, _ in elements.found) == 3  # drawn in the page itself
    assert HOSTILE_COLUMN in run.text


def test_a_screenshot_is_kept(run: Run, tmp_path: Path) -> None:
    screenshot(tmp_path, run.html.as_uri(), "match-report.png", size="1400,1900")
