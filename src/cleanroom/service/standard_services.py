"""The standard gRPC services beside Matcher: health checking (with ``List``) and reflection.

``grpcio-health-checking``'s servicer answers ``Check`` and ``Watch`` but leaves ``List``
unimplemented although its proto has it; :class:`HealthServicer` adds it. ``grpcio-reflection``
ships ``grpc.reflection.v1alpha`` only, while current clients (``grpcurl``, IDEs) ask
``grpc.reflection.v1`` first. The two versions have the same messages under another package,
so :func:`enable_reflection` serves v1 with the library's own servicer, and registers a v1
descriptor (the v1alpha one, renamed) so that a client can also resolve the v1 service itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Final

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_reflection.v1alpha import (  # type: ignore[import-untyped, unused-ignore]
    reflection,
    reflection_pb2,
)

__all__ = [
    "HEALTH_SERVICE_NAME",
    "REFLECTION_SERVICE_NAMES",
    "HealthServicer",
    "enable_reflection",
]

HEALTH_SERVICE_NAME: Final[str] = health.SERVICE_NAME
"""``grpc.health.v1.Health``."""

_V1ALPHA: Final = "grpc.reflection.v1alpha"
_V1: Final = "grpc.reflection.v1"
_REFLECTION_V1_SERVICE: Final = f"{_V1}.ServerReflection"

REFLECTION_SERVICE_NAMES: Final[tuple[str, ...]] = (reflection.SERVICE_NAME, _REFLECTION_V1_SERVICE)
"""Both reflection services, v1alpha and v1."""


class HealthServicer(health.HealthServicer):  # type: ignore[misc, unused-ignore]
    """The library's health servicer plus ``List``: every service's status at once.

    Statuses are mirrored here as :meth:`set` records them (the library keeps its own privately),
    with the same rule: after :meth:`enter_graceful_shutdown` every service is ``NOT_SERVING``
    and later changes are ignored.
    """

    def __init__(self) -> None:
        super().__init__()
        self._list_lock = threading.Lock()
        self._statuses: dict[str, Any] = {}
        self._stopping = False

    def set(self, service: str, status: Any) -> None:
        """Set a service's status (ignored once shutting down, as the library does)."""
        with self._list_lock:
            if not self._stopping:
                self._statuses[service] = status
        super().set(service, status)

    def enter_graceful_shutdown(self) -> None:
        """Turn every service ``NOT_SERVING`` for good."""
        with self._list_lock:
            self._stopping = True
            for service in self._statuses:
                self._statuses[service] = health_pb2.HealthCheckResponse.NOT_SERVING
        super().enter_graceful_shutdown()

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Every known service and its status (the empty name is the server as a whole)."""
        with self._list_lock:
            statuses = dict(self._statuses)
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in statuses.items()
            }
        )


def enable_reflection(service_names: Iterable[str], server: grpc.Server) -> None:
    """Serve reflection v1alpha and v1 on ``server``, listing ``service_names`` and both.

    Args:
        service_names: the fully qualified services the server offers (besides reflection).
        server: the server, not started yet.
    """
    _register_v1_descriptor()
    names = (*service_names, *REFLECTION_SERVICE_NAMES)
    servicer = reflection.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)
    # Same messages on the wire: v1 is served by the v1alpha servicer and its message classes.
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                _REFLECTION_V1_SERVICE, {"ServerReflectionInfo": handler}
            ),
        )
    )


_registered = threading.Lock()


def _register_v1_descriptor() -> None:
    """Add ``grpc/reflection/v1/reflection.proto`` to the default pool (once per process)."""
    pool = descriptor_pool.Default()
    with _registered:
        try:
            pool.FindServiceByName(_REFLECTION_V1_SERVICE)
            return
        except KeyError:
            pass
        proto = descriptor_pb2.FileDescriptorProto()
        reflection_pb2.DESCRIPTOR.CopyToProto(proto)
        proto.name = "grpc/reflection/v1/reflection.proto"
        proto.package = _V1
        proto.ClearField("options")
        for message in proto.message_type:
            for field in message.field:
                if field.type_name:
                    field.type_name = field.type_name.replace(f".{_V1ALPHA}.", f".{_V1}.")
        for service in proto.service:
            for method in service.method:
                method.input_type = method.input_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
                method.output_type = method.output_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
        pool.AddSerializedFile(proto.SerializeToString())
