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

from ..models import AdminUser

login_manager = LoginManager()
login_manager.session_protection = "strong"

PUBLIC, VIEWER, ADMIN, ADMIN_WRITES = "public", "viewer", "admin", "admin_writes"


class SessionUser(UserMixin):
    """An AdminUser as flask-login sees it; its id changes when the password does."""

    def __init__(self, admin: AdminUser):
        self.admin = admin

    def get_id(self) -> str:
        # Part of the hash in the session id: changing the password signs out every other session.
        return f"{self.admin.id}:{self.admin.password_hash[-16:]}"

    @property
    def email(self) -> str:
        return self.admin.email

    @property
    def role(self) -> str:
        return self.admin.role

    @property
    def can_change(self) -> bool:
        return self.admin.role == ADMIN


@login_manager.user_loader
def _load_user(session_id: str) -> SessionUser | None:
    admin_id, _, fingerprint = session_id.partition(":")
    if not admin_id.isdigit():
        return None
    admin = AdminUser.get_or_none(AdminUser.id == int(admin_id))
    if admin is None or admin.password_hash[-16:] != fingerprint:
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


def _to_login() -> Response:
    login_url = url_for("auth.auth_login")
    if request.headers.get("HX-Request"):
        # htmx would swap a login page into the fragment; ask it to load the whole page instead.
        response = Response(status=401)
        response.headers["HX-Redirect"] = login_url
        return response
    wanted = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.auth_login", next=wanted.rstrip("?")) if wanted else login_url)


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
        if not current_user.is_authenticated:
            return _to_login()
        return view(*args, **kwargs)

    return _mark(wrapper, VIEWER)


def admin_required(view: Callable) -> Callable:
    """Let only users with the admin role reach this view; viewers get 403."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return _to_login()
        if not current_user.can_change:
            abort(403)
        return view(*args, **kwargs)

    return _mark(wrapper, ADMIN)


def admin_writes(view: Callable) -> Callable:
    """Let any signed-in user read this view with GET; other methods need the admin role."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return _to_login()
        if request.method not in ("GET", "HEAD") and not current_user.can_change:
            abort(403)
        return view(*args, **kwargs)

    return _mark(wrapper, ADMIN_WRITES)


def forbidden_page(_exc) -> tuple[str, int]:
    """Explain a 403 in plain words."""
    return render_template("errors/forbidden.html"), 403
