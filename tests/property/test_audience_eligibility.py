"""No read of a stored audience ever shows a member who is not eligible now.

A Hypothesis state machine interleaves match sessions (opened on the identifiers eligible then,
completed later by storing their matched users, as the service does) with every way a user
loses or regains eligibility: revocation, deletion, opt-out and its withdrawal, expiry (the
database's clock moves on), a re-import with an expiry in the past while consent still says
true, a re-grant, denying and permitting a source, and sweeps. After every step:

- every member an audience shows has an identifier it matched through that is eligible now,
  by the rules of DESIGN §6 computed here from the stored facts (not from the view under test);
- each audience's size is the number of members it shows;
- a membership that a revocation, deletion, opt-out, denied source or lapsed consent ended
  never comes back, whatever is granted later;
- a completed session stores exactly the matched users still eligible when it completes.
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from cleanroom.store import consent, sessions, sources
from cleanroom.store.audiences import audience_members, store_audience, sweep_audiences
from cleanroom.store.database import Database, init_database, transaction, unix_now
from cleanroom.store.eligibility import NEVER_PERMITTED_SOURCES
from cleanroom.store.fields import format_timestamp
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.users import delete_user

USERS = [f"user{i}" for i in range(4)]
OPT_OUTS = ("sale_opt_out", "targeted_ads_opt_out")
HEADER = ("user_id", "type", "value", "source", "ads_matching_consent", "expires_at")


class AudienceConsent(RuleBasedStateMachine):
    """A platform database whose clock the test moves; sessions and consent changes interleave."""

    open_sessions = Bundle("open_sessions")

    def __init__(self) -> None:
        super().__init__()
        self._folder = tempfile.TemporaryDirectory()
        self.root = Path(self._folder.name)
        # The database's clock runs well ahead of the system's: what the code stamps with the
        # system clock (a grant's time) is then always in its past, whenever the example runs.
        self.now = unix_now() + 10**6
        self.db: Database | None = None
        self.files = itertools.count()
        self.sessions = itertools.count()
        # (audience id, external user id) pairs ended for good: they must never show again.
        self.ended: set[tuple[int, str]] = set()
        self.deleted: set[str] = set()

    # -- set-up ------------------------------------------------------------------------------

    @initialize(
        expiries=st.lists(st.integers(min_value=1, max_value=600), min_size=4, max_size=4),
        app_permitted=st.booleans(),
    )
    def build(self, expiries: list[int], app_permitted: bool) -> None:
        self.db, _ = init_database(self.root / "platform.db", clock=lambda: self.now)
        rows = []
        for i, user in enumerate(USERS):
            # Every user: a signup email that expires, a permanent profile phone for half of
            # them, and an id from the platform's own source "app" for the others.
            rows.append(
                (
                    user,
                    "email",
                    f"{user}@example.com",
                    "signup",
                    "true",
                    format_timestamp(self.now + expiries[i]),
                )
            )
            if i % 2:
                rows.append((user, "phone", f"+1415555{i:04d}", "profile", "true", ""))
            else:
                rows.append(
                    (user, "maid", f"{i:08x}-0d2b-4c1e-9a7f-2b3c4d5e6f70", "app", "true", "")
                )
        self._import(rows)
        if app_permitted:
            sources.permit_sources(self.db, ["app"])

    def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
        self._folder.cleanup()

    def _import(self, rows: list[tuple[str, ...]]) -> None:
        assert self.db is not None
        path = self.root / f"import{next(self.files)}.csv"
        with path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(HEADER)
            writer.writerows(rows)
        import_platform_csv(self.db, path)

    # -- the rules of eligibility, from the stored facts ---------------------------------------

    def _eligible_pairs(self) -> set[tuple[int, int]]:
        """(user row, identifier id) of every identifier eligible now, by DESIGN §6."""
        assert self.db is not None
        conn = self.db.conn
        permitted = {
            str(name) for (name,) in conn.execute("SELECT name FROM sources WHERE permitted = 1")
        } - NEVER_PERMITTED_SOURCES
        eligible = set()
        for row in conn.execute(
            "SELECT i.user_row, i.id, i.value, i.source, i.consent, i.consent_at, i.expires_at, "
            "u.deleted_at, u.sale_opt_out_at, u.targeted_ads_opt_out_at "
            "FROM identifiers AS i JOIN users AS u ON u.id = i.user_row"
        ):
            user, identifier, value, source, state, given_at, expires_at, *user_facts = row
            if (
                value is not None
                and source in permitted
                and all(fact is None for fact in user_facts)
                and state == "granted"
                and (expires_at is None or expires_at > self.now)
                and (given_at is None or given_at <= self.now)
            ):
                eligible.add((int(user), int(identifier)))
        return eligible

    def _external(self, user_row: int) -> str:
        assert self.db is not None
        return str(
            self.db.conn.execute(
                "SELECT external_id FROM users WHERE id = ?", (user_row,)
            ).fetchone()[0]
        )

    def _memberships(self) -> dict[int, list[str]]:
        assert self.db is not None
        ids = [int(r[0]) for r in self.db.conn.execute("SELECT id FROM audiences ORDER BY id")]
        return {audience: audience_members(self.db, audience) for audience in ids}

    def _end_memberships_of(self, user: str) -> None:
        for audience, members in self._memberships().items():
            if user in members:
                self.ended.add((audience, user))

    # -- sessions ------------------------------------------------------------------------------

    @rule(target=open_sessions, data=st.data())
    def open_session(self, data: st.DataObject) -> Any:
        """A session opens on what is eligible now; the advertiser's list matches some of it."""
        pairs = sorted(self._eligible_pairs())
        matched = data.draw(st.lists(st.sampled_from(pairs), unique=True) if pairs else st.just([]))
        return matched

    @rule(matched=consumes(open_sessions))
    def complete_session(self, matched: list[tuple[int, int]]) -> None:
        """W arrives: the matched users still eligible are stored, the others counted."""
        assert self.db is not None
        users = np.array([pair[0] for pair in matched], dtype=np.int64)
        identifiers = np.array([pair[1] for pair in matched], dtype=np.int64)
        with transaction(self.db.conn):
            stored = store_audience(self.db, f"s{next(self.sessions)}", "acme", users, identifiers)
        eligible = self._eligible_pairs()
        expected = {
            self._external(user) for user, identifier in matched if (user, identifier) in eligible
        }
        assert set(audience_members(self.db, stored.audience_id)) == expected
        assert stored.members == len(expected)
        assert stored.matched_users == len({user for user, _ in matched})

    # -- consent changes -----------------------------------------------------------------------

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS), kind=st.sampled_from([None, "email", "phone", "maid"]))
    def revoke(self, user: str, kind: str | None) -> None:
        if user in self.deleted:
            return
        self._end_memberships_of(user)
        assert self.db is not None
        consent.revoke(self.db, user, kind=kind)

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS))
    def delete(self, user: str) -> None:
        self._end_memberships_of(user)
        assert self.db is not None
        delete_user(self.db, user)
        self.deleted.add(user)

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS), opt_out=st.sampled_from(OPT_OUTS), active=st.booleans())
    def opt_out(self, user: str, opt_out: str, active: bool) -> None:
        if user in self.deleted:
            return
        if active:
            self._end_memberships_of(user)
        assert self.db is not None
        consent.set_opt_out(self.db, user, opt_out, active)

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS), kind=st.sampled_from([None, "email", "phone", "maid"]))
    def grant(self, user: str, kind: str | None) -> None:
        if user in self.deleted:
            return
        assert self.db is not None
        consent.grant(self.db, user, kind=kind)

    @precondition(lambda self: self.db is not None)
    @rule(seconds=st.integers(min_value=1, max_value=300))
    def time_passes(self, seconds: int) -> None:
        """Consents expire with no write at all: only the clock moves."""
        self.now += seconds

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS))
    def reimport_with_a_past_expiry(self, user: str) -> None:
        """An export re-imported: consent still says true, but its expiry is in the past."""
        if user in self.deleted:
            return
        for audience, members in self._memberships().items():
            if user in members and self._only_through(audience, user, "email"):
                self.ended.add((audience, user))
        past = format_timestamp(unix_now() - 3600)
        self._import([(user, "email", f"{user}@example.com", "signup", "true", past)])

    @precondition(lambda self: self.db is not None)
    @rule(user=st.sampled_from(USERS))
    def lapse_then_grant_again(self, user: str) -> None:
        """The export flips back: a past expiry, then a new grant at once."""
        self.reimport_with_a_past_expiry(user)
        self.grant(user, None)

    @precondition(lambda self: self.db is not None)
    @rule(permit=st.booleans())
    def the_app_source(self, permit: bool) -> None:
        assert self.db is not None
        if permit:
            sources.permit_sources(self.db, ["app"])
            return
        for audience, members in self._memberships().items():
            for user in members:
                if self._only_through(audience, user, "maid"):
                    self.ended.add((audience, user))
        sources.deny_sources(self.db, ["app"])

    def _only_through(self, audience: int, user: str, kind: str) -> bool:
        assert self.db is not None
        kinds = {
            str(found)
            for (found,) in self.db.conn.execute(
                "SELECT i.type FROM audience_member_identifiers AS m "
                "JOIN identifiers AS i ON i.id = m.identifier_id "
                "JOIN users AS u ON u.id = m.user_id WHERE m.audience_id = ? AND u.external_id = ?",
                (audience, user),
            )
        }
        return kinds == {kind}

    @precondition(lambda self: self.db is not None)
    @rule()
    def sweep(self) -> None:
        assert self.db is not None
        sweep_audiences(self.db)

    # -- what must hold after every step -------------------------------------------------------

    @invariant()
    def no_readable_membership_is_ineligible(self) -> None:
        if self.db is None:
            return
        eligible = self._eligible_pairs()
        summaries = {s.id: s.size for s in sessions.audience_summaries(self.db)}
        for audience, members in self._memberships().items():
            assert summaries[audience] == len(members)
            for user in members:
                matched = {
                    (int(u), int(i))
                    for u, i in self.db.conn.execute(
                        "SELECT m.user_id, m.identifier_id FROM audience_member_identifiers AS m "
                        "JOIN users AS u ON u.id = m.user_id "
                        "WHERE m.audience_id = ? AND u.external_id = ?",
                        (audience, user),
                    )
                }
                assert matched & eligible, f"{user} shows in audience {audience}, not eligible"
                assert (audience, user) not in self.ended, f"{user} came back to {audience}"


AudienceConsent.TestCase.settings = settings(max_examples=80, stateful_step_count=25)
test_no_readable_membership_is_ever_ineligible = AudienceConsent.TestCase
