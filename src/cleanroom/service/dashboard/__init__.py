"""The platform's dashboard for its privacy officer and its Prometheus metrics, over HTTP.

:class:`DashboardServer` serves, read-only, ``/`` (the dashboard page), ``/metrics`` (the
Prometheus exposition format) and ``/healthz`` beside the gRPC service. Figures are read from
the platform database (:mod:`~cleanroom.service.dashboard.snapshot`), rendered by Jinja2
templates shipped in the package (:mod:`~cleanroom.service.dashboard.pages`) and exported by a
Prometheus collector (:mod:`~cleanroom.service.dashboard.metrics`).
"""

from __future__ import annotations

from cleanroom.service.dashboard.http import DashboardOptions, DashboardServer, Health

__all__ = ["DashboardOptions", "DashboardServer", "Health"]
