"""The match report as one HTML page an advertiser can open, keep and forward.

Self-contained: styles and charts (SVG) are inline, there is no script and nothing is fetched
from anywhere, and the page's own policy (``default-src 'none'``) keeps it so in a browser.
Everything that came from the user's file or the platform (column names, paths, reasons, the
platform's text) is escaped by the template engine. The report names rows, never values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cleanroom._textfile import DELIMITER_NAMES
from cleanroom.advertiser._problems import REASONS
from cleanroom.policy import Mode

if TYPE_CHECKING:
    from cleanroom.advertiser._report import MatchReport

__all__ = ["render_report"]

_environment = Environment(
    loader=PackageLoader("cleanroom.advertiser", "templates"),
    autoescape=select_autoescape(("html",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_BAR_WIDTH: Final = 420
"""Length in the SVG's units of a bar at 100 %."""


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


_environment.filters["number"] = _number


@dataclass(frozen=True)
class _Bar:
    label: str
    value: int | None
    length: float
    text: str


@dataclass(frozen=True)
class _Reason:
    code: str
    meaning: str
    count: int
    examples: list[tuple[int, str | None, str]]


def render_report(report: MatchReport, *, command: str | None = None) -> str:
    """The page for ``report``; ``command`` is the command line that ran the match."""
    by_reason, examples = report.rejection_summary()
    reasons = [
        _Reason(
            code,
            REASONS.get(code, code),
            count,
            [(e.row, e.column, e.detail) for e in examples if e.reason == code],
        )
        for code, count in sorted(by_reason.items(), key=lambda item: -item[1])
    ]
    template = _environment.get_template("report.html")
    return template.render(
        report=report,
        source="the rows given" if report.input is None else str(report.input),
        command=command,
        funnel=_funnel(report),
        rate=_rate(report),
        reasons=reasons,
        kinds=_bars(sorted(report.identifiers_by_kind.items(), key=lambda item: -item[1])),
        budget=_budget(report),
        noise=_noise_note(report),
        delimiter=DELIMITER_NAMES.get(report.delimiter, repr(report.delimiter)),
        bar_width=_BAR_WIDTH,
    )


def _bars(items: list[tuple[str, int]]) -> list[_Bar]:
    top = max((value for _, value in items), default=0)
    return [
        _Bar(label, value, _length(value, top), _number(value)) for label, value in items if value
    ]


def _length(value: float, top: float) -> float:
    return 0.0 if top <= 0 else round(_BAR_WIDTH * min(1.0, value / top), 1)


def _funnel(report: MatchReport) -> list[_Bar]:
    steps = report.funnel()
    top = steps[0][1] or 0
    bars = []
    for label, value in steps:
        if value is None:
            # Below the reporting threshold: drawn as the threshold, said as released.
            shown = report.min_reported_count or 0
            bars.append(_Bar(label, None, _length(shown, top), report.reported_as))
        else:
            bars.append(_Bar(label, value, _length(value, top), _number(value)))
    return bars


def _rate(report: MatchReport) -> tuple[str, str]:
    """The match rate as a big figure and what it is a rate of."""
    rate = report.match_rate
    if rate is None:
        return "—", f"the count is {report.reported_as}: no rate can be given"
    if report.mode is Mode.AUDIENCE:
        return f"{rate:.2f}", "platform users matched per customer sent"
    return f"{rate:.1%}", f"of the {report.customers:,} customers sent"


def _budget(report: MatchReport) -> list[tuple[str, str, float, float, float]] | None:
    """The budget bar's parts: (CSS class, name, epsilon, start, length), or ``None``."""
    budget = report.epsilon_budget
    if budget is None or budget <= 0:
        return None
    this = report.epsilon_spent
    remaining = report.epsilon_remaining
    before = max(0.0, budget - remaining - this)
    parts, start = [], 0.0
    for css, name, value in (
        ("before", "spent before", before),
        ("this", "this match", this),
        ("remaining", "remaining", remaining),
    ):
        length = _length(value, budget)
        parts.append((css, name, value, start, length))
        start += length
    return parts


def _noise_note(report: MatchReport) -> str:
    if report.mode is Mode.IDS:
        return (
            "ids mode: the platform tells which records matched, exactly; it charges no "
            "epsilon, and it is allowed only by an explicit grant to this advertiser."
        )
    if report.test_deployment:
        return (
            "No noise: the platform's policy has epsilon 0 (a test deployment), so the count "
            "is exact. A production platform adds noise to every count."
        )
    threshold = report.min_reported_count
    below = f" and a count below {threshold:,} is released as such" if threshold else ""
    per = report.epsilon_per_release
    epsilon = f"epsilon {per:g} per release" if per is not None else "its epsilon"
    return (
        f"The count is shown as the platform released it: with discrete Laplace noise "
        f"({epsilon}){below}, so that no single customer's presence can be told from it. "
        "The match rate is computed from that count."
    )
