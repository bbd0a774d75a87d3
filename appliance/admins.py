"""Dashboard users: created from the CLI, once on first start, or invited from the Users page."""

from __future__ import annotations

from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from . import clock
from .accounts import AccountError, generate_password, hasher
from .models import AdminUser

ROLES = ("admin", "viewer")
INVITATION_TTL = 72 * 3600  # seconds an invitation link stays valid
# Verified against for an unknown e-mail, so both paths cost one argon2 verification.
_DUMMY_HASH = hasher.hash(generate_password())


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise AccountError("the password needs at least 10 characters")


def create(email: str, password: str | None, role: str = "admin") -> AdminUser:
    """Create a dashboard user with an argon2-hashed password (None: invited, no password yet)."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or any(ch.isspace() or ch in "<>\"'" for ch in email):
        raise AccountError(f"not an e-mail address: {email!r}")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if password is not None:
        _check_password(password)
    if AdminUser.select().where(AdminUser.email == email).exists():
        raise AccountError(f"a user {email} exists already")
    if password is None:
        return AdminUser.create(email=email, password_hash="", role=role, invited_at=clock.now())
    return AdminUser.create(email=email, password_hash=hasher.hash(password), role=role)


def verify(email: str, password: str) -> AdminUser | None:
    """Return the active user whose e-mail and password match, or None (one argon2 check either way)."""
    admin = AdminUser.get_or_none(AdminUser.email == email.strip().lower())
    try:
        hasher.verify(admin.password_hash if admin and admin.password_hash else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if admin is None or not admin.password_hash or not admin.active:
        return None
    return admin


def record_sign_in(admin: AdminUser) -> None:
    AdminUser.update(last_login_at=clock.now()).where(AdminUser.id == admin.id).execute()


def change_password(admin: AdminUser, current: str, new: str) -> None:
    """Replace the admin's password after checking the current one; raise AccountError if refused."""
    try:
        hasher.verify(admin.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise AccountError("the current password is not right") from None
    _check_password(new)
    admin.password_hash = hasher.hash(new)
    AdminUser.update(password_hash=admin.password_hash).where(AdminUser.id == admin.id).execute()


def _other_active_admins(admin: AdminUser) -> bool:
    return (
        AdminUser.select().where((AdminUser.role == "admin") & AdminUser.active & (AdminUser.id != admin.id)).exists()
    )


def set_role(admin: AdminUser, role: str) -> None:
    """Change a user's role; the last active admin stays an admin."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if admin.role == "admin" and role != "admin" and admin.active and not _other_active_admins(admin):
        raise AccountError("the last active admin cannot become a viewer")
    admin.role = role
    AdminUser.update(role=role).where(AdminUser.id == admin.id).execute()


def set_active(admin: AdminUser, active: bool) -> None:
    """Disable or enable a user; the last active admin cannot be disabled."""
    if not active and admin.role == "admin" and not _other_active_admins(admin):
        raise AccountError("the last active admin cannot be disabled")
    admin.active = active
    AdminUser.update(active=active).where(AdminUser.id == admin.id).execute()


def _invitations(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="dashboard-invitation")


def invitation_token(secret_key: str, admin: AdminUser) -> str:
    """Start a new invitation for a user who has no password yet; return its signed token."""
    if admin.password_hash:
        raise AccountError(f"{admin.email} has a password already")
    admin.invited_at = clock.now()
    AdminUser.update(invited_at=admin.invited_at).where(AdminUser.id == admin.id).execute()
    return _invitations(secret_key).dumps({"id": admin.id, "at": admin.invited_at.isoformat()})


def invited(secret_key: str, token: str) -> AdminUser:
    """Return the user a valid, unused, newest invitation names; raise AccountError saying why not."""
    try:
        data = _invitations(secret_key).loads(token, max_age=INVITATION_TTL)
    except SignatureExpired:
        raise AccountError("this invitation has expired: ask an admin for a new one") from None
    except BadSignature:
        raise AccountError("this invitation link is not valid (it may have been cut short when copied)") from None
    admin = AdminUser.get_or_none(AdminUser.id == data.get("id")) if isinstance(data, dict) else None
    if (
        admin is None
        or admin.password_hash
        or not admin.active
        or admin.invited_at is None
        or admin.invited_at.isoformat() != data.get("at")
    ):
        raise AccountError("this invitation was used or replaced by a newer one: ask an admin for a new one")
    return admin


def accept_invitation(admin: AdminUser, password: str) -> None:
    """Give an invited user the password they chose (the invitation stops working)."""
    _check_password(password)
    admin.password_hash = hasher.hash(password)
    AdminUser.update(password_hash=admin.password_hash).where(
        (AdminUser.id == admin.id) & (AdminUser.password_hash == "")
    ).execute()


def ensure_first_admin() -> tuple[str, str] | None:
    """On a first start with no admin, create one and return (email, password) to print once."""
    if AdminUser.select().exists():
        return None
    email = f"admin@{current_app.config['HOSTNAME']}".lower()
    password = generate_password(20)
    create(email, password)
    return email, password
