"""Web blueprints; each dashboard area registers here."""

from __future__ import annotations

from flask import Flask

from ..db import database
from . import health


def init_app(app: Flask) -> None:
    """Register blueprints and open/close a database connection per request."""

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc) -> None:
        if not database.is_closed():
            database.close()

    app.register_blueprint(health.bp)
