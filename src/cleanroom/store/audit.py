"""The append-only, hash-chained audit log.

Every entry stores the SHA-256 of the previous entry and its own hash over
``(seq, at, action, details, prev_hash)``. Changing an entry breaks its own hash; removing or
reordering entries breaks the sequence or the links; removing the newest entries is caught by the
head (last sequence number and hash) kept in ``meta`` and advanced in the same transaction as
every append. Someone able to rewrite the whole file can still rebuild a consistent chain: this
log makes tampering evident, not impossible.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cleanroom.errors import AuditChainBroken

__all__ = ["GENESIS_HASH", "AuditEntry", "append", "entries", "verify"]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64


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
    """

    seq: int
    at: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _entry_hash(seq: int, at: str, action: str, details_json: str, prev_hash: str) -> str:
    material = _canonical([seq, at, action, details_json, prev_hash]).encode("utf-8")
    return hashlib.sha256(material).hexdigest()


def append(conn: sqlite3.Connection, action: str, details: Mapping[str, Any]) -> AuditEntry:
    """Append an entry; call inside the transaction that makes the change it records.

    Recording in the same transaction means a change and its audit entry commit or vanish
    together.

    Args:
        conn: a connection inside a write transaction.
        action: what happened, e.g. ``"match.session"``.
        details: JSON-serializable facts (never key material).

    Returns:
        The entry as stored.
    """
    if not conn.in_transaction:
        raise RuntimeError("audit.append must run inside the transaction making the change")
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    details_json = _canonical(dict(details))
    digest = _entry_hash(seq, at, action, details_json, prev_hash)
    conn.execute(
        "INSERT INTO audit_log (seq, at, action, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (seq, at, action, details_json, prev_hash, digest),
    )
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"{seq}:{digest}",),
    )
    return AuditEntry(seq, at, action, json.loads(details_json), prev_hash, digest)


def entries(conn: sqlite3.Connection, *, limit: int | None = None) -> Iterator[AuditEntry]:
    """The log's entries in order (the last ``limit`` when given).

    Raises:
        AuditChainBroken: an entry's details are not JSON (it was changed).
    """
    query = "SELECT seq, at, action, details, prev_hash, hash FROM audit_log ORDER BY seq"
    if limit is not None:
        query = f"SELECT * FROM ({query} DESC LIMIT {int(limit)}) ORDER BY seq"
    for seq, at, action, details_json, prev_hash, digest in conn.execute(query):
        try:
            details = json.loads(details_json)
        except ValueError as exc:
            raise AuditChainBroken(int(seq), "its details are not JSON (changed)") from exc
        yield AuditEntry(int(seq), at, action, details, prev_hash, digest)


def verify(conn: sqlite3.Connection) -> int:
    """Check the whole chain.

    Returns:
        The number of entries checked.

    Raises:
        AuditChainBroken: naming the first entry that was changed, removed or reordered.
    """
    expected_seq, prev_hash = 1, GENESIS_HASH
    rows = conn.execute(
        "SELECT seq, at, action, details, prev_hash, hash FROM audit_log ORDER BY seq"
    )
    for seq, at, action, details_json, stored_prev, digest in rows:
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
        expected_seq, prev_hash = seq + 1, digest
    head = conn.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    last = expected_seq - 1
    if head is not None and str(head[0]) != f"{last}:{prev_hash}":
        head_seq = int(str(head[0]).split(":", 1)[0])
        if head_seq > last:
            raise AuditChainBroken(
                last + 1, f"the log ends at entry {last} but entry {head_seq} was written (removed)"
            )
        raise AuditChainBroken(last, "the last entry does not match the recorded head (changed)")
    if head is None and last > 0:
        raise AuditChainBroken(last, "the recorded head of the log is missing (changed)")
    return last
