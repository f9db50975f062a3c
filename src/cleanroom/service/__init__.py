"""The platform's gRPC service: the server, its servicer, and the match sessions it runs.

The protocol itself (rounds, validation, results, the error ↔ status code table) lives in
:mod:`cleanroom.protocol`; the advertiser's side of the wire in :mod:`cleanroom.advertiser`;
the TLS identities of both in :mod:`cleanroom.tls`. This package carries the platform role's
messages between the network and the store.
"""

from __future__ import annotations

__all__: list[str] = []
