"""The end-to-end benchmark's data: one platform list, one advertiser list, and the truth.

Every size draws from one seeded stream of synthetic people, so a smaller list's emails are a
prefix of a larger one's. The files hold messy spellings (case, spaces, Gmail dots and tags);
the ground truth comes from the generator's canonical emails, never from the code under test,
and cleanroom's normalizer must map every messy spelling back to its canonical email.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    """One benchmarked pair of lists: N platform identifiers, n advertiser records."""

    big_n: int
    n: int
    overlap: float

    @property
    def balanced(self) -> bool:
        return self.big_n == self.n

    @property
    def shared(self) -> int:
        return round(self.overlap * self.n)

    @property
    def label(self) -> str:
        return f"N{self.big_n}-n{self.n}"

    @property
    def people_needed(self) -> int:
        """Platform users plus the advertiser's customers who are not on the platform."""
        return self.big_n + self.n - self.shared


@dataclass(frozen=True)
class Inputs:
    """The files of one configuration and the plaintext truth."""

    customers_csv: Path
    openmined_server: Path
    openmined_client: Path
    matched_positions: list[int]  # positions in the advertiser list of customers on the platform

    @property
    def matched_record_ids(self) -> set[str]:
        return {record_id(p) for p in self.matched_positions}


def record_id(position: int) -> str:
    return f"r{position}"


def positions_digest(positions: Iterable[int]) -> str:
    """SHA-256 of sorted row positions: a match's rows compared without shipping them."""
    return hashlib.sha256(",".join(map(str, sorted(positions))).encode()).hexdigest()


def canonical_emails(count: int, seed: int) -> list[str]:
    """``count`` distinct canonical emails from the synthetic generator (a prefix of any longer
    list drawn with the same seed)."""
    from cleanroom.demo import generate_people

    return [person.email for person in generate_people(count, seed)]


def normalized(messy: list[str], canonical: list[str], side: str) -> list[str]:
    """cleanroom's normalization of ``messy``; it must give back the generator's canonical forms."""
    from cleanroom.identifiers import normalize_batch

    batch = normalize_batch("email", messy)
    if batch.rejected or batch.values != canonical:
        raise SystemExit(
            f"{side} list: the normalizer disagrees with the generator's canonical emails "
            f"({len(batch.rejected)} rejected); the ground truth would be wrong"
        )
    return batch.values


def _messy(emails: list[str], rng: random.Random) -> list[str]:
    """Spellings of ``emails`` as people type them."""
    from cleanroom.demo import messy_email

    return [messy_email(email, rng) for email in emails]


def write_platform_csv(config: Config, emails: list[str], seed: int, path: Path) -> None:
    """The platform's users (the first N emails, one each), spelled messily; all consented.

    The spellings depend on N only, so a database reused for another n holds the same ones.
    """
    platform = emails[: config.big_n]
    messy = _messy(platform, random.Random(f"{seed}:{config.big_n}:platform"))
    normalized(messy, platform, "platform")
    with path.open("w", encoding="utf-8") as out:
        out.write("user_id,type,value,source,ads_matching_consent\n")
        out.writelines(f"u{i},email,{value},signup,true\n" for i, value in enumerate(messy))


def write_inputs(config: Config, emails: list[str], seed: int, work: Path) -> Inputs:
    """Write the advertiser's list (messy spellings) and OpenMined's inputs (normalized).

    Args:
        config: the sizes.
        emails: canonical emails, at least ``config.people_needed``; the platform's users are
            the first N.
        seed: the generator's seed.
        work: the configuration's folder.
    """
    platform = emails[: config.big_n]
    outsiders = emails[config.big_n : config.people_needed]
    rng = random.Random(f"{seed}:{config.big_n}:{config.n}")  # benchmark data, not a secret
    on_platform = rng.sample(range(config.big_n), config.shared)
    customers = [(platform[i], True) for i in on_platform] + [(e, False) for e in outsiders]
    rng.shuffle(customers)
    messy = _messy([email for email, _ in customers], rng)
    client_values = normalized(messy, [email for email, _ in customers], "advertiser")
    server_values = sorted(platform)  # OpenMined's server set; its order does not matter
    customers_csv = work / "customers.csv"
    with customers_csv.open("w", encoding="utf-8") as out:
        out.write("record_id,email,phone,maid,marketing_consent\n")
        out.writelines(f"{record_id(i)},{value},,,yes\n" for i, value in enumerate(messy))
    openmined_server = work / "openmined_server.txt"
    openmined_client = work / "openmined_client.txt"
    openmined_server.write_text("".join(f"email:{v}\n" for v in server_values), encoding="utf-8")
    openmined_client.write_text("".join(f"email:{v}\n" for v in client_values), encoding="utf-8")
    return Inputs(
        customers_csv=customers_csv,
        openmined_server=openmined_server,
        openmined_client=openmined_client,
        matched_positions=[i for i, (_, shared) in enumerate(customers) if shared],
    )
