"""Quick check: normalization + message construction against the crypto it feeds.

Generates N messy identifiers (60 % emails, 40 % phones in national and international
formats; fixed seed, data only), then times ``normalize_batch(...)`` + ``.messages()`` per
kind and reports µs per identifier for emails, phones and the weighted mix, the phone fast
path's fallback rate, and phonenumbers' own cost on a sample of the same phones.

The target: normalization + messages under 10 % of hash_to_curve + encrypt. That baseline
(X25519 hash-to-curve of each message + one X25519 scalar multiplication, one core) is
measured in the same run on a sample, so the ratio holds up on a busy machine.

Usage: .venv/bin/python benchmarks/normalize_quick.py [--n 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time
from collections.abc import Callable

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from cleanroom.identifiers import normalize_batch
from cleanroom.identifiers.phone import e164_fast_path, normalize_phone_reference
from cleanroom.identifiers.phone_plan import plan_for_region

FIRST = ["Jane", "John", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Liam", "Emma", "Noah"]
FIRST += ["Sofia", "Mateo", "Yuki", "Priya", "Omar", "Chloe", "Lucas", "Ava", "Ivan", "Zoe"]
LAST = ["Smith", "Garcia", "Chen", "Khan", "Muller", "Rossi", "Dubois", "Silva", "Kim"]
LAST += ["Nguyen", "Brown", "Lopez", "Ivanova", "Sato", "Patel", "O'Neil", "Novak"]
DOMAINS = ["gmail.com"] * 7 + ["yahoo.com", "hotmail.com", "outlook.com", "icloud.com"] * 2
DOMAINS += ["aol.com", "Example.ORG", "acme-corp.co.uk", "mail.example.de", "GMAIL.COM"]
US_AREA_CODES = [201, 202, 212, 213, 305, 312, 347, 404, 415, 424, 469, 503, 512, 617]
US_AREA_CODES += [646, 702, 713, 718, 773, 786, 818, 917, 929, 206]
US_FORMATS = [
    "+1 ({a}) {e}-{n}",
    "{a}.{e}.{n}",
    "1-{a}-{e}-{n}",
    "({a}) {e}-{n}",
    "{a}{e}{n}",
    "+1{a}{e}{n}",
    "{a}-{e}-{n}",
    "1 {a} {e} {n}",
    " +1 {a}-{e}-{n} ",
    "1 ({a}) {e} {n}",
]
ABROAD = ["GB", "DE", "FR", "IT", "ES", "IN", "BR", "AU", "MX", "JP", "NL", "SE", "CH", "IE"]
ABROAD += ["ZA", "NG", "PH", "AR", "KR", "PL", "TR", "CN", "SG", "AE", "IL", "NZ", "CA", "JM"]
JUNK = ["", "n/a", "  ", "555-0100", "unknown", "+999 123", "12345", "call me"]


def _international_templates() -> list[str]:
    templates = []
    for region in ABROAD:
        for number_type in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is not None:
                templates.append(
                    phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL)
                )
    return templates


def _email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST).replace("'", "")
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{last}",
            f"{first[0]}.{last}",
            f"{first}_{last}{rng.randrange(100)}",
            f"{first}.{last}+promo",
            f"{last}.{first}{rng.randrange(1000)}",
        ]
    )
    local = rng.choice([local, local.lower(), local.upper()]) + str(rng.randrange(10_000))
    email = f"{local}@{rng.choice(DOMAINS)}"
    return rng.choice(["", "", "", " "]) + email + rng.choice(["", "", "", " ", "\t"])


def _us_phone(rng: random.Random, international: bool) -> str:
    digits = {
        "a": str(rng.choice(US_AREA_CODES)),
        "e": str(rng.randrange(200, 1000)),
        "n": f"{rng.randrange(10_000):04d}",
    }
    formats = [f for f in US_FORMATS if f.strip().startswith("+") == international]
    return rng.choice(formats).format(**digits)


def _abroad_phone(rng: random.Random, templates: list[str]) -> str:
    text = list(rng.choice(templates))
    # New last four digits, so numbers differ while staying in the same number range.
    positions = [i for i, c in enumerate(text) if c.isdigit()][-4:]
    for i in positions:
        text[i] = rng.choice("0123456789")
    return "".join(text).replace(" ", rng.choice([" ", " ", "-", ".", ""]))


def generate(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Emails and phones (60/40), about 1 % junk in each."""
    rng = random.Random(seed)  # test data only; nothing secret comes from it
    templates = _international_templates()
    emails = [_email(rng) if rng.random() > 0.01 else rng.choice(JUNK) for _ in range(n * 6 // 10)]
    phones = []
    for _ in range(n - len(emails)):
        draw = rng.random()
        if draw < 0.01:
            phones.append(rng.choice(JUNK))
        elif draw < 0.50:
            phones.append(_us_phone(rng, international=False))
        elif draw < 0.65:
            phones.append(_us_phone(rng, international=True))
        else:
            phones.append(_abroad_phone(rng, templates))
    return emails, phones


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _crypto_seconds_per_item(sample: int) -> float | None:
    """hash_to_curve + one X25519 multiplication per message, one core."""
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        from cleanroom.crypto import h2c_curve25519
    except ImportError:
        return None
    key = X25519PrivateKey.generate()
    messages = [b"cleanroom/v1/email/" + i.to_bytes(32, "big") for i in range(sample)]
    dst = b"CLEANROOM-V1-X25519-SHA512-ELL2-RO"

    def run() -> None:
        points = h2c_curve25519.hash_to_curve_many(messages, dst)
        for point in points:
            key.exchange(X25519PublicKey.from_public_bytes(bytes(point)))

    return _seconds(run) / sample


def main() -> None:
    parser = argparse.ArgumentParser(description="normalization + messages, µs per identifier")
    parser.add_argument("--n", type=int, default=1_000_000, help="identifiers in total")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median shown)")
    parser.add_argument("--seed", type=int, default=20240917, help="data generator seed")
    parser.add_argument("--crypto-sample", type=int, default=3000, help="0 to skip")
    parser.add_argument("--region", default="US", help="default region for phones")
    args = parser.parse_args()

    emails, phones = generate(args.n, args.seed)
    print(f"{args.n:,} identifiers: {len(emails):,} emails, {len(phones):,} phones")

    home = plan_for_region(args.region)
    assert home is not None
    fallbacks = 0
    for value in phones:
        # An InvalidIdentifier means the fast path decided (invalid): not a fallback.
        with contextlib.suppress(ValueError):
            fallbacks += e164_fast_path(value, home) is None
    email_batch = normalize_batch("email", emails)
    phone_batch = normalize_batch("phone", phones, default_region=args.region)
    print(
        f"rejected: {len(email_batch.rejected):,} emails, {len(phone_batch.rejected):,} phones; "
        f"phone fast-path fallback rate {fallbacks / len(phones):.2%} ({fallbacks:,})"
    )

    email_times, phone_times = [], []
    for _ in range(args.repeat):
        email_times.append(
            _seconds(lambda: normalize_batch("email", emails).messages()) / len(emails)
        )
        phone_times.append(
            _seconds(
                lambda: normalize_batch("phone", phones, default_region=args.region).messages()
            )
            / len(phones)
        )
    email_us = statistics.median(email_times) * 1e6
    phone_us = statistics.median(phone_times) * 1e6
    mix_us = (email_us * len(emails) + phone_us * len(phones)) / args.n
    print(f"email  normalize+messages: {email_us:6.2f} µs/identifier")
    print(f"phone  normalize+messages: {phone_us:6.2f} µs/identifier")
    print(f"mix    normalize+messages: {mix_us:6.2f} µs/identifier (60/40)")

    sample = phones[: min(len(phones), 20_000)]

    def reference_all() -> None:
        for value in sample:
            with contextlib.suppress(ValueError):
                normalize_phone_reference(value, args.region)

    reference_us = _seconds(reference_all) / len(sample) * 1e6
    print(f"phone  phonenumbers only:  {reference_us:6.2f} µs/number (sample of {len(sample):,})")

    if args.crypto_sample:
        crypto = _crypto_seconds_per_item(args.crypto_sample)
        if crypto is None:
            print("crypto baseline: cleanroom.crypto not importable, skipped")
        else:
            print(
                f"hash_to_curve + X25519: {crypto * 1e6:6.2f} µs/identifier "
                f"-> normalization is {mix_us / (crypto * 1e6):.1%} of it (target < 10 %)"
            )


if __name__ == "__main__":
    main()
