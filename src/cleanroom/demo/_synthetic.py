"""Synthetic people and messy identifier lists for the demo and the benchmarks.

The data is fake but realistic in the ways that matter to matching: emails in mixed case with
stray spaces, Gmail dots and ``+tags``; phone numbers in national and international formats with
assorted punctuation; some numbers from other countries. Every generated person has a canonical
form (what normalization must produce), so callers can compute the plaintext ground truth without
trusting the code under test.

Randomness here comes from a seeded :class:`random.Random` on purpose: synthetic data must be
reproducible. Nothing in this module is, or may be used as, a secret.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import phonenumbers

__all__ = ["Person", "generate_people", "messy_email", "messy_phone"]

# Area codes in service in the US; with a central-office code 2xx-9xx every number is valid
# for phonenumbers' US metadata.
_US_AREA_CODES = (
    "201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228 229 231 "
    "234 239 240 248 251 252 253 254 256 260 262 267 269 270 276 281 301 302 303 304 305 307 "
    "308 309 310 312 313 314 315 316 317 318 319 320 321 323 330 334 336 337 339 347 351 352 "
    "360 361 386 401 402 404 405 406 407 408 409 410 412 413 414 415 417 419 423 425 430 432 "
    "434 435 440 443 469 478 479 480 484 501 502 503 504 505 507 508 509 510 512 513 515 516 "
    "517 518 520 530 540 541 559 561 562 563 567 570 571 573 574 575 580 585 586 601 602 603 "
    "605 606 607 608 609 610 612 614 615 616 617 618 619 620 623 626 630 631 636 641 646 650 "
    "651 660 661 662 678 682 701 702 703 704 706 707 708 712 713 714 715 716 717 718 719 720 "
    "724 727 731 732 734 740 754 757 760 763 765 770 772 773 774 775 781 785 786 801 802 803 "
    "804 805 806 808 810 812 813 814 815 816 817 818 828 830 831 832 843 845 847 848 850 856 "
    "857 858 859 860 862 863 864 865 870 872 878 901 903 904 906 907 908 909 910 912 913 914 "
    "915 916 917 918 919 920 925 928 931 936 937 940 941 949 951 952 954 956 970 971 972 973 "
    "978 979 980 985 989"
).split()

_FOREIGN_REGIONS = ("GB", "DE", "FR", "IT", "IN", "BR", "AU", "CA", "JP", "MX", "ES", "NL")
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "example.com", "icloud.com", "proton.me")
_FIRST = (
    "anna ben carla dev emma farid gia hugo ines jon kai lena milo nora omar pia ravi sara".split()
)
_LAST = "smith garcia chen okafor novak silva kim muller rossi dubois patel tanaka khan lee".split()


@dataclass(frozen=True)
class Person:
    """A synthetic person with canonical (already normalized) identifiers."""

    user_id: str
    email: str
    phone: str
    maid: str


def _us_number(rng: random.Random) -> str:
    exchange = f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}"
    return f"+1{rng.choice(_US_AREA_CODES)}{exchange}{rng.randint(0, 9999):04d}"


def _foreign_number(rng: random.Random) -> str:
    # Vary the tail of a region's example mobile number until phonenumbers calls it valid, so
    # the canonical form is a number normalization must accept.
    region = rng.choice(_FOREIGN_REGIONS)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    while True:
        candidate = national[:-4] + f"{rng.randint(0, 9999):04d}"
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def generate_people(count: int, seed: int, *, foreign_share: float = 0.1) -> list[Person]:
    """Return ``count`` people with distinct canonical identifiers.

    Args:
        count: how many people.
        seed: seed of the (non-secret) generator, so runs are reproducible.
        foreign_share: fraction of phone numbers outside the US.
    """
    rng = random.Random(seed)
    people: list[Person] = []
    emails: set[str] = set()
    phones: set[str] = set()
    while len(people) < count:
        local = f"{rng.choice(_FIRST)}{rng.choice(_LAST)}{rng.randint(0, 10**6)}"
        email = f"{local}@{rng.choice(_DOMAINS)}"
        phone = _foreign_number(rng) if rng.random() < foreign_share else _us_number(rng)
        if email in emails or phone in phones:
            continue
        emails.add(email)
        phones.add(phone)
        maid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        people.append(Person(f"u{len(people):08d}", email, phone, maid))
    return people


def messy_email(email: str, rng: random.Random) -> str:
    """Return a spelling of ``email`` that normalizes back to it (case, spaces, Gmail rules)."""
    local, domain = email.split("@")
    if domain == "gmail.com" and rng.random() < 0.3:
        cut = rng.randint(1, max(1, len(local) - 1))
        local = f"{local[:cut]}.{local[cut:]}"
        if rng.random() < 0.5:
            local += "+" + rng.choice(("news", "shop", "x1"))
    text = f"{local}@{domain}"
    if rng.random() < 0.4:
        text = "".join(c.upper() if rng.random() < 0.3 else c for c in text)
    if rng.random() < 0.2:
        text = f"  {text} "
    return text


def messy_phone(e164: str, rng: random.Random) -> str:
    """Return a national or international spelling of ``e164`` as people type it."""
    number = phonenumbers.parse(e164)
    if number.country_code == 1:
        digits = e164[2:]
        area, exchange, line = digits[:3], digits[3:6], digits[6:]
        return rng.choice(
            (
                f"({area}) {exchange}-{line}",
                f"{area}.{exchange}.{line}",
                f"1-{area}-{exchange}-{line}",
                f"+1 {area} {exchange} {line}",
                f"{area}{exchange}{line}",
                f"+1 ({area}) {exchange}-{line}",
            )
        )
    style = rng.choice(
        (phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164)
    )
    return phonenumbers.format_number(number, style)
