"""The synthetic data generator: canonical forms are what normalization must produce."""

from __future__ import annotations

import random

import phonenumbers

from cleanroom.demo import generate_people, messy_email, messy_phone
from cleanroom.identifiers import normalize_batch


def test_generation_is_reproducible_and_distinct() -> None:
    a, b = generate_people(300, seed=5), generate_people(300, seed=5)
    assert a == b
    assert len({p.email for p in a}) == len({p.phone for p in a}) == len({p.user_id for p in a})


def test_canonical_phones_are_valid_e164() -> None:
    for person in generate_people(300, seed=6, foreign_share=0.5):
        number = phonenumbers.parse(person.phone)
        assert phonenumbers.is_valid_number(number)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        assert e164 == person.phone


def test_messy_spellings_normalize_back_to_canonical() -> None:
    people = generate_people(500, seed=7, foreign_share=0.3)
    rng = random.Random(8)
    emails = normalize_batch("email", [messy_email(p.email, rng) for p in people])
    phones = normalize_batch("phone", [messy_phone(p.phone, rng) for p in people])
    assert not emails.rejected and not phones.rejected
    assert emails.values == [p.email for p in people]
    assert phones.values == [p.phone for p in people]
