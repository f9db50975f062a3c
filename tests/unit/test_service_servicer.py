"""The servicer's request parsers: an unparsable body is marked for the servicer, never raised."""

from __future__ import annotations

import grpc
import pytest

from cleanroom._proto.v1 import matcher_pb2 as pb
from cleanroom.errors import InvalidMessage
from cleanroom.service.servicer import (
    MatcherServicer,
    Undecodable,
    add_matcher_to_server,
    parse_or_mark,
)


def test_a_valid_body_parses_to_its_message() -> None:
    message = pb.ClientMessage(close=pb.Close(session_id=b"\x01" * 16))
    parsed = parse_or_mark(pb.ClientMessage)(message.SerializeToString())
    assert parsed == message


@pytest.mark.parametrize(
    "body",
    [b"\x0a", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10 + b"\x01", b"\x0f" * 64],
)
def test_an_unparsable_body_is_marked_with_its_size_only(body: bytes) -> None:
    parsed = parse_or_mark(pb.ClientMessage)(body)
    assert isinstance(parsed, Undecodable)
    error = parsed.error()
    assert isinstance(error, InvalidMessage)
    assert (
        str(error) == f"a request of {len(body)} bytes does not parse as cleanroom.v1.ClientMessage"
    )
    assert repr(parsed) == f"Undecodable(cleanroom.v1.ClientMessage, {len(body)} bytes)"


def test_every_method_of_the_service_gets_a_marking_parser() -> None:
    # A method added to the .proto but not to add_matcher_to_server would be unimplemented.
    registered: dict[str, grpc.RpcMethodHandler] = {}

    class Recorder:
        def add_generic_rpc_handlers(self, handlers: object) -> None:
            pass

        def add_registered_method_handlers(self, service: str, methods: dict) -> None:
            registered.update(methods)

    servicer = MatcherServicer(None, lambda _context: "", session_timeout=1.0)  # type: ignore[arg-type]
    add_matcher_to_server(servicer, Recorder())  # type: ignore[arg-type]
    service = pb.DESCRIPTOR.services_by_name["Matcher"]
    assert set(registered) == {method.name for method in service.methods}
    for handler in registered.values():
        assert isinstance(handler.request_deserializer(b"\x0a"), Undecodable)
