"""The match report: summary by reason, the JSON object, the text for people."""

from __future__ import annotations

import json
from pathlib import Path

from cleanroom.advertiser import MatchReport, summarize_problems
from cleanroom.advertiser._problems import ListProblem
from cleanroom.policy import Mode


def _problems() -> list[ListProblem]:
    return [ListProblem(2 + i, "email", "invalid_email", "missing '@'") for i in range(5)] + [
        ListProblem(40, None, "no_identifier", "every identifier column is empty")
    ]


def _report(**changes: object) -> MatchReport:
    values: dict[str, object] = {
        "mode": Mode.COUNT,
        "server": "localhost:50051",
        "input": Path("customers.csv"),
        "suite_id": "x25519-sha512-ell2-ro",
        "epoch_id": 3,
        "platform_set_size": 5000,
        "records_read": 1000,
        "without_consent": 100,
        "rows_rejected": 1,
        "problems": _problems(),
        "sent": 899,
        "identifiers_sent": 1700,
        "customers": 890,
        "count": None,
        "reported_as": "fewer than 100",
        "noise_applied": True,
        "epsilon_spent": 0.5,
        "epsilon_remaining": 7.5,
        "matched_rows": None,
        "out": None,
        "phases": {"read_list": 0.01234, "match": 1.5},
    }
    values.update(changes)
    return MatchReport(**values)  # type: ignore[arg-type]


def test_summary_counts_every_problem_and_keeps_a_few_examples() -> None:
    by_reason, examples = summarize_problems(_problems(), examples_per_reason=2)
    assert by_reason == {"invalid_email": 5, "no_identifier": 1}
    assert [(e.row, e.reason) for e in examples] == [
        (2, "invalid_email"),
        (3, "invalid_email"),
        (40, "no_identifier"),
    ]


def test_json_object_has_the_documented_fields() -> None:
    data = json.loads(json.dumps(_report().to_dict()))
    assert data["mode"] == "count"
    assert data["count"] is None
    assert data["reported_as"] == "fewer than 100"
    assert (data["epsilon_spent"], data["epsilon_remaining"]) == (0.5, 7.5)
    assert data["records_read"] == 1000 and data["without_consent"] == 100
    assert data["sent"] == 899
    assert data["rejected"]["rows"] == 1
    assert data["rejected"]["by_reason"] == {"invalid_email": 5, "no_identifier": 1}
    assert len(data["rejected"]["examples"]) == 4  # 3 emails + 1
    assert data["rejected"]["examples"][0] == {
        "row": 2,
        "column": "email",
        "reason": "invalid_email",
        "detail": "missing '@'",
    }
    assert data["phases"] == {"read_list": 0.012, "match": 1.5}
    assert data["matched_rows"] is None and data["out"] is None


def test_text_report_for_a_count_below_the_threshold() -> None:
    text = "\n".join(_report().lines())
    assert "records read:        1000" in text
    assert "without consent:     100 (dropped before hashing)" in text
    assert "invalid_email (invalid email): 5" in text
    assert "row 2, column 'email': missing '@'" in text
    assert "row 5, column" not in text  # only three examples per reason
    assert "row 40: every identifier column is empty" in text
    assert "result:              matched customers: fewer than 100" in text
    assert "epsilon spent:       0.5\n" in text
    assert "epsilon remaining:   7.5" in text
    assert "read_list 0.01 s, match 1.50 s" in text


def test_text_report_in_ids_mode_says_where_the_rows_went() -> None:
    report = _report(
        mode=Mode.IDS,
        count=120,
        reported_as="120 (exact: ids mode)",
        noise_applied=False,
        epsilon_spent=0.0,
        matched_rows=121,
        out=Path("matched.csv"),
    )
    text = "\n".join(report.lines())
    assert "matched customers (exact): 120 (exact: ids mode)" in text
    assert "matched rows:        121, written to matched.csv" in text
    # Exact because of the mode, not because the platform is a test deployment.
    assert "epsilon spent:       0 (ids mode: exact, charges no epsilon)" in text
    assert "test deployment" not in text
    assert report.to_dict()["out"] == "matched.csv"


def test_only_a_policy_without_noise_is_called_a_test_deployment() -> None:
    exact = _report(noise_applied=False, epsilon_spent=0.0, epsilon_per_release=0.0)
    assert "  epsilon spent:       0 (no noise: test deployment)" in exact.lines()
    for noisy in (_report(epsilon_per_release=0.5), _report()):
        assert not any("test deployment" in line for line in noisy.lines())


def test_the_match_rate_is_of_the_count_as_released() -> None:
    below = _report()
    assert below.match_rate is None
    assert "  match rate:          not known (the count is fewer than 100)" in below.lines()
    counted = _report(count=445, reported_as="445")
    assert counted.match_rate == 445 / 890
    assert "  match rate:          50.0% of customers sent" in counted.lines()
    audience = _report(mode=Mode.AUDIENCE, count=1335, reported_as="1335")
    assert "  match rate:          1.50 platform users per customer sent" in audience.lines()
    assert counted.to_dict()["match_rate"] == 0.5 and below.to_dict()["match_rate"] is None


def test_the_funnel_goes_from_the_records_read_to_the_count() -> None:
    problems = [*_problems(), ListProblem(7, "marketing_consent", "bad_consent", "expected yes/no")]
    assert _report(problems=problems, count=445).funnel() == [
        ("records read", 1000),
        ("with marketing consent", 899),  # 100 without, 1 unreadable
        ("with a valid identifier", 899),
        ("customers sent", 890),
        ("customers matched", 445),
    ]
    assert _report().funnel()[-1] == ("customers matched", None)


def test_the_html_page_escapes_what_came_from_the_file_and_fetches_nothing(
    tmp_path: Path,
) -> None:
    report = _report(
        count=445,
        reported_as="445",
        unused_columns=("<script>alert(1)</script>",),
        columns={"email": "e<mail>"},
        min_reported_count=100,
        epsilon_budget=8.0,
        epsilon_per_release=0.5,
    )
    path = report.write_html(tmp_path / "report.html", command="cleanroom match --input 'a b.csv'")
    page = path.read_text(encoding="utf-8")
    assert page == report.to_html("cleanroom match --input 'a b.csv'")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "e&lt;mail&gt;" in page
    assert "cleanroom match --input &#39;a b.csv&#39;" in page
    assert "50.0%" in page and "epsilon 0.5 per release" in page
    assert "http://" not in page and "https://" not in page
