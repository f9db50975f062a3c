"""The gRPC face of cleanroom: generated protocol code and the error ↔ status code table.

The protocol itself (rounds, validation, results) lives in :mod:`cleanroom.protocol` as pure
state machines; this package only carries messages between them and the network.
"""

from __future__ import annotations

__all__: list[str] = []
