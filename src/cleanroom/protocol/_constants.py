"""Constants of protocol version 1, shared by both roles."""

from __future__ import annotations

from typing import Final

from cleanroom.identifiers import KINDS

__all__ = [
    "MAX_CHUNK_BYTES",
    "MAX_IDENTIFIERS_PER_RECORD",
    "PROTOCOL_VERSION",
    "RECORD_TAG_SIZE",
    "SESSION_ID_SIZE",
]

PROTOCOL_VERSION: Final = 1
"""Version of the message flow in proto/cleanroom/v1/matcher.proto."""

MAX_CHUNK_BYTES: Final = 4_000_000
"""Largest element payload of one chunk: below gRPC's default 4 MiB message limit with room for
the message's other fields."""

SESSION_ID_SIZE: Final = 16
"""Bytes of a random session id."""

RECORD_TAG_SIZE: Final = 4
"""Bytes of one record tag (a little-endian uint32)."""

MAX_IDENTIFIERS_PER_RECORD: Final = len(KINDS)
"""One identifier of each kind per record: bounds the advertiser set at
``MAX_IDENTIFIERS_PER_RECORD × max_upload_records`` elements, so memory is bounded up front."""
