"""Session receipts: the platform's signed statement of what a session released and charged.

The platform's audit log records every completed session in a signed entry; the receipt hands
the advertiser that entry's sequence number and hash with the session's facts, signed with the
same audit key::

    {"receipt": 1, "session": "9f…", "advertiser": "acme", "mode": "count", "count": 1234,
     "reported_as": "1234", "epsilon_charged": 0.5, "noise_applied": true, "epoch": 3,
     "audit_seq": 812, "audit_hash": "3c…", "audit_at": "2025-…Z", "key": "a1b2…",
     "signature": "…128 hex digits…"}

The signature covers every other field (:func:`~cleanroom._signing.canonical_json`, domain
:data:`~cleanroom._signing.RECEIPT_DOMAIN`), so a receipt is checked offline with the
platform's ``audit.pub`` alone (``cleanroom receipt verify``), and later against the log
(``cleanroom platform audit verify --receipt``): a log that lost or changed the entry a receipt
names no longer verifies. The same bytes travel in ``MatchResult.receipt`` and sit in the file
``cleanroom match --receipt`` writes. Parsing is strict: a receipt from a hostile platform is
refused with :class:`~cleanroom.errors.ReceiptInvalid`, never an exception of another kind.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom._signing import RECEIPT_DOMAIN, SigningKey, canonical_json, key_id, sign, verify
from cleanroom.errors import ReceiptInvalid

__all__ = ["MAX_RECEIPT_BYTES", "RECEIPT_VERSION", "Receipt", "issue_receipt", "read_receipt"]

#: Version of the receipt format (its ``"receipt"`` field).
RECEIPT_VERSION: Final = 1

#: Largest receipt read (a real one is about 600 bytes).
MAX_RECEIPT_BYTES: Final = 64 * 1024

#: The receipt's facts that the session's audit entry states under the same names.
ENTRY_FIELDS: Final = (
    "session",
    "advertiser",
    "mode",
    "count",
    "reported_as",
    "epsilon_charged",
    "noise_applied",
    "epoch",
)

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Receipt:
    """A signed session receipt.

    Attributes:
        session: the session id (hex).
        advertiser: the advertiser, as its certificate names it.
        mode: ``count``, ``audience`` or ``ids``.
        count: the released count, ``None`` below the reporting threshold.
        reported_as: the count as reported to people.
        epsilon_charged: privacy loss charged for the session.
        noise_applied: whether the count was noised.
        epoch: the key epoch the session ran in.
        audit_seq: sequence number of the session's audit entry.
        audit_hash: that entry's hash (hex SHA-256).
        audit_at: when the entry was written (ISO 8601 UTC).
        key: id of the audit key that signed (:func:`~cleanroom._signing.key_id`).
        signature: hex Ed25519 signature over every other field.
    """

    session: str
    advertiser: str
    mode: str
    count: int | None
    reported_as: str
    epsilon_charged: float
    noise_applied: bool
    epoch: int
    audit_seq: int
    audit_hash: str
    audit_at: str
    key: str
    signature: str

    def statement(self) -> dict[str, Any]:
        """What the signature covers: every field but the signature, with the format version."""
        fields = asdict(self)
        del fields["signature"]
        return {"receipt": RECEIPT_VERSION, **fields}

    def to_dict(self) -> dict[str, Any]:
        """The receipt as a JSON object (``cleanroom match --json`` prints it as is)."""
        return {**self.statement(), "signature": self.signature}

    def to_json(self, *, indent: int | None = None) -> bytes:
        """The receipt as UTF-8 JSON (compact on the wire, indented in a file)."""
        if indent is None:
            return canonical_json(self.to_dict())
        return (json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n").encode()

    def entry_details(self) -> dict[str, Any]:
        """The facts the session's audit entry must still state."""
        return {name: getattr(self, name) for name in ENTRY_FIELDS}

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Check the signature with the platform's audit key.

        Raises:
            ReceiptInvalid: signed by another key, or any field changed since it was signed.
        """
        expected = key_id(public_key)
        if self.key != expected:
            raise ReceiptInvalid(
                f"the receipt of session {self.session} is signed by audit key {self.key}, "
                f"not by {expected} (the key given)"
            )
        signature = bytes.fromhex(self.signature)
        if not verify(public_key, RECEIPT_DOMAIN, canonical_json(self.statement()), signature):
            raise ReceiptInvalid(
                f"the receipt of session {self.session} does not verify with audit key "
                f"{expected}: it was changed after it was signed"
            )

    def check_result(
        self,
        *,
        session_id: bytes,
        mode: str,
        count: int | None,
        epsilon_charged: float,
        epoch: int,
    ) -> None:
        """Check that the receipt states the result it came with.

        Raises:
            ReceiptInvalid: it names another session, mode, count, charge or epoch.
        """
        stated = {
            "session": (self.session, session_id.hex()),
            "mode": (self.mode, mode),
            "count": (self.count, count),
            "epsilon_charged": (self.epsilon_charged, epsilon_charged),
            "epoch": (self.epoch, epoch),
        }
        for name, (in_receipt, in_result) in stated.items():
            if in_receipt != in_result:
                raise ReceiptInvalid(
                    f"the platform's receipt says {name} {in_receipt!r}, but the result says "
                    f"{in_result!r}"
                )


def issue_receipt(signing_key: SigningKey, **fields: Any) -> Receipt:
    """Sign a receipt (the platform's side).

    Args:
        signing_key: the audit key.
        fields: every field of :class:`Receipt` but ``key`` and ``signature``.
    """
    fields = {**fields, "epsilon_charged": float(fields["epsilon_charged"])}
    unsigned = Receipt(**fields, key=key_id(signing_key.public_key), signature="")
    signature = sign(signing_key, RECEIPT_DOMAIN, canonical_json(unsigned.statement()))
    return Receipt(**{**asdict(unsigned), "signature": signature.hex()})


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "session": (str,),
    "advertiser": (str,),
    "mode": (str,),
    "count": (int, type(None)),
    "reported_as": (str,),
    "epsilon_charged": (float, int),
    "noise_applied": (bool,),
    "epoch": (int,),
    "audit_seq": (int,),
    "audit_hash": (str,),
    "audit_at": (str,),
    "key": (str,),
    "signature": (str,),
}


def read_receipt(data: bytes) -> Receipt:
    """Parse a receipt (from the wire or a file), checking every field's type and form.

    The signature is not checked here (:meth:`Receipt.verify` does, with the key).

    Raises:
        ReceiptInvalid: not a receipt of this format, naming what is wrong.
    """
    if len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptInvalid(f"a receipt of {len(data)} bytes is larger than any receipt")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ReceiptInvalid("the receipt is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise ReceiptInvalid("the receipt is not a JSON object")
    if document.get("receipt") != RECEIPT_VERSION:
        raise ReceiptInvalid(
            f"not a receipt of version {RECEIPT_VERSION} (its 'receipt' field is "
            f"{document.get('receipt')!r})"
        )
    unknown = sorted(set(document) - set(_TYPES) - {"receipt"})
    if unknown:
        raise ReceiptInvalid(f"the receipt has unknown fields: {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name, types in _TYPES.items():
        if name not in document:
            raise ReceiptInvalid(f"the receipt has no {name!r}")
        value = document[name]
        # bool is an int in Python: accept it only where a bool is meant.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ReceiptInvalid(f"the receipt's {name!r} is {value!r}, of the wrong type")
        fields[name] = value
    charged = float(fields["epsilon_charged"])
    if not math.isfinite(charged) or charged < 0:
        raise ReceiptInvalid(f"the receipt's epsilon_charged {charged!r} is not a charge")
    fields["epsilon_charged"] = charged
    for name, size in (("session", None), ("audit_hash", 64), ("key", 16), ("signature", 128)):
        value = fields[name]
        if _HEX.fullmatch(value) is None or (size is not None and len(value) != size):
            raise ReceiptInvalid(f"the receipt's {name!r} is not {size or 'some'} hex digits")
    if fields["audit_seq"] < 1 or fields["epoch"] < 0:
        raise ReceiptInvalid("the receipt names no audit entry or epoch")
    return Receipt(**fields)
