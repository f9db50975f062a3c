"""Session receipts: signed by the audit key, checked offline, parsed strictly."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanroom._signing import SigningKey, key_id
from cleanroom.errors import ReceiptInvalid
from cleanroom.protocol import issue_receipt, read_receipt

FACTS: dict[str, Any] = {
    "session": "ab" * 16,
    "advertiser": "acme",
    "mode": "audience",
    "count": 1234,
    "reported_as": "1234",
    "epsilon_charged": 0.5,
    "noise_applied": True,
    "epoch": 3,
    "audit_seq": 812,
    "audit_hash": "3c" * 32,
    "audit_at": "2025-01-01T00:00:00.000000Z",
}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def test_a_receipt_round_trips_through_the_wire_and_a_file_and_verifies(key: SigningKey) -> None:
    receipt = issue_receipt(key, **FACTS)
    assert receipt.key == key_id(key.public_key) and len(receipt.signature) == 128
    for data in (receipt.to_json(), receipt.to_json(indent=2)):
        parsed = read_receipt(data)
        assert parsed == receipt
        parsed.verify(key.public_key)
    assert receipt.entry_details()["count"] == 1234 and "audit_seq" not in receipt.entry_details()
    assert receipt.to_dict()["receipt"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("count", 1235), ("epsilon_charged", 0.0), ("audit_seq", 813), ("advertiser", "globex")],
)
def test_a_changed_fact_breaks_the_signature(key: SigningKey, field: str, value: Any) -> None:
    document = issue_receipt(key, **FACTS).to_dict()
    document[field] = value
    forged = read_receipt(json.dumps(document).encode())
    with pytest.raises(ReceiptInvalid, match="changed after it was signed"):
        forged.verify(key.public_key)


def test_another_platforms_key_is_named(key: SigningKey) -> None:
    other = SigningKey.generate()
    with pytest.raises(ReceiptInvalid, match=f"signed by audit key {key_id(key.public_key)}"):
        issue_receipt(key, **FACTS).verify(other.public_key)
    # A receipt claiming the other key's id still fails: the signature is checked, not the id.
    document = issue_receipt(key, **FACTS).to_dict()
    document["key"] = key_id(other.public_key)
    with pytest.raises(ReceiptInvalid, match="changed after it was signed"):
        read_receipt(json.dumps(document).encode()).verify(other.public_key)


def test_a_receipt_for_another_result_is_refused(key: SigningKey) -> None:
    receipt = issue_receipt(key, **FACTS)
    right = {
        "session_id": bytes.fromhex(FACTS["session"]),
        "mode": "audience",
        "count": 1234,
        "epsilon_charged": 0.5,
        "epoch": 3,
    }
    receipt.check_result(**right)
    for name, value in (("count", None), ("epoch", 4), ("session_id", bytes(16)), ("mode", "ids")):
        with pytest.raises(ReceiptInvalid, match="the platform's receipt says"):
            receipt.check_result(**{**right, name: value})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b'{"receipt": 2}', "not a receipt of version 1"),
        (b" " * 70_000, "larger than any receipt"),
    ],
)
def test_what_is_not_a_receipt_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ReceiptInvalid, match=message):
        read_receipt(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", True, "of the wrong type"),
        ("epoch", "3", "of the wrong type"),
        ("noise_applied", 1, "of the wrong type"),
        ("epsilon_charged", -1.0, "not a charge"),
        ("audit_hash", "zz" * 32, "not 64 hex digits"),
        ("signature", "00", "not 128 hex digits"),
        ("audit_seq", 0, "names no audit entry"),
        ("extra", 1, "unknown fields: extra"),
    ],
)
def test_malformed_fields_are_named(key: SigningKey, field: str, value: Any, message: str) -> None:
    document = issue_receipt(key, **FACTS).to_dict()
    document[field] = value
    with pytest.raises(ReceiptInvalid, match=message):
        read_receipt(json.dumps(document).encode())
    del document[field]
    if field != "extra":
        with pytest.raises(ReceiptInvalid, match=f"has no '{field}'"):
            read_receipt(json.dumps(document).encode())


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=140))
FIELDS = [*FACTS, "receipt", "key", "signature"]


@given(
    changes=st.dictionaries(st.sampled_from([*FIELDS, "other"]), SCALARS, max_size=6),
    removed=st.sets(st.sampled_from(FIELDS), max_size=3),
)
def test_any_tampered_document_is_refused_cleanly(
    key: SigningKey, changes: dict[str, Any], removed: set[str]
) -> None:
    document = {**issue_receipt(key, **FACTS).to_dict(), **changes}
    for name in removed:
        document.pop(name, None)
    original = issue_receipt(key, **FACTS).to_dict()
    try:
        parsed = read_receipt(json.dumps(document).encode())
        parsed.verify(key.public_key)
    except ReceiptInvalid:
        return
    # Only an unchanged receipt gets through (its signature is Ed25519's: deterministic).
    assert {k: v for k, v in document.items() if k != "signature"} == {
        k: v for k, v in original.items() if k != "signature"
    }


def test_the_signing_key_never_shows_itself(
    key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    secret = key.private_bytes().hex()
    shown = [repr(key), str(key), f"{key}"]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("key %s", key)
    shown.append(caplog.text)
    assert all(secret not in text and key_id(key.public_key) in text for text in shown)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(key)
