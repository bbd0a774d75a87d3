"""/metrics for Prometheus: from loopback, or with the METRICS_TOKEN bearer token (docs/metrics.md)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .. import metrics
from .permissions import public

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@public
def metrics_show():
    """The process's metrics in the Prometheus text format (the check is metrics.allowed, not a login)."""
    status, body, headers = metrics.scrape(current_app.config, request.remote_addr or "", request.headers)
    return Response(body, status=status, headers=headers)
