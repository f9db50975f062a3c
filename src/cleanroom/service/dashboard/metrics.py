"""Prometheus metrics of the platform, computed from the database at each scrape.

The figures are those of the dashboard (:class:`~cleanroom.service.dashboard.snapshot.
SnapshotSource`), so counters keep counting across restarts (they are sums over the ledger, not
in-process tallies) and changes made by other processes show. Labels are advertisers' names,
modes, states, error classes, epochs and exclusion reasons: bounded sets, never an identifier
or a user id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cleanroom.service.admission import REFUSAL_REASONS
from cleanroom.service.dashboard.snapshot import SnapshotSource
from cleanroom.service.session_memory import SessionMemory
from cleanroom.store.sessions import SESSION_STATES

__all__ = ["AdmissionRefusals", "build_registry"]

_PREFIX = "cleanroom"


AdmissionRefusals = Callable[[], Mapping[tuple[str, str], int]]
"""Calls refused at admission by (advertiser, reason), since the server started."""


class _PlatformCollector(Collector):
    def __init__(
        self,
        source: SnapshotSource,
        active_sessions: Callable[[], int],
        admission_refusals: AdmissionRefusals,
        session_memory: SessionMemory | None,
    ) -> None:
        self._source = source
        self._active_sessions = active_sessions
        self._admission_refusals = admission_refusals
        self._session_memory = session_memory

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source.get()
        ledger, status = snapshot.ledger, snapshot.status

        sessions = CounterMetricFamily(
            f"{_PREFIX}_sessions",
            "Match sessions that ended, by advertiser, mode and outcome "
            "(completed, refused, aborted).",
            labels=["advertiser", "mode", "outcome"],
        )
        open_now = GaugeMetricFamily(
            f"{_PREFIX}_sessions_open",
            "Sessions open now, by advertiser (from the ledger, any process).",
            labels=["advertiser"],
        )
        open_by_advertiser: dict[str, int] = {}
        for (advertiser, mode, state), count in sorted(ledger.sessions.items()):
            if state == "open":
                open_by_advertiser[advertiser] = open_by_advertiser.get(advertiser, 0) + count
            elif state in SESSION_STATES:
                sessions.add_metric([advertiser, mode, state], count)
        for advertiser, count in sorted(open_by_advertiser.items()):
            open_now.add_metric([advertiser], count)
        yield sessions
        yield open_now
        active = GaugeMetricFamily(
            f"{_PREFIX}_sessions_active",
            "Sessions this server process is running now.",
            value=self._active_sessions(),
        )
        yield active
        if self._session_memory is not None:
            yield GaugeMetricFamily(
                f"{_PREFIX}_session_memory_held_bytes",
                "Memory the sessions this process runs hold for their sets.",
                value=self._session_memory.held,
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_session_memory_budget_bytes",
                "Memory the sessions' sets may take at once (serve --session-memory); a "
                "session that would not fit is refused.",
                value=self._session_memory.budget,
            )

        refusals = CounterMetricFamily(
            f"{_PREFIX}_session_refusals",
            "Refused sessions by advertiser and reason (the error class).",
            labels=["advertiser", "reason"],
        )
        for (advertiser, reason), count in sorted(ledger.refusals.items()):
            refusals.add_metric([advertiser, reason], count)
        yield refusals
        admission = CounterMetricFamily(
            f"{_PREFIX}_admission_refusals",
            "Calls refused at admission, before any work, since this server started, by "
            "advertiser and limit (" + ", ".join(REFUSAL_REASONS) + ").",
            labels=["advertiser", "reason"],
        )
        for (advertiser, reason), count in self._admission_refusals().items():
            admission.add_metric([advertiser, reason], count)
        yield admission

        durations = HistogramMetricFamily(
            f"{_PREFIX}_session_duration_seconds",
            "Durations of completed sessions, by mode (whole seconds, from the ledger).",
            labels=["mode"],
        )
        for mode, histogram in sorted(ledger.durations.items()):
            buckets = [(f"{bound:g}", count) for bound, count in histogram.buckets]
            buckets.append(("+Inf", histogram.count))
            durations.add_metric([mode], buckets, histogram.total_seconds)
        yield durations

        identifiers = CounterMetricFamily(
            f"{_PREFIX}_session_identifiers",
            "Elements of advertisers' sets the platform encrypted in completed sessions, by mode.",
            labels=["mode"],
        )
        records = CounterMetricFamily(
            f"{_PREFIX}_session_records",
            "Records advertisers announced in completed sessions, by mode.",
            labels=["mode"],
        )
        for mode in sorted(ledger.identifiers):
            identifiers.add_metric([mode], ledger.identifiers[mode])
            records.add_metric([mode], ledger.records[mode])
        yield identifiers
        yield records

        spent = GaugeMetricFamily(
            f"{_PREFIX}_epsilon_spent",
            "Privacy loss (ε) charged, by advertiser and key epoch.",
            labels=["advertiser", "epoch"],
        )
        for advertiser, activity in ledger.advertisers.items():
            for epoch_id, total in sorted(activity.spent_by_epoch.items()):
                spent.add_metric([advertiser, str(epoch_id)], total)
        yield spent
        if status.epoch is not None:
            epoch_label = str(status.epoch.epoch_id)
            remaining = GaugeMetricFamily(
                f"{_PREFIX}_epsilon_remaining",
                "Privacy budget (ε) left in the current key epoch, by advertiser.",
                labels=["advertiser", "epoch"],
            )
            budget = GaugeMetricFamily(
                f"{_PREFIX}_epsilon_budget",
                "Privacy budget (ε) per key epoch, by advertiser (from the policy).",
                labels=["advertiser"],
            )
            for view in snapshot.advertisers:
                remaining.add_metric([view.name, epoch_label], view.epsilon_remaining)
                budget.add_metric([view.name], view.epsilon_budget)
            yield remaining
            yield budget

            epoch = status.epoch
            yield GaugeMetricFamily(
                f"{_PREFIX}_epoch_id", "The current key epoch's number.", value=epoch.epoch_id
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_epoch_created_timestamp_seconds",
                "When the current key epoch was made (its age is time() minus this).",
                value=epoch.created_at,
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_epoch_age_seconds",
                "Seconds since the current key epoch was made.",
                value=max(0.0, snapshot.taken_at - epoch.created_at),
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_epoch_size",
                "Elements in the current epoch's precomputed set V.",
                value=epoch.size,
            )

        yield GaugeMetricFamily(f"{_PREFIX}_users", "Users not deleted.", value=status.users)
        yield GaugeMetricFamily(
            f"{_PREFIX}_identifiers_eligible",
            "Identifiers that would take part in a match now.",
            value=status.eligible_identifiers,
        )
        excluded = GaugeMetricFamily(
            f"{_PREFIX}_identifiers_excluded",
            "Identifiers not eligible now, by the first reason that applies.",
            labels=["reason"],
        )
        for reason, count in status.excluded.items():
            excluded.add_metric([reason], count)
        yield excluded

        audiences = GaugeMetricFamily(
            f"{_PREFIX}_audiences",
            "Stored audiences, by advertiser.",
            labels=["advertiser"],
        )
        members = GaugeMetricFamily(
            f"{_PREFIX}_audience_members",
            "Members of stored audiences added up, by advertiser.",
            labels=["advertiser"],
        )
        for view in snapshot.advertisers:
            audiences.add_metric([view.name], view.audiences)
            members.add_metric([view.name], view.audience_members)
        yield audiences
        yield members

        chain = snapshot.audit
        yield GaugeMetricFamily(
            f"{_PREFIX}_audit_chain_verified",
            "1 if the audit log verified at the last read (hash chain, every signature by the "
            "audit key, and the session ledger against the signed entries: platform audit "
            "verify), else 0.",
            value=int(chain.verified),
        )
        if chain.verified:
            yield GaugeMetricFamily(
                f"{_PREFIX}_audit_entries_verified",
                "Audit entries whose chain and signatures verified at the last read.",
                value=chain.entries or 0,
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_audit_sessions_verified",
                "Finished sessions whose ledger rows agreed with their signed entries.",
                value=chain.sessions_checked or 0,
            )
        if chain.last_signed_at:
            yield GaugeMetricFamily(
                f"{_PREFIX}_audit_last_signed_timestamp_seconds",
                "When the newest signed audit entry was written (of a log that verified).",
                value=_iso_seconds(chain.last_signed_at),
            )
        yield GaugeMetricFamily(
            f"{_PREFIX}_audit_verified_timestamp_seconds",
            "When the audit chain was last verified.",
            value=snapshot.taken_at,
        )
        if chain.last:
            newest = chain.last[0]
            yield GaugeMetricFamily(
                f"{_PREFIX}_audit_last_entry_seq",
                "Sequence number of the newest audit entry.",
                value=newest.seq,
            )
            yield GaugeMetricFamily(
                f"{_PREFIX}_audit_last_entry_timestamp_seconds",
                "When the newest audit entry was appended.",
                value=_iso_seconds(newest.at),
            )


def _iso_seconds(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def build_registry(
    source: SnapshotSource,
    active_sessions: Callable[[], int],
    admission_refusals: AdmissionRefusals = dict,
    session_memory: SessionMemory | None = None,
) -> CollectorRegistry:
    """A registry with the platform's metrics and the process's own (CPU, memory, files).

    Args:
        source: where the figures come from.
        active_sessions: how many sessions this process runs now.
        admission_refusals: calls this process refused at admission (in memory: a restart
            starts them at 0, as Prometheus expects of a counter).
        session_memory: what this process's sessions hold of their memory budget.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        _PlatformCollector(source, active_sessions, admission_refusals, session_memory)
    )
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
