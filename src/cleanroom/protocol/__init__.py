"""The matching protocol's two roles as state machines, with no I/O (DESIGN §3).

:class:`AdvertiserRole` and :class:`PlatformRole` take and return the generated protobuf
messages of ``proto/cleanroom/v1/matcher.proto``; they run the same in tests, in-process, and
behind the gRPC service, which only carries their messages and persists their outcome.
"""

from __future__ import annotations

from cleanroom.protocol._advertiser import AdvertiserResult, AdvertiserRole, ListEncryption
from cleanroom.protocol._constants import (
    DEFAULT_MAX_PLATFORM_SET_SIZE,
    MAX_CHUNK_BYTES,
    PROTOCOL_VERSION,
    RECORD_TAG_SIZE,
    SESSION_ID_SIZE,
)
from cleanroom.protocol._local import run_locally
from cleanroom.protocol._platform import (
    PlatformInputs,
    PlatformOutcome,
    PlatformRole,
    SessionRequest,
    check_advertiser_set_size,
    read_open_session,
)
from cleanroom.protocol._policy_info import (
    SessionTerms,
    check_policy_info,
    policy_info,
    session_terms,
)
from cleanroom.protocol._receipt import Receipt, issue_receipt, read_receipt
from cleanroom.protocol._status import (
    ERROR_NAME_KEY,
    ERROR_STATUS,
    STATUS_ERROR,
    error_from_status,
    status_for,
)
from cleanroom.protocol._wire import ProgressFactory, mode_from_wire, mode_to_wire

__all__ = [
    "DEFAULT_MAX_PLATFORM_SET_SIZE",
    "ERROR_NAME_KEY",
    "ERROR_STATUS",
    "MAX_CHUNK_BYTES",
    "PROTOCOL_VERSION",
    "RECORD_TAG_SIZE",
    "SESSION_ID_SIZE",
    "STATUS_ERROR",
    "AdvertiserResult",
    "AdvertiserRole",
    "ListEncryption",
    "PlatformInputs",
    "PlatformOutcome",
    "PlatformRole",
    "ProgressFactory",
    "Receipt",
    "SessionRequest",
    "SessionTerms",
    "check_advertiser_set_size",
    "check_policy_info",
    "error_from_status",
    "issue_receipt",
    "mode_from_wire",
    "mode_to_wire",
    "policy_info",
    "read_open_session",
    "read_receipt",
    "run_locally",
    "session_terms",
    "status_for",
]
