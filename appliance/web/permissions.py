"""Who may see what: the login manager and the permission decorator every view carries.

Each view is wrapped by exactly one of ``public``, ``viewer_required`` (any signed-in dashboard
user, read only), ``admin_required`` (may change things) or ``admin_writes`` (everyone signed in
reads with GET, only admins send other methods). The decorator records its name on the view
as ``permission`` so a test can list endpoints that carry none (the Mailu pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from flask import Response, abort, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from .. import twofactor
from ..models import AdminUser

login_manager = LoginManager()
login_manager.session_protection = "strong"

PUBLIC, VIEWER, ADMIN, ADMIN_WRITES = "public", "viewer", "admin", "admin_writes"
API_KEY = "api_key"  # the HTTP API's views (appliance/api): an API key, never a session


# While a user who must enrol a second factor has none, these are the only pages they reach.
ENROLMENT_ENDPOINTS = {"auth.auth_two_factor", "auth.auth_logout"}


class SessionUser(UserMixin):
    """An AdminUser as flask-login sees it (sessions are server-side rows: see sessions.py)."""

    def __init__(self, admin: AdminUser):
        self.admin = admin

    def get_id(self) -> str:
        return str(self.admin.id)

    @property
    def email(self) -> str:
        return self.admin.email

    @property
    def role(self) -> str:
        return self.admin.role

    @property
    def can_change(self) -> bool:
        return self.admin.role == ADMIN

    @property
    def must_enrol(self) -> bool:
        """Tell whether an admin requires a second factor that this user has not set up yet."""
        return not self.admin.totp_secret and twofactor.required()


@login_manager.user_loader
def _load_user(user_id: str) -> SessionUser | None:
    if not user_id.isdigit():
        return None
    admin = AdminUser.get_or_none(AdminUser.id == int(user_id))
    if admin is None or not admin.active:
        return None
    return SessionUser(admin)


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site (no scheme, no host), else None."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _whole_page(url: str, status: int) -> Response:
    """Send the browser to ``url``: htmx would swap that page into a fragment, so tell it to load it."""
    response = Response(status=status)
    response.headers["HX-Redirect"] = url
    return response


def _to_login() -> Response:
    login_url = url_for("auth.auth_login")
    if request.headers.get("HX-Request"):
        return _whole_page(login_url, 401)
    wanted = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.auth_login", next=wanted.rstrip("?")) if wanted else login_url)


def _refusal() -> Response | None:
    """Why a request may not reach a signed-in view: not signed in, or a second factor to set up first."""
    if not current_user.is_authenticated:
        return _to_login()
    if request.endpoint not in ENROLMENT_ENDPOINTS and current_user.must_enrol:
        enrol = url_for("auth.auth_two_factor")
        return _whole_page(enrol, 403) if request.headers.get("HX-Request") else redirect(enrol)
    return None


def _mark(view: Callable, permission: str) -> Callable:
    view.permission = permission
    return view


def public(view: Callable) -> Callable:
    """Let anyone reach this view (login page, health check)."""
    return _mark(view, PUBLIC)


def viewer_required(view: Callable) -> Callable:
    """Let any signed-in dashboard user reach this view (it must not change anything)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        return _refusal() or view(*args, **kwargs)

    return _mark(wrapper, VIEWER)


def admin_required(view: Callable) -> Callable:
    """Let only users with the admin role reach this view; viewers get 403."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if refused := _refusal():
            return refused
        if not current_user.can_change:
            abort(403)
        return view(*args, **kwargs)

    return _mark(wrapper, ADMIN)


def admin_writes(view: Callable) -> Callable:
    """Let any signed-in user read this view with GET; other methods need the admin role."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if refused := _refusal():
            return refused
        if request.method not in ("GET", "HEAD") and not current_user.can_change:
            abort(403)
        return view(*args, **kwargs)

    return _mark(wrapper, ADMIN_WRITES)


def forbidden_page(_exc) -> tuple[str, int]:
    """Explain a 403 in plain words."""
    return render_template("errors/forbidden.html"), 403
