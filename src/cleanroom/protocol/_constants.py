"""Constants of protocol version 1, shared by both roles."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MAX_PLATFORM_SET_SIZE",
    "MAX_CHUNK_BYTES",
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

DEFAULT_MAX_PLATFORM_SET_SIZE: Final = 100_000_000
"""Largest platform set (N) a client accepts unless told otherwise. The advertiser keeps V, W
and a shuffled W: about 100 bytes per element (10 GB at this size) and one scalar
multiplication each, so a platform must not be able to make it allocate more by saying so."""
