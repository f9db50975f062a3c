"""The exception tree of cleanroom.

Every error the library raises on purpose derives from :class:`CleanroomError`, so a caller (the
CLI, the gRPC adapter) catches one base. Errors caused by bad input also derive from
``ValueError`` so generic callers treat them as such::

    CleanroomError
    ├── InvalidInput (ValueError)          bad data from a caller or the other party
    │   ├── InvalidElement                 an encoded group element failed validation
    │   ├── InvalidIdentifier              an identifier could not be normalized
    │   ├── InvalidKey                     key bytes of the wrong size or form
    │   ├── ImportFailed                   an input file cannot be imported at all (nothing written)
    │   ├── UnknownUser                    a command named a user the platform does not have
    │   ├── InvalidMessage                 a protocol message is malformed (sizes, counts, fields)
    │   └── InvalidPolicy                  the policy file has an unknown key or a bad value
    ├── UnknownSuite (ValueError)          a ciphersuite id this build does not implement
    ├── StoreError                         the platform database cannot be used as asked
    │   ├── NotOurDatabase                 the file is not a cleanroom platform database
    │   ├── AuditChainBroken               the audit log was changed, cut, reordered or re-signed
    │   └── LedgerMismatch                 the session ledger disagrees with the signed audit log
    ├── ProtocolError                      the other party broke the order of the protocol
    │   ├── OutOfOrder                     a message arrived in a round where it is not allowed
    │   ├── WrongSession                   a message carries another session's id
    │   └── VersionMismatch                another protocol or normalization version, or suite
    ├── PolicyRefused                      the platform's policy refuses the session (mode, size)
    ├── LimitExceeded                      a size, rate or privacy-budget limit would be exceeded
    │   └── BudgetExhausted                the session would exceed the advertiser's epsilon budget
    ├── DeadlineExceeded                   the other party did not send what was due in time
    ├── Unauthenticated                    the caller's identity could not be established
    ├── PermissionDenied                   the caller is known but may not do this
    ├── TlsConfigError                     TLS files missing, unreadable, mismatched or unsafe
    ├── PlatformError                      the platform refused or failed a session (`error`: why)
    │   ├── PlatformRefused                its policy, a limit, the budget, identity, a bad request
    │   └── PlatformFailed                 it failed on its side, or sent what the client rejects
    ├── PlatformUnreachable                the platform cannot be reached or did not answer in time
    ├── ListenFailed                       the server cannot listen on the address it was given
    ├── SessionAborted                     a match session was aborted before it completed
    ├── ReceiptInvalid                     a session receipt's signature or contents do not verify
    ├── DemoFailed                         a step of `cleanroom demo` failed (a command, a check)
    ├── ClusterUnreachable                 the Dask cluster is unreachable, workerless, or failed
    └── BackendUnavailable                 the X25519 backend asked for cannot run on this machine

The advertiser's side raises a :class:`PlatformError` for everything that comes from the
platform rather than from its own input, with the platform's own error (rebuilt from the call's
status) as its ``error`` attribute, so a caller tells "fix my list" (:class:`InvalidInput`) from
"the platform said no" (:class:`PlatformRefused`) by the class alone.

Messages never contain key material: an error names the row, the field and the reason.
"""

from __future__ import annotations

__all__ = [
    "AuditChainBroken",
    "BackendUnavailable",
    "BudgetExhausted",
    "CleanroomError",
    "ClusterUnreachable",
    "DeadlineExceeded",
    "DemoFailed",
    "ImportFailed",
    "InvalidElement",
    "InvalidIdentifier",
    "InvalidInput",
    "InvalidKey",
    "InvalidMessage",
    "InvalidPolicy",
    "LedgerMismatch",
    "LimitExceeded",
    "ListenFailed",
    "NotOurDatabase",
    "OutOfOrder",
    "PermissionDenied",
    "PlatformError",
    "PlatformFailed",
    "PlatformRefused",
    "PlatformUnreachable",
    "PolicyRefused",
    "ProtocolError",
    "ReceiptInvalid",
    "SessionAborted",
    "StoreError",
    "TlsConfigError",
    "Unauthenticated",
    "UnknownSuite",
    "UnknownUser",
    "VersionMismatch",
    "WrongSession",
]


class CleanroomError(Exception):
    """Base of every error cleanroom raises on purpose."""


class InvalidInput(CleanroomError, ValueError):
    """Input from a caller or from the other party is malformed."""


class InvalidElement(InvalidInput):
    """An encoded group element is malformed, off the curve, or of small order.

    Attributes:
        row: index of the first bad row in the array that was validated, or ``None``.
        reason: why it was rejected, in words.
    """

    def __init__(self, reason: str, row: int | None = None) -> None:
        self.row = row
        self.reason = reason
        where = f"element at row {row}: " if row is not None else "element: "
        super().__init__(where + reason)

    def __reduce__(self) -> tuple[type[InvalidElement], tuple[str, int | None]]:
        # Rebuild from the fields, not the message, so the row survives a trip between processes.
        return (type(self), (self.reason, self.row))


class InvalidIdentifier(InvalidInput):
    """An identifier could not be normalized.

    Attributes:
        kind: the identifier type (``email``, ``phone``, ``maid``).
        reason: why it was rejected, in words a person understands.
    """

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"invalid {kind}: {reason}")

    def __reduce__(self) -> tuple[type[InvalidIdentifier], tuple[str, str]]:
        return (type(self), (self.kind, self.reason))


class InvalidKey(InvalidInput):
    """Key bytes are of the wrong size or form. The message never contains the bytes."""


class UnknownSuite(CleanroomError, ValueError):
    """The ciphersuite id is not one this build implements."""


class ImportFailed(InvalidInput):
    """An input file cannot be imported at all: unreadable, not UTF-8, or missing a column.

    Raised before anything is written; rows that are merely bad are reported and skipped instead.
    """


class UnknownUser(InvalidInput):
    """A command named a user id the platform database does not hold."""


class StoreError(CleanroomError):
    """The platform database (or its key directory) cannot be used as asked."""


class NotOurDatabase(StoreError):
    """The file is not a cleanroom platform database, or one of a schema this build cannot read."""


class AuditChainBroken(StoreError):
    """The audit log's hash chain does not verify.

    Attributes:
        entry: sequence number of the first entry found changed, removed or out of order.
        reason: what was found there, in words.
    """

    def __init__(self, entry: int, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        super().__init__(f"audit log broken at entry {entry}: {reason}")

    def __reduce__(self) -> tuple[type[AuditChainBroken], tuple[int, str]]:
        return (type(self), (self.entry, self.reason))


class LedgerMismatch(StoreError):
    """The ledger of match sessions disagrees with the signed audit log: a session's state or
    charge, or an advertiser's privacy budget spent in an epoch, was changed in one and not the
    other (the ledger is what the budget check reads; the signed log is what holds)."""


class InvalidMessage(InvalidInput):
    """A protocol message is malformed: a missing field, a wrong size, count or offset."""


class InvalidPolicy(InvalidInput):
    """The policy file cannot be used: bad TOML, an unknown key, a wrong type or a bad value.

    The message names the key (``advertisers.NAME.key`` for a per-advertiser override).
    """


class ProtocolError(CleanroomError):
    """The other party broke the order or framing of the protocol."""


class OutOfOrder(ProtocolError):
    """A message arrived in a round where it is not allowed."""


class WrongSession(ProtocolError):
    """A message carries the id of another session than the one it arrived in."""


class VersionMismatch(ProtocolError):
    """The parties speak different protocol or normalization versions, or a different suite."""


class PolicyRefused(CleanroomError):
    """The platform's policy refuses the session: a mode not allowed, a list too small, or
    another session of the same advertiser still open."""


class LimitExceeded(CleanroomError):
    """A size or rate limit would be exceeded (list too large, too many sessions today, a chunk
    too large)."""


class BudgetExhausted(LimitExceeded):
    """The session would take the advertiser's privacy loss (epsilon) over its budget."""


class DeadlineExceeded(CleanroomError):
    """The other party did not send what was due in time (a stream that never opened a
    session within the first-message deadline)."""


class Unauthenticated(CleanroomError):
    """The caller's identity could not be established (no or an invalid client certificate)."""


class PermissionDenied(CleanroomError):
    """The caller is known but is not allowed to do what it asked."""


class TlsConfigError(CleanroomError):
    """The TLS folder cannot be used: a file is missing, unreadable, not PEM, readable by others,
    expired, or not issued by the folder's CA; or an existing CA would be overwritten.

    The message names the file and what to do; it never contains key material.
    """


class PlatformError(CleanroomError):
    """The platform refused or failed a session or a call (raised on the advertiser's side).

    Attributes:
        error: the error behind it: the one the platform raised, rebuilt from the call's status
            (e.g. :class:`BudgetExhausted`), or the one this client raised on what the platform
            sent or published (e.g. :class:`InvalidElement`).
    """

    def __init__(self, message: str, error: CleanroomError) -> None:
        self.error = error
        super().__init__(message)

    def __reduce__(self) -> tuple[type[PlatformError], tuple[str, CleanroomError]]:
        return (type(self), (str(self), self.error))


class PlatformRefused(PlatformError):
    """The platform refuses the session as asked: its policy (a mode not allowed, a list too
    small or too large, no session left today, the budget, no common suite or version), the
    caller's identity, or a request it found invalid. Raised as well, before anything is hashed,
    when the policy the platform published already says so."""


class PlatformFailed(PlatformError):
    """The platform failed the session on its side (its database, a bug: the details stay
    there), or sent what this client must reject (an invalid element, a message out of order,
    no result): the session is cancelled and nothing is released."""


class PlatformUnreachable(CleanroomError):
    """The platform cannot be reached (down, wrong address, TLS refused) or did not answer
    before the call's deadline. The message names the address and what to check."""


class ListenFailed(CleanroomError):
    """The platform server cannot listen on the address it was given: the port is in use, the
    address is not one of this machine's, or the port needs privileges."""


class SessionAborted(CleanroomError):
    """A match session was aborted before it completed (the client went away, the server is
    stopping, or the session ran past its time limit): nothing was charged or stored."""


class ReceiptInvalid(CleanroomError):
    """A session receipt does not verify: its signature is not the platform's audit key's, it
    cannot be read, or it states another session, count or charge than the result it came
    with."""


class DemoFailed(CleanroomError):
    """A step of ``cleanroom demo`` failed: a command it ran exited with an error, or the server
    did not start or stop as it should. The message names the step and where its log is."""


class ClusterUnreachable(CleanroomError):
    """The Dask cluster given by ``--dask-scheduler`` cannot be used: its scheduler does not
    answer within seconds, it has no workers, or it was lost (or kept losing the workers of a
    task) during a job. The message names the address and what to check."""


class BackendUnavailable(CleanroomError):
    """The X25519 backend that ``CLEANROOM_X25519`` asks for cannot run here (``ifma`` on a CPU
    without AVX-512 IFMA, or a build without the extension), or the variable has an unknown
    value. The message says which and why."""
