"""Identifier normalization v1 and the messages hashed to the curve (DESIGN §4, §5).

Both parties must turn the same person's identifier into the same bytes::

    normalize("email", " Jane.Doe+ads@GMail.com ")      -> "janedoe@gmail.com"
    normalize("phone", "(415) 555-2671")                 -> "+14155552671"
    normalize("maid", "6D92078A-8246-4BA4-AE5B-76104861E7DC")
    identifier_digest("email", value)                    -> SHA-256(normalized value)
    hash_message("email", digest)                        -> b"cleanroom/v1/email/" + digest

A column is normalized with :func:`normalize_batch`, which sets bad values aside with a reason
instead of failing, and whose :meth:`NormalizedBatch.messages` are what hash-to-curve takes.
"""

from __future__ import annotations

from cleanroom.identifiers.batch import NormalizedBatch, Rejection, normalize_batch
from cleanroom.identifiers.messages import hash_message, identifier_digest
from cleanroom.identifiers.normalize import normalize
from cleanroom.identifiers.phone import DEFAULT_REGION
from cleanroom.identifiers.prehashed import parse_prehashed
from cleanroom.identifiers.rules import KINDS, NORMALIZATION_VERSION

__all__ = [
    "DEFAULT_REGION",
    "KINDS",
    "NORMALIZATION_VERSION",
    "NormalizedBatch",
    "Rejection",
    "hash_message",
    "identifier_digest",
    "normalize",
    "normalize_batch",
    "parse_prehashed",
]
