"""Dashboard sign-in: password (throttled per guesser), second factor, sign-out, own password and
two-factor set-up, accepting an invitation."""

from __future__ import annotations

import threading
import time

import segno
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from .. import admins, audit, twofactor
from ..accounts import AccountError
from ..models import AdminUser
from . import sessions, shown_once
from .permissions import SessionUser, public, safe_next, viewer_required

bp = Blueprint("auth", __name__)

NO_STORE = {"Cache-Control": "no-store"}  # pages that show a secret once
CODE_STEP_SECONDS = 5 * 60  # time to type the second factor after the right password


class LoginThrottle:
    """Failed sign-ins counted in memory per (client IP, e-mail) and per client IP.

    The guesser waits, not the account (OWASP Authentication and Credential Stuffing cheat sheets:
    lockout by account lets anyone lock a known admin out). A pair of IP and e-mail gets ``pair_free``
    failures, an IP ``ip_free`` across all e-mails (password spraying); past that each further try
    from there waits ``first_delay`` seconds, doubling per failure up to ``max_delay``. The right
    password from any other address still signs in at once. A count is forgotten ``forget_after``
    seconds after its last failure; a success clears the pair's count, not the IP's.
    """

    def __init__(
        self,
        pair_free: int = 5,
        ip_free: int = 20,
        first_delay: float = 30,
        max_delay: float = 15 * 60,
        forget_after: float = 60 * 60,
        clock=time.monotonic,
        max_keys: int = 100_000,
    ):
        self.free = {"pair": pair_free, "ip": ip_free}
        self.first_delay, self.max_delay, self.forget_after = first_delay, max_delay, forget_after
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[tuple, tuple[int, float]] = {}  # key → (count, time of the last failure)
        self._lock = threading.Lock()

    @staticmethod
    def _keys(ip: str, email: str) -> tuple[tuple, tuple]:
        return ("pair", ip, email), ("ip", ip)

    def _count(self, key: tuple, now: float) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, now))
        return (0, now) if now - last > self.forget_after else (count, last)

    def delay(self, count: int, kind: str) -> float:
        """Seconds a key with ``count`` failures waits after its last one."""
        over = count - self.free[kind]
        return 0 if over < 0 else min(self.max_delay, self.first_delay * 2**over)

    def wait_seconds(self, ip: str, email: str) -> int:
        """Seconds until this IP may try this e-mail again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            waits = [
                last + self.delay(count, key[0]) - now
                for key in self._keys(ip, email)
                for count, last in [self._count(key, now)]
            ]
        wait = max(waits)
        return max(1, int(wait + 0.999)) if wait > 0 else 0

    def fail(self, ip: str, email: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= self.forget_after}
            for key in self._keys(ip, email):
                self._failures[key] = (self._count(key, now)[0] + 1, now)

    def succeeded(self, ip: str, email: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(ip, email)[0], None)


def _throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]


def _too_many(wait: int) -> str:
    if wait < 120:
        return f"Too many failed sign-ins from your address. Try again in {wait} seconds."
    return f"Too many failed sign-ins from your address. Try again in {(wait + 59) // 60} minutes."


def _complete_sign_in(admin: AdminUser, next_url: str | None):
    """Sign ``admin`` in on a fresh session id (a second factor, if any, already checked)."""
    _throttle().succeeded(request.remote_addr or "", admin.email)
    session.pop("pending_sign_in", None)
    sessions.rotate(session)
    login_user(SessionUser(admin))
    admins.record_sign_in(admin)
    return redirect(next_url or url_for("overview.overview_show"))


@bp.route("/login", methods=["GET", "POST"])
@public
def auth_login():
    """Show the sign-in form; check the password on POST, then ask for the second factor if any."""
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("overview.overview_show"))
    if request.method == "GET":
        return render_template("auth/login.html", next_url=next_url, email="")
    email = request.form.get("email", "").strip().lower()
    ip = request.remote_addr or ""
    wait = _throttle().wait_seconds(ip, email)
    if wait:
        return render_template("auth/login.html", next_url=next_url, email=email, error=_too_many(wait)), 429
    admin = admins.verify(email, request.form.get("password", ""))
    if admin is None:
        _throttle().fail(ip, email)
        error = "Wrong e-mail or password."
        return render_template("auth/login.html", next_url=next_url, email=email, error=error), 401
    if not admin.totp_secret:
        return _complete_sign_in(admin, next_url)
    sessions.rotate(session)
    session["pending_sign_in"] = {"id": admin.id, "until": time.time() + CODE_STEP_SECONDS, "next": next_url}
    return redirect(url_for("auth.auth_code"))


def _pending_admin() -> AdminUser | None:
    pending = session.get("pending_sign_in")
    if not isinstance(pending, dict) or pending.get("until", 0) < time.time():
        return None
    admin = AdminUser.get_or_none(AdminUser.id == pending.get("id"))
    return admin if admin is not None and admin.active and admin.totp_secret else None


@bp.route("/login/code", methods=["GET", "POST"])
@public
def auth_code():
    """Ask for the authenticator's code (or a recovery code) after the right password."""
    admin = _pending_admin()
    if admin is None:
        session.pop("pending_sign_in", None)
        flash("Sign in with your password first (the code step lasts five minutes).")
        return redirect(url_for("auth.auth_login"))
    if request.method == "GET":
        return render_template("auth/code.html")
    ip = request.remote_addr or ""
    wait = _throttle().wait_seconds(ip, admin.email)
    if wait:
        return render_template("auth/code.html", error=_too_many(wait)), 429
    used = twofactor.check(admin, request.form.get("code", ""))
    if used is None:
        _throttle().fail(ip, admin.email)
        error = "That code is not right (each code works once; recovery codes look like abcd-efgh-jkmn-pqrs)."
        return render_template("auth/code.html", error=error), 401
    if used == "recovery":
        left = twofactor.recovery_codes_left(admin)
        flash(
            f"You signed in with a recovery code; {left} left. Make new ones on the two-factor page if you run short."
        )
    return _complete_sign_in(admin, session["pending_sign_in"].get("next"))


@bp.post("/logout")
@viewer_required
def auth_logout():
    """Sign out: this session's record is deleted, so a copy of its cookie is worth nothing."""
    logout_user()
    sessions.end(session)
    flash("You are signed out.")
    return redirect(url_for("auth.auth_login"))


@bp.route("/password", methods=["GET", "POST"])
@viewer_required
def auth_password():
    """Change the signed-in user's own password (viewers too: it is their own)."""
    if request.method == "GET":
        return render_template("auth/password.html")
    current = request.form.get("current_password", "")
    error = _new_password(lambda new: admins.change_password(current_user.admin, current, new))
    if error:
        return render_template("auth/password.html", error=error), 400
    sessions.revoke_user(current_user.admin.id, keep=session)
    sessions.rotate(session)
    audit.record("user.password", f"user {current_user.email}", "changed their own password")
    flash("Your password is changed. Other sessions are signed out.")
    return redirect(url_for("overview.overview_show"))


def _new_password(apply) -> str | None:
    """Hand the form's new password to ``apply`` if typed twice alike; return the error to show, or None."""
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        return "The two new passwords differ."
    try:
        apply(new)
    except AccountError as exc:
        return sentence(exc)
    return None


def sentence(exc: Exception) -> str:
    """An AccountError as a sentence for a page."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def qr_data_uri(text: str) -> str:
    """A QR code of ``text`` as an SVG data: URI (the CSP allows data: images; nothing is fetched)."""
    return segno.make(text, error="m").svg_data_uri(scale=5, border=2)


def _enrolment_page(error: str | None = None, status: int = 200):
    admin = current_user.admin
    secret = session.get("totp_enrolment")
    if not secret:
        secret = session["totp_enrolment"] = twofactor.new_secret()
    uri = twofactor.provisioning_uri(secret, admin.email, current_app.config["HOSTNAME"])
    return render_template(
        "auth/two_factor.html",
        enrolled=False,
        secret=secret,
        qr=qr_data_uri(uri),
        required=twofactor.required(),
        error=error,
    ), status


def _show_codes(admin, codes: list[str], first: bool):
    """Keep the new recovery codes for the page the browser is sent to (post-redirect-get)."""
    shown_once.keep("recovery-codes", admin.id, codes, first=first)
    return redirect(url_for("auth.auth_recovery_codes"))


@bp.get("/two-factor/codes")
@viewer_required
def auth_recovery_codes():
    """Show the recovery codes just made, this once; after that, say how to get new ones."""
    kept = shown_once.take("recovery-codes", current_user.admin.id)
    if kept is None:
        flash("Recovery codes are shown once, when they are made. Make new ones below if you lost them.")
        return redirect(url_for("auth.auth_two_factor"))
    codes, facts = kept
    return render_template("auth/recovery_codes.html", codes=codes, first=facts["first"]), 200, NO_STORE


@bp.route("/two-factor", methods=["GET", "POST"])
@viewer_required
def auth_two_factor():
    """Set up TOTP (QR code, then a code to confirm), make new recovery codes, or turn it off."""
    admin = current_user.admin
    if not admin.totp_secret:
        if request.method == "GET":
            return _enrolment_page()
        codes = twofactor.enable(admin, session.get("totp_enrolment", ""), request.form.get("code", ""))
        if codes is None:
            return _enrolment_page("That code is not right: type the 6 digits the app shows now.", 400)
        session.pop("totp_enrolment", None)
        audit.record("user.two_factor_on", f"user {admin.email}", "set up an authenticator app")
        return _show_codes(admin, codes, first=True)
    page = {"enrolled": True, "required": twofactor.required(), "left": twofactor.recovery_codes_left(admin)}
    action = request.form.get("action")
    if request.method == "GET" or action not in ("codes", "disable"):
        return render_template("auth/two_factor.html", **page)
    if action == "codes":
        audit.record("user.recovery_codes", f"user {admin.email}", "made new recovery codes")
        return _show_codes(admin, twofactor.new_recovery_codes(admin), first=False)
    if page["required"]:
        return render_template(
            "auth/two_factor.html", error="An admin requires two-factor sign-in for everyone.", **page
        ), 400
    if twofactor.check(admin, request.form.get("code", "")) is None:
        return render_template("auth/two_factor.html", error="That code is not right.", **page), 400
    twofactor.disable(admin)
    audit.record("user.two_factor_off", f"user {admin.email}", "turned two-factor sign-in off")
    flash("Two-factor sign-in is off.")
    return redirect(url_for("auth.auth_two_factor"))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@public
def auth_invite(token: str):
    """Let an invited user choose a password (the link is signed, expires, and works once)."""
    try:
        admin = admins.invited(current_app.config["SECRET_KEY"], token)
    except AccountError as exc:
        return render_template("auth/invite.html", admin=None, error=sentence(exc)), 410
    if request.method == "GET":
        return render_template("auth/invite.html", admin=admin), 200, NO_STORE
    error = _new_password(lambda new: admins.accept_invitation(admin, new))
    if error:
        return render_template("auth/invite.html", admin=admin, error=error), 400
    if current_user.is_authenticated:
        logout_user()
    audit.record("user.invitation_accepted", f"user {admin.email}", "chose a password", actor=admin.email)
    return _complete_sign_in(admin, None)


def render_csrf_error(exc: CSRFError):
    """Explain a missing or stale CSRF token (usually: the form was open across a sign-out)."""
    return render_template("errors/csrf.html", reason=exc.description), 400
