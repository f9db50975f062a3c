"""The append-only, hash-chained, signed audit log.

Every entry stores the SHA-256 of the previous entry and its own hash over
``(seq, at, action, details, prev_hash)``, and an Ed25519 signature of its hash (and the
database's instance id) by the audit key, which lives outside the database
(:mod:`~cleanroom.store.audit_key`). What each layer catches:

- the triggers stop accidents: UPDATE, DELETE, and INSERT OR REPLACE / REPLACE / UPSERT (an
  insert must take the next sequence number);
- the chain catches a changed, removed or reordered entry;
- the signatures catch what someone with write access to the file does past the triggers
  (``DROP TRIGGER``, ``writable_schema``, editing the bytes): recomputing the hashes of a changed
  entry and all its successors needs the key;
- :func:`verify` also recomputes, from the signed entries, every session's outcome and each
  advertiser's privacy budget spent per epoch, and fails if the session ledger disagrees;
- truncation of the newest entries (a rollback) leaves a chain that verifies on its own: the
  receipts given to advertisers pin entries, and a receipt whose entry is gone or changed
  fails :func:`verify`.

A database made before signing began keeps its earlier entries unsigned; the signed
``schema.migrate`` entry that follows them covers them through the chain. After the first
signed entry every entry must be signed, and the first signed entry is always either the
database's ``database.init`` (entry 1) or a ``schema.migrate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom import _signing
from cleanroom._signing import ENTRY_DOMAIN, canonical_json, key_id
from cleanroom.errors import AuditChainBroken, LedgerMismatch
from cleanroom.store.audit_key import read_public_key

if TYPE_CHECKING:
    from cleanroom.store.database import Database

__all__ = [
    "GENESIS_HASH",
    "SESSION_ACTIONS",
    "AuditEntry",
    "AuditVerification",
    "PinnedEntry",
    "append",
    "entries",
    "entry",
    "verify",
]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

#: The one entry each finished session gets, by the ledger state it records.
SESSION_ACTIONS: Final[Mapping[str, str]] = {
    "match.completed": "completed",
    "match.refused": "refused",
    "match.aborted": "aborted",
}

#: Actions that may be the first signed entry of a log.
_SIGNING_STARTS: Final = frozenset({"database.init", "schema.migrate"})

#: Tolerance of the budget comparison: sums of the same floats in another order.
_EPSILON_TOLERANCE: Final = 1e-9


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry.

    Attributes:
        seq: position in the log, from 1, without gaps.
        at: when it was appended (ISO 8601 UTC with microseconds).
        action: what happened, dotted (``import``, ``consent.revoke``, ``epoch.rotate`` …).
        details: the facts of the action (JSON object).
        prev_hash: ``hash`` of entry ``seq - 1`` (:data:`GENESIS_HASH` for the first).
        hash: SHA-256 over the fields above.
        signature: hex Ed25519 signature by the audit key; ``None`` for an entry written
            before the database was migrated to signed entries.
    """

    seq: int
    at: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    signature: str | None = None


@dataclass(frozen=True)
class PinnedEntry:
    """An entry someone outside the platform holds proof of (a session receipt).

    Attributes:
        seq: the entry's sequence number.
        hash: its hash when the proof was made.
        details: facts the entry's details must still state (``{"session": …, "count": …}``).
        source: what pinned it, for messages (``receipt r.json``).
    """

    seq: int
    hash: str
    details: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class AuditVerification:
    """What :func:`verify` checked.

    Attributes:
        entries: entries in the log.
        last_at: when the last entry was written (and signed).
        first_signed: the first signed entry (1 unless the database was migrated).
        key_id: the audit key the signatures verified with.
        sessions: finished sessions whose ledger rows agree with their entries.
        pinned: pinned entries (receipts) found unchanged.
    """

    entries: int
    last_at: str
    first_signed: int
    key_id: str
    sessions: int
    pinned: int = 0
    budgets: dict[tuple[str, int], float] = field(default_factory=dict)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_hash(seq: int, at: str, action: str, details_json: str, prev_hash: str) -> str:
    material = _canonical([seq, at, action, details_json, prev_hash]).encode("utf-8")
    return hashlib.sha256(material).hexdigest()


def _signed_message(instance_id: str, seq: int, digest: str) -> bytes:
    # The instance id binds the signature to this database: an entry copied into another
    # database signed with the same key does not verify there.
    return canonical_json([instance_id, seq, digest])


def append(db: Database, action: str, details: Mapping[str, Any]) -> AuditEntry:
    """Append a signed entry; call inside the transaction that makes the change it records.

    Recording in the same transaction means a change and its audit entry commit or vanish
    together.

    Args:
        db: the platform database, inside a write transaction.
        action: what happened, e.g. ``"match.completed"``.
        details: JSON-serializable facts (never key material).

    Returns:
        The entry as stored.

    Raises:
        StoreError: the audit signing key is missing or unsafe.
    """
    conn = db.conn
    if not conn.in_transaction:
        raise RuntimeError("audit.append must run inside the transaction making the change")
    signing_key = db.audit_signing_key()
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    details_json = _canonical(dict(details))
    digest = _entry_hash(seq, at, action, details_json, prev_hash)
    message = _signed_message(db.instance_id, seq, digest)
    signature = _signing.sign(signing_key, ENTRY_DOMAIN, message).hex()
    conn.execute(
        "INSERT INTO audit_log (seq, at, action, details, prev_hash, hash, signature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, at, action, details_json, prev_hash, digest, signature),
    )
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"{seq}:{digest}",),
    )
    return AuditEntry(seq, at, action, json.loads(details_json), prev_hash, digest, signature)


_COLUMNS = "seq, at, action, details, prev_hash, hash, signature"


def _parse(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, action, details_json, prev_hash, digest, signature = row
    try:
        details = json.loads(details_json)
    except ValueError as exc:
        raise AuditChainBroken(int(seq), "its details are not JSON (changed)") from exc
    return AuditEntry(int(seq), at, action, details, prev_hash, digest, signature)


def entries(conn: sqlite3.Connection, *, limit: int | None = None) -> Iterator[AuditEntry]:
    """The log's entries in order (the last ``limit`` when given).

    Raises:
        AuditChainBroken: an entry's details are not JSON (it was changed).
    """
    query = f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq"
    if limit is not None:
        query = f"SELECT * FROM ({query} DESC LIMIT {int(limit)}) ORDER BY seq"
    for row in conn.execute(query):
        yield _parse(row)


def entry(conn: sqlite3.Connection, seq: int) -> AuditEntry | None:
    """The entry ``seq``, or ``None``.

    Raises:
        AuditChainBroken: its details are not JSON (it was changed).
    """
    row = conn.execute(f"SELECT {_COLUMNS} FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else _parse(row)


def verify(
    db: Database,
    public_key: Ed25519PublicKey | None = None,
    pinned: Sequence[PinnedEntry] = (),
) -> AuditVerification:
    """Check the whole log: chain, signatures, the ledger against it, and pinned entries.

    Everything is read in one transaction, so a server writing meanwhile cannot make a
    consistent log look broken.

    Args:
        db: the platform database.
        public_key: the audit key's public half (default: the ``audit.pub`` beside the
            database).
        pinned: entries that receipts pin.

    Returns:
        What was checked.

    Raises:
        AuditChainBroken: naming the first entry changed, removed, reordered, unsigned or
            signed by another key; or a pinned entry that is gone or changed.
        StoreError: there is no ``audit.pub`` to check with.
        LedgerMismatch: the session ledger disagrees with the signed entries (a session's
            state or charge, or an advertiser's budget spent in an epoch).
    """
    if public_key is None:
        public_key = read_public_key(db.audit_public_key_path)
    conn = db.conn
    # One read transaction (unless the caller's is open): a consistent snapshot of log and ledger.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        last, last_at, first_signed, sessions = _verify_chain(db, public_key)
        for pin in pinned:
            _verify_pin(conn, pin, last)
        budgets, checked = _verify_ledger(conn, sessions)
    finally:
        if own:
            conn.execute("COMMIT")
    return AuditVerification(
        entries=last,
        last_at=last_at,
        first_signed=first_signed,
        key_id=key_id(public_key),
        sessions=checked,
        pinned=len(pinned),
        budgets=budgets,
    )


@dataclass(frozen=True)
class _SessionEntry:
    seq: int
    state: str
    advertiser: str
    epoch: int | None
    epsilon: float


def _verify_chain(
    db: Database, public_key: Ed25519PublicKey
) -> tuple[int, str, int, dict[int, _SessionEntry]]:
    """Walk the chain; return the last seq, its time, the first signed seq and the sessions."""
    expected_seq, prev_hash, last_at = 1, GENESIS_HASH, ""
    first_signed: int | None = None
    sessions: dict[int, _SessionEntry] = {}
    for row in db.conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq"):
        seq, at, action, details_json, stored_prev, digest, signature = row
        if seq != expected_seq:
            if seq > expected_seq:
                missing = (
                    f"entry {expected_seq} is missing (removed)"
                    if seq == expected_seq + 1
                    else f"entries {expected_seq}-{seq - 1} are missing (removed)"
                )
                raise AuditChainBroken(expected_seq, missing)
            raise AuditChainBroken(seq, "sequence number out of order")
        if _entry_hash(seq, at, action, details_json, stored_prev) != digest:
            raise AuditChainBroken(seq, "its content does not match its hash (changed or moved)")
        if stored_prev != prev_hash:
            # The entry itself is intact, so what it was chained to is not what precedes it now.
            raise AuditChainBroken(
                seq,
                f"it does not follow entry {seq - 1} (an entry before it was changed, "
                "removed or moved)",
            )
        if signature is None:
            if first_signed is not None:
                raise AuditChainBroken(
                    seq,
                    f"it is not signed, though the log is signed from entry {first_signed} on "
                    "(its signature was removed)",
                )
        else:
            if first_signed is None:
                if action not in _SIGNING_STARTS or (action == "database.init" and seq != 1):
                    raise AuditChainBroken(
                        seq,
                        "the first signed entry is neither the database's creation nor a "
                        "migration (entries were added or removed before it)",
                    )
                first_signed = seq
            if not _signature_verifies(public_key, db.instance_id, seq, digest, signature):
                raise AuditChainBroken(
                    seq,
                    f"its signature does not verify with the audit key {key_id(public_key)} "
                    "(rewritten without the key, or signed by another key)",
                )
        if action in SESSION_ACTIONS:
            _collect_session(sessions, seq, action, details_json)
        expected_seq, prev_hash, last_at = seq + 1, digest, at
    last = expected_seq - 1
    if last == 0:
        raise AuditChainBroken(
            1,
            "the log is empty, but every database's log begins with its signed creation "
            "(entries were deleted)",
        )
    if first_signed is None:
        raise AuditChainBroken(
            last,
            "no entry is signed, but the log is signed from its creation or migration on "
            "(entries were deleted or their signatures removed)",
        )
    _verify_head(db.conn, last, prev_hash)
    return last, last_at, first_signed, sessions


def _signature_verifies(
    public_key: Ed25519PublicKey, instance_id: str, seq: int, digest: str, signature: str
) -> bool:
    try:
        raw = bytes.fromhex(signature)
    except (ValueError, TypeError):
        return False
    return _signing.verify(public_key, ENTRY_DOMAIN, _signed_message(instance_id, seq, digest), raw)


def _collect_session(
    sessions: dict[int, _SessionEntry], seq: int, action: str, details_json: str
) -> None:
    details = json.loads(details_json)
    ledger_id = details.get("ledger_id")
    if not isinstance(ledger_id, int):
        return  # not a session entry of the ledger's (none is written without one)
    if ledger_id in sessions:
        raise LedgerMismatch(
            f"entries {sessions[ledger_id].seq} and {seq} both record the end of ledger "
            f"session {ledger_id}"
        )
    charged = details.get("epsilon_charged", 0.0) if action == "match.completed" else 0.0
    sessions[ledger_id] = _SessionEntry(
        seq=seq,
        state=SESSION_ACTIONS[action],
        advertiser=str(details.get("advertiser")),
        epoch=details.get("epoch"),
        epsilon=float(charged or 0.0),
    )


def _verify_head(conn: sqlite3.Connection, last: int, last_hash: str) -> None:
    head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    if head is None:
        raise AuditChainBroken(last, "the recorded head of the log is missing (changed)")
    if str(head[0]) != f"{last}:{last_hash}":
        head_seq_text = str(head[0]).split(":", 1)[0]
        head_seq = int(head_seq_text) if head_seq_text.isdigit() else last
        if head_seq > last:
            raise AuditChainBroken(
                last + 1, f"the log ends at entry {last} but entry {head_seq} was written (removed)"
            )
        raise AuditChainBroken(last, "the last entry does not match the recorded head (changed)")


def _verify_ledger(
    conn: sqlite3.Connection, sessions: dict[int, _SessionEntry]
) -> tuple[dict[tuple[str, int], float], int]:
    """Every finished ledger row against its entry, then each budget spent per epoch.

    Returns:
        The budget spent per (advertiser, epoch) by the signed entries, and the sessions checked.
    """
    from_chain: dict[tuple[str, int], float] = defaultdict(float)
    for charged_entry in sessions.values():
        if charged_entry.state == "completed" and charged_entry.epoch is not None:
            from_chain[(charged_entry.advertiser, int(charged_entry.epoch))] += (
                charged_entry.epsilon
            )
    from_ledger: dict[tuple[str, int], float] = defaultdict(float)
    rows = conn.execute(
        "SELECT id, advertiser, epoch_id, state, epsilon_charged FROM match_sessions ORDER BY id"
    ).fetchall()
    first_difference: dict[tuple[str, int], str] = {}
    seen: set[int] = set()
    for row_id, advertiser, epoch_id, state, charged in rows:
        if state == "completed" and epoch_id is not None:
            from_ledger[(str(advertiser), int(epoch_id))] += float(charged)
        recorded = sessions.get(int(row_id))
        if recorded is None:
            if state != "open":
                raise LedgerMismatch(
                    f"ledger session {row_id} of {advertiser} is {state}, but no signed entry "
                    "records its end (the ledger was changed outside the platform)"
                )
            continue
        seen.add(int(row_id))
        where = f"ledger session {row_id} ({advertiser}, epoch {epoch_id})"
        if state != recorded.state:
            raise LedgerMismatch(
                f"{where} is {state} in the ledger but {recorded.state} in entry {recorded.seq}"
            )
        if str(advertiser) != recorded.advertiser or epoch_id != recorded.epoch:
            raise LedgerMismatch(
                f"{where} names another advertiser or epoch than entry {recorded.seq} "
                f"({recorded.advertiser}, epoch {recorded.epoch})"
            )
        if not math.isclose(float(charged), recorded.epsilon, abs_tol=_EPSILON_TOLERANCE):
            difference = (
                f"{where}: epsilon {float(charged):g} in the ledger, "
                f"{recorded.epsilon:g} in entry {recorded.seq}"
            )
            if state != "completed" or epoch_id is None:
                raise LedgerMismatch(difference)
            first_difference.setdefault((str(advertiser), int(epoch_id)), difference)
    missing = sorted(set(sessions) - seen)
    if missing:
        lost = sessions[missing[0]]
        raise LedgerMismatch(
            f"entry {lost.seq} records ledger session {missing[0]} of {lost.advertiser}, "
            "which the ledger no longer has (deleted)"
        )
    for key in sorted(set(from_chain) | set(from_ledger)):
        by_chain, by_ledger = from_chain.get(key, 0.0), from_ledger.get(key, 0.0)
        if not math.isclose(by_chain, by_ledger, abs_tol=_EPSILON_TOLERANCE):
            advertiser, epoch = key
            detail = first_difference.get(key, "")
            raise LedgerMismatch(
                f"advertiser {advertiser} has spent epsilon {by_ledger:g} in epoch {epoch} by "
                f"the session ledger, but {by_chain:g} by the signed log"
                + (f" ({detail})" if detail else "")
            )
    if first_difference:
        raise LedgerMismatch(next(iter(first_difference.values())))
    return dict(from_chain), len(seen)


def _verify_pin(conn: sqlite3.Connection, pin: PinnedEntry, last: int) -> None:
    found = entry(conn, pin.seq)
    if found is None:
        raise AuditChainBroken(
            pin.seq,
            f"{pin.source} holds entry {pin.seq}, but the log ends at entry {last} "
            "(truncated or rolled back)",
        )
    if found.hash != pin.hash:
        raise AuditChainBroken(
            pin.seq,
            f"{pin.source} holds entry {pin.seq} with hash {pin.hash[:16]}…, but the log's "
            f"entry {pin.seq} is {found.hash[:16]}… (rewritten or rolled back)",
        )
    for name, value in pin.details.items():
        if found.details.get(name) != value:
            raise AuditChainBroken(
                pin.seq,
                f"{pin.source} says {name} = {value!r}, entry {pin.seq} says "
                f"{found.details.get(name)!r}",
            )
