"""Web blueprints; each dashboard area registers here, with login, CSRF and security headers."""

from __future__ import annotations

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect

from ..db import database
from . import (
    accounts,
    alerts,
    auth,
    domains,
    health,
    messages,
    overview,
    policy,
    senders,
    suppressions,
    verify,
)
from .permissions import forbidden_page, login_manager

csrf = CSRFProtect()

# No inline script or style anywhere: htmx and dashboard.js are files under static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class _TlsAwareSessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the dashboard is reached over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def init_app(app: Flask) -> None:
    """Register blueprints, login, CSRF, security headers and a database connection per request."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    app.session_interface = _TlsAwareSessionInterface()
    app.extensions["login_throttle"] = auth.LoginThrottle()
    login_manager.init_app(app)
    csrf.init_app(app)

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc) -> None:
        if not database.is_closed():
            database.close()

    @app.after_request
    def _security_headers(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    app.register_error_handler(403, forbidden_page)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return auth.render_csrf_error(exc)

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(overview.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(suppressions.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(senders.bp)
    app.register_blueprint(domains.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(policy.bp)
