"""The report of one match, for people (text) and for programs (one JSON object)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cleanroom._files import write_atomically
from cleanroom._textfile import DELIMITER_NAMES
from cleanroom.advertiser._problems import REASONS, ListProblem
from cleanroom.errors import ImportFailed
from cleanroom.policy import Mode
from cleanroom.protocol import Receipt

__all__ = ["EXAMPLES_PER_REASON", "MatchReport", "summarize_problems"]

EXAMPLES_PER_REASON: Final = 3
"""How many example rows the report shows per rejection reason."""

_IN_MEMORY: Final = "the rows given"

# Problems that leave a row's consent unknown: the row is neither with nor without it.
_BEFORE_CONSENT: Final = frozenset({"malformed_row", "bad_consent"})


def summarize_problems(
    problems: Sequence[ListProblem], examples_per_reason: int = EXAMPLES_PER_REASON
) -> tuple[dict[str, int], list[ListProblem]]:
    """Count problems by reason and keep the first few of each as examples.

    Args:
        problems: the problems, in file order.
        examples_per_reason: how many examples to keep per reason.

    Returns:
        Reason -> count (reasons sorted), and the examples in file order.
    """
    counts = Counter(problem.reason for problem in problems)
    shown: Counter[str] = Counter()
    examples: list[ListProblem] = []
    for problem in problems:
        if shown[problem.reason] < examples_per_reason:
            shown[problem.reason] += 1
            examples.append(problem)
    return dict(sorted(counts.items())), examples


@dataclass(frozen=True)
class MatchReport:
    """What one match (:meth:`Advertiser.match`, ``cleanroom match``) read, sent and learned.

    Attributes:
        mode: the session's mode.
        server: the platform's address.
        input: the list file; ``None`` for rows given in memory.
        suite_id: the session's ciphersuite.
        epoch_id: the platform's key epoch.
        platform_set_size: N, the platform's eligible identifiers.
        records_read: data rows in the list.
        without_consent: rows dropped for lack of marketing consent.
        rows_rejected: rows not sent for another reason.
        problems: every problem found (see :class:`ListProblem`).
        sent: records sent (each with at least one valid identifier).
        identifiers_sent: distinct identifiers sent (n, the size of U).
        customers: distinct customers sent (records sharing an identifier count once).
        count: the released count, ``None`` when below the reporting threshold.
        reported_as: the count as reported to people.
        noise_applied: whether the count is noised.
        epsilon_spent: privacy loss charged for this session.
        epsilon_remaining: the advertiser's budget left in the key epoch.
        matched_rows: ids mode: rows of the list that matched; else ``None``.
        out: ids mode: the file the matched rows were written to, if any.
        phases: phase name -> seconds, in the order they ran.
        receipt: the platform's signed receipt for the session, if it sent one.
        receipt_verified: whether its signature was checked with the ``audit.pub`` of the
            TLS folder.
        receipt_file: where the receipt was written (``--receipt``), if anywhere.
        matched_row_positions: ids mode: the positions (from 0, among the list's data rows or
            the rows given) of the rows that matched, ascending; else ``None``.
        warnings: what the caller should know though the match succeeded (identifiers not
            sent, ...), one sentence each.
        columns: field -> the column it was read from.
        unused_columns: the list's columns that no field reads (ignored ones included).
        delimiter: the list file's field delimiter.
        epsilon_per_release: what the platform's policy charges a count or audience release
            (``0``: a test deployment, counts are exact); ``None`` if not known.
        epsilon_budget: the advertiser's budget per key epoch, from the platform's policy.
        min_reported_count: counts below it are released as "fewer than" it.
        identifiers_by_kind: valid identifiers read, by kind.
        completed_at: when the match completed (ISO 8601 UTC).
    """

    mode: Mode
    server: str
    input: Path | None
    suite_id: str
    epoch_id: int
    platform_set_size: int
    records_read: int
    without_consent: int
    rows_rejected: int
    problems: Sequence[ListProblem] = field(repr=False)
    sent: int
    identifiers_sent: int
    customers: int
    count: int | None
    reported_as: str
    noise_applied: bool
    epsilon_spent: float
    epsilon_remaining: float
    matched_rows: int | None
    out: Path | None
    phases: Mapping[str, float]
    receipt: Receipt | None = None
    receipt_verified: bool = False
    receipt_file: Path | None = None
    matched_row_positions: tuple[int, ...] | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()
    columns: Mapping[str, str] = field(default_factory=dict)
    unused_columns: tuple[str, ...] = ()
    delimiter: str = ","
    epsilon_per_release: float | None = None
    epsilon_budget: float | None = None
    min_reported_count: int | None = None
    identifiers_by_kind: Mapping[str, int] = field(default_factory=dict)
    completed_at: str | None = None

    @property
    def match_rate(self) -> float | None:
        """The released count per customer sent (0..1); ``None`` when no count was released.

        In count and ids modes the share of customers sent that matched; in audience mode the
        platform users matched per customer sent (which can exceed 1, one customer reaching
        several users). Computed from the count as released, so noised like it.
        """
        if self.count is None or self.customers == 0:
            return None
        return self.count / self.customers

    def funnel(self) -> list[tuple[str, int | None]]:
        """The list's way to the result: (step, records or customers), the last as released.

        Records read, with marketing consent (and readable), with a valid identifier (sent),
        customers sent (records linked by a shared identifier are one), matched (``None``
        when the count is below the reporting threshold).
        """
        unreadable = sum(p.reason in _BEFORE_CONSENT for p in self.problems)
        matched = {
            Mode.COUNT: "customers matched",
            Mode.AUDIENCE: "platform users matched",
            Mode.IDS: "customers matched",
        }[self.mode]
        return [
            ("records read", self.records_read),
            ("with marketing consent", self.records_read - self.without_consent - unreadable),
            ("with a valid identifier", self.sent),
            ("customers sent", self.customers),
            (matched, self.count),
        ]

    def rejection_summary(self) -> tuple[dict[str, int], list[ListProblem]]:
        """Problems by reason, and the first few of each as examples (see summarize_problems)."""
        return summarize_problems(self.problems)

    def to_html(self, command: str | None = None) -> str:
        """The report as one self-contained HTML page (styles and charts inline, no script).

        Args:
            command: the command line that ran the match, shown as it was typed.
        """
        # Imported here: only a report asked for pays for the templates.
        from cleanroom.advertiser._html import render_report

        return render_report(self, command=command)

    def write_html(self, path: str | os.PathLike[str], command: str | None = None) -> Path:
        """Write :meth:`to_html` to ``path`` (whole or not at all); return the path.

        Raises:
            ImportFailed: the file cannot be written.
        """
        target = Path(path)
        write_atomically(target, self.to_html(command).encode("utf-8"), 0o644, ImportFailed)
        return target

    def to_dict(self) -> dict[str, Any]:
        """Return the report as one JSON-ready object: ``cleanroom match --json`` prints it.

        The schema is documented in :mod:`cleanroom.cli.match`; the matched positions are not
        part of it (they can be millions; ids mode writes the rows themselves with ``out``).
        """
        by_reason, examples = summarize_problems(self.problems)
        return {
            "mode": str(self.mode),
            "count": self.count,
            "reported_as": self.reported_as,
            "noise_applied": self.noise_applied,
            "epsilon_spent": self.epsilon_spent,
            "epsilon_remaining": self.epsilon_remaining,
            "records_read": self.records_read,
            "without_consent": self.without_consent,
            "rejected": {
                "rows": self.rows_rejected,
                "by_reason": by_reason,
                "examples": [
                    {"row": p.row, "column": p.column, "reason": p.reason, "detail": p.detail}
                    for p in examples
                ],
            },
            "sent": self.sent,
            "identifiers_sent": self.identifiers_sent,
            "customers": self.customers,
            "matched_rows": self.matched_rows,
            "out": None if self.out is None else str(self.out),
            "server": self.server,
            "input": None if self.input is None else str(self.input),
            "delimiter": self.delimiter,
            "columns": dict(self.columns),
            "unused_columns": list(self.unused_columns),
            "suite": self.suite_id,
            "epoch_id": self.epoch_id,
            "platform_set_size": self.platform_set_size,
            "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()},
            "receipt": None if self.receipt is None else self.receipt.to_dict(),
            "receipt_verified": self.receipt_verified,
            "receipt_file": None if self.receipt_file is None else str(self.receipt_file),
            "warnings": list(self.warnings),
            "match_rate": None if self.match_rate is None else round(self.match_rate, 4),
            "identifiers_by_kind": dict(self.identifiers_by_kind),
            "completed_at": self.completed_at,
        }

    def lines(self) -> list[str]:
        """Return the report as lines of text for a person."""
        by_reason, examples = summarize_problems(self.problems)
        source = _IN_MEMORY if self.input is None else self.input
        out = [
            f"matched {source} against {self.server} in {self.mode} mode "
            f"(suite {self.suite_id}, key epoch {self.epoch_id})",
            f"  records read:        {self.records_read}{self._list_text()}",
            f"  without consent:     {self.without_consent} (dropped before hashing)",
            f"  rejected:            {self.rows_rejected} records not sent",
        ]
        for reason, count in by_reason.items():
            out.append(f"    {reason} ({REASONS.get(reason, reason)}): {count}")
            for example in examples:
                if example.reason == reason:
                    column = f", column {example.column!r}" if example.column else ""
                    out.append(f"      row {example.row}{column}: {example.detail}")
        out += [
            f"  sent:                {self.sent} records ({self.customers} customers, "
            f"{self.identifiers_sent} distinct identifiers)",
            f"  platform set:        {self.platform_set_size} identifiers",
            f"  result:              {self._result_text()}",
            f"  match rate:          {self._rate_text()}",
            f"  epsilon spent:       {self.epsilon_spent:g}{self._epsilon_note()}",
            f"  epsilon remaining:   {self.epsilon_remaining:g}",
        ]
        if self.matched_rows is not None:
            where = f"written to {self.out}" if self.out else "not written to a file"
            out.append(f"  matched rows:        {self.matched_rows}, {where}")
        if self.receipt is not None:
            checked = (
                "signature verified with audit.pub"
                if self.receipt_verified
                else "signature not checked (no audit.pub in the TLS folder)"
            )
            where = f"; written to {self.receipt_file}" if self.receipt_file else ""
            out.append(
                f"  receipt:             audit entry {self.receipt.audit_seq} of the platform's "
                f"log, {checked}{where}"
            )
        out.append(
            "  time:                "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        )
        return out

    @property
    def test_deployment(self) -> bool:
        """Whether the platform's policy releases counts without noise (epsilon 0)."""
        return self.epsilon_per_release == 0

    def _epsilon_note(self) -> str:
        if self.mode is Mode.IDS:
            return " (ids mode: exact, charges no epsilon)"
        if self.test_deployment:
            return " (no noise: test deployment)"
        return ""

    def _list_text(self) -> str:
        notes = []
        if self.delimiter != ",":
            notes.append(f"{DELIMITER_NAMES[self.delimiter]}-separated")
        if self.unused_columns:
            notes.append("columns not read: " + ", ".join(self.unused_columns))
        return f" ({'; '.join(notes)})" if notes else ""

    def _rate_text(self) -> str:
        rate = self.match_rate
        if rate is None:
            return f"not known (the count is {self.reported_as})"
        if self.mode is Mode.AUDIENCE:
            return f"{rate:.2f} platform users per customer sent"
        return f"{rate:.1%} of customers sent"

    def _result_text(self) -> str:
        what = {
            Mode.COUNT: "matched customers",
            Mode.AUDIENCE: "matched platform users",
            Mode.IDS: "matched customers (exact)",
        }[self.mode]
        return f"{what}: {self.reported_as}"
