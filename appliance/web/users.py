"""Dashboard users: create and invite, change role, disable or enable, sign out everywhere, reset
the second factor; and whether every user must sign in with one."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from .. import admins, audit, notices, twofactor
from ..accounts import AccountError
from ..models import AdminUser
from . import sessions
from .auth import NO_STORE, sentence
from .permissions import admin_required

bp = Blueprint("users", __name__, url_prefix="/users")


def _get(user_id: int) -> AdminUser:
    admin = AdminUser.get_or_none(AdminUser.id == user_id)
    if admin is None:
        abort(404)
    return admin


def _page(status: int = 200, **extra):
    rows = AdminUser.select().order_by(AdminUser.email)
    context = {
        "rows": rows,
        "sessions": sessions.active_counts(),
        "roles": admins.ROLES,
        "required": twofactor.required(),
        "error": None,
        "email": "",
        "role": "viewer",
        "invitation": None,
        "invitation_hours": admins.INVITATION_TTL // 3600,
        **extra,
    }
    return render_template("users/list.html", **context), status, NO_STORE if extra.get("invitation") else {}


def invitation_url(token: str) -> str:
    base = current_app.config["PUBLIC_URL"].rstrip("/") or request.host_url.rstrip("/")
    return f"{base}{url_for('auth.auth_invite', token=token)}"


def _invite(admin: AdminUser, by_mail: bool) -> tuple[str, bool]:
    """Start an invitation; mail it when asked; return the link and whether it was mailed."""
    link = invitation_url(admins.invitation_token(current_app.config["SECRET_KEY"], admin))
    if by_mail:
        hours = admins.INVITATION_TTL // 3600
        text = (
            f"{current_user.email} invites you to the dashboard of the mail relay "
            f"{current_app.config['HOSTNAME']} (role: {admin.role}).\n\n"
            f"Open this link within {hours} hours to choose your password:\n\n{link}\n\n"
            "If you did not expect this, ignore this message.\n"
        )
        notices.send(current_app.config, [admin.email], "Your invitation to the mail relay dashboard", text)
    return link, by_mail


def _refuse_self(admin: AdminUser, what: str) -> None:
    if admin.id == current_user.admin.id:
        flash(f"You cannot {what} yourself; ask another admin.")
        abort(redirect(url_for("users.users_list")))


@bp.get("/")
@admin_required
def users_list():
    """List dashboard users with role, status, second factor, last sign-in and open sessions."""
    return _page()


@bp.post("/")
@admin_required
def users_create():
    """Create a user without a password and invite them: the link is mailed, or shown here once."""
    email, role = request.form.get("email", ""), request.form.get("role", "viewer")
    try:
        admin = admins.create(email, None, role)
    except AccountError as exc:
        return _page(400, error=sentence(exc), email=email, role=role)
    link, mailed = _invite(admin, request.form.get("send") == "on")
    audit.record(
        "user.create", f"user {admin.email}", f"role {admin.role}, invitation {'mailed' if mailed else 'shown'}"
    )
    return _page(invitation={"email": admin.email, "link": link, "mailed": mailed})


@bp.post("/<int:user_id>/invite")
@admin_required
def users_invite(user_id: int):
    """Make a new invitation link for a user who has not chosen a password (older links stop working)."""
    admin = _get(user_id)
    try:
        link, mailed = _invite(admin, request.form.get("send") == "on")
    except AccountError as exc:
        flash(sentence(exc))
        return redirect(url_for("users.users_list"))
    audit.record("user.invite", f"user {admin.email}", f"new invitation {'mailed' if mailed else 'shown'}")
    return _page(invitation={"email": admin.email, "link": link, "mailed": mailed})


@bp.post("/<int:user_id>/role")
@admin_required
def users_role(user_id: int):
    """Change a user's role (admin or viewer)."""
    admin = _get(user_id)
    _refuse_self(admin, "change the role of")
    before, role = admin.role, request.form.get("role", "")
    try:
        admins.set_role(admin, role)
    except AccountError as exc:
        return _page(400, error=sentence(exc))
    audit.record("user.role", f"user {admin.email}", f"{before} → {role}")
    flash(f"{admin.email} is now {'an admin' if role == 'admin' else 'a viewer'}.")
    return redirect(url_for("users.users_list"))


@bp.post("/<int:user_id>/disable")
@admin_required
def users_disable(user_id: int):
    """Disable a user: they cannot sign in, and every session of theirs ends now."""
    admin = _get(user_id)
    _refuse_self(admin, "disable")
    try:
        admins.set_active(admin, False)
    except AccountError as exc:
        return _page(400, error=sentence(exc))
    ended = sessions.revoke_user(admin.id)
    audit.record("user.disable", f"user {admin.email}", f"{ended} session(s) ended")
    flash(f"{admin.email} is disabled and signed out.")
    return redirect(url_for("users.users_list"))


@bp.post("/<int:user_id>/enable")
@admin_required
def users_enable(user_id: int):
    """Let a disabled user sign in again."""
    admin = _get(user_id)
    admins.set_active(admin, True)
    audit.record("user.enable", f"user {admin.email}")
    flash(f"{admin.email} may sign in again.")
    return redirect(url_for("users.users_list"))


@bp.post("/<int:user_id>/sign-out")
@admin_required
def users_sign_out(user_id: int):
    """End every session of a user (yours too if it is you: you sign in again)."""
    admin = _get(user_id)
    ended = sessions.revoke_user(admin.id)
    audit.record("user.sign_out", f"user {admin.email}", f"{ended} session(s) ended")
    if admin.id == current_user.admin.id:
        sessions.end(session)
        return redirect(url_for("auth.auth_login"))
    flash(f"{admin.email} is signed out everywhere ({ended} session{'s' if ended != 1 else ''}).")
    return redirect(url_for("users.users_list"))


@bp.post("/<int:user_id>/reset-two-factor")
@admin_required
def users_reset_two_factor(user_id: int):
    """Turn off a user's second factor (lost phone); they set it up again if it is required."""
    admin = _get(user_id)
    _refuse_self(admin, "reset the second factor of")
    twofactor.disable(admin)
    ended = sessions.revoke_user(admin.id)
    audit.record("user.two_factor_reset", f"user {admin.email}", f"{ended} session(s) ended")
    flash(f"The second factor of {admin.email} is off; they are signed out.")
    return redirect(url_for("users.users_list"))


@bp.post("/two-factor")
@admin_required
def users_require_two_factor():
    """Require (or stop requiring) every user to sign in with a second factor."""
    on = request.form.get("required") == "on"
    twofactor.set_required(on)
    audit.record("settings.two_factor_required", "dashboard sign-in", "on" if on else "off")
    flash(
        "Every user now signs in with a second factor; those without one set it up at their next page."
        if on
        else "A second factor is no longer required (users who have one keep it)."
    )
    return redirect(url_for("users.users_list"))
