"""Dashboard sign-in: login (throttled), logout, change own password."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from .. import admins
from ..accounts import AccountError
from .permissions import SessionUser, public, safe_next, viewer_required

bp = Blueprint("auth", __name__)

FAILURES_ALLOWED = 5  # per e-mail and per client IP …
FAILURE_WINDOW = 15 * 60  # … within this many seconds; then sign-in waits until the window clears


class LoginThrottle:
    """Count recent failed sign-ins per key (client IP, e-mail) in memory."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW,
                 clock=time.monotonic):
        self.allowed = allowed
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        stamps = self._failures[key]
        cutoff = self.clock() - self.window
        while stamps and stamps[0] < cutoff:
            stamps.popleft()
        return stamps

    def wait_seconds(self, *keys: str) -> int:
        """Seconds until any of ``keys`` may try again (0: it may try now)."""
        with self._lock:
            waits = [
                stamps[0] + self.window - self.clock()
                for stamps in (self._recent(k) for k in keys)
                if len(stamps) >= self.allowed
            ]
        return max(1, int(max(waits))) if waits else 0

    def fail(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._recent(key).append(self.clock())

    def clear(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def _throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]


@bp.route("/login", methods=["GET", "POST"])
@public
def auth_login():
    """Show the sign-in form; sign in on POST."""
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("overview.overview_show"))
    if request.method == "GET":
        return render_template("auth/login.html", next_url=next_url, email="")
    email = request.form.get("email", "").strip().lower()
    keys = (f"ip:{request.remote_addr}", f"email:{email}")
    wait = _throttle().wait_seconds(*keys)
    if wait:
        minutes = (wait + 59) // 60
        error = f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        return render_template("auth/login.html", next_url=next_url, email=email, error=error), 429
    admin = admins.verify(email, request.form.get("password", ""))
    if admin is None:
        _throttle().fail(*keys)
        error = "Wrong e-mail or password."
        return render_template("auth/login.html", next_url=next_url, email=email, error=error), 401
    _throttle().clear(*keys)
    login_user(SessionUser(admin))
    return redirect(next_url or url_for("overview.overview_show"))


@bp.post("/logout")
@viewer_required
def auth_logout():
    """Sign out and go back to the sign-in page."""
    logout_user()
    flash("You are signed out.")
    return redirect(url_for("auth.auth_login"))


@bp.route("/password", methods=["GET", "POST"])
@viewer_required
def auth_password():
    """Change the signed-in user's own password (viewers too: it is their own)."""
    if request.method == "GET":
        return render_template("auth/password.html")
    new = request.form.get("new_password", "")
    error = None
    if new != request.form.get("confirm_password", ""):
        error = "The two new passwords differ."
    else:
        try:
            admins.change_password(current_user.admin, request.form.get("current_password", ""), new)
        except AccountError as exc:
            text = str(exc)
            error = f"{text[:1].upper()}{text[1:]}."
    if error:
        return render_template("auth/password.html", error=error), 400
    # The session id contains part of the hash: sign in again with the new one, other sessions end.
    login_user(SessionUser(current_user.admin))
    flash("Your password is changed. Other sessions are signed out.")
    return redirect(url_for("overview.overview_show"))


def render_csrf_error(exc: CSRFError):
    """Explain a missing or stale CSRF token (usually: the form was open across a sign-out)."""
    return render_template("errors/csrf.html", reason=exc.description), 400
