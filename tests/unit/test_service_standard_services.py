"""The health servicer's List mirrors Check, including the graceful shutdown."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from cleanroom.service.standard_services import HealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _listed(servicer: HealthServicer) -> dict[str, int]:
    reply = servicer.List(health_pb2.HealthListRequest(), None)  # type: ignore[arg-type]
    return {name: status.status for name, status in reply.statuses.items()}


def test_list_shows_what_set_recorded() -> None:
    servicer = HealthServicer()
    assert _listed(servicer) == {}
    servicer.set("", SERVING)
    servicer.set("cleanroom.v1.Matcher", NOT_SERVING)
    servicer.set("cleanroom.v1.Matcher", SERVING)
    assert _listed(servicer) == {"": SERVING, "cleanroom.v1.Matcher": SERVING}


def test_after_graceful_shutdown_everything_lists_not_serving_for_good() -> None:
    servicer = HealthServicer()
    servicer.set("", SERVING)
    servicer.set("cleanroom.v1.Matcher", SERVING)
    servicer.enter_graceful_shutdown()
    servicer.set("", SERVING)
    assert _listed(servicer) == {"": NOT_SERVING, "cleanroom.v1.Matcher": NOT_SERVING}
