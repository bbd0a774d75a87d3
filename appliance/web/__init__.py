"""Web blueprints; each dashboard area registers here, with login, CSRF and security headers."""

from __future__ import annotations

import logging
import re

from flask import Flask, g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from .. import api, audit, intake, tls
from ..api import problems
from ..db import WRITE_ERRORS, database
from . import (
    accounts,
    alerts,
    analytics,
    api_keys,
    audit_log,
    auth,
    campaigns,
    checker,
    dmarc,
    domains,
    health,
    lists,
    messages,
    metrics,
    overview,
    policy,
    proxies,
    senders,
    setup,
    smtp_codes,
    suppressions,
    tracking,
    users,
    verify,
    webhooks,
)
from .permissions import forbidden_page, login_manager
from .sessions import ServerSessionInterface

log = logging.getLogger(__name__)

csrf = CSRFProtect()
_SECURE_FLAG = re.compile(r";\s*secure\s*(;|$)", re.IGNORECASE)

# No inline script or style anywhere: htmx and dashboard.js are files under static/.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    """Register blueprints, login, CSRF, security headers and a database connection per request."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    app.session_interface = ServerSessionInterface()
    # Forwarded headers count from TRUSTED_PROXIES only (docs/security.md).
    app.wsgi_app = proxies.TrustedProxies(app.wsgi_app, proxies.parse(app.config["TRUSTED_PROXIES"]))
    app.extensions["login_throttle"] = auth.LoginThrottle()

    @app.after_request
    def _secure_cookies(response):
        # Registered before flask-login's hook, so it runs after it (Flask runs them in reverse):
        # over HTTPS every cookie is Secure, flask-login's remember_token too, whose flags come from
        # settings fixed for the whole process.
        if request.is_secure:
            cookies = response.headers.getlist("Set-Cookie")
            if any(not _SECURE_FLAG.search(c) for c in cookies):
                response.headers.setlist(
                    "Set-Cookie", [c if _SECURE_FLAG.search(c) else f"{c}; Secure" for c in cookies]
                )
        return response

    login_manager.init_app(app)
    csrf.init_app(app)

    @app.before_request
    def _connect():
        # The open pixel and tracked links read nothing (a query would connect on its own).
        if request.endpoint in tracking.NO_DATABASE:
            return None
        try:
            database.connect(reuse_if_open=True)
        except WRITE_ERRORS as exc:  # a full disk fails even a new connection's pragmas
            log.error("could not open the database for %s: %s", request.path, exc)
            reply = intake.storage_reply(exc)
            if request.blueprint == api.bp.name:
                return problems.from_reply(reply, headers={"Retry-After": "60"}).response()
            text = f"The mail relay cannot open its database ({reply}). Try again in a minute.\n"
            return text, 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "60"}
        return None

    @app.before_request
    def _actor() -> None:
        # What this request changes is recorded in the audit log as done by the signed-in user.
        # The API names its own actor, the API key (appliance/api): no session counts there.
        if request.endpoint != "static" and request.blueprint != api.bp.name:
            name = current_user.email if current_user.is_authenticated else "anonymous"
            g.audit_token = audit.act_as(name, request.remote_addr or "")

    @app.teardown_request
    def _close(_exc) -> None:
        if "audit_token" in g:
            audit.reset(g.pop("audit_token"))
        if not database.is_closed():
            database.close()

    @app.after_request
    def _security_headers(response):
        # A view may set a stricter policy of its own (a message's HTML part for its sandboxed frame).
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.is_secure and tls.publicly_trusted(app.config) and app.config["HSTS_MAX_AGE"] > 0:
            # A certificate browsers trust (TLS_CERT, or ACME's once issued): the generated local-CA one
            # gets no HSTS, which would lock a browser out of the dashboard until it trusts that CA.
            response.headers["Strict-Transport-Security"] = f"max-age={app.config['HSTS_MAX_AGE']}"
        return response

    app.register_error_handler(403, forbidden_page)

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return auth.render_csrf_error(exc)

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(overview.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(analytics.bp)
    app.register_blueprint(suppressions.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(senders.bp)
    app.register_blueprint(setup.bp)
    app.register_blueprint(domains.bp)
    app.register_blueprint(dmarc.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(policy.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(audit_log.bp)
    app.register_blueprint(smtp_codes.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(lists.bp)
    app.register_blueprint(campaigns.bp)
    app.register_blueprint(checker.bp)
    # Mailbox providers send the one-click POST (RFC 8058): the signed link is the proof, no CSRF token.
    csrf.exempt(tracking.bp)
    app.register_blueprint(tracking.bp)
    app.register_blueprint(api_keys.bp)
    app.register_blueprint(api_keys.admin_bp)
    # The HTTP API authenticates by API key alone, never by the session cookie: no CSRF to guard against.
    csrf.exempt(api.bp)
    api.init_app(app)
