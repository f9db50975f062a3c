"""Both roles of a session in one process: for tests, demos and benchmarks.

Every message goes through its wire encoding on the way, so what runs here is what runs over
gRPC, minus the network.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message

from cleanroom.errors import ProtocolError
from cleanroom.protocol._advertiser import AdvertiserResult, AdvertiserRole
from cleanroom.protocol._platform import (
    PlatformOutcome,
    PlatformRole,
    SessionRequest,
    read_open_session,
)
from cleanroom.protocol._wire import pb

__all__ = ["run_locally"]

_M = TypeVar("_M", bound=Message)


def _through_wire(message: _M) -> _M:
    return type(message).FromString(message.SerializeToString())


def run_locally(
    advertiser: AdvertiserRole, open_platform: Callable[[SessionRequest], PlatformRole]
) -> tuple[AdvertiserResult, PlatformOutcome]:
    """Run a whole session between two roles in this process.

    Args:
        advertiser: a fresh advertiser role.
        open_platform: what the service does on OpenSession: check the policy, load the
            epoch's inputs, and return the platform role (or raise a refusal).

    Returns:
        The advertiser's result and the platform's outcome.

    Raises:
        CleanroomError: whatever either role raises.
    """
    request = read_open_session(_through_wire(advertiser.open_session()))
    platform = open_platform(request)
    to_advertiser: deque[pb.ServerMessage] = deque(platform.start())
    to_platform: deque[pb.ClientMessage] = deque()
    while not (advertiser.finished and platform.finished):
        if to_advertiser:
            to_platform.extend(advertiser.handle(_through_wire(to_advertiser.popleft())))
        elif to_platform:
            to_advertiser.extend(platform.handle(_through_wire(to_platform.popleft())))
        else:
            raise ProtocolError("the session stalled: neither side has anything to send")
    if advertiser.result is None or platform.outcome is None:
        raise ProtocolError("the session finished without a result")
    return advertiser.result, platform.outcome
