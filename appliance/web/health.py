"""Health check: the one endpoint (besides login and static files) that needs no login."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..models import Message
from .permissions import public

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
def health_show():
    """Answer 200 when the database answers."""
    Message.select().limit(1).count()
    return jsonify(status="ok")
