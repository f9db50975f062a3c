"""Normalize a column of identifiers; a bad value is reported, never fatal (DESIGN §5)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cleanroom.errors import InvalidIdentifier
from cleanroom.identifiers.email import normalize_email
from cleanroom.identifiers.maid import normalize_maid
from cleanroom.identifiers.messages import message_prefix
from cleanroom.identifiers.phone import (
    DEFAULT_REGION,
    e164_fast_path,
    normalize_phone_reference,
)
from cleanroom.identifiers.phone_plan import plan_for_region
from cleanroom.identifiers.prehashed import parse_prehashed
from cleanroom.identifiers.rules import require_kind

__all__ = ["NormalizedBatch", "Rejection", "normalize_batch"]


@dataclass(frozen=True)
class Rejection:
    """A value that could not be normalized.

    Attributes:
        index: its position in the input.
        value: the value as given.
        reason: why, in words a person understands.
    """

    index: int
    value: str
    reason: str


@dataclass(frozen=True)
class NormalizedBatch:
    """The outcome of :func:`normalize_batch`.

    Attributes:
        kind: the identifier kind of the column.
        prehashed: whether the column held SHA-256 digests rather than raw values.
        indices: input positions of the accepted values, ascending.
        values: for raw input the normalized values; for pre-hashed input the digests as
            lowercase hex. ``values[i]`` came from input position ``indices[i]``.
        rejected: the values that failed, in input order.
    """

    kind: str
    prehashed: bool
    indices: list[int]
    values: list[str]
    rejected: list[Rejection]

    def digests(self) -> list[bytes]:
        """SHA-256 of each normalized value (decoded as given, for pre-hashed input)."""
        if self.prehashed:
            return [bytes.fromhex(value) for value in self.values]
        sha256 = hashlib.sha256
        return [sha256(value.encode()).digest() for value in self.values]

    def messages(self) -> list[bytes]:
        """The message to hash to the curve for each accepted value, in ``values`` order."""
        prefix = message_prefix(self.kind)
        if self.prehashed:
            return [prefix + bytes.fromhex(value) for value in self.values]
        sha256 = hashlib.sha256
        return [prefix + sha256(value.encode()).digest() for value in self.values]


def normalize_batch(
    kind: str,
    values: Sequence[str],
    *,
    default_region: str = DEFAULT_REGION,
    prehashed: bool = False,
) -> NormalizedBatch:
    """Normalize every value of a column, setting aside those that fail.

    Args:
        kind: ``"email"``, ``"phone"`` or ``"maid"``.
        values: the column, raw or (``prehashed``) SHA-256 hex/base64 of normalized values.
        default_region: region of phone numbers written without a country code.
        prehashed: the column holds digests of already normalized values.

    Returns:
        The accepted values with their input positions, and the rejected ones with reasons.

    Raises:
        InvalidIdentifier: the kind is unknown (the whole column is unusable).
        InvalidInput: ``default_region`` is unknown (raw phone columns).
    """
    require_kind(kind)
    if prehashed:
        return _collect(kind, True, values, lambda value: _prehashed_hex(kind, value))
    if kind == "phone":
        return _collect(kind, False, values, _phone_normalizer(default_region))
    if kind == "email":
        return _collect(kind, False, values, normalize_email)
    return _collect(kind, False, values, normalize_maid)


def _phone_normalizer(default_region: str) -> Callable[[str], str]:
    # Look the region up once for the batch, not once a number.
    home = plan_for_region(default_region)
    if home is None:
        return lambda value: normalize_phone_reference(value, default_region)

    def normalize_one(value: str) -> str:
        e164 = e164_fast_path(value, home)
        if e164 is None:
            return normalize_phone_reference(value, default_region)
        return e164

    return normalize_one


def _prehashed_hex(kind: str, value: str) -> str:
    try:
        return parse_prehashed(value).hex()
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(kind, f"pre-hashed value: {exc.reason}") from exc


def _collect(
    kind: str, prehashed: bool, values: Sequence[str], normalize_one: Callable[[str], str]
) -> NormalizedBatch:
    indices: list[int] = []
    normalized: list[str] = []
    rejected: list[Rejection] = []
    for index, value in enumerate(values):
        try:
            result = normalize_one(value)
        except InvalidIdentifier as exc:
            rejected.append(Rejection(index, value, exc.reason))
        else:
            indices.append(index)
            normalized.append(result)
    return NormalizedBatch(kind, prehashed, indices, normalized, rejected)
