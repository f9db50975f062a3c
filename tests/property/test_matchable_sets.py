"""The matchable set a session is handed is always what computing it afresh gives.

A Hypothesis state machine interleaves every way eligibility changes — revocation, grant,
opt-out and its withdrawal, deletion, a source denied or permitted, a bulk consent file, the
clock passing expiries and consent start times, a refresh that appends newly eligible
identifiers — with writes that leave it alone (a session's audit entries), each made through a
connection of its own, as another process would. After every step, the set a long-lived
:class:`~cleanroom.store.matchable_cache.MatchableCache` hands out equals
:func:`~cleanroom.store.epochs.matchable_epoch` computed afresh.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cleanroom.crypto import BatchEngine
from cleanroom.errors import UnknownUser
from cleanroom.store import audit, consent, epochs, sources, users
from cleanroom.store.database import Database, init_database, open_database, transaction
from cleanroom.store.epochs import matchable_epoch
from cleanroom.store.fields import format_timestamp
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.matchable_cache import MatchableCache

START = 1_900_000_000
USERS = [f"u{i}" for i in range(8)]
ENGINE = BatchEngine(workers=1)  # in this process: the machine builds many small epochs


class MatchableSets(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        self.now = START
        self.cache = MatchableCache()

    def _open(self) -> Database:
        return open_database(self.root / "platform.db", clock=lambda: self.now)

    @contextmanager
    def _other(self) -> Iterator[Database]:
        """Another connection, as another process's; a change to a deleted user is refused."""
        with self._open() as other, suppress(UnknownUser):
            yield other

    @initialize(
        times=st.lists(
            st.tuples(st.integers(-50, 400), st.integers(-50, 400)), min_size=8, max_size=8
        ),
        shared=st.booleans(),
    )
    def build(self, times: list[tuple[int, int]], shared: bool) -> None:
        db, _ = init_database(self.root / "platform.db", clock=lambda: self.now)
        db.close()
        rows = ["user_id,type,value,source,ads_matching_consent,consent_at,expires_at"]
        for user, (starts, ends) in zip(USERS, times, strict=True):
            start = format_timestamp(START + starts) if starts > 0 else ""
            end = format_timestamp(START + ends) if ends > 0 else ""
            rows.append(f"{user},email,{user}@example.com,signup,true,{start},{end}")
            rows.append(f"{user},phone,+1415555{int(user[1:]):04d},crm,true,,{end}")
        if shared:
            rows.append("u0,email,shared@example.com,signup,true,,")
            rows.append("u1,email,shared@example.com,signup,true,,")
        (self.root / "users.csv").write_text("\n".join(rows) + "\n")
        with self._open() as db:
            import_platform_csv(db, self.root / "users.csv")
            epochs.rotate(db, engine=ENGINE)
        self.db = self._open()  # the long-lived connection the sessions read through

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()
        self._tmp.cleanup()

    @rule(user=st.sampled_from(USERS), kind=st.sampled_from([None, "email", "phone"]))
    def revoke(self, user: str, kind: str | None) -> None:
        with self._other() as other:
            consent.revoke(other, user, kind=kind)

    @rule(user=st.sampled_from(USERS), kind=st.sampled_from([None, "email", "phone"]))
    def grant(self, user: str, kind: str | None) -> None:
        with self._other() as other:
            consent.grant(other, user, kind=kind)

    @rule(user=st.sampled_from(USERS), active=st.booleans())
    def opt_out(self, user: str, active: bool) -> None:
        with self._other() as other:
            consent.set_opt_out(other, user, "sale_opt_out", active)

    @rule(user=st.sampled_from(USERS))
    def delete(self, user: str) -> None:
        with self._other() as other:
            users.delete_user(other, user)

    @rule(permit=st.booleans())
    def the_crm_source(self, permit: bool) -> None:
        with self._open() as other:
            (sources.permit_sources if permit else sources.deny_sources)(other, ["crm"])

    @rule(user=st.sampled_from(USERS), granted=st.booleans())
    def consent_file(self, user: str, granted: bool) -> None:
        path = self.root / "changes.csv"
        path.write_text(f"user_id,purpose,value\n{user},ads_matching,{str(granted).lower()}\n")
        with self._open() as other:
            consent.import_consent_csv(other, path)

    @rule(seconds=st.integers(min_value=1, max_value=150))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def a_session_is_recorded(self) -> None:
        with self._open() as other, transaction(other.conn):
            audit.append(other, "match.completed", {"session": "00"})

    @rule()
    def refresh(self) -> None:
        with self._open() as other:
            epochs.refresh(other, engine=ENGINE)

    @invariant()
    def the_cache_hands_out_what_a_fresh_computation_gives(self) -> None:
        if not hasattr(self, "db"):
            return
        kept = self.cache.get(self.db)
        fresh = matchable_epoch(self.db)
        assert kept.epoch == fresh.epoch
        assert np.array_equal(kept.elements, fresh.elements)
        assert np.array_equal(kept.user_rows, fresh.user_rows)
        assert np.array_equal(kept.identifier_ids, fresh.identifier_ids)
        for a, b in zip(kept.other_owners, fresh.other_owners, strict=True):
            assert np.array_equal(a, b)
        assert np.array_equal(kept.other_identifiers, fresh.other_identifiers)


MatchableSets.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestMatchableSets = MatchableSets.TestCase
