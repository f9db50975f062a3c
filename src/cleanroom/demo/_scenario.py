"""The demo's world: a platform export, an advertiser's customer list, and the plaintext truth.

:func:`generate_scenario` builds both sides' CSV rows from synthetic people (DESIGN §10 formats)
and, beside them, what an honest matcher must report. The truth is computed from what the
generator *meant* (each identifier's canonical form, source and consent state), never by running
the normalizer, the importer or the eligibility view, so the demo compares the system against an
independent answer.

What the world contains, on purpose:

- platform users with emails and phones from permitted sources (``signup``, ``profile``, …), most
  with ads-matching consent, some never given, some given and later revoked (``revoked_at`` set
  while the flag still says ``true``, as a stale export would);
- a few percent of identifiers collected for ``two_factor`` login or account ``recovery`` with
  the consent flag set: they are stored and must never match (DESIGN §6, the FTC's Twitter case);
- an advertiser list with messy spellings, rows without marketing consent, a few unusable values,
  and a chunk of customers who are platform users — including customers whose *only* link to
  the platform is a ``two_factor`` phone or a ``recovery`` email, so that "no never-permitted
  identifier matched" is shown by the numbers rather than assumed.

Randomness comes from a seeded :class:`random.Random`: the demo must be reproducible. Nothing here
is, or may be used as, a secret.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from cleanroom.demo._synthetic import Person, generate_people, messy_email, messy_phone
from cleanroom.errors import InvalidInput

__all__ = [
    "ADVERTISER_COLUMNS",
    "DEFAULT_RECORDS",
    "DEFAULT_SEED",
    "DEFAULT_USERS",
    "MAX_SIZE",
    "MIN_RECORDS",
    "MIN_USERS",
    "PLATFORM_COLUMNS",
    "AdvertiserRecord",
    "ConsentState",
    "DemoScenario",
    "GroundTruth",
    "PlatformIdentifier",
    "generate_scenario",
]

DEFAULT_USERS: Final = 50_000
DEFAULT_RECORDS: Final = 10_000
DEFAULT_SEED: Final = 2026
MIN_USERS: Final = 200
MIN_RECORDS: Final = 100
MAX_SIZE: Final = 1_000_000
"""The most users, and the most records, the demo makes: it holds them in memory (about 1.2 KB
a user), and a mistyped size must not run for hours."""

PLATFORM_COLUMNS: Final = (
    "user_id",
    "type",
    "value",
    "source",
    "ads_matching_consent",
    "consent_at",
    "revoked_at",
)
ADVERTISER_COLUMNS: Final = ("record_id", "email", "phone", "maid", "marketing_consent")

# The generator's own statement of DESIGN §6, deliberately not imported from the store: the truth
# must not inherit a bug of the code it checks.
_PERMITTED_SOURCES: Final = ("signup", "profile", "checkout", "newsletter")
_EMAIL_SOURCE_WEIGHTS: Final = (70, 5, 15, 10)
_NEVER_PERMITTED_USED: Final = frozenset({"two_factor", "recovery"})

# Shares of the world (of users, of identifiers or of records, as named).
_TWO_FACTOR_PHONE_SHARE: Final = 0.04  # users whose only phone on file is a two_factor one
_RECOVERY_EMAIL_SHARE: Final = 0.02  # users with a second email given for account recovery
_PROFILE_PHONE_SHARE: Final = 0.65  # other users with a phone from a permitted source
_REVOKED_SHARE: Final = 0.07  # permitted identifiers whose consent was later revoked
_NOT_GIVEN_SHARE: Final = 0.13  # permitted identifiers without consent
_NEVER_PERMITTED_CLAIM_SHARE: Final = 0.9  # never-permitted rows whose flag still says true
_OVERLAP_SHARE: Final = 0.4  # advertiser records that are platform users
_NEVER_PERMITTED_ONLY_SHARE: Final = 0.03  # records linked only through two_factor / recovery
_SPLIT_CUSTOMER_SHARE: Final = 0.03  # overlapping customers entered twice (email / phone)
_NO_MARKETING_CONSENT_SHARE: Final = 0.08
_INVALID_EMAIL_SHARE: Final = 0.015
_INVALID_PHONE_SHARE: Final = 0.01
_MAID_SHARE: Final = 0.1
_MESSY_PLATFORM_PHONE_SHARE: Final = 0.3

_YES_SPELLINGS: Final = ("yes", "Yes", "Y", "true", "TRUE", "1")
_NO_SPELLINGS: Final = ("no", "", "FALSE", "N", "0")
_INVALID_EMAILS: Final = ("n/a", "unknown", "john.smith(at)example.com", "test@localhost")
_INVALID_PHONES: Final = ("000", "555-0000", "12345", "(000) 000-0000")

_EPOCH: Final = datetime(2024, 1, 1, tzinfo=UTC)


class ConsentState(StrEnum):
    """What the generator decided about one identifier's ads-matching consent."""

    GRANTED = "granted"
    """Given and still active."""
    REVOKED = "revoked"
    """Given, then withdrawn (``revoked_at`` later than ``consent_at``)."""
    NOT_GIVEN = "not_given"
    """Never given (the flag says ``false``)."""


@dataclass(frozen=True)
class PlatformIdentifier:
    """One row of the platform CSV, with what the generator meant by it.

    Attributes:
        user_id: the platform's user id.
        kind: ``email`` or ``phone``.
        canonical: the normalized value (what normalization must produce).
        written: the value as written in the CSV.
        source: where the platform collected it.
        state: its ads-matching consent.
        consent_at: ISO 8601 time of the grant, or ``""``.
        revoked_at: ISO 8601 time of the revocation, or ``""``.
    """

    user_id: str
    kind: str
    canonical: str
    written: str
    source: str
    state: ConsentState
    consent_at: str
    revoked_at: str

    @property
    def never_permitted(self) -> bool:
        """Whether its source may never be used for ads, whatever the consent flag says."""
        return self.source in _NEVER_PERMITTED_USED

    @property
    def eligible(self) -> bool:
        """Whether it may take part in matching: a permitted source with active consent."""
        return self.source in _PERMITTED_SOURCES and self.state is ConsentState.GRANTED

    @property
    def claims_consent(self) -> bool:
        """Whether the row says consent is active (true for some never-permitted rows too)."""
        return self.state is ConsentState.GRANTED

    def csv_row(self) -> list[str]:
        """The row as written to the platform CSV (:data:`PLATFORM_COLUMNS`)."""
        flag = "false" if self.state is ConsentState.NOT_GIVEN else "true"
        return [
            self.user_id,
            self.kind,
            self.written,
            self.source,
            flag,
            self.consent_at,
            self.revoked_at,
        ]


@dataclass(frozen=True)
class AdvertiserRecord:
    """One row of the advertiser's customer list, with what the generator meant by it.

    Attributes:
        record_id: the advertiser's customer id.
        email: the email cell as written (messy, empty or unusable).
        phone: the phone cell as written.
        maid: the mobile advertising id cell as written.
        marketing_consent: the consent cell as written.
        consented: whether that cell means yes.
        identities: ``(kind, canonical)`` of each usable identifier in the row.
    """

    record_id: str
    email: str
    phone: str
    maid: str
    marketing_consent: str
    consented: bool
    identities: tuple[tuple[str, str], ...]

    def csv_row(self) -> list[str]:
        """The row as written to the advertiser CSV (:data:`ADVERTISER_COLUMNS`)."""
        return [self.record_id, self.email, self.phone, self.maid, self.marketing_consent]


@dataclass(frozen=True)
class GroundTruth:
    """What an honest matcher reports for the scenario, computed from canonical identities.

    Attributes:
        count: count mode: consenting advertiser records sharing at least one eligible
            identifier with the platform.
        audience_users: audience mode: the platform users matched through eligible identifiers.
        count_if_never_permitted: what ``count`` would be if the ``two_factor`` and ``recovery``
            identifiers that claim consent were (wrongly) eligible.
        audience_users_if_never_permitted: ``audience_users`` under the same wrong rule.
        platform_set_size: N, the eligible identifiers (what an epoch precomputes).
        records_sent: consenting records with at least one usable identifier.
        records_without_consent: records whose marketing-consent cell is not a yes.
    """

    count: int
    audience_users: frozenset[str] = field(repr=False)
    count_if_never_permitted: int
    audience_users_if_never_permitted: frozenset[str] = field(repr=False)
    platform_set_size: int
    records_sent: int
    records_without_consent: int

    @property
    def audience(self) -> int:
        """Audience mode's true count: distinct platform users matched."""
        return len(self.audience_users)

    @property
    def audience_if_never_permitted(self) -> int:
        """Audience mode's count under the wrong rule."""
        return len(self.audience_users_if_never_permitted)

    @property
    def records_only_through_never_permitted(self) -> int:
        """Records that match only through a ``two_factor`` or ``recovery`` identifier."""
        return self.count_if_never_permitted - self.count

    @property
    def users_only_through_never_permitted(self) -> frozenset[str]:
        """Users that a wrong matcher would add to an audience through such identifiers."""
        return self.audience_users_if_never_permitted - self.audience_users


@dataclass(frozen=True)
class DemoScenario:
    """Both sides' data and the truth.

    Attributes:
        seed: the generator's seed.
        users: platform users.
        platform: the platform CSV's rows, in file order.
        advertiser: the advertiser CSV's rows, in file order.
        truth: what an honest matcher reports.
    """

    seed: int
    users: int
    platform: tuple[PlatformIdentifier, ...] = field(repr=False)
    advertiser: tuple[AdvertiserRecord, ...] = field(repr=False)
    truth: GroundTruth

    def platform_exclusions(self) -> dict[str, int]:
        """Identifiers the platform must exclude, by the first reason of DESIGN §6 that applies.

        Returns:
            ``source_not_permitted``, ``revoked`` and ``no_consent`` counts (this world has no
            deletions or opt-outs).
        """
        reasons: Counter[str] = Counter()
        for row in self.platform:
            if row.source not in _PERMITTED_SOURCES:
                reasons["source_not_permitted"] += 1
            elif row.state is ConsentState.REVOKED:
                reasons["revoked"] += 1
            elif row.state is ConsentState.NOT_GIVEN:
                reasons["no_consent"] += 1
        return {name: reasons[name] for name in ("source_not_permitted", "revoked", "no_consent")}

    def never_permitted_claiming_consent(self) -> Counter[str]:
        """Rows from ``two_factor`` / ``recovery`` whose flag says consent, by source."""
        return Counter(
            row.source for row in self.platform if row.never_permitted and row.claims_consent
        )

    def write_platform_csv(self, path: Path) -> None:
        """Write the platform CSV (header :data:`PLATFORM_COLUMNS`)."""
        _write_csv(path, PLATFORM_COLUMNS, (row.csv_row() for row in self.platform))

    def write_advertiser_csv(self, path: Path) -> None:
        """Write the advertiser CSV (header :data:`ADVERTISER_COLUMNS`)."""
        _write_csv(path, ADVERTISER_COLUMNS, (record.csv_row() for record in self.advertiser))


def _write_csv(path: Path, header: Sequence[str], rows: Iterator[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)


def generate_scenario(
    users: int = DEFAULT_USERS, records: int = DEFAULT_RECORDS, seed: int = DEFAULT_SEED
) -> DemoScenario:
    """Generate the demo's platform export, advertiser list and their ground truth.

    Args:
        users: platform users (at least :data:`MIN_USERS`).
        records: advertiser records (at least :data:`MIN_RECORDS`).
        seed: seed of the (non-secret) generator; the same arguments give the same scenario.

    Returns:
        The scenario.

    Raises:
        InvalidInput: a size below its minimum.
    """
    if users < MIN_USERS:
        raise InvalidInput(f"the demo needs at least {MIN_USERS} platform users, not {users}")
    if records < MIN_RECORDS:
        raise InvalidInput(
            f"the demo needs at least {MIN_RECORDS} advertiser records, not {records}"
        )
    rng = random.Random(seed)
    overlap = min(round(records * _OVERLAP_SHARE), users // 2)
    # One pool of distinct people: platform users first, then advertiser-only customers, then
    # spare identities (recovery emails, other emails customers gave the advertiser).
    spare = users // 10 + records // 10 + 10
    people = generate_people(users + (records - overlap) + spare, seed)
    platform_people = people[:users]
    customers_only = people[users : users + records - overlap]
    spares = iter(people[users + records - overlap :])

    platform, two_factor_users, recovery_emails = _platform_rows(platform_people, spares, rng)
    advertiser = _advertiser_records(
        platform_people, customers_only, overlap, two_factor_users, recovery_emails, spares, rng
    )
    truth = _ground_truth(platform, advertiser)
    return DemoScenario(seed, users, tuple(platform), tuple(advertiser), truth)


def _moment(rng: random.Random, after: datetime = _EPOCH) -> datetime:
    # Always in the past: a consent dated in the future is not active yet.
    return after + timedelta(days=rng.randint(1, 300), seconds=rng.randint(0, 86_399))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _permitted_row(
    user_id: str, kind: str, canonical: str, written: str, source: str, rng: random.Random
) -> PlatformIdentifier:
    draw = rng.random()
    granted = _moment(rng)
    if draw < _REVOKED_SHARE:
        revoked = _moment(rng, granted)
        state, consent_at, revoked_at = ConsentState.REVOKED, _iso(granted), _iso(revoked)
    elif draw < _REVOKED_SHARE + _NOT_GIVEN_SHARE:
        state, consent_at, revoked_at = ConsentState.NOT_GIVEN, "", ""
    else:
        state, consent_at, revoked_at = ConsentState.GRANTED, _iso(granted), ""
    return PlatformIdentifier(
        user_id, kind, canonical, written, source, state, consent_at, revoked_at
    )


def _never_permitted_row(
    user_id: str, kind: str, canonical: str, source: str, rng: random.Random
) -> PlatformIdentifier:
    # The security flow ticked "consent" for most of them: exactly the trap of DESIGN §1.
    if rng.random() < _NEVER_PERMITTED_CLAIM_SHARE:
        state, consent_at = ConsentState.GRANTED, _iso(_moment(rng))
    else:
        state, consent_at = ConsentState.NOT_GIVEN, ""
    return PlatformIdentifier(user_id, kind, canonical, canonical, source, state, consent_at, "")


def _platform_rows(
    people: Sequence[Person], spares: Iterator[Person], rng: random.Random
) -> tuple[list[PlatformIdentifier], list[Person], dict[str, str]]:
    """Rows per user; also who has a two_factor phone and who a recovery email (user -> email)."""
    rows: list[PlatformIdentifier] = []
    two_factor_users: list[Person] = []
    recovery_emails: dict[str, str] = {}
    for person in people:
        source = rng.choices(_PERMITTED_SOURCES, weights=_EMAIL_SOURCE_WEIGHTS)[0]
        rows.append(
            _permitted_row(person.user_id, "email", person.email, person.email, source, rng)
        )
        draw = rng.random()
        if draw < _TWO_FACTOR_PHONE_SHARE:
            rows.append(
                _never_permitted_row(person.user_id, "phone", person.phone, "two_factor", rng)
            )
            two_factor_users.append(person)
        elif draw < _TWO_FACTOR_PHONE_SHARE + _PROFILE_PHONE_SHARE:
            written = (
                messy_phone(person.phone, rng)
                if rng.random() < _MESSY_PLATFORM_PHONE_SHARE
                else person.phone
            )
            rows.append(
                _permitted_row(person.user_id, "phone", person.phone, written, "profile", rng)
            )
        if rng.random() < _RECOVERY_EMAIL_SHARE:
            email = next(spares).email
            rows.append(_never_permitted_row(person.user_id, "email", email, "recovery", rng))
            recovery_emails[person.user_id] = email
    return rows, two_factor_users, recovery_emails


def _consent_cell(rng: random.Random) -> tuple[str, bool]:
    if rng.random() < _NO_MARKETING_CONSENT_SHARE:
        return rng.choice(_NO_SPELLINGS), False
    return rng.choice(_YES_SPELLINGS), True


def _advertiser_records(
    platform_people: Sequence[Person],
    customers_only: Sequence[Person],
    overlap: int,
    two_factor_users: Sequence[Person],
    recovery_emails: dict[str, str],
    spares: Iterator[Person],
    rng: random.Random,
) -> list[AdvertiserRecord]:
    records: list[AdvertiserRecord] = []
    # Customers the advertiser knows only by a number or an email that the platform holds for
    # security: they are the proof that such identifiers never match.
    linked_only = max(2, round(overlap * _NEVER_PERMITTED_ONLY_SHARE))
    by_phone = rng.sample(list(two_factor_users), min(len(two_factor_users), linked_only))
    by_recovery = rng.sample(sorted(recovery_emails), min(len(recovery_emails), linked_only // 3))
    taken = {person.user_id for person in by_phone} | set(by_recovery)
    for person in by_phone:
        # The email the customer gave the advertiser is not one the platform knows.
        other_email = next(spares).email if rng.random() < 0.5 else ""
        records.append(_record(rng, email=other_email, phone=person.phone, consented=True))
    for user_id in by_recovery:
        records.append(_record(rng, email=recovery_emails[user_id], phone="", consented=True))
    rest = [person for person in platform_people if person.user_id not in taken]
    for person in rng.sample(rest, max(0, overlap - len(records))):
        if len(records) >= overlap:
            break
        if len(records) + 2 <= overlap and rng.random() < _SPLIT_CUSTOMER_SHARE:
            # One person entered twice in the CRM, once by email and once by phone: two records
            # (they share no identifier) but one platform user, so count and audience differ.
            consent, consented = _consent_cell(rng)
            for email, phone in ((person.email, ""), ("", person.phone)):
                records.append(
                    _record(rng, email=email, phone=phone, consented=consented, consent=consent)
                )
        else:
            records.append(_customer(person, rng))
    for person in customers_only:
        records.append(_customer(person, rng, maid=rng.random() < _MAID_SHARE))
    rng.shuffle(records)
    return [
        AdvertiserRecord(f"C{i:07d}", *fields)
        for i, fields in enumerate(
            (r.email, r.phone, r.maid, r.marketing_consent, r.consented, r.identities)
            for r in records
        )
    ]


def _customer(person: Person, rng: random.Random, *, maid: bool = False) -> AdvertiserRecord:
    """A customer record: email and/or phone (never neither), consent as the list says."""
    draw = rng.random()
    email = person.email if draw < 0.85 else ""
    phone = person.phone if draw >= 0.55 else ""
    consent, consented = _consent_cell(rng)
    return _record(
        rng,
        email=email,
        phone=phone,
        maid=person.maid if maid else "",
        consented=consented,
        consent=consent,
    )


def _record(
    rng: random.Random,
    *,
    email: str,
    phone: str,
    consented: bool,
    maid: str = "",
    consent: str | None = None,
) -> AdvertiserRecord:
    """A record from canonical values: spelled messily, a few cells made unusable."""
    identities: list[tuple[str, str]] = []
    email_cell = phone_cell = ""
    if email:
        if rng.random() < _INVALID_EMAIL_SHARE:
            email_cell = rng.choice(_INVALID_EMAILS)
        else:
            email_cell = messy_email(email, rng)
            identities.append(("email", email))
    if phone:
        if rng.random() < _INVALID_PHONE_SHARE:
            phone_cell = rng.choice(_INVALID_PHONES)
        else:
            phone_cell = messy_phone(phone, rng)
            identities.append(("phone", phone))
    maid_cell = ""
    if maid:
        maid_cell = maid.upper() if rng.random() < 0.5 else maid
        identities.append(("maid", maid))
    if consent is None:
        consent = rng.choice(_YES_SPELLINGS) if consented else rng.choice(_NO_SPELLINGS)
    # record_id is assigned after the shuffle.
    return AdvertiserRecord(
        "", email_cell, phone_cell, maid_cell, consent, consented, tuple(identities)
    )


def _ground_truth(
    platform: Sequence[PlatformIdentifier], advertiser: Sequence[AdvertiserRecord]
) -> GroundTruth:
    eligible = {(row.kind, row.canonical): row.user_id for row in platform if row.eligible}
    wrongly_eligible = {
        (row.kind, row.canonical): row.user_id
        for row in platform
        if row.never_permitted and row.claims_consent
    }
    count = count_wrong = sent = without_consent = 0
    users: set[str] = set()
    users_wrong: set[str] = set()
    for record in advertiser:
        if not record.consented:
            without_consent += 1
            continue
        sent += bool(record.identities)
        hits = {eligible[i] for i in record.identities if i in eligible}
        hits_wrong = hits | {
            wrongly_eligible[i] for i in record.identities if i in wrongly_eligible
        }
        count += bool(hits)
        count_wrong += bool(hits_wrong)
        users |= hits
        users_wrong |= hits_wrong
    return GroundTruth(
        count=count,
        audience_users=frozenset(users),
        count_if_never_permitted=count_wrong,
        audience_users_if_never_permitted=frozenset(users_wrong),
        platform_set_size=len(eligible),
        records_sent=sent,
        records_without_consent=without_consent,
    )
