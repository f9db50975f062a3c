"""The dashboard page: a snapshot rendered by the Jinja2 templates shipped with the package.

Server-rendered HTML with its styles and charts inline (SVG): no script, no web font, no file
fetched from anywhere, so the page works offline and under a ``default-src 'none'`` policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cleanroom.service.dashboard import charts
from cleanroom.service.dashboard.snapshot import OperatorSnapshot

__all__ = ["REFRESH_SECONDS", "render_dashboard"]

REFRESH_SECONDS: Final = 30
"""The page reloads itself this often (a meta refresh: no script)."""

_OUTCOMES: Final = ("completed", "refused", "aborted", "open")

_environment = Environment(
    loader=PackageLoader("cleanroom.service.dashboard", "templates"),
    autoescape=select_autoescape(("html",)),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


_environment.filters.update(number=_number, when=_when, duration=_duration)


def render_dashboard(
    snapshot: OperatorSnapshot,
    *,
    now: float,
    admission: Mapping[tuple[str, str], int] | None = None,
) -> str:
    """The dashboard page for ``snapshot``, as one HTML document.

    Args:
        snapshot: the figures read from the database.
        now: the time shown as the page's.
        admission: calls the running server refused at admission, by (advertiser, reason).
    """
    admitted_refusals: dict[str, int] = {}
    for (_advertiser, reason), count in (admission or {}).items():
        admitted_refusals[reason] = admitted_refusals.get(reason, 0) + count
    status = snapshot.status
    # The latest sample is extended to the snapshot's own reading: the chart ends at "now".
    history = [(float(s.at), s.eligible) for s in snapshot.history]
    history.append((snapshot.taken_at, status.eligible_identifiers))
    ledger = snapshot.ledger
    outcome_totals = {state: 0 for state in _OUTCOMES}
    for (_advertiser, _mode, state), count in ledger.sessions.items():
        outcome_totals[state] = outcome_totals.get(state, 0) + count
    refusals: dict[str, int] = {}
    for (_advertiser, reason), count in ledger.refusals.items():
        refusals[reason] = refusals.get(reason, 0) + count
    template = _environment.get_template("dashboard.html")
    return template.render(
        snapshot=snapshot,
        now=now,
        refresh_seconds=REFRESH_SECONDS,
        status=status,
        epoch=status.epoch,
        eligibility_chart=charts.line_chart(history),
        exclusion_bars=charts.bars(sorted(status.excluded.items(), key=lambda item: -item[1])),
        session_bars=charts.stacked_bars(
            [(view.name, view.sessions) for view in snapshot.advertisers], _OUTCOMES
        ),
        budget_bars=[
            charts.Bar(
                view.name,
                view.epsilon_spent,
                0.0
                if view.epsilon_budget <= 0
                else min(1.0, view.epsilon_spent / view.epsilon_budget),
                note=f" of {_number(view.epsilon_budget)}",
            )
            for view in snapshot.advertisers
        ],
        refusal_bars=charts.bars(sorted(refusals.items(), key=lambda item: -item[1])),
        admission_bars=charts.bars(sorted(admitted_refusals.items(), key=lambda item: -item[1])),
        admission_rows=sorted((admission or {}).items()),
        outcome_totals=outcome_totals,
        outcomes=_OUTCOMES,
        chart_width=charts.WIDTH,
    )
