"""A Match call that a test drives message by message (shared by the server tests).

The tests that send hostile, replayed or stalled messages need to decide what goes out and when,
which the real client never lets them do.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import numpy as np

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom._proto.v1 import matcher_pb2_grpc as pb_grpc
from cleanroom.protocol import AdvertiserRole


class MatchStream:
    """A Match call fed from a queue; keeps what was sent and received (for replays).

    Args:
        channel: the channel to the server.
        timeout: the call's deadline, in seconds.
    """

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self.sent: list[pb.ClientMessage] = []
        self.received: list[pb.ServerMessage] = []
        self._outgoing: queue.Queue[pb.ClientMessage | None] = queue.Queue()
        self.call = pb_grpc.MatcherStub(channel).Match(self._requests(), timeout=timeout)

    def _requests(self) -> Iterator[pb.ClientMessage]:
        while (message := self._outgoing.get()) is not None:
            yield message

    def send(self, *messages: pb.ClientMessage) -> None:
        """Queue messages for sending, in order."""
        for message in messages:
            self.sent.append(message)
            self._outgoing.put(message)

    def replies(self) -> Iterator[pb.ServerMessage]:
        """The server's messages as they arrive (each also kept in ``received``)."""
        for reply in self.call:
            self.received.append(reply)
            yield reply

    def end(self) -> None:
        """Half-close the stream once everything queued has gone out."""
        self._outgoing.put(None)


def u_chunk(
    session_id: bytes, offset: int, count: int, elements: bytes, records: int
) -> pb.ClientMessage:
    """A chunk of U as a test sends it: ``count`` elements at ``offset``, their record tags
    cycling through the ``records`` records the opening announced."""
    tags = (np.arange(offset, offset + count) % records).astype("<u4")
    chunk = pb.AdvertiserSetChunk(
        session_id=session_id,
        offset=offset,
        count=count,
        elements=elements,
        record_tags=tags.tobytes(),
    )
    return pb.ClientMessage(advertiser_set=chunk)


def run_role(channel: grpc.Channel, role: AdvertiserRole, timeout: float) -> MatchStream:
    """Relay messages between ``role`` and the server until the call ends.

    Returns:
        The stream, with everything sent and received (``role.result`` holds the outcome).
    """
    stream = MatchStream(channel, timeout)
    stream.send(role.open_session())
    try:
        for reply in stream.replies():
            stream.send(*role.handle(reply))
    finally:
        stream.end()
    return stream
