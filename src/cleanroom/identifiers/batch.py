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

# The C path for whole columns (_batch.c); where it was not built, the Python below, which is
# also its reference, does everything.
_c_normalize_emails: Callable[[Sequence[str]], tuple[list[int], list[str], list[int]]] | None
_c_hash_messages: Callable[[bytes, Sequence[str]], list[bytes]] | None
try:
    from cleanroom.identifiers import _batch
except ImportError:  # pragma: no cover - built without a C compiler
    _c_normalize_emails = _c_hash_messages = None
else:
    _c_normalize_emails = _batch.normalize_emails
    _c_hash_messages = _batch.hash_messages

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
        return _hashed(b"", self.values)

    def messages(self) -> list[bytes]:
        """The message to hash to the curve for each accepted value, in ``values`` order."""
        prefix = message_prefix(self.kind)
        if self.prehashed:
            return [prefix + bytes.fromhex(value) for value in self.values]
        return _hashed(prefix, self.values)


def _hashed(prefix: bytes, values: list[str]) -> list[bytes]:
    """``prefix + SHA-256(value)`` of each value, UTF-8 encoded."""
    if _c_hash_messages is not None:
        return _c_hash_messages(prefix, values)
    sha256 = hashlib.sha256
    return [prefix + sha256(value.encode()).digest() for value in values]


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
        return _normalize_emails(values)
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


def _normalize_emails(values: Sequence[str]) -> NormalizedBatch:
    """The C path decides what it can; the values it hands back get the reference's verdict."""
    if _c_normalize_emails is None:
        return _collect("email", False, values, normalize_email)
    indices, normalized, handed_back = _c_normalize_emails(values)
    if not handed_back:
        return NormalizedBatch("email", False, indices, normalized, [])
    rest = _collect("email", False, [values[i] for i in handed_back], normalize_email)
    rejected = [Rejection(handed_back[r.index], r.value, r.reason) for r in rest.rejected]
    if rest.indices:  # accepted by the reference after all: merged back in input order
        late = [handed_back[index] for index in rest.indices]
        merged = sorted(zip([*indices, *late], [*normalized, *rest.values], strict=True))
        indices = [index for index, _ in merged]
        normalized = [value for _, value in merged]
    return NormalizedBatch("email", False, indices, normalized, rejected)


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
